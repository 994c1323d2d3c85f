/*
 * kpc_http.h -- the HTTP client (libcurl) every backend plugin shares.
 *
 * What lives here:
 *   - one kpc_http per instance: a small pool of CURL easy handles (each
 *     keeps its connections alive, so sequential calls reuse one TCP/TLS
 *     connection) guarded by a mutex, plus a CURLSH sharing DNS and TLS
 *     sessions between them;
 *   - TLS: verification on (unless skip_verify), TLS >= 1.2, CA file/dir, a
 *     TLS server name (via CURLOPT_CONNECT_TO: the URL names the server
 *     name, the connection goes to the configured host), a client
 *     certificate on every request when configured, and no Common Name
 *     fallback (a certificate without subjectAltName matches nothing);
 *   - limits: connect timeout, one deadline for the whole plugin call (all
 *     requests, retries and waits included), response size cap;
 *   - proxies: chosen per request by kpc_proxy.c (loopback never proxied,
 *     NO_PROXY honoured); libcurl's own reading of the proxy variables is
 *     off;
 *   - headers: the request's own list (the caller's credentials and
 *     protocol headers; wiped before they are freed), a Content-Type;
 *   - a per-exchange hook for extra curl options (AWS: CURLOPT_AWS_SIGV4 and
 *     CURLOPT_USERPWD), called after every curl_easy_reset;
 *   - retries: connection errors, timeouts and the retryable answers (by
 *     default 412, 429, 5xx except 501; a request may bring its own
 *     classifier, e.g. AWS's 400 ThrottlingException), with jittered
 *     exponential backoff, Retry-After honoured, at most max_retries and
 *     never past the deadline; never for TLS failures;
 *   - one redirect (301/302/303/307/308) followed here, same method and
 *     body; https -> http refused; the headers go to a different
 *     scheme+host+port only if redirect_allowed_hosts lists it (otherwise
 *     the redirect is refused and nothing is sent there);
 *   - health: every exchange records whether the backend answered
 *     (reachable), and a request that checks credentials (auth_verdict)
 *     records whether they were accepted (authenticated): the plugins'
 *     health reads kpc_http_health() instead of keeping its own.
 * Messages name the server and the variables to check through the words in
 * kpc_http_config (e.g. "Vault", "HCP_VAULT_ADDR").
 * curl_global_init runs once (pthread_once); curl_global_cleanup is never
 * called because the host may use libcurl too.
 *
 * Thread-safety: kpc_http_perform may be called concurrently from any
 * number of threads on one kpc_http; new/free must not race with it.
 * Neither the headers nor the body ever appear in a log line or message.
 */
#ifndef KPC_HTTP_H
#define KPC_HTTP_H

#include "kms_plugin.h"
#include "kpc_common.h"
#include "kpc_log.h"
#include "kpc_proxy.h"

#include <stddef.h>
#include <stdint.h>

/* What the client needs from the plugin's configuration. Every pointer is
 * borrowed and must outlive the client. */
typedef struct kpc_http_config {
  const char *addr; /* base URL of the backend (messages, TLS server name) */
  int64_t timeout_ms;         /* one plugin call, all retries included */
  int64_t connect_timeout_ms;
  int max_retries;
  size_t max_response_bytes;
  unsigned max_idle_connections; /* 0: 1 */
  int skip_verify;
  const char *ca_file, *ca_path, *tls_server_name; /* NULL: unset */
  const char *client_cert, *client_key;            /* both or neither */
  kpc_proxy_config proxy;
  char *const *redirect_allowed_hosts; /* "host:port", lower case */
  size_t n_redirect_allowed_hosts;
  /* Words for messages (literals): the server ("Vault"), the variable
   * naming its address ("HCP_VAULT_ADDR"), the timeout ("VAULT_CLIENT_TIMEOUT"),
   * the TLS variables to check ("VAULT_CACERT, VAULT_TLS_SERVER_NAME") and
   * the client certificate ("HCP_VAULT_CLIENT_CERT"). */
  const char *server_word, *addr_var, *timeout_var, *tls_vars, *client_cert_var;
} kpc_http_config;

typedef struct kpc_http kpc_http;

/* `cfg`, `lg` and `clock` (NULL: CLOCK_MONOTONIC) are borrowed and must
 * outlive the client. */
kms_status kpc_http_new(const kpc_http_config *cfg, const kpc_logger *lg, const kpc_clock *clock,
                        kpc_http **out, kms_error *err);
void kpc_http_free(kpc_http *h);

/* Abort every request in flight on h (libcurl's progress callback, checked
 * at least about once a second, and the waits between retries wake at once)
 * and make every later one fail at once with KMS_UNAVAILABLE. For destroy():
 * stops background work without waiting out the timeout. Irreversible.
 * Thread-safe (may race with kpc_http_perform). */
void kpc_http_cancel(kpc_http *h);

/* Backoff parameters (defaults 100 ms doubling up to 2 s, each delay drawn
 * uniformly from [d/2, d]). For tests. */
void kpc_http_set_backoff(kpc_http *h, long base_ms, long max_ms);

/* now + timeout_ms on the client's clock: the one deadline of a plugin
 * call. Thread-safe. */
int64_t kpc_http_deadline(const kpc_http *h);

typedef struct kpc_http_response {
  long status;  /* final HTTP status */
  char *body;   /* NUL-terminated; wiped by kpc_http_response_clear */
  size_t len;
  size_t cap;
  int attempts; /* requests sent, redirects not counted */
} kpc_http_response;

/* One extra header; the value may be a credential (it is wiped). */
typedef struct kpc_header {
  const char *name, *value;
} kpc_header;

typedef struct kpc_http_request {
  const char *op;     /* "read", "write", ... (messages only) */
  const char *method; /* "GET", "POST", "DELETE" */
  const char *url;    /* absolute */
  const kpc_header *headers; /* n_headers of them; NULL values skipped */
  size_t n_headers;
  const char *content_type; /* with a body; NULL: application/json */
  const char *body;         /* NULL for none; borrowed, not copied */
  size_t body_len;
  /* End of the plugin call this request belongs to, on the client's clock
   * (kpc_http_deadline()): every retry and wait of this request, and every
   * other request of the same call (login, credentials, ...), share it.
   * 0: a new budget of timeout_ms from now. */
  int64_t deadline_ms;
  /* Called for every exchange (attempt or redirect) after the client set
   * its own options, with the CURL easy handle: extra options (signing).
   * Non-OK aborts the request with that status (err filled). NULL: none. */
  kms_status (*setup)(void *ctx, void *curl, kms_error *err);
  void *setup_ctx;
  /* Is this HTTP answer worth retrying? NULL: kpc_http_retryable_status. */
  int (*retryable)(void *ctx, const kpc_http_response *resp);
  void *retryable_ctx;
  /* Does this request prove or disprove the credentials it carries? NULL:
   * it does not (health's `authenticated` is left alone). Otherwise called
   * with the final answer: 1 accepted, 0 refused, -1 cannot tell (the
   * server did not get as far as checking, e.g. sealed or throttling). */
  int (*auth_verdict)(long status, const char *body, size_t len);
} kpc_http_request;

/* The usual verdict of a request carrying a token: 401/403 refused; 412,
 * 429, 5xx cannot tell; any other answer (2xx, 404, 400, ...) accepted,
 * since the server checks the token before the path. */
int kpc_http_auth_by_status(long status, const char *body, size_t len);

/* The last observations, -1 unknown (nothing observed yet): reachable is 1
 * when the last exchange got an HTTP answer (any status), 0 when it failed
 * in transport (refused, reset, timeout, TLS); authenticated is the last
 * verdict of a request with auth_verdict (or kpc_http_note_auth).
 * Thread-safe (relaxed atomics: each value is a last observation). */
void kpc_http_health(const kpc_http *h, int *reachable, int *authenticated);

/* Record a verdict on the credentials reached without an exchange on h
 * (AWS: the credential chain found none, or STS refused them).
 * Thread-safe. */
void kpc_http_note_auth(kpc_http *h, int authenticated);

/* The default classifier: 412, 429, 5xx except 501. */
int kpc_http_retryable_status(long status);

/*
 * Send the request (with retries and at most one redirect). KMS_OK means an
 * HTTP answer arrived (resp->status may still be 4xx/5xx: the caller maps
 * it; a retryable answer is returned once the retries are spent).
 * Otherwise:
 *   KMS_UNAVAILABLE  connection refused/reset, timeout, TLS failure
 *                    (including certificate verification), refused redirect;
 *   KMS_INTERNAL     response larger than max_response_bytes, other curl errors;
 *   KMS_NO_MEMORY;   or the setup hook's status.
 * resp is always initialised; release it with kpc_http_response_clear.
 */
kms_status kpc_http_perform(kpc_http *h, const kpc_http_request *req, kpc_http_response *resp,
                            kms_error *err);
void kpc_http_response_clear(kpc_http_response *resp);

#endif
