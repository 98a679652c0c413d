//! Crash safety of `save` and robustness of `load`.
//!
//! `save_survives_sigkill_at_random_moments` re-executes this test binary as a child
//! (`PRESENCE_CRASH_CHILD` set) that builds a large engine and saves it in a loop, each
//! save with a new generation number; the parent kills it with SIGKILL after a random
//! delay, then loads the file into a fresh engine. The file must always load, and hold
//! either the snapshot of the last save that completed or the one that was being written:
//! never a mix, never corrupt, never an older one.
//!
//! The other tests feed `load` truncated, corrupted, wrong-version, wrong-shape and missing
//! files: each fails with `ErrorKind::Io` or `ErrorKind::Json` and a message, and the
//! engine stays exactly as it was.
mod common;

use common::Rng;
use presence::Counts;
use presence::{ConnectionId, Engine, ErrorKind};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "PRESENCE_CRASH_CHILD";
const USERS: usize = 3000;
const CHANNELS: usize = 40;
const KILLS: usize = 60;

/// The engine the child saves: `first` (created first, so saved first), many users with
/// custom data, channels with members, and `last` (saved last). Every save writes the
/// generation into `first`, `last` and channel `meta:gen`, so a torn or mixed file shows.
fn build_large_engine() -> Engine {
    let e = Engine::from_json(None).unwrap();
    e.upsert_user_json(r#"{"id":"first","gen":0}"#).unwrap();
    let blob = "x".repeat(120);
    for i in 0..USERS {
        e.upsert_user_json(
            &json!({"id": format!("user{i:05}"), "status": "here", "name": format!("User {i}"), "blob": blob})
                .to_string(),
        )
        .unwrap();
    }
    for ch in 0..CHANNELS {
        let members: Vec<String> = (0..100).map(|k| format!("user{:05}", (ch * 97 + k) % USERS)).collect();
        e.upsert_channel_json(&json!({"cid": format!("team:c{ch}"), "members": members}).to_string())
            .unwrap();
    }
    e.upsert_channel_json(r#"{"cid":"meta:gen","gen":0}"#).unwrap();
    e.upsert_user_json(r#"{"id":"last","gen":0}"#).unwrap();
    e
}

fn set_generation(e: &Engine, gen: u64) {
    e.upsert_user_json(&json!({"id": "first", "gen": gen}).to_string()).unwrap();
    e.upsert_channel_json(&json!({"cid": "meta:gen", "gen": gen}).to_string()).unwrap();
    e.upsert_user_json(&json!({"id": "last", "gen": gen}).to_string()).unwrap();
}

/// The child: save forever, reporting each completed generation on stdout.
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return; // Only runs when re-executed by the parent.
    };
    let base: u64 = std::env::var("PRESENCE_CRASH_BASE").unwrap().parse().unwrap();
    let e = build_large_engine();
    println!("@@ready");
    for gen in base + 1.. {
        set_generation(&e, gen);
        e.save(&path).unwrap();
        println!("@@saved {gen}");
    }
}

fn temp_file_exists(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| e.unwrap().file_name() != "snapshot.json")
}

/// Loads `path` into a fresh engine and answers its generation, checking the snapshot is
/// whole and consistent.
fn load_generation(path: &Path) -> Result<u64, String> {
    let e = Engine::from_json(None).unwrap();
    e.load(path).map_err(|err| format!("load failed: {err}"))?;
    let Counts { users, connections, channels } = e.counts();
    if (users, connections, channels) != (USERS + 2, 0, CHANNELS + 1) {
        return Err(format!("wrong counts {:?}", (users, connections, channels)));
    }
    let gen_of_user = |id: &str| e.get_user(ConnectionId::HOST, id).unwrap()["gen"].as_u64().unwrap();
    let meta = e.query_channels(ConnectionId::HOST, r#"{"filter_conditions": {"cid": "meta:gen"}}"#).unwrap();
    let gen_of_channel = meta["channels"][0]["channel"]["gen"].as_u64().unwrap();
    let (first, last) = (gen_of_user("first"), gen_of_user("last"));
    if first != last || first != gen_of_channel {
        return Err(format!("mixed snapshot: first {first}, channel {gen_of_channel}, last {last}"));
    }
    let sample = e.get_user(ConnectionId::HOST, "user01234").unwrap();
    if sample["online"] != json!(false) || sample["status"] != json!("here") {
        return Err(format!("bad user {sample}"));
    }
    Ok(first)
}

/// A child process saving a large engine in a loop, and the lines it prints.
struct SavingChild {
    child: Child,
    lines: mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<()>,
    /// `@@saved` lines read before the kill (by the calibration); they still count.
    seen: Vec<String>,
}

impl SavingChild {
    /// Starts a child saving generations `base + 1, base + 2, ...` to `path`; returns once
    /// its engine is built and the saving begins.
    fn start(path: &Path, base: u64) -> SavingChild {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["crash_child", "--exact", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, path)
            .env("PRESENCE_CRASH_BASE", base.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.ends_with("@@ready") => break,
                Ok(_) => {}
                Err(_) => assert!(Instant::now() < deadline, "child never got ready"),
            }
        }
        SavingChild { child, lines, reader, seen: Vec::new() }
    }

    /// The time between two completed saves of this child.
    fn time_two_saves(&mut self) -> Duration {
        let mut stamps = Vec::new();
        while stamps.len() < 2 {
            let line = self.lines.recv_timeout(Duration::from_secs(60)).expect("child stopped saving");
            if line.contains("@@saved") {
                stamps.push(Instant::now());
                self.seen.push(line);
            }
        }
        stamps[1] - stamps[0]
    }

    /// SIGKILL; answers the generations whose saves completed, in order.
    fn kill(mut self) -> Vec<u64> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.reader.join().unwrap();
        self.seen
            .drain(..)
            .chain(self.lines.try_iter())
            .filter_map(|l| l.split("@@saved ").nth(1).and_then(|g| g.trim().parse().ok()))
            .collect()
    }
}

/// Sleeps until a random moment to kill at: on even kills anywhere in the save loop
/// (building the document, writing, renaming); on odd kills aimed at the write itself,
/// within a few hundred microseconds of the temporary file appearing.
fn sleep_until_a_random_moment(kill: usize, rng: &mut Rng, save_time: Duration, dir: &Path) {
    if kill % 2 == 0 {
        let window = save_time.as_micros() as usize * 3;
        std::thread::sleep(Duration::from_micros(rng.below(window) as u64));
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !temp_file_exists(dir) {
        assert!(Instant::now() < deadline, "no temporary file ever appeared");
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_micros(rng.below(400) as u64));
}

/// Removes the temporary files interrupted saves left behind; answers how many there were.
fn remove_temp_files(dir: &Path) -> usize {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "snapshot.json" {
            removed += 1;
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    removed
}

#[test]
fn save_survives_sigkill_at_random_moments() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snapshot.json");
    let mut rng = Rng::seeded();
    let seed = rng.0;
    let started = Instant::now();
    // The generation the file holds, once known.
    let mut on_disk: Option<u64> = None;
    let mut save_time = Duration::ZERO;
    let (mut mid_write_kills, mut completed_saves) = (0, 0u64);
    let mut outcomes = [0usize; 2]; // [previous/last completed, the one being written]
    for kill in 0..KILLS {
        let base = (kill as u64 + 1) * 1_000_000;
        let mut child = SavingChild::start(&path, base);
        if kill == 0 {
            save_time = child.time_two_saves();
        }
        sleep_until_a_random_moment(kill, &mut rng, save_time, dir.path());
        let saved = child.kill();
        completed_saves += saved.len() as u64;
        // Acceptable: the last completed save of this child (or, with none, what was on
        // disk before), or the save that was in progress when the kill landed.
        let last_completed = saved.last().copied();
        let previous = last_completed.or(on_disk);
        let in_progress = last_completed.map_or(base + 1, |g| g + 1);
        match (path.exists(), previous) {
            (false, None) => {}
            (false, Some(p)) => panic!("kill {kill}: snapshot {p} vanished (seed {seed})"),
            (true, _) => {
                let gen = load_generation(&path)
                    .unwrap_or_else(|e| panic!("kill {kill}: snapshot unusable: {e} (seed {seed})"));
                assert!(
                    Some(gen) == previous || gen == in_progress,
                    "kill {kill}: file holds generation {gen}, expected {previous:?} or {in_progress} (seed {seed})"
                );
                outcomes[usize::from(Some(gen) != previous)] += 1;
                on_disk = Some(gen);
            }
        }
        // Temporary files of interrupted saves stay behind (the target is intact).
        mid_write_kills += remove_temp_files(dir.path());
    }
    assert!(on_disk.is_some(), "no save ever completed");
    eprintln!(
        "crash safety: {KILLS} SIGKILLs (seed {seed}), {completed_saves} saves completed, \
         {mid_write_kills} kills landed mid-write (left a temporary file), \
         file held the last completed save {} times and the one in progress {} times, \
         ~{:?} per save, {:?} in total",
        outcomes[0],
        outcomes[1],
        save_time,
        started.elapsed()
    );
    assert!(mid_write_kills >= KILLS / 4, "too few kills landed mid-write: {mid_write_kills}");
}

// ---------------------------------------------------------------------------------------
// Bad files

/// An engine with some state and no connections, and its saved snapshot text.
fn populated() -> (Engine, String, tempfile::TempDir) {
    let e = Engine::from_json(Some(r#"{"clock":"manual","start_time_ms":1000000}"#)).unwrap();
    e.upsert_user_json(r#"{"id":"alice","status":"busy","name":"Alice"}"#).unwrap();
    e.upsert_user_json(r#"{"id":"bob","invisible":true}"#).unwrap();
    let c = e.connect_json(r#"{"id":"carol"}"#).unwrap();
    e.set_time(2_000_000).unwrap();
    e.disconnect(c).unwrap();
    e.upsert_channel_json(r#"{"cid":"team:red","members":["alice","bob","carol"],"color":"red","last_message_at":"2021-01-01T00:00:00Z"}"#)
        .unwrap();
    e.upsert_channel_json(r#"{"cid":"dm:x","members":["alice"]}"#).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    e.save(&good).unwrap();
    let text = std::fs::read_to_string(&good).unwrap();
    (e, text, dir)
}

fn dump(e: &Engine) -> Value {
    json!({
        "users": e.query_users(ConnectionId::HOST, r#"{"sort": {"id": 1}, "limit": 100}"#).unwrap(),
        "channels": e.query_channels(ConnectionId::HOST, r#"{"sort": {"cid": 1}, "limit": 100}"#).unwrap(),
        "counts": format!("{:?}", e.counts()),
    })
}

/// Loads `bytes` from a file into `e`; a failure must be Io or Json, with a message, and
/// leave `e` unchanged. Answers whether the load succeeded.
fn load_bytes(e: &Engine, dir: &Path, name: &str, bytes: &[u8], what: &str) -> Result<(), ErrorKind> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let before = dump(e);
    match e.load(&path) {
        Ok(()) => Ok(()),
        Err(err) => {
            assert!(
                matches!(err.kind(), ErrorKind::Io | ErrorKind::Json),
                "{what}: load failed with {:?}, expected Io or Json: {err}",
                err.kind()
            );
            assert!(!err.message().is_empty(), "{what}: no message");
            assert_eq!(dump(e), before, "{what}: a failed load changed the engine");
            Err(err.kind())
        }
    }
}

#[test]
fn a_saved_snapshot_round_trips() {
    let (e, text, dir) = populated();
    let fresh = Engine::from_json(Some(r#"{"clock":"manual","start_time_ms":1000000}"#)).unwrap();
    fresh.load(dir.path().join("good.json")).unwrap();
    assert_eq!(dump(&fresh), dump(&e));
    // Loading over existing state replaces it.
    let other = Engine::from_json(None).unwrap();
    other.upsert_user_json(r#"{"id":"zed"}"#).unwrap();
    load_bytes(&other, dir.path(), "again.json", text.as_bytes(), "good file").unwrap();
    assert_eq!(dump(&other), dump(&e));
}

#[test]
fn truncated_files_fail_with_json_and_change_nothing() {
    let (e, text, dir) = populated();
    let bytes = text.as_bytes();
    let mut cuts: Vec<usize> = vec![0, 1, 2, bytes.len() / 2, bytes.len() - 1];
    cuts.extend((3..bytes.len() - 1).step_by(7));
    for cut in cuts {
        let r = load_bytes(&e, dir.path(), "cut.json", &bytes[..cut], &format!("cut at {cut}"));
        assert_eq!(r, Err(ErrorKind::Json), "cut at {cut} of {}", bytes.len());
    }
}

#[test]
fn wrong_version_and_wrong_shape_fail_with_json_and_change_nothing() {
    let (e, text, dir) = populated();
    let doc: Value = serde_json::from_str(&text).unwrap();
    // The saved document with one thing changed.
    let edit = |change: fn(&mut Value)| {
        let mut d = doc.clone();
        change(&mut d);
        d
    };
    let variants: Vec<(&str, Value)> = vec![
        ("version 2", edit(|d| d["version"] = json!(2))),
        ("version 0", edit(|d| d["version"] = json!(0))),
        ("version as string", edit(|d| d["version"] = json!("1"))),
        (
            "no version",
            edit(|d| {
                d.as_object_mut().unwrap().remove("version");
            }),
        ),
        ("other format", edit(|d| d["format"] = json!("something-else"))),
        ("users not an array", edit(|d| d["users"] = json!({"alice": {}}))),
        (
            "channels missing",
            edit(|d| {
                d.as_object_mut().unwrap().remove("channels");
            }),
        ),
        ("a user is a string", edit(|d| d["users"][0] = json!("alice"))),
        ("last_active is a number", edit(|d| d["users"][0]["last_active"] = json!(5))),
        ("members not an array", edit(|d| d["channels"][0]["members"] = json!("alice"))),
        (
            "duplicate user",
            edit(|d| {
                let first = d["users"][0].clone();
                d["users"].as_array_mut().unwrap().push(first);
            }),
        ),
        ("an array", json!([])),
        ("null", json!(null)),
    ];
    for (what, v) in variants {
        let r = load_bytes(&e, dir.path(), "bad.json", v.to_string().as_bytes(), what);
        assert_eq!(r, Err(ErrorKind::Json), "{what}");
    }
    for (what, bytes) in [
        ("not UTF-8", &b"\xff\xfe\x00{"[..]),
        ("binary", &[0u8; 64][..]),
        ("trailing garbage", format!("{text}xyz").into_bytes().leak() as &[u8]),
    ] {
        let r = load_bytes(&e, dir.path(), "bad.json", bytes, what);
        assert_eq!(r, Err(ErrorKind::Json), "{what}");
    }
}

/// Corruption inside the document that breaks a rule of the data model (a user id with a
/// space, a bad cid, an over-long status): a file that cannot be loaded answers Io or Json,
/// whatever broke it.
#[test]
fn corrupted_content_fails_with_json_and_changes_nothing() {
    let (e, text, dir) = populated();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let mut problems = Vec::new();
    let variants: Vec<(&str, Value)> = vec![
        ("user id with a space", {
            let mut d = doc.clone();
            d["users"][0]["id"] = json!("ali ce");
            d
        }),
        ("empty user id", {
            let mut d = doc.clone();
            d["users"][0]["id"] = json!("");
            d
        }),
        ("managed field online", {
            let mut d = doc.clone();
            d["users"][0]["online"] = json!(true);
            d
        }),
        ("bad timestamp", {
            let mut d = doc.clone();
            d["users"][0]["created_at"] = json!("yesterday");
            d
        }),
        ("bad cid", {
            let mut d = doc.clone();
            d["channels"][0]["cid"] = json!("Team:red");
            d
        }),
        ("status too long", {
            let mut d = doc.clone();
            d["users"][0]["status"] = json!("s".repeat(2000));
            d
        }),
    ];
    for (what, v) in variants {
        let path = dir.path().join("corrupt.json");
        std::fs::write(&path, v.to_string()).unwrap();
        let before = dump(&e);
        match e.load(&path) {
            Ok(()) => problems.push(format!("{what}: loaded")),
            Err(err) => {
                assert_eq!(dump(&e), before, "{what}: a failed load changed the engine");
                assert!(!err.message().is_empty());
                if !matches!(err.kind(), ErrorKind::Io | ErrorKind::Json) {
                    problems.push(format!("{what}: {:?} ({})", err.kind(), err.message()));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "load of corrupted content must fail with Io or Json:\n{}",
        problems.join("\n")
    );
}

#[test]
fn random_byte_corruption_never_half_loads() {
    // Flip bytes at many positions: each load either fails with Io/Json leaving the engine
    // unchanged (checked in load_bytes), or the corruption was inside a value and a whole,
    // consistent snapshot loads.
    let (e, text, dir) = populated();
    let mut rng = Rng(0x5eed_1234_9876_abcd);
    let mut failed = 0;
    let mut loaded = 0;
    let mut other_kinds = Vec::new();
    for i in 0..600 {
        let mut bytes = text.clone().into_bytes();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(bytes.len());
            bytes[at] = [b'"', b'{', b']', b',', b'\\', b' ', 0xC3, b'x', b'0'][rng.below(9)];
        }
        let path = dir.path().join("flip.json");
        std::fs::write(&path, &bytes).unwrap();
        let target = Engine::from_json(Some(r#"{"clock":"manual","start_time_ms":1000000}"#)).unwrap();
        target.load(dir.path().join("good.json")).unwrap();
        let before = dump(&target);
        match target.load(&path) {
            Ok(()) => {
                loaded += 1;
                // Whatever loaded is a usable engine.
                let connections = target.counts().connections;
                assert_eq!(connections, 0);
                target.connect_json(r#"{"id":"probe"}"#).unwrap();
            }
            Err(err) => {
                failed += 1;
                assert_eq!(dump(&target), before, "flip {i}: a failed load changed the engine");
                if !matches!(err.kind(), ErrorKind::Io | ErrorKind::Json) {
                    other_kinds.push(format!("{:?}: {}", err.kind(), err.message()));
                }
            }
        }
    }
    let _ = e;
    eprintln!("byte flips: {failed} rejected, {loaded} loaded (flip inside a value)");
    other_kinds.sort();
    other_kinds.dedup();
    assert!(
        other_kinds.is_empty(),
        "corrupted files rejected with kinds other than Io/Json:\n{}",
        other_kinds.join("\n")
    );
}

#[test]
fn missing_and_unreadable_paths_fail_with_io_and_change_nothing() {
    let (e, _text, dir) = populated();
    let before = dump(&e);
    let paths: Vec<PathBuf> = vec![
        dir.path().join("does-not-exist.json"),
        dir.path().join("no-such-dir").join("x.json"),
        dir.path().to_path_buf(), // a directory
    ];
    for p in paths {
        let err = e.load(&p).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "{}: {err}", p.display());
        assert!(!err.message().is_empty());
        assert_eq!(dump(&e), before);
    }
    // Saving where it cannot write is Io too, and leaves no stray file behind.
    let err = e.save(dir.path().join("no-such-dir").join("x.json")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    let err = e.save(dir.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "saving onto a directory: {err}");
}

#[test]
fn load_needs_an_engine_without_connections_and_changes_nothing_otherwise() {
    let (e, _text, dir) = populated();
    let c = e.connect_json(r#"{"id":"dave"}"#).unwrap();
    let before = dump(&e);
    let err = e.load(dir.path().join("good.json")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::State);
    assert_eq!(dump(&e), before);
    e.disconnect(c).unwrap();
    e.load(dir.path().join("good.json")).unwrap();
    // Everyone starts offline; dave (not in the file) is gone.
    assert_eq!(e.get_user(ConnectionId::HOST, "dave").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(e.get_user(ConnectionId::HOST, "carol").unwrap()["online"], json!(false));
}
