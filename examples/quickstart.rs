//! The README's Rust quick start, kept compiling and running by `cargo test --examples`.
use presence::{ConnectionId, Engine, ListenerFilter, View};

fn main() -> presence::Result<()> {
    let engine = Engine::from_json(Some(r#"{"clock":"manual","start_time_ms":1546867062375}"#))?;
    engine.add_listener(ListenerFilter::event_type("user.presence.changed"), |event| {
        println!("{} is now {}", event.user_id(),
                 if event.user().online(View::Public) { "online" } else { "offline" });
    });
    engine.upsert_channel_json(r#"{"type":"team","id":"red","members":["alice","bob"]}"#)?;
    let bob = engine.connect_json(r#"{"id":"bob"}"#)?;
    engine.watch_channel(bob, "team:red", true)?;          // bob follows the team's presence
    let alice = engine.connect_json(r#"{"id":"alice","status":"in lobby"}"#)?;
    for delivery in engine.poll_events(bob, 100)? {         // what bob's client receives
        println!("to bob: {}", delivery.to_json());
    }
    engine.set_invisible("alice", true)?;                   // offline to everyone else
    assert_eq!(engine.get_user(bob, "alice")?["online"], false);
    engine.disconnect(alice)?;
    println!("{}", engine.get_user(ConnectionId::HOST, "alice")?);
    Ok(())
}
