/*
 * common.h -- the small helpers every part of the Vault plugin shares, each
 * written once: the injectable monotonic clock, a xorshift generator with
 * jitter, wiping frees (strings and parsed JSON trees), and the request
 * path of a URL for messages.
 *
 * Thread-safety: every function is thread-safe as long as its arguments are
 * not shared (a vault_rng belongs to one thread or is guarded by its
 * owner's lock; a vault_clock's now_ms must itself be thread-safe).
 */
#ifndef VAULT_COMMON_H
#define VAULT_COMMON_H

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
typedef struct vault_clock {
  int64_t (*now_ms)(void *ctx);
  void *ctx;
  void (*sleep_ms)(void *ctx, int64_t ms);
} vault_clock;

int64_t vault_clock_now(const vault_clock *c);

/* Waits are in real time (a condition variable cannot follow an injected
 * clock): vault_cond_init makes a CLOCK_MONOTONIC condition variable, and
 * vault_timespec_in the absolute time `ms` (>= 0) from now for
 * pthread_cond_timedwait on it. */
void vault_cond_init(pthread_cond_t *cv);
void vault_timespec_in(int64_t ms, struct timespec *ts);

/* xorshift64 state: never 0. */
typedef struct vault_rng {
  uint64_t s;
} vault_rng;

/* Seed from `seed`, or (seed == 0) from the clock, the pid and `salt`'s
 * address, so that instances and processes started together differ. */
void vault_rng_seed(vault_rng *r, uint64_t seed, const void *salt);
uint64_t vault_rng_next(vault_rng *r);
/* Uniform in [d/2, d] (d >= 0): the jitter of every backoff. */
int64_t vault_rng_jitter(vault_rng *r, int64_t d);

/* Wipe (kms_wipe) a NUL-terminated string, then free it. NULL ok. */
void vault_wipe_free(char *s);

/* Wipe every string (values and keys) of a parsed tree, then delete it.
 * NULL ok. */
void vault_json_wipe_delete(cJSON *j);

/* Parse a response body of `len` bytes. NULL when it is not JSON, and
 * also when it holds a raw NUL byte: JSON never contains one (a NUL in a
 * string must be escaped), and cJSON would silently end the string there. */
cJSON *vault_json_parse(const char *body, size_t len);

/* Percent-encode each '/'-separated segment of `s` (RFC 3986 unreserved
 * characters kept, everything else %XX). malloc'ed, or NULL on
 * out-of-memory. (KV paths and auth mount paths alike.) */
char *vault_encode_path(const char *s);
/* The same into `out`, which holds at least 3 * strlen(s) + 1 bytes (no
 * allocation: the buffer read builds its cache key on the stack). Returns
 * the encoded length. */
size_t vault_encode_path_to(const char *s, char *out);

/* Vault's `errors` array (every Vault API answer may carry one) joined
 * with "; " into buf, one printable line (empty if none). */
void vault_errors_text(const char *body, size_t len, char *buf, size_t size);

/* The part of `url` after the configured address `addr` (starts with "/"),
 * for messages and logs; `url` itself when it does not start with addr. */
const char *vault_url_path(const char *addr, const char *url);

#endif
