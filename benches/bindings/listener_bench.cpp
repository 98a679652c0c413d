// The C++ typed path against the raw C typed path it wraps, in one run, best of
// interleaved rounds:
//  - listeners: a presence.hpp Listener (presence::Event, std::function) against a raw
//    typed C listener; manual dispatch, one status change per user queued untimed, then
//    pump() timed;
//  - drain: iterating a presence::Batch against presence_batch_event in a C loop, after
//    polling the same queue.
// Run by benches/bindings/run.sh (PRESENCE_BENCH_SCALE=0.1 shrinks it).
#include "presence.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

std::uint64_t g_raw = 0;
std::uint64_t g_raw_online = 0;

// Both sides read the same fields: the user id (its length), online, seq.
void raw_callback(void *, const PresenceEventInfo *event) {
    ++g_raw;
    g_raw_online += event->online + std::strlen(event->user_id);
}

template <typename T>
T must(presence::Result<T> r) {
    if (!r.has_value()) {
        std::fprintf(stderr, "%s\n", r.error().message().c_str());
        std::exit(1);
    }
    if constexpr (!std::is_void_v<T>) return std::move(*r);
}

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

} // namespace

int main() {
    double scale = 1.0;
    if (const char *s = std::getenv("PRESENCE_BENCH_SCALE")) scale = std::atof(s);
    const int users = std::max(100, static_cast<int>(10000 * scale));
    const int rounds = std::max(3, static_cast<int>(20 * scale));
    // Room in the watcher's queue for a whole round (the drain rows).
    const std::string config = R"({"clock":"manual","dispatch":"manual","connection_queue_capacity":)" +
                               std::to_string(2 * users) + "}";

    presence::Engine wrapped = must(presence::Engine::create(config));
    presence::Engine raw = must(presence::Engine::create(config));
    std::uint64_t handled = 0, online = 0;
    presence::Listener listener = must(wrapped.add_listener([&](const presence::Event &e) {
        ++handled;
        online += e.online + e.user_id.size();
    }));
    PresenceListenerId raw_id = 0;
    if (presence_add_typed_listener(raw.get(), nullptr, nullptr, raw_callback, nullptr, nullptr, &raw_id) !=
        PRESENCE_OK)
        return 1;

    std::vector<std::string> ids;
    for (int i = 0; i < users; ++i) {
        ids.push_back("user-" + std::to_string(i));
        must(wrapped.upsert_user("{\"id\":\"" + ids.back() + "\"}"));
        must(raw.upsert_user("{\"id\":\"" + ids.back() + "\"}"));
    }
    (void)must(wrapped.pump());
    (void)must(raw.pump());

    double best_wrapped = 1e18, best_raw = 1e18;
    for (int round = 0; round < rounds; ++round) {
        const char *status = round % 2 == 0 ? "a" : "b";
        auto run_wrapped = [&] {
            for (const auto &id : ids) must(wrapped.set_status(id, status));
            const std::uint64_t before = handled;
            const auto t = std::chrono::steady_clock::now();
            (void)must(wrapped.pump());
            best_wrapped = std::min(best_wrapped, seconds_since(t) * 1e9 / double(handled - before));
        };
        auto run_raw = [&] {
            for (const auto &id : ids) must(raw.set_status(id, status));
            const std::uint64_t before = g_raw;
            const auto t = std::chrono::steady_clock::now();
            (void)must(raw.pump());
            best_raw = std::min(best_raw, seconds_since(t) * 1e9 / double(g_raw - before));
        };
        // Alternate which side goes first, so neither always finds the caches warm.
        if (round % 2 == 0) {
            run_wrapped();
            run_raw();
        } else {
            run_raw();
            run_wrapped();
        }
    }

    // Drain: one watcher connection per engine sees every user's status change.
    must(wrapped.upsert_channel("{\"type\":\"bench\",\"id\":\"all\"}"));
    must(wrapped.add_members("bench:all", ids));
    presence::ConnectionId watcher = must(wrapped.connect_user("watcher"));
    (void)must(wrapped.watch_channel(watcher, "bench:all"));
    presence::Batch batch = must(presence::Batch::create());
    (void)must(wrapped.poll(watcher, batch, 1u << 30));
    double best_cpp_drain = 1e18, best_c_drain = 1e18;
    std::uint64_t cpp_seen = 0, c_seen = 0;
    const std::uint32_t max = static_cast<std::uint32_t>(users);
    for (int round = 0; round < rounds; ++round) {
        // C++: engine.poll into the Batch, then range-for over presence::Event.
        for (const auto &id : ids) must(wrapped.set_status(id, round % 2 == 0 ? "c" : "d"));
        auto t = std::chrono::steady_clock::now();
        const std::uint32_t got = must(wrapped.poll(watcher, batch, max));
        for (presence::Event ev : batch) cpp_seen += ev.online + ev.seq + ev.user_id.size();
        best_cpp_drain = std::min(best_cpp_drain, seconds_since(t) * 1e9 / double(got));
        // C: presence_poll_batch into the same batch, then presence_batch_event in a loop.
        for (const auto &id : ids) must(wrapped.set_status(id, round % 2 == 0 ? "e" : "f"));
        t = std::chrono::steady_clock::now();
        if (presence_poll_batch(wrapped.get(), watcher, max, batch.get()) != PRESENCE_OK) return 1;
        const std::uint32_t n = presence_batch_len(batch.get());
        for (std::uint32_t i = 0; i < n; ++i) {
            const PresenceEventInfo *ev = presence_batch_event(batch.get(), i);
            c_seen += ev->online + ev->seq + std::strlen(ev->user_id);
        }
        best_c_drain = std::min(best_c_drain, seconds_since(t) * 1e9 / double(n));
    }

    std::printf("C++ typed path vs raw C typed path, %d events per round, best of %d rounds\n", users, rounds);
    std::printf("| path | C++ ns/event | C ns/event | C++/C |\n|---|---|---|---|\n");
    std::printf("| listener: presence::Listener vs presence_add_typed_listener (pump) | %.1f | %.1f | %.2f |\n",
                best_wrapped, best_raw, best_wrapped / best_raw);
    std::printf("| drain: engine.poll + presence::Batch iteration vs presence_poll_batch + presence_batch_event loop | %.1f | %.1f | %.2f |\n",
                best_cpp_drain, best_c_drain, best_cpp_drain / best_c_drain);
    std::printf("(checksums %llu %llu %llu %llu)\n", static_cast<unsigned long long>(online),
                static_cast<unsigned long long>(g_raw_online), static_cast<unsigned long long>(cpp_seen),
                static_cast<unsigned long long>(c_seen));
    return 0;
}
