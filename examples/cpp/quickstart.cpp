// C++ quick start (shown verbatim in bindings/cpp/README.md).
#include "presence.hpp"

#include <iostream>

int main() {
    try {
        auto engine = presence::Engine::create(R"({"clock":"manual","start_time_ms":0})");

        // Print every presence change the host sees; the token removes the listener.
        presence::Listener listener = engine.add_listener(
            "user.presence.changed", std::nullopt, [](const presence::Event &e) {
                std::cout << e.user_id << " is " << (e.online ? "online" : "offline") << '\n';
            });

        engine.upsert_channel(R"({"type":"lobby","id":"main","members":["alice","bob"]})");
        presence::ConnectionId bob = engine.connect(R"({"id":"bob"})");
        std::string state = engine.watch_channel(bob, "lobby:main");
        std::cout << "lobby: " << state << '\n';

        presence::ConnectionId alice = engine.connect(R"({"id":"alice","status":"ready"})");
        std::cout << "bob's queue: " << engine.poll_events(bob) << '\n';

        engine.disconnect(alice);
        engine.disconnect(bob);
    } catch (const presence::Error &e) {
        std::cerr << e.code_name() << ": " << e.what() << '\n';
        return 1;
    }
    return 0;
}
