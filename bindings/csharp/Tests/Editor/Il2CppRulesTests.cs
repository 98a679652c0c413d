// IL2CPP (Unity's ahead-of-time compiler) accepts native callbacks and P/Invoke only under
// rules that Mono does not enforce, so breaking them shows up first on a device. This scans
// the package's runtime sources for the rules and fails naming the file and line.
using System;
using System.Collections.Generic;
using System.IO;
using System.Text.RegularExpressions;
using NUnit.Framework;

public static class Il2CppRules
{
    private static readonly Regex CallbackAttribute =
        new Regex(@"^\s*\[MonoPInvokeCallback\(typeof\((\w+)\)\)\]\s*$");
    private static readonly Regex StaticMethod = new Regex(@"^\s*(private|internal|public)?\s*static\s+\w+\s+(\w+)\s*\(");
    private static readonly Regex DelegateField =
        new Regex(@"static\s+readonly\s+(\w+Callback)\s+\w+\s*=\s*(\w+)\s*;");
    private static readonly Regex NativeDelegate =
        new Regex(@"public\s+delegate\s+\w+\s+(\w+Callback)\s*\(");
    private static readonly Regex DllImport = new Regex(@"\[DllImport\(([^,)]+)");
    private static readonly Regex GenericVirtual =
        new Regex(@"\b(virtual|abstract|override)\s+[\w<>\[\], ]+\s+\w+\s*<\s*\w+");
    private static readonly Regex GenericExtern = new Regex(@"\bextern\s+[\w\[\]]+\s+\w+\s*<");

    /// <summary>The rule violations in one source file ("file:line: what").</summary>
    public static List<string> Scan(string file, string text)
    {
        var violations = new List<string>();
        string[] lines = text.Split('\n');
        var callbacks = new Dictionary<string, string>(); // method -> delegate type it is marked for
        var delegateTypes = new HashSet<string>();
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i];
            string where = file + ":" + (i + 1) + ": ";
            if (line.Contains("GetFunctionPointerForDelegate"))
                violations.Add(where + "Marshal.GetFunctionPointerForDelegate (IL2CPP needs static [MonoPInvokeCallback] methods)");
            Match attr = CallbackAttribute.Match(line);
            if (attr.Success)
            {
                Match method = i + 1 < lines.Length ? StaticMethod.Match(lines[i + 1]) : Match.Empty;
                if (!method.Success)
                    violations.Add(where + "[MonoPInvokeCallback] on a method that is not static");
                else
                    callbacks[method.Groups[2].Value] = attr.Groups[1].Value;
            }
            Match nativeDelegate = NativeDelegate.Match(line);
            if (nativeDelegate.Success)
            {
                delegateTypes.Add(nativeDelegate.Groups[1].Value);
                if (i == 0 || !lines[i - 1].Contains("[UnmanagedFunctionPointer(CallingConvention.Cdecl)]"))
                    violations.Add(where + "native callback delegate without [UnmanagedFunctionPointer(Cdecl)]");
            }
            Match import = DllImport.Match(line);
            if (import.Success && import.Groups[1].Value.Trim() != "Lib")
                violations.Add(where + "DllImport names a library literally; use Lib (\"__Internal\" on iOS)");
            if (GenericVirtual.IsMatch(line))
                violations.Add(where + "generic virtual method (IL2CPP cannot always generate it ahead of time)");
            if (GenericExtern.IsMatch(line))
                violations.Add(where + "generic extern method");
        }
        for (int i = 0; i < lines.Length; i++)
        {
            Match field = DelegateField.Match(lines[i]);
            if (!field.Success) continue;
            string type = field.Groups[1].Value, method = field.Groups[2].Value;
            string marked;
            if (!callbacks.TryGetValue(method, out marked) || marked != type)
                violations.Add(file + ":" + (i + 1) + ": " + type + " field bound to " + method +
                               ", which is not a static [MonoPInvokeCallback(typeof(" + type + "))] method");
        }
        if (text.Contains("[DllImport(") && !Regex.IsMatch(text,
                @"#if UNITY_IOS && !UNITY_EDITOR\s+internal const string Lib = ""__Internal"";"))
            violations.Add(file + ": DllImport without Lib = \"__Internal\" under UNITY_IOS");
        return violations;
    }

    /// <summary>The runtime sources: the package in a Unity project, or the repository here.</summary>
    public static string RuntimeDirectory()
    {
        string[] candidates =
        {
            Environment.GetEnvironmentVariable("PRESENCE_CSHARP_RUNTIME") ?? "",
            Path.Combine("Packages", Path.Combine("com.presence.engine", "Runtime")),
            Path.Combine("bindings", Path.Combine("csharp", "Runtime")),
        };
        foreach (string dir in candidates)
        {
            if (dir.Length > 0 && File.Exists(Path.Combine(dir, "Native.cs"))) return dir;
        }
        return null;
    }
}

[TestFixture]
public class Il2CppRulesTests
{
    [Test]
    public void RuntimeSourcesFollowTheRules()
    {
        string dir = Il2CppRules.RuntimeDirectory();
        Assert.IsNotNull(dir, "runtime sources not found (set PRESENCE_CSHARP_RUNTIME)");
        var violations = new List<string>();
        int callbacks = 0;
        foreach (string file in Directory.GetFiles(dir, "*.cs", SearchOption.AllDirectories))
        {
            string text = File.ReadAllText(file);
            callbacks += Regex.Matches(text, @"\[MonoPInvokeCallback\(").Count;
            violations.AddRange(Il2CppRules.Scan(Path.GetFileName(file), text));
        }
        Assert.IsEmpty(violations, string.Join("\n", violations.ToArray()));
        Assert.Greater(callbacks, 0, "no [MonoPInvokeCallback] found: the scan looked at the wrong files");
    }

    [Test]
    public void ScannerReportsEachViolation()
    {
        const string bad = @"
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate void GoodCallback(IntPtr u, IntPtr e);
    public delegate void BareCallback(IntPtr u, IntPtr e);
    class X {
        private static readonly GoodCallback s_good = Instance;
        [MonoPInvokeCallback(typeof(GoodCallback))]
        private void Instance(IntPtr u, IntPtr e) { }
        [DllImport(""presence"")] static extern void f();
        IntPtr p = Marshal.GetFunctionPointerForDelegate(new GoodCallback(Other));
        public virtual void Generic<T>(T t) { }
    }";
        List<string> found = Il2CppRules.Scan("bad.cs", bad);
        string all = string.Join("\n", found.ToArray());
        StringAssert.Contains("without [UnmanagedFunctionPointer(Cdecl)]", all);
        StringAssert.Contains("not static", all);
        StringAssert.Contains("GoodCallback field bound to Instance", all);
        StringAssert.Contains("names a library literally", all);
        StringAssert.Contains("GetFunctionPointerForDelegate", all);
        StringAssert.Contains("generic virtual", all);
        StringAssert.Contains("__Internal", all);
    }
}
