/*
 * plugin.c -- the aws_secret_manager plugin's vtable and entry point: AWS
 * Secrets Manager as a kmsplug backend, on the shared core (plugins/common:
 * HTTP client, cache, logging) with libcurl's own SigV4 signer.
 *
 * What lives here: the instance (config + credential provider + two HTTP
 * clients + cache), one signed Secrets Manager call (sm_call: credentials,
 * X-Amz-Target, X-Amz-Security-Token, CURLOPT_AWS_SIGV4, a fresh credential
 * and one more try after ExpiredTokenException), and the glue of each slot:
 *   read   = cache (single-flight, stale-if-error) -> GetSecretValue; with
 *            primary_secret_name the one JSON secret is cached and the
 *            name picks its field;
 *   write  = CreateSecret (Description, Tags), or PutSecretValue when it
 *            exists; a secret scheduled for deletion is restored first
 *            (RestoreSecret) and then overwritten; with primary_secret_name
 *            a read-modify-write of the one secret (serialised per instance);
 *   delete = DeleteSecret with RecoveryWindowInDays or
 *            ForceDeleteWithoutRecovery; a missing or already scheduled
 *            secret is OK; with primary_secret_name the field is removed;
 *   refresh = re-read of every cached secret;
 *   read_into = the read's path, copying into the caller's buffer (a fresh
 *            hit allocates nothing);
 *   list   = ListSecrets with a name prefix filter, NextToken followed
 *            (bounded), secrets scheduled for deletion left out; with
 *            primary_secret_name the keys of the one document;
 *   NONBLOCKING reads answer from the cache at once and queue a background
 *            fetch (kpc_bgfetch); background_refresh re-reads cached secrets
 *            before they expire (kpc_refresher); the cache's change observer
 *            tells the host (kpc_notify) of a new VersionId or a deletion
 *            (with primary_secret_name: of each field that changed, found
 *            by primary_watch.c).
 * The credential chain (creds.c) fetches temporary credentials through
 * creds_http below, a second client (the credential endpoints are other
 * hosts: STS, IMDS, ECS).
 *
 * Thread-safety: KMS_CAP_THREAD_SAFE. The config is immutable after create;
 * the cache, the HTTP clients and the credential provider lock internally;
 * primary_mu serialises the read-modify-writes of primary_secret_name (a
 * writer in another process can still interleave: Secrets Manager has no
 * check-and-set); no lock is held while logging or notifying; the primary
 * watch's mutex is innermost (taken under primary_mu, never under the
 * cache's lock: the document is copied out first). Threads: the NONBLOCKING
 * fetcher (started on the first such miss) and, with background_refresh,
 * the refresher; both stopped and joined by destroy.
 */
#include "config.h"
#include "creds.h"
#include "kms_plugin_util.h"
#include "kpc_bgfetch.h"
#include "kpc_cache.h"
#include "kpc_http.h"
#include "kpc_log.h"
#include "kpc_refresher.h"
#include "primary_watch.h"
#include "sm.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AWS_PLUGIN_VERSION "0.1.0"
#define AWS_MSG_PREFIX "aws_secret_manager: "

struct kms_instance {
  kpc_logger lg;
  kpc_clock clock; /* CLOCK_MONOTONIC (zeroed): http, creds and cache share it */
  aws_config cfg;
  kpc_http_config hc, cc; /* Secrets Manager; credential endpoints */
  kpc_http *http, *chttp;
  aws_creds_provider *creds;
  kpc_cache *cache;
  kpc_refresher *refresher; /* NULL unless background_refresh (and a cache, and reads) */
  kpc_bgfetch *bg;          /* fetches of NONBLOCKING misses (thread on first use) */
  kms_stats *stats;
  char *url;             /* endpoint + "/" */
  char scope[96];        /* CURLOPT_AWS_SIGV4: "aws:amz:<region>:secretsmanager" */
  pthread_mutex_t primary_mu;
  primary_watch *pw; /* with primary_secret_name: its fields' digests (notify) */
};

/* One plugin call's deadline, shared by its credential fetch and requests. */
typedef struct call_ctx {
  kms_instance *in;
  int64_t deadline; /* 0: set when the first request starts */
} call_ctx;

static int64_t deadline_of(call_ctx *k) {
  if (!k->deadline) k->deadline = kpc_http_deadline(k->in->http);
  return k->deadline;
}

/* ---- signed Secrets Manager calls -------------------------------------- */

typedef struct sign_ctx {
  const char *scope;
  const aws_credentials *c;
} sign_ctx;

/* kpc_http's per-exchange hook: libcurl signs the request (SigV4), with the
 * X-Amz-Security-Token header among the signed ones when present. */
static kms_status sign_setup(void *ctx, void *curl, kms_error *err) {
  sign_ctx *s = ctx;
  if (curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, s->scope) != CURLE_OK ||
      curl_easy_setopt(curl, CURLOPT_USERNAME, s->c->access_key_id) != CURLE_OK ||
      curl_easy_setopt(curl, CURLOPT_PASSWORD, s->c->secret_access_key) != CURLE_OK)
    return kms_error_set(err, KMS_UNSUPPORTED, 0,
                         "this libcurl cannot sign AWS requests (CURLOPT_AWS_SIGV4 needs libcurl "
                         ">= 7.75)");
  return KMS_OK;
}

/* Health: what an answer says of the credentials, by errors.c's classes: a
 * credential error (expired, unrecognised, bad signature, 401) refuses
 * them, a throttle or an outage cannot tell, anything else (2xx, NotFound,
 * AccessDenied: a policy's) accepts them. Recorded by kpc_http_perform. */
static int sm_auth_verdict(long status, const char *body, size_t len) {
  if (status >= 200 && status < 300) return 1;
  kms_error e;
  kms_status st = sm_map_error("health", status, body, len, 1, NULL, 0, &e);
  return st == KMS_UNAUTHENTICATED ? 0 : st == KMS_UNAVAILABLE ? -1 : 1;
}

static int sm_retry_cb(void *ctx, const kpc_http_response *r) {
  (void)ctx;
  return sm_retryable(r->status, r->body, r->len);
}

/* One Secrets Manager operation (`target`, e.g. "GetSecretValue"). KMS_OK:
 * an answer arrived (resp->status may be 4xx: the caller maps it). After
 * ExpiredTokenException the provider fetches new credentials and the call
 * is sent once more. */
static kms_status sm_call(call_ctx *k, const char *op, const char *target, const char *body,
                          size_t len, kpc_http_response *resp, kms_error *err) {
  kms_instance *in = k->in;
  memset(resp, 0, sizeof *resp); /* callers look at it even when no answer came */
  char tgt[64];
  snprintf(tgt, sizeof tgt, "secretsmanager.%s", target);
  kms_status st = KMS_OK;
  for (int round = 0; round < 2; round++) {
    aws_credentials c = {0};
    if ((st = aws_creds_get(in->creds, deadline_of(k), &c, err)) != KMS_OK) {
      /* a verdict without a Secrets Manager exchange: no credentials found,
       * or STS/IMDS refused them */
      if (st == KMS_UNAUTHENTICATED) kpc_http_note_auth(in->http, 0);
      return st;
    }
    const kpc_header hdrs[] = {{"X-Amz-Target", tgt}, {"X-Amz-Security-Token", c.session_token}};
    sign_ctx s = {in->scope, &c};
    kpc_http_request req = {.op = op, .method = "POST", .url = in->url, .headers = hdrs,
                            .n_headers = 2, .content_type = SM_CONTENT_TYPE, .body = body,
                            .body_len = len, .deadline_ms = k->deadline, .setup = sign_setup,
                            .setup_ctx = &s, .retryable = sm_retry_cb,
                            .auth_verdict = sm_auth_verdict};
    st = kpc_http_perform(in->http, &req, resp, err);
    aws_credentials_clear(&c);
    if (st != KMS_OK) return st; /* (health: recorded by kpc_http_perform) */
    int expired = sm_error_is(resp->status, resp->body, resp->len, "ExpiredTokenException");
    if (!expired || round) break;
    aws_creds_invalidate(in->creds);
    kpc_http_response_clear(resp);
  }
  return st;
}

/* sm_call + mapping of every answer but 200 to a status (the answer stays
 * in resp for callers that look at the error type). `secret` is the value
 * being written (kept out of the message), or NULL. */
static kms_status sm_op(call_ctx *k, const char *op, const char *target, const char *body,
                        size_t len, const char *secret, size_t secret_len, kpc_http_response *resp,
                        kms_error *err) {
  kms_status st = sm_call(k, op, target, body, len, resp, err);
  if (st == KMS_OK && resp->status != 200)
    st = sm_map_error(op, resp->status, resp->body, resp->len, resp->attempts, secret,
                      secret_len, err);
  return st;
}

/* ---- reads ---------------------------------------------------------------- */

/* The cache's fetch: ctx is a call_ctx, key the secret name, optionally
 * followed by "?s=<VersionStage>" or "?v=<VersionId>" (a read with the 1.1
 * location keys; '?' is not in a secret name's alphabet). */
static kms_status fetch_secret(void *ctx, const char *key, kpc_cache_value *out,
                               kms_error *err) {
  call_ctx *k = ctx;
  kms_stats_add(k->in->stats, KMS_STAT_FETCHES, 1);
  char name[SM_NAME_MAX + 1];
  const char *q = strchr(key, '?'), *stage = k->in->cfg.version_stage, *id = NULL;
  size_t nl = q ? (size_t)(q - key) : strlen(key);
  if (nl > SM_NAME_MAX) return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "secret name too long");
  memcpy(name, key, nl);
  name[nl] = '\0';
  if (q && q[1] == 's') stage = q + 3;
  if (q && q[1] == 'v') stage = NULL, id = q + 3;
  char *body = NULL;
  size_t len = 0;
  kms_status st = sm_body_get(name, stage, id, &body, &len, err);
  if (st != KMS_OK) return st;
  kpc_http_response resp;
  st = sm_op(k, "read (GetSecretValue)", "GetSecretValue", body, len, NULL, 0, &resp, err);
  sm_free_body(body, len);
  if (st == KMS_OK) {
    st = sm_parse_value(resp.body, resp.len, &out->data, &out->len, err);
    out->version = sm_version_tag(resp.body, resp.len); /* tells a new version (notify) */
    if (st == KMS_OK && k->in->pw && strcmp(key, k->in->cfg.primary_secret_name) == 0)
      pw_update(k->in->pw, out->data, out->len, PW_SEED, NULL); /* the first one seen */
  } else if (sm_is_scheduled_for_deletion(resp.status, resp.body, resp.len))
    st = kms_error_set(err, KMS_NOT_FOUND, (int32_t)resp.status,
                       "read (GetSecretValue): the secret is scheduled for deletion (AWS "
                       "InvalidRequestException); writing it again restores it");
  kpc_http_response_clear(&resp);
  return st;
}

/* The first stale serve of an outage (KPC_CACHE_WARN) is logged once. */
static void warn_stale(kms_instance *in, const kms_error *why) {
  kpc_logf(&in->lg, KMS_LOG_WARN,
           "AWS Secrets Manager is unavailable, serving cached secrets marked stale (for up to "
           "%lld s after expiry, setting stale_if_error): %s",
           (long long)in->cfg.stale_if_error_s, why->message);
}

/* The value of `key` (the secret name, or primary_secret_name) through the
 * cache; with `force` the cache's value is re-read (single-flight still). */
static kms_status cached_get(kms_instance *in, const char *key, int force, kpc_cache_value *v,
                             unsigned *flags, kms_error *err) {
  kms_error why;
  kms_error_clear(&why);
  call_ctx k = {in, 0};
  *flags = 0;
  kms_status st = kpc_cache_get(in->cache, key, force, fetch_secret, &k, v, flags, &why);
  kpc_cache_count_read(in->stats, st, *flags);
  if (st != KMS_OK) {
    if (err) *err = why;
    return st;
  }
  if (*flags & KPC_CACHE_WARN)
    warn_stale(in, &why);
  return KMS_OK;
}

/* Which version a read asks for (1.1 location keys), and how. */
typedef struct read_req {
  const char *stage, *id; /* NULL: the configured version_stage / none */
  uint32_t flags;         /* KMS_CALL_BYPASS_CACHE, KMS_CALL_NONBLOCKING */
} read_req;

/* Longest cache key: a name, "?s=" and a VersionStage (a VersionId is
 * shorter); every part is checked before read_key runs. */
#define READ_KEY_MAX (SM_NAME_MAX + 3 + 256 + 1)

/* The cache key of `base` (a name or primary_secret_name) for `r`, in the
 * caller's buffer: a cache hit allocates nothing. */
static void read_key(const char *base, const read_req *r, char key[READ_KEY_MAX]) {
  const char *tag = r->id ? "?v=" : r->stage ? "?s=" : "";
  const char *v = r->id ? r->id : r->stage ? r->stage : "";
  snprintf(key, READ_KEY_MAX, "%s%s%s", base, tag, v);
}

/* Where a read hands its value: a new kms_secret (read_secret, _opt) or the
 * caller's buffer (read_secret_into). One read path serves both. */
typedef struct read_sink {
  kms_secret **out; /* NULL: into buf */
  char *buf;
  size_t size;
  kms_secret_info *info;
  const char *field; /* primary_secret_name: the document's key to hand over */
  kms_error *err;
} read_sink;

static kms_status deliver(read_sink *s, const char *data, size_t len, unsigned flags) {
  uint32_t f = (flags & KPC_CACHE_STALE) ? KMS_SECRET_STALE : 0;
  if (!s->out)
    return kms_secret_copy_into(data, len, 0, f, s->buf, s->size, s->info, "read", s->err);
  kms_status st = kms_secret_new_packed(data, len, s->out, s->err);
  if (st == KMS_OK) (*s->out)->flags = f;
  return st;
}

/* The kpc_cache_into_fn of every read: on a fresh hit it runs under the
 * cache's shared lock, so it only copies (into a buffer: allocates nothing;
 * a primary_secret_name field: parses the document); after a fetch it gets
 * the fetched copy. */
static kms_status sink_value(void *ctx, const kpc_cache_value *v, unsigned flags) {
  read_sink *s = ctx;
  if (!s->field) return deliver(s, v->data, v->len, flags);
  char *data = NULL;
  size_t len = 0;
  kms_status st = sm_field_get(v->data, v->len, s->field, &data, &len, s->err);
  if (st == KMS_OK) st = deliver(s, data, len, flags);
  if (data) kms_wipe(data, len);
  free(data);
  return st;
}

/* One read of cache key `key` as `r` asks (kpc_read_cached: NONBLOCKING,
 * BYPASS_CACHE or the cache, fetching on a miss). */
static kms_status read_cached(kms_instance *in, const char *key, const read_req *r,
                              read_sink *s, unsigned *cflags, kms_error *why) {
  call_ctx k = {in, 0}; /* deadline set when a fetch starts: a hit reads no clock */
  return kpc_read_cached(in->cache, in->bg, key, r->flags, fetch_secret, &k, sink_value, s, cflags,
                         why);
}

/* Every read slot's path (read_secret, _opt, _into). Thread-safety: any
 * thread; a fresh hit takes only the cache's shared lock. */
static kms_status read_secret(kms_instance *in, const char *name, const read_req *r,
                              const read_sink *sink, kms_error *err) {
  if (in->cfg.access_mode == AWS_ACCESS_WRITE_ONLY)
    return kms_error_set(err, KMS_PERMISSION_DENIED, 0,
                         "access_mode is write_only: reads are refused (set access_mode to "
                         "read_only or read_and_write to allow them)");
  const char *primary = in->cfg.primary_secret_name;
  kms_status st = primary ? sm_check_field(name, err) : sm_check_name(name, err);
  if (st != KMS_OK) return st;
  char key[READ_KEY_MAX];
  read_key(primary ? primary : name, r, key);
  unsigned cflags = 0;
  kms_error why; /* the cache's and the sink's errors: err gets it on a failure */
  kms_error_clear(&why);
  read_sink s = *sink;
  s.field = primary ? name : NULL;
  s.err = &why;
  st = read_cached(in, key, r, &s, &cflags, &why);
  kpc_cache_count_read(in->stats, st, cflags);
  if (st == KMS_OK && (cflags & KPC_CACHE_WARN))
    warn_stale(in, &why);
  if (st != KMS_OK && err) *err = why;
  return st;
}

/* Tell the host of each changed primary_secret_name field, then free the
 * list. Thread-safety: any thread holding no plugin or cache lock. */
static void notify_fields(kms_instance *in, pw_changes *ch) {
  for (size_t i = 0; i < ch->n; i++) kpc_notify(&in->lg, ch->v[i].name, ch->v[i].kind, 0, NULL, 0);
  pw_changes_free(ch);
}

/* ---- writes ----------------------------------------------------------------- */

static kms_status write_denied(const char *what, kms_error *err) {
  return kms_error_set(err, KMS_PERMISSION_DENIED, 0,
                       "access_mode is read_only: %s are refused (set access_mode to "
                       "read_and_write or write_only to allow them)", what);
}

static kms_status restore(call_ctx *k, const char *name, kms_error *err) {
  char *body = NULL;
  size_t len = 0;
  kms_status st = sm_body_id(name, &body, &len, err);
  if (st != KMS_OK) return st;
  kpc_http_response resp;
  st = sm_op(k, "write (RestoreSecret)", "RestoreSecret", body, len, NULL, 0, &resp, err);
  sm_free_body(body, len);
  kpc_http_response_clear(&resp);
  if (st == KMS_OK)
    kpc_logf(&k->in->lg, KMS_LOG_INFO,
             "write: the secret was scheduled for deletion; restored it (RestoreSecret) to "
             "store the new value");
  return st;
}

/* PutSecretValue; a secret scheduled for deletion is restored, then put. */
static kms_status put_value(call_ctx *k, const char *name, const char *value, size_t vlen,
                            int64_t *tag, kms_error *err) {
  char token[37];
  kms_status st = sm_request_token(token, err);
  for (int round = 0; st == KMS_OK && round < 2; round++) {
    char *body = NULL;
    size_t len = 0;
    if ((st = sm_body_put(name, value, vlen, token, &body, &len, err)) != KMS_OK) break;
    kpc_http_response resp;
    st = sm_op(k, "write (PutSecretValue)", "PutSecretValue", body, len, value, vlen, &resp,
               err);
    sm_free_body(body, len);
    int scheduled = st != KMS_OK && sm_is_scheduled_for_deletion(resp.status, resp.body, resp.len);
    if (st == KMS_OK) *tag = sm_version_tag(resp.body, resp.len);
    kpc_http_response_clear(&resp);
    if (!scheduled || round) break;
    if ((st = restore(k, name, err)) != KMS_OK) break;
  }
  return st;
}

/* CreateSecret (Description, Tags), else PutSecretValue when the name
 * exists (restoring it first when it is scheduled for deletion). */
static kms_status store(call_ctx *k, const char *name, const char *value, size_t vlen,
                        const char *description, int64_t *tag, kms_error *err) {
  const aws_config *cfg = &k->in->cfg;
  sm_tag tags[AWS_TAGS_MAX];
  size_t n_tags = cfg->n_tags < AWS_TAGS_MAX ? cfg->n_tags : AWS_TAGS_MAX;
  for (size_t i = 0; i < n_tags; i++) tags[i] = (sm_tag){cfg->tags[i].key, cfg->tags[i].value};
  char token[37], *body = NULL;
  size_t len = 0;
  kms_status st = sm_request_token(token, err);
  if (st == KMS_OK)
    st = sm_body_create(name, value, vlen, description, tags, n_tags, token, &body, &len, err);
  if (st != KMS_OK) return st;
  kpc_http_response resp;
  st = sm_op(k, "write (CreateSecret)", "CreateSecret", body, len, value, vlen, &resp, err);
  sm_free_body(body, len);
  int exists = st != KMS_OK && sm_error_is(resp.status, resp.body, resp.len,
                                            "ResourceExistsException");
  int scheduled = st != KMS_OK && sm_is_scheduled_for_deletion(resp.status, resp.body, resp.len);
  if (st == KMS_OK) *tag = sm_version_tag(resp.body, resp.len);
  kpc_http_response_clear(&resp);
  if (scheduled && (st = restore(k, name, err)) == KMS_OK) exists = 1;
  if (exists) {
    kms_error_clear(err);
    st = put_value(k, name, value, vlen, tag, err);
  }
  return st;
}

/* The current primary_secret_name document, read past the cache (a
 * read-modify-write must start from AWS's value): *doc NULL when the secret
 * does not exist yet. */
static kms_status primary_load(call_ctx *k, kpc_cache_value *doc, kms_error *err) {
  memset(doc, 0, sizeof *doc);
  kms_status st = fetch_secret(k, k->in->cfg.primary_secret_name, doc, err);
  if (st == KMS_NOT_FOUND) {
    kms_error_clear(err);
    return KMS_OK;
  }
  return st;
}

/* Set (value) or remove (value NULL) `field` of the primary secret. */
static kms_status primary_update(kms_instance *in, const char *field, const char *value,
                                 size_t vlen, const char *description, kms_error *err) {
  const char *primary = in->cfg.primary_secret_name;
  call_ctx k = {in, 0};
  kpc_cache_value doc;
  char *out = NULL;
  size_t out_len = 0;
  int changed = 0;
  int64_t tag = 0; /* the written VersionId's (so the refresher sees no change) */
  pw_changes outside = {0}; /* fields changed by someone else since last seen */
  pthread_mutex_lock(&in->primary_mu);
  kpc_cache_invalidate_all(in->cache, primary);
  kms_status st = primary_load(&k, &doc, err);
  if (st == KMS_OK) pw_update(in->pw, doc.data, doc.len, PW_DIFF, &outside);
  if (st == KMS_OK && (doc.data || value))
    st = sm_field_set(doc.data, doc.len, field, value, vlen, &out, &out_len, &changed, err);
  if (st == KMS_OK && changed) /* known to exist: put; else create (or restore) */
    st = doc.data ? put_value(&k, primary, out, out_len, &tag, err)
                  : store(&k, primary, out, out_len, description, &tag, err);
  if (st == KMS_OK && changed) pw_update(in->pw, out, out_len, PW_OWN, NULL);
  if (st == KMS_OK && changed && in->cfg.access_mode == AWS_ACCESS_READ_AND_WRITE)
    kpc_cache_put(in->cache, primary, out, out_len, tag);
  else
    kpc_cache_invalidate_all(in->cache, primary);
  pthread_mutex_unlock(&in->primary_mu);
  kpc_cache_value_clear(&doc);
  sm_free_body(out, out_len);
  notify_fields(in, &outside); /* after the cache holds the new document */
  return st;
}

static kms_status write_secret(kms_instance *in, const char *name, const char *value, size_t len,
                               const kms_write_options *opt, kms_error *err) {
  if (in->cfg.access_mode == AWS_ACCESS_READ_ONLY) return write_denied("writes", err);
  if (!value && len) return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "value is NULL");
  const char *description = in->cfg.description; /* the setting, unless the write gives one */
  if (opt && KMS_FIELD_PRESENT(opt, kms_write_options, flags) && (opt->flags & KMS_WRITE_CAS))
    return kms_error_set(err, KMS_UNSUPPORTED, 0,
                         "check-and-set writes are not supported: AWS Secrets Manager has no "
                         "conditional put");
  if (opt && KMS_FIELD_PRESENT(opt, kms_write_options, description) && opt->description &&
      opt->description[0])
    description = opt->description;
  if (description && strlen(description) > AWS_DESCRIPTION_MAX)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "description is %zu bytes; at most %d",
                         strlen(description), AWS_DESCRIPTION_MAX);
  const char *primary = in->cfg.primary_secret_name;
  kms_status st = primary ? sm_check_field(name, err) : sm_check_name(name, err);
  if (st != KMS_OK) return st;
  if (primary) return primary_update(in, name, value ? value : "", len, description, err);
  call_ctx k = {in, 0};
  int64_t tag = 0; /* the written VersionId's: our own write is not a change to notify */
  kpc_cache_invalidate_all(in->cache, name); /* version reads of it too */
  st = store(&k, name, value ? value : "", len, description, &tag, err);
  if (st == KMS_OK && in->cfg.access_mode == AWS_ACCESS_READ_AND_WRITE)
    kpc_cache_put(in->cache, name, value, len, tag);
  else
    kpc_cache_invalidate_all(in->cache, name); /* state unknown, or not ours to keep */
  return st;
}

/* ---- deletes ---------------------------------------------------------------- */

/* days: RecoveryWindowInDays; force: ForceDeleteWithoutRecovery. */
static kms_status delete_secret(kms_instance *in, const char *name, int days, int force,
                                kms_error *err) {
  if (in->cfg.access_mode == AWS_ACCESS_READ_ONLY) return write_denied("deletes", err);
  const char *primary = in->cfg.primary_secret_name;
  kms_status st = primary ? sm_check_field(name, err) : sm_check_name(name, err);
  if (st != KMS_OK) return st;
  if (primary) return primary_update(in, name, NULL, 0, NULL, err);
  char *body = NULL;
  size_t len = 0;
  st = sm_body_delete(name, days, force, &body, &len, err);
  if (st != KMS_OK) return st;
  kpc_cache_invalidate_all(in->cache, name);
  call_ctx k = {in, 0};
  kpc_http_response resp;
  st = sm_op(&k, "delete (DeleteSecret)", "DeleteSecret", body, len, NULL, 0, &resp, err);
  sm_free_body(body, len);
  /* gone already, or already scheduled for deletion: the goal is met */
  if (st != KMS_OK && (sm_error_is(resp.status, resp.body, resp.len, "ResourceNotFoundException") ||
                       sm_is_scheduled_for_deletion(resp.status, resp.body, resp.len))) {
    kms_error_clear(err);
    st = KMS_OK;
  }
  kpc_http_response_clear(&resp);
  kpc_cache_invalidate_all(in->cache, name); /* a read may have raced the delete */
  return st;
}

/* ---- refresh, health ---------------------------------------------------------- */

/* Re-read every cached secret, in one call's deadline. */
static kms_status refresh(kms_instance *in, kms_error *err) {
  if (in->cfg.access_mode == AWS_ACCESS_WRITE_ONLY) return KMS_OK;
  char **keys = NULL;
  size_t n = kpc_cache_keys(in->cache, &keys), failed = 0;
  kms_error first;
  kms_error_clear(&first);
  for (size_t i = 0; i < n; i++) {
    kpc_cache_value v;
    unsigned flags;
    kms_error e;
    kms_error_clear(&e);
    kms_status s = cached_get(in, keys[i], 1, &v, &flags, &e);
    kpc_cache_value_clear(&v);
    if (s == KMS_OK || s == KMS_NOT_FOUND) continue; /* NOT_FOUND: evicted, as it should be */
    if (!failed++) first = e;
  }
  kpc_cache_keys_free(keys, n);
  if (failed)
    return kms_error_set(err, first.status, first.backend_status,
                         "refresh: %zu of %zu cached secrets could not be re-read; first: %.150s",
                         failed, n, first.message);
  return KMS_OK;
}

/* Never contacts AWS: counters, the last observations, the credentials. */
static kms_status health(kms_instance *in, kms_health *out, kms_error *err) {
  (void)err;
  kms_stats_fill(in->stats, out);
  aws_creds_health ch;
  aws_creds_health_get(in->creds, &ch);
#define PUT(f, v) \
  if (KMS_FIELD_PRESENT(out, kms_health, f)) out->f = (v)
  int reachable, authenticated;
  kpc_http_health(in->http, &reachable, &authenticated);
  PUT(reachable, reachable);
  PUT(authenticated, authenticated);
  PUT(token_ttl_seconds, ch.expires_in_s);
  PUT(cache_entries, kpc_cache_size(in->cache));
#undef PUT
  return KMS_OK;
}

/* ---- the credential provider's HTTP ---------------------------------------- */

/* aws_creds_http_fn over the second client: "Name: value" header strings
 * become kpc_headers (copies, wiped: they may hold the ECS or IMDS token). */
static kms_status creds_http(void *ctx, const char *method, const char *url,
                             const char *const *headers, const char *body, size_t body_len,
                             int64_t deadline_ms, long *status, char **resp_body,
                             size_t *resp_len, kms_error *err) {
  kms_instance *in = ctx;
  kpc_header h[8];
  char *copies[8] = {0};
  size_t n = 0;
  kms_status st = KMS_OK;
  for (; headers && headers[n] && st == KMS_OK; n++) {
    char *colon;
    if (n == 8 || !(copies[n] = strdup(headers[n])) || !(colon = strchr(copies[n], ':'))) {
      st = kms_error_set(err, KMS_INTERNAL, 0, "credentials: bad request header");
      break;
    }
    *colon++ = '\0';
    while (*colon == ' ') colon++;
    h[n] = (kpc_header){copies[n], colon};
  }
  kpc_http_response r = {0};
  if (st == KMS_OK) {
    kpc_http_request req = {.op = "credentials", .method = method, .url = url, .headers = h,
                            .n_headers = n, .content_type = "application/x-www-form-urlencoded",
                            .body = body, .body_len = body_len, .deadline_ms = deadline_ms};
    st = kpc_http_perform(in->chttp, &req, &r, err);
  }
  for (size_t i = 0; i < 8; i++) kpc_wipe_free(copies[i]);
  if (st == KMS_OK) {
    *status = r.status;
    *resp_body = r.body; /* ownership passes on; the caller wipes it */
    *resp_len = r.len;
    r.body = NULL;
  }
  kpc_http_response_clear(&r);
  return st;
}

/* ---- lifecycle ---------------------------------------------------------------- */

/* Thread-safety: ABI (nothing else runs on the instance). The plugin's
 * threads are stopped and joined before anything they use is freed. */
static void ap_destroy(kms_instance *in) {
  if (!in) return;
  kpc_bgfetch_free(in->bg);
  kpc_refresher_stop(in->refresher);
  kpc_cache_free(in->cache);
  aws_creds_free(in->creds);
  kpc_http_free(in->http);
  kpc_http_free(in->chttp);
  free(in->url);
  aws_config_free(&in->cfg);
  kms_stats_free(in->stats);
  pthread_mutex_destroy(&in->primary_mu);
  pw_free(in->pw);
  free(in);
}

/* The shared client's settings from aws_config, with AWS's words. */
static void http_config(const aws_config *cfg, const char *addr, kpc_http_config *hc) {
  *hc = (kpc_http_config){
      .addr = addr,
      .timeout_ms = cfg->timeout_ms,
      .connect_timeout_ms = cfg->connect_timeout_ms,
      .max_retries = cfg->max_retries,
      .max_response_bytes = cfg->max_response_bytes,
      .max_idle_connections = cfg->max_idle_connections,
      .ca_file = cfg->ca_file,
      .ca_path = cfg->ca_path,
      .server_word = "AWS Secrets Manager",
      .addr_var = "AWS_ENDPOINT_URL_SECRETS_MANAGER (or AWS_REGION)",
      .timeout_var = "the timeout setting",
      .tls_vars = "AWS_CA_BUNDLE",
      .client_cert_var = "the client certificate",
  };
}

/* ---- change notifications, background work --------------------------------- */

/* With primary_secret_name the cache's key is the one JSON secret, not a
 * name the host reads: its new version (or its landing, `all`) is told as
 * the fields that changed (primary_watch.h), from the document the cache
 * now holds. Only the document's current version is watched ("?s="/"?v="
 * reads of it are not: README, Limits). */
static void on_primary_change(kms_instance *in, const char *key, int kind, int all) {
  if (strcmp(key, in->cfg.primary_secret_name) != 0) return;
  pw_changes ch = {0};
  if (kind == KPC_CHANGE_DELETED) {
    pw_update(in->pw, NULL, 0, PW_DIFF, &ch);
  } else {
    kpc_cache_value doc = {0};
    kms_error e;
    unsigned flags = 0;
    if (kpc_cache_peek(in->cache, key, &doc, NULL, NULL, &flags, &e) == KMS_OK) {
      if (all) pw_all(doc.data, doc.len, &ch);
      else pw_update(in->pw, doc.data, doc.len, PW_DIFF, &ch);
    }
    kpc_cache_value_clear(&doc);
  }
  notify_fields(in, &ch);
}

/* The cache's change observer (ctx: the instance): a key whose value the
 * cache held has a new VersionId (UPDATED) or is gone (DELETED). Key ->
 * name, plus location version_stage for a "?s=" key; a pinned version id
 * ("?v=") never changes. The version passed is 0: Secrets Manager's are ids
 * (the tag is a hash).
 * Thread-safety: any thread; called with no cache or plugin lock held. */
static void on_change(void *ctx, const char *key, int kind, int64_t version) {
  kms_instance *in = ctx;
  (void)version;
  if (in->cfg.primary_secret_name) {
    on_primary_change(in, key, kind, 0);
    return;
  }
  const char *q = strchr(key, '?');
  if (q && q[1] == 'v') return;
  size_t nl = q ? (size_t)(q - key) : strlen(key);
  char name[SM_NAME_MAX + 1];
  if (nl > SM_NAME_MAX) return;
  memcpy(name, key, nl);
  name[nl] = '\0';
  kms_setting loc = {"version_stage", q ? q + 3 : ""};
  kpc_notify(&in->lg, name, kind == KPC_CHANGE_DELETED ? KMS_CHANGE_DELETED : KMS_CHANGE_UPDATED,
             0, &loc, q ? 1 : 0);
}

/* kpc_bgfetch's landed hook: a NONBLOCKING miss got its value (with
 * primary_secret_name: every field of the document is readable now). */
static void landed(void *ctx, const char *key, int64_t version) {
  kms_instance *in = ctx;
  if (in->cfg.primary_secret_name) on_primary_change(in, key, KPC_CHANGE_UPDATED, 1);
  else on_change(ctx, key, KPC_CHANGE_UPDATED, version);
}

/* Background fetches (refresher, NONBLOCKING): a call budget of their own. */
static kms_status fetch_background(void *ctx, const char *key, kpc_cache_value *out,
                                   kms_error *err) {
  call_ctx k = {ctx, 0};
  return fetch_secret(&k, key, out, err);
}

/* For destroy: abort requests in flight on both clients, for good. */
static void cancel_http(void *ctx) {
  kms_instance *in = ctx;
  kpc_http_cancel(in->http);
  kpc_http_cancel(in->chttp);
}

/* The cache, the NONBLOCKING fetcher and, with background_refresh (and a
 * cache, and reads allowed), the refresher. Credentials need no renewal
 * hook: the provider fetches new ones (single-flight) when a request finds
 * them due. Thread-safety: from create() only. */
static kms_status create_threads(kms_instance *in, kms_error *err) {
  const aws_config *cfg = &in->cfg;
  int bg = cfg->background_refresh && cfg->refresh_interval_s > 0 &&
           cfg->access_mode != AWS_ACCESS_WRITE_ONLY;
  kpc_cache_options co = {
      .ttl_ms = cfg->refresh_interval_s * 1000,
      .stale_ms = cfg->stale_if_error_s * 1000,
      .stale_retry_ms = cfg->stale_retry_ms,
      .refresh_lo_pm = bg ? KPC_REFRESH_LO_PM : 0,
      .refresh_hi_pm = bg ? KPC_REFRESH_HI_PM : 0,
      .clock = in->clock,
      .neg_ttl_ms = cfg->neg_ttl_ms,
      .changed = on_change,
      .changed_ctx = in,
  };
  if (!(in->cache = kpc_cache_new(&co)))
    return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  kpc_bgfetch_deps bd = {in->cache, fetch_background, in, landed, in, cancel_http, in, &in->lg};
  if (!(in->bg = kpc_bgfetch_new(&bd)))
    return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  if (!bg) return KMS_OK;
  kpc_refresher_deps rd = {.cache = in->cache, .fetch = fetch_background, .fetch_ctx = in,
                           .cancel = cancel_http, .cancel_ctx = in, .lg = &in->lg,
                           .ttl_ms = co.ttl_ms, .clock = &in->clock, .thread_name = "aws-refresh"};
  return kpc_refresher_start(&rd, &in->refresher, err);
}

static kms_status create_parts(kms_instance *in, const kms_host *host, const kms_setting *s,
                               size_t n, kms_error *err) {
  kms_status st = aws_config_load(&in->cfg, host, s, n, err);
  if (st != KMS_OK) return st;
  const aws_config *cfg = &in->cfg;
  size_t ul = strlen(cfg->endpoint) + 2;
  if (!(in->url = malloc(ul))) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  snprintf(in->url, ul, "%s/", cfg->endpoint);
  snprintf(in->scope, sizeof in->scope, "aws:amz:%s:secretsmanager", cfg->region);
  if (cfg->primary_secret_name && (st = sm_check_name(cfg->primary_secret_name, err)) != KMS_OK)
    return kpc_error_prefix(st, err, "setting primary_secret_name: ");
  if (cfg->primary_secret_name && !(in->pw = pw_new()))
    return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory (or no randomness) for the "
                                                "primary_secret_name change watch");
  http_config(cfg, cfg->endpoint, &in->hc);
  http_config(cfg, cfg->sts_endpoint ? cfg->sts_endpoint : cfg->endpoint, &in->cc);
  in->cc.server_word = "the AWS credential endpoint";
  in->cc.addr_var = "the credential source's endpoint";
  if ((st = kpc_http_new(&in->hc, &in->lg, &in->clock, &in->http, err)) != KMS_OK ||
      (st = kpc_http_new(&in->cc, &in->lg, &in->clock, &in->chttp, err)) != KMS_OK ||
      (st = aws_creds_new(cfg, &in->clock, creds_http, in, &in->creds, err)) != KMS_OK)
    return st;
  return create_threads(in, err);
}

static kms_status ap_create(const kms_host *host, const kms_setting *settings, size_t n,
                            kms_instance **out, kms_error *err) {
  *out = NULL;
  if (n && !settings)
    return kpc_error_prefix(kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "settings is NULL"), err,
                            AWS_MSG_PREFIX);
  if (host && !KMS_FIELD_PRESENT(host, kms_host, ctx)) host = NULL;
  kms_instance *in = calloc(1, sizeof *in);
  if (!in) return kms_error_set(err, KMS_NO_MEMORY, 0, AWS_MSG_PREFIX "out of memory");
  in->lg = (kpc_logger){host, AWS_MSG_PREFIX};
  pthread_mutex_init(&in->primary_mu, NULL);
  kms_status st = (in->stats = kms_stats_new()) ? create_parts(in, host, settings, n, err)
                                                : kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  if (st != KMS_OK) {
    ap_destroy(in);
    return kpc_error_prefix(st, err, AWS_MSG_PREFIX);
  }
  *out = in;
  return KMS_OK;
}

/* ---- slots: the plugin's name on every message, outcomes counted -------- */

static kms_status slot_end(kms_instance *in, kms_status st, kms_error *err) {
  kpc_error_prefix(st, err, AWS_MSG_PREFIX);
  return kms_stats_result(in->stats, st, err);
}

static kms_status ap_read(kms_instance *in, const char *name, kms_secret **out, kms_error *err) {
  static const read_req plain;
  *out = NULL;
  read_sink sink = {.out = out};
  return slot_end(in, read_secret(in, name, &plain, &sink, err), err);
}

static kms_status ap_write(kms_instance *in, const char *name, const char *value, size_t len,
                           const kms_write_options *opt, kms_error *err) {
  return slot_end(in, write_secret(in, name, value, len, opt, err), err);
}

static kms_status ap_delete(kms_instance *in, const char *name, kms_error *err) {
  return slot_end(in, delete_secret(in, name, in->cfg.recovery_window_days,
                                    in->cfg.force_delete, err), err);
}

static kms_status ap_refresh(kms_instance *in, kms_error *err) {
  return slot_end(in, refresh(in, err), err);
}

/* ---- 1.1 slots: per-call options ------------------------------------------ */

#define WHO "call options"
static const char *const READ_KEYS[] = {"version_stage", "version_id", NULL};
static const char *const NO_KEYS[] = {NULL};

/* read_secret with options: location version_stage or version_id (not
 * both), BYPASS_CACHE, NONBLOCKING; a numeric version pin is not available
 * on Secrets Manager (UNSUPPORTED, naming it). */
static kms_status read_opt(kms_instance *in, const char *name, const kms_call_options *o,
                           const read_sink *sink, kms_error *err) {
  kms_status st = kms_options_check(o, KMS_CALL_KIND_READ, READ_KEYS, WHO, err);
  if (st != KMS_OK) return st;
  read_req r = {0};
  if (o) {
    r.stage = kms_options_get(o, "version_stage");
    r.id = kms_options_get(o, "version_id");
    r.flags = o->flags & (KMS_CALL_BYPASS_CACHE | KMS_CALL_NONBLOCKING);
    if (KMS_FIELD_PRESENT(o, kms_call_options, version) && o->version)
      return kms_error_set(err, KMS_UNSUPPORTED, 0,
                           WHO ": a numeric 'version' is not supported: Secrets Manager versions "
                           "are ids; use location version_id or version_stage");
  }
  if (r.stage && r.id)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         WHO ": location 'version_stage' and 'version_id' together; give one");
  if ((r.stage && (st = sm_check_version_stage(r.stage, err)) != KMS_OK) ||
      (r.id && (st = sm_check_version_id(r.id, err)) != KMS_OK))
    return st;
  return read_secret(in, name, &r, sink, err);
}

static kms_status write_opt(kms_instance *in, const char *name, const char *value, size_t len,
                            const kms_write_options *wo, const kms_call_options *o,
                            kms_error *err) {
  kms_status st = kms_options_check(o, KMS_CALL_KIND_WRITE, NO_KEYS, WHO, err);
  return st == KMS_OK ? write_secret(in, name, value, len, wo, err) : st;
}

/* delete_mode SOFT (recovery window: the option's, else the setting's),
 * PERMANENT (ForceDeleteWithoutRecovery) or DEFAULT (the settings). */
static kms_status delete_opt(kms_instance *in, const char *name, const kms_call_options *o,
                             kms_error *err) {
  kms_status st = kms_options_check(o, KMS_CALL_KIND_DELETE, NO_KEYS, WHO, err);
  if (st != KMS_OK) return st;
  uint32_t mode = o && KMS_FIELD_PRESENT(o, kms_call_options, delete_mode) ? o->delete_mode : 0;
  uint32_t days = o && KMS_FIELD_PRESENT(o, kms_call_options, recovery_window_days)
                      ? o->recovery_window_days : 0;
  if (days && (days < 7 || days > 30))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         WHO ": recovery_window_days is %u; Secrets Manager allows 7 to 30",
                         (unsigned)days);
  if (days && mode == KMS_DELETE_PERMANENT)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         WHO ": recovery_window_days with delete_mode PERMANENT; a permanent "
                         "delete has no recovery window");
  int force = mode == KMS_DELETE_PERMANENT ||
              (mode == KMS_DELETE_DEFAULT && !days && in->cfg.force_delete);
  return delete_secret(in, name, days ? (int)days : in->cfg.recovery_window_days, force, err);
}

static kms_status ap_read_opt(kms_instance *in, const char *name, const kms_call_options *o,
                              kms_secret **out, kms_error *err) {
  *out = NULL;
  read_sink sink = {.out = out};
  return slot_end(in, read_opt(in, name, o, &sink, err), err);
}

/* Thread-safety: any thread. A fresh hit copies into buf under the cache's
 * shared lock and allocates nothing. */
static kms_status ap_read_into(kms_instance *in, const char *name, const kms_call_options *o,
                               char *buf, size_t size, kms_secret_info *info, kms_error *err) {
  read_sink sink = {.buf = buf, .size = size, .info = info};
  return slot_end(in, read_opt(in, name, o, &sink, err), err);
}


static kms_status ap_write_opt(kms_instance *in, const char *name, const char *value, size_t len,
                               const kms_write_options *wo, const kms_call_options *o,
                               kms_error *err) {
  return slot_end(in, write_opt(in, name, value, len, wo, o, err), err);
}

static kms_status ap_delete_opt(kms_instance *in, const char *name, const kms_call_options *o,
                                kms_error *err) {
  return slot_end(in, delete_opt(in, name, o, err), err);
}

/* list with primary_secret_name: the keys of the one JSON secret (read
 * through the cache, so a list right after reads costs no request). */
static kms_status list_fields(kms_instance *in, const char *prefix, kms_list_fn fn, void *ctx,
                              kms_error *err) {
  kpc_cache_value v = {0};
  unsigned flags;
  kms_status st = cached_get(in, in->cfg.primary_secret_name, 0, &v, &flags, err);
  if (st == KMS_NOT_FOUND) return KMS_OK; /* no document yet: no keys */
  if (st == KMS_OK) st = sm_field_names(v.data, v.len, prefix, fn, ctx, err);
  kpc_cache_value_clear(&v);
  return st;
}

/* At most this many ListSecrets pages per list (100 names each: 1,000,000
 * secrets, twice an account's quota): a NextToken that never ends stops
 * with an error instead of looping. */
#define LIST_MAX_PAGES 10000

/* ListSecrets with a name filter, following NextToken. Secrets scheduled
 * for deletion are left out (a read of one is NOT_FOUND). Names are whole
 * secret names, as read_secret takes them. With primary_secret_name, the
 * document's keys. fn is called with no plugin lock held. */
static kms_status list_secrets(kms_instance *in, const char *prefix, const kms_call_options *o,
                               kms_list_fn fn, void *ctx, kms_error *err) {
  kms_status st = kms_options_check(o, KMS_CALL_KIND_LIST, NO_KEYS, WHO, err);
  if (st != KMS_OK) return st;
  if (in->cfg.access_mode == AWS_ACCESS_WRITE_ONLY)
    return kms_error_set(err, KMS_PERMISSION_DENIED, 0,
                         "access_mode is write_only: listing is refused (set access_mode to "
                         "read_only or read_and_write to allow it)");
  if (!fn) return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "list: the callback is NULL");
  if (!prefix) prefix = "";
  if (in->cfg.primary_secret_name) return list_fields(in, prefix, fn, ctx, err);
  if (*prefix && (st = sm_check_name(prefix, err)) != KMS_OK)
    return kpc_error_prefix(st, err, "list prefix: ");
  call_ctx k = {in, 0};
  char *token = NULL;
  int stopped = 0, page = 0;
  do {
    if (++page > LIST_MAX_PAGES) {
      st = kms_error_set(err, KMS_INTERNAL, 0,
                         "list (ListSecrets): still a NextToken after %d pages; stopped (the "
                         "names delivered are true)", LIST_MAX_PAGES);
      break;
    }
    char *body = NULL, *next = NULL;
    size_t len = 0;
    kpc_http_response resp;
    if ((st = sm_body_list(prefix, token, &body, &len, err)) != KMS_OK) break;
    st = sm_op(&k, "list (ListSecrets)", "ListSecrets", body, len, NULL, 0, &resp, err);
    sm_free_body(body, len);
    if (st == KMS_OK)
      st = sm_parse_list(resp.body, resp.len, prefix, fn, ctx, &stopped, &next, err);
    kpc_http_response_clear(&resp);
    free(token);
    token = next;
  } while (st == KMS_OK && token && !stopped);
  free(token);
  return st;
}

static kms_status ap_list(kms_instance *in, const char *prefix, const kms_call_options *o,
                          kms_list_fn fn, void *ctx, kms_error *err) {
  return slot_end(in, list_secrets(in, prefix, o, fn, ctx, err), err);
}

static kms_status ap_health(kms_instance *in, kms_health *out, kms_error *err) {
  return health(in, out, err);
}

static const kms_plugin aws_plugin = {
    .struct_size = sizeof(kms_plugin),
    .abi_major = KMS_ABI_MAJOR,
    .abi_minor = KMS_ABI_MINOR,
    .name = "aws_secret_manager",
    .version = AWS_PLUGIN_VERSION,
    .capabilities = KMS_CAP_READ | KMS_CAP_WRITE | KMS_CAP_DELETE | KMS_CAP_REFRESH |
                    KMS_CAP_THREAD_SAFE | KMS_CAP_NOTIFY | KMS_CAP_LIST,
    .create = ap_create,
    .destroy = ap_destroy,
    .read_secret = ap_read,
    .write_secret = ap_write,
    .delete_secret = ap_delete,
    .refresh = ap_refresh,
    .free_secret = kms_secret_free_packed,
    .read_secret_opt = ap_read_opt,
    .write_secret_opt = ap_write_opt,
    .delete_secret_opt = ap_delete_opt,
    .read_secret_into = ap_read_into,
    .list_secrets = ap_list,
    .health = ap_health,
};

KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t host_major, uint32_t host_minor);
KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t host_major, uint32_t host_minor) {
  (void)host_minor;
  return host_major == KMS_ABI_MAJOR ? &aws_plugin : NULL;
}
