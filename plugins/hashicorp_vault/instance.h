/*
 * instance.h -- the hashicorp_vault instance as plugin.c (lifecycle, the
 * 1.0 slots, the vtable), abi11.c (the 1.1 slots: options, buffer read,
 * listing, health, notifications, the never-blocking read), ops.c (the
 * request, fetch, write and delete they share) and cachekey.c (cache keys)
 * share it. Private to the plugin.
 *
 * Thread-safety: as plugin.c's header comment says; the fields below are
 * immutable after create except those named atomic.
 */
#ifndef VAULT_INSTANCE_H
#define VAULT_INSTANCE_H

#include "auth.h"
#include "kpc_cache.h"
#include "common.h"
#include "config.h"
#include "http.h"
#include "kms_plugin_util.h"
#include "kv2.h"
#include "kpc_log.h"
#include "kpc_bgfetch.h"
#include "refresher.h"

typedef struct vault_locs vault_locs;   /* abi11.c: location overrides seen, for notify */

struct kms_instance {
  kpc_logger lg;
  kpc_clock clock; /* CLOCK_MONOTONIC (zeroed); one clock for http, auth, cache, refresher */
  vault_config cfg;
  kv2_layout layout;
  vault_http *http;
  vault_auth *auth;
  kpc_cache *cache;
  vault_refresher *refresher; /* NULL unless background_refresh */
  kms_stats *stats;           /* health counters (thread-safe) */
  kpc_bgfetch *bg;              /* fetches of NONBLOCKING misses (thread on first use) */
  vault_locs *locs;             /* location overrides (for notify), lazily */
  pthread_mutex_t mu;           /* guards locs; never held across calls out */
};

/* One plugin call: every request, login, retry and wait it causes shares
 * its deadline (VAULT_CLIENT_TIMEOUT from the start of the call). */
typedef struct vault_call_ctx {
  kms_instance *in;
  int64_t deadline;
} vault_call_ctx;

/* ---- cachekey.c: cache keys ---- */

/* A read's cache key (format: the top of cachekey.c), built in `stack` unless
 * it is longer (a long field or override URL: then malloc'ed). */
typedef struct vault_key {
  char *s;
  char stack[KV2_ENC_MAX + 512];
} vault_key;

/* The key of `name` at layout l (the instance's or an override's), with a
 * version pin (0: none) and a field (NULL: "key"). Validates the name.
 * Free with vault_key_free (also after a failure). Thread-safe. */
kms_status vault_key_make(const kms_instance *in, const kv2_layout *l, const char *name,
                          int64_t version, const char *field, vault_key *k, kms_error *err);
void vault_key_free(vault_key *k);
/* Percent-decode a key's name part (n bytes) into a new string (NULL: out
 * of memory). */
char *vault_key_decode(const char *s, size_t n);

/* ---- ops.c: what every slot shares ---- */

vault_call_ctx vault_call_start(kms_instance *in);

/* One Vault request with the current token (403: one re-login and retry). */
kms_status vault_call(const vault_call_ctx *k, const char *op, const char *method,
                      const char *url, const char *body, size_t body_len,
                      kpc_http_response *resp, kms_error *err);

/* The cache's fetch (ctx: a vault_call_ctx; a deadline of 0 is set to the
 * call's deadline here, when the first fetch starts). The key is a
 * vault_key_make key (cachekey.c). */
kms_status vault_fetch_secret(void *ctx, const char *key, kpc_cache_value *out,
                              kms_error *err);

/* The write and delete bodies, taking a resolved layout (abi11.c adds the
 * options around them; plugin.c's 1.0 slots pass the instance's). */
kms_status vault_do_write(kms_instance *in, const kv2_layout *l, const char *name,
                          const char *value, size_t len, const kms_write_options *opt,
                          kms_error *err);
kms_status vault_do_delete(kms_instance *in, const kv2_layout *l, const char *name, int destroy,
                           kms_error *err);

/* Adds the plugin's name to err's message; returns st. */
kms_status vault_boundary(kms_status st, kms_error *err);

/* Count a slot's outcome for health and add the plugin's name. */
kms_status vault_slot_end(kms_instance *in, kms_status st, kms_error *err);

/* ---- abi11.c: the 1.1 slots, notifications ---- */

/* The cache's change observer (ctx: the instance): host->notify. */
void vault_on_change(void *ctx, const char *key, int kind, int64_t version);

/* kpc_bgfetch's landed hook (ctx: the instance): notify, unless pinned. */
void vault_landed(void *ctx, const char *key, int64_t version);

/* abi11.c: stop the background fetcher, free the location registry. */
void vault_abi11_free(kms_instance *in);

/* The 1.1 slots (abi11.c). */
kms_status vault_read_opt(kms_instance *in, const char *name, const kms_call_options *o,
                          kms_secret **out, kms_error *err);
kms_status vault_write_opt(kms_instance *in, const char *name, const char *value, size_t len,
                           const kms_write_options *wo, const kms_call_options *o,
                           kms_error *err);
kms_status vault_delete_opt(kms_instance *in, const char *name, const kms_call_options *o,
                            kms_error *err);
kms_status vault_read_into(kms_instance *in, const char *name, const kms_call_options *o,
                           char *buf, size_t size, kms_secret_info *info, kms_error *err);
kms_status vault_list(kms_instance *in, const char *prefix, const kms_call_options *o,
                      kms_list_fn fn, void *ctx, kms_error *err);
kms_status vault_health(kms_instance *in, kms_health *out, kms_error *err);

#endif
