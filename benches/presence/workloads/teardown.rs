//! Teardown of many channels (workload 9).
use super::*;

fn shared_channel(cid: &str) -> ChannelPatch {
    ChannelPatch { cid: cid.to_owned(), members: vec!["shared".to_owned()], ..Default::default() }
}

/// N channels `team:t000000..` sharing the member `shared`, and `watcher`'s connection
/// watching every one of them (with presence). The cids have one length at every N, so
/// that the work per channel compares like with like across sizes.
fn teardown_world(n: usize) -> (Engine, ConnectionId, Vec<String>) {
    let config = r#"{"clock":"manual","start_time_ms":1700000000000,"connection_queue_capacity":0}"#;
    let eng = Engine::from_json(Some(config)).expect("engine");
    let cids: Vec<String> = (0..n).map(|i| format!("team:t{i:06}")).collect();
    let watcher = eng.connect(&UserPatch::id("watcher")).expect("connect");
    for cid in &cids {
        eng.upsert_channel(&shared_channel(cid)).expect("upsert_channel");
        eng.start_watching(watcher, cid, true).expect("watch");
    }
    (eng, watcher, cids)
}

/// Workload 9's two measured operations, kept out of line so that callgrind can count their
/// instructions alone (`--dump-before` each, toggling collection on the engine calls; the
/// README has the command).
#[inline(never)]
fn w9_disconnect(eng: &Engine, watcher: ConnectionId) {
    eng.disconnect(watcher).expect("disconnect");
}

#[inline(never)]
fn w9_delete(eng: &Engine, cids: &[String]) {
    for cid in cids {
        eng.delete_channel(cid).expect("delete_channel");
    }
}

/// Disconnecting one connection that watches N channels, and deleting N channels that share
/// a member: both must cost O(N). Each is measured at the smallest and the largest N; the
/// baseline disconnects the same watcher, and for deletion the baseline column is the
/// engine creating the same channels (a plainly linear operation, for scale).
pub(super) fn w9_teardown(p: &Params, r: &mut Report) {
    let mut per_size = Vec::new();
    for &n in &p.w9_sizes {
        progress(&format!("9: teardown of {} channels", count(n)));
        let (mut disconnect, mut base_disconnect, mut delete, mut create) =
            (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..p.rounds {
            let (eng, watcher, cids) = teardown_world(n);
            let (d, ()) = timed(|| w9_disconnect(&eng, watcher));
            disconnect = disconnect.min(ns_per(d, n));
            check(eng.counts().connections == 0, || "the watcher is gone".into());
            let (d, ()) = timed(|| w9_delete(&eng, &cids));
            delete = delete.min(ns_per(d, n));
            check(eng.counts().channels == 0, || "every channel deleted".into());
            let patches: Vec<ChannelPatch> = cids.iter().map(|cid| shared_channel(cid)).collect();
            let (d, ()) = timed(|| {
                for patch in &patches {
                    eng.upsert_channel(patch).expect("upsert_channel");
                }
            });
            create = create.min(ns_per(d, n));
            drop(eng);

            let mut base = Baseline::new(900_000, 0);
            let c = base.connect("watcher", T0);
            for cid in &cids {
                base.create_channel(cid);
                base.add_member(cid, "shared", T0);
                base.watch(c, cid);
            }
            let (d, ok) = timed(|| base.disconnect(c, T0));
            check(ok, || "baseline disconnect".into());
            base_disconnect = base_disconnect.min(ns_per(d, n));
        }
        r.add(
            format!("9 disconnect of one connection watching N channels (presence), N = {}", count(n)),
            Cell::ns(disconnect, "channel"),
            Cell::ns(base_disconnect, "channel"),
            Target::None,
        );
        r.add(
            format!("9 delete N channels sharing a member (baseline: create them), N = {}", count(n)),
            Cell::ns(delete, "channel"),
            Cell::ns(create, "channel"),
            Target::None,
        );
        per_size.push((n, disconnect, base_disconnect, delete, create));
    }
    if let (Some(&(n0, d0, b0, x0, c0)), Some(&(n1, d1, b1, x1, c1))) = (per_size.first(), per_size.last()) {
        r.add(
            format!("9 linearity: disconnect cost per channel at N = {} ÷ at N = {}", count(n1), count(n0)),
            Cell::factor(d1 / d0),
            Cell::factor(b1 / b0),
            Target::EngineFactorAtMost(2.0),
        );
        r.add(
            format!("9 linearity: delete cost per channel at N = {} ÷ at N = {}", count(n1), count(n0)),
            Cell::factor(x1 / x0),
            Cell::factor(c1 / c0),
            Target::EngineFactorAtMost(2.0),
        );
    }
}
