/*
 * refresher.h -- the optional background refresher (setting
 * `background_refresh`): one thread per instance, owned by the plugin, that
 * re-reads cached secrets before they expire and keeps the login token
 * renewed, so that reads keep being answered from the cache and never wait
 * for Vault.
 *
 * What it does, each time it wakes:
 *   - credentials: when the auth provider's token is due for renewal
 *     (vault_auth_renew_due_ms), it asks for the token (vault_auth_token),
 *     which renews it (or logs in again) exactly as a request would;
 *   - secrets: it takes the cache's due list (kpc_cache_due: values still
 *     fresh and past their refresh point, a random point between 75% and 90%
 *     of the TTL drawn per entry, so secrets and gateway replicas spread
 *     out) and re-reads each with kpc_cache_refresh_key, i.e. through the
 *     same fetch as reads: single-flight, token, 403 re-login, retries and
 *     the cache update. A failure keeps the cached value (it is served until
 *     it expires; then the read path's stale-if-error rules apply) and moves
 *     that secret's next attempt later; Vault unavailable ends the round and
 *     backs off (doubling, jittered, up to 60 s). NOT_FOUND/PERMISSION_DENIED
 *     evict, as on a read. A failing round is logged once per outage (a
 *     warning naming the first failure, never a value or token), the
 *     recovery once (info).
 * It sleeps on a condition variable with a timed wait until the next refresh
 * point, the token's renewal time or at most ttl/10 (at most 60 s: that is
 * how new entries are noticed), so stopping it never waits for a sleep.
 *
 * Not started with HCP_VAULT_REFRESH_INTERVAL=0 (nothing is cached) or
 * access_mode write_only (nothing is read): plugin.c decides.
 *
 * Thread-safety: start and stop run from create/destroy (never concurrently
 * with each other or with other calls on the instance). The thread itself
 * only uses thread-safe interfaces (cache, auth, http, logger) and holds its
 * own mutex only around its sleep: never while fetching or logging.
 */
#ifndef VAULT_REFRESHER_H
#define VAULT_REFRESHER_H

#include "auth.h"
#include "kpc_cache.h"
#include "http.h"
#include "kms_plugin.h"
#include "kpc_log.h"

#include <stdint.h>

/* Refresh points, permille of the TTL (the cache draws one per entry). */
#define VAULT_REFRESH_LO_PM 750
#define VAULT_REFRESH_HI_PM 900

typedef struct vault_refresher vault_refresher;

/* Everything the thread uses; borrowed, must outlive vault_refresher_stop. */
typedef struct vault_refresher_deps {
  kpc_cache *cache;         /* created with VAULT_REFRESH_LO_PM/HI_PM */
  kpc_cache_fetch_fn fetch; /* the read path's fetch (plugin.c) */
  void *fetch_ctx;
  vault_auth *auth;
  vault_http *http; /* cancelled by vault_refresher_stop */
  const kpc_logger *lg;
  int64_t ttl_ms; /* the cache TTL (> 0) */
  const kpc_clock *clock; /* the instance's clock (NULL: CLOCK_MONOTONIC) */
} vault_refresher_deps;

/* Start the thread. KMS_INTERNAL (with the reason) if it cannot be created.
 * Thread-safety: from create() only. */
kms_status vault_refresher_start(const vault_refresher_deps *deps, vault_refresher **out,
                                 kms_error *err);

/* Stop the thread and free. For destroy(): wakes the thread, cancels the
 * HTTP client (vault_http_cancel: a request in flight is aborted within
 * about a second, and every later request on that client fails at once),
 * and joins the thread before returning. NULL is a no-op.
 * Thread-safety: from destroy() only (nothing else runs on the instance). */
void vault_refresher_stop(vault_refresher *r);

/* For tests that drive the refresher on an injected clock (the thread's
 * timed wait is in real time and cannot follow it): after advancing the
 * clock, wake the thread and wait (at most timeout_ms of real time) until
 * it has done everything due at the clock's current time and sleeps again.
 * 0 when settled, -1 on timeout or when stopped.
 * Thread-safety: any thread, while the refresher runs. */
int vault_refresher_settle(vault_refresher *r, int64_t timeout_ms);

#endif
