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
use presence::{ChannelPatch, CloseReason, ConnectionId, Engine, EventKind, ListenerFilter, UserPatch, View};
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
        ("upsert_channel(&ChannelPatch), add_members", "lobby:main with every player as a member"),
        ("start_watching(bot, \"lobby:main\", true)", "the bot follows every member's presence"),
        ("connect(&UserPatch), connect_json(json)", "players come and go, some on two devices"),
        ("disconnect(conn), heartbeat(conn)", "heartbeats every 20 s; a crashed client stops sending them"),
        ("set_invisible(id, bool), set_status(id, s)", "sticky user state"),
        ("set_time(ms), tick()", "time moves; tick closes timed-out connections, ends graces"),
        ("poll_events(bot, 256)", "the bot drains its queue every 10 s"),
        ("get_user(ConnectionId::HOST, id)", "the typed user record, for the final table"),
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

/// What the printing listener counted.
#[derive(Default)]
struct Tally {
    /// Presence changes seen.
    changes: AtomicU64,
    /// Event lines left out of the short output.
    hidden_lines: AtomicU64,
}

/// Prints every presence change and every connection the engine closed on its own.
fn print_events(engine: &Engine, long: bool) -> presence::Result<Arc<Tally>> {
    let tally = Arc::new(Tally::default());
    let counts = tally.clone();
    let per_kind: Mutex<BTreeMap<(&str, &str), u32>> = Mutex::new(BTreeMap::new());
    engine.add_listener(ListenerFilter::all(), move |event| {
        let (kind, line) = match &event.kind {
            EventKind::PresenceChanged { user } => {
                counts.changes.fetch_add(1, Ordering::Relaxed);
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
            counts.hidden_lines.fetch_add(1, Ordering::Relaxed);
        }
    })?;
    Ok(tally)
}

/// The evening in progress: the engine, the players and the dice.
struct Evening {
    engine: Engine,
    players: Vec<Player>,
    rng: Rng,
    tally: Arc<Tally>,
}

impl Evening {
    /// At 20:30 a third of all live connections drop and reconnect at once.
    fn network_hiccup(&mut self, now: i64) -> presence::Result<()> {
        println!("[{}] -- network hiccup: a third of all connections drop and reconnect --", clock(now));
        let before = self.tally.changes.load(Ordering::Relaxed);
        let mut dropped = 0;
        for p in self.players.iter_mut().filter(|p| !p.crashed) {
            for c in p.connections.iter_mut() {
                if self.rng.chance(33) {
                    calling("disconnect");
                    self.engine.disconnect(*c)?;
                    calling("connect_json");
                    *c = self.engine.connect_json(&format!(r#"{{"id":"{}"}}"#, p.name))?;
                    dropped += 1;
                }
            }
        }
        println!(
            "[{}] -- {dropped} connections dropped and came back within the offline grace: {} presence events --",
            clock(now),
            self.tally.changes.load(Ordering::Relaxed) - before
        );
        Ok(())
    }

    /// Moves every player's connections and sticky state to what the plan says for `now`.
    fn play(&mut self, now: i64) -> presence::Result<()> {
        for i in 0..self.players.len() {
            let p = &mut self.players[i];
            if p.crashed {
                continue;
            }
            if p.crashes_at.is_some_and(|t| now >= t) && !p.connections.is_empty() {
                p.crashed = true; // heartbeats stop; the timeout will close it
                continue;
            }
            let playing = p.arrives <= now && now < p.leaves;
            connect_devices(&self.engine, p, playing, now)?;
            if playing {
                self.live_player(i, now)?;
            }
        }
        Ok(())
    }

    /// Heartbeats, visibility and the occasional status change of a player who is playing.
    fn live_player(&mut self, i: usize, now: i64) -> presence::Result<()> {
        let (engine, p) = (&self.engine, &self.players[i]);
        if (now - p.arrives) % HEARTBEAT_EVERY < STEP {
            for &c in &p.connections {
                engine.heartbeat(c)?;
            }
        }
        let hidden = within(p.hides, now);
        if engine.get_user(ConnectionId::HOST, &p.name)?.user.invisible != hidden {
            calling("set_invisible");
            engine.set_invisible(&p.name, hidden)?;
        }
        if self.rng.below(1000) < 3 {
            let status = ["in lobby", "in match", "afk"][self.rng.below(3) as usize];
            calling("set_status");
            engine.set_status(&p.name, Some(status))?;
        }
        Ok(())
    }

    /// Prints who is online at the end, and when each player was last active.
    fn print_table(&mut self, end: i64, long: bool, bot_received: usize) -> presence::Result<()> {
        println!();
        println!("== {}: who is online, and when each player was last active ==", clock(end));
        println!("{:<14} {:<8} {:<10} {:<9} last active", "player", "online", "status", "invisible");
        let mut by_state: BTreeMap<bool, usize> = BTreeMap::new();
        self.players.sort_by(|a, b| a.name.cmp(&b.name));
        for (row, p) in self.players.iter().enumerate() {
            let user = self.engine.get_user(ConnectionId::HOST, &p.name)?.user;
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
            println!(
                "... {} more players (add `-- --long` to list them all)",
                self.players.len() - SHORT_TABLE
            );
        }
        println!();
        println!(
            "{} presence changes; the lobby bot received {bot_received} events through its queue; \
             {} players online at midnight, {} offline; {} clients crashed and were timed out.",
            self.tally.changes.load(Ordering::Relaxed),
            by_state.get(&true).copied().unwrap_or(0),
            by_state.get(&false).copied().unwrap_or(0),
            self.players.iter().filter(|p| p.crashed).count(),
        );
        Ok(())
    }
}

/// Opens or closes the player's connections: one while playing, two while the phone is on.
fn connect_devices(engine: &Engine, p: &mut Player, playing: bool, now: i64) -> presence::Result<()> {
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
    Ok(())
}

/// Drains the bot's queue as a game server forwarding presence would; returns how many.
fn drain(engine: &Engine, bot: ConnectionId) -> presence::Result<usize> {
    let mut received = 0;
    loop {
        let batch = engine.poll_events(bot, 256)?;
        if batch.is_empty() {
            return Ok(received);
        }
        received += batch.len();
    }
}

fn main() -> presence::Result<()> {
    let long = std::env::args().skip(1).any(|a| a == "--long");
    legend();
    let engine = Engine::from_json(Some(&format!(
        r#"{{"clock":"manual","start_time_ms":{EVENING},"connection_timeout_ms":60000,"offline_grace_ms":15000}}"#
    )))?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let players = plan_evening(&mut rng);
    let tally = print_events(&engine, long)?;
    let mut evening = Evening { engine, players, rng, tally };

    let ids: Vec<String> = evening.players.iter().map(|p| p.name.clone()).collect();
    let mut lobby = ChannelPatch::cid("lobby:main");
    lobby.custom.push(("name".into(), Some("Main lobby".into())));
    evening.engine.upsert_channel(&lobby)?;
    evening.engine.add_members("lobby:main", &ids)?;
    println!("== {} players tonight; a lobby bot watches lobby:main with presence ==", ids.len());
    calling("connect_json");
    let bot = evening.engine.connect_json(r#"{"id":"lobby_bot","status":"watching"}"#)?;
    evening.engine.start_watching(bot, "lobby:main", true)?;
    let (storm_at, end) = (EVENING + 150 * MINUTE, EVENING + 6 * 60 * MINUTE);
    let (mut bot_received, mut storm_done, mut now) = (0, false, EVENING);
    while now <= end {
        evening.engine.set_time(now)?;
        if !storm_done && now >= storm_at {
            storm_done = true;
            evening.network_hiccup(now)?;
        }
        evening.play(now)?;
        calling("tick");
        evening.engine.tick()?;
        evening.engine.heartbeat(bot)?;
        bot_received += drain(&evening.engine, bot)?;
        now += STEP;
    }
    let hidden_lines = evening.tally.hidden_lines.load(Ordering::Relaxed);
    if hidden_lines > 0 {
        println!("... and {hidden_lines} more event lines like these (add `-- --long` to see them all)");
    }
    evening.print_table(end, long, bot_received)
}
