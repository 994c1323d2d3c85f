/*
 * abi11.c -- the hashicorp_vault plugin's ABI 1.1 slots: per-call options
 * (location overrides namespace / mount / path_prefix / field, version pin,
 * delete mode, NONBLOCKING, BYPASS_CACHE), the buffer read, listing, health
 * and change notifications.
 *
 * Cache keys: cachekey.c (the format, both directions). A write or delete
 * through the instance drops every key of the secret
 * (kpc_cache_invalidate_all), a cached "not found" included.
 *
 * NONBLOCKING: kpc_cache_peek answers at once; on a miss (or a stale
 * serve) the key goes to the shared background fetcher (kpc_bgfetch: one
 * thread, started on the first such miss and stopped by destroy; the fetch
 * goes through kpc_cache_get, i.e. the read path's single-flight).
 *
 * Notifications: the cache reports a new version or a disappearance of a
 * value it held (vault_on_change, called with no cache lock held); the
 * name and location are recovered from the key (the instance's own layout,
 * or an override layout registered by the call that used it) and passed to
 * host->notify (kpc_notify) outside every plugin lock. A NONBLOCKING fetch that lands
 * also notifies (the host asked for a value it has not got yet).
 *
 * Thread-safety: every slot here may run concurrently (KMS_CAP_THREAD_SAFE);
 * in->mu guards only the override registry, and is never held while calling the host, Vault or the cache.
 */
#include "instance.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHO "call options"
#define MAX_LOCS 64 /* override layouts remembered for notify (teams) */

static const char *const LOCATION_KEYS[] = {"namespace", "mount", "path_prefix", "field", NULL};

/* ---- health -------------------------------------------------------------- */

/* Never touches Vault: counters, the last observations, the auth state. */
kms_status vault_health(kms_instance *in, kms_health *out, kms_error *err) {
  (void)err;
  kms_stats_fill(in->stats, out);
  uint64_t logins = 0, renewals = 0;
  int64_t ttl = -1;
  vault_auth_health(in->auth, &logins, &renewals, &ttl);
  int reachable, authenticated;
  vault_http_health(in->http, &reachable, &authenticated);
#define PUT(f, v) \
  if (KMS_FIELD_PRESENT(out, kms_health, f)) out->f = (v)
  PUT(reachable, reachable);
  PUT(authenticated, authenticated);
  PUT(token_ttl_seconds, ttl);
  PUT(cache_entries, kpc_cache_size(in->cache));
  PUT(logins, logins);
  PUT(renewals, renewals);
#undef PUT
  return KMS_OK;
}

/* ---- locations ------------------------------------------------------------ */

/* Where one call goes: the instance's layout or an override's. */
typedef struct vault_loc {
  kv2_layout own;
  const kv2_layout *l;
  const char *field; /* NULL: "key" */
} vault_loc;

/* An override layout remembered for notify: its data base and settings. */
typedef struct loc_entry {
  char *data_base;
  kms_setting set[3];
  size_t n;
} loc_entry;

struct vault_locs {
  loc_entry e[MAX_LOCS];
  size_t n;
};

/* A namespace, mount or prefix follows the settings' rules (no leading or
 * trailing '/', no empty, "." or ".." segment, no control character); a
 * field is a non-empty printable name. */
static kms_status check_value(const char *key, const char *v, kms_error *err) {
  kms_error e;
  int bad = !*v;
  if (!bad && strcmp(key, "field") == 0) {
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
      if (*p < 0x20 || *p == 0x7f) bad = 1;
  } else if (!bad) {
    bad = kv2_validate_name(v, &e) != KMS_OK;
  }
  if (bad)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s: location '%s' is not valid: use '/'-separated names without "
                         "empty, '.' or '..' segments, leading or trailing '/' or control "
                         "characters", WHO, key);
  return KMS_OK;
}

static void remember_loc(kms_instance *in, const vault_loc *loc, const kms_call_options *o) {
  pthread_mutex_lock(&in->mu);
  if (!in->locs) in->locs = calloc(1, sizeof *in->locs);
  vault_locs *r = in->locs;
  int known = !r;
  for (size_t i = 0; r && i < r->n && !known; i++)
    known = strcmp(r->e[i].data_base, loc->l->data_base) == 0;
  if (!known && r->n < MAX_LOCS) {
    loc_entry *e = &r->e[r->n];
    memset(e, 0, sizeof *e);
    int ok = (e->data_base = strdup(loc->l->data_base)) != NULL;
    for (size_t i = 0; ok && i < 3; i++) {
      const char *v = kms_options_get(o, LOCATION_KEYS[i]);
      if (!v) continue;
      e->set[e->n].key = LOCATION_KEYS[i];
      ok = (e->set[e->n].value = strdup(v)) != NULL;
      if (ok) e->n++;
    }
    if (ok) {
      r->n++;
    } else {
      free(e->data_base);
      for (size_t i = 0; i < e->n; i++) free((char *)e->set[i].value);
    }
  }
  pthread_mutex_unlock(&in->mu);
}

/* Resolve the location of a call (options already checked by the caller). */
static kms_status loc_open(kms_instance *in, const kms_call_options *o, vault_loc *loc,
                           kms_error *err) {
  memset(loc, 0, sizeof *loc);
  loc->l = &in->layout;
  if (!o || !KMS_FIELD_PRESENT(o, kms_call_options, n_location) || !o->n_location)
    return KMS_OK; /* no location entry: the common case, and the cheap one */
  for (size_t i = 0; LOCATION_KEYS[i]; i++) {
    const char *v = kms_options_get(o, LOCATION_KEYS[i]);
    kms_status st = v ? check_value(LOCATION_KEYS[i], v, err) : KMS_OK;
    if (st != KMS_OK) return st;
  }
  const char *ns = kms_options_get(o, "namespace"), *mount = kms_options_get(o, "mount");
  const char *prefix = kms_options_get(o, "path_prefix"), *field = kms_options_get(o, "field");
  if (field && strcmp(field, "key") != 0) loc->field = field;
  if (!ns && !mount && !prefix) return KMS_OK;
  vault_config c = in->cfg; /* shallow: only the three pointers change */
  if (ns) c.secret_namespace = (char *)ns;
  if (mount) c.mount = (char *)mount;
  if (prefix) c.prefix = (char *)prefix;
  kms_status st = kv2_layout_init(&loc->own, &c, err);
  if (st != KMS_OK) return st;
  loc->l = &loc->own;
  remember_loc(in, loc, o);
  return KMS_OK;
}

static void loc_close(vault_loc *loc) {
  if (loc->l == &loc->own) kv2_layout_free(&loc->own);
}

/* ---- notifications --------------------------------------------------------- */

/* Key -> name and location (copied out of the registry under in->mu, then
 * the host is called with no lock held). Pinned versions never change. */
void vault_on_change(void *ctx, const char *key, int kind, int64_t version) {
  kms_instance *in = ctx;
  if (strstr(key, "?version=")) return;
  const char *f = strstr(key, "#f="), *end = f ? f : key + strlen(key);
  kms_setting loc[4];
  size_t n = 0;
  char *vals[3] = {NULL, NULL, NULL};
  const char *rest = key[0] == '@' ? NULL : key; /* a bare name: the instance's layout */
  pthread_mutex_lock(&in->mu);
  for (size_t i = 0; !rest && in->locs && i < in->locs->n; i++) {
    const loc_entry *e = &in->locs->e[i];
    size_t el = strlen(e->data_base);
    if (strncmp(key + 1, e->data_base, el) != 0) continue;
    rest = key + 1 + el;
    for (size_t j = 0; j < e->n; j++) {
      vals[j] = strdup(e->set[j].value);
      if (vals[j]) loc[n++] = (kms_setting){e->set[j].key, vals[j]};
    }
  }
  pthread_mutex_unlock(&in->mu);
  if (f) loc[n++] = (kms_setting){"field", f + 3};
  char *name = rest && rest < end ? vault_key_decode(rest, (size_t)(end - rest)) : NULL;
  if (name)
    kpc_notify(&in->lg, name, kind == KPC_CHANGE_DELETED ? KMS_CHANGE_DELETED : KMS_CHANGE_UPDATED,
                version, loc, n);
  free(name);
  for (size_t j = 0; j < 3; j++) free(vals[j]);
}

/* ---- background fetches of NONBLOCKING misses ------------------------------ */

/* kpc_bgfetch's `landed` (ctx: the instance): a NONBLOCKING fetch stored a
 * value the host has not got yet; pinned versions are never reported.
 * Thread-safety: the fetcher's thread, no plugin lock held. */
void vault_landed(void *ctx, const char *key, int64_t version) {
  if (!strstr(key, "?version=")) vault_on_change(ctx, key, KPC_CHANGE_UPDATED, version);
}

void vault_abi11_free(kms_instance *in) {
  kpc_bgfetch_free(in->bg); /* cancels the HTTP client, joins the thread */
  in->bg = NULL;
  if (in->locs) {
    for (size_t i = 0; i < in->locs->n; i++) {
      free(in->locs->e[i].data_base);
      for (size_t j = 0; j < in->locs->e[i].n; j++) free((char *)in->locs->e[i].set[j].value);
    }
    free(in->locs);
    in->locs = NULL;
  }
}

/* ---- reads ------------------------------------------------------------------ */

/* What a read hands back: a kms_secret, or bytes in the caller's buffer. */
typedef struct read_sink {
  kms_secret **out;     /* read_secret_opt */
  char *buf;            /* read_secret_into */
  size_t size;
  kms_secret_info *info;
  kms_error *err;
} read_sink;

/* The kpc_cache_into_fn of each read: on a hit it runs under the cache's
 * shared lock (one stripe), so it only copies (and allocates at most one
 * block); after a fetch it gets the fetched copy. */

/* read_secret_into: into the caller's buffer, nothing allocated. */
static kms_status sink_into(void *ctx, const kpc_cache_value *v, unsigned flags) {
  read_sink *s = ctx;
  return kms_secret_copy_into(v->data, v->len, v->version,
                              (flags & KPC_CACHE_STALE) ? KMS_SECRET_STALE : 0, s->buf, s->size,
                              s->info, "read", s->err);
}

/* read_secret(_opt): one packed block (kms_secret_new_packed; the
 * free_secret slot is kms_secret_free_packed). */
static kms_status sink_secret(void *ctx, const kpc_cache_value *v, unsigned flags) {
  read_sink *s = ctx;
  kms_status st = kms_secret_new_packed(v->data, v->len, s->out, s->err);
  if (st != KMS_OK) return st;
  (*s->out)->version = v->version;
  (*s->out)->flags = (flags & KPC_CACHE_STALE) ? KMS_SECRET_STALE : 0;
  return KMS_OK;
}

/* One read through the cache, as the flags ask. */
static kms_status read_cached(kms_instance *in, const char *key, uint32_t flags, read_sink *s,
                              unsigned *cflags, kms_error *why) {
  kpc_cache_into_fn sink = s->out ? sink_secret : sink_into;
  /* deadline 0: set by vault_fetch_secret when a fetch starts, so a cache
   * hit does not pay for reading the clock */
  vault_call_ctx k = {in, 0};
  return kpc_read_cached(in->cache, in->bg, key, flags, vault_fetch_secret, &k, sink, s, cflags,
                         why);
}

static kms_status read_common(kms_instance *in, const char *name, const kms_call_options *o,
                              read_sink *s) {
  kms_error *err = s->err;
  if (in->cfg.access_mode == VAULT_ACCESS_WRITE_ONLY)
    return kms_error_set(err, KMS_PERMISSION_DENIED, 0,
                         "access_mode is write_only: reads are refused (set access_mode to "
                         "read_only or read_and_write to allow them)");
  kms_status st = kms_options_check(o, KMS_CALL_KIND_READ, LOCATION_KEYS, WHO, err);
  if (st != KMS_OK) return st;
  uint32_t flags = o && KMS_FIELD_PRESENT(o, kms_call_options, flags) ? o->flags : 0;
  int64_t version = o && KMS_FIELD_PRESENT(o, kms_call_options, version) ? o->version : 0;
  vault_loc loc;
  vault_key key;
  if ((st = loc_open(in, o, &loc, err)) != KMS_OK) return st;
  st = vault_key_make(in, loc.l, name, version, loc.field, &key, err);
  loc_close(&loc);
  if (st != KMS_OK) return st;
  unsigned cflags = 0;
  kms_error why; /* the cache's and the sinks' errors: err gets it on a failure */
  kms_error_clear(&why);
  read_sink to = *s;
  to.err = &why;
  st = read_cached(in, key.s, flags, &to, &cflags, &why);
  vault_key_free(&key);
  kpc_cache_count_read(in->stats, st, cflags);
  if ((cflags & KPC_CACHE_WARN) && st == KMS_OK)
    kpc_logf(&in->lg, KMS_LOG_WARN,
               "Vault is unavailable, serving cached secrets marked stale (for up to %lld s "
               "after expiry, setting stale_if_error): %s",
               (long long)in->cfg.stale_if_error_s, why.message);
  if (st != KMS_OK && err) *err = why;
  return st;
}

kms_status vault_read_opt(kms_instance *in, const char *name, const kms_call_options *o,
                          kms_secret **out, kms_error *err) {
  *out = NULL;
  read_sink s = {.out = out, .err = err};
  return vault_slot_end(in, read_common(in, name, o, &s), err);
}

/* Thread-safety: any thread. A fresh hit copies into buf under the cache's
 * shared lock and allocates nothing. */
kms_status vault_read_into(kms_instance *in, const char *name, const kms_call_options *o,
                           char *buf, size_t size, kms_secret_info *info, kms_error *err) {
  read_sink s = {.buf = buf, .size = size, .info = info, .err = err};
  return vault_slot_end(in, read_common(in, name, o, &s), err);
}

/* ---- writes and deletes -------------------------------------------------------- */

kms_status vault_write_opt(kms_instance *in, const char *name, const char *value, size_t len,
                           const kms_write_options *wo, const kms_call_options *o,
                           kms_error *err) {
  kms_status st = kms_options_check(o, KMS_CALL_KIND_WRITE, LOCATION_KEYS, WHO, err);
  vault_loc loc = {0};
  if (st == KMS_OK) st = loc_open(in, o, &loc, err);
  if (st == KMS_OK && loc.field)
    st = kms_error_set(err, KMS_UNSUPPORTED, 0,
                       "%s: location 'field' is for reads; a write stores the value as "
                       "field \"key\" (a KV write replaces every field of the secret)", WHO);
  if (st == KMS_OK) st = vault_do_write(in, loc.l, name, value, len, wo, err);
  loc_close(&loc);
  return vault_slot_end(in, st, err);
}

kms_status vault_delete_opt(kms_instance *in, const char *name, const kms_call_options *o,
                            kms_error *err) {
  kms_status st = kms_options_check(o, KMS_CALL_KIND_DELETE, LOCATION_KEYS, WHO, err);
  uint32_t mode = o && KMS_FIELD_PRESENT(o, kms_call_options, delete_mode) ? o->delete_mode : 0;
  uint32_t days = o && KMS_FIELD_PRESENT(o, kms_call_options, recovery_window_days)
                      ? o->recovery_window_days : 0;
  if (st == KMS_OK && days)
    st = kms_error_set(err, KMS_UNSUPPORTED, 0,
                       "%s: option 'recovery_window_days' is not supported: Vault KV v2 keeps "
                       "soft-deleted versions until they are destroyed (use 0)", WHO);
  vault_loc loc = {0};
  if (st == KMS_OK) st = loc_open(in, o, &loc, err);
  int destroy = mode == KMS_DELETE_PERMANENT ||
                (mode == KMS_DELETE_DEFAULT && in->cfg.delete_mode == VAULT_DELETE_DESTROY);
  if (st == KMS_OK) st = vault_do_delete(in, loc.l, name, destroy, err);
  loc_close(&loc);
  return vault_slot_end(in, st, err);
}

/* ---- listing ------------------------------------------------------------------ */

/* One listing: what to match, where to deliver, and the folder being read. */
typedef struct list_call {
  kms_instance *in;
  const kv2_layout *l;
  const char *prefix;
  kms_list_fn fn;
  void *ctx;
  int stopped;
  char **keys; /* the current folder's entries, collected before recursing */
  size_t n, cap;
} list_call;

static int collect(void *ctx, const char *key) {
  list_call *c = ctx;
  if (c->n == c->cap) {
    size_t nc = c->cap ? c->cap * 2 : 32;
    char **nk = realloc(c->keys, nc * sizeof *nk);
    if (!nk) return 1;
    c->keys = nk;
    c->cap = nc;
  }
  if (!(c->keys[c->n] = strdup(key))) return 1;
  c->n++;
  return 0;
}

/* Does anything under folder `dir` (ends with '/' or is "") match prefix? */
static int may_match(const char *dir, const char *prefix) {
  size_t d = strlen(dir), p = strlen(prefix);
  return strncmp(dir, prefix, d < p ? d : p) == 0;
}

/* LIST one folder (dir "" or "a/b/") and recurse into its subfolders. */
static kms_status list_dir(list_call *c, const vault_call_ctx *k, const char *dir,
                           kms_error *err) {
  size_t dl = strlen(dir);
  char *enc = dl ? vault_encode_path(dir) : strdup("");
  size_t bl = strlen(c->l->meta_base);
  char *url = enc ? malloc(bl + strlen(enc) + 1) : NULL;
  if (!url) {
    free(enc);
    return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  }
  memcpy(url, c->l->meta_base, bl);
  strcpy(url + bl, enc);
  free(enc);
  kpc_http_response resp;
  kms_status st = vault_call(k, "list", "LIST", url, NULL, 0, &resp, err);
  list_call sub = *c;
  sub.keys = NULL;
  sub.n = sub.cap = 0;
  if (st == KMS_OK) {
    const char *path = kpc_url_path(c->in->cfg.addr, url);
    if (resp.status == 200)
      st = kv2_parse_list(resp.body, resp.len, path, collect, &sub, err);
    else if (resp.status != 404) /* 404: an empty folder */
      st = kv2_map_status("list", path, resp.status, resp.body, resp.len, resp.attempts, 1, err);
    kpc_http_response_clear(&resp);
  }
  free(url);
  for (size_t i = 0; i < sub.n && st == KMS_OK && !c->stopped; i++) {
    size_t kl = strlen(sub.keys[i]);
    char *full = malloc(dl + kl + 1);
    if (!full) {
      st = kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
      break;
    }
    memcpy(full, dir, dl);
    memcpy(full + dl, sub.keys[i], kl + 1);
    if (kl && full[dl + kl - 1] == '/') {
      if (may_match(full, c->prefix)) st = list_dir(c, k, full, err);
    } else if (strncmp(full, c->prefix, strlen(c->prefix)) == 0 && c->fn(c->ctx, full)) {
      c->stopped = 1;
    }
    free(full);
  }
  for (size_t i = 0; i < sub.n; i++) free(sub.keys[i]);
  free(sub.keys);
  return st;
}

/* Vault's LIST returns a folder's entries in one answer (no pages to
 * follow); folders are walked one LIST each, only where the prefix can
 * match. fn is called with no plugin lock held. */
kms_status vault_list(kms_instance *in, const char *prefix, const kms_call_options *o,
                      kms_list_fn fn, void *ctx, kms_error *err) {
  kms_status st = kms_options_check(o, KMS_CALL_KIND_LIST, LOCATION_KEYS, WHO, err);
  if (st == KMS_OK && in->cfg.access_mode == VAULT_ACCESS_WRITE_ONLY)
    st = kms_error_set(err, KMS_PERMISSION_DENIED, 0,
                       "access_mode is write_only: listing is refused (set access_mode to "
                       "read_only or read_and_write to allow it)");
  vault_loc loc = {0};
  if (st == KMS_OK) st = loc_open(in, o, &loc, err);
  if (st == KMS_OK) {
    if (!prefix) prefix = "";
    const char *slash = strrchr(prefix, '/');
    char *dir = strndup(prefix, slash ? (size_t)(slash - prefix) + 1 : 0);
    list_call c = {.in = in, .l = loc.l, .prefix = prefix, .fn = fn, .ctx = ctx};
    vault_call_ctx k = vault_call_start(in);
    st = dir ? list_dir(&c, &k, dir, err) : kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
    free(dir);
  }
  loc_close(&loc);
  return vault_slot_end(in, st, err);
}
