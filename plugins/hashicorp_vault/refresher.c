/*
 * refresher.c -- Vault's hooks for the shared background refresher
 * (kpc_refresher.c): renew the login token when it is due, cancel the HTTP
 * client on stop.
 */
#include "refresher.h"

#include "kms_plugin_util.h"

#include <stdlib.h>

struct vault_refresher {
  kpc_refresher *r;
  vault_auth *auth;
  vault_http *http;
};

/* Thread-safety: the refresher's thread; vault_auth is thread-safe. */
static int64_t renew_due(void *ctx) {
  return vault_auth_renew_due_ms(((vault_refresher *)ctx)->auth);
}

/* Asking for the token renews it (or logs in again) exactly as a request
 * would; a failure keeps the current token and is logged by the auth
 * provider. Thread-safety: the refresher's thread. */
static void renew(void *ctx) {
  vault_refresher *v = ctx;
  char *token = NULL;
  uint64_t gen = 0;
  kms_error e;
  kms_error_clear(&e);
  if (vault_auth_token(v->auth, vault_http_deadline(v->http), &token, &gen, &e) == KMS_OK)
    vault_auth_token_free(token);
}

static void cancel(void *ctx) { vault_http_cancel(ctx); }

kms_status vault_refresher_start(const vault_refresher_deps *d, vault_refresher **out,
                                 kms_error *err) {
  *out = NULL;
  vault_refresher *v = calloc(1, sizeof *v);
  if (!v) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  v->auth = d->auth;
  v->http = d->http;
  kpc_refresher_deps k = {.cache = d->cache, .fetch = d->fetch, .fetch_ctx = d->fetch_ctx,
                          .renew_due = renew_due, .renew = renew, .renew_ctx = v,
                          .cancel = cancel, .cancel_ctx = d->http, .lg = d->lg,
                          .ttl_ms = d->ttl_ms, .clock = d->clock, .thread_name = "vault-refresh"};
  kms_status st = kpc_refresher_start(&k, &v->r, err);
  if (st != KMS_OK) {
    free(v);
    return st;
  }
  *out = v;
  return KMS_OK;
}

void vault_refresher_stop(vault_refresher *v) {
  if (!v) return;
  kpc_refresher_stop(v->r);
  free(v);
}

int vault_refresher_settle(vault_refresher *v, int64_t timeout_ms) {
  return kpc_refresher_settle(v->r, timeout_ms);
}
