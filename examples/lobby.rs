//! A game lobby over one simulated evening, on a manual clock.
//!
//! Two hundred players log in between 18:00 and 21:00, play for a while and leave. Some
//! bring a second device, some go invisible and come back, statuses change between
//! "in lobby", "in match" and "afk", a few clients crash and stop heartbeating (the engine
//! times them out), and at 20:30 a network hiccup drops a third of all connections, which
//! reconnect within seconds: the offline grace hides that storm from everyone.
//!
//! A lobby bot watches `lobby:main` with presence and drains its queue every step, like
//! a game server forwarding presence to clients. Each presence event is printed with the
//! engine call that caused it; the run ends with who is online and when each player was
//! last active.
//!
//! Run: `cargo run --release --example lobby` (about a screen), or add `-- --long` for
//! every event and every player.
use presence::{CloseReason, ConnectionId, Engine, EventKind, ListenerFilter, UserPatch, View};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
/// 2026-11-28T18:00:00Z.
const EVENING: i64 = 1_795_888_800_000;
const STEP: i64 = 10 * SECOND;
const HEARTBEAT_EVERY: i64 = 20 * SECOND;

/// A small deterministic generator, so every run prints the same evening.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What one player will do tonight.
struct Player {
    name: String,
    arrives: i64,
    leaves: i64,
    /// Joins from a phone as well, for this span.
    phone: Option<(i64, i64)>,
    /// Goes invisible for this span.
    hides: Option<(i64, i64)>,
    /// The client freezes at this moment: heartbeats stop, the connection is left open.
    crashes_at: Option<i64>,
    connections: Vec<ConnectionId>,
    crashed: bool,
}

/// By default, event lines printed per (call, kind of line); `--long` prints them all.
const SHORT_PER_KIND: u32 = 3;
/// Players listed in the final table by default.
const SHORT_TABLE: usize = 8;

/// Time of day (the evening starts at 18:00 UTC); midnight is 00:00:00.
fn clock(ms: i64) -> String {
    let s = ((ms - EVENING) / SECOND + 18 * 3600).rem_euclid(24 * 3600);
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

thread_local! {
    /// The engine call being made, so the listener (which runs on this thread, before the
    /// call returns: `"dispatch": "immediate"`) can print what caused each event.
    static CALL: Cell<&'static str> = const { Cell::new("") };
}

/// Notes which engine call comes next.
fn calling(call: &'static str) {
    CALL.with(|c| c.set(call));
}

fn legend() {
    println!("The engine calls behind this evening; each event line names the one that caused it");
    println!("(by default only the first few lines of each kind are printed):");
    for (call, what) in [
        ("Engine::from_json(config)", "manual clock, 60 s heartbeat timeout, 15 s offline grace"),
        ("add_listener(ListenerFilter::all(), f)", "a host listener: prints the lines below"),
        ("upsert_channel_json, add_members", "lobby:main with every player as a member"),
        ("watch_channel(bot, \"lobby:main\", true)", "the bot follows every member's presence"),
        ("connect(&UserPatch), disconnect(conn)", "players come and go, some on two devices"),
        ("heartbeat(conn)", "every 20 s; a crashed client stops sending them"),
        ("set_invisible(id, bool), set_status(id, s)", "sticky user state"),
        ("set_time(ms), tick()", "time moves; tick closes timed-out connections, ends graces"),
        ("poll_events(bot, 256)", "the bot drains its queue every 10 s"),
        ("user(id)", "the typed user record, for the final table"),
    ] {
        println!("  {call:<44} {what}");
    }
    println!();
}

fn plan_evening(rng: &mut Rng) -> Vec<Player> {
    const ADJECTIVES: [&str; 20] = [
        "amber", "brisk", "calm", "dusky", "eager", "fierce", "gentle", "hazy", "icy", "jolly", "keen",
        "lucky", "mellow", "nimble", "odd", "proud", "quiet", "rapid", "sly", "tidy",
    ];
    const ANIMALS: [&str; 10] = ["fox", "owl", "lynx", "crow", "wolf", "hare", "moth", "newt", "yak", "wren"];
    let mut players = Vec::new();
    for a in ADJECTIVES {
        for b in ANIMALS {
            let arrives = EVENING + rng.below(180) as i64 * MINUTE + rng.below(60) as i64 * SECOND;
            let leaves = arrives + (30 + rng.below(300)) as i64 * MINUTE;
            let phone = rng.chance(15).then(|| {
                let from = arrives + rng.below(30) as i64 * MINUTE;
                (from, from + (10 + rng.below(40)) as i64 * MINUTE)
            });
            let hides = rng.chance(10).then(|| {
                let from = arrives + (5 + rng.below(20)) as i64 * MINUTE;
                (from, from + (5 + rng.below(20)) as i64 * MINUTE)
            });
            let crashes_at = rng.chance(5).then(|| arrives + (20 + rng.below(20)) as i64 * MINUTE);
            players.push(Player {
                name: format!("{a}_{b}"),
                arrives,
                leaves,
                phone,
                hides,
                crashes_at,
                connections: Vec::new(),
                crashed: false,
            });
        }
    }
    players
}

fn within(span: Option<(i64, i64)>, t: i64) -> bool {
    span.is_some_and(|(from, to)| from <= t && t < to)
}

fn main() -> presence::Result<()> {
    let long = std::env::args().skip(1).any(|a| a == "--long");
    legend();
    let engine = Arc::new(Engine::from_json(Some(&format!(
        r#"{{"clock":"manual","start_time_ms":{EVENING},"connection_timeout_ms":60000,"offline_grace_ms":15000}}"#
    )))?);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut players = plan_evening(&mut rng);

    // Print every presence change and every connection the engine closed on its own.
    let printed = Arc::new(AtomicU64::new(0));
    let count = printed.clone();
    let hidden = Arc::new(AtomicU64::new(0));
    let skipped = hidden.clone();
    let per_kind: Mutex<BTreeMap<(&str, &str), u32>> = Mutex::new(BTreeMap::new());
    engine.add_listener(ListenerFilter::all(), move |event| {
        let (kind, line) = match &event.kind {
            EventKind::PresenceChanged { user } => {
                count.fetch_add(1, Ordering::Relaxed);
                let seen = if user.online(View::Public) { "online " } else { "offline" };
                let status = user.status.as_deref().map(|s| format!("  status: {s}")).unwrap_or_default();
                let hidden =
                    if user.invisible && user.connected { "  (invisible, still connected)" } else { "" };
                (seen, format!("{:<14} {seen}{status}{hidden}", user.id))
            }
            EventKind::ConnectionClosed { connection, reason, user }
                if *reason != CloseReason::Disconnect =>
            {
                ("closed", format!("{:<14} connection {connection} closed: {}", user.id, reason.as_str()))
            }
            _ => return,
        };
        let call = CALL.with(Cell::get);
        let mut seen = per_kind.lock().unwrap_or_else(|e| e.into_inner());
        let printed_of_kind = seen.entry((call, kind)).or_default();
        *printed_of_kind += 1;
        if long || *printed_of_kind <= SHORT_PER_KIND {
            println!("[{}] {line:<58} <- {call}", clock(event.created_at));
        } else {
            skipped.fetch_add(1, Ordering::Relaxed);
        }
    })?;

    let ids: Vec<String> = players.iter().map(|p| p.name.clone()).collect();
    engine.upsert_channel_json(r#"{"type":"lobby","id":"main","name":"Main lobby"}"#)?;
    engine.add_members("lobby:main", &ids)?;
    println!("== {} players tonight; a lobby bot watches lobby:main with presence ==", players.len());
    calling("connect_json");
    let bot = engine.connect_json(r#"{"id":"lobby_bot","status":"watching"}"#)?;
    engine.watch_channel(bot, "lobby:main", true)?;
    let mut bot_received = 0usize;
    let mut storm_done = false;
    let end = EVENING + 6 * 60 * MINUTE;
    let mut now = EVENING;
    while now <= end {
        engine.set_time(now)?;
        if !storm_done && now >= EVENING + 150 * MINUTE {
            storm_done = true;
            println!("[{}] -- network hiccup: a third of all connections drop and reconnect --", clock(now));
            let before = printed.load(Ordering::Relaxed);
            let mut dropped = 0;
            for p in players.iter_mut().filter(|p| !p.crashed) {
                for c in p.connections.iter_mut() {
                    if rng.chance(33) {
                        calling("disconnect");
                        engine.disconnect(*c)?;
                        calling("connect_json");
                        *c = engine.connect_json(&format!(r#"{{"id":"{}"}}"#, p.name))?;
                        dropped += 1;
                    }
                }
            }
            println!(
                "[{}] -- {dropped} connections dropped and came back within the offline grace: {} presence events --",
                clock(now),
                printed.load(Ordering::Relaxed) - before
            );
        }
        for p in players.iter_mut() {
            let playing = p.arrives <= now && now < p.leaves;
            if p.crashed {
                continue;
            }
            if p.crashes_at.is_some_and(|t| now >= t) && !p.connections.is_empty() {
                p.crashed = true; // heartbeats stop; the timeout will close it
                continue;
            }
            let wanted = match (playing, within(p.phone, now)) {
                (false, _) => 0,
                (true, false) => 1,
                (true, true) => 2,
            };
            while p.connections.len() < wanted {
                let mut patch = UserPatch::id(p.name.as_str());
                if p.connections.is_empty() {
                    patch.status = Some(Some("in lobby".into()));
                }
                calling("connect");
                p.connections.push(engine.connect(&patch)?);
            }
            while p.connections.len() > wanted {
                calling("disconnect");
                engine.disconnect(p.connections.pop().expect("non-empty"))?;
            }
            if !playing {
                continue;
            }
            if (now - p.arrives) % HEARTBEAT_EVERY < STEP {
                for &c in &p.connections {
                    engine.heartbeat(c)?;
                }
            }
            let hidden = within(p.hides, now);
            if engine.user(&p.name)?.invisible != hidden {
                calling("set_invisible");
                engine.set_invisible(&p.name, hidden)?;
            }
            if rng.below(1000) < 3 {
                let status = ["in lobby", "in match", "afk"][rng.below(3) as usize];
                calling("set_status");
                engine.set_status(&p.name, Some(status))?;
            }
        }
        calling("tick");
        engine.tick()?;
        engine.heartbeat(bot)?;
        loop {
            let batch = engine.poll_events(bot, 256)?;
            if batch.is_empty() {
                break;
            }
            bot_received += batch.len();
        }
        now += STEP;
    }
    let hidden_lines = hidden.load(Ordering::Relaxed);
    if hidden_lines > 0 {
        println!("... and {hidden_lines} more event lines like these (add `-- --long` to see them all)");
    }

    println!();
    println!("== {}: who is online, and when each player was last active ==", clock(end));
    println!("{:<14} {:<8} {:<10} {:<9} last active", "player", "online", "status", "invisible");
    let mut by_state: BTreeMap<bool, usize> = BTreeMap::new();
    players.sort_by(|a, b| a.name.cmp(&b.name));
    for (row, p) in players.iter().enumerate() {
        let user = engine.user(&p.name)?;
        let online = user.online(View::Public);
        *by_state.entry(online).or_default() += 1;
        if !long && row >= SHORT_TABLE {
            continue;
        }
        let last = user.last_active.map(clock).unwrap_or_else(|| "never".into());
        println!(
            "{:<14} {:<8} {:<10} {:<9} {last}",
            p.name,
            if online { "yes" } else { "no" },
            user.status.as_deref().unwrap_or("-"),
            if user.invisible { "yes" } else { "no" },
        );
    }
    if !long {
        println!("... {} more players (add `-- --long` to list them all)", players.len() - SHORT_TABLE);
    }
    println!();
    println!(
        "{} presence changes; the lobby bot received {bot_received} events through its queue; \
         {} players online at midnight, {} offline; {} clients crashed and were timed out.",
        printed.load(Ordering::Relaxed),
        by_state.get(&true).copied().unwrap_or(0),
        by_state.get(&false).copied().unwrap_or(0),
        players.iter().filter(|p| p.crashed).count(),
    );
    Ok(())
}
