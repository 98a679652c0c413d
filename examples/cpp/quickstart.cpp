// C++ quick start (shown verbatim in bindings/cpp/README.md). Builds with or without
// exceptions: every call answers a presence::Result.
#include "presence.hpp"

#include <iostream>

int main() {
    auto created = presence::Engine::create(R"({"clock":"manual","start_time_ms":0})");
    if (!created) {
        std::cerr << created.error().code_name() << ": " << created.error().message() << '\n';
        return 1;
    }
    presence::Engine engine = std::move(*created);

    // Print every presence change the host sees; the token removes the listener.
    auto listener = engine.add_listener(
        "user.presence.changed", std::nullopt, [](const presence::Event &e) {
            std::cout << e.user_id << " is " << (e.online ? "online" : "offline") << '\n';
        });
    if (!listener) return 1;

    (void)engine.upsert_channel(R"({"type":"lobby","id":"main","members":["alice","bob"]})");
    presence::ConnectionId bob = engine.connect_user("bob").value_or(0);
    presence::Result<presence::ChannelState> lobby = engine.watch_channel(bob, "lobby:main");
    if (lobby) {
        for (const presence::Member &m : lobby->members) {
            std::cout << "lobby member " << m.user_id << (m.user.online ? " (online)" : "") << '\n';
        }
    }

    presence::ConnectionId alice = engine.connect(R"({"id":"alice","status":"ready"})").value_or(0);

    // Bob's queue, drained typed into a reusable batch (no JSON, no allocation per event).
    presence::Result<presence::Batch> batch = presence::Batch::create();
    if (batch && engine.poll(bob, *batch)) {
        for (const presence::Event &e : *batch) {
            std::cout << "bob's feed: " << e.type << ' ' << e.user_id << ' '
                      << e.status.value_or("") << '\n';
        }
    }

    presence::Result<void> closed = engine.disconnect(alice);
    if (!closed) std::cerr << closed.error().message() << '\n';
    (void)engine.disconnect(bob);
    return 0;
}
