// ns per event through a presence.hpp listener (presence::Event, std::function) against
// the raw C listener it wraps, in one run: manual dispatch, one status change per user
// queued untimed, then pump() timed. Best of interleaved rounds. Run by
// benches/bindings/run.sh (PRESENCE_BENCH_SCALE=0.1 shrinks it).
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

void raw_callback(void *, const PresenceEvent *event) {
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
    if (presence_add_listener(raw.get(), nullptr, nullptr, raw_callback, nullptr, &raw_id) != PRESENCE_OK) return 1;

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
    std::printf("presence.hpp listener vs raw C listener, %d events per round, best of %d rounds\n", users, rounds);
    std::printf("| path | ns/event |\n|---|---|\n");
    std::printf("| presence.hpp Listener (presence::Event, std::function) | %.0f |\n", best_wrapped);
    std::printf("| raw C listener (baseline) | %.0f |\n", best_raw);
    std::printf("ratio C++/C: %.2f (online seen: %llu, %llu)\n", best_wrapped / best_raw,
                static_cast<unsigned long long>(online), static_cast<unsigned long long>(g_raw_online));
    return 0;
}
