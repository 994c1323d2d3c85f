/*
 * kpc_bgfetch.h -- the background fetcher behind KMS_CALL_NONBLOCKING
 * reads, shared by the backend plugins: a read that must not block answers
 * from the cache (kpc_cache_peek) and, on a miss or a stale serve, queues
 * the key here; one thread per instance, started on the first queued key
 * and stopped by destroy, fetches it through kpc_cache_get (the read path's
 * single-flight, so a concurrent blocking read of the key shares the fetch)
 * and, when a value lands that the cache did not hold, calls `landed` so
 * the plugin can notify the host (it asked for a value it has not got yet).
 *
 * The queue holds a key once (a second miss of a queued key adds nothing),
 * and a key stays queued while it is fetched. A failed fetch other than
 * NOT_FOUND is logged as a warning (the error's message: never a value).
 *
 * Thread-safety: kpc_bgfetch_new/free from create/destroy only;
 * kpc_bgfetch_enqueue from any thread. The thread calls fetch and landed
 * with no lock of its own held (they must be thread-safe); its mutex guards
 * only the queue and the thread's start.
 */
#ifndef KPC_BGFETCH_H
#define KPC_BGFETCH_H

#include "kms_plugin.h"
#include "kpc_cache.h"
#include "kpc_log.h"

#include <stdint.h>

typedef struct kpc_bgfetch kpc_bgfetch;

/* Borrowed; everything must outlive kpc_bgfetch_free. */
typedef struct kpc_bgfetch_deps {
  kpc_cache *cache;
  kpc_cache_fetch_fn fetch; /* the read path's fetch, with a call budget of its own */
  void *fetch_ctx;
  /* A fetch stored a value the cache did not serve before (may be NULL). */
  void (*landed)(void *ctx, const char *key, int64_t version);
  void *landed_ctx;
  /* Abort requests in flight for good (free calls it before joining). */
  void (*cancel)(void *ctx);
  void *cancel_ctx;
  const kpc_logger *lg;
} kpc_bgfetch_deps;

/* NULL on out of memory. Starts no thread. Thread-safety: create() only. */
kpc_bgfetch *kpc_bgfetch_new(const kpc_bgfetch_deps *deps);

/* Queue a fetch of `key` (once), starting the thread on first use. Out of
 * memory or no thread: nothing is queued (the next read tries again).
 * Never blocks on the network. Thread-safety: any thread. */
void kpc_bgfetch_enqueue(kpc_bgfetch *b, const char *key);

/* One read of cache key `key` as a plugin's read slot does it, by `flags`
 * (KMS_CALL_*): NONBLOCKING answers from the cache at once (kpc_cache_peek)
 * and queues a background fetch on `bg` (may be NULL) on a miss or a stale
 * serve, UNAVAILABLE saying so when nothing can be served; BYPASS_CACHE
 * re-reads (single-flight still) and hands the fetched value to `into`;
 * otherwise kpc_cache_get_into (a fresh hit copied under the shared lock,
 * allocating nothing). *cflags gets the cache's KPC_CACHE_* flags, `why`
 * the error (or, on a stale serve, the failure behind it). Shared by the
 * plugins so that their read paths cannot drift apart.
 * Thread-safety: any thread. */
kms_status kpc_read_cached(kpc_cache *c, kpc_bgfetch *bg, const char *key, uint32_t flags,
                           kpc_cache_fetch_fn fetch, void *fetch_ctx, kpc_cache_into_fn into,
                           void *into_ctx, unsigned *cflags, kms_error *why);

/* Stop (cancel, join) and free. NULL is a no-op. Thread-safety: destroy()
 * only, before the cache and the HTTP client are freed. */
void kpc_bgfetch_free(kpc_bgfetch *b);

#endif
