/* lobby.c - a small C host for the presence engine.
 *
 * Three players connect to a game lobby; the host's matchmaker connection watches the
 * lobby channel with presence and prints every event it receives through a callback.
 * One player goes invisible, time advances on a manual clock, a player leaves, and a
 * summary is printed.
 *
 * Build (from the repository root, after `cargo build --release`):
 *   gcc -std=c11 -Iinclude examples/c/lobby.c target/release/libpresence.a -lpthread -ldl -lm -o lobby
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "presence.h"

/* Stops the example with the engine's message when a call fails. */
static void check(PresenceResult r, const char *what) {
  if (r != PRESENCE_OK) {
    fprintf(stderr, "%s failed: %s: %s\n", what, presence_result_name(r), presence_last_error());
    exit(1);
  }
}

typedef struct Counts {
  int events;
  int online_changes;
} Counts;

/* A delivery listener: one call per (event, recipient connection). The event and its
 * strings are valid only during the call. */
static void on_event(void *user_data, const PresenceEvent *event) {
  Counts *counts = user_data;
  counts->events++;
  if (strcmp(event->type, "user.presence.changed") == 0) {
    counts->online_changes++;
  }
  printf("  [conn %llu] #%llu %-21s %-10s %-7s %s\n", (unsigned long long)event->connection_id,
         (unsigned long long)event->seq, event->type, event->user_id ? event->user_id : "-",
         event->online ? "online" : "offline", event->cid ? event->cid : "");
}

int main(void) {
  printf("presence %s (ABI %u)\n", presence_version(), presence_abi_version());
  if (presence_abi_version() != PRESENCE_ABI_VERSION) {
    fprintf(stderr, "header and library disagree on the ABI version\n");
    return 1;
  }

  /* A manual clock starting at 2019-01-07T13:17:42.375Z, so the run is reproducible. */
  PresenceEngine *engine = NULL;
  check(presence_engine_new("{\"clock\":\"manual\",\"start_time_ms\":1546867062375}", &engine),
        "presence_engine_new");

  Counts counts = {0, 0};
  PresenceListenerId listener = 0;
  check(presence_add_delivery_listener(engine, on_event, &counts, &listener),
        "presence_add_delivery_listener");

  /* The lobby and its members. */
  check(presence_upsert_channel(engine,
                                "{\"type\":\"lobby\",\"id\":\"eu-1\",\"members\":"
                                "[\"ana\",\"ben\",\"cy\"],\"mode\":\"ranked\"}"),
        "presence_upsert_channel");

  /* The matchmaker connects and watches the lobby with presence. */
  PresenceConnectionId matchmaker = 0;
  check(presence_connect(engine, "{\"id\":\"matchmaker\"}", &matchmaker), "presence_connect");
  check(presence_watch_channel(engine, matchmaker, "lobby:eu-1", true, NULL),
        "presence_watch_channel");

  printf("players connect:\n");
  PresenceConnectionId ana = 0, ben = 0, cy = 0;
  check(presence_connect(engine, "{\"id\":\"ana\",\"status\":\"Looking for a match\"}", &ana),
        "presence_connect(ana)");
  check(presence_connect(engine, "{\"id\":\"ben\",\"name\":\"Ben\"}", &ben), "presence_connect(ben)");
  check(presence_connect(engine, "{\"id\":\"cy\"}", &cy), "presence_connect(cy)");

  printf("ben goes invisible:\n");
  check(presence_set_invisible(engine, "ben", true), "presence_set_invisible");

  printf("15 minutes pass:\n");
  check(presence_set_time(engine, 1546867062375 + 15 * 60 * 1000), "presence_set_time");
  check(presence_tick(engine), "presence_tick");

  printf("cy leaves:\n");
  check(presence_disconnect(engine, cy), "presence_disconnect");

  /* Who is online, as the matchmaker sees it (ben is invisible, so offline). */
  char *online = NULL;
  check(presence_query_users(engine, matchmaker,
                             "{\"filter_conditions\":{\"online\":true},\"sort\":{\"id\":1}}",
                             &online),
        "presence_query_users");
  printf("online for the matchmaker: %s\n", online);
  presence_string_free(online);

  char *ana_json = NULL;
  check(presence_get_user(engine, matchmaker, "ana", &ana_json), "presence_get_user");
  printf("ana: %s\n", ana_json);
  presence_string_free(ana_json);

  /* An error, to show presence_last_error(). */
  PresenceResult r = presence_set_status(engine, "nobody", "hi");
  printf("expected error: %s: %s\n", presence_result_name(r), presence_last_error());

  printf("summary: %d events delivered, %d presence changes\n", counts.events,
         counts.online_changes);

  check(presence_remove_listener(engine, listener), "presence_remove_listener");
  presence_disconnect(engine, ana);
  presence_disconnect(engine, ben);
  presence_disconnect(engine, matchmaker);
  presence_engine_free(engine);
  return 0;
}
