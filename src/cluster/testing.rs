//! A real `redis-server` for tests, started on a free loopback port and killed on drop.
//! Standard library only, so integration tests include this file as a module too.
#![allow(dead_code)]
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A small deterministic generator (xorshift64) for the cluster's randomized tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// In `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

/// Starts a server, or answers `None` after a loud message when `redis-server` is not
/// installed. Under CI (`CI=true`) a missing server fails the test instead.
pub fn start_redis() -> Option<RedisServer> {
    if Command::new("redis-server").arg("--version").stdout(Stdio::null()).status().is_err() {
        let message = "redis-server is not on PATH (apt-get install redis-server)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{message}; CI must install it (.ci/run)");
        }
        // Straight to the process's stderr: the test harness captures eprintln!.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("\n*** SKIPPED (not in CI): {message}; cluster tests against Redis did not run ***\n")
                .as_bytes(),
        );
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = RedisServer { port, child: None };
    server.start();
    Some(server)
}

impl RedisServer {
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn start(&mut self) {
        std::fs::create_dir_all(self.dir()).unwrap();
        let child = Command::new("redis-server")
            .arg("--dir")
            .arg(self.dir())
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command(&["PING"]).as_deref() != Some("+PONG") {
            assert!(Instant::now() < deadline, "redis-server did not answer on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server and starts a fresh one on the same port: every key is lost.
    pub fn restart_empty(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(self.dir());
        self.start();
    }

    /// Where the server saves and loads its data (only on [`Self::save`]).
    fn dir(&self) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("presence-redis-{}", self.port))
    }

    /// Saves the data now, as a periodic `save` would.
    pub fn save(&mut self) {
        assert_eq!(self.command(&["SAVE"]).as_deref(), Some("+OK"));
    }

    /// Kills the server and starts it again on the same port from its last [`Self::save`]:
    /// every later change is lost.
    pub fn restart_from_save(&mut self) {
        self.kill();
        self.start();
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends one command and answers the first line of the reply (`None` when the server
    /// cannot be reached).
    pub fn command(&self, args: &[&str]) -> Option<String> {
        self.reply(args).map(|(first, _)| first)
    }

    /// A field of `INFO` (such as `total_commands_processed`) as a number.
    pub fn info_number(&self, field: &str) -> Option<u64> {
        self.info(field)?.parse().ok()
    }

    /// A field of `INFO` (such as `used_cpu_user`) as text.
    pub fn info(&self, field: &str) -> Option<String> {
        let (_, body) = self.reply(&["INFO"])?;
        body.lines().find_map(|l| Some(l.strip_prefix(field)?.strip_prefix(':')?.trim().to_string()))
    }

    /// Sends one command; answers the first line of the reply and, for a bulk string, its body.
    pub fn reply(&self, args: &[&str]) -> Option<(String, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for a in args {
            request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        stream.write_all(request.as_bytes()).ok()?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let first = line.trim_end().to_string();
        let mut body = String::new();
        if let Some(len) = first.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
            let mut bytes = vec![0; len + 2];
            std::io::Read::read_exact(&mut reader, &mut bytes).ok()?;
            body = String::from_utf8_lossy(&bytes[..len]).into_owned();
        }
        Some((first, body))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(self.dir());
    }
}
