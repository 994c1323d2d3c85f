/*
 * kpc_refresher.h -- the optional background refresher (setting
 * `background_refresh` in both backend plugins): one thread per instance,
 * owned by the plugin, that re-reads cached secrets before they expire and
 * keeps the credentials renewed, so that reads keep being answered from the
 * cache and never wait for the backend. Shared by hashicorp_vault and
 * aws_secret_manager (the backend comes in as callbacks).
 *
 * What it does, each time it wakes:
 *   - credentials (optional hooks): when renew_due says they are due, it
 *     calls renew, which renews them (or logs in again) exactly as a request
 *     would; while renewals fail it retries with a doubling gap (1 s..60 s);
 *   - secrets: it takes the cache's due list (kpc_cache_due: values still
 *     fresh and past their refresh point, a random point between 75% and 90%
 *     of the TTL drawn per entry, so secrets and gateway replicas spread
 *     out) and re-reads each with kpc_cache_refresh_key, i.e. through the
 *     same fetch as reads: single-flight, credentials, retries and the cache
 *     update. A failure keeps the cached value (it is served until it
 *     expires; then the read path's stale-if-error rules apply) and moves
 *     that secret's next attempt later; the backend unavailable ends the
 *     round and backs off (doubling, jittered, up to 60 s). NOT_FOUND /
 *     PERMISSION_DENIED evict, as on a read (and the cache's change observer
 *     reports a disappearance; a new version is reported the same way). A
 *     failing round is logged once per outage (a warning naming the first
 *     failure, never a value or a credential), the recovery once (info).
 * It sleeps on a condition variable with a timed wait until the next refresh
 * point, the credentials' renewal time or at most ttl/10 (at most 60 s: that
 * is how new entries are noticed), so stopping it never waits for a sleep.
 *
 * The plugin decides whether to start it (not with a TTL of 0: nothing is
 * cached; not with access_mode write_only: nothing is read).
 *
 * Thread-safety: start and stop run from create/destroy (never concurrently
 * with each other or with other calls on the instance). The thread itself
 * only uses thread-safe interfaces (cache, the callbacks, logger) and holds
 * its own mutex only around its sleep: never while fetching or logging.
 */
#ifndef KPC_REFRESHER_H
#define KPC_REFRESHER_H

#include "kms_plugin.h"
#include "kpc_cache.h"
#include "kpc_common.h"
#include "kpc_log.h"

#include <stdint.h>

/* Refresh points, permille of the TTL (the cache draws one per entry). */
#define KPC_REFRESH_LO_PM 750
#define KPC_REFRESH_HI_PM 900

typedef struct kpc_refresher kpc_refresher;

/* Everything the thread uses; borrowed, must outlive kpc_refresher_stop.
 * Every callback is called from the refresher's thread with no lock of the
 * refresher held, and must be thread-safe. */
typedef struct kpc_refresher_deps {
  kpc_cache *cache;         /* created with KPC_REFRESH_LO_PM/HI_PM */
  kpc_cache_fetch_fn fetch; /* the read path's fetch, with a call budget of its own */
  void *fetch_ctx;
  /* Credentials (both NULL: nothing to renew). renew_due: the clock time at
   * which they should be renewed, 0 if never; renew: renew them now (a
   * failure keeps the current ones and is the provider's to log). */
  int64_t (*renew_due)(void *ctx);
  void (*renew)(void *ctx);
  void *renew_ctx;
  /* Abort requests in flight for good (stop calls it before joining). */
  void (*cancel)(void *ctx);
  void *cancel_ctx;
  const kpc_logger *lg;
  int64_t ttl_ms;          /* the cache TTL (> 0) */
  const kpc_clock *clock;  /* the instance's clock (NULL: CLOCK_MONOTONIC) */
  const char *thread_name; /* at most 15 characters; NULL: "kpc-refresh" */
} kpc_refresher_deps;

/* Start the thread. KMS_INTERNAL (with the reason) if it cannot be created.
 * Thread-safety: from create() only. */
kms_status kpc_refresher_start(const kpc_refresher_deps *deps, kpc_refresher **out,
                               kms_error *err);

/* Stop the thread and free. For destroy(): wakes the thread, calls cancel
 * (a request in flight is aborted within about a second, and every later
 * request on that client fails at once), and joins the thread before
 * returning. NULL is a no-op.
 * Thread-safety: from destroy() only (nothing else runs on the instance). */
void kpc_refresher_stop(kpc_refresher *r);

/* For tests that drive the refresher on an injected clock (the thread's
 * timed wait is in real time and cannot follow it): after advancing the
 * clock, wake the thread and wait (at most timeout_ms of real time) until
 * it has done everything due at the clock's current time and sleeps again.
 * 0 when settled, -1 on timeout or when stopped.
 * Thread-safety: any thread, while the refresher runs. */
int kpc_refresher_settle(kpc_refresher *r, int64_t timeout_ms);

#endif
