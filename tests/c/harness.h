/* A tiny test harness for the C suite: counters, checks that print what failed and
 * where, and helpers for the PresenceResult + presence_last_error() contract.
 * Every test program ends with finish(), which prints "N passed, M failed" alone on the
 * last line and answers the exit status. */
#ifndef PRESENCE_TEST_HARNESS_H
#define PRESENCE_TEST_HARNESS_H

#include "presence.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_int harness_passed;
static atomic_int harness_failed;

static inline void harness_check(int ok, const char *what, const char *file, int line) {
  if (ok) {
    atomic_fetch_add(&harness_passed, 1);
  } else {
    atomic_fetch_add(&harness_failed, 1);
    fprintf(stderr, "FAIL %s:%d: %s\n", file, line, what);
  }
}

/* A boolean check. */
#define CHECK(cond) harness_check((cond) ? 1 : 0, #cond, __FILE__, __LINE__)

/* A call that must answer PRESENCE_OK. */
#define EXPECT_OK(call) harness_expect_ok((call), #call, __FILE__, __LINE__)

static inline void harness_expect_ok(PresenceResult got, const char *what, const char *file, int line) {
  if (got == PRESENCE_OK) {
    atomic_fetch_add(&harness_passed, 1);
  } else {
    atomic_fetch_add(&harness_failed, 1);
    fprintf(stderr, "FAIL %s:%d: %s answered %s: %s\n", file, line, what,
            presence_result_name(got), presence_last_error());
  }
}

/* A call that must fail with `code`, leaving a last error that contains `needle` (the
 * function name and the argument or problem, e.g. "presence_connect: user_json is NULL"). */
#define EXPECT_ERR(call, code, needle) \
  harness_expect_err((call), (code), (needle), #call, __FILE__, __LINE__)

static inline void harness_expect_err(PresenceResult got, PresenceResult want, const char *needle,
                               const char *what, const char *file, int line) {
  const char *message = presence_last_error();
  int ok = got == want && message != NULL && message[0] != '\0' &&
           (needle == NULL || strstr(message, needle) != NULL);
  if (ok) {
    atomic_fetch_add(&harness_passed, 1);
  } else {
    atomic_fetch_add(&harness_failed, 1);
    fprintf(stderr, "FAIL %s:%d: %s answered %s (wanted %s), last error \"%s\" (wanted \"%s\")\n",
            file, line, what, presence_result_name(got), presence_result_name(want),
            message ? message : "(NULL)", needle ? needle : "(anything)");
  }
}

/* A string that must contain `needle`. */
#define CHECK_CONTAINS(haystack, needle) \
  harness_check_contains((haystack), (needle), 1, __FILE__, __LINE__)
/* A string that must not contain `needle`. */
#define CHECK_LACKS(haystack, needle) \
  harness_check_contains((haystack), (needle), 0, __FILE__, __LINE__)

static inline void harness_check_contains(const char *haystack, const char *needle, int want,
                                   const char *file, int line) {
  int found = haystack != NULL && strstr(haystack, needle) != NULL;
  if (found == want) {
    atomic_fetch_add(&harness_passed, 1);
  } else {
    atomic_fetch_add(&harness_failed, 1);
    fprintf(stderr, "FAIL %s:%d: \"%s\" %s \"%s\"\n", file, line, haystack ? haystack : "(NULL)",
            want ? "lacks" : "contains", needle);
  }
}

/* The unsigned number after the first `"key":` in a JSON text, or UINT64_MAX. */
static inline uint64_t json_u64(const char *json, const char *key) {
  char pattern[128];
  snprintf(pattern, sizeof pattern, "\"%s\":", key);
  const char *at = json ? strstr(json, pattern) : NULL;
  if (at == NULL) {
    return UINT64_MAX;
  }
  return strtoull(at + strlen(pattern), NULL, 10);
}

/* How many times `needle` occurs in `haystack`. */
static inline int count_of(const char *haystack, const char *needle) {
  int n = 0;
  size_t len = strlen(needle);
  for (const char *p = haystack; p && (p = strstr(p, needle)) != NULL; p += len) {
    n++;
  }
  return n;
}

/* A new engine from `config` (NULL: defaults), which must succeed. */
static inline PresenceEngine *new_engine(const char *config) {
  PresenceEngine *e = NULL;
  EXPECT_OK(presence_engine_new(config, &e));
  CHECK(e != NULL);
  return e;
}

/* A new connection for user JSON `json`, which must succeed. */
static inline PresenceConnectionId connect_user(PresenceEngine *e, const char *json) {
  PresenceConnectionId c = 0;
  EXPECT_OK(presence_connect(e, json, &c));
  CHECK(c != 0);
  return c;
}

/* A new connection for user `user_id` (presence_connect_user), which must succeed. */
static inline PresenceConnectionId connect_id(PresenceEngine *e, const char *user_id) {
  PresenceConnectionId c = 0;
  EXPECT_OK(presence_connect_user(e, user_id, &c));
  CHECK(c != 0);
  return c;
}

/* Prints the summary line and answers the exit status. */
static inline int finish(void) {
  int failed = atomic_load(&harness_failed);
  printf("%d passed, %d failed\n", atomic_load(&harness_passed), failed);
  return failed == 0 ? 0 : 1;
}

#endif
