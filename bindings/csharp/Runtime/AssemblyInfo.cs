// The test assembly (bindings/csharp/Tests) checks internals: GCHandle counts, the ABI check.
using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("Presence.Tests")]
