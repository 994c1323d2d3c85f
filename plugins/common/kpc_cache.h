/*
 * kpc_cache.h -- per-secret cache shared by the backend plugins: TTL,
 * invalidation, stale-if-error, single-flight, negative caching, a change
 * observer and background refresh points. Pure logic (no HTTP, no logging): the caller passes a fetch
 * callback and, for tests, a clock.
 *
 * Semantics of kpc_cache_get(key):
 *   - fresh entry (now < fetched + ttl): copy of the value, no fetch;
 *   - another thread is already fetching key: wait for it and take its
 *     result (single-flight: N concurrent misses -> one fetch);
 *   - otherwise this thread fetches (no cache lock held during the fetch):
 *       OK            -> stored (unless ttl == 0 or a write/invalidate raced
 *                        the fetch), returned;
 *       UNAVAILABLE   -> if an older value exists and now < expiry +
 *                        stale_if_error, it is returned with
 *                        KPC_CACHE_STALE; further reads of that key serve it
 *                        without fetching for `stale_retry` ms. The first stale
 *                        serve of an outage also sets KPC_CACHE_WARN (the
 *                        caller logs once); the next successful fetch ends the
 *                        outage.
 *       NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED -> the entry is evicted
 *                        (wiped) and the error returned: never masked;
 *       anything else -> error returned, entry kept but not served.
 *   - force (refresh()): skip the freshness check, still single-flight.
 * Every value is wiped (OPENSSL_cleanse) before its memory is freed.
 *
 * Background refresh (kpc_refresher.c): with refresh_hi_pm set, every stored
 * value gets a refresh point at a random fraction in [refresh_lo_pm,
 * refresh_hi_pm] permille of its TTL, drawn per entry. kpc_cache_due()
 * lists the values past their point; kpc_cache_refresh_key() re-reads one
 * through the same single-flight fetch: success stores the new value (new
 * TTL, new point); NOT_FOUND / PERMISSION_DENIED evict it, as on a read;
 * any other failure keeps the value untouched (still served until it
 * expires, then the stale-if-error rules above apply) and moves its refresh
 * point `retry_ms` later. A value past its TTL but still held (inside its
 * stale window) is due too: a refresher that missed the window (a stalled
 * process, a suspended machine) re-reads it at its next round instead of
 * leaving it to reads, so background re-reads and change notifications
 * never stop for a secret the cache holds.
 *
 * Memory: values whose stale window has passed are dropped by an amortised
 * sweep (a few buckets per exclusive-lock operation), by kpc_cache_keys
 * and by kpc_cache_due, so secrets that are never read again do not stay.
 *
 * Thread-safety: all functions except new/free may be called concurrently;
 * fresh hits take one stripe (their CPU's) of a striped read lock, so they
 * neither serialise nor share a cache line with hits on other CPUs, and
 * copy under it; copies handed out by a fetch are made outside the exclusive lock
 * (except a stale value served right after a failed fetch: rare).
 * The fetch callback runs without any cache lock held (it may block, log,
 * call the cache for other keys).
 */
#ifndef KPC_CACHE_H
#define KPC_CACHE_H

#include "kpc_common.h"
#include "kms_plugin.h"

#include <stddef.h>
#include <stdint.h>

typedef struct kpc_cache kpc_cache;

/* A value: `data` is malloc'ed, NUL-terminated (len excludes the NUL). */
typedef struct kpc_cache_value {
  char *data;
  size_t len;
  int64_t version;
} kpc_cache_value;

/* Wipe and free v->data; zero the struct. */
void kpc_cache_value_clear(kpc_cache_value *v);

/* Fetch `key` from the backend. On KMS_OK fill *out (ownership passes to the
 * cache); otherwise fill err and leave *out empty. */
typedef kms_status (*kpc_cache_fetch_fn)(void *ctx, const char *key, kpc_cache_value *out,
                                           kms_error *err);

typedef struct kpc_cache_options {
  int64_t ttl_ms;         /* 0: nothing is stored (single-flight still applies) */
  int64_t stale_ms;       /* stale-if-error window after expiry; 0 disables */
  int64_t stale_retry_ms; /* while serving stale, fetch again at most this often */
  kpc_clock clock;      /* zeroed: CLOCK_MONOTONIC_COARSE (see kpc_cache.c) */
  /* Background refresh points, permille of the TTL (e.g. 750..900); both 0:
   * no refresh points (kpc_cache_due lists nothing). */
  int refresh_lo_pm, refresh_hi_pm;
  uint64_t seed; /* jitter seed; 0: from the clock, pid and address */
  /* Negative caching (setting neg_ttl): a fetch answering NOT_FOUND is
   * remembered this long and later reads of the key get NOT_FOUND (with
   * KPC_CACHE_NEGATIVE, the first answer's message) without a fetch, until
   * a put/invalidate of the key. 0 disables. */
  int64_t neg_ttl_ms;
  /* Change observer: called after a fetch (of any mode) found that a value
   * the cache held has a new version (KPC_CHANGE_UPDATED) or is gone
   * (KPC_CHANGE_DELETED: NOT_FOUND). Called with no cache lock held, from
   * the fetching thread. NULL: nobody is told. */
  void (*changed)(void *ctx, const char *key, int kind, int64_t version);
  void *changed_ctx;
} kpc_cache_options;

#define KPC_CHANGE_UPDATED 1
#define KPC_CHANGE_DELETED 2

/* Result flags of kpc_cache_get. */
#define KPC_CACHE_HIT 0x1u   /* served without fetching */
#define KPC_CACHE_STALE 0x2u /* stale value served after a failed fetch */
#define KPC_CACHE_WARN 0x4u  /* first stale serve of this outage: log it */
#define KPC_CACHE_NEGATIVE 0x8u /* NOT_FOUND answered from a cached "not found" */
#define KPC_CACHE_MISS 0x10u    /* kpc_cache_peek: nothing servable (fetch it elsewhere) */

kpc_cache *kpc_cache_new(const kpc_cache_options *opt);
/* Wipes every value. No call may be in progress. */
void kpc_cache_free(kpc_cache *c);

/* See the top of this file. On KMS_OK *out is a new copy owned by the
 * caller (kpc_cache_value_clear). `flags` may be NULL. On a stale serve
 * err still describes the failure that caused it. */
kms_status kpc_cache_get(kpc_cache *c, const char *key, int force, kpc_cache_fetch_fn fetch,
                           void *fetch_ctx, kpc_cache_value *out, unsigned *flags,
                           kms_error *err);

/* Never fetch (KMS_CALL_NONBLOCKING): a fresh value (KPC_CACHE_HIT), a
 * value past its TTL but inside its stale window (HIT|STALE), a cached "not
 * found" (KMS_NOT_FOUND, NEGATIVE), or KMS_UNAVAILABLE with KPC_CACHE_MISS
 * when there is nothing to serve. *flags also gets KPC_CACHE_MISS for a
 * stale serve (the caller should start a fetch). `out` may be NULL with
 * `into` set: then the value is copied into into_buf (into_size bytes) by
 * `into` under the shared lock, allocating nothing. */
typedef kms_status (*kpc_cache_into_fn)(void *ctx, const kpc_cache_value *v, unsigned flags);
kms_status kpc_cache_peek(kpc_cache *c, const char *key, kpc_cache_value *out,
                            kpc_cache_into_fn into, void *into_ctx, unsigned *flags,
                            kms_error *err);

/* kpc_cache_get whose fresh hit is handed to `into` under the shared lock
 * instead of copied (the buffer read: nothing allocated on a hit). A miss
 * fetches as kpc_cache_get and passes the fetched copy to `into`. */
kms_status kpc_cache_get_into(kpc_cache *c, const char *key, kpc_cache_fetch_fn fetch,
                                void *fetch_ctx, kpc_cache_into_fn into, void *into_ctx,
                                unsigned *flags, kms_error *err);

/* Forget `key` and every key that extends it with '?' or '#' (version pins
 * and field reads of the same secret). */
void kpc_cache_invalidate_all(kpc_cache *c, const char *key);

/* After a successful write: store a copy of `data` as the fresh value
 * (no-op when ttl == 0, beyond invalidating). */
void kpc_cache_put(kpc_cache *c, const char *key, const char *data, size_t len,
                     int64_t version);

/* Forget key (wipes the value). A fetch in flight for it is not stored. */
void kpc_cache_invalidate(kpc_cache *c, const char *key);

/* Snapshot of the keys that hold a value: *keys is a malloc'ed array of
 * malloc'ed strings; free with kpc_cache_keys_free. Also drops values whose
 * stale window has passed. Returns the count (0 with *keys NULL on OOM). */
size_t kpc_cache_keys(kpc_cache *c, char ***keys);
void kpc_cache_keys_free(char **keys, size_t n);

/* Background refresh. Snapshot of the keys whose value is still fresh, not
 * being fetched, and past (or within slack_ms of) its refresh point; free
 * with kpc_cache_keys_free. *next_ms: the earliest refresh point among the
 * others (clock of the cache), 0 if none. Also drops values whose stale
 * window has passed. Returns the count. */
size_t kpc_cache_due(kpc_cache *c, int64_t slack_ms, char ***keys, int64_t *next_ms);

/* Re-read `key` in the background if it is still due (see the top of this
 * file); otherwise do nothing. Returns the fetch's status (KMS_OK when
 * nothing was fetched; *fetched, may be NULL, says whether it was). On a
 * failure err describes it; the cached value is kept unless the backend said
 * NOT_FOUND / PERMISSION_DENIED. */
kms_status kpc_cache_refresh_key(kpc_cache *c, const char *key, kpc_cache_fetch_fn fetch,
                                   void *fetch_ctx, int64_t retry_ms, int *fetched,
                                   kms_error *err);

/* Count one read's cache outcome (`flags` from kpc_cache_get/_peek/_get_into,
 * `st` its status) in a plugin's health counters: negative hit, hit, or
 * miss (a fetch, or a NONBLOCKING miss), plus a stale serve. `stats` is a
 * kms_stats (kms_plugin_util.h). Thread-safe (the counters are atomic). */
struct kms_stats;
void kpc_cache_count_read(struct kms_stats *stats, kms_status st, unsigned flags);

/* For tests: number of threads currently waiting on key's in-flight fetch,
 * and the number of stored values. */
size_t kpc_cache_waiters(kpc_cache *c, const char *key);
size_t kpc_cache_size(kpc_cache *c);

#endif
