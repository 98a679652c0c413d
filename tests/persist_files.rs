//! `save` and `load` against a hostile or careless file system: planted symlinks, targets
//! that are not regular files, FIFOs without a writer, endless devices, oversized and
//! crafted files. Each ends in a clear answer, leaves what it should not touch alone, and
//! keeps memory proportional to the file.
#![cfg(unix)]
mod common;

use common::manual_engine;
use presence::{Answer, ConnectionId, Engine, ErrorKind, UserPatch};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn engine_with_data() -> Engine {
    let e = manual_engine("");
    e.upsert_user_json(r#"{"id":"alice","status":"here","color":"red"}"#).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:red","members":["alice","bob"]}"#).unwrap();
    e
}

/// Runs a shell tool that creates a special file; CI must have it.
fn make(tool: &str, args: &[&str]) -> bool {
    match Command::new(tool).args(args).status() {
        Ok(s) if s.success() => true,
        outcome => {
            assert!(std::env::var("CI").is_err(), "{tool} {args:?} failed in CI: {outcome:?}");
            eprintln!("SKIPPED: {tool} {args:?} failed ({outcome:?})");
            false
        }
    }
}

fn io_error(result: presence::Result<()>) -> String {
    let e = result.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{}", e.message());
    e.message().to_string()
}

/// Before: the temporary file was `.NAME.tmp-PID-N`, created by following whatever was
/// there, so a symlink planted at the next name made `save` overwrite its target.
#[test]
fn save_does_not_follow_symlinks_planted_at_guessable_temporary_names() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let target = dir.path().join("snap.json");
    for n in 0..64 {
        let planted = dir.path().join(format!(".snap.json.tmp-{}-{n}", std::process::id()));
        std::os::unix::fs::symlink(&victim, planted).unwrap();
    }
    let e = engine_with_data();
    for _ in 0..8 {
        e.save(&target).unwrap();
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let loaded = manual_engine("");
    loaded.load(&target).unwrap();
    assert_eq!(loaded.get_user(ConnectionId::HOST, "alice").unwrap().to_value()["color"], "red");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn assert_save_leaves_alone(e: &Engine, target: &Path, what: &str) {
    let before = std::fs::symlink_metadata(target).unwrap();
    let message = io_error(e.save(target));
    assert!(message.contains("not a regular file") && message.contains(what), "{message}");
    let after = std::fs::symlink_metadata(target).unwrap();
    assert_eq!(before.file_type(), after.file_type(), "{what} was replaced");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(before.ino(), after.ino(), "{what} was replaced");
    let dir = target.parent().unwrap();
    let temps = std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp"));
    assert_eq!(temps.count(), 0, "a temporary file was left beside {what}");
}

/// Before: saving onto a device node replaced it with a regular file.
#[test]
fn save_onto_something_not_a_regular_file_answers_io_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine_with_data();

    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    assert_save_leaves_alone(&e, &folder, "a folder");

    let link = dir.path().join("link");
    std::fs::write(dir.path().join("real"), "real").unwrap();
    std::os::unix::fs::symlink(dir.path().join("real"), &link).unwrap();
    assert_save_leaves_alone(&e, &link, "a symlink");
    assert_eq!(std::fs::read_to_string(dir.path().join("real")).unwrap(), "real");

    let fifo = dir.path().join("fifo");
    if make("mkfifo", &[fifo.to_str().unwrap()]) {
        assert_save_leaves_alone(&e, &fifo, "a FIFO");
    }
    let device = dir.path().join("null");
    if make("mknod", &[device.to_str().unwrap(), "c", "1", "3"]) {
        assert_save_leaves_alone(&e, &device, "a device");
    }
}

/// Runs `f` on a thread and fails the test if it does not return within 10 s.
fn within_10s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(f()).unwrap());
    rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("{what} did not return within 10 s"))
}

/// Before: a FIFO without a writer blocked `load` forever, and `/dev/zero` was read until
/// memory ran out.
#[test]
fn load_reads_only_a_regular_file_and_never_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let mut targets = vec![(dir.path().to_path_buf(), "a folder"), ("/dev/zero".into(), "a device")];
    if make("mkfifo", &[fifo.to_str().unwrap()]) {
        targets.push((fifo, "a FIFO"));
    }
    for (target, what) in targets {
        let message = within_10s(what, move || {
            let e = engine_with_data();
            let message = io_error(e.load(&target));
            assert!(e.get_user(ConnectionId::HOST, "alice").is_ok(), "the engine changed");
            message
        });
        assert!(message.contains(what), "{message}");
    }
}

#[test]
fn load_refuses_a_file_over_max_snapshot_bytes_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap.json");
    engine_with_data().save(&path).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();

    let exact = manual_engine(&format!(r#""max_snapshot_bytes":{size}"#));
    exact.load(&path).unwrap();
    assert!(exact.get_user(ConnectionId::HOST, "bob").is_ok());

    let small = manual_engine(&format!(r#""max_snapshot_bytes":{}"#, size - 1));
    small.upsert_user(&UserPatch::id("kept")).unwrap();
    let e = small.load(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Limit, "{}", e.message());
    assert!(e.message().contains("max_snapshot_bytes"), "{}", e.message());
    assert!(small.get_user(ConnectionId::HOST, "kept").is_ok());

    let zero = Engine::from_json(Some(r#"{"max_snapshot_bytes":0}"#)).err().unwrap();
    assert_eq!(zero.kind(), ErrorKind::Invalid);
}

#[test]
fn load_checks_the_document_head_before_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap.json");
    let cases = [
        (
            r#"{"users":[{"id":"a"}],"channels":[],"format":"presence-engine","version":1}"#,
            "must begin with \"format\"",
        ),
        (r#"{"format":"presence-engine","version":2,"users":[],"channels":[]}"#, "unsupported version 2"),
        (r#"{"format":"other","version":1,"users":[],"channels":[]}"#, "\"format\" is not"),
        (r#"{"format":"presence-engine","version":1,"channels":[],"users":[]}"#, "users first"),
        (r#"{"format":"presence-engine","version":1,"users":[]}"#, "missing \"channels\""),
        (r#"{"format":"presence-engine","version":1,"users":[],"channels":[]} x"#, "trailing"),
    ];
    for (text, expected) in cases {
        std::fs::write(&path, text).unwrap();
        let e = engine_with_data();
        let err = e.load(&path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Json, "{text}: {}", err.message());
        assert!(err.message().contains(expected), "{text}: {}", err.message());
        assert!(e.get_user(ConnectionId::HOST, "alice").is_ok());
    }
}

// ----- memory while loading crafted files -----

const CHILD: &str = "PRESENCE_LOAD_RSS_CHILD";
const MB: usize = 1 << 20;

/// Peak resident memory of this process so far, in bytes (Linux `VmHWM`).
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 1024
}

/// The child side: loads the file named by the environment and prints its peak memory.
#[test]
fn load_rss_child() {
    let Ok(path) = std::env::var(CHILD) else {
        return;
    };
    let e = Engine::from_json(None).unwrap();
    let outcome = e.load(&path).map_err(|e| format!("{:?}: {:.80}", e.kind(), e.message()));
    println!("PEAK_RSS={} OUTCOME={outcome:?}", peak_rss());
}

/// Loads `path` in a fresh child process; answers its peak memory and outcome.
fn load_in_child(path: &Path) -> (usize, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "load_rss_child", "--nocapture", "--test-threads", "1"])
        .env(CHILD, path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let at = stdout.find("PEAK_RSS=").unwrap_or_else(|| panic!("child said: {stdout}"));
    let line = stdout[at + "PEAK_RSS=".len()..].lines().next().unwrap();
    let (peak, outcome) = line.split_once(" OUTCOME=").unwrap();
    (peak.parse().unwrap(), outcome.to_string())
}

/// 30 MB files shaped to blow up a parser that builds a tree of the whole document (each
/// small JSON value becomes a node ten to forty times its text): before, such a file
/// peaked at about 2 GB before being rejected. Now each is rejected with memory a small
/// multiple of the file.
#[test]
fn crafted_30_mb_files_are_rejected_in_memory_proportional_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let head = r#"{"format":"presence-engine","version":1,"users":["#;
    let zeros = |n: usize| {
        let mut text = "0,".repeat(n);
        text.pop();
        text
    };
    let units = 30 * MB / 2;
    let crafted = [
        (
            "one user with a 30 MB custom array",
            format!(r#"{head}{{"id":"a","x":[{}]}}],"channels":[]}}"#, zeros(units)),
        ),
        ("a 30 MB version", format!(r#"{{"format":"presence-engine","version":[{}]}}"#, zeros(units))),
        ("users that are not objects", format!(r#"{head}{}],"channels":[]}}"#, zeros(units))),
        (
            "users of empty objects",
            format!(r#"{head}{}],"channels":[]}}"#, "{},".repeat(units * 2 / 3).trim_end_matches(',')),
        ),
        (
            "users each with a custom array just under the entry cap",
            format!(
                r#"{head}{}],"channels":[]}}"#,
                (0..120)
                    .map(|i| format!(r#"{{"id":"u{i}","x":[{}]}}"#, zeros(120_000)))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ),
        (
            "a channel of 30 MB of non-string members",
            format!(r#"{head}],"channels":[{{"cid":"t:x","members":[{}]}}]}}"#, zeros(units)),
        ),
    ];
    for (what, text) in crafted {
        let path = dir.path().join("crafted.json");
        std::fs::write(&path, &text).unwrap();
        let (peak, outcome) = load_in_child(&path);
        println!("{what}: {} MB file, peak RSS {} MB, {outcome}", text.len() / MB, peak / MB);
        assert!(outcome.contains("Err") && outcome.contains("Json"), "{what}: {outcome}");
        assert!(peak < 200 * MB, "{what}: peak RSS {} MB for a {} MB file", peak / MB, text.len() / MB);
    }
}
