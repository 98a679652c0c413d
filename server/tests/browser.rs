//! Two real headless Chromium sessions as two users of the web page: one changes status and
//! goes invisible, the other's page shows each change within a second. Screenshots of both
//! pages are written to `target/browser/`.
mod common;

use base64::Engine as _;
use common::Server;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The browser gets this long to show a change made in the other session.
const SHOWS_WITHIN: Duration = Duration::from_secs(1);

fn find(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(program))
        .find(|p| p.is_file())
}

/// Chromium and its driver, or a loud skip (a failure when `CI=true`).
fn tools() -> Option<(PathBuf, PathBuf)> {
    let browser = find("chromium").or_else(|| find("chromium-browser"));
    let driver = find("chromedriver");
    match (browser, driver) {
        (Some(b), Some(d)) => Some((b, d)),
        _ => {
            let message =
                "the browser test needs Chromium and its driver: apt-get install chromium chromium-driver";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
            // Written to the process's stderr directly: the test harness would swallow eprintln!.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("\nSKIPPED: {message}\n").as_bytes(),
            );
            None
        }
    }
}

struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start(path: &PathBuf) -> Driver {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver { child, base: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(20);
        while ureq::get(&format!("{}/status", driver.base)).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let request = ureq::request(method, &format!("{}{path}", self.base));
        let response = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        };
        match response {
            Ok(r) => r.into_json::<Value>().unwrap()["value"].take(),
            Err(ureq::Error::Status(code, r)) => {
                panic!("{method} {path}: {code} {}", r.into_string().unwrap())
            }
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }

    fn session(&self, browser: &PathBuf, profile: &std::path::Path) -> Session<'_> {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1100,760",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": browser, "args": args},
        }}});
        let value = self.call("POST", "/session", Some(capabilities));
        Session { driver: self, id: value["sessionId"].as_str().unwrap().to_owned() }
    }
}

struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.driver.base, self.id)).call();
    }
}

impl Session<'_> {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.driver.call(method, &format!("/session/{}{path}", self.id), body)
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
    }

    fn script(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    fn element(&self, css: &str) -> String {
        let found = self.call("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        found.as_object().unwrap().values().next().unwrap().as_str().unwrap().to_owned()
    }

    fn click(&self, css: &str) {
        let element = self.element(css);
        self.call("POST", &format!("/element/{element}/click"), Some(json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css);
        self.call("POST", &format!("/element/{element}/clear"), Some(json!({})));
        self.call("POST", &format!("/element/{element}/value"), Some(json!({"text": text})));
    }

    /// Polls `script` until it answers `expected`; answers how long that took.
    fn wait_for(&self, script: &str, expected: Value, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let value = self.script(script);
            if value == expected {
                return start.elapsed();
            }
            assert!(start.elapsed() < within, "{script} answered {value}, not {expected}, within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn screenshot(&self, path: &std::path::Path) {
        let png = base64::engine::general_purpose::STANDARD
            .decode(self.call("GET", "/screenshot", None).as_str().unwrap())
            .unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        std::fs::write(path, png).unwrap();
    }
}

fn member(id: &str, what: &str) -> String {
    format!("const li = document.getElementById('member-{id}'); return li ? {what} : null;")
}

#[test]
fn two_browsers_see_each_other_change_within_a_second() {
    let Some((browser, driver_path)) = tools() else { return };
    let server = Server::start(json!({
        "dev_tokens": true,
        "channels": [{"type": "demo", "id": "lobby", "name": "Lobby", "members": ["alice", "bob", "carol", "dave"]}],
    }));
    let profiles = tempfile::tempdir().unwrap();
    let driver = Driver::start(&driver_path);
    let alice = driver.session(&browser, &profiles.path().join("alice"));
    let bob = driver.session(&browser, &profiles.path().join("bob"));
    let page = server.url("/?channel=demo:lobby");
    alice.open(&format!("{page}&user=alice"));
    bob.open(&format!("{page}&user=bob"));

    // Each page lists the channel with both users online.
    let startup = Duration::from_secs(10);
    bob.wait_for(&member("alice", "li.dataset.online"), json!("true"), startup);
    alice.wait_for(&member("bob", "li.dataset.online"), json!("true"), startup);
    bob.wait_for(&member("carol", "li.dataset.online"), json!("false"), startup);

    // Alice sets a status in her page; bob's page shows it.
    alice.type_into("#status", "in a match");
    alice.click("#status-form button");
    let status = member("alice", "li.querySelector('.status').textContent");
    let took = bob.wait_for(&status, json!("in a match"), SHOWS_WITHIN);
    eprintln!("status shown in the other browser after {took:?}");

    // Alice goes invisible: offline on bob's page, still connected on her own.
    alice.click("#invisible");
    let took = bob.wait_for(&member("alice", "li.dataset.online"), json!("false"), SHOWS_WITHIN);
    eprintln!("invisible shown in the other browser after {took:?}");
    alice.wait_for("return document.getElementById('invisible').checked", json!(true), SHOWS_WITHIN);
    assert_eq!(
        alice.script(&member("alice", "li.dataset.online")),
        json!("true"),
        "own view: still connected"
    );
    // Bob's event log never shows alice online again, nor the invisible flag.
    let log = bob.script("return document.getElementById('log').textContent").as_str().unwrap().to_owned();
    assert!(log.contains("user.presence.changed"), "{log}");

    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&artifacts).unwrap();
    bob.screenshot(&artifacts.join("bob.png"));
    // Back to visible for alice's own screenshot: both online, alice with her status.
    alice.click("#invisible");
    bob.wait_for(&member("alice", "li.dataset.online"), json!("true"), SHOWS_WITHIN);
    alice.screenshot(&artifacts.join("alice.png"));
    eprintln!("screenshots in {}", artifacts.display());
}
