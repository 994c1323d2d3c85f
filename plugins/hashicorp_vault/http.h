/*
 * http.h -- the Vault plugin's requests over the shared HTTP client
 * (plugins/common/kpc_http.h: pool, TLS, proxies, deadline, retries,
 * redirect rules, size cap). What is Vault's lives here: the client's
 * configuration taken from vault_config with Vault's words for messages
 * (HCP_VAULT_ADDR, VAULT_CLIENT_TIMEOUT, ...), and the headers of every
 * request: X-Vault-Request: true, X-Vault-Token and X-Vault-Namespace (sent
 * to a redirect target only when redirect_allowed_hosts trusts it).
 *
 * Thread-safety: vault_http_perform may be called concurrently from any
 * number of threads on one vault_http; new/free must not race with it.
 * Neither the token nor the body ever appears in a log line or message.
 */
#ifndef VAULT_HTTP_H
#define VAULT_HTTP_H

#include "common.h"
#include "config.h"
#include "kms_plugin.h"
#include "kpc_http.h"
#include "kpc_log.h"

#include <stddef.h>

typedef struct vault_http vault_http;

/* `cfg`, `lg` and `clock` (NULL: CLOCK_MONOTONIC) are borrowed and must
 * outlive the client. */
kms_status vault_http_new(const vault_config *cfg, const kpc_logger *lg, const kpc_clock *clock,
                          vault_http **out, kms_error *err);
void vault_http_free(vault_http *h);

/* kpc_http_cancel, kpc_http_set_backoff and kpc_http_deadline of the
 * underlying client (see kpc_http.h). */
void vault_http_cancel(vault_http *h);
void vault_http_set_backoff(vault_http *h, long base_ms, long max_ms);
int64_t vault_http_deadline(const vault_http *h);

/* Whether a request proves or disproves the credentials it carries: every
 * answer updates health's `authenticated` in vault_http_perform, the one
 * place health is written (reachable is recorded for every request). */
typedef enum vault_cred_check {
  VAULT_CHECK_NONE = 0, /* says nothing about the credentials */
  VAULT_CHECK_TOKEN,    /* the token's own endpoints (lookup-self, renew-self: the default
                           policy allows them): 401/403 refuse it, 412/429/5xx cannot tell,
                           any other answer accepts it */
  VAULT_CHECK_DATA,     /* a KV request with the token: as VAULT_CHECK_TOKEN, except that a
                           403 refuses the token only when Vault says "invalid token" (Vault
                           >= 1.16 adds it for a revoked, expired or unknown token); a bare
                           "permission denied" cannot tell (a path the policy denies gets
                           it too: the auth provider's lookup-self decides) */
  VAULT_CHECK_LOGIN     /* a login: 2xx accepts, a 4xx but 412/429 refuses */
} vault_cred_check;

typedef struct vault_http_request {
  const char *op;         /* "read", "write", ... (messages only) */
  const char *method;     /* "GET", "POST", "DELETE" */
  const char *url;        /* absolute */
  const char *token;      /* X-Vault-Token, or NULL */
  const char *namespace_; /* X-Vault-Namespace, or NULL */
  const char *body;       /* NULL for none; borrowed, not copied */
  size_t body_len;
  int64_t deadline_ms; /* the call's (vault_http_deadline()); 0: a new budget */
  vault_cred_check check; /* what the answer says of the credentials (health) */
} vault_http_request;

/* kpc_http_perform with Vault's headers; the caller maps resp->status with
 * kv2_map_status. Same statuses as kpc_http_perform. Records health (see
 * vault_cred_check). */
kms_status vault_http_perform(vault_http *h, const vault_http_request *req,
                              kpc_http_response *resp, kms_error *err);

/* Health's last observations, -1 unknown: reachable (the last request got
 * an HTTP answer, 1, or failed in transport, 0) and authenticated (the last
 * verdict of a request that checks credentials). Thread-safe. */
void vault_http_health(const vault_http *h, int *reachable, int *authenticated);

#endif
