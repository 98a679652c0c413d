// A small lobby host: players join and leave a lobby channel, one of them goes
// invisible, and the host prints every presence event it sees. The engine runs
// with "dispatch":"manual", so callbacks run only inside pump(), once per frame,
// like a game loop would.
#include "presence.hpp"

#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

namespace {

// The first "status" string in an event's JSON, for display (no JSON library here).
std::string status_of(std::string_view json) {
    const std::string_view key = "\"status\":\"";
    size_t pos = json.find(key);
    if (pos == std::string_view::npos) return {};
    pos += key.size();
    return std::string(json.substr(pos, json.find('"', pos) - pos));
}

} // namespace

int main() {
    constexpr std::int64_t start_ms = 1546867062375; // 2019-01-07T13:17:42.375Z
    try {
        auto engine = presence::Engine::create(
            R"({"clock":"manual","start_time_ms":1546867062375,"dispatch":"manual",)"
            R"("connection_timeout_ms":30000})");
        std::cout << "presence " << presence::version() << " (ABI " << presence::abi_version()
                  << ")\n";

        int frame = 0;
        presence::Listener host = engine.add_listener([&](const presence::Event &e) {
            std::cout << "[frame " << frame << "] #" << e.seq << ' ' << e.type;
            if (!e.user_id.empty()) std::cout << " user=" << e.user_id;
            if (!e.cid.empty()) std::cout << " cid=" << e.cid;
            if (e.type == "user.presence.changed") {
                std::cout << (e.online ? " online" : " offline");
                std::string status = status_of(e.json);
                if (!status.empty()) std::cout << " status=\"" << status << '"';
            }
            std::cout << '\n';
        });

        engine.upsert_channel(R"({"type":"lobby","id":"main","name":"Main lobby"})");

        struct Player {
            std::string id;
            presence::ConnectionId conn = 0;
        };
        std::vector<Player> players{{"alice"}, {"bob"}, {"carol"}, {"dave"}};

        for (frame = 1; frame <= 8; ++frame) {
            engine.set_time(start_ms + frame * 10000); // 10 s per frame
            switch (frame) {
            case 1:
            case 2:
            case 3:
            case 4: {
                Player &p = players[static_cast<size_t>(frame - 1)];
                std::string json = R"({"id":)" + presence::json_quote(p.id) +
                                   (p.id == "carol" ? R"(,"invisible":true)" : "") +
                                   R"(,"status":"in lobby"})";
                p.conn = engine.connect(json);
                engine.add_members("lobby:main", {p.id});
                (void)engine.watch_channel(p.conn, "lobby:main");
                break;
            }
            case 5:
                engine.set_status("alice", "ready");
                break;
            case 6:
                engine.disconnect(players[1].conn); // bob leaves
                players[1].conn = 0;
                break;
            default:
                break;
            }
            // Everyone still here sends a heartbeat, except dave, who times out.
            for (const Player &p : players) {
                if (p.conn != 0 && p.id != "dave") engine.heartbeat(p.conn);
            }
            engine.tick();
            std::uint32_t delivered = engine.pump();
            if (delivered > 0) std::cout << "  (" << delivered << " callbacks)\n";
        }

        std::cout << "alice's queue: " << engine.poll_events(players[0].conn, 100) << '\n';
        std::cout << "online now: "
                  << engine.query_users(players[0].conn,
                                        R"({"filter_conditions":{"online":true},"sort":{"id":1}})")
                  << '\n';
    } catch (const presence::Error &e) {
        std::cerr << "error " << e.code_name() << ": " << e.what() << '\n';
        return 1;
    }
    return 0;
}
