/*
 * serve.h -- internal interfaces of `kms-host serve`, the LiteLLM-shaped
 * virtual-key HTTP API (not installed).
 *
 * Split by job: serve.c (libmicrohttpd daemon, routing, access log,
 * shutdown), serve_auth.c (the master key, constant-time checks),
 * serve_json.c (request bodies, LiteLLM-shaped responses and errors),
 * serve_keys.c (the /key and /health endpoints) and serve_worker.c (the
 * background delivery worker). Every key change goes through host_key_* and
 * the outbox exactly as the CLI does; only the worker delivers.
 */
#ifndef KMS_HOST_SERVE_H
#define KMS_HOST_SERVE_H

#include <pthread.h>

#include <cjson/cJSON.h>

#include "host.h"

/* ------------------------------------------------------------ serve_json.c */

#define SERVE_BODY_MAX (64u * 1024u) /* request bodies; more is 413 */

/* One response: the HTTP status and a JSON body (NUL-terminated, malloc'ed
 * by cJSON; wiped when freed because it may hold a new key). */
typedef struct serve_reply {
  unsigned status;
  char *body;
} serve_reply;

/* Per-request state, one struct (MHD's *con_cls): the body as it arrives,
 * timing and what the access log says. */
typedef struct serve_req {
  char *body;
  size_t len;
  int too_big;
  uint64_t start_ms;
  const char *route; /* the route pattern for the log: never the raw path */
  unsigned status;
} serve_req;

/* Append an upload chunk; beyond SERVE_BODY_MAX only too_big is set. */
void serve_req_append(serve_req *q, const char *data, size_t n);
void serve_req_free(serve_req *q);

/* Take `json` (consumed) as the reply body with `status`. */
void serve_reply_json(serve_reply *rep, unsigned status, cJSON *json);
/* LiteLLM's error shape: {"error": {"message", "type", "param", "code"}},
 * code = the HTTP status as a string. `message` must hold no secret. */
void serve_reply_error(serve_reply *rep, unsigned status, const char *type, const char *param,
                       const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
/* The reply for a failed host_* call (status mapped: USAGE 400, FAILED with
 * "no ..." 404, CONFIG 500 ...). */
void serve_reply_result(serve_reply *rep, const host_result *r, const char *param);
/* Parse the request body as a JSON object: NULL with a 400 reply in `rep`
 * when it is not one. An empty body is {}. */
cJSON *serve_parse_object(const serve_req *q, serve_reply *rep);
/* A string member, NULL when absent or null; -1 (and a 400 in rep) when it
 * has another type. */
int serve_get_string(const cJSON *o, const char *name, const char **out, serve_reply *rep);
void serve_reply_free(serve_reply *rep);

/* ------------------------------------------------------------ serve_auth.c */

typedef enum serve_caller {
  SERVE_CALLER_NONE = 0, /* no or wrong credentials: 401 */
  SERVE_CALLER_MASTER,   /* general_settings.master_key */
  SERVE_CALLER_VIRTUAL   /* a virtual key this host issued (only /key/info for itself) */
} serve_caller;

/* The master key from general_settings.master_key, resolved (os.environ/
 * through the plugin, as `resolve` does). Kept as its SHA-256 only; the
 * value is wiped. HOST_CONFIG when it is unset, empty or cannot be
 * resolved. */
host_status serve_master_key(const host_config *cfg, kms_client *client, unsigned char out[32],
                             host_result *r);
/* The credential of a request: `Authorization: Bearer X` or
 * `x-litellm-api-key: X` (a "Bearer " prefix there is accepted too).
 * NULL when neither is there. */
const char *serve_credential(const char *authorization, const char *api_key_header);
/* Whether `token` is the master key: SHA-256 both, CRYPTO_memcmp, so the
 * time does not depend on where or whether they differ. Thread-safe. */
int serve_is_master(const unsigned char master_sha[32], const char *token);

/* ---------------------------------------------------------- serve_worker.c */

typedef struct serve_worker serve_worker;

/* What a key change's delivery came to within the bounded wait. */
typedef struct serve_delivery {
  int landed; /* the round that covered this change emptied the queue */
  long queued; /* operations still queued (when not landed), -1 unknown */
  char error[HOST_ERR_SIZE]; /* the last delivery error, no secret in it */
} serve_delivery;

/* Start the worker: its own database connection, the delivery lock taken
 * per round (so `kms-host sync` can still run), retries with exponential
 * backoff from `backoff_min_ms` to `backoff_max_ms` while work is queued.
 * `plugin_mu` serialises plugin calls when the plugin is not thread-safe. */
host_status serve_worker_start(const char *db_path, kms_client *client,
                               pthread_mutex_t *plugin_mu, unsigned backoff_min_ms,
                               unsigned backoff_max_ms, const host_clock *clock,
                               serve_worker **out, host_result *r);
/* Ask for a delivery round now and wait at most `wait_ms` for a round that
 * started after this call. Thread-safe. */
void serve_worker_deliver(serve_worker *w, unsigned wait_ms, serve_delivery *d);
/* Stop: finish the current round, join, close. NULL is a no-op. */
void serve_worker_stop(serve_worker *w);

/* ----------------------------------------------------------- serve_keys.c */

/* What the endpoints share; set up by serve.c, read-only after start except
 * through its mutexes. */
typedef struct serve_ctx {
  const host_config *cfg;
  const kms_plugin *plugin; /* NULL when no plugin is configured */
  kms_client *client;       /* NULL when none, or the backend was down at start */
  host_db *db;              /* the request threads' connection, under db_mu */
  pthread_mutex_t db_mu;
  pthread_mutex_t plugin_mu; /* plugin calls, when it is not KMS_CAP_THREAD_SAFE */
  unsigned char master_sha[32];
  serve_worker *worker;
  unsigned deliver_wait_ms;
} serve_ctx;

/* One request, routed: `method`, `path` (no query), the query lookup, the
 * caller's credential (may be NULL), the body. Fills rep and q->route. */
typedef const char *(*serve_query_fn)(void *ctx, const char *name);
void serve_handle(serve_ctx *s, const char *method, const char *path, serve_query_fn query,
                  void *query_ctx, const char *credential, serve_req *q, serve_reply *rep);

/* ----------------------------------------------------------------- serve.c */

/* `kms-host serve [--listen ADDR:PORT] [--threads N] ...`: runs until
 * SIGTERM/SIGINT, then finishes in-flight requests, stops the worker and
 * returns HOST_OK. The plugin and the database are opened by main.c. */
host_status host_serve(const host_config *cfg, host_plugin *hp, host_db *db, const char *db_path,
                       int argc, char **argv, host_result *r);

#endif /* KMS_HOST_SERVE_H */
