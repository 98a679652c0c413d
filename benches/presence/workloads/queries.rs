//! Queries over the churn world (workload 4), with channels added to it.
use super::churn::Churn;
use super::*;

/// Queries prepared before timing; `Q` of each kind, used round-robin.
const Q: usize = 64;

pub(super) fn w4_queries(p: &Params, r: &mut Report, mut w: Churn) {
    let mut rng = Rng::new(41);
    let mut perm: Vec<u32> = (0..w.n as u32).collect();
    let m = add_channels(p, &mut w, &mut rng, &mut perm);
    let queries = Queries::new(&w, &mut rng, &mut perm);
    queries.check_answers(&w);
    query_rows(p, r, &mut w, &queries, m);
    w4_budget(p, r, &w, &mut rng, &mut perm);
}

/// Adds `p.w4_channels` channels of `m` random members to both sides; answers `m`.
fn add_channels(p: &Params, w: &mut Churn, rng: &mut Rng, perm: &mut [u32]) -> usize {
    let (n, channels) = (w.n, p.w4_channels);
    let m = p.w4_members.min(n);
    progress(&format!("4: adding {} channels of {m} members to the {} users", count(channels), count(n)));
    let now = now_ms();
    for k in 0..channels {
        let cid = format!("team:c{k:06}");
        let members: Vec<String> = rng.distinct(perm, m).iter().map(|&u| w.ids[u as usize].clone()).collect();
        w.base.create_channel(&cid);
        for id in &members {
            w.base.add_member(&cid, id, now);
        }
        w.eng.upsert_channel(&ChannelPatch { members, ..ChannelPatch::cid(cid) }).expect("upsert_channel");
    }
    check(w.eng.counts().channels == channels, || format!("channels {:?}", w.eng.counts()));
    m
}

/// The timed queries: user queries by 100 ids, channel queries by 3 members; JSON for
/// the engine, the same ids for the baseline.
struct Queries {
    user_json: Vec<String>,
    member_json: Vec<String>,
    user_ids: Vec<Vec<String>>,
    member_ids: Vec<Vec<String>>,
}

impl Queries {
    fn new(w: &Churn, rng: &mut Rng, perm: &mut [u32]) -> Queries {
        let user_sets: Vec<Vec<u32>> = (0..Q).map(|_| rng.distinct(perm, 100.min(w.n)).to_vec()).collect();
        let member_sets: Vec<Vec<u32>> = (0..Q).map(|_| rng.distinct(perm, 3).to_vec()).collect();
        let ids_of = |sets: &[Vec<u32>]| -> Vec<Vec<String>> {
            sets.iter().map(|s| s.iter().map(|&u| w.ids[u as usize].clone()).collect()).collect()
        };
        let (user_ids, member_ids) = (ids_of(&user_sets), ids_of(&member_sets));
        let quote = |set: &[String]| serde_json::to_string(set).expect("ids");
        let user_json = user_ids
            .iter()
            .map(|s| {
                format!(
                    r#"{{"filter_conditions":{{"id":{{"$in":{}}}}},"sort":[{{"field":"last_active","direction":-1}}],"limit":100}}"#,
                    quote(s)
                )
            })
            .collect();
        let member_json = member_ids
            .iter()
            .map(|s| format!(r#"{{"filter_conditions":{{"members":{{"$in":{}}}}}}}"#, quote(s)))
            .collect();
        Queries { user_json, member_json, user_ids, member_ids }
    }

    fn user_ids(&self, i: usize) -> Vec<&str> {
        self.user_ids[i % Q].iter().map(String::as_str).collect()
    }

    fn member_ids(&self, i: usize) -> Vec<&str> {
        self.member_ids[i % Q].iter().map(String::as_str).collect()
    }

    /// Sanity: both sides answer the same users (users connected within the same
    /// millisecond may sort differently in the two worlds), the engine's sorted by
    /// last_active descending with missing values last; and the same channels.
    fn check_answers(&self, w: &Churn) {
        for i in 0..4.min(Q) {
            let v = w.eng.query_users(HOST, &self.user_json[i]).expect("query_users").to_value();
            let users = v["users"].as_array().expect("users array");
            let b = w.base.query_users(&self.user_ids(i), 100);
            let mut engine_ids: Vec<&str> = users.iter().filter_map(|u| u["id"].as_str()).collect();
            let mut base_ids: Vec<&str> = b.iter().map(|u| &*u.id).collect();
            engine_ids.sort_unstable();
            base_ids.sort_unstable();
            let seen: Vec<Option<&str>> = users.iter().map(|u| u["last_active"].as_str()).collect();
            let sorted = seen.windows(2).all(|p| match (p[0], p[1]) {
                (Some(a), Some(b)) => a >= b,
                (None, Some(_)) => false,
                _ => true,
            });
            check(users.len() == b.len() && engine_ids == base_ids && sorted, || {
                format!("query_users: engine {} rows, baseline {}, sorted {sorted}", users.len(), b.len())
            });
            let v = w.eng.query_channels(HOST, &self.member_json[i]).expect("query_channels").to_value();
            let chans = v["channels"].as_array().expect("channels array");
            let b = w.base.query_channels(&self.member_ids(i), 30);
            check(
                !chans.is_empty()
                    && chans.len() == b.len()
                    && chans.iter().zip(&b).all(|(e, b)| {
                        e["channel"]["cid"] == *b.cid
                            && e["members"].as_array().map(Vec::len) == Some(b.members.len())
                    }),
                || format!("query_channels differ: engine {} rows, baseline {}", chans.len(), b.len()),
            );
        }
    }
}

/// Best round of `k` engine calls against `k` baseline calls, interleaved: ns per call each.
fn best_pair(
    p: &Params,
    w: &mut Churn,
    k: usize,
    engine: impl Fn(&Engine, usize),
    baseline: impl Fn(&mut Baseline, usize),
) -> (f64, f64) {
    let (mut de, mut db) = (Duration::MAX, Duration::MAX);
    for _ in 0..p.rounds {
        de = de.min(timed(|| (0..k).for_each(|i| engine(&w.eng, i))).0);
        db = db.min(timed(|| (0..k).for_each(|i| baseline(&mut w.base, i))).0);
    }
    (ns_per(de, k), ns_per(db, k))
}

fn query_rows(p: &Params, r: &mut Report, w: &mut Churn, q: &Queries, m: usize) {
    let (n, k) = (w.n, p.w4_queries);
    // The baseline's id lists are prepared outside the timing, like the engine's JSON.
    let (user_ids, member_ids): (Vec<_>, Vec<_>) = (0..Q).map(|i| (q.user_ids(i), q.member_ids(i))).unzip();
    let (e, b) = best_pair(
        p,
        w,
        k,
        |eng, i| {
            black_box(eng.query_users(HOST, &q.user_json[i % Q]).expect("query").to_value());
        },
        |base, i| {
            black_box(base.query_users(&user_ids[i % Q], 100));
        },
    );
    r.add(
        format!("4 query_users id $in 100 ids, sort last_active desc, limit 100 ({} users)", count(n)),
        Cell::rate(e, "query"),
        Cell::rate(b, "query"),
        Target::None,
    );
    let (e, b) = best_pair(
        p,
        w,
        k,
        |eng, i| {
            black_box(eng.query_channels(HOST, &q.member_json[i % Q]).expect("query").to_value());
        },
        |base, i| {
            black_box(base.query_channels(&member_ids[i % Q], 30));
        },
    );
    r.add(
        format!(
            "4 query_channels members $in 3 ids ({} channels x {m} members, {} users)",
            count(p.w4_channels),
            count(n)
        ),
        Cell::rate(e, "query"),
        Cell::rate(b, "query"),
        Target::None,
    );
}

/// The costliest queries the default `query_budget` lets through, and what refusing the
/// ones it stops costs. A passing query must take a few milliseconds at most, since the
/// engine is locked while it runs; a refused one is parsed outside the lock and stopped
/// before any record is examined. The baseline answers the 1000 ids without a filter.
fn w4_budget(p: &Params, r: &mut Report, w: &Churn, rng: &mut Rng, perm: &mut [u32]) {
    let n = w.n;
    let ids: Vec<&str> =
        rng.distinct(perm, 1000.min(n)).iter().map(|&u| w.ids[u as usize].as_str()).collect();
    let quoted = serde_json::to_string(&ids).expect("ids");
    // Conditions on a field every user has, so each one is evaluated in full.
    let nor: Vec<String> =
        (0..40).map(|i| format!(r#"{{"created_at":{{"$lt":"2000-01-01T00:00:{i:02}Z"}}}}"#)).collect();
    let sort: Vec<String> =
        ["last_active", "created_at", "updated_at", "status", "online", "name", "level", "id"]
            .iter()
            .map(|f| format!(r#"{{"field":"{f}","direction":-1}}"#))
            .collect();
    let widest = format!(
        r#"{{"filter_conditions":{{"id":{{"$in":{quoted}}},"$nor":[{}]}},"sort":[{}],"limit":100}}"#,
        nor.join(","),
        sort.join(",")
    );
    let members = serde_json::to_string(&ids[..100.min(ids.len())]).expect("ids");
    let by_members = format!(r#"{{"filter_conditions":{{"members":{{"$in":{members}}}}},"limit":100}}"#);
    let ors: Vec<String> = (0..5000).map(|i| format!(r#"{{"name":{{"$autocomplete":"p{i}"}}}}"#)).collect();
    let refused = [
        format!(r#"{{"filter_conditions":{{"$or":[{}]}}}}"#, ors.join(",")),
        r#"{"filter_conditions":{"online":true}}"#.to_owned(),
    ];
    let base_ids: Vec<&str> = ids.clone();
    let time_best = |f: &dyn Fn()| -> f64 {
        (0..p.rounds.max(3)).map(|_| timed(f).0.as_nanos() as f64).fold(f64::MAX, f64::min)
    };
    let baseline = time_best(&|| {
        black_box(w.base.query_users(&base_ids, 100));
    });
    let rows: [(&str, &dyn Fn()); 4] = [
        ("id $in 1000 ids, $nor of 40 conditions, 8 sort keys (passes)", &|| {
            black_box(w.eng.query_users(HOST, &widest).expect("widest query passes"));
        }),
        ("query_channels members $in 100 ids (passes)", &|| {
            black_box(w.eng.query_channels(HOST, &by_members).expect("members query passes"));
        }),
        ("$or of 5000 $autocomplete (refused: LIMIT)", &|| {
            let answer = w.eng.query_users(HOST, &refused[0]);
            check(answer.as_ref().err().map(|e| e.kind()) == Some(presence::ErrorKind::Limit), || {
                "refused".into()
            });
        }),
        ("full scan of every user (refused: LIMIT past 25k users)", &|| {
            // 4 units per user: the record, one condition, the default sort key.
            let refused_here = n as u64 * 4 > presence::QueryBudget::default().max_work;
            let answer = w.eng.query_users(HOST, &refused[1]);
            check(
                answer.as_ref().err().map(|e| e.kind()) == refused_here.then_some(presence::ErrorKind::Limit),
                || format!("full scan of {n} users: {:?}", answer.as_ref().err()),
            );
        }),
    ];
    for (name, run) in rows {
        // A refused query's cost is parsing its JSON, outside the engine's lock.
        let target = if name.contains("passes") { Target::EngineNsBelow(5e6) } else { Target::None };
        r.add(
            format!("4 budget: {name}, {} users", count(n)),
            Cell::ns(time_best(run), "query"),
            Cell::ns(baseline, "query"),
            target,
        );
    }
}
