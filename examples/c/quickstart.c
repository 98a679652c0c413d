/* The README's C quick start (tests/c/run.sh builds and runs it; tests/readme.rs checks the README). */
#include <stdio.h>
#include "presence.h"

/* A typed delivery listener: one call per (event, recipient), in the view that recipient may
   see. No JSON is rendered; the strings live until the callback returns. */
static void on_delivery(void *user_data, const PresenceEventInfo *event) {
  (void)user_data;
  printf("callback, to connection %llu: #%llu %s %s is %s\n", (unsigned long long)event->connection_id,
         (unsigned long long)event->seq, event->type_name, event->user_id, event->online ? "online" : "offline");
}

int main(void) {
  PresenceEngine *engine = NULL;
  if (presence_abi_version() < PRESENCE_ABI_VERSION ||
      presence_engine_new("{\"clock\":\"manual\",\"start_time_ms\":0}", &engine) != PRESENCE_OK) {
    fprintf(stderr, "engine: %s\n", presence_last_error());
    return 1;
  }
  PresenceListenerId listener = 0;
  presence_add_typed_delivery_listener(engine, on_delivery, NULL, NULL, &listener);

  /* bob follows alice's presence through a user query with "presence": true. */
  PresenceConnectionId bob = 0, alice = 0;
  presence_connect_user(engine, "bob", &bob);
  presence_upsert_user(engine, "{\"id\":\"alice\",\"name\":\"Alice\"}");
  char *json = NULL;
  presence_query_users(engine, bob, "{\"filter_conditions\":{\"id\":\"alice\"},\"presence\":true}", &json);
  presence_string_free(json);

  presence_connect_user(engine, "alice", &alice);   /* bob: online */
  presence_set_status(engine, "alice", "in lobby"); /* bob: status */
  presence_set_invisible(engine, "alice", true);    /* bob: offline */

  /* A game loop drains each connection's queue once per frame into one reused batch. */
  PresenceEventBatch *batch = NULL;
  presence_batch_new(&batch);
  if (presence_poll_batch(engine, bob, 64, batch) == PRESENCE_OK) {
    for (uint32_t i = 0; i < presence_batch_len(batch); i++) {
      const PresenceEventInfo *event = presence_batch_event(batch, i);
      printf("bob's queue: #%llu %s is %s, status %s\n", (unsigned long long)event->seq, event->user_id,
             event->online ? "online" : "offline", event->status ? event->status : "(none)");
    }
    const char *last = NULL; /* JSON only on request, owned by the batch */
    if (presence_batch_event_json(batch, presence_batch_len(batch) - 1, &last) == PRESENCE_OK) {
      printf("as JSON: %s\n", last);
    }
  }
  presence_batch_free(batch);

  PresenceResult r = presence_disconnect(engine, 42); /* an unknown connection */
  printf("%s: %s\n", presence_result_name(r), presence_last_error());

  presence_engine_free(engine);
  return 0;
}
