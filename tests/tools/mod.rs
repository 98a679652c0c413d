//! Native tools the suites need (compilers, valgrind, Mono, cmake): present, skipped loudly
//! outside CI, or a failure with `CI=true`, so nothing is silently skipped in CI.
use std::io::Write;

/// Whether an executable named `program` is on PATH; a `program` given as an absolute
/// path (a library file a suite loads) only has to exist.
pub fn on_path(program: &str) -> bool {
    if program.starts_with('/') {
        return std::path::Path::new(program).is_file();
    }
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// The Newtonsoft.Json assembly of Debian's `libnewtonsoft-json-cil-dev`, which the C#
/// suite and the C# README command compile against.
#[allow(dead_code)] // used by the suites that build C#
pub const NEWTONSOFT_JSON: &str = "/usr/lib/cli/Newtonsoft.Json-5.0/Newtonsoft.Json.dll";

/// Whether `CI=true` is set: then a missing tool is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// True when every `(program, Debian package)` is on PATH. Otherwise `what` is skipped
/// with a message naming the packages to install (printed past the test harness's capture,
/// so it shows), or, with `CI=true`, fails.
pub fn present(what: &str, tools: &[(&str, &str)]) -> bool {
    let missing: Vec<&(&str, &str)> = tools.iter().filter(|(program, _)| !on_path(program)).collect();
    if missing.is_empty() {
        return true;
    }
    let programs: Vec<&str> = missing.iter().map(|(program, _)| *program).collect();
    let mut packages: Vec<&str> = missing.iter().map(|(_, package)| *package).collect();
    packages.dedup();
    let message = format!("{what} needs {} (apt-get install {})", programs.join(", "), packages.join(" "));
    assert!(!in_ci(), "{message}");
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED (not in CI): {message} ***\n");
    false
}
