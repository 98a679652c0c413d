//! The README as a newcomer uses it: its quick starts are the files the suites compile,
//! every command block in it and in the binding READMEs runs as written from the
//! repository root, its links stay inside the repository, and the configuration
//! reference says what the rustdoc says.
mod tools;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

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

// ----- every command in the READMEs runs as written -------------------------------------

/// The README's test command: it is what runs this test, so it is the one command the
/// test does not run again (`.ci/run` runs it).
const TEST_COMMAND: &str = "cargo build --release && cargo test --release";

/// Programs a command block may need beyond cargo, with the Debian package providing each.
const TOOLS: [(&str, &str); 6] = [
    ("gcc", "gcc"),
    ("g++", "g++"),
    ("cmake", "cmake"),
    ("pkg-config", "pkg-config"),
    ("mcs", "mono-mcs"),
    ("mono", "mono-runtime"),
];

/// One fenced `sh` block of a markdown file.
struct Block {
    origin: String,
    commands: Vec<String>,
}

/// The `sh` blocks of a markdown file, without the README's test command. Commands that
/// run until stopped (presence-server) are shown in `console` blocks with a `$` prompt
/// instead; the server's own tests start the binary that command builds.
fn sh_blocks(path: &Path) -> Vec<Block> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (n, line) in text.lines().enumerate() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => {
                current =
                    Some(Block { origin: format!("{}:{}", path.display(), n + 1), commands: Vec::new() })
            }
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), command) => {
                let without_comment = command.split(" #").next().unwrap_or("").trim();
                if without_comment != TEST_COMMAND {
                    block.commands.push(command.to_owned());
                }
            }
            (None, _) => {}
        }
    }
    blocks
}

/// README.md and every README under bindings/.
fn readmes() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.file_name().is_some_and(|n| n == "README.md") {
                out.push(path);
            }
        }
    }
    let mut out = vec![PathBuf::from("README.md")];
    walk(Path::new("bindings"), &mut out);
    out
}

/// Untracked files git does not ignore, or `None` without git.
fn untracked() -> Option<Vec<String>> {
    let out = Command::new("git").args(["status", "--porcelain", "--untracked-files=all"]).output().ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("??"))
            .map(String::from)
            .collect()
    })
}

#[test]
fn readme_commands_run_as_written() {
    let readme = fs::read_to_string("README.md").unwrap();
    assert!(readme.contains("```sh\ncargo run --release --example lobby"), "README lost its main example");
    assert!(readme.contains(TEST_COMMAND), "README lost its test command");
    let ci = fs::read_to_string(".ci/run").unwrap();
    assert!(ci.lines().any(|l| l.trim() == TEST_COMMAND), ".ci/run must run the README's test command");
    assert!(
        Path::new("target/release/libpresence.a").exists(),
        "the README's commands link target/release: run `cargo build --release` first (the test command does)"
    );

    // Commands that install under $HOME get a fresh one inside target/ (ignored by git);
    // cargo and rustup keep their own homes.
    let real_home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    let home = std::env::current_dir().unwrap().join("target/readme-home");
    let _ = fs::remove_dir_all(&home);
    fs::create_dir_all(&home).unwrap();
    let cargo_home = std::env::var_os("CARGO_HOME").map(PathBuf::from).unwrap_or(real_home.join(".cargo"));
    let rustup_home = std::env::var_os("RUSTUP_HOME").map(PathBuf::from).unwrap_or(real_home.join(".rustup"));
    let untracked_before = untracked();

    let mut ran = 0;
    for path in readmes() {
        for block in sh_blocks(&path) {
            let words: Vec<&str> = block
                .commands
                .iter()
                .flat_map(|c| c.split(|ch: char| ch.is_whitespace() || "()\"'$".contains(ch)))
                .collect();
            let needed: Vec<(&str, &str)> =
                TOOLS.into_iter().filter(|(tool, _)| words.contains(tool)).collect();
            if !tools::present(&format!("the commands at {}", block.origin), &needed) {
                continue;
            }
            let script = block.commands.join("\n");
            let output = Command::new("bash")
                .args(["-euo", "pipefail", "-c", &script])
                .env("HOME", &home)
                .env("CARGO_HOME", &cargo_home)
                .env("RUSTUP_HOME", &rustup_home)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("{}: cannot run bash: {e}", block.origin));
            assert!(
                output.status.success(),
                "the commands at {} failed ({}):\n{script}\n--- stdout\n{}\n--- stderr\n{}",
                block.origin,
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            ran += 1;
        }
    }
    assert!(ran > 0 || !tools::in_ci(), "no README command block ran");
    if let (Some(before), Some(after)) = (untracked_before, untracked()) {
        let new: Vec<&String> = after.iter().filter(|f| !before.contains(f)).collect();
        assert!(new.is_empty(), "the README's commands left files git does not ignore: {new:?}");
    }
}

// ----- docs -----------------------------------------------------------------------------

/// Every relative link in the README and docs/ points at a file of the repository, and
/// nothing refers to a document outside it.
#[test]
fn docs_links_stay_inside_the_repository() {
    let mut files = vec![PathBuf::from("README.md"), PathBuf::from("CHANGELOG.md")];
    files.extend(
        fs::read_dir("docs")
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "md")),
    );
    // Every Markdown document named anywhere (prose or code) is one of the repository's own.
    let own: Vec<String> =
        String::from_utf8(Command::new("git").args(["ls-files", "*.md"]).output().expect("git runs").stdout)
            .unwrap()
            .lines()
            .map(|p| p.rsplit('/').next().unwrap().to_owned())
            .collect();
    let root = fs::canonicalize(".").unwrap();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let words = text.split(|c: char| !(c.is_ascii_alphanumeric() || "_./-".contains(c)));
        for named in words.filter(|w| w.ends_with(".md")) {
            let name = named.rsplit('/').next().unwrap();
            assert!(
                own.iter().any(|o| o == name),
                "{} names {named}, which is not in the repository",
                file.display()
            );
        }
        // Links in prose only: code blocks hold C++ lambdas like `[](const Event &e)`.
        let prose: String = text.split("```").step_by(2).collect();
        for link in prose.split("](").skip(1).filter_map(|rest| rest.split(')').next()) {
            if link.starts_with("http") || link.starts_with('#') {
                continue;
            }
            let target = file.parent().unwrap().join(link.split('#').next().unwrap());
            assert!(target.exists(), "{}: link to {link}, which does not exist", file.display());
            assert!(
                fs::canonicalize(&target).unwrap().starts_with(&root),
                "{}: link to {link}, outside the repository",
                file.display()
            );
        }
    }
}

/// The keys `Config` accepts, as its own error message lists them.
fn config_keys() -> Vec<String> {
    let message = presence::Config::from_json(r#"{"?": 0}"#).unwrap_err().message().to_owned();
    let list =
        message.split("expected one of").nth(1).unwrap_or_else(|| panic!("unexpected message: {message}"));
    list.split('`').skip(1).step_by(2).map(String::from).collect()
}

/// docs/config.md has a section per key whose text is the rustdoc of that `Config` field.
#[test]
fn config_reference_matches_the_rustdoc() {
    let md = fs::read_to_string("docs/config.md").unwrap();
    let source = fs::read_to_string("src/config.rs").unwrap();
    let source: Vec<&str> = source.lines().collect();
    let keys = config_keys();
    assert!(keys.len() >= 10, "{keys:?}");
    for key in keys {
        let heading = format!("\n## `{key}`\n");
        let section =
            md.split_once(&heading).unwrap_or_else(|| panic!("docs/config.md has no section `## `{key}``")).1;
        let section = section.split("\n## ").next().unwrap().trim();
        let field = source
            .iter()
            .position(|l| l.trim_start().starts_with(&format!("pub {key}:")))
            .unwrap_or_else(|| panic!("src/config.rs has no field {key}"));
        let mut doc: Vec<&str> = source[..field]
            .iter()
            .rev()
            .map(|l| l.trim_start())
            .take_while(|l| l.starts_with("///"))
            .map(|l| l.trim_start_matches("///").strip_prefix(' ').unwrap_or(l.trim_start_matches("///")))
            .collect();
        doc.reverse();
        assert_eq!(
            doc.join("\n").trim(),
            section,
            "the rustdoc of Config::{key} and its section in docs/config.md differ"
        );
    }
}
