/* The README's C quick start (tests/c/run.sh builds and runs it; tests/readme.rs checks the README). */
#include <stdio.h>
#include "presence.h"

/* A delivery listener: one call per (event, recipient), with the view that recipient may see. */
static void on_delivery(void *user_data, const PresenceEvent *event) {
  (void)user_data;
  printf("to connection %llu: #%llu %s %s is %s\n", (unsigned long long)event->connection_id,
         (unsigned long long)event->seq, event->type, event->user_id, event->online ? "online" : "offline");
}

int main(void) {
  PresenceEngine *engine = NULL;
  if (presence_engine_new("{\"clock\":\"manual\",\"start_time_ms\":0}", &engine) != PRESENCE_OK) {
    fprintf(stderr, "engine: %s\n", presence_last_error());
    return 1;
  }
  PresenceListenerId listener = 0;
  presence_add_delivery_listener(engine, on_delivery, NULL, &listener);

  /* bob follows alice's presence through a user query with "presence": true. */
  PresenceConnectionId bob = 0, alice = 0;
  presence_connect(engine, "{\"id\":\"bob\"}", &bob);
  presence_upsert_user(engine, "{\"id\":\"alice\",\"name\":\"Alice\"}");
  char *json = NULL;
  presence_query_users(engine, bob, "{\"filter_conditions\":{\"id\":\"alice\"},\"presence\":true}", &json);
  presence_string_free(json);

  presence_connect(engine, "{\"id\":\"alice\",\"status\":\"in lobby\"}", &alice); /* bob: online */
  presence_set_invisible(engine, "alice", true);                                 /* bob: offline */
  if (presence_get_user(engine, bob, "alice", &json) == PRESENCE_OK) {
    printf("bob sees %s\n", json);
    presence_string_free(json);
  }
  PresenceResult r = presence_disconnect(engine, 42); /* an unknown connection */
  printf("%s: %s\n", presence_result_name(r), presence_last_error());

  presence_engine_free(engine);
  return 0;
}
