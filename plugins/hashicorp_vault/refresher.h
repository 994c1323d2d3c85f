/*
 * refresher.h -- the hashicorp_vault plugin's use of the shared background
 * refresher (plugins/common/kpc_refresher.h, setting `background_refresh`):
 * the Vault-specific pieces are the token's renewal (vault_auth_renew_due_ms,
 * vault_auth_token) and the HTTP client to cancel on stop; everything else
 * (refresh points, backoff, logging once per outage) is kpc_refresher's.
 *
 * Thread-safety: as kpc_refresher.h: start from create(), stop from
 * destroy(), settle from any thread while it runs.
 */
#ifndef VAULT_REFRESHER_H
#define VAULT_REFRESHER_H

#include "auth.h"
#include "http.h"
#include "kms_plugin.h"
#include "kpc_cache.h"
#include "kpc_log.h"
#include "kpc_refresher.h"

#include <stdint.h>

#define VAULT_REFRESH_LO_PM KPC_REFRESH_LO_PM
#define VAULT_REFRESH_HI_PM KPC_REFRESH_HI_PM

typedef struct vault_refresher vault_refresher; /* kpc_refresher + Vault's hooks' context */

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

/* kpc_refresher_start with Vault's token renewal and cancel. The deps
 * struct itself may be temporary; what it points to must outlive stop.
 * Thread-safety: from create() only. */
kms_status vault_refresher_start(const vault_refresher_deps *deps, vault_refresher **out,
                                 kms_error *err);

/* kpc_refresher_stop. Thread-safety: from destroy() only. */
void vault_refresher_stop(vault_refresher *r);

/* kpc_refresher_settle. Thread-safety: any thread, while it runs. */
int vault_refresher_settle(vault_refresher *r, int64_t timeout_ms);

#endif
