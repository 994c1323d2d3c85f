/*
 * http.h -- the plugin's HTTP client (libcurl), shared by every request.
 *
 * What lives here:
 *   - one vault_http per instance: a small pool of CURL easy handles (each
 *     keeps its connections alive, so sequential calls reuse one TCP/TLS
 *     connection) guarded by a mutex, plus a CURLSH sharing DNS and TLS
 *     sessions between them;
 *   - TLS: verification on (unless VAULT_SKIP_VERIFY), TLS >= 1.2, CA
 *     file/dir, VAULT_TLS_SERVER_NAME (via CURLOPT_CONNECT_TO: the URL names
 *     the server name, the connection goes to the configured host), client
 *     certificate on every request when configured;
 *   - limits: connect timeout, one deadline for the whole plugin call (all
 *     requests, retries and waits included), response size cap;
 *   - proxies: chosen per request by proxy.c (loopback never proxied,
 *     NO_PROXY honoured); libcurl's own reading of the proxy variables is
 *     off;
 *   - headers: X-Vault-Request: true, X-Vault-Token, X-Vault-Namespace;
 *   - retries: connection errors, timeouts, 412, 429, 5xx except 501, with
 *     jittered exponential backoff, Retry-After honoured, at most
 *     VAULT_MAX_RETRIES and never past the total timeout; never for
 *     400/403/404/501 or TLS failures;
 *   - one redirect (301/302/303/307/308) followed here, same method and
 *     body; https -> http refused; the token and namespace go to a different
 *     scheme+host+port only if redirect_allowed_hosts lists it (otherwise
 *     the redirect is refused and nothing is sent there).
 * curl_global_init runs once (pthread_once); curl_global_cleanup is never
 * called because the host may use libcurl too.
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
#include "logging.h"

#include <stddef.h>

typedef struct vault_http vault_http;

/* `cfg`, `lg` and `clock` (NULL: CLOCK_MONOTONIC) are borrowed and must
 * outlive the client. */
kms_status vault_http_new(const vault_config *cfg, const vault_logger *lg,
                          const vault_clock *clock, vault_http **out, kms_error *err);
void vault_http_free(vault_http *h);

/* Abort every request in flight on h (libcurl's progress callback, checked
 * at least about once a second, and the waits between retries wake at once)
 * and make every later one fail at once with KMS_UNAVAILABLE. For destroy():
 * stops the background refresher without waiting out VAULT_CLIENT_TIMEOUT.
 * Irreversible. Thread-safe (may race with vault_http_perform). */
void vault_http_cancel(vault_http *h);

/* Backoff parameters (defaults 100 ms doubling up to 2 s, each delay drawn
 * uniformly from [d/2, d]). For tests. */
void vault_http_set_backoff(vault_http *h, long base_ms, long max_ms);

typedef struct vault_http_request {
  const char *op;        /* "read", "write", ... (messages only) */
  const char *method;    /* "GET", "POST", "DELETE" */
  const char *url;       /* absolute */
  const char *token;     /* X-Vault-Token, or NULL */
  const char *namespace_; /* X-Vault-Namespace, or NULL */
  const char *body;      /* NULL for none; borrowed, not copied */
  size_t body_len;
  /* End of the plugin call this request belongs to, on the client's clock
   * (vault_http_deadline()): every retry and wait of this request, and every
   * other request of the same call (login, lookup, ...), share it. 0: a new
   * budget of VAULT_CLIENT_TIMEOUT from now. */
  int64_t deadline_ms;
} vault_http_request;

/* now + VAULT_CLIENT_TIMEOUT on the client's clock: the one deadline of a
 * plugin call. Thread-safe. */
int64_t vault_http_deadline(const vault_http *h);

typedef struct vault_http_response {
  long status;  /* final HTTP status */
  char *body;   /* NUL-terminated; wiped by vault_http_response_clear */
  size_t len;
  size_t cap;
  int attempts; /* requests sent, redirects not counted */
} vault_http_response;

/*
 * Send the request (with retries and at most one redirect). KMS_OK means an
 * HTTP answer arrived (resp->status may still be 4xx/5xx: the caller maps it
 * with kv2_map_status; a retryable status is returned once the retries are
 * spent). Otherwise:
 *   KMS_UNAVAILABLE  connection refused/reset, timeout, TLS failure
 *                    (including certificate verification), refused redirect;
 *   KMS_INTERNAL     response larger than max_response_bytes, other curl errors;
 *   KMS_NO_MEMORY.
 * resp is always initialised; release it with vault_http_response_clear.
 */
kms_status vault_http_perform(vault_http *h, const vault_http_request *req,
                              vault_http_response *resp, kms_error *err);
void vault_http_response_clear(vault_http_response *resp);

#endif
