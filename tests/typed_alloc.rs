//! The typed event path allocates nothing per event in steady state, counted by a global
//! allocator: refilling a reused batch allocates nothing at all, and typed listeners add no
//! allocation to what the engine does anyway for the same operations with a Rust listener.
use presence::ffi::*;
use presence::{Engine, ListenerFilter, UserPatch};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::{c_void, CStr, CString};
use std::ptr;

/// Counts the allocations made by the current thread while its window is open.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: forwards every call to `System` unchanged; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(p, layout, new_size) }
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

fn ok(r: PresenceResult) {
    assert_eq!(r, PresenceResult::PRESENCE_OK, "{}", unsafe {
        CStr::from_ptr(presence_last_error()).to_string_lossy()
    });
}

fn engine() -> *mut PresenceEngine {
    let mut e = ptr::null_mut();
    ok(unsafe { presence_engine_new(c"{\"clock\":\"manual\"}".as_ptr(), &mut e) });
    e
}

/// A watcher connection subscribed (through a channel watched with presence) to `users`
/// members, who come and go in `churn`.
fn watched_channel(e: *mut PresenceEngine, users: usize) -> u64 {
    let members: Vec<String> = (0..users).map(|i| format!("\"player-{i}\"")).collect();
    let channel =
        CString::new(format!(r#"{{"type":"team","id":"red","members":[{}]}}"#, members.join(","))).unwrap();
    ok(unsafe { presence_upsert_channel(e, channel.as_ptr()) });
    let mut watcher = 0;
    ok(unsafe { presence_connect_user(e, c"watcher".as_ptr(), &mut watcher) });
    ok(unsafe { presence_watch_channel(e, watcher, c"team:red".as_ptr(), true, ptr::null_mut()) });
    watcher
}

fn member_ids(users: usize) -> Vec<CString> {
    (0..users).map(|i| CString::new(format!("player-{i}")).unwrap()).collect()
}

/// Every member connects and disconnects once.
fn churn(e: *mut PresenceEngine, ids: &[CString]) {
    for id in ids {
        let mut conn = 0;
        ok(unsafe { presence_connect_user(e, id.as_ptr(), &mut conn) });
        ok(unsafe { presence_disconnect(e, conn) });
    }
}

#[test]
fn refilling_a_reused_batch_allocates_nothing() {
    let e = engine();
    let users = 100;
    let watcher = watched_channel(e, users);
    let ids = member_ids(users);
    let mut batch = ptr::null_mut();
    ok(unsafe { presence_batch_new(&mut batch) });
    // Warm up: the batch grows to the largest drain once.
    churn(e, &ids);
    ok(unsafe { presence_poll_batch(e, watcher, 1000, batch) });
    for _ in 0..5 {
        churn(e, &ids);
        let mut seen = 0;
        let n = allocations(|| {
            ok(unsafe { presence_poll_batch(e, watcher, 1000, batch) });
            for i in 0..unsafe { presence_batch_len(batch) } {
                let info = unsafe { &*presence_batch_event(batch, i) };
                assert_eq!(info.kind, PRESENCE_EVENT_USER_PRESENCE_CHANGED);
                seen += 1;
            }
        });
        assert_eq!(seen, 2 * users, "each member came online and went offline");
        assert_eq!(n, 0, "allocations while refilling a batch with {seen} events");
    }
    unsafe {
        presence_batch_free(batch);
        presence_engine_free(e);
    }
}

#[test]
fn refilling_a_reused_batch_from_several_connections_allocates_nothing() {
    let e = engine();
    let users = 100;
    let mut watchers = vec![watched_channel(e, users)];
    for id in [c"second", c"third"] {
        let mut w = 0;
        ok(unsafe { presence_connect_user(e, id.as_ptr(), &mut w) });
        ok(unsafe { presence_watch_channel(e, w, c"team:red".as_ptr(), true, ptr::null_mut()) });
        watchers.push(w);
    }
    let ids = member_ids(users);
    let mut batch = ptr::null_mut();
    ok(unsafe { presence_batch_new(&mut batch) });
    let poll = || ok(unsafe { presence_poll_batch_many(e, watchers.as_ptr(), 3, 1000, batch) });
    // Warm up: the batch grows to the largest drain once, and the engine's room for the
    // list of connections to the longest list.
    churn(e, &ids);
    poll();
    for _ in 0..5 {
        churn(e, &ids);
        let mut per_watcher = [0; 3];
        let n = allocations(|| {
            poll();
            for i in 0..unsafe { presence_batch_len(batch) } {
                let info = unsafe { &*presence_batch_event(batch, i) };
                per_watcher[watchers.iter().position(|&w| w == info.connection_id).unwrap()] += 1;
            }
        });
        assert_eq!(per_watcher, [2 * users; 3], "each member came online and went offline, seen by each");
        assert_eq!(n, 0, "allocations while refilling a batch from three connections");
    }
    unsafe {
        presence_batch_free(batch);
        presence_engine_free(e);
    }
}

unsafe extern "C-unwind" fn count_call(user_data: *mut c_void, event: *const PresenceEventInfo) {
    let calls = unsafe { &*(user_data as *const Cell<u64>) };
    assert!(!unsafe { (*event).user_id }.is_null());
    calls.set(calls.get() + 1);
}

#[test]
fn typed_listeners_add_no_allocation_per_event() {
    let users = 100;
    let calls = Cell::new(0u64);
    let data = &calls as *const Cell<u64> as *mut c_void;
    let e = engine();
    let _ = watched_channel(e, users);
    let ids = member_ids(users);
    unsafe {
        let mut id = 0;
        ok(presence_add_typed_delivery_listener(e, Some(count_call), data, None, &mut id));
        ok(presence_add_typed_listener(e, ptr::null(), ptr::null(), Some(count_call), data, None, &mut id));
    }
    churn(e, &ids);
    let typed = allocations(|| churn(e, &ids));
    // Per member and churn, the host listener sees online, offline and connection.closed,
    // the delivery listener online and offline at the watcher.
    assert_eq!(calls.get(), 2 * 5 * users as u64);
    unsafe { presence_engine_free(e) };

    // The same operations on an engine with Rust listeners (no C strings to build).
    let engine = Engine::from_json(Some(r#"{"clock":"manual"}"#)).unwrap();
    let members: Vec<String> = (0..users).map(|i| format!("player-{i}")).collect();
    let patch = presence::channel::ChannelPatch {
        cid: "team:red".into(),
        members: members.clone(),
        ..Default::default()
    };
    engine.upsert_channel(&patch).unwrap();
    let watcher = engine.connect(&UserPatch::id("watcher")).unwrap();
    engine.start_watching(watcher, "team:red", true).unwrap();
    engine.add_delivery_listener(|_| {});
    engine.add_listener(ListenerFilter::all(), |_| {}).unwrap();
    // The patches are made beforehand: `presence_connect_user` allocates none per connect.
    let patches: Vec<UserPatch> = members.iter().map(|id| UserPatch::id(id.as_str())).collect();
    let rust_churn = || {
        for patch in &patches {
            let conn = engine.connect(patch).unwrap();
            engine.disconnect(conn).unwrap();
        }
    };
    rust_churn();
    let rust = allocations(rust_churn);
    assert_eq!(
        typed,
        rust,
        "allocations with typed C listeners vs Rust listeners, {} calls",
        calls.get() / 2
    );
}

#[test]
fn draining_a_host_queue_into_a_reused_batch_allocates_nothing() {
    let e = engine();
    let users = 100;
    let ids = member_ids(users);
    let mut queue = ptr::null_mut();
    ok(unsafe { presence_host_queue_new(e, c"user.presence.changed".as_ptr(), ptr::null(), &mut queue) });
    let mut batch = ptr::null_mut();
    ok(unsafe { presence_batch_new(&mut batch) });
    // Warm up: the batch grows to the largest drain once.
    churn(e, &ids);
    ok(unsafe { presence_host_queue_poll(queue, 1000, batch) });
    for _ in 0..5 {
        churn(e, &ids);
        let mut seen = 0;
        let n = allocations(|| {
            ok(unsafe { presence_host_queue_poll(queue, 1000, batch) });
            let events = unsafe { presence_batch_events(batch) };
            for i in 0..unsafe { presence_batch_len(batch) } as usize {
                let info = unsafe { &*events.add(i) };
                assert_eq!(info.kind, PRESENCE_EVENT_USER_PRESENCE_CHANGED);
                assert_eq!(info.user_id_len as usize, ids[i / 2].as_bytes().len());
                seen += 1;
            }
        });
        assert_eq!(seen, 2 * users, "each user came online and went offline");
        assert_eq!(n, 0, "allocations while draining {seen} events from a host queue");
    }
    unsafe {
        presence_host_queue_free(queue);
        presence_batch_free(batch);
        presence_engine_free(e);
    }
}

/// Connects and disconnects each of `ids` `rounds` times through the C entry points;
/// answers the allocations made meanwhile.
fn connect_cycles(e: *mut PresenceEngine, ids: &[CString], rounds: usize) -> u64 {
    allocations(|| {
        for _ in 0..rounds {
            churn(e, ids);
        }
    })
}

#[test]
fn connecting_known_users_by_id_allocates_nothing_when_nobody_watches() {
    let e = engine();
    let ids = member_ids(10);
    // Creates the users and grows the engine's tables once.
    churn(e, &ids);
    assert_eq!(connect_cycles(e, &ids, 100), 0, "allocations in 1000 connects and disconnects by id");
    // A watcher makes each change an event (one allocation, shared by its recipients).
    let watcher = watched_channel(e, 10);
    let mut batch = ptr::null_mut();
    ok(unsafe { presence_batch_new(&mut batch) });
    // Twice: a full drain trades the batch's room for the queue's, so both grow once.
    for _ in 0..2 {
        churn(e, &ids);
        ok(unsafe { presence_poll_batch(e, watcher, 1000, batch) });
    }
    assert_eq!(connect_cycles(e, &ids, 1), 2 * 10, "one allocation per event: 10 users online and offline");
    unsafe {
        presence_batch_free(batch);
        presence_engine_free(e);
    }
}

#[test]
fn rust_connect_user_allocates_nothing_for_a_known_user_nobody_watches() {
    let engine =
        Engine::new(presence::Config { clock: presence::Clock::Manual, ..Default::default() }).unwrap();
    let cycle = || {
        let c = engine.connect_user("ann").unwrap();
        engine.disconnect(c).unwrap();
    };
    cycle();
    assert_eq!(allocations(|| (0..1000).for_each(|_| cycle())), 0);
    // The patch form allocates its id: the reason the typed form exists.
    assert!(
        allocations(|| {
            engine.connect(&UserPatch::id("ann")).unwrap();
        }) >= 1
    );
}
