//! The README's Rust quick start, shown there verbatim (tests/readme.rs checks it).
use presence::{Answer, ConnectionId, Engine, ListenerFilter, View};

fn main() -> presence::Result<()> {
    let engine = Engine::from_json(Some(r#"{"clock":"manual","start_time_ms":1546867062375}"#))?;
    let changes = ListenerFilter::event_type("user.presence.changed");
    engine.add_listener(changes, |event| {
        if let Some(user) = event.user() {
            let state = if user.online(View::Public) { "online" } else { "offline" };
            println!("{} is now {state}", user.id);
        }
    })?;
    engine.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice","bob"]}"#)?;
    let bob = engine.connect_user("bob")?;
    // bob follows the presence of every member of the team.
    engine.start_watching(bob, "team:red", true)?;
    let alice = engine.connect_json(r#"{"id":"alice","status":"in lobby"}"#)?;
    // What bob's client receives: watching and presence events, in seq order.
    for delivery in engine.poll_events(bob, 100)? {
        println!("to bob: {}", delivery.to_json());
    }
    // Invisible: offline to everyone else, still connected in alice's own view.
    engine.set_invisible("alice", true)?;
    assert_eq!(engine.get_user(bob, "alice")?.to_value()["online"], false);
    engine.disconnect(alice)?;
    println!("{}", engine.get_user(ConnectionId::HOST, "alice")?.to_json());
    Ok(())
}
