/* End-to-end behaviour through the C ABI: the presence scenario on a manual clock,
 * callbacks (fields of PresenceEvent, user_data, re-entrant calls, a listener removing
 * itself), manual dispatch with presence_pump on a game-loop thread, and a save/load
 * round trip in a temporary folder. */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 2019-01-07T13:17:42.375Z */
#define T0 INT64_C(1546867062375)
#define MINUTE INT64_C(60000)

/* ----- an event recorder used as user_data ----- */

typedef struct Record {
  char *type;
  uint64_t seq;
  PresenceConnectionId connection_id;
  char *user_id; /* NULL when the event had none */
  char *cid;     /* NULL when the event had none */
  bool online;
  char *json;
} Record;

typedef struct Recorder {
  Record items[256];
  int count;
  int overflow;
} Recorder;

static char *copy(const char *s) { return s ? strdup(s) : NULL; }

static void record(void *user_data, const PresenceEvent *event) {
  Recorder *r = user_data;
  if (r->count == (int)(sizeof r->items / sizeof r->items[0])) {
    r->overflow++;
    return;
  }
  Record *item = &r->items[r->count++];
  item->type = copy(event->type);
  item->seq = event->seq;
  item->connection_id = event->connection_id;
  item->user_id = copy(event->user_id);
  item->cid = copy(event->cid);
  item->online = event->online;
  item->json = copy(event->json);
}

static void recorder_clear(Recorder *r) {
  for (int i = 0; i < r->count; i++) {
    free(r->items[i].type);
    free(r->items[i].user_id);
    free(r->items[i].cid);
    free(r->items[i].json);
  }
  r->count = 0;
}

/* The last record of `type` about `user_id` delivered to `conn` (any recipient when conn is
 * UINT64_MAX), or NULL. */
static const Record *find_last(const Recorder *r, const char *type, const char *user_id,
                               PresenceConnectionId conn) {
  for (int i = r->count - 1; i >= 0; i--) {
    const Record *item = &r->items[i];
    if (strcmp(item->type, type) == 0 && item->user_id && strcmp(item->user_id, user_id) == 0 &&
        (conn == UINT64_MAX || item->connection_id == conn)) {
      return item;
    }
  }
  return NULL;
}

static bool seqs_strictly_increase(const Recorder *r) {
  for (int i = 1; i < r->count; i++) {
    if (r->items[i].seq <= r->items[i - 1].seq) {
      return false;
    }
  }
  return true;
}

/* The user as `viewer` sees it, as a fresh string (free it). */
static char *get_user(PresenceEngine *e, PresenceConnectionId viewer, const char *id) {
  char *json = NULL;
  EXPECT_OK(presence_get_user(e, viewer, id, &json));
  return json;
}

static char *poll_all(PresenceEngine *e, PresenceConnectionId conn) {
  char *json = NULL;
  EXPECT_OK(presence_poll_events(e, conn, 1000, &json));
  return json;
}

/* ----- the scenario ----- */

static void test_presence_scenario(void) {
  static Recorder host, delivered;
  PresenceEngine *e = new_engine("{\"clock\":\"manual\",\"start_time_ms\":1546867062375}");
  PresenceListenerId host_id = 0, delivery_id = 0;
  EXPECT_OK(presence_add_listener(e, NULL, NULL, record, &host, &host_id));
  EXPECT_OK(presence_add_delivery_listener(e, record, &delivered, &delivery_id));

  /* A user with a status connects: online, last_active set. */
  PresenceConnectionId alice = connect_user(e, "{\"id\":\"alice\",\"status\":\"In the lobby\",\"name\":\"Alice\"}");
  const Record *ev = find_last(&host, "user.presence.changed", "alice", UINT64_MAX);
  CHECK(ev != NULL);
  if (ev) {
    CHECK(ev->connection_id == 0 && ev->online && ev->cid == NULL);
    CHECK_CONTAINS(ev->json, "\"invisible\":false"); /* host listeners see the own view */
    CHECK_CONTAINS(ev->json, "\"status\":\"In the lobby\"");
  }
  char *user = get_user(e, 0, "alice");
  CHECK_CONTAINS(user, "\"last_active\":\"2019-01-07T13:17:42.375Z\"");
  presence_string_free(user);

  /* Another connection watches a channel with presence and gets the current state. */
  PresenceConnectionId bob = connect_user(e, "{\"id\":\"bob\"}");
  EXPECT_OK(presence_upsert_channel(e, "{\"type\":\"lobby\",\"id\":\"main\",\"members\":[\"alice\",\"bob\"]}"));
  char *state = NULL;
  EXPECT_OK(presence_watch_channel(e, bob, "lobby:main", true, &state));
  CHECK_CONTAINS(state, "\"status\":\"In the lobby\"");
  CHECK_CONTAINS(state, "\"watcher_count\":1");
  /* bob sees the public view of alice: only his own entries (member, watcher) show it */
  CHECK(count_of(state, "\"invisible\"") == 2);
  presence_string_free(state);
  ev = find_last(&host, "user.watching.start", "bob", UINT64_MAX);
  CHECK(ev != NULL && ev->cid != NULL && strcmp(ev->cid, "lobby:main") == 0);
  free(poll_all(e, bob));

  /* alice's status changes: bob receives user.presence.changed through his queue and the
   * delivery listener. */
  int before = delivered.count;
  EXPECT_OK(presence_set_status(e, "alice", "Playing"));
  char *events = poll_all(e, bob);
  CHECK(count_of(events, "\"type\":\"user.presence.changed\"") == 1);
  CHECK_CONTAINS(events, "\"status\":\"Playing\"");
  CHECK_CONTAINS(events, "\"online\":true");
  presence_string_free(events);
  ev = find_last(&delivered, "user.presence.changed", "alice", bob);
  CHECK(ev != NULL && delivered.count > before);
  if (ev) {
    CHECK(ev->online && ev->cid == NULL);
    CHECK(json_u64(ev->json, "connection_id") == bob);
    CHECK(json_u64(ev->json, "seq") == ev->seq);
    CHECK_CONTAINS(ev->json, "\"status\":\"Playing\"");
  }

  /* alice goes invisible: offline to bob everywhere, still online in her own view. */
  EXPECT_OK(presence_set_invisible(e, "alice", true));
  events = poll_all(e, bob);
  CHECK(count_of(events, "\"type\":\"user.presence.changed\"") == 1);
  CHECK_CONTAINS(events, "\"online\":false");
  CHECK_LACKS(events, "invisible");
  presence_string_free(events);
  ev = find_last(&delivered, "user.presence.changed", "alice", bob);
  CHECK(ev != NULL && !ev->online);
  ev = find_last(&host, "user.presence.changed", "alice", UINT64_MAX);
  CHECK(ev != NULL && ev->online); /* own view: she holds a live connection */
  if (ev) {
    CHECK_CONTAINS(ev->json, "\"invisible\":true");
  }
  user = get_user(e, bob, "alice");
  CHECK_CONTAINS(user, "\"online\":false");
  presence_string_free(user);
  user = get_user(e, alice, "alice");
  CHECK_CONTAINS(user, "\"invisible\":true");
  CHECK_CONTAINS(user, "\"online\":true");
  presence_string_free(user);
  char *found = NULL;
  EXPECT_OK(presence_query_users(e, bob, "{\"filter_conditions\":{\"online\":true}}", &found));
  CHECK_LACKS(found, "\"alice\"");
  CHECK_CONTAINS(found, "\"bob\"");
  presence_string_free(found);

  /* 15 minutes while invisible: last_active does not move. */
  EXPECT_OK(presence_set_time(e, T0 + 15 * MINUTE));
  EXPECT_OK(presence_tick(e));
  user = get_user(e, 0, "alice");
  CHECK_CONTAINS(user, "\"last_active\":\"2019-01-07T13:17:42.375Z\"");
  presence_string_free(user);

  /* She comes back: online to bob again. */
  EXPECT_OK(presence_set_invisible(e, "alice", false));
  events = poll_all(e, bob);
  CHECK(count_of(events, "\"type\":\"user.presence.changed\"") == 1);
  CHECK_CONTAINS(events, "\"online\":true");
  presence_string_free(events);
  ev = find_last(&delivered, "user.presence.changed", "alice", bob);
  CHECK(ev != NULL && ev->online);

  /* 15 more simulated minutes: last_active refreshes, with no event. */
  int host_before = host.count;
  EXPECT_OK(presence_set_time(e, T0 + 30 * MINUTE));
  EXPECT_OK(presence_tick(e));
  user = get_user(e, bob, "alice");
  CHECK_CONTAINS(user, "\"last_active\":\"2019-01-07T13:47:42.375Z\"");
  presence_string_free(user);
  events = poll_all(e, bob);
  CHECK(strcmp(events, "[]") == 0);
  presence_string_free(events);
  CHECK(host.count == host_before);

  /* She leaves a minute later: offline, last seen then. */
  EXPECT_OK(presence_set_time(e, T0 + 31 * MINUTE));
  EXPECT_OK(presence_disconnect(e, alice));
  events = poll_all(e, bob);
  CHECK_CONTAINS(events, "\"type\":\"user.presence.changed\"");
  CHECK_CONTAINS(events, "\"online\":false");
  CHECK_CONTAINS(events, "\"last_active\":\"2019-01-07T13:48:42.375Z\"");
  presence_string_free(events);
  ev = find_last(&host, "connection.closed", "alice", UINT64_MAX);
  CHECK(ev != NULL);
  if (ev) {
    CHECK_CONTAINS(ev->json, "\"reason\":\"disconnect\"");
    CHECK(json_u64(ev->json, "closed_connection_id") == alice);
  }

  CHECK(host.overflow == 0 && delivered.overflow == 0);
  CHECK(seqs_strictly_increase(&host));
  CHECK(host.count > 0 && host.items[0].seq == 1);
  CHECK(host.count > 0 && host.items[host.count - 1].seq == (uint64_t)host.count);
  EXPECT_OK(presence_remove_listener(e, host_id));
  EXPECT_OK(presence_remove_listener(e, delivery_id));
  EXPECT_OK(presence_disconnect(e, bob));
  presence_engine_free(e);
  recorder_clear(&host);
  recorder_clear(&delivered);
}

/* ----- callbacks ----- */

typedef struct SelfRemover {
  PresenceEngine *engine;
  PresenceListenerId id;
  int calls;
  PresenceResult removal;
} SelfRemover;

static void remove_myself(void *user_data, const PresenceEvent *event) {
  SelfRemover *s = user_data;
  (void)event;
  s->calls++;
  s->removal = presence_remove_listener(s->engine, s->id);
}

static void test_callback_removes_its_own_listener(void) {
  PresenceEngine *e = new_engine(NULL);
  SelfRemover s = {e, 0, 0, PRESENCE_ERR_PANIC};
  EXPECT_OK(presence_add_listener(e, NULL, NULL, remove_myself, &s, &s.id));
  /* One call makes several events (presence, member.added ...): only the first reaches it. */
  PresenceConnectionId c = connect_user(e, "{\"id\":\"r\"}");
  EXPECT_OK(presence_upsert_channel(e, "{\"cid\":\"room:r\",\"members\":[\"r\",\"s\",\"t\"]}"));
  CHECK(s.calls == 1);
  CHECK(s.removal == PRESENCE_OK);
  EXPECT_ERR(presence_remove_listener(e, s.id), PRESENCE_ERR_NOT_FOUND, "unknown listener");
  EXPECT_OK(presence_disconnect(e, c));
  CHECK(s.calls == 1);
  presence_engine_free(e);
}

typedef struct Reentrant {
  PresenceEngine *engine;
  Recorder *all; /* the recorder of every event, to check ordering */
  int calls;
  int echoes_seen_inside;
  PresenceResult get_result, set_result;
  bool user_online;
} Reentrant;

static void reenter(void *user_data, const PresenceEvent *event) {
  Reentrant *r = user_data;
  r->calls++;
  char *json = NULL;
  r->get_result = presence_get_user(r->engine, 0, event->user_id, &json);
  r->user_online = json != NULL && strstr(json, "\"online\":true") != NULL;
  presence_string_free(json);
  if (r->calls == 1) {
    /* An event caused from inside a callback is delivered after this one returns. */
    r->set_result = presence_set_status(r->engine, "dave", "echo");
    r->echoes_seen_inside = find_last(r->all, "user.presence.changed", "dave", UINT64_MAX) != NULL;
  }
}

static void test_reentrant_callback(void) {
  static Recorder all;
  PresenceEngine *e = new_engine(NULL);
  Reentrant r = {e, &all, 0, -1, PRESENCE_ERR_PANIC, PRESENCE_ERR_PANIC, false};
  PresenceListenerId all_id = 0, carol_id = 0;
  EXPECT_OK(presence_upsert_user(e, "{\"id\":\"dave\"}"));
  EXPECT_OK(presence_add_listener(e, "user.presence.changed", "carol", reenter, &r, &carol_id));
  EXPECT_OK(presence_add_listener(e, NULL, NULL, record, &all, &all_id));
  PresenceConnectionId c = connect_user(e, "{\"id\":\"carol\"}");
  CHECK(r.calls == 1);
  CHECK(r.get_result == PRESENCE_OK && r.user_online);
  CHECK(r.set_result == PRESENCE_OK);
  CHECK(r.echoes_seen_inside == 0);
  const Record *carol = find_last(&all, "user.presence.changed", "carol", UINT64_MAX);
  const Record *dave = find_last(&all, "user.presence.changed", "dave", UINT64_MAX);
  CHECK(carol != NULL && dave != NULL && carol < dave && carol->seq < dave->seq);
  CHECK(seqs_strictly_increase(&all));
  EXPECT_OK(presence_disconnect(e, c));
  CHECK(r.calls == 2); /* the filter matched carol going offline too */
  presence_engine_free(e);
  recorder_clear(&all);
}

/* ----- manual dispatch: a game loop pumping on its own thread ----- */

typedef struct Loop {
  PresenceEngine *engine;
  pthread_t thread;
  int callbacks;
  int on_loop_thread;
  uint32_t pumped;
  PresenceResult result;
} Loop;

static void on_loop_event(void *user_data, const PresenceEvent *event) {
  Loop *loop = user_data;
  (void)event;
  loop->callbacks++;
  loop->on_loop_thread += pthread_equal(pthread_self(), loop->thread) ? 1 : 0;
}

static void *game_loop(void *arg) {
  Loop *loop = arg;
  loop->thread = pthread_self();
  uint32_t n = 0;
  loop->result = presence_pump(loop->engine, &n);
  loop->pumped = n;
  return NULL;
}

static void test_manual_dispatch(void) {
  PresenceEngine *e = new_engine("{\"dispatch\":\"manual\"}");
  Loop loop = {e, pthread_self(), 0, 0, 0, PRESENCE_ERR_PANIC};
  PresenceListenerId id = 0;
  EXPECT_OK(presence_add_listener(e, NULL, NULL, on_loop_event, &loop, &id));
  PresenceConnectionId a = connect_user(e, "{\"id\":\"m1\"}");
  PresenceConnectionId b = connect_user(e, "{\"id\":\"m2\"}");
  EXPECT_OK(presence_set_status(e, "m1", "afk"));
  CHECK(loop.callbacks == 0); /* nothing runs outside presence_pump */
  pthread_t t;
  CHECK(pthread_create(&t, NULL, game_loop, &loop) == 0);
  pthread_join(t, NULL);
  CHECK(loop.result == PRESENCE_OK);
  CHECK(loop.callbacks == 3);
  CHECK(loop.pumped == 3);
  CHECK(loop.on_loop_thread == 3);
  uint32_t n = 7;
  EXPECT_OK(presence_pump(e, &n));
  CHECK(n == 0);
  EXPECT_OK(presence_disconnect(e, a));
  EXPECT_OK(presence_disconnect(e, b));
  EXPECT_OK(presence_pump(e, &n));
  CHECK(n == 4); /* two user.presence.changed, two connection.closed */
  presence_engine_free(e); /* with a listener still registered: released with the engine */
}

/* ----- save and load ----- */

static void test_save_load_round_trip(void) {
  char dir[] = "/tmp/presence-c-save-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char path[128];
  snprintf(path, sizeof path, "%s/presence.json", dir);

  PresenceEngine *e = new_engine("{\"clock\":\"manual\",\"start_time_ms\":1546867062375}");
  PresenceConnectionId c = connect_user(e, "{\"id\":\"sam\",\"status\":\"brb\",\"level\":7}");
  EXPECT_OK(presence_set_invisible(e, "sam", true));
  EXPECT_OK(presence_upsert_channel(e, "{\"cid\":\"guild:oak\",\"members\":[\"sam\",\"kim\"],\"motto\":\"grow\"}"));
  EXPECT_OK(presence_set_time(e, T0 + MINUTE));
  EXPECT_OK(presence_disconnect(e, c));
  EXPECT_OK(presence_save(e, path));
  EXPECT_OK(presence_save(e, path)); /* replacing the previous file */
  presence_engine_free(e);

  PresenceEngine *loaded = new_engine(NULL);
  EXPECT_OK(presence_load(loaded, path));
  char *user = get_user(loaded, 0, "sam");
  CHECK_CONTAINS(user, "\"status\":\"brb\"");
  CHECK_CONTAINS(user, "\"invisible\":true");
  CHECK_CONTAINS(user, "\"level\":7");
  CHECK_CONTAINS(user, "\"online\":false");
  CHECK_CONTAINS(user, "\"last_active\":\"2019-01-07T13:17:42.375Z\""); /* invisible: not advanced */
  presence_string_free(user);
  char *channels = NULL;
  EXPECT_OK(presence_query_channels(loaded, 0, "{\"filter_conditions\":{\"cid\":\"guild:oak\"}}", &channels));
  CHECK_CONTAINS(channels, "\"motto\":\"grow\"");
  CHECK_CONTAINS(channels, "\"member_count\":2");
  CHECK_CONTAINS(channels, "\"user_id\":\"kim\"");
  presence_string_free(channels);
  /* Invisible persists across the reload and a reconnect. */
  PresenceConnectionId again = connect_user(loaded, "{\"id\":\"sam\"}");
  PresenceConnectionId viewer = connect_user(loaded, "{\"id\":\"kim\"}");
  user = get_user(loaded, viewer, "sam");
  CHECK_CONTAINS(user, "\"online\":false");
  presence_string_free(user);
  EXPECT_OK(presence_disconnect(loaded, again));
  EXPECT_OK(presence_disconnect(loaded, viewer));
  presence_engine_free(loaded);
  unlink(path);
  CHECK(rmdir(dir) == 0); /* no temporary file left behind */
}

int main(void) {
  test_presence_scenario();
  test_callback_removes_its_own_listener();
  test_reentrant_callback();
  test_manual_dispatch();
  test_save_load_round_trip();
  return finish();
}
