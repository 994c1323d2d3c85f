/*
 * plugin.c -- the hashicorp_vault plugin's vtable and entry point.
 *
 * What lives here: the instance's life (create: config + http + auth +
 * cache + URL layout + background threads; destroy), the 1.0 slots and
 * refresh, and the vtable. The slots are thin: ops.c does the work every
 * slot shares (the access_mode gate, checked before any request; one
 * authenticated request; the cache's fetch; write = POST data/, with a
 * description inside the data as LiteLLM, + POST metadata/ with
 * description_metadata, then the cache updated; delete = DELETE data/
 * (soft) or metadata/ (destroy), then the cache's keys dropped) and abi11.c
 * the 1.1 slots around it (read = one path for 1.0 and 1.1: the cache,
 * single-flight, stale-if-error, then GET data/). refresh = credentials +
 * re-read of every cached secret; the optional background refresher (the
 * shared kpc_refresher.c with refresher.c's hooks, setting
 * background_refresh) re-reads secrets before they expire through the same
 * fetch.
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

static kms_status write_secret(kms_instance *in, const char *name, const char *value, size_t len,
                               const kms_write_options *opt, kms_error *err) {
  return vault_do_write(in, &in->layout, name, value, len, opt, err);
}

static kms_status vp_write(kms_instance *in, const char *name, const char *value, size_t len,
                           const kms_write_options *opt, kms_error *err) {
  return vault_slot_end(in, write_secret(in, name, value, len, opt, err), err);
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
