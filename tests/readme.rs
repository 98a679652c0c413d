//! The README's quick starts are real files that the test suites compile and run; this
//! checks the README shows each of them verbatim.
use std::fs;

/// The file without its leading comment lines (they say where the snippet is shown).
fn snippet(path: &str) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines().skip_while(|l| l.starts_with("//") || l.starts_with("/*")).collect::<Vec<_>>().join("\n")
}

#[test]
fn readme_quick_starts_match_the_compiled_files() {
    let readme = fs::read_to_string("README.md").unwrap();
    let quick_starts = [
        "examples/quickstart.rs",
        "examples/c/quickstart.c",
        "examples/cpp/quickstart.cpp",
        "examples/csharp/QuickStart.cs",
    ];
    for path in quick_starts {
        let code = snippet(path);
        assert!(
            readme.contains(code.trim()),
            "README.md does not show {path} verbatim; paste the file (without its leading comments) into the README"
        );
    }
}
