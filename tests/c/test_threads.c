/* Several pthreads on one engine: mixed operations for a bounded number of iterations,
 * a host listener and a delivery listener that re-enter the engine, a thread adding and
 * removing listeners, pumping and ticking. It must finish (a watchdog turns a deadlock into
 * a failure), no callback may run concurrently with another, host listeners must see seq
 * strictly increasing and every seq exactly once (no lost events), and every call must
 * succeed. */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WORKERS 4
#define ITERATIONS 150
#define WATCHDOG_SECONDS 300

static PresenceEngine *engine;

/* Touched only inside callbacks, which the engine promises never run concurrently;
 * `in_callback` checks that promise (and orders the plain variables between threads). */
static atomic_int in_callback;
static atomic_int concurrent_callbacks;
static uint64_t host_events;
static uint64_t last_host_seq;
static uint64_t host_order_violations;
static uint64_t deliveries;
static uint64_t last_delivery_seq;
static uint64_t delivery_order_violations;
static uint64_t reentry_failures;
static uint64_t user_data_mismatches;
static uint64_t echoes_requested;
static atomic_int churn_callbacks;

/* Calls that did not answer PRESENCE_OK where they should have. */
static atomic_int call_failures;

static void must(PresenceResult r, const char *what) {
  if (r != PRESENCE_OK) {
    if (atomic_fetch_add(&call_failures, 1) < 10) {
      fprintf(stderr, "FAIL %s: %s: %s\n", what, presence_result_name(r), presence_last_error());
    }
  }
}

static void enter(void) {
  if (atomic_exchange(&in_callback, 1) != 0) {
    atomic_fetch_add(&concurrent_callbacks, 1);
  }
}

static void leave(void) { atomic_store(&in_callback, 0); }

static void on_host_event(void *user_data, const PresenceEvent *event) {
  enter();
  if (user_data != (void *)&engine) { /* passed back untouched */
    user_data_mismatches++;
  }
  if (event->seq <= last_host_seq) {
    host_order_violations++;
  }
  last_host_seq = event->seq;
  host_events++;
  /* Re-enter the engine from the callback: a read, and now and then a write that emits an
   * event of its own (delivered after this callback returns). */
  if (event->user_id != NULL && host_events % 7 == 0) {
    char *json = NULL;
    if (presence_get_user(engine, 0, event->user_id, &json) != PRESENCE_OK || json == NULL) {
      reentry_failures++;
    }
    presence_string_free(json);
  }
  if (event->user_id != NULL && strcmp(event->user_id, "echo") != 0 && host_events % 50 == 0) {
    char status[32];
    snprintf(status, sizeof status, "echo %llu", (unsigned long long)event->seq);
    if (presence_set_status(engine, "echo", status) != PRESENCE_OK) {
      reentry_failures++;
    }
    echoes_requested++;
  }
  leave();
}

static void on_delivery(void *user_data, const PresenceEvent *event) {
  enter();
  (void)user_data;
  if (event->seq < last_delivery_seq || event->connection_id == 0) {
    delivery_order_violations++;
  }
  last_delivery_seq = event->seq;
  deliveries++;
  leave();
}

static void on_churn_event(void *user_data, const PresenceEvent *event) {
  enter();
  (void)user_data;
  (void)event;
  atomic_fetch_add(&churn_callbacks, 1);
  leave();
}

static void *worker(void *arg) {
  int k = (int)(intptr_t)arg;
  for (int i = 0; i < ITERATIONS; i++) {
    char user[32], json[128], members[64], query[128];
    snprintf(user, sizeof user, "w%d_%d", k, i % 4);
    snprintf(json, sizeof json, "{\"id\":\"%s\",\"status\":\"s%d\",\"round\":%d}", user, i, i);
    snprintf(members, sizeof members, "[\"%s\"]", user);
    PresenceConnectionId c = 0;
    must(presence_connect(engine, json, &c), "presence_connect");
    must(presence_add_members(engine, "arena:shared", members), "presence_add_members");
    char *state = NULL;
    must(presence_watch_channel(engine, c, "arena:shared", true, i % 2 ? &state : NULL),
         "presence_watch_channel");
    presence_string_free(state);
    must(presence_set_status(engine, user, i % 3 ? "playing" : NULL), "presence_set_status");
    if (i % 5 == 0) {
      must(presence_set_invisible(engine, user, true), "presence_set_invisible(true)");
      must(presence_set_invisible(engine, user, false), "presence_set_invisible(false)");
    }
    must(presence_heartbeat(engine, c), "presence_heartbeat");
    char *out = NULL;
    snprintf(query, sizeof query,
             "{\"filter_conditions\":{\"online\":true},\"limit\":10,\"presence\":%s}",
             i % 4 == 0 ? "true" : "false");
    must(presence_query_users(engine, c, query, &out), "presence_query_users");
    presence_string_free(out);
    out = NULL;
    must(presence_poll_events(engine, c, 1000, &out), "presence_poll_events");
    presence_string_free(out);
    if (i % 6 == 0) {
      out = NULL;
      must(presence_query_channels(engine, c, "{\"filter_conditions\":{\"type\":\"arena\"}}", &out),
           "presence_query_channels");
      presence_string_free(out);
      must(presence_remove_members(engine, "arena:shared", members), "presence_remove_members");
    }
    if (i % 3 == 0) {
      must(presence_stop_watching(engine, c, "arena:shared"), "presence_stop_watching");
    }
    must(presence_disconnect(engine, c), "presence_disconnect");
  }
  return NULL;
}

static atomic_int stop_churn;

static void *churner(void *arg) {
  (void)arg;
  int rounds = 0;
  while (!atomic_load(&stop_churn) || rounds < 10) {
    PresenceListenerId id = 0;
    must(presence_add_listener(engine, rounds % 2 ? "user.presence.changed" : NULL, NULL,
                               on_churn_event, NULL, &id),
         "presence_add_listener");
    uint32_t n = 0;
    must(presence_pump(engine, &n), "presence_pump");
    must(presence_tick(engine), "presence_tick");
    must(presence_remove_listener(engine, id), "presence_remove_listener");
    rounds++;
    sched_yield();
  }
  return NULL;
}

static void watchdog(int signal) {
  static const char message[] =
      "test_threads: watchdog fired: the run did not finish (deadlock?)\n0 passed, 1 failed\n";
  (void)signal;
  ssize_t ignored = write(STDOUT_FILENO, message, sizeof message - 1);
  (void)ignored;
  _exit(3);
}

int main(void) {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = watchdog;
  sigaction(SIGALRM, &action, NULL);
  alarm(WATCHDOG_SECONDS);

  EXPECT_OK(presence_engine_new("{\"connection_queue_capacity\":1000000}", &engine));
  PresenceListenerId host = 0, delivery = 0;
  EXPECT_OK(presence_add_listener(engine, NULL, NULL, on_host_event, &engine, &host));
  EXPECT_OK(presence_add_delivery_listener(engine, on_delivery, NULL, &delivery));
  EXPECT_OK(presence_upsert_user(engine, "{\"id\":\"echo\"}"));
  EXPECT_OK(presence_upsert_channel(engine, "{\"cid\":\"arena:shared\",\"members\":[\"echo\"]}"));

  pthread_t workers[WORKERS], churn;
  CHECK(pthread_create(&churn, NULL, churner, NULL) == 0);
  for (int k = 0; k < WORKERS; k++) {
    CHECK(pthread_create(&workers[k], NULL, worker, (void *)(intptr_t)k) == 0);
  }
  for (int k = 0; k < WORKERS; k++) {
    pthread_join(workers[k], NULL);
  }
  atomic_store(&stop_churn, 1);
  pthread_join(churn, NULL);

  /* One last event from the main thread: its seq is the engine's total, and the host
   * listener must have seen every seq from 1 to it exactly once. */
  EXPECT_OK(presence_set_status(engine, "echo", "final"));
  char *echo = NULL;
  EXPECT_OK(presence_get_user(engine, 0, "echo", &echo));
  CHECK_CONTAINS(echo, "\"status\":\"final\"");
  presence_string_free(echo);

  enter();
  printf("host events %llu (last seq %llu), deliveries %llu, echoes %llu, churn callbacks %d\n",
         (unsigned long long)host_events, (unsigned long long)last_host_seq,
         (unsigned long long)deliveries, (unsigned long long)echoes_requested,
         atomic_load(&churn_callbacks));
  CHECK(atomic_load(&concurrent_callbacks) == 0);
  CHECK(host_order_violations == 0);
  CHECK(delivery_order_violations == 0);
  CHECK(reentry_failures == 0);
  CHECK(user_data_mismatches == 0);
  CHECK(host_events > (uint64_t)(WORKERS * ITERATIONS));
  CHECK(host_events == last_host_seq);
  CHECK(deliveries > 0);
  CHECK(echoes_requested > 0);
  CHECK(atomic_load(&call_failures) == 0);
  leave();

  EXPECT_OK(presence_remove_listener(engine, host));
  EXPECT_OK(presence_remove_listener(engine, delivery));
  presence_engine_free(engine);
  alarm(0);
  return finish();
}
