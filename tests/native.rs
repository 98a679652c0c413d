//! Runs the native test suites (C, C++, C#, the Unreal plugin's core) against the release
//! library, each as its own
//! test, failing with the script's output when it exits non-zero.
//!
//! They link `target/release/libpresence.{so,a}` and never call cargo themselves (a nested
//! cargo would wait on the build lock this test run holds), so build first:
//!
//! ```text
//! cargo build --release && cargo test --release
//! ```
//!
//! A suite whose tools are missing (gcc and valgrind for C, g++ for C++ and the Unreal
//! core, mono, mcs and nunit-console for C#) is skipped with a message naming the packages
//! to install; with `CI=true` it fails instead, so nothing is skipped in CI.
mod tools;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The suites share two cores and the build folders; run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Generous: the C suite under valgrind takes well under a minute on two cores.
const TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `bash script` from the repository root in its own process group, with a timeout;
/// panics with the whole output when it fails.
fn run_script(script: &Path) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let log_path = std::env::temp_dir().join(format!(
        "presence-native-{}-{}.log",
        std::process::id(),
        script
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let log = File::create(&log_path).expect("create the log file");
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new("bash")
            .arg(script)
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run bash {}: {e}", script.display()))
    };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break Some(status);
        }
        if started.elapsed() > TIMEOUT {
            // The whole process group: the script and whatever it started.
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    match status {
        Some(s) if s.success() => {
            // Visible with --nocapture; the last line is the suite's "N passed, M failed".
            println!("{output}");
        }
        Some(s) => {
            panic!("{} failed ({s}). Did you run `cargo build --release` first?\n{output}", script.display())
        }
        None => panic!("{} did not finish within {TIMEOUT:?}; killed.\n{output}", script.display()),
    }
}

#[test]
fn c_suite() {
    if tools::present("the C suite", &[("gcc", "gcc"), ("valgrind", "valgrind")]) {
        run_script(&root().join("tests/c/run.sh"));
    }
}

#[test]
fn cpp_suite() {
    if tools::present("the C++ suite", &[("g++", "g++")]) {
        run_script(&root().join("tests/cpp/run.sh"));
    }
}

#[test]
fn csharp_suite() {
    let tools = [
        ("mono", "mono-runtime"),
        ("mcs", "mono-mcs"),
        ("nunit-console", "nunit-console"),
        (tools::NEWTONSOFT_JSON, "libnewtonsoft-json-cil-dev"),
    ];
    if tools::present("the C# suite", &tools) {
        run_script(&root().join("tests/csharp/run.sh"));
    }
}

#[test]
fn unreal_core_suite() {
    if tools::present("the Unreal plugin's core suite", &[("g++", "g++")]) {
        run_script(&root().join("tests/unreal/run.sh"));
    }
}
