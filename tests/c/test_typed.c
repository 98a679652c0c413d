/* The typed event path (ABI version 2): presence_connect_user, batches, typed listeners
 * with user_data finalizers and presence_event_info_json. Each function's success path and
 * error paths (result code, message, out-parameters untouched on failure), every field of
 * PresenceEventInfo, pointer lifetimes, how often finalizers run, and host queues. */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"

#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char BAD_UTF8[] = "\xff\xfe";
#define SENTINEL_ID ((uint64_t)0xdeadbeefu)

static bool same(const char *a, const char *b) {
  return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static void test_constants(void) {
  CHECK(PRESENCE_ABI_VERSION == 2);
  CHECK(presence_abi_version() == 2);
  CHECK(PRESENCE_EVENT_USER_PRESENCE_CHANGED == 1 && PRESENCE_EVENT_USER_UPDATED == 2 &&
        PRESENCE_EVENT_USER_WATCHING_START == 3 && PRESENCE_EVENT_USER_WATCHING_STOP == 4 &&
        PRESENCE_EVENT_MEMBER_ADDED == 5 && PRESENCE_EVENT_MEMBER_REMOVED == 6 &&
        PRESENCE_EVENT_CONNECTION_CLOSED == 7 && PRESENCE_EVENT_ENGINE_OVERFLOW == 8 &&
        PRESENCE_EVENT_CLUSTER_STATUS == 9);
  CHECK(PRESENCE_CLOSE_DISCONNECT == 1 && PRESENCE_CLOSE_TIMEOUT == 2 &&
        PRESENCE_CLOSE_SLOW_CONSUMER == 3 && PRESENCE_CLOSE_NODE_LOST == 4);
}

static void test_connect_user(void) {
  PresenceEngine *e = new_engine("{\"max_connections_per_user\":1}");
  PresenceConnectionId out = SENTINEL_ID;

  /* A new user is created with only its id; a known one keeps its fields. */
  PresenceConnectionId a = connect_id(e, "alice");
  char *json = NULL;
  EXPECT_OK(presence_get_user(e, 0, "alice", &json));
  CHECK_CONTAINS(json, "\"id\":\"alice\",\"online\":true,");
  CHECK_LACKS(json, "\"status\"");
  presence_string_free(json);
  EXPECT_OK(presence_upsert_user(e, "{\"id\":\"bob\",\"status\":\"away\",\"level\":3}"));
  connect_id(e, "bob");
  EXPECT_OK(presence_get_user(e, 0, "bob", &json));
  CHECK_CONTAINS(json, "\"online\":true,\"status\":\"away\"");
  CHECK_CONTAINS(json, "\"level\":3");
  presence_string_free(json);

  EXPECT_ERR(presence_connect_user(e, "alice", &out), PRESENCE_ERR_LIMIT,
             "presence_connect_user: user \"alice\" already holds 1 connections");
  EXPECT_ERR(presence_connect_user(NULL, "x", &out), PRESENCE_ERR_NULL,
             "presence_connect_user: engine is NULL");
  EXPECT_ERR(presence_connect_user(e, NULL, &out), PRESENCE_ERR_NULL,
             "presence_connect_user: user_id is NULL");
  EXPECT_ERR(presence_connect_user(e, "nobody", NULL), PRESENCE_ERR_NULL,
             "presence_connect_user: out is NULL");
  EXPECT_ERR(presence_connect_user(e, BAD_UTF8, &out), PRESENCE_ERR_UTF8,
             "presence_connect_user: user_id is not valid UTF-8 (invalid byte at offset 0)");
  EXPECT_ERR(presence_connect_user(e, "a b", &out), PRESENCE_ERR_INVALID, "whitespace");
  EXPECT_ERR(presence_connect_user(e, "", &out), PRESENCE_ERR_INVALID, "1..=255 bytes");
  CHECK(out == SENTINEL_ID);
  /* A NULL out-parameter is caught before anything changes: "nobody" was never created. */
  json = NULL;
  EXPECT_ERR(presence_get_user(e, 0, "nobody", &json), PRESENCE_ERR_NOT_FOUND, "unknown user");
  CHECK(json == NULL);
  EXPECT_OK(presence_disconnect(e, a));
  presence_engine_free(e);
}

static void test_batches(void) {
  PresenceEngine *e = new_engine("{\"clock\":\"manual\",\"start_time_ms\":1546867062375}");
  EXPECT_OK(presence_upsert_channel(e, "{\"cid\":\"team:red\",\"members\":[\"alice\",\"bob\"]}"));
  PresenceConnectionId alice = connect_id(e, "alice");
  EXPECT_OK(presence_watch_channel(e, alice, "team:red", true, NULL));
  EXPECT_OK(presence_set_time(e, 1546867063375)); /* one second later */
  PresenceConnectionId bob = connect_id(e, "bob");
  EXPECT_OK(presence_set_status(e, "bob", "away"));
  EXPECT_OK(presence_set_invisible(e, "bob", true)); /* offline to alice */
  EXPECT_OK(presence_disconnect(e, bob));            /* nothing new for alice */

  /* presence_batch_new / presence_batch_free */
  EXPECT_ERR(presence_batch_new(NULL), PRESENCE_ERR_NULL, "presence_batch_new: out is NULL");
  PresenceEventBatch *b = NULL;
  EXPECT_OK(presence_batch_new(&b));
  CHECK(b != NULL);
  CHECK(presence_batch_len(b) == 0);
  CHECK(presence_batch_event(b, 0) == NULL);
  presence_batch_free(NULL); /* accepted */
  CHECK(presence_batch_len(NULL) == 0);
  CHECK(presence_batch_event(NULL, 0) == NULL);

  /* Two events first: alice's own watching.start, then bob online. */
  EXPECT_OK(presence_poll_batch(e, alice, 2, b));
  CHECK(presence_batch_len(b) == 2);
  const PresenceEventInfo *start = presence_batch_event(b, 0);
  const PresenceEventInfo *online = presence_batch_event(b, 1);
  CHECK(presence_batch_event(b, 2) == NULL);
  CHECK(start != NULL && online != NULL);
  CHECK(start->kind == PRESENCE_EVENT_USER_WATCHING_START);
  CHECK(same(start->type_name, "user.watching.start"));
  CHECK(start->connection_id == alice);
  CHECK(same(start->user_id, "alice"));
  CHECK(same(start->cid, "team:red"));
  CHECK(start->online && !start->invisible); /* own view */
  CHECK(start->status == NULL);
  CHECK(start->last_active_ms == 1546867062375);
  CHECK(start->watcher_count == 1);
  CHECK(start->close_reason == 0 && start->closed_connection_id == 0);
  CHECK(start->created_at_ms == 1546867062375);

  CHECK(online->kind == PRESENCE_EVENT_USER_PRESENCE_CHANGED);
  CHECK(online->seq > start->seq);
  CHECK(online->connection_id == alice);
  CHECK(same(online->user_id, "bob"));
  CHECK(online->cid == NULL);
  CHECK(online->online && !online->invisible && online->status == NULL);
  CHECK(online->last_active_ms == 1546867063375);
  CHECK(online->watcher_count == -1);
  CHECK(online->created_at_ms == 1546867063375);

  /* JSON on demand, owned by the batch, stable while it is not refilled. */
  const char *json0 = NULL, *json1 = NULL, *again = NULL;
  EXPECT_OK(presence_batch_event_json(b, 1, &json1));
  EXPECT_OK(presence_batch_event_json(b, 0, &json0));
  EXPECT_OK(presence_batch_event_json(b, 1, &again));
  CHECK(again == json1);
  char expect[128];
  snprintf(expect, sizeof expect, "{\"type\":\"user.presence.changed\",\"created_at\":\"2019-01-07T13:17:43.375Z\","
           "\"seq\":%llu,\"connection_id\":%llu,\"user\":{\"id\":\"bob\",",
           (unsigned long long)online->seq, (unsigned long long)alice);
  CHECK(strncmp(json1, expect, strlen(expect)) == 0);
  CHECK_CONTAINS(json0, "\"type\":\"user.watching.start\"");
  CHECK_CONTAINS(json0, "\"invisible\":false"); /* alice's own view */
  CHECK_LACKS(json1, "invisible");              /* bob in public view */
  const char *untouched = (const char *)0x1;
  EXPECT_ERR(presence_batch_event_json(b, 2, &untouched), PRESENCE_ERR_INVALID,
             "presence_batch_event_json: index 2 is past the end (the batch holds 2)");
  EXPECT_ERR(presence_batch_event_json(NULL, 0, &untouched), PRESENCE_ERR_NULL,
             "presence_batch_event_json: batch is NULL");
  EXPECT_ERR(presence_batch_event_json(b, 0, NULL), PRESENCE_ERR_NULL,
             "presence_batch_event_json: out_json is NULL");
  CHECK(untouched == (const char *)0x1);
  /* An info from a batch is not a callback's: its JSON comes from the batch. */
  EXPECT_ERR(presence_event_info_json(start, &untouched), PRESENCE_ERR_STATE,
             "presence_event_info_json: event is not the event of a typed callback");

  /* A failed poll leaves the batch empty, whichever argument is wrong; nothing moved. */
  EXPECT_ERR(presence_poll_batch(NULL, alice, 100, b), PRESENCE_ERR_NULL, "presence_poll_batch: engine is NULL");
  CHECK(presence_batch_len(b) == 0 && presence_batch_event(b, 0) == NULL);

  /* Refilling: the rest, in order, then nothing. */
  EXPECT_OK(presence_poll_batch(e, alice, 100, b));
  CHECK(presence_batch_len(b) == 2);
  const PresenceEventInfo *status = presence_batch_event(b, 0);
  const PresenceEventInfo *hidden = presence_batch_event(b, 1);
  CHECK(status->kind == PRESENCE_EVENT_USER_PRESENCE_CHANGED && same(status->status, "away"));
  CHECK(status->online);
  CHECK(hidden->kind == PRESENCE_EVENT_USER_PRESENCE_CHANGED && same(hidden->user_id, "bob"));
  CHECK(!hidden->online && !hidden->invisible); /* public view: invisible reads as offline */
  CHECK(status->seq < hidden->seq);
  EXPECT_OK(presence_batch_event_json(b, 1, &json1));
  CHECK_CONTAINS(json1, "\"online\":false,\"status\":\"away\"");
  EXPECT_OK(presence_poll_batch(e, alice, 100, b));
  CHECK(presence_batch_len(b) == 0);

  /* Errors leave the batch empty. */
  EXPECT_OK(presence_set_status(e, "bob", "back"));
  EXPECT_OK(presence_set_invisible(e, "bob", false)); /* bob is offline now: no event */
  EXPECT_OK(presence_poll_batch(e, alice, 0, b));     /* max 0 moves nothing */
  CHECK(presence_batch_len(b) == 0);
  EXPECT_ERR(presence_poll_batch(NULL, alice, 10, b), PRESENCE_ERR_NULL,
             "presence_poll_batch: engine is NULL");
  EXPECT_ERR(presence_poll_batch(e, alice, 10, NULL), PRESENCE_ERR_NULL,
             "presence_poll_batch: batch is NULL");
  EXPECT_ERR(presence_poll_batch(e, 0, 10, b), PRESENCE_ERR_NOT_FOUND,
             "presence_poll_batch: unknown connection 0");
  EXPECT_ERR(presence_poll_batch(e, bob, 10, b), PRESENCE_ERR_NOT_FOUND,
             "presence_poll_batch: unknown connection");
  CHECK(presence_batch_len(b) == 0);

  /* A batch outlives the engine it drained: bob's new status (while offline), then bob
   * online again. */
  connect_id(e, "bob");
  EXPECT_OK(presence_poll_batch(e, alice, 10, b));
  CHECK(presence_batch_len(b) == 2);
  presence_engine_free(e);
  CHECK(same(presence_batch_event(b, 0)->status, "back") && !presence_batch_event(b, 0)->online);
  CHECK(same(presence_batch_event(b, 1)->user_id, "bob") && presence_batch_event(b, 1)->online);
  EXPECT_OK(presence_batch_event_json(b, 1, &json0));
  CHECK_CONTAINS(json0, "\"online\":true,\"status\":\"back\"");
  presence_batch_free(b);
}

/* presence_poll_batch_many: several connections' queues into one batch in one call. */
static void test_batch_many(void) {
  PresenceEngine *e = new_engine("{\"clock\":\"manual\",\"start_time_ms\":1546867062375}");
  EXPECT_OK(presence_upsert_user(e, "{\"id\":\"star\"}"));
  PresenceConnectionId w[3];
  const char *names[3] = {"w1", "w2", "w3"};
  for (int i = 0; i < 3; i++) {
    w[i] = connect_id(e, names[i]);
    char *answer = NULL;
    EXPECT_OK(presence_query_users(e, w[i], "{\"filter_conditions\":{\"id\":\"star\"},\"presence\":true}", &answer));
    presence_string_free(answer);
  }
  EXPECT_OK(presence_set_status(e, "star", "a"));
  EXPECT_OK(presence_set_status(e, "star", "b"));
  PresenceEventBatch *b = NULL;
  EXPECT_OK(presence_batch_new(&b));

  /* The array's order, each connection's oldest first, at most max_each of each. */
  const PresenceConnectionId order[2] = {w[2], w[0]};
  EXPECT_OK(presence_poll_batch_many(e, order, 2, 1, b));
  CHECK(presence_batch_len(b) == 2);
  const PresenceEventInfo *first = presence_batch_event(b, 0), *second = presence_batch_event(b, 1);
  CHECK(first->connection_id == w[2] && same(first->status, "a") && same(first->user_id, "star"));
  CHECK(second->connection_id == w[0] && same(second->status, "a"));
  CHECK(first->seq == second->seq); /* one event, two recipients */
  const char *json = NULL;
  EXPECT_OK(presence_batch_event_json(b, 1, &json));
  char expect[64];
  snprintf(expect, sizeof expect, "\"connection_id\":%llu,", (unsigned long long)w[0]);
  CHECK_CONTAINS(json, expect);

  /* A failed poll leaves the batch empty, and nothing moves: every id is checked first. */
  EXPECT_ERR(presence_poll_batch_many(NULL, order, 2, 10, b), PRESENCE_ERR_NULL,
             "presence_poll_batch_many: engine is NULL");
  CHECK(presence_batch_len(b) == 0);
  const PresenceConnectionId unknown[3] = {w[1], 999, w[0]};
  EXPECT_ERR(presence_poll_batch_many(e, unknown, 3, 10, b), PRESENCE_ERR_NOT_FOUND,
             "presence_poll_batch_many: unknown connection 999");
  CHECK(presence_batch_len(b) == 0);
  const PresenceConnectionId host[1] = {0};
  EXPECT_ERR(presence_poll_batch_many(e, host, 1, 10, b), PRESENCE_ERR_NOT_FOUND,
             "presence_poll_batch_many: unknown connection 0");
  EXPECT_ERR(presence_poll_batch_many(e, NULL, 1, 10, b), PRESENCE_ERR_NULL,
             "presence_poll_batch_many: connections is NULL");
  EXPECT_ERR(presence_poll_batch_many(e, order, 2, 10, NULL), PRESENCE_ERR_NULL,
             "presence_poll_batch_many: batch is NULL");
  EXPECT_OK(presence_poll_batch_many(e, NULL, 0, 10, b)); /* nothing listed, nothing moved */
  CHECK(presence_batch_len(b) == 0);

  /* Nothing was lost to the failures: the rest, in order. */
  EXPECT_OK(presence_poll_batch_many(e, w, 3, 10, b));
  CHECK(presence_batch_len(b) == 4);
  const char *expect_status[4] = {"b", "a", "b", "b"};
  const PresenceConnectionId expect_conn[4] = {w[0], w[1], w[1], w[2]};
  for (uint32_t i = 0; i < 4; i++) {
    const PresenceEventInfo *info = presence_batch_event(b, i);
    CHECK(info->connection_id == expect_conn[i] && same(info->status, expect_status[i]));
  }
  EXPECT_OK(presence_poll_batch_many(e, w, 3, 10, b));
  CHECK(presence_batch_len(b) == 0);
  presence_batch_free(b);
  presence_engine_free(e);
}

/* What a typed listener saw. */
typedef struct {
  int calls;
  PresenceEventInfo last;
  char user_id[64];
  char status[64];
  char json[1024];
  PresenceResult json_result;
  int freed;
  PresenceEngine *engine;
  PresenceListenerId self;
  bool remove_self;
} Seen;

static void record(void *user_data, const PresenceEventInfo *event) {
  Seen *s = user_data;
  s->calls++;
  s->last = *event;
  snprintf(s->user_id, sizeof s->user_id, "%s", event->user_id ? event->user_id : "(null)");
  snprintf(s->status, sizeof s->status, "%s", event->status ? event->status : "(null)");
  const char *json = NULL;
  s->json_result = presence_event_info_json(event, &json);
  snprintf(s->json, sizeof s->json, "%s", s->json_result == PRESENCE_OK ? json : "");
  /* The JSON is rendered once: a second request answers the same text. */
  const char *again = NULL;
  if (s->json_result == PRESENCE_OK && (presence_event_info_json(event, &again) != PRESENCE_OK || again == NULL ||
                                        strcmp(again, json) != 0)) {
    s->json_result = PRESENCE_ERR_PANIC;
  }
  s->last.user_id = NULL; /* the strings die with the callback */
  s->last.cid = NULL;
  s->last.status = NULL;
  s->last.type_name = NULL;
  if (s->remove_self) {
    EXPECT_OK(presence_remove_listener(s->engine, s->self));
    CHECK(s->freed == 0); /* not while its callback runs */
  }
}

static void count_free(void *user_data) {
  Seen *s = user_data;
  s->freed++;
}

static void test_typed_listeners(void) {
  PresenceEngine *e = new_engine("{\"clock\":\"manual\",\"start_time_ms\":1546867062375,"
                                 "\"connection_timeout_ms\":1000,\"connection_queue_capacity\":2}");
  Seen closed = {0}, bob = {0}, deliveries = {0}, failed = {0};
  PresenceListenerId id_closed = 0, id_bob = 0, id_deliveries = 0, out = SENTINEL_ID;

  EXPECT_OK(presence_add_typed_listener(e, "connection.closed", NULL, record, &closed, count_free, &id_closed));
  EXPECT_OK(presence_add_typed_listener(e, NULL, "bob", record, &bob, count_free, &id_bob));
  EXPECT_OK(presence_add_typed_delivery_listener(e, record, &deliveries, count_free, &id_deliveries));
  CHECK(id_closed != 0 && id_bob != 0 && id_deliveries != 0 && id_closed != id_bob && id_bob != id_deliveries);

  /* Errors: nothing registered, user_data stays the caller's (its finalizer never runs). */
  EXPECT_ERR(presence_add_typed_listener(NULL, NULL, NULL, record, &failed, count_free, &out), PRESENCE_ERR_NULL,
             "presence_add_typed_listener: engine is NULL");
  EXPECT_ERR(presence_add_typed_listener(e, NULL, NULL, NULL, &failed, count_free, &out), PRESENCE_ERR_NULL,
             "presence_add_typed_listener: cb is NULL");
  EXPECT_ERR(presence_add_typed_listener(e, NULL, NULL, record, &failed, count_free, NULL), PRESENCE_ERR_NULL,
             "presence_add_typed_listener: out is NULL");
  EXPECT_ERR(presence_add_typed_listener(e, BAD_UTF8, NULL, record, &failed, count_free, &out), PRESENCE_ERR_UTF8,
             "presence_add_typed_listener: event_type is not valid UTF-8");
  EXPECT_ERR(presence_add_typed_listener(e, NULL, BAD_UTF8, record, &failed, count_free, &out), PRESENCE_ERR_UTF8,
             "presence_add_typed_listener: user_id is not valid UTF-8");
  EXPECT_ERR(presence_add_typed_listener(e, "user.typing", NULL, record, &failed, count_free, &out),
             PRESENCE_ERR_INVALID, "presence_add_typed_listener: unknown event type \"user.typing\"");
  EXPECT_ERR(presence_add_typed_listener(e, NULL, "two words", record, &failed, count_free, &out),
             PRESENCE_ERR_INVALID, "presence_add_typed_listener: user id filter:");
  EXPECT_ERR(presence_add_typed_delivery_listener(NULL, record, &failed, count_free, &out), PRESENCE_ERR_NULL,
             "presence_add_typed_delivery_listener: engine is NULL");
  EXPECT_ERR(presence_add_typed_delivery_listener(e, NULL, &failed, count_free, &out), PRESENCE_ERR_NULL,
             "presence_add_typed_delivery_listener: cb is NULL");
  EXPECT_ERR(presence_add_typed_delivery_listener(e, record, &failed, count_free, NULL), PRESENCE_ERR_NULL,
             "presence_add_typed_delivery_listener: out is NULL");
  CHECK(out == SENTINEL_ID);
  CHECK(failed.freed == 0 && failed.calls == 0);

  /* Host listener, own view (with the invisible flag). */
  EXPECT_OK(presence_upsert_user(e, "{\"id\":\"bob\",\"status\":\"afk\"}"));
  PresenceConnectionId b = connect_id(e, "bob");
  CHECK(bob.calls == 1);
  CHECK(bob.last.kind == PRESENCE_EVENT_USER_PRESENCE_CHANGED && bob.last.connection_id == 0);
  CHECK(bob.last.online && !bob.last.invisible);
  CHECK(same(bob.user_id, "bob") && same(bob.status, "afk"));
  CHECK(bob.json_result == PRESENCE_OK);
  CHECK_CONTAINS(bob.json, "{\"type\":\"user.presence.changed\",");
  CHECK_CONTAINS(bob.json, "\"invisible\":false");
  CHECK_LACKS(bob.json, "connection_id");

  /* connection.closed: each reason, the closed connection and its owner. */
  EXPECT_OK(presence_disconnect(e, b));
  CHECK(closed.calls == 1);
  CHECK(closed.last.kind == PRESENCE_EVENT_CONNECTION_CLOSED);
  CHECK(closed.last.close_reason == PRESENCE_CLOSE_DISCONNECT && closed.last.closed_connection_id == b);
  CHECK(same(closed.user_id, "bob") && closed.last.watcher_count == -1);
  char expect[96];
  snprintf(expect, sizeof expect, "\"closed_connection_id\":%llu,\"user_id\":\"bob\",\"reason\":\"disconnect\"",
           (unsigned long long)b);
  CHECK_CONTAINS(closed.json, expect);
  CHECK(bob.calls == 3); /* offline, then the close, both about bob */

  PresenceConnectionId t = connect_id(e, "tim");
  EXPECT_OK(presence_set_time(e, 1546867064375));
  EXPECT_OK(presence_tick(e));
  CHECK(closed.calls == 2 && closed.last.close_reason == PRESENCE_CLOSE_TIMEOUT);
  CHECK(closed.last.closed_connection_id == t);

  /* Deliveries, each in its recipient's view and with connection_id in its JSON; a queue of
   * two overflows on the third event and closes with slow_consumer. */
  EXPECT_OK(presence_upsert_channel(e, "{\"cid\":\"team:red\",\"members\":[\"carol\",\"dave\"]}"));
  PresenceConnectionId w = connect_id(e, "watcher");
  EXPECT_OK(presence_watch_channel(e, w, "team:red", true, NULL));
  CHECK(deliveries.calls == 1);
  CHECK(deliveries.last.kind == PRESENCE_EVENT_USER_WATCHING_START && deliveries.last.connection_id == w);
  CHECK(same(deliveries.user_id, "watcher") && deliveries.last.watcher_count == 1);
  CHECK(deliveries.last.online && !deliveries.last.invisible); /* own view */
  CHECK_CONTAINS(deliveries.json, "\"cid\":\"team:red\",\"channel_type\":\"team\",\"channel_id\":\"red\"");
  connect_id(e, "carol");
  CHECK(deliveries.calls == 2);
  CHECK(deliveries.last.connection_id == w && same(deliveries.user_id, "carol") && deliveries.last.online);
  CHECK(deliveries.last.cid == NULL && deliveries.last.watcher_count == -1);
  snprintf(expect, sizeof expect, "\"connection_id\":%llu,\"user\":{\"id\":\"carol\"", (unsigned long long)w);
  CHECK_CONTAINS(deliveries.json, expect);
  CHECK_LACKS(deliveries.json, "invisible"); /* public view */
  connect_id(e, "dave");
  CHECK(closed.calls == 3 && closed.last.close_reason == PRESENCE_CLOSE_SLOW_CONSUMER);
  CHECK(closed.last.closed_connection_id == w);

  /* Outside a callback, and bad arguments. */
  const char *untouched = (const char *)0x1;
  PresenceEventInfo info = closed.last;
  EXPECT_ERR(presence_event_info_json(&info, &untouched), PRESENCE_ERR_STATE,
             "presence_event_info_json: event is not the event of a typed callback running on this thread");
  EXPECT_ERR(presence_event_info_json(NULL, &untouched), PRESENCE_ERR_NULL,
             "presence_event_info_json: event is NULL");
  EXPECT_ERR(presence_event_info_json(&info, NULL), PRESENCE_ERR_NULL,
             "presence_event_info_json: out_json is NULL");
  CHECK(untouched == (const char *)0x1);

  /* Finalizers: once on removal, never again; a listener removing itself is finalized
   * after its callback returns; the rest when the engine is freed. */
  EXPECT_OK(presence_remove_listener(e, id_bob));
  CHECK(bob.freed == 1);
  EXPECT_ERR(presence_remove_listener(e, id_bob), PRESENCE_ERR_NOT_FOUND, "unknown listener");
  CHECK(bob.freed == 1);
  closed.engine = e;
  closed.self = id_closed;
  closed.remove_self = true;
  PresenceConnectionId x = connect_id(e, "xavier");
  EXPECT_OK(presence_disconnect(e, x));
  CHECK(closed.calls == 4 && closed.freed == 1);
  EXPECT_OK(presence_disconnect(e, connect_id(e, "yves")));
  CHECK(closed.calls == 4);
  CHECK(deliveries.freed == 0);
  presence_engine_free(e);
  CHECK(deliveries.freed == 1 && bob.freed == 1 && closed.freed == 1 && failed.freed == 0);

  /* A NULL finalizer is fine. */
  e = new_engine(NULL);
  Seen plain = {0};
  EXPECT_OK(presence_add_typed_delivery_listener(e, record, &plain, NULL, &out));
  EXPECT_OK(presence_remove_listener(e, out));
  presence_engine_free(e);
  CHECK(plain.freed == 0);
}

/* A finalizer run by presence_engine_free that calls back into the engine: it finds the
 * engine whole (its other listeners already gone), and a listener it adds is finalized too. */
typedef struct {
  PresenceEngine *engine;
  PresenceListenerId partner;
  int freed;
  PresenceResult removed, connected, added;
} Pair;

static void ignore_event(void *user_data, const PresenceEventInfo *event) {
  (void)user_data;
  (void)event;
}

static void count_pair_free(void *user_data) {
  ((Pair *)user_data)->freed++;
}

static void free_and_call_back(void *user_data) {
  Pair *p = user_data;
  p->freed++;
  p->removed = presence_remove_listener(p->engine, p->partner);
  PresenceConnectionId c = 0;
  p->connected = presence_connect_user(p->engine, "late", &c);
  PresenceListenerId id = 0;
  p->added = presence_add_typed_listener(p->engine, NULL, NULL, ignore_event, p, count_pair_free, &id);
}

static void test_finalizer_calls_engine(void) {
  PresenceEngine *e = new_engine(NULL);
  Pair pair = {.engine = e, .removed = PRESENCE_ERR_PANIC, .connected = PRESENCE_ERR_PANIC,
               .added = PRESENCE_ERR_PANIC};
  PresenceListenerId id = 0;
  EXPECT_OK(presence_add_typed_listener(e, NULL, NULL, ignore_event, NULL, NULL, &pair.partner));
  EXPECT_OK(presence_add_typed_listener(e, NULL, NULL, ignore_event, &pair, free_and_call_back, &id));
  connect_id(e, "alice");
  presence_engine_free(e);
  CHECK(pair.removed == PRESENCE_OK || pair.removed == PRESENCE_ERR_NOT_FOUND);
  CHECK(pair.connected == PRESENCE_OK);
  CHECK(pair.added == PRESENCE_OK);
  CHECK(pair.freed == 2); /* its own finalizer, then that of the listener it added */
}

static void test_get_user_presence(void) {
  PresenceEngine *e = new_engine("{\"clock\":\"manual\",\"start_time_ms\":1546867062375}");
  PresenceConnectionId viewer = connect_id(e, "viewer");
  EXPECT_OK(presence_upsert_user(e, "{\"id\":\"zoe\",\"status\":\"caf\u00e9 time\"}"));
  PresenceUserPresence p;
  char status[64];

  /* Offline, never active. */
  EXPECT_OK(presence_get_user_presence(e, viewer, "zoe", &p, status, sizeof status));
  CHECK(!p.online && !p.invisible && p.has_status && p.status_len == 10);
  CHECK(p.last_active_ms == INT64_MIN);
  CHECK(same(status, "caf\xc3\xa9 time"));

  /* Online and invisible: offline to the viewer, online and invisible to the host. */
  PresenceConnectionId z = connect_id(e, "zoe");
  EXPECT_OK(presence_set_invisible(e, "zoe", true));
  EXPECT_OK(presence_get_user_presence(e, viewer, "zoe", &p, NULL, 0));
  CHECK(!p.online && !p.invisible);
  EXPECT_OK(presence_get_user_presence(e, 0, "zoe", &p, NULL, 0));
  CHECK(p.online && p.invisible && p.last_active_ms == 1546867062375);
  EXPECT_OK(presence_get_user_presence(e, z, "zoe", &p, NULL, 0)); /* her own view */
  CHECK(p.online && p.invisible);

  /* A short buffer is cut at a character boundary; "" without a status. */
  EXPECT_OK(presence_get_user_presence(e, viewer, "zoe", &p, status, 5));
  CHECK(same(status, "caf") && p.status_len == 10);
  EXPECT_OK(presence_get_user_presence(e, viewer, "zoe", &p, status, 1));
  CHECK(same(status, ""));
  EXPECT_OK(presence_get_user_presence(e, viewer, "viewer", &p, status, sizeof status));
  CHECK(p.online && !p.has_status && p.status_len == 0 && same(status, ""));

  /* Errors leave both out-parameters alone. */
  memset(&p, 0x5a, sizeof p);
  PresenceUserPresence before = p;
  strcpy(status, "untouched");
  EXPECT_ERR(presence_get_user_presence(NULL, 0, "zoe", &p, status, sizeof status), PRESENCE_ERR_NULL,
             "presence_get_user_presence: engine is NULL");
  EXPECT_ERR(presence_get_user_presence(e, 0, NULL, &p, status, sizeof status), PRESENCE_ERR_NULL,
             "presence_get_user_presence: user_id is NULL");
  EXPECT_ERR(presence_get_user_presence(e, 0, "zoe", NULL, status, sizeof status), PRESENCE_ERR_NULL,
             "presence_get_user_presence: out is NULL");
  EXPECT_ERR(presence_get_user_presence(e, 0, BAD_UTF8, &p, status, sizeof status), PRESENCE_ERR_UTF8,
             "presence_get_user_presence: user_id is not valid UTF-8");
  EXPECT_ERR(presence_get_user_presence(e, 0, "nobody", &p, status, sizeof status), PRESENCE_ERR_NOT_FOUND,
             "presence_get_user_presence: unknown user \"nobody\"");
  EXPECT_ERR(presence_get_user_presence(e, 987654, "zoe", &p, status, sizeof status), PRESENCE_ERR_NOT_FOUND,
             "presence_get_user_presence: unknown connection 987654");
  CHECK(memcmp(&p, &before, sizeof p) == 0 && same(status, "untouched"));
  presence_engine_free(e);
}

/* Threads: each worker churns its own players while draining its own watcher with its
 * own batch; a typed host listener checks seq order and asks for JSON on whichever thread
 * runs it. Every event must arrive exactly once, in order. */
#define WORKERS 4
#define ROUNDS 200

static PresenceEngine *shared;
static atomic_int callback_failures;
static atomic_int host_events;
static uint64_t last_seq; /* touched only inside callbacks, which never run concurrently */

static void check_order(void *user_data, const PresenceEventInfo *event) {
  (void)user_data;
  const char *json = NULL;
  if (event->seq <= last_seq || presence_event_info_json(event, &json) != PRESENCE_OK ||
      json_u64(json, "seq") != event->seq) {
    atomic_fetch_add(&callback_failures, 1);
  }
  last_seq = event->seq;
  atomic_fetch_add(&host_events, 1);
}

/* Each worker churns its own player and drains what its watchers saw: even workers one
 * watcher with presence_poll_batch, odd ones two watchers with presence_poll_batch_many.
 * Every watcher must get both events of every round, in seq order, alternating. */
static void *churn_and_drain(void *arg) {
  int worker = (int)(intptr_t)arg;
  int watchers = worker % 2 == 0 ? 1 : 2;
  char player_id[32], query[128];
  snprintf(player_id, sizeof player_id, "player-%d", worker);
  snprintf(query, sizeof query, "{\"filter_conditions\":{\"id\":\"%s\"},\"presence\":true}", player_id);
  PresenceConnectionId watcher[2] = {0, 0};
  PresenceEventBatch *batch = NULL;
  int failures = 0, drained[2] = {0, 0};
  char player_json[64];
  snprintf(player_json, sizeof player_json, "{\"id\":\"%s\"}", player_id);
  failures += presence_upsert_user(shared, player_json) != PRESENCE_OK;
  for (int w = 0; w < watchers; w++) {
    char watcher_id[32], *answer = NULL;
    snprintf(watcher_id, sizeof watcher_id, "watcher-%d-%d", worker, w);
    failures += presence_connect_user(shared, watcher_id, &watcher[w]) != PRESENCE_OK;
    failures += presence_query_users(shared, watcher[w], query, &answer) != PRESENCE_OK;
    presence_string_free(answer);
  }
  failures += presence_batch_new(&batch) != PRESENCE_OK;
  uint64_t last[2] = {0, 0};
  for (int i = 0; i < ROUNDS; i++) {
    PresenceConnectionId c = 0;
    failures += presence_connect_user(shared, player_id, &c) != PRESENCE_OK;
    failures += presence_disconnect(shared, c) != PRESENCE_OK;
    failures += (watchers == 1 ? presence_poll_batch(shared, watcher[0], 16, batch)
                               : presence_poll_batch_many(shared, watcher, 2, 16, batch)) != PRESENCE_OK;
    for (uint32_t k = 0; k < presence_batch_len(batch); k++) {
      const PresenceEventInfo *info = presence_batch_event(batch, k);
      int w = info->connection_id == watcher[0] ? 0 : 1;
      failures += (w == 1 && info->connection_id != watcher[1]) || info->seq <= last[w] ||
                  strcmp(info->user_id, player_id) != 0 || info->online != (drained[w] % 2 == 0);
      last[w] = info->seq;
      drained[w]++;
    }
  }
  presence_batch_free(batch);
  for (int w = 0; w < watchers; w++) failures += drained[w] != 2 * ROUNDS;
  return (void *)(intptr_t)failures;
}

static void test_threads(void) {
  shared = new_engine(NULL);
  PresenceListenerId id = 0;
  EXPECT_OK(presence_add_typed_listener(shared, "user.presence.changed", NULL, check_order, NULL, NULL, &id));
  pthread_t threads[WORKERS];
  for (int i = 0; i < WORKERS; i++) {
    CHECK(pthread_create(&threads[i], NULL, churn_and_drain, (void *)(intptr_t)i) == 0);
  }
  for (int i = 0; i < WORKERS; i++) {
    void *failures = NULL;
    CHECK(pthread_join(threads[i], &failures) == 0);
    CHECK((intptr_t)failures == 0);
  }
  CHECK(atomic_load(&callback_failures) == 0);
  /* Each player: online and offline per round; each watcher (two for odd workers): online
   * once. */
  CHECK(atomic_load(&host_events) == WORKERS * (2 * ROUNDS + 1) + WORKERS / 2);
  presence_engine_free(shared);
}

/* Host queues: what a typed host listener with the same filters receives, drained into a
 * batch; presence_batch_events walks it without a call per event. */
static void test_host_queues(void) {
  PresenceEngine *e = new_engine(
      "{\"dispatch\":\"manual\",\"clock\":\"manual\",\"start_time_ms\":1546867062375,"
      "\"pending_dispatch_capacity\":4}");
  PresenceHostQueue *all = NULL, *bob_only = NULL, *untouched = (PresenceHostQueue *)&all;
  EXPECT_ERR(presence_host_queue_new(NULL, NULL, NULL, &all), PRESENCE_ERR_NULL,
             "presence_host_queue_new: engine is NULL");
  EXPECT_ERR(presence_host_queue_new(e, NULL, NULL, NULL), PRESENCE_ERR_NULL,
             "presence_host_queue_new: out is NULL");
  EXPECT_ERR(presence_host_queue_new(e, BAD_UTF8, NULL, &untouched), PRESENCE_ERR_UTF8,
             "event_type is not valid UTF-8");
  EXPECT_ERR(presence_host_queue_new(e, "user.nope", NULL, &untouched), PRESENCE_ERR_INVALID,
             "unknown event type \"user.nope\"");
  CHECK(untouched == (PresenceHostQueue *)&all);
  /* A queue's room is allocated whole: a bound it cannot take answers LIMIT (it aborted). */
  PresenceEngine *huge = new_engine("{\"pending_dispatch_capacity\":4294967295}");
  EXPECT_ERR(presence_host_queue_new(huge, NULL, NULL, &untouched), PRESENCE_ERR_LIMIT,
             "presence_host_queue_new: pending_dispatch_capacity is 4294967295: a receiver allocates room "
             "for that many events at once, so it takes at most 1048576");
  CHECK(untouched == (PresenceHostQueue *)&all);
  presence_engine_free(huge);
  EXPECT_OK(presence_host_queue_new(e, NULL, NULL, &all));
  EXPECT_OK(presence_host_queue_new(e, "user.presence.changed", "bob", &bob_only));
  presence_host_queue_free(NULL); /* accepted */

  PresenceEventBatch *b = NULL;
  EXPECT_OK(presence_batch_new(&b));
  CHECK(presence_batch_events(b) == NULL && presence_batch_events(NULL) == NULL);
  EXPECT_ERR(presence_host_queue_poll(NULL, 10, b), PRESENCE_ERR_NULL, "queue is NULL");
  EXPECT_ERR(presence_host_queue_poll(all, 10, NULL), PRESENCE_ERR_NULL, "batch is NULL");

  PresenceConnectionId alice = connect_id(e, "alice");
  connect_id(e, "bob");
  EXPECT_OK(presence_set_status(e, "bob", "away"));
  /* Manual dispatch: nothing reaches a queue before presence_pump. */
  EXPECT_OK(presence_host_queue_poll(all, 10, b));
  CHECK(presence_batch_len(b) == 0 && presence_batch_events(b) == NULL);
  uint32_t pumped = 0;
  EXPECT_OK(presence_pump(e, &pumped));

  /* Two at a time, oldest first, as host views. */
  EXPECT_OK(presence_host_queue_poll(all, 2, b));
  CHECK(presence_batch_len(b) == 2);
  const PresenceEventInfo *events = presence_batch_events(b);
  CHECK(events != NULL && events == presence_batch_event(b, 0) && events + 1 == presence_batch_event(b, 1));
  CHECK(events[0].kind == PRESENCE_EVENT_USER_PRESENCE_CHANGED && same(events[0].user_id, "alice"));
  CHECK(events[0].connection_id == 0 && events[0].online == 1);
  CHECK(events[1].kind == PRESENCE_EVENT_USER_PRESENCE_CHANGED && same(events[1].user_id, "bob"));
  CHECK(events[0].seq < events[1].seq);
  const char *json = NULL;
  EXPECT_OK(presence_batch_event_json(b, 0, &json));
  CHECK_CONTAINS(json, "\"type\":\"user.presence.changed\"");
  CHECK_LACKS(json, "connection_id"); /* as a host listener receives it */
  EXPECT_OK(presence_host_queue_poll(all, 10, b));
  CHECK(presence_batch_len(b) == 1);
  events = presence_batch_events(b);
  CHECK(events != NULL && same(events[0].user_id, "bob") && same(events[0].status, "away"));
  EXPECT_ERR(presence_host_queue_poll(NULL, 10, b), PRESENCE_ERR_NULL, "queue is NULL");
  CHECK(presence_batch_len(b) == 0); /* a failed poll leaves the batch empty */
  EXPECT_OK(presence_host_queue_poll(all, 10, b));
  CHECK(presence_batch_len(b) == 0);

  /* The filtered queue got only bob's two presence changes. */
  EXPECT_OK(presence_host_queue_poll(bob_only, 10, b));
  CHECK(presence_batch_len(b) == 2);
  events = presence_batch_events(b);
  CHECK(events != NULL && same(events[0].user_id, "bob") && same(events[1].user_id, "bob"));
  CHECK(events[0].status == NULL && same(events[1].status, "away"));

  /* A batch filled from a connection afterwards renders connection_id again. */
  EXPECT_OK(presence_poll_batch(e, alice, 10, b));

  /* Past pending_dispatch_capacity (4) undrained events, the queue is cut off: what it
   * got comes out first, then STATE. The filtered queue, drained, keeps working. */
  for (int i = 0; i < 6; i++) {
    EXPECT_OK(presence_set_status(e, "alice", (i % 2) ? "a" : "b"));
    EXPECT_OK(presence_pump(e, &pumped));
  }
  EXPECT_OK(presence_host_queue_poll(all, 10, b));
  CHECK(presence_batch_len(b) == 4);
  EXPECT_ERR(presence_host_queue_poll(all, 10, b), PRESENCE_ERR_STATE, "the host queue was cut off");
  CHECK(presence_batch_len(b) == 0);
  EXPECT_OK(presence_host_queue_poll(bob_only, 10, b));
  CHECK(presence_batch_len(b) == 0);
  presence_host_queue_free(all);

  /* A queue outlives its engine: then it reports being cut off. */
  EXPECT_OK(presence_set_status(e, "bob", "back"));
  EXPECT_OK(presence_pump(e, &pumped));
  presence_engine_free(e);
  EXPECT_OK(presence_host_queue_poll(bob_only, 10, b));
  CHECK(presence_batch_len(b) == 1);
  EXPECT_ERR(presence_host_queue_poll(bob_only, 10, b), PRESENCE_ERR_STATE, "its engine was freed");
  presence_host_queue_free(bob_only);
  presence_batch_free(b);
}

/* Bytes the C allocator has handed out and not taken back (0 under sanitizers and
 * valgrind, whose allocators glibc does not see: there the check below holds trivially). */
static size_t heap_in_use(void) {
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

/* A freed host queue ends its listener at once, with the room it holds for
 * pending_dispatch_capacity events (1 MiB at the default), not at its next event, which
 * for a rare type may never come. */
static void test_host_queue_free_ends_listener(void) {
  PresenceEngine *e = new_engine(NULL);
  PresenceHostQueue *q = NULL;
  EXPECT_OK(presence_host_queue_new(e, "engine.overflow", NULL, &q));
  presence_host_queue_free(q);
  size_t before = heap_in_use();
  int failures = 0;
  for (int i = 0; i < 64; i++) {
    failures += presence_host_queue_new(e, "engine.overflow", NULL, &q) != PRESENCE_OK;
    presence_host_queue_free(q);
  }
  CHECK(failures == 0);
  size_t after = heap_in_use();
  CHECK(after < before + 8 * 1024 * 1024); /* 64 MiB when each queue's room stayed behind */
  presence_engine_free(e);
}

/* user_key: one number per user for the engine's life, never given to another user, also
 * not to the users a load brings in. */
static void test_user_keys(void) {
  char dir[] = "/tmp/presence-c-keys-XXXXXX", path[64];
  CHECK(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/users.json", dir);
  PresenceEngine *e = new_engine("{\"dispatch\":\"manual\",\"clock\":\"manual\",\"start_time_ms\":1546867062375}");
  PresenceHostQueue *q = NULL;
  PresenceEventBatch *b = NULL;
  EXPECT_OK(presence_host_queue_new(e, NULL, NULL, &q));
  EXPECT_OK(presence_batch_new(&b));
  PresenceConnectionId alice = connect_id(e, "alice");
  PresenceConnectionId bob = connect_id(e, "bob");
  EXPECT_OK(presence_set_status(e, "alice", "away"));
  uint32_t pumped = 0;
  EXPECT_OK(presence_pump(e, &pumped));
  EXPECT_OK(presence_host_queue_poll(q, 10, b));
  CHECK(presence_batch_len(b) == 3);
  const PresenceEventInfo *events = presence_batch_events(b);
  uint64_t alice_key = events[0].user_key, bob_key = events[1].user_key;
  CHECK(same(events[0].user_id, "alice") && same(events[1].user_id, "bob") && same(events[2].user_id, "alice"));
  CHECK(alice_key == 1 && bob_key == 2 && events[2].user_key == alice_key);

  /* A load replaces every user: the same ids come back under new keys. */
  EXPECT_OK(presence_save(e, path));
  EXPECT_OK(presence_disconnect(e, alice));
  EXPECT_OK(presence_disconnect(e, bob));
  EXPECT_OK(presence_load(e, path));
  PresenceConnectionId carol = connect_id(e, "carol");
  connect_id(e, "alice");
  EXPECT_OK(presence_pump(e, &pumped));
  EXPECT_OK(presence_host_queue_poll(q, 100, b));
  events = presence_batch_events(b);
  uint64_t carol_key = 0, new_alice_key = 0;
  for (uint32_t i = 0; i < presence_batch_len(b); i++) {
    const PresenceEventInfo *ev = &events[i];
    CHECK(ev->user_id != NULL && ev->user_key != 0);
    if (same(ev->user_id, "carol")) carol_key = ev->user_key;
    /* the disconnects, before the load, still name the old keys */
    if (same(ev->user_id, "alice") && ev->kind == PRESENCE_EVENT_USER_PRESENCE_CHANGED && ev->online) new_alice_key = ev->user_key;
  }
  CHECK(new_alice_key > bob_key && carol_key > bob_key && carol_key != new_alice_key);
  (void)carol;
  presence_host_queue_free(q);
  presence_batch_free(b);
  presence_engine_free(e);
  unlink(path);
  rmdir(dir);
}

int main(void) {
  test_constants();
  test_threads();
  test_get_user_presence();
  test_connect_user();
  test_batches();
  test_batch_many();
  test_typed_listeners();
  test_finalizer_calls_engine();
  test_host_queues();
  test_host_queue_free_ends_listener();
  test_user_keys();
  return finish();
}
