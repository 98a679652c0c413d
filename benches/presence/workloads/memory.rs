//! Memory per user, connection and channel (workload 6): bytes and allocations counted by
//! the benchmark's allocator while each side builds the same world.
use super::*;

pub(super) fn w6_memory(p: &Params, r: &mut Report) {
    offline_row(p, r);
    online_row(p, r);
}

/// Bytes and allocations counted between start and stop.
type Counted = (i64, i64);

fn offline_row(p: &Params, r: &mut Report) {
    let n = p.w6_offline;
    progress(&format!("6: memory of {} offline users", count(n)));
    let ids: Vec<String> = (0..n).map(user_id).collect();
    let eng = Engine::new(Config::default()).expect("engine");
    let window = alloc::Window::start();
    for id in &ids {
        eng.upsert_user(&UserPatch::id(id.as_str())).expect("upsert_user");
    }
    let (eb, ek) = window.stop();
    check(eng.counts().users == n, || "users registered".into());
    drop(eng);
    let mut base = Baseline::new(900_000, 1024);
    let window = alloc::Window::start();
    for id in &ids {
        base.register(id, T0);
    }
    let (bb, bk) = window.stop();
    drop(base);
    check(eb > 0 && bb > 0, || format!("bytes {eb} {bb}"));
    let per = |x: i64| x as f64 / n as f64;
    r.add(
        format!("6 memory per registered offline user ({} users, 8-byte ids)", count(n)),
        Cell::bytes(per(eb), per(ek), "user"),
        Cell::bytes(per(bb), per(bk), "user"),
        Target::EngineBytesBelow(200.0),
    );
}

/// `n` users, each a member of `k` random channels of `n / 10` and connected once.
struct OnlineWorld {
    ids: Vec<String>,
    cids: Vec<String>,
    members: Vec<Vec<String>>,
}

impl OnlineWorld {
    fn new(n: usize, k: usize) -> OnlineWorld {
        let channels = (n / 10).max(k);
        progress(&format!(
            "6: memory of {} online users in {k} of {} channels each",
            count(n),
            count(channels)
        ));
        let ids: Vec<String> = (0..n).map(user_id).collect();
        let cids: Vec<String> = (0..channels).map(|c| format!("team:m{c:06}")).collect();
        let mut rng = Rng::new(6);
        let mut perm: Vec<u32> = (0..channels as u32).collect();
        let mut members: Vec<Vec<String>> = vec![Vec::new(); channels];
        for id in &ids {
            for &ch in rng.distinct(&mut perm, k) {
                members[ch as usize].push(id.clone());
            }
        }
        OnlineWorld { ids, cids, members }
    }

    /// The engine's (memberships, connections).
    fn engine(&self) -> (Counted, Counted) {
        let eng = Engine::new(Config::default()).expect("engine");
        for cid in &self.cids {
            eng.upsert_channel(&ChannelPatch::cid(cid.as_str())).expect("upsert_channel");
        }
        let mut conns = Vec::with_capacity(self.ids.len());
        let window = alloc::Window::start();
        for (cid, m) in self.cids.iter().zip(&self.members) {
            eng.add_members(cid, m).expect("add_members");
        }
        let memberships = window.stop();
        let window = alloc::Window::start();
        for id in &self.ids {
            conns.push(eng.connect(&UserPatch::id(id.as_str())).expect("connect"));
        }
        let connections = window.stop();
        let (n, channels) = (self.ids.len(), self.cids.len());
        check(eng.counts() == Counts { users: n, connections: n, channels }, || {
            format!("online world counts {:?}", eng.counts())
        });
        (memberships, connections)
    }

    /// The baseline's (memberships, connections).
    fn baseline(&self) -> (Counted, Counted) {
        let mut base = Baseline::new(900_000, 1024);
        for cid in &self.cids {
            base.create_channel(cid);
        }
        let mut bconns = Vec::with_capacity(self.ids.len());
        let window = alloc::Window::start();
        for (cid, m) in self.cids.iter().zip(&self.members) {
            for id in m {
                base.add_member(cid, id, T0);
            }
        }
        let memberships = window.stop();
        let window = alloc::Window::start();
        for id in &self.ids {
            bconns.push(base.connect(id, T0));
        }
        (memberships, window.stop())
    }
}

fn online_row(p: &Params, r: &mut Report) {
    let (n, k) = (p.w6_online, p.w6_memberships);
    let world = OnlineWorld::new(n, k);
    let ((emb, emk), (ecb, eck)) = world.engine();
    let ((bmb, bmk), (bcb, bck)) = world.baseline();
    let (eb, ek) = (emb + ecb, emk + eck);
    let (bb, bk) = (bmb + bcb, bmk + bck);
    let per = |x: i64| x as f64 / n as f64;
    progress(&format!(
        "6: per online user, registering + {k} memberships: engine {:.0} B ({:.1} allocs), baseline {:.0} B ({:.1}); connecting: engine {:.0} B ({:.1}), baseline {:.0} B ({:.1})",
        per(emb), per(emk), per(bmb), per(bmk), per(ecb), per(eck), per(bcb), per(bck)
    ));
    r.add(
        format!(
            "6 memory per online user (1 connection, {k} memberships; {} users, {} channels)",
            count(n),
            count(world.cids.len())
        ),
        Cell::bytes(per(eb), per(ek), "user"),
        Cell::bytes(per(bb), per(bk), "user"),
        Target::None,
    );
}
