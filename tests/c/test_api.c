/* Every function of presence.h: its success path, and each of its error paths (NULL for
 * every pointer argument, invalid UTF-8, malformed JSON, unknown ids, limits, state
 * errors), checking the result code, the message left for presence_last_error(), and that
 * out-parameters are untouched on failure. */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char BAD_UTF8[] = "\xff\xfe";
static char temp_dir[] = "/tmp/presence-c-api-XXXXXX";

#define SENTINEL_ID ((PresenceConnectionId)0xdeadbeefu)
static char sentinel_char;
#define SENTINEL_STR (&sentinel_char)

static void noop_callback(void *user_data, const PresenceEvent *event) {
  int *count = user_data;
  (void)event;
  if (count != NULL) {
    (*count)++;
  }
}

static void test_versions_and_errors(void) {
  /* Nothing has failed on this thread yet. */
  CHECK(presence_last_error() != NULL);
  CHECK(strcmp(presence_last_error(), "") == 0);

  CHECK(presence_abi_version() == PRESENCE_ABI_VERSION);
  CHECK(PRESENCE_ABI_VERSION == 2);
  const char *version = presence_version();
  CHECK(version != NULL && version[0] >= '0' && version[0] <= '9' && strchr(version, '.'));
  CHECK(presence_version() == version); /* static */

  static const char *const names[] = {
      "PRESENCE_OK",          "PRESENCE_ERR_NULL",      "PRESENCE_ERR_UTF8",
      "PRESENCE_ERR_JSON",    "PRESENCE_ERR_INVALID",   "PRESENCE_ERR_NOT_FOUND",
      "PRESENCE_ERR_LIMIT",   "PRESENCE_ERR_STATE",     "PRESENCE_ERR_IO",
      "PRESENCE_ERR_PANIC"};
  for (int i = 0; i <= PRESENCE_ERR_PANIC; i++) {
    CHECK(strcmp(presence_result_name((PresenceResult)i), names[i]) == 0);
  }
  CHECK(PRESENCE_OK == 0 && PRESENCE_ERR_NULL == 1 && PRESENCE_ERR_UTF8 == 2 &&
        PRESENCE_ERR_JSON == 3 && PRESENCE_ERR_INVALID == 4 && PRESENCE_ERR_NOT_FOUND == 5 &&
        PRESENCE_ERR_LIMIT == 6 && PRESENCE_ERR_STATE == 7 && PRESENCE_ERR_IO == 8 &&
        PRESENCE_ERR_PANIC == 9);
  CHECK(strcmp(presence_result_name((PresenceResult)42), "PRESENCE_UNKNOWN") == 0);

  presence_string_free(NULL); /* accepted */
  presence_engine_free(NULL); /* accepted */

  /* The last error is a copy the library keeps until the next failure on this thread. */
  EXPECT_ERR(presence_tick(NULL), PRESENCE_ERR_NULL, "presence_tick: engine is NULL");
  const char *first = presence_last_error();
  CHECK(strcmp(first, "presence_tick: engine is NULL") == 0);
  CHECK(presence_abi_version() == 2); /* success does not clear it */
  CHECK(strcmp(presence_last_error(), "presence_tick: engine is NULL") == 0);
}

static void test_engine_new(void) {
  PresenceEngine *e = new_engine(NULL);
  presence_engine_free(e);
  e = new_engine("{}");
  presence_engine_free(e);
  e = new_engine("{\"clock\":\"manual\",\"start_time_ms\":1000,\"dispatch\":\"manual\","
                 "\"last_active_refresh_ms\":60000,\"connection_timeout_ms\":0,"
                 "\"offline_grace_ms\":0,\"max_connections_per_user\":3,"
                 "\"max_subscriptions_per_connection\":10,\"connection_queue_capacity\":16,"
                 "\"query_limit_max\":50}");
  presence_engine_free(e);

  PresenceEngine *out = (PresenceEngine *)SENTINEL_STR;
  EXPECT_ERR(presence_engine_new(NULL, NULL), PRESENCE_ERR_NULL, "presence_engine_new: out is NULL");
  EXPECT_ERR(presence_engine_new(BAD_UTF8, &out), PRESENCE_ERR_UTF8,
             "presence_engine_new: config_json is not valid UTF-8");
  EXPECT_ERR(presence_engine_new("{\"clock\":", &out), PRESENCE_ERR_JSON,
             "presence_engine_new: config: EOF while parsing");
  EXPECT_ERR(presence_engine_new("{\"clokc\":\"manual\"}", &out), PRESENCE_ERR_JSON,
             "unknown field `clokc`");
  EXPECT_ERR(presence_engine_new("{\"clock\":\"sundial\"}", &out), PRESENCE_ERR_JSON, "sundial");
  EXPECT_ERR(presence_engine_new("{\"max_connections_per_user\":0}", &out),
             PRESENCE_ERR_INVALID, "max_connections_per_user");
  CHECK(out == (PresenceEngine *)SENTINEL_STR);
}

static void test_users(void) {
  PresenceEngine *e = new_engine("{\"max_connections_per_user\":2}");
  PresenceConnectionId out = SENTINEL_ID;

  /* presence_connect */
  PresenceConnectionId a = connect_user(e, "{\"id\":\"alice\",\"status\":\"hi\",\"name\":\"Alice\"}");
  PresenceConnectionId a2 = connect_user(e, "{\"id\":\"alice\"}");
  CHECK(a2 != a);
  EXPECT_ERR(presence_connect(e, "{\"id\":\"alice\"}", &out), PRESENCE_ERR_LIMIT,
             "presence_connect: user \"alice\" already holds 2 connections");
  EXPECT_ERR(presence_connect(NULL, "{\"id\":\"x\"}", &out), PRESENCE_ERR_NULL,
             "presence_connect: engine is NULL");
  EXPECT_ERR(presence_connect(e, NULL, &out), PRESENCE_ERR_NULL,
             "presence_connect: user_json is NULL");
  EXPECT_ERR(presence_connect(e, "{\"id\":\"nobody\"}", NULL), PRESENCE_ERR_NULL,
             "presence_connect: out is NULL");
  EXPECT_ERR(presence_connect(e, BAD_UTF8, &out), PRESENCE_ERR_UTF8,
             "presence_connect: user_json is not valid UTF-8 (invalid byte at offset 0)");
  EXPECT_ERR(presence_connect(e, "{\"id\":", &out), PRESENCE_ERR_JSON,
             "presence_connect: user: EOF while parsing a value at line 1 column 6");
  EXPECT_ERR(presence_connect(e, "[1,2]", &out), PRESENCE_ERR_JSON, "expected a JSON object");
  EXPECT_ERR(presence_connect(e, "{\"status\":\"x\"}", &out), PRESENCE_ERR_JSON, "missing \"id\"");
  EXPECT_ERR(presence_connect(e, "{\"id\":\"a b\"}", &out), PRESENCE_ERR_INVALID, "whitespace");
  EXPECT_ERR(presence_connect(e, "{\"id\":\"b\",\"online\":true}", &out), PRESENCE_ERR_INVALID,
             "'online' is managed");
  CHECK(out == SENTINEL_ID);
  /* A NULL out-parameter is caught before anything changes: "nobody" was never created. */
  char *json = SENTINEL_STR;
  EXPECT_ERR(presence_get_user(e, 0, "nobody", &json), PRESENCE_ERR_NOT_FOUND,
             "presence_get_user: unknown user \"nobody\"");
  CHECK(json == SENTINEL_STR);

  /* presence_heartbeat */
  EXPECT_OK(presence_heartbeat(e, a));
  EXPECT_ERR(presence_heartbeat(NULL, a), PRESENCE_ERR_NULL, "presence_heartbeat: engine is NULL");
  EXPECT_ERR(presence_heartbeat(e, 987654), PRESENCE_ERR_NOT_FOUND,
             "presence_heartbeat: unknown connection 987654");

  /* presence_disconnect */
  EXPECT_OK(presence_disconnect(e, a2));
  EXPECT_ERR(presence_disconnect(e, a2), PRESENCE_ERR_NOT_FOUND, "presence_disconnect: unknown connection");
  EXPECT_ERR(presence_disconnect(e, 0), PRESENCE_ERR_NOT_FOUND, "presence_disconnect: unknown connection 0");
  EXPECT_ERR(presence_disconnect(NULL, a), PRESENCE_ERR_NULL, "presence_disconnect: engine is NULL");

  /* presence_upsert_user */
  EXPECT_OK(presence_upsert_user(e, "{\"id\":\"bob\",\"image\":\"b.png\"}"));
  EXPECT_OK(presence_upsert_user(e, "{\"id\":\"bob\",\"image\":null,\"level\":3}"));
  EXPECT_ERR(presence_upsert_user(NULL, "{\"id\":\"bob\"}"), PRESENCE_ERR_NULL,
             "presence_upsert_user: engine is NULL");
  EXPECT_ERR(presence_upsert_user(e, NULL), PRESENCE_ERR_NULL, "presence_upsert_user: user_json is NULL");
  EXPECT_ERR(presence_upsert_user(e, BAD_UTF8), PRESENCE_ERR_UTF8,
             "presence_upsert_user: user_json is not valid UTF-8");
  EXPECT_ERR(presence_upsert_user(e, "{\"id\":\"bob\",}"), PRESENCE_ERR_JSON,
             "presence_upsert_user: user: trailing comma");
  EXPECT_ERR(presence_upsert_user(e, "{\"id\":\"bob\",\"invisible\":\"yes\"}"), PRESENCE_ERR_JSON,
             "invisible must be a boolean");
  EXPECT_ERR(presence_upsert_user(e, "{\"id\":\"bob\",\"last_active\":\"2019-01-01T00:00:00Z\"}"),
             PRESENCE_ERR_INVALID, "'last_active' is managed");
  {
    /* 5 KiB of custom JSON at most. */
    size_t n = 6000;
    char *big = malloc(n + 64);
    int len = snprintf(big, 64, "{\"id\":\"bob\",\"blob\":\"");
    memset(big + len, 'x', n);
    strcpy(big + len + n, "\"}");
    EXPECT_ERR(presence_upsert_user(e, big), PRESENCE_ERR_INVALID, "custom data is");
    free(big);
  }

  /* presence_set_status */
  char long_status[1100];
  memset(long_status, 's', sizeof long_status - 1);
  long_status[sizeof long_status - 1] = '\0';
  EXPECT_OK(presence_set_status(e, "bob", "afk"));
  json = NULL;
  EXPECT_OK(presence_get_user(e, 0, "bob", &json));
  CHECK_CONTAINS(json, "\"status\":\"afk\"");
  CHECK_CONTAINS(json, "\"level\":3");
  CHECK_LACKS(json, "image");
  presence_string_free(json);
  EXPECT_OK(presence_set_status(e, "bob", NULL)); /* clears */
  json = NULL;
  EXPECT_OK(presence_get_user(e, 0, "bob", &json));
  CHECK_LACKS(json, "\"status\"");
  presence_string_free(json);
  EXPECT_ERR(presence_set_status(NULL, "bob", "x"), PRESENCE_ERR_NULL, "presence_set_status: engine is NULL");
  EXPECT_ERR(presence_set_status(e, NULL, "x"), PRESENCE_ERR_NULL, "presence_set_status: user_id is NULL");
  EXPECT_ERR(presence_set_status(e, BAD_UTF8, "x"), PRESENCE_ERR_UTF8,
             "presence_set_status: user_id is not valid UTF-8");
  EXPECT_ERR(presence_set_status(e, "bob", BAD_UTF8), PRESENCE_ERR_UTF8,
             "presence_set_status: status is not valid UTF-8");
  EXPECT_ERR(presence_set_status(e, "bob", long_status), PRESENCE_ERR_INVALID,
             "status is 1099 bytes, at most 1024 allowed");
  EXPECT_ERR(presence_set_status(e, "ghost", "x"), PRESENCE_ERR_NOT_FOUND,
             "presence_set_status: unknown user \"ghost\"");

  /* presence_set_invisible */
  EXPECT_OK(presence_set_invisible(e, "alice", true));
  EXPECT_ERR(presence_set_invisible(NULL, "alice", true), PRESENCE_ERR_NULL,
             "presence_set_invisible: engine is NULL");
  EXPECT_ERR(presence_set_invisible(e, NULL, true), PRESENCE_ERR_NULL,
             "presence_set_invisible: user_id is NULL");
  EXPECT_ERR(presence_set_invisible(e, BAD_UTF8, true), PRESENCE_ERR_UTF8,
             "presence_set_invisible: user_id is not valid UTF-8");
  EXPECT_ERR(presence_set_invisible(e, "ghost", true), PRESENCE_ERR_NOT_FOUND,
             "presence_set_invisible: unknown user");

  /* presence_get_user: own view for the host and for alice, public for bob's connection. */
  PresenceConnectionId b = connect_user(e, "{\"id\":\"bob\"}");
  json = NULL;
  EXPECT_OK(presence_get_user(e, 0, "alice", &json));
  CHECK_CONTAINS(json, "\"id\":\"alice\"");
  CHECK_CONTAINS(json, "\"online\":true");
  CHECK_CONTAINS(json, "\"invisible\":true");
  CHECK_CONTAINS(json, "\"name\":\"Alice\"");
  presence_string_free(json);
  json = NULL;
  EXPECT_OK(presence_get_user(e, a, "alice", &json));
  CHECK_CONTAINS(json, "\"invisible\":true");
  presence_string_free(json);
  json = NULL;
  EXPECT_OK(presence_get_user(e, b, "alice", &json));
  CHECK_CONTAINS(json, "\"online\":false");
  CHECK_LACKS(json, "invisible");
  presence_string_free(json);
  json = SENTINEL_STR;
  EXPECT_ERR(presence_get_user(NULL, 0, "alice", &json), PRESENCE_ERR_NULL, "presence_get_user: engine is NULL");
  EXPECT_ERR(presence_get_user(e, 0, NULL, &json), PRESENCE_ERR_NULL, "presence_get_user: user_id is NULL");
  EXPECT_ERR(presence_get_user(e, 0, "alice", NULL), PRESENCE_ERR_NULL, "presence_get_user: out_json is NULL");
  EXPECT_ERR(presence_get_user(e, 0, BAD_UTF8, &json), PRESENCE_ERR_UTF8,
             "presence_get_user: user_id is not valid UTF-8");
  EXPECT_ERR(presence_get_user(e, 4242, "alice", &json), PRESENCE_ERR_NOT_FOUND,
             "presence_get_user: unknown connection 4242");
  CHECK(json == SENTINEL_STR);

  presence_engine_free(e);
}

static void test_channels(void) {
  PresenceEngine *e = new_engine("{\"max_subscriptions_per_connection\":3}");
  PresenceConnectionId w = connect_user(e, "{\"id\":\"watcher\"}");

  /* presence_upsert_channel */
  EXPECT_OK(presence_upsert_channel(e, "{\"type\":\"lobby\",\"id\":\"main\",\"members\":[\"a\",\"b\"],\"map\":\"dust\"}"));
  EXPECT_OK(presence_upsert_channel(e, "{\"cid\":\"team:red\",\"last_message_at\":\"2019-01-07T13:17:42.375Z\"}"));
  EXPECT_ERR(presence_upsert_channel(NULL, "{\"cid\":\"team:red\"}"), PRESENCE_ERR_NULL,
             "presence_upsert_channel: engine is NULL");
  EXPECT_ERR(presence_upsert_channel(e, NULL), PRESENCE_ERR_NULL,
             "presence_upsert_channel: channel_json is NULL");
  EXPECT_ERR(presence_upsert_channel(e, BAD_UTF8), PRESENCE_ERR_UTF8,
             "presence_upsert_channel: channel_json is not valid UTF-8");
  EXPECT_ERR(presence_upsert_channel(e, "{\"type\":\"lobby\" \"id\":\"x\"}"), PRESENCE_ERR_JSON,
             "presence_upsert_channel: channel: expected `,` or `}`");
  EXPECT_ERR(presence_upsert_channel(e, "{\"type\":\"lobby\"}"), PRESENCE_ERR_JSON,
             "give \"type\" and \"id\"");
  EXPECT_ERR(presence_upsert_channel(e, "{\"type\":\"Lobby\",\"id\":\"x\"}"), PRESENCE_ERR_INVALID,
             "must match [a-z0-9_-]{1,64}");
  EXPECT_ERR(presence_upsert_channel(e, "{\"cid\":\"lobby:x\",\"member_count\":3}"), PRESENCE_ERR_INVALID,
             "'member_count' is managed");

  /* presence_add_members */
  EXPECT_OK(presence_add_members(e, "lobby:main", "[\"c\"]"));
  EXPECT_ERR(presence_add_members(NULL, "lobby:main", "[\"c\"]"), PRESENCE_ERR_NULL,
             "presence_add_members: engine is NULL");
  EXPECT_ERR(presence_add_members(e, NULL, "[\"c\"]"), PRESENCE_ERR_NULL, "presence_add_members: cid is NULL");
  EXPECT_ERR(presence_add_members(e, "lobby:main", NULL), PRESENCE_ERR_NULL,
             "presence_add_members: user_ids_json is NULL");
  EXPECT_ERR(presence_add_members(e, BAD_UTF8, "[\"c\"]"), PRESENCE_ERR_UTF8,
             "presence_add_members: cid is not valid UTF-8");
  EXPECT_ERR(presence_add_members(e, "lobby:main", BAD_UTF8), PRESENCE_ERR_UTF8,
             "presence_add_members: user_ids_json is not valid UTF-8");
  EXPECT_ERR(presence_add_members(e, "lobby:main", "[\"c\""), PRESENCE_ERR_JSON,
             "presence_add_members: user ids: EOF while parsing a list");
  EXPECT_ERR(presence_add_members(e, "lobby:main", "{\"c\":1}"), PRESENCE_ERR_JSON,
             "expected a JSON array of user ids");
  EXPECT_ERR(presence_add_members(e, "lobby:main", "[\"a b\"]"), PRESENCE_ERR_INVALID, "whitespace");
  EXPECT_ERR(presence_add_members(e, "nocolon", "[\"c\"]"), PRESENCE_ERR_INVALID, "must be 'type:id'");
  EXPECT_ERR(presence_add_members(e, "lobby:none", "[\"c\"]"), PRESENCE_ERR_NOT_FOUND,
             "presence_add_members: unknown channel \"lobby:none\"");

  /* presence_watch_channel (members a, b, c: 3 subscriptions, the limit) */
  char *state = NULL;
  EXPECT_OK(presence_watch_channel(e, w, "lobby:main", true, &state));
  CHECK_CONTAINS(state, "\"cid\":\"lobby:main\"");
  CHECK_CONTAINS(state, "\"watcher_count\":1");
  CHECK_CONTAINS(state, "\"map\":\"dust\"");
  CHECK_CONTAINS(state, "\"user_id\":\"c\"");
  presence_string_free(state);
  EXPECT_OK(presence_watch_channel(e, w, "lobby:main", true, NULL)); /* idempotent, no state */
  /* A fourth member would exceed the watcher's subscription limit. */
  EXPECT_ERR(presence_add_members(e, "lobby:main", "[\"d\"]"), PRESENCE_ERR_LIMIT,
             "max_subscriptions_per_connection");
  EXPECT_OK(presence_upsert_channel(e, "{\"cid\":\"lobby:big\",\"members\":[\"d\",\"e\",\"f\"]}"));
  state = SENTINEL_STR;
  EXPECT_ERR(presence_watch_channel(e, w, "lobby:big", true, &state), PRESENCE_ERR_LIMIT,
             "presence_watch_channel: connection");
  EXPECT_ERR(presence_watch_channel(NULL, w, "lobby:main", true, &state), PRESENCE_ERR_NULL,
             "presence_watch_channel: engine is NULL");
  EXPECT_ERR(presence_watch_channel(e, w, NULL, true, &state), PRESENCE_ERR_NULL,
             "presence_watch_channel: cid is NULL");
  EXPECT_ERR(presence_watch_channel(e, w, BAD_UTF8, true, &state), PRESENCE_ERR_UTF8,
             "presence_watch_channel: cid is not valid UTF-8");
  EXPECT_ERR(presence_watch_channel(e, w, "lobby:", true, &state), PRESENCE_ERR_INVALID,
             "presence_watch_channel: channel id must be 1..=64 bytes");
  EXPECT_ERR(presence_watch_channel(e, w, "lobby:none", true, &state), PRESENCE_ERR_NOT_FOUND,
             "unknown channel");
  EXPECT_ERR(presence_watch_channel(e, 777, "lobby:main", true, &state), PRESENCE_ERR_NOT_FOUND,
             "unknown connection 777");
  CHECK(state == SENTINEL_STR);
  EXPECT_OK(presence_watch_channel(e, w, "lobby:big", false, NULL)); /* no presence: no limit */

  /* presence_stop_watching */
  EXPECT_OK(presence_stop_watching(e, w, "lobby:big"));
  EXPECT_OK(presence_stop_watching(e, w, "lobby:big")); /* a no-op */
  EXPECT_ERR(presence_stop_watching(NULL, w, "lobby:big"), PRESENCE_ERR_NULL,
             "presence_stop_watching: engine is NULL");
  EXPECT_ERR(presence_stop_watching(e, w, NULL), PRESENCE_ERR_NULL, "presence_stop_watching: cid is NULL");
  EXPECT_ERR(presence_stop_watching(e, w, BAD_UTF8), PRESENCE_ERR_UTF8,
             "presence_stop_watching: cid is not valid UTF-8");
  EXPECT_ERR(presence_stop_watching(e, 777, "lobby:big"), PRESENCE_ERR_NOT_FOUND, "unknown connection 777");

  /* presence_remove_members */
  EXPECT_OK(presence_remove_members(e, "lobby:main", "[\"c\"]"));
  EXPECT_ERR(presence_remove_members(NULL, "lobby:main", "[\"c\"]"), PRESENCE_ERR_NULL,
             "presence_remove_members: engine is NULL");
  EXPECT_ERR(presence_remove_members(e, NULL, "[\"c\"]"), PRESENCE_ERR_NULL,
             "presence_remove_members: cid is NULL");
  EXPECT_ERR(presence_remove_members(e, "lobby:main", NULL), PRESENCE_ERR_NULL,
             "presence_remove_members: user_ids_json is NULL");
  EXPECT_ERR(presence_remove_members(e, BAD_UTF8, "[]"), PRESENCE_ERR_UTF8,
             "presence_remove_members: cid is not valid UTF-8");
  EXPECT_ERR(presence_remove_members(e, "lobby:main", BAD_UTF8), PRESENCE_ERR_UTF8,
             "presence_remove_members: user_ids_json is not valid UTF-8");
  EXPECT_ERR(presence_remove_members(e, "lobby:main", "nope"), PRESENCE_ERR_JSON,
             "presence_remove_members: user ids: expected ident");
  EXPECT_ERR(presence_remove_members(e, "lobby:none", "[\"a\"]"), PRESENCE_ERR_NOT_FOUND, "unknown channel");
  EXPECT_ERR(presence_remove_members(e, "lobby:main", "[\"ghost\"]"), PRESENCE_ERR_NOT_FOUND,
             "unknown user \"ghost\"");

  /* presence_query_users */
  char *json = NULL;
  EXPECT_OK(presence_query_users(e, 0, "{\"filter_conditions\":{\"id\":{\"$in\":[\"a\",\"b\"]}},"
                                       "\"sort\":[{\"field\":\"id\",\"direction\":1}]}", &json));
  CHECK(strncmp(json, "{\"users\":[", 10) == 0);
  CHECK(count_of(json, "\"id\":") == 2);
  CHECK(strstr(json, "\"id\":\"a\"") < strstr(json, "\"id\":\"b\""));
  presence_string_free(json);
  json = NULL;
  EXPECT_OK(presence_query_users(e, w, "{\"filter_conditions\":{\"id\":\"e\"},\"presence\":true}", &json));
  CHECK_CONTAINS(json, "\"id\":\"e\"");
  presence_string_free(json);
  json = SENTINEL_STR;
  EXPECT_ERR(presence_query_users(NULL, 0, "{}", &json), PRESENCE_ERR_NULL, "presence_query_users: engine is NULL");
  EXPECT_ERR(presence_query_users(e, 0, NULL, &json), PRESENCE_ERR_NULL, "presence_query_users: query_json is NULL");
  EXPECT_ERR(presence_query_users(e, 0, "{}", NULL), PRESENCE_ERR_NULL, "presence_query_users: out_json is NULL");
  EXPECT_ERR(presence_query_users(e, 0, BAD_UTF8, &json), PRESENCE_ERR_UTF8,
             "presence_query_users: query_json is not valid UTF-8");
  EXPECT_ERR(presence_query_users(e, 0, "{\"limit\":", &json), PRESENCE_ERR_JSON, "presence_query_users: ");
  EXPECT_ERR(presence_query_users(e, 0, "{\"filter_conditions\":{\"id\":{\"$regex\":\"a\"}}}", &json),
             PRESENCE_ERR_INVALID, "$regex");
  EXPECT_ERR(presence_query_users(e, 0, "{\"limit\":1000}", &json), PRESENCE_ERR_LIMIT,
             "presence_query_users: limit 1000 exceeds query_limit_max 100");
  EXPECT_ERR(presence_query_users(e, 0, "{\"presence\":true}", &json), PRESENCE_ERR_INVALID,
             "presence needs a connection");
  EXPECT_ERR(presence_query_users(e, 555, "{}", &json), PRESENCE_ERR_NOT_FOUND, "unknown connection 555");
  EXPECT_ERR(presence_query_users(e, w, "{\"filter_conditions\":{\"id\":\"f\"},\"presence\":true}", &json),
             PRESENCE_ERR_LIMIT, "max_subscriptions_per_connection");
  CHECK(json == SENTINEL_STR);

  /* presence_unsubscribe_user */
  EXPECT_OK(presence_unsubscribe_user(e, w, "e"));
  EXPECT_ERR(presence_unsubscribe_user(NULL, w, "e"), PRESENCE_ERR_NULL, "presence_unsubscribe_user: engine is NULL");
  EXPECT_ERR(presence_unsubscribe_user(e, w, NULL), PRESENCE_ERR_NULL, "presence_unsubscribe_user: user_id is NULL");
  EXPECT_ERR(presence_unsubscribe_user(e, w, BAD_UTF8), PRESENCE_ERR_UTF8,
             "presence_unsubscribe_user: user_id is not valid UTF-8");
  EXPECT_ERR(presence_unsubscribe_user(e, 555, "e"), PRESENCE_ERR_NOT_FOUND, "unknown connection 555");
  EXPECT_ERR(presence_unsubscribe_user(e, w, "ghost"), PRESENCE_ERR_NOT_FOUND, "unknown user \"ghost\"");

  /* presence_query_channels */
  json = NULL;
  EXPECT_OK(presence_query_channels(e, 0, "{\"filter_conditions\":{\"type\":\"lobby\"},\"sort\":{\"cid\":1}}", &json));
  CHECK(strncmp(json, "{\"channels\":[", 13) == 0);
  CHECK_CONTAINS(json, "\"cid\":\"lobby:big\"");
  CHECK_CONTAINS(json, "\"cid\":\"lobby:main\"");
  CHECK_LACKS(json, "team:red");
  presence_string_free(json);
  json = NULL;
  EXPECT_OK(presence_query_channels(e, w, "{\"filter_conditions\":{\"cid\":\"team:red\"},\"watch\":true}", &json));
  CHECK_CONTAINS(json, "\"watcher_count\":1");
  presence_string_free(json);
  json = SENTINEL_STR;
  EXPECT_ERR(presence_query_channels(NULL, 0, "{}", &json), PRESENCE_ERR_NULL,
             "presence_query_channels: engine is NULL");
  EXPECT_ERR(presence_query_channels(e, 0, NULL, &json), PRESENCE_ERR_NULL,
             "presence_query_channels: query_json is NULL");
  EXPECT_ERR(presence_query_channels(e, 0, "{}", NULL), PRESENCE_ERR_NULL,
             "presence_query_channels: out_json is NULL");
  EXPECT_ERR(presence_query_channels(e, 0, BAD_UTF8, &json), PRESENCE_ERR_UTF8,
             "presence_query_channels: query_json is not valid UTF-8");
  EXPECT_ERR(presence_query_channels(e, 0, "{{", &json), PRESENCE_ERR_JSON, "presence_query_channels: ");
  EXPECT_ERR(presence_query_channels(e, 0, "{\"filter_conditions\":{\"member_count\":{\"$gt\":\"x\"}}}", &json),
             PRESENCE_ERR_INVALID, "member_count");
  EXPECT_ERR(presence_query_channels(e, 0, "{\"watch\":true}", &json), PRESENCE_ERR_INVALID,
             "need a connection as viewer");
  EXPECT_ERR(presence_query_channels(e, 555, "{}", &json), PRESENCE_ERR_NOT_FOUND, "unknown connection 555");
  EXPECT_ERR(presence_query_channels(e, w, "{\"filter_conditions\":{\"cid\":\"lobby:big\"},\"presence\":true}", &json),
             PRESENCE_ERR_LIMIT, "max_subscriptions_per_connection");
  CHECK(json == SENTINEL_STR);

  /* presence_delete_channel */
  EXPECT_OK(presence_delete_channel(e, "lobby:big"));
  EXPECT_ERR(presence_delete_channel(e, "lobby:big"), PRESENCE_ERR_NOT_FOUND,
             "presence_delete_channel: unknown channel \"lobby:big\"");
  EXPECT_ERR(presence_delete_channel(NULL, "lobby:main"), PRESENCE_ERR_NULL,
             "presence_delete_channel: engine is NULL");
  EXPECT_ERR(presence_delete_channel(e, NULL), PRESENCE_ERR_NULL, "presence_delete_channel: cid is NULL");
  EXPECT_ERR(presence_delete_channel(e, BAD_UTF8), PRESENCE_ERR_UTF8,
             "presence_delete_channel: cid is not valid UTF-8");
  EXPECT_ERR(presence_delete_channel(e, "a:b:c"), PRESENCE_ERR_INVALID, "presence_delete_channel: channel id");

  presence_engine_free(e);
}

static void test_events(void) {
  PresenceEngine *e = new_engine("{\"connection_queue_capacity\":4,\"dispatch\":\"manual\"}");
  int host_calls = 0, typed_calls = 0, delivery_calls = 0;
  PresenceListenerId all = 0, typed = 0, delivery = 0, out = 12345;

  /* presence_add_listener / presence_add_delivery_listener */
  EXPECT_OK(presence_add_listener(e, NULL, NULL, noop_callback, &host_calls, &all));
  EXPECT_OK(presence_add_listener(e, "user.presence.changed", "carol", noop_callback, &typed_calls, &typed));
  EXPECT_OK(presence_add_delivery_listener(e, noop_callback, &delivery_calls, &delivery));
  CHECK(all != 0 && typed != 0 && delivery != 0 && all != typed && typed != delivery);
  EXPECT_ERR(presence_add_listener(NULL, NULL, NULL, noop_callback, NULL, &out), PRESENCE_ERR_NULL,
             "presence_add_listener: engine is NULL");
  EXPECT_ERR(presence_add_listener(e, NULL, NULL, NULL, NULL, &out), PRESENCE_ERR_NULL,
             "presence_add_listener: cb is NULL");
  EXPECT_ERR(presence_add_listener(e, NULL, NULL, noop_callback, NULL, NULL), PRESENCE_ERR_NULL,
             "presence_add_listener: out is NULL");
  EXPECT_ERR(presence_add_listener(e, BAD_UTF8, NULL, noop_callback, NULL, &out), PRESENCE_ERR_UTF8,
             "presence_add_listener: event_type is not valid UTF-8");
  EXPECT_ERR(presence_add_listener(e, NULL, BAD_UTF8, noop_callback, NULL, &out), PRESENCE_ERR_UTF8,
             "presence_add_listener: user_id is not valid UTF-8");
  /* ABI version 1 accepts a filter that could never match: the listener is never called. */
  PresenceListenerId never_type = 0, never_user = 0;
  int never_calls = 0;
  EXPECT_OK(presence_add_listener(e, "user.typing", NULL, noop_callback, &never_calls, &never_type));
  EXPECT_OK(presence_add_listener(e, NULL, "Alice Smith", noop_callback, &never_calls, &never_user));
  CHECK(never_type != 0 && never_user != 0 && never_type != never_user);
  EXPECT_ERR(presence_add_delivery_listener(NULL, noop_callback, NULL, &out), PRESENCE_ERR_NULL,
             "presence_add_delivery_listener: engine is NULL");
  EXPECT_ERR(presence_add_delivery_listener(e, NULL, NULL, &out), PRESENCE_ERR_NULL,
             "presence_add_delivery_listener: cb is NULL");
  EXPECT_ERR(presence_add_delivery_listener(e, noop_callback, NULL, NULL), PRESENCE_ERR_NULL,
             "presence_add_delivery_listener: out is NULL");
  CHECK(out == 12345);

  /* Events wait for presence_pump in manual dispatch. */
  PresenceConnectionId w = connect_user(e, "{\"id\":\"w\"}");
  EXPECT_OK(presence_upsert_channel(e, "{\"cid\":\"room:1\",\"members\":[\"carol\"]}"));
  EXPECT_OK(presence_watch_channel(e, w, "room:1", true, NULL));
  PresenceConnectionId c = connect_user(e, "{\"id\":\"carol\"}");
  CHECK(host_calls == 0 && typed_calls == 0 && delivery_calls == 0);
  uint32_t delivered = 0;
  EXPECT_OK(presence_pump(e, &delivered));
  CHECK(typed_calls == 1);
  CHECK(delivery_calls >= 1);
  CHECK(host_calls >= 3);
  CHECK(delivered == (uint32_t)(host_calls + typed_calls + delivery_calls));
  EXPECT_OK(presence_pump(e, NULL)); /* nothing waiting; NULL out is fine */
  delivered = 99;
  EXPECT_OK(presence_pump(e, &delivered));
  CHECK(delivered == 0);
  EXPECT_ERR(presence_pump(NULL, &delivered), PRESENCE_ERR_NULL, "presence_pump: engine is NULL");

  /* presence_remove_listener */
  EXPECT_OK(presence_remove_listener(e, typed));
  EXPECT_ERR(presence_remove_listener(e, typed), PRESENCE_ERR_NOT_FOUND,
             "presence_remove_listener: unknown listener");
  EXPECT_ERR(presence_remove_listener(e, 0), PRESENCE_ERR_NOT_FOUND, "presence_remove_listener: unknown listener 0");
  EXPECT_ERR(presence_remove_listener(NULL, all), PRESENCE_ERR_NULL, "presence_remove_listener: engine is NULL");
  EXPECT_OK(presence_set_status(e, "carol", "busy"));
  EXPECT_OK(presence_pump(e, NULL));
  CHECK(typed_calls == 1); /* removed before the event */
  CHECK(never_calls == 0);
  EXPECT_OK(presence_remove_listener(e, never_type));
  EXPECT_OK(presence_remove_listener(e, never_user));

  /* presence_poll_events: the watcher got member/presence events; "[]" when drained. */
  char *events = NULL;
  EXPECT_OK(presence_poll_events(e, w, 1, &events));
  CHECK(events[0] == '[' && count_of(events, "\"seq\":") == 1);
  CHECK_CONTAINS(events, "\"connection_id\":");
  presence_string_free(events);
  events = NULL;
  EXPECT_OK(presence_poll_events(e, w, 100, &events));
  CHECK_CONTAINS(events, "\"type\":\"user.presence.changed\"");
  CHECK_CONTAINS(events, "\"status\":\"busy\"");
  presence_string_free(events);
  events = NULL;
  EXPECT_OK(presence_poll_events(e, w, 100, &events));
  CHECK(strcmp(events, "[]") == 0);
  presence_string_free(events);
  events = SENTINEL_STR;
  EXPECT_ERR(presence_poll_events(NULL, w, 10, &events), PRESENCE_ERR_NULL, "presence_poll_events: engine is NULL");
  EXPECT_ERR(presence_poll_events(e, w, 10, NULL), PRESENCE_ERR_NULL, "presence_poll_events: out_json_array is NULL");
  EXPECT_ERR(presence_poll_events(e, 0, 10, &events), PRESENCE_ERR_NOT_FOUND, "presence_poll_events: unknown connection 0");
  /* A queue that overflows (capacity 4) closes its connection as a slow consumer. */
  for (int i = 0; i < 6; i++) {
    char status[32];
    snprintf(status, sizeof status, "s%d", i);
    EXPECT_OK(presence_set_status(e, "carol", status));
  }
  EXPECT_ERR(presence_poll_events(e, w, 10, &events), PRESENCE_ERR_NOT_FOUND, "unknown connection");
  CHECK(events == SENTINEL_STR);
  EXPECT_OK(presence_pump(e, NULL));
  EXPECT_OK(presence_disconnect(e, c));
  EXPECT_OK(presence_pump(e, NULL));
  EXPECT_OK(presence_remove_listener(e, all));
  EXPECT_OK(presence_remove_listener(e, delivery));
  presence_engine_free(e);
}

static void test_time(void) {
  PresenceEngine *e = new_engine("{\"clock\":\"manual\",\"start_time_ms\":1000,"
                                 "\"connection_timeout_ms\":5000}");
  PresenceConnectionId c = connect_user(e, "{\"id\":\"t\"}");
  EXPECT_OK(presence_tick(e));
  EXPECT_OK(presence_set_time(e, 1000)); /* same time is fine */
  EXPECT_OK(presence_set_time(e, 5000));
  EXPECT_OK(presence_heartbeat(e, c));
  EXPECT_ERR(presence_set_time(e, 4999), PRESENCE_ERR_STATE, "presence_set_time: time cannot move backwards");
  EXPECT_ERR(presence_set_time(NULL, 6000), PRESENCE_ERR_NULL, "presence_set_time: engine is NULL");
  /* The supported time range ends at 9999-12-31T23:59:59.999Z; the clock stays put. */
  EXPECT_ERR(presence_set_time(e, 253402300800000LL), PRESENCE_ERR_INVALID, "outside the supported time range");
  EXPECT_ERR(presence_set_time(e, INT64_MAX), PRESENCE_ERR_INVALID, "outside the supported time range");
  EXPECT_OK(presence_set_time(e, 5000)); /* still 5000: the refused times moved nothing */
  EXPECT_ERR(presence_tick(NULL), PRESENCE_ERR_NULL, "presence_tick: engine is NULL");
  EXPECT_OK(presence_set_time(e, 9000));
  EXPECT_OK(presence_tick(e));
  EXPECT_OK(presence_heartbeat(e, c)); /* 4 s since the last heartbeat: alive */
  EXPECT_OK(presence_set_time(e, 15000));
  EXPECT_OK(presence_tick(e)); /* 6 s: timed out */
  EXPECT_ERR(presence_heartbeat(e, c), PRESENCE_ERR_NOT_FOUND, "unknown connection");
  presence_engine_free(e);

  e = new_engine(NULL); /* system clock */
  EXPECT_OK(presence_tick(e));
  EXPECT_ERR(presence_set_time(e, 1), PRESENCE_ERR_STATE, "presence_set_time: set_time needs");
  presence_engine_free(e);
}

static void test_persistence(void) {
  char path[256], missing[256], garbage[256];
  snprintf(path, sizeof path, "%s/snapshot.json", temp_dir);
  snprintf(missing, sizeof missing, "%s/no/such/dir/snapshot.json", temp_dir);
  snprintf(garbage, sizeof garbage, "%s/garbage.json", temp_dir);
  FILE *f = fopen(garbage, "w");
  CHECK(f != NULL);
  if (f) {
    fputs("this is not json", f);
    fclose(f);
  }

  PresenceEngine *e = new_engine(NULL);
  EXPECT_OK(presence_upsert_user(e, "{\"id\":\"p\",\"status\":\"saved\"}"));
  EXPECT_OK(presence_save(e, path));
  EXPECT_ERR(presence_save(NULL, path), PRESENCE_ERR_NULL, "presence_save: engine is NULL");
  EXPECT_ERR(presence_save(e, NULL), PRESENCE_ERR_NULL, "presence_save: path is NULL");
  EXPECT_ERR(presence_save(e, BAD_UTF8), PRESENCE_ERR_UTF8, "presence_save: path is not valid UTF-8");
  EXPECT_ERR(presence_save(e, missing), PRESENCE_ERR_IO, "presence_save: save: cannot create");

  PresenceEngine *loaded = new_engine(NULL);
  EXPECT_OK(presence_load(loaded, path));
  char *json = NULL;
  EXPECT_OK(presence_get_user(loaded, 0, "p", &json));
  CHECK_CONTAINS(json, "\"status\":\"saved\"");
  presence_string_free(json);
  EXPECT_ERR(presence_load(NULL, path), PRESENCE_ERR_NULL, "presence_load: engine is NULL");
  EXPECT_ERR(presence_load(loaded, NULL), PRESENCE_ERR_NULL, "presence_load: path is NULL");
  EXPECT_ERR(presence_load(loaded, BAD_UTF8), PRESENCE_ERR_UTF8, "presence_load: path is not valid UTF-8");
  EXPECT_ERR(presence_load(loaded, missing), PRESENCE_ERR_IO, "presence_load: load: cannot read");
  EXPECT_ERR(presence_load(loaded, garbage), PRESENCE_ERR_JSON, "is not valid JSON");
  PresenceConnectionId c = connect_user(loaded, "{\"id\":\"q\"}");
  EXPECT_ERR(presence_load(loaded, path), PRESENCE_ERR_STATE,
             "presence_load: load needs an engine without connections; 1 are open");
  EXPECT_OK(presence_disconnect(loaded, c));
  EXPECT_OK(presence_load(loaded, path));
  /* Without a cluster config the engine reports single mode. */
  EXPECT_OK(presence_cluster_status(loaded, &json));
  CHECK_CONTAINS(json, "{\"mode\":\"single\"}");
  presence_string_free(json);
  EXPECT_ERR(presence_cluster_status(loaded, NULL), PRESENCE_ERR_NULL, "presence_cluster_status: out_json is NULL");
  presence_engine_free(loaded);
  presence_engine_free(e);
  unlink(path);
  unlink(garbage);
}

int main(void) {
  if (mkdtemp(temp_dir) == NULL) {
    perror("mkdtemp");
    return 2;
  }
  test_versions_and_errors();
  test_engine_new();
  test_users();
  test_channels();
  test_events();
  test_time();
  test_persistence();
  rmdir(temp_dir);
  return finish();
}
