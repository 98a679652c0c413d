//! The README as a newcomer uses it: its quick starts are the files the suites compile,
//! and every command block in it, in the binding READMEs and in docs/ runs as written
//! from the repository root (a block that cannot run here says so with a marker, see
//! `NOT_RUN`).
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
const TOOLS: [(&str, &str); 7] = [
    ("gcc", "gcc"),
    ("g++", "g++"),
    ("cmake", "cmake"),
    ("pkg-config", "pkg-config"),
    ("mcs", "mono-mcs"),
    ("mono", "mono-runtime"),
    (tools::NEWTONSOFT_JSON, "libnewtonsoft-json-cil-dev"),
];

/// Marks a command block that the test does not run; it stands on the line before the
/// block's opening fence and says why (a server that runs until Ctrl-C, a load test of
/// minutes, files that exist only on another platform). Blocks so marked are listed on
/// stderr at every run, and every other `sh` or `console` block runs.
const NOT_RUN: &str = "<!-- not run: ";

/// One fenced command block of a markdown file.
struct Block {
    origin: String,
    commands: Vec<String>,
    /// Why the block is not run, from its `NOT_RUN` marker.
    not_run: Option<String>,
}

/// The command blocks of a markdown file: ```` ```sh ```` blocks (every line a command,
/// without the README's test command, which is what runs this test) and ```` ```console ````
/// blocks (the lines after a `$ ` prompt). Other shell spellings are refused, so that no
/// command block is skipped for its spelling.
fn command_blocks(path: &Path) -> Vec<Block> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut blocks = Vec::new();
    let mut current: Option<(Block, bool)> = None;
    let mut inside_other = false;
    let mut previous = "";
    for (n, line) in text.lines().enumerate() {
        let origin = format!("{}:{}", path.display(), n + 1);
        let line = line.trim_end();
        match &mut current {
            Some(_) if line == "```" => blocks.extend(current.take().map(|(block, _)| block)),
            Some((block, console)) => {
                // In a console block, lines after a `$ ` command ending in `\` continue it.
                let continued = block.commands.last().is_some_and(|c| c.ends_with('\\'));
                let command = if *console && !continued { line.strip_prefix("$ ") } else { Some(line) };
                let without_comment = command.map(|c| c.split(" #").next().unwrap_or("").trim());
                if let (Some(command), false) = (command, without_comment == Some(TEST_COMMAND)) {
                    block.commands.push(command.to_owned());
                }
            }
            None if inside_other => inside_other = line != "```",
            None => {
                let not_run = previous.strip_prefix(NOT_RUN).map(|reason| {
                    let reason = reason.trim_end_matches("-->").trim();
                    assert!(!reason.is_empty(), "{origin}: `{NOT_RUN}...-->` must say why");
                    reason.to_owned()
                });
                match line.strip_prefix("```") {
                    Some("sh" | "console") => {
                        let block = Block { origin, commands: Vec::new(), not_run };
                        current = Some((block, line == "```console"));
                    }
                    Some(lang @ ("bash" | "shell" | "zsh" | "shell-session")) => {
                        panic!("{origin}: a ```{lang} block: commands go in ```sh (or ```console with `$ ` prompts)")
                    }
                    Some(_) => {
                        assert!(
                            not_run.is_none(),
                            "{origin}: `{NOT_RUN}` stands before a block that is not a command block"
                        );
                        inside_other = true;
                    }
                    None => assert!(
                        not_run.is_none() || line.is_empty(),
                        "{origin}: `{NOT_RUN}` must stand right before a command block's fence"
                    ),
                }
            }
        }
        if !line.is_empty() {
            previous = line;
        }
    }
    blocks
}

/// The documents a newcomer reads: README.md, every README under bindings/, and docs/.
fn documents() -> Vec<PathBuf> {
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
    let mut docs: Vec<PathBuf> = fs::read_dir("docs")
        .expect("docs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    out.extend(docs);
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
    for path in documents() {
        for block in command_blocks(&path) {
            if let Some(reason) = &block.not_run {
                // Past the harness's capture, so it shows on every run.
                let line = format!("not run: the commands at {} ({reason})\n", block.origin);
                let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
                continue;
            }
            let words: Vec<&str> = block
                .commands
                .iter()
                .flat_map(|c| c.split(|ch: char| ch.is_whitespace() || "()\"'$".contains(ch)))
                .collect();
            // Programs as words; files (absolute paths) anywhere in the commands.
            let needed: Vec<(&str, &str)> = TOOLS
                .into_iter()
                .filter(|(tool, _)| {
                    words.contains(tool)
                        || (tool.starts_with('/') && block.commands.iter().any(|c| c.contains(tool)))
                })
                .collect();
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

/// The packages the README says the test command needs are the ones `.ci/run` installs for
/// it (its first `apt-get install`; the second is presence-server's browser).
#[test]
fn readme_names_the_packages_ci_installs() {
    let ci = fs::read_to_string(".ci/run").unwrap().replace("\\\n", " ");
    let install =
        ci.lines().find(|l| l.starts_with("apt-get install")).expect("an apt-get install in .ci/run");
    let mut installed: Vec<&str> = install
        .split_whitespace()
        .skip(2)
        .take_while(|w| !w.starts_with('>'))
        .filter(|w| !w.starts_with('-'))
        .collect();
    let readme = fs::read_to_string("README.md").unwrap().replace('\n', " ");
    let named = readme.split("they need `").nth(1).and_then(|rest| rest.split('`').next());
    let mut named: Vec<&str> = named.expect("the README's \"they need `...`\"").split_whitespace().collect();
    installed.sort_unstable();
    named.sort_unstable();
    assert_eq!(named, installed, "the README's package list and .ci/run's differ");
}

/// The README's main example as a newcomer sees it: a legend of the engine calls first,
/// a screen or two by default, everything with `--long`, and a clock that renders
/// midnight as 00:00:00.
#[test]
fn lobby_prints_a_legend_and_a_screen_or_two() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let run = |args: &[&str]| -> String {
        let output = Command::new(&cargo)
            .args(["run", "--release", "--quiet", "--example", "lobby", "--"])
            .args(args)
            .output()
            .expect("cargo runs");
        assert!(output.status.success(), "the lobby failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("UTF-8 output")
    };
    let short = run(&[]);
    let long = run(&["--long"]);
    assert!(short.starts_with("The engine calls behind this evening"), "no legend first:\n{short}");
    let (short_lines, long_lines) = (short.lines().count(), long.lines().count());
    assert!(short_lines <= 100, "the default output is {short_lines} lines, more than a screen or two");
    assert!(long_lines > 5 * short_lines, "--long prints {long_lines} lines, hardly more than {short_lines}");
    for output in [&short, &long] {
        assert!(!output.contains("24:00:00"), "midnight rendered as 24:00:00");
        assert!(output.contains("00:00:00"), "the evening no longer reaches midnight");
    }
}
