/*
 * kpc_common.h -- the small helpers every backend plugin (hashicorp_vault,
 * aws_secret_manager) shares, each written once: the injectable monotonic
 * clock, a xorshift generator with jitter, wiping frees (strings and parsed
 * JSON trees), JSON parsing that refuses raw NULs, and the request path of a
 * URL for messages. Part of kms_plugin_core (plugins/common).
 *
 * Thread-safety: every function is thread-safe as long as its arguments are
 * not shared (a kpc_rng belongs to one thread or is guarded by its
 * owner's lock; a kpc_clock's now_ms must itself be thread-safe).
 */
#ifndef KPC_COMMON_H
#define KPC_COMMON_H

#include "kms_plugin.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Monotonic milliseconds. Tests pass their own now_ms (and advance it)
 * instead of sleeping; NULL (or a NULL now_ms) means CLOCK_MONOTONIC.
 * sleep_ms, when set, replaces the HTTP client's real-time waits between
 * retries (backoff, Retry-After): an injected clock advances itself by ms
 * and returns at once, so retry tests do not sleep. NULL: real waits. */
typedef struct kpc_clock {
  int64_t (*now_ms)(void *ctx);
  void *ctx;
  void (*sleep_ms)(void *ctx, int64_t ms);
} kpc_clock;

int64_t kpc_clock_now(const kpc_clock *c);

/* Waits are in real time (a condition variable cannot follow an injected
 * clock): kpc_cond_init makes a CLOCK_MONOTONIC condition variable, and
 * kpc_timespec_in the absolute time `ms` (>= 0) from now for
 * pthread_cond_timedwait on it. */
void kpc_cond_init(pthread_cond_t *cv);
void kpc_timespec_in(int64_t ms, struct timespec *ts);

/* Start a plugin thread (the refresher, the NONBLOCKING fetcher) with the
 * asynchronous signals blocked, so the host's handlers run on its own
 * threads, never on ours (faults still reach their handlers); `name` (at
 * most 15 characters) is what ps/top/gdb show. Returns pthread_create's
 * result (0: started). Thread-safety: any thread. */
int kpc_thread_start(pthread_t *t, void *(*fn)(void *), void *arg, const char *name);

/* xorshift64 state: never 0. */
typedef struct kpc_rng {
  uint64_t s;
} kpc_rng;

/* Seed from `seed`, or (seed == 0) from the clock, the pid and `salt`'s
 * address, so that instances and processes started together differ. */
void kpc_rng_seed(kpc_rng *r, uint64_t seed, const void *salt);
uint64_t kpc_rng_next(kpc_rng *r);
/* Uniform in [d/2, d] (d >= 0): the jitter of every backoff. */
int64_t kpc_rng_jitter(kpc_rng *r, int64_t d);

/* Wipe (kms_wipe) a NUL-terminated string, then free it. NULL ok. */
void kpc_wipe_free(char *s);

/* Wipe every string (values and keys) of a parsed tree, then delete it.
 * NULL ok. */
void kpc_json_wipe_delete(cJSON *j);

/* Parse a response body of `len` bytes. NULL when it is not JSON, and
 * also when it holds a raw NUL byte: JSON never contains one (a NUL in a
 * string must be escaped), and cJSON would silently end the string there. */
cJSON *kpc_json_parse(const char *body, size_t len);

/* Print `root` (compact) into a buffer sized for the worst case of `payload`
 * bytes of strings (every byte escaped as \u00XX), so cJSON never
 * reallocates and leaves no unwiped copy. *body is malloc'ed; wipe it
 * (kms_wipe over *body_len) before freeing. */
kms_status kpc_json_print_wiped(cJSON *root, size_t payload, char **body, size_t *body_len,
                                kms_error *err);

/* Put `prefix` (the plugin's name, "hashicorp_vault: ") in front of err's
 * message, truncating its end if needed, when st is not KMS_OK; returns st.
 * Messages are written without the plugin's name and get it here, once, on
 * the way out of every slot (the logger does the same for log lines). */
kms_status kpc_error_prefix(kms_status st, kms_error *err, const char *prefix);

/* 1 if s[0..n) is valid UTF-8 (no surrogates, no overlong forms). */
int kpc_utf8_valid(const unsigned char *s, size_t n);

/* The part of `url` after the configured address `addr` (starts with "/"),
 * for messages and logs; `url` itself when it does not start with addr. */
const char *kpc_url_path(const char *addr, const char *url);

/* A whole decimal number in [lo, hi] (an optional '-', digits only, no
 * spaces): 0 and *out set, or -1. */
int kpc_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);

/* A duration as the plugins' settings write it: whole seconds ("30") or
 * Go-style "1h2m3s" / "500ms" (units h, m, s, ms). 0 and *ms set, or -1
 * (also on overflow past INT64_MAX / 4). */
int kpc_parse_duration_ms(const char *s, int64_t *ms);

#endif
