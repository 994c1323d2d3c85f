/*
 * plugin.c -- the hashicorp_vault plugin's vtable and entry point.
 *
 * What lives here: the instance (config + http + auth + cache + URL layout),
 * the access_mode gate (checked before any request), and the glue of each
 * slot: read = cache(single-flight, stale-if-error) -> GET data/ (one
 *   read path for the 1.0 and 1.1 slots: abi11.c's read_common);
 * write = POST data/ (a description inside the data, as LiteLLM; + POST
 *   metadata/ with description_metadata) -> cache update;
 * delete = DELETE data/ (soft) or metadata/ (destroy) -> cache invalidation;
 * refresh = credentials + re-read of every cached secret; the optional
 * background refresher (the shared kpc_refresher.c with refresher.c's
 * hooks, setting background_refresh) re-reads secrets before they expire
 * through the same fetch_secret().
 *
 * Thread-safety: KMS_CAP_THREAD_SAFE. read/write/delete/refresh/free_secret
 * may run concurrently on one instance: the config and URL layout are
 * immutable after create, the cache, HTTP pool and auth provider lock
 * internally, and no lock is held while logging. create/destroy follow the
 * ABI (never concurrent with anything else on the instance). Threads: with
 * background_refresh (and a cache, and reads allowed) create starts one
 * refresher thread; it runs concurrently with every slot, using only the
 * thread-safe cache/auth/http/logger, and destroy stops and joins it first
 * (cancelling a request it has in flight) before freeing anything.
 * Otherwise the plugin starts no threads.
 */
#include "instance.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#define VAULT_PLUGIN_VERSION "0.2.0"

static kms_status fetch_background(void *ctx, const char *url, kpc_cache_value *out,
                                   kms_error *err);

/* Messages are written without the plugin's name; it is added here, once,
 * on the way out of every slot (logging.c does the same for log lines). */
kms_status vault_boundary(kms_status st, kms_error *err) {
  return kpc_error_prefix(st, err, VAULT_MSG_PREFIX);
}

/* Thread-safety: ABI (nothing else runs on the instance). The refresher is
 * stopped and joined before anything it uses is freed. */
static void vp_destroy(kms_instance *in) {
  if (!in) return;
  vault_abi11_free(in); /* first: its thread uses everything below */
  vault_refresher_stop(in->refresher);
  kpc_cache_free(in->cache);
  vault_auth_free(in->auth);
  vault_http_free(in->http);
  kv2_layout_free(&in->layout);
  vault_config_free(&in->cfg);
  kms_stats_free(in->stats);
  pthread_mutex_destroy(&in->mu);
  free(in);
}

/* kpc_bgfetch's cancel: the instance's client (thread-safe). */
static void cancel_http(void *ctx) { vault_http_cancel(ctx); }

static kms_status create(const kms_host *host, const kms_setting *settings, size_t n,
                         kms_instance **out, kms_error *err) {
  *out = NULL;
  if (n && !settings) return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "settings is NULL");
  if (host && !KMS_FIELD_PRESENT(host, kms_host, ctx))
    host = NULL; /* too old to carry anything we use */
  kms_instance *in = calloc(1, sizeof *in);
  if (!in) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  in->lg.host = host;
  in->lg.prefix = VAULT_MSG_PREFIX;
  pthread_mutex_init(&in->mu, NULL);
  in->stats = kms_stats_new();
  if (!in->stats) {
    vp_destroy(in);
    return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  }
  kms_status st = vault_config_load(&in->cfg, host, settings, n, &in->lg, err);
  if (st == KMS_OK) st = kv2_layout_init(&in->layout, &in->cfg, err);
  if (st == KMS_OK) st = vault_http_new(&in->cfg, &in->lg, &in->clock, &in->http, err);
  if (st == KMS_OK) st = vault_auth_new(&in->cfg, in->http, &in->lg, &in->clock, &in->auth, err);
  if (st == KMS_OK) {
    /* background refresh only when something is cached and read */
    int bg = in->cfg.background_refresh && in->cfg.refresh_interval_s > 0 &&
             in->cfg.access_mode != VAULT_ACCESS_WRITE_ONLY;
    kpc_cache_options co = {
      .ttl_ms = in->cfg.refresh_interval_s * 1000,
      .stale_ms = in->cfg.stale_if_error_s * 1000,
      .stale_retry_ms = in->cfg.stale_retry_ms,
      .refresh_lo_pm = bg ? VAULT_REFRESH_LO_PM : 0,
      .refresh_hi_pm = bg ? VAULT_REFRESH_HI_PM : 0,
      .clock = in->clock,
      .neg_ttl_ms = in->cfg.neg_ttl_ms,
      .changed = vault_on_change,
      .changed_ctx = in,
    };
    in->cache = kpc_cache_new(&co);
    if (!in->cache) st = kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
    kpc_bgfetch_deps bd = {in->cache, fetch_background, in, vault_landed, in,
                           cancel_http, in->http, &in->lg};
    if (st == KMS_OK && !(in->bg = kpc_bgfetch_new(&bd)))
      st = kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
    if (st == KMS_OK && bg) {
      vault_refresher_deps d = {in->cache, fetch_background, in,        in->auth,
                                in->http,  &in->lg,          co.ttl_ms, &in->clock};
      st = vault_refresher_start(&d, &in->refresher, err);
    }
  }
  if (st != KMS_OK) {
    vp_destroy(in);
    return st;
  }
  *out = in;
  return KMS_OK;
}

static kms_status vp_create(const kms_host *host, const kms_setting *settings, size_t n,
                            kms_instance **out, kms_error *err) {
  return vault_boundary(create(host, settings, n, out, err), err);
}

vault_call_ctx vault_call_start(kms_instance *in) {
  return (vault_call_ctx){in, vault_http_deadline(in->http)};
}

/* One Vault request with the current token; on 403 the auth provider may
 * supply a new token, and the request is repeated once (never more). */
kms_status vault_call(const vault_call_ctx *k, const char *op, const char *method,
                             const char *url, const char *body, size_t body_len,
                             kpc_http_response *resp, kms_error *err) {
  kms_instance *in = k->in;
  kms_status st = KMS_OK;
  for (int round = 0; round < 2; round++) {
    char *token = NULL;
    uint64_t gen = 0;
    /* (health: every exchange, the login's too, is recorded in http.c) */
    if ((st = vault_auth_token(in->auth, k->deadline, &token, &gen, err)) != KMS_OK) return st;
    vault_http_request req = {op,  method,   url,         token,           NULL,
                              body, body_len, k->deadline, VAULT_CHECK_DATA};
    st = vault_http_perform(in->http, &req, resp, err);
    vault_auth_token_free(token);
    if (st != KMS_OK) return st;
    if (resp->status == 403 && round == 0 &&
        vault_auth_forbidden(in->auth, gen,
                             vault_errors_has(resp->body, resp->len, "invalid token"),
                             k->deadline)) {
      kpc_http_response_clear(resp);
      continue;
    }
    break;
  }
  return st;
}

/* The cache's fetch: ctx is the calling vault_call_ctx. The key (see
 * abi11.c) becomes the data URL: the instance's data base + the encoded
 * name, or the override's URL after '@'; "?version=N" is sent as is and
 * "#f=<field>" (read that field) is cut before sending. */
kms_status vault_fetch_secret(void *ctx, const char *key, kpc_cache_value *out,
                              kms_error *err) {
  vault_call_ctx *k = ctx;
  kms_instance *in = k->in;
  if (!k->deadline) k->deadline = vault_http_deadline(in->http); /* see read_cached */
  kms_stats_add(in->stats, KMS_STAT_FETCHES, 1);
  const char *hash = strstr(key, "#f="), *base = in->layout.data_base;
  if (key[0] == '@') {
    base = "";
    key++;
  }
  size_t bl = strlen(base), kl = hash ? (size_t)(hash - key) : strlen(key);
  char *url = malloc(bl + kl + 1);
  if (!url) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  memcpy(url, base, bl);
  memcpy(url + bl, key, kl);
  url[bl + kl] = '\0';
  const char *path = kpc_url_path(in->cfg.addr, url);
  kpc_http_response resp;
  kms_status st = vault_call(k, "read", "GET", url, NULL, 0, &resp, err);
  if (st == KMS_OK) {
    if (resp.status == 200)
      st = kv2_parse_read_field(resp.body, resp.len, path, hash ? hash + 3 : "key", &out->data,
                                &out->len, &out->version, err);
    else
      st = kv2_map_status("read", path, resp.status, resp.body, resp.len, resp.attempts, 1, err);
    kpc_http_response_clear(&resp);
  }
  free(url);
  return st;
}

/* The background refresher's fetch (ctx is the instance): a call of its own. */
static kms_status fetch_background(void *ctx, const char *url, kpc_cache_value *out,
                                   kms_error *err) {
  vault_call_ctx k = vault_call_start(ctx);
  return vault_fetch_secret(&k, url, out, err);
}

/* The 1.0 read is the 1.1 read without options (abi11.c): one read path. */
static kms_status vp_read(kms_instance *in, const char *name, kms_secret **out, kms_error *err) {
  return vault_read_opt(in, name, NULL, out, err);
}

static kms_status write_denied(const char *what, kms_error *err) {
  return kms_error_set(err, KMS_PERMISSION_DENIED, 0,
                       "access_mode is read_only: %s are refused (set access_mode to "
                       "read_and_write or write_only to allow them)", what);
}

/* Thread-safety: any thread (KMS_CAP_THREAD_SAFE). */
kms_status vault_do_write(kms_instance *in, const kv2_layout *l, const char *name,
                          const char *value, size_t len, const kms_write_options *opt,
                          kms_error *err) {
  if (in->cfg.access_mode == VAULT_ACCESS_READ_ONLY) return write_denied("writes", err);
  int cas = 0;
  uint64_t cas_version = 0;
  const char *description = in->cfg.description; /* the setting, unless the write gives one */
  if (opt) {
    if (KMS_FIELD_PRESENT(opt, kms_write_options, flags) && (opt->flags & KMS_WRITE_CAS) &&
        KMS_FIELD_PRESENT(opt, kms_write_options, cas_version)) {
      cas = 1;
      cas_version = opt->cas_version;
    }
    if (KMS_FIELD_PRESENT(opt, kms_write_options, description) && opt->description &&
        opt->description[0])
      description = opt->description;
  }
  char *url = NULL, *body = NULL;
  size_t body_len = 0;
  vault_key key;
  kms_status st = vault_key_make(in, l, name, 0, NULL, &key, err);
  if (st == KMS_OK && (st = kv2_url(l, KV2_DATA, name, &url, err)) != KMS_OK) vault_key_free(&key);
  if (st != KMS_OK) return st;
  const char *path = kpc_url_path(in->cfg.addr, url);
  if ((st = kv2_write_body_desc(value, len, description, cas, cas_version, &body, &body_len,
                                err)) != KMS_OK) {
    vault_key_free(&key);
    free(url);
    return st;
  }
  kpc_http_response resp;
  vault_call_ctx k = vault_call_start(in);
  st = vault_call(&k, "write", "POST", url, body, body_len, &resp, err);
  kv2_free_body(body, body_len);
  if (st == KMS_OK) {
    if (resp.status == 200 || resp.status == 204) {
      int64_t version = kv2_parse_write_version(resp.body, resp.len);
      kpc_cache_invalidate_all(in->cache, key.s); /* version pins, fields, a "not found" */
      if (in->cfg.access_mode == VAULT_ACCESS_READ_AND_WRITE)
        kpc_cache_put(in->cache, key.s, value, len, version);
      else
        kpc_cache_invalidate(in->cache, key.s);
    } else {
      st = kv2_map_status("write", path, resp.status, resp.body, resp.len, resp.attempts, 1, err);
    }
    kpc_http_response_clear(&resp);
  }
  if (st != KMS_OK) kpc_cache_invalidate_all(in->cache, key.s); /* state unknown */
  vault_key_free(&key);

  if (st == KMS_OK && description && in->cfg.description_metadata) {
    char *murl = NULL;
    if ((st = kv2_url(l, KV2_METADATA, name, &murl, err)) == KMS_OK &&
        (st = kv2_metadata_body(description, &body, &body_len, err)) == KMS_OK) {
      st = vault_call(&k, "write metadata", "POST", murl, body, body_len, &resp, err);
      kv2_free_body(body, body_len);
      if (st == KMS_OK) {
        if (resp.status != 200 && resp.status != 204)
          st = kv2_map_status("write metadata", kpc_url_path(in->cfg.addr, murl), resp.status,
                              resp.body, resp.len, resp.attempts, 1, err);
        kpc_http_response_clear(&resp);
      }
    }
    free(murl);
  }
  free(url);
  return st;
}

static kms_status write_secret(kms_instance *in, const char *name, const char *value, size_t len,
                               const kms_write_options *opt, kms_error *err) {
  return vault_do_write(in, &in->layout, name, value, len, opt, err);
}

static kms_status vp_write(kms_instance *in, const char *name, const char *value, size_t len,
                           const kms_write_options *opt, kms_error *err) {
  return vault_slot_end(in, write_secret(in, name, value, len, opt, err), err);
}

/* Thread-safety: any thread (KMS_CAP_THREAD_SAFE). */
kms_status vault_do_delete(kms_instance *in, const kv2_layout *l, const char *name, int destroy,
                           kms_error *err) {
  if (in->cfg.access_mode == VAULT_ACCESS_READ_ONLY) return write_denied("deletes", err);
  char *url = NULL;
  vault_key key;
  kms_status st = vault_key_make(in, l, name, 0, NULL, &key, err);
  if (st != KMS_OK) return st;
  if ((st = kv2_url(l, destroy ? KV2_METADATA : KV2_DATA, name, &url, err)) != KMS_OK) {
    vault_key_free(&key);
    return st;
  }
  const char *target = url;
  kpc_cache_invalidate_all(in->cache, key.s);
  kpc_http_response resp;
  vault_call_ctx k = vault_call_start(in);
  st = vault_call(&k, destroy ? "destroy" : "delete",
                  "DELETE", target, NULL, 0, &resp, err);
  if (st == KMS_OK) {
    if (resp.status != 200 && resp.status != 204 && resp.status != 404)
      st = kv2_map_status("delete", kpc_url_path(in->cfg.addr, target), resp.status, resp.body,
                          resp.len, resp.attempts, 1, err);
    kpc_http_response_clear(&resp);
  }
  kpc_cache_invalidate_all(in->cache, key.s); /* a read may have raced the delete */
  vault_key_free(&key);
  free(url);
  return st;
}

static kms_status delete_secret(kms_instance *in, const char *name, kms_error *err) {
  return vault_do_delete(in, &in->layout, name, in->cfg.delete_mode == VAULT_DELETE_DESTROY, err);
}

static kms_status vp_delete(kms_instance *in, const char *name, kms_error *err) {
  return vault_slot_end(in, delete_secret(in, name, err), err);
}

/* Credentials, then a re-read of every cached secret, all in one call's
 * deadline. */
static kms_status refresh(kms_instance *in, kms_error *err) {
  vault_call_ctx k = vault_call_start(in);
  kms_status st = vault_auth_refresh(in->auth, k.deadline, err);
  if (st != KMS_OK) return st;
  if (in->cfg.access_mode == VAULT_ACCESS_WRITE_ONLY) return KMS_OK;
  char **keys = NULL;
  size_t n = kpc_cache_keys(in->cache, &keys), failed = 0;
  kms_error first;
  kms_error_clear(&first);
  for (size_t i = 0; i < n; i++) {
    kpc_cache_value v;
    kms_error e;
    kms_error_clear(&e);
    kms_status s = kpc_cache_get(in->cache, keys[i], 1, vault_fetch_secret, &k, &v, NULL, &e);
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

static kms_status vp_refresh(kms_instance *in, kms_error *err) {
  return vault_slot_end(in, refresh(in, err), err);
}

static const kms_plugin vault_plugin = {
  .struct_size = sizeof(kms_plugin),
  .abi_major = KMS_ABI_MAJOR,
  .abi_minor = KMS_ABI_MINOR,
  .name = "hashicorp_vault",
  .version = VAULT_PLUGIN_VERSION,
  .capabilities = KMS_CAP_READ | KMS_CAP_WRITE | KMS_CAP_DELETE | KMS_CAP_REFRESH |
                  KMS_CAP_THREAD_SAFE | KMS_CAP_LIST | KMS_CAP_NOTIFY,
  .create = vp_create,
  .destroy = vp_destroy,
  .read_secret = vp_read,
  .write_secret = vp_write,
  .delete_secret = vp_delete,
  .refresh = vp_refresh,
  .free_secret = kms_secret_free_packed, /* every read makes one (abi11.c's sink_secret) */
  .read_secret_opt = vault_read_opt,
  .write_secret_opt = vault_write_opt,
  .delete_secret_opt = vault_delete_opt,
  .read_secret_into = vault_read_into,
  .list_secrets = vault_list,
  .health = vault_health,
};

KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t host_major, uint32_t host_minor);
KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t host_major, uint32_t host_minor) {
  (void)host_minor;
  return host_major == KMS_ABI_MAJOR ? &vault_plugin : NULL;
}
