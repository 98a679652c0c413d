// A small lobby host: players join and leave a lobby channel, one of them goes
// invisible, and the host prints every presence event it sees. The engine runs
// with "dispatch":"manual", so callbacks run only inside pump(), once per frame,
// like a game loop would. Every call answers a presence::Result (no exceptions needed);
// `must` stops the example on the first failure.
#include "presence.hpp"

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

namespace {

// The value of a call that must succeed; prints the error and exits otherwise.
template <typename T>
T must(presence::Result<T> r) {
    if (!r.has_value()) {
        std::cerr << "error " << r.error().code_name() << ": " << r.error().message() << '\n';
        std::exit(1);
    }
    if constexpr (!std::is_void_v<T>) return std::move(*r);
}

} // namespace

int main() {
    constexpr std::int64_t start_ms = 1546867062375; // 2019-01-07T13:17:42.375Z
    {
        auto engine = must(presence::Engine::create(
            R"({"clock":"manual","start_time_ms":1546867062375,"dispatch":"manual",)"
            R"("connection_timeout_ms":30000})"));
        std::cout << "presence " << presence::version() << " (ABI " << presence::abi_version()
                  << ")\n";

        int frame = 0;
        presence::Listener host = must(engine.add_listener([&](const presence::Event &e) {
            std::cout << "[frame " << frame << "] #" << e.seq << ' ' << e.type;
            if (!e.user_id.empty()) std::cout << " user=" << e.user_id;
            if (!e.cid.empty()) std::cout << " cid=" << e.cid;
            if (e.kind == presence::EventKind::user_presence_changed) {
                std::cout << (e.online ? " online" : " offline");
                if (e.status) std::cout << " status=\"" << *e.status << '"';
            }
            std::cout << '\n';
        }));

        must(engine.upsert_channel(R"({"type":"lobby","id":"main","name":"Main lobby"})"));

        struct Player {
            std::string id;
            presence::ConnectionId conn = 0;
        };
        std::vector<Player> players{{"alice"}, {"bob"}, {"carol"}, {"dave"}};

        for (frame = 1; frame <= 8; ++frame) {
            must(engine.set_time(start_ms + frame * 10000)); // 10 s per frame
            switch (frame) {
            case 1:
            case 2:
            case 3:
            case 4: {
                Player &p = players[static_cast<size_t>(frame - 1)];
                std::string json = R"({"id":)" + presence::json_quote(p.id) +
                                   (p.id == "carol" ? R"(,"invisible":true)" : "") +
                                   R"(,"status":"in lobby"})";
                p.conn = must(engine.connect(json));
                must(engine.add_members("lobby:main", {p.id}));
                (void)must(engine.watch_channel(p.conn, "lobby:main"));
                break;
            }
            case 5:
                must(engine.set_status("alice", "ready"));
                break;
            case 6:
                must(engine.disconnect(players[1].conn)); // bob leaves
                players[1].conn = 0;
                break;
            default:
                break;
            }
            // Everyone still here sends a heartbeat, except dave, who times out.
            for (const Player &p : players) {
                if (p.conn != 0 && p.id != "dave") must(engine.heartbeat(p.conn));
            }
            must(engine.tick());
            std::uint32_t delivered = must(engine.pump());
            if (delivered > 0) std::cout << "  (" << delivered << " callbacks)\n";
        }

        presence::Batch feed = must(presence::Batch::create());
        std::cout << "alice's queue: " << must(engine.poll(players[0].conn, feed)) << " events\n";
        std::cout << "online now:";
        for (const presence::User &u : must(engine.query_users(
                 players[0].conn, R"({"filter_conditions":{"online":true},"sort":{"id":1}})"))) {
            std::cout << ' ' << u.id << (u.status ? " (" + *u.status + ")" : std::string());
        }
        std::cout << '\n';
    }
    return 0;
}
