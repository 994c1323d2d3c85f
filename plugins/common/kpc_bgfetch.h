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

/* Stop (cancel, join) and free. NULL is a no-op. Thread-safety: destroy()
 * only, before the cache and the HTTP client are freed. */
void kpc_bgfetch_free(kpc_bgfetch *b);

#endif
