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
#include <string>
#include <vector>

namespace {

std::uint64_t g_raw = 0;
std::uint64_t g_raw_online = 0;

void raw_callback(void *, const PresenceEventInfo *event) {
    ++g_raw;
    g_raw_online += event->online;
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
    const char *config = R"({"clock":"manual","dispatch":"manual"})";

    presence::Engine wrapped = must(presence::Engine::create(config));
    presence::Engine raw = must(presence::Engine::create(config));
    std::uint64_t handled = 0, online = 0;
    presence::Listener listener = must(wrapped.add_listener([&](const presence::Event &e) {
        ++handled;
        online += e.online;
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
        for (const auto &id : ids) must(wrapped.set_status(id, status));
        std::uint64_t before = handled;
        auto t = std::chrono::steady_clock::now();
        (void)must(wrapped.pump());
        best_wrapped = std::min(best_wrapped, seconds_since(t) * 1e9 / double(handled - before));

        for (const auto &id : ids) must(raw.set_status(id, status));
        before = g_raw;
        t = std::chrono::steady_clock::now();
        (void)must(raw.pump());
        best_raw = std::min(best_raw, seconds_since(t) * 1e9 / double(g_raw - before));
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
        const char *status = round % 2 == 0 ? "c" : "d";
        for (const auto &id : ids) must(wrapped.set_status(id, status));
        (void)must(wrapped.poll(watcher, batch, max));
        auto t = std::chrono::steady_clock::now();
        for (presence::Event ev : batch) cpp_seen += ev.online + ev.seq;
        best_cpp_drain = std::min(best_cpp_drain, seconds_since(t) * 1e9 / double(batch.size()));
        t = std::chrono::steady_clock::now();
        const std::uint32_t n = presence_batch_len(batch.get());
        for (std::uint32_t i = 0; i < n; ++i) {
            const PresenceEventInfo *ev = presence_batch_event(batch.get(), i);
            c_seen += ev->online + ev->seq;
        }
        best_c_drain = std::min(best_c_drain, seconds_since(t) * 1e9 / double(n));
    }

    std::printf("C++ typed path vs raw C typed path, %d events per round, best of %d rounds\n", users, rounds);
    std::printf("| path | C++ ns/event | C ns/event | C++/C |\n|---|---|---|---|\n");
    std::printf("| listener: presence::Listener vs presence_add_typed_listener (pump) | %.1f | %.1f | %.2f |\n",
                best_wrapped, best_raw, best_wrapped / best_raw);
    std::printf("| drain: presence::Batch iteration vs presence_batch_event loop | %.2f | %.2f | %.2f |\n",
                best_cpp_drain, best_c_drain, best_cpp_drain / best_c_drain);
    std::printf("(checksums %llu %llu %llu %llu)\n", static_cast<unsigned long long>(online),
                static_cast<unsigned long long>(g_raw_online), static_cast<unsigned long long>(cpp_seen),
                static_cast<unsigned long long>(c_seen));
    return 0;
}
