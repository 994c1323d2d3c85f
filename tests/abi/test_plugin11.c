/*
 * test_plugin11.c -- full.so, a purpose-built ABI 1.1 plugin: every 1.1 slot
 * over a tiny versioned in-memory backend shared by all instances of the
 * process (so one instance can change what another has cached, the way
 * another gateway worker rotates a key in Vault), with a per-instance cache.
 *
 *   location key  `namespace` ([a-z0-9_]{1,31}); anything else is refused.
 *   read          cache first; BYPASS_CACHE asks the backend; NONBLOCKING
 *                 answers from the cache or starts one background fetch and
 *                 says UNAVAILABLE; `version` pins a backend version.
 *   delete        soft (default): the latest version is hidden, pinned reads
 *                 of older ones still work; permanent: every version goes.
 *   notify        UPDATED / DELETED when a refresh, a read or the background
 *                 fetch finds the backend differs from the cache.
 *
 * Its locks are error-checking mutexes: a thread that locks one it already
 * holds gets EDEADLK, which the plugin reports as KMS_INTERNAL. A host that
 * calls back into the instance from notify or a list callback therefore sees
 * at once if the plugin broke "never call the host under a lock".
 * Values are at most 63 bytes; names at most 63.
 *
 * Built twice: full.so, and liar.so (-DVARIANT_LIAR) whose read_secret_into
 * claims a length its buffer cannot hold, so the loader's check of that
 * claim is tested.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP */
#endif
#include "kms_plugin_util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VAL_MAX 64
#define NAME_MAX_ 64
#define NS_MAX 32
#define MAX_VERSIONS 8
#define BACKEND_SLOTS 64
#define CACHE_SLOTS 16

/* ---- the backend: process-wide, versioned ---------------------------- */

struct bentry {
  int used;
  char ns[NS_MAX], name[NAME_MAX_];
  char values[MAX_VERSIONS][VAL_MAX];
  int n_versions; /* version k is values[k-1] */
  int deleted;    /* soft-deleted: the latest version reads as NOT_FOUND */
};
static struct bentry backend[BACKEND_SLOTS];
static pthread_mutex_t backend_lock = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;

/* ---- the instance ------------------------------------------------------ */

struct centry {
  int used;
  char ns[NS_MAX], name[NAME_MAX_], value[VAL_MAX];
  int64_t version;
};

struct kms_instance {
  const kms_host *host;
  pthread_mutex_t lock; /* cache and fetch state; error-checking */
  struct centry cache[CACHE_SLOTS];
  unsigned next_evict;
  int fetch_pending, fetch_started;
  pthread_t fetch_thread;
  char fetch_ns[NS_MAX], fetch_name[NAME_MAX_];
  kms_stats *stats;
};

/* Lock `m`; a relock by the same thread (a call from notify or a list
 * callback made under our lock) is reported instead of deadlocking. */
static kms_status lock(pthread_mutex_t *m, kms_error *err) {
  int rc = pthread_mutex_lock(m);
  if (rc == EDEADLK)
    return kms_error_set(err, KMS_INTERNAL, 0,
                         "full: re-entered while this thread holds the plugin's lock (the "
                         "host was called under a lock)");
  return rc == 0 ? KMS_OK : kms_error_set(err, KMS_INTERNAL, 0, "full: lock failed");
}

static void hlog(const kms_host *h, kms_log_level level, const char *msg) {
  if (h && KMS_FIELD_PRESENT(h, kms_host, log) && h->log) h->log(h->ctx, level, msg);
}

/* Called with no lock held. */
static void notify(kms_instance *in, const char *ns, const char *name, uint32_t kind,
                   int64_t version) {
  const kms_host *h = in->host;
  if (!h || !KMS_FIELD_PRESENT(h, kms_host, notify) || !h->notify) return;
  kms_setting loc = {"namespace", ns};
  kms_change c = {sizeof c, name, kind, version, ns[0] ? &loc : NULL, ns[0] ? 1 : 0};
  h->notify(h->ctx, &c);
}

static const char *const location_keys[] = {"namespace", NULL};

/* The namespace of a call: "" (the default) or a checked override. */
static kms_status call_ns(const kms_call_options *opt, kms_call_kind kind, char ns[NS_MAX],
                          kms_error *err) {
  kms_status st = kms_options_check(opt, kind, location_keys, "full", err);
  if (st != KMS_OK) return st;
  const char *v = kms_options_get(opt, "namespace");
  ns[0] = '\0';
  if (!v) return KMS_OK;
  size_t n = strlen(v);
  int ok = n > 0 && n < NS_MAX;
  for (const char *p = v; ok && *p; p++) ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
  if (!ok)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "full: location 'namespace' must be [a-z0-9_]{1,31}");
  memcpy(ns, v, n + 1);
  return KMS_OK;
}

static kms_status check_name(const char *name, kms_error *err) {
  return strlen(name) < NAME_MAX_ ? KMS_OK
                                  : kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "full: name too long");
}

/* Caller holds backend_lock. */
static struct bentry *bfind(const char *ns, const char *name) {
  for (int i = 0; i < BACKEND_SLOTS; i++)
    if (backend[i].used && !strcmp(backend[i].ns, ns) && !strcmp(backend[i].name, name))
      return &backend[i];
  return NULL;
}

/* Backend read of `version` (0 = latest) into value/ver. */
static kms_status bread(kms_instance *in, const char *ns, const char *name, int64_t version,
                        char value[VAL_MAX], int64_t *ver, kms_error *err) {
  kms_status st = lock(&backend_lock, err);
  if (st != KMS_OK) return st;
  kms_stats_add(in->stats, KMS_STAT_FETCHES, 1);
  struct bentry *b = bfind(ns, name);
  int64_t v = version ? version : (b && !b->deleted ? b->n_versions : 0);
  if (!b || v < 1 || v > b->n_versions) {
    st = kms_error_set(err, KMS_NOT_FOUND, 0, "full: no secret %s%s%s (version %lld)", ns,
                       ns[0] ? "/" : "", name, (long long)version);
  } else {
    memcpy(value, b->values[v - 1], VAL_MAX);
    *ver = v;
  }
  pthread_mutex_unlock(&backend_lock);
  return st;
}

/* Caller holds in->lock. */
static struct centry *cfind(kms_instance *in, const char *ns, const char *name) {
  for (int i = 0; i < CACHE_SLOTS; i++)
    if (in->cache[i].used && !strcmp(in->cache[i].ns, ns) && !strcmp(in->cache[i].name, name))
      return &in->cache[i];
  return NULL;
}

/* Put (or, with value NULL, drop) a cache entry. Returns the kind of change
 * the host should hear about (0: none). Caller holds in->lock. */
static uint32_t cstore(kms_instance *in, const char *ns, const char *name, const char *value,
                       int64_t version) {
  struct centry *c = cfind(in, ns, name);
  if (!value) {
    if (!c) return 0;
    kms_wipe(c, sizeof *c);
    return KMS_CHANGE_DELETED;
  }
  uint32_t kind = c && c->version != version ? KMS_CHANGE_UPDATED : 0;
  if (!c) {
    for (int i = 0; i < CACHE_SLOTS && !c; i++)
      if (!in->cache[i].used) c = &in->cache[i];
    if (!c) c = &in->cache[in->next_evict++ % CACHE_SLOTS];
  }
  c->used = 1;
  strcpy(c->ns, ns);
  strcpy(c->name, name);
  memcpy(c->value, value, VAL_MAX);
  c->version = version;
  return kind;
}

/* Fetch from the backend into the cache, then (unlocked) notify a change. */
static kms_status fetch(kms_instance *in, const char *ns, const char *name, char value[VAL_MAX],
                        int64_t *ver, kms_error *err) {
  kms_status st = bread(in, ns, name, 0, value, ver, err);
  if (st != KMS_OK && st != KMS_NOT_FOUND) return st;
  kms_error lerr;
  if (lock(&in->lock, &lerr) != KMS_OK) return kms_error_set(err, KMS_INTERNAL, 0, "%s", lerr.message);
  uint32_t kind = cstore(in, ns, name, st == KMS_OK ? value : NULL, *ver);
  pthread_mutex_unlock(&in->lock);
  if (kind) notify(in, ns, name, kind, st == KMS_OK ? *ver : 0);
  return st;
}

static void *fetch_main(void *arg) {
  kms_instance *in = arg;
  char msg[128];
  snprintf(msg, sizeof msg, "full: background fetch of %s", in->fetch_name);
  hlog(in->host, KMS_LOG_DEBUG, msg); /* tests hold the fetch here */
  char value[VAL_MAX];
  int64_t ver = 0;
  kms_error err;
  kms_status st = bread(in, in->fetch_ns, in->fetch_name, 0, value, &ver, &err);
  uint32_t kind = 0;
  if (lock(&in->lock, &err) == KMS_OK) {
    if (st == KMS_OK) {
      cstore(in, in->fetch_ns, in->fetch_name, value, ver);
      kind = KMS_CHANGE_UPDATED; /* news for a host that was told UNAVAILABLE */
    }
    pthread_mutex_unlock(&in->lock);
  }
  if (kind) notify(in, in->fetch_ns, in->fetch_name, kind, ver);
  kms_wipe(value, sizeof value);
  pthread_mutex_lock(&in->lock);
  in->fetch_pending = 0;
  pthread_mutex_unlock(&in->lock);
  return NULL;
}

/* The shared read: into value (a VAL_MAX stack buffer), no allocation. */
static kms_status read_core(kms_instance *in, const char *name, const kms_call_options *opt,
                            char value[VAL_MAX], int64_t *ver, kms_error *err) {
  char ns[NS_MAX];
  kms_status st = call_ns(opt, KMS_CALL_KIND_READ, ns, err);
  if (st == KMS_OK) st = check_name(name, err);
  if (st != KMS_OK) return st;
  uint32_t flags = opt ? opt->flags : 0;
  if (opt && KMS_FIELD_PRESENT(opt, kms_call_options, version) && opt->version)
    return bread(in, ns, name, opt->version, value, ver, err); /* pinned: never cached */
  if (!(flags & KMS_CALL_BYPASS_CACHE)) {
    if ((st = lock(&in->lock, err)) != KMS_OK) return st;
    struct centry *c = cfind(in, ns, name);
    if (c) {
      memcpy(value, c->value, VAL_MAX);
      *ver = c->version;
      pthread_mutex_unlock(&in->lock);
      kms_stats_add(in->stats, KMS_STAT_HITS, 1);
      return KMS_OK;
    }
    kms_stats_add(in->stats, KMS_STAT_MISSES, 1);
    if (flags & KMS_CALL_NONBLOCKING) {
      /* Single flight. A finished fetch thread (pending 0, seen under the
       * lock it released last) is joined before the next one starts; all
       * of it under the lock, which the new thread only takes later. */
      if (!in->fetch_pending) {
        if (in->fetch_started) pthread_join(in->fetch_thread, NULL);
        in->fetch_started = 0;
        strcpy(in->fetch_ns, ns);
        strcpy(in->fetch_name, name);
        if (pthread_create(&in->fetch_thread, NULL, fetch_main, in) == 0)
          in->fetch_pending = in->fetch_started = 1;
      }
      pthread_mutex_unlock(&in->lock);
      return kms_error_set(err, KMS_UNAVAILABLE, 0,
                           "full: %s is not cached yet; a background fetch is under way", name);
    }
    pthread_mutex_unlock(&in->lock);
  }
  return fetch(in, ns, name, value, ver, err);
}

static kms_status f_read_opt(kms_instance *in, const char *name, const kms_call_options *opt,
                             kms_secret **out, kms_error *err) {
  char value[VAL_MAX];
  int64_t ver = 0;
  *out = NULL;
  kms_status st = read_core(in, name, opt, value, &ver, err);
  if (st == KMS_OK && (st = kms_secret_new(value, strlen(value), out, err)) == KMS_OK)
    (*out)->version = ver;
  kms_wipe(value, sizeof value);
  return kms_stats_result(in->stats, st, err);
}

static kms_status f_read(kms_instance *in, const char *name, kms_secret **out, kms_error *err) {
  return f_read_opt(in, name, NULL, out, err);
}

static kms_status f_read_into(kms_instance *in, const char *name, const kms_call_options *opt,
                              char *buf, size_t size, kms_secret_info *info, kms_error *err) {
  char value[VAL_MAX];
  int64_t ver = 0;
  kms_status st = read_core(in, name, opt, value, &ver, err);
  if (st == KMS_OK)
    st = kms_secret_copy_into(value, strlen(value), ver, 0, buf, size, info, "full", err);
#ifdef VARIANT_LIAR
  if (st == KMS_OK) info->length = size; /* no room for the NUL it promised */
#endif
  kms_wipe(value, sizeof value);
  return kms_stats_result(in->stats, st, err);
}

static kms_status f_write_opt(kms_instance *in, const char *name, const char *value, size_t len,
                              const kms_write_options *w, const kms_call_options *opt,
                              kms_error *err) {
  char ns[NS_MAX];
  kms_status st = call_ns(opt, KMS_CALL_KIND_WRITE, ns, err);
  if (st == KMS_OK) st = check_name(name, err);
  if (st == KMS_OK && (len >= VAL_MAX || memchr(value, '\0', len)))
    st = kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "full: values are text of at most 63 bytes");
  if (st == KMS_OK) st = lock(&backend_lock, err);
  if (st != KMS_OK) return kms_stats_result(in->stats, st, err);
  struct bentry *b = bfind(ns, name);
  int64_t current = b && !b->deleted ? b->n_versions : 0;
  if (w && KMS_FIELD_PRESENT(w, kms_write_options, cas_version) && (w->flags & KMS_WRITE_CAS) &&
      (int64_t)w->cas_version != current)
    st = kms_error_set(err, KMS_CONFLICT, 0, "full: check-and-set version mismatch");
  for (int i = 0; st == KMS_OK && !b && i < BACKEND_SLOTS; i++)
    if (!backend[i].used) {
      b = &backend[i];
      memset(b, 0, sizeof *b);
      b->used = 1;
      strcpy(b->ns, ns);
      strcpy(b->name, name);
    }
  if (st == KMS_OK && (!b || b->n_versions == MAX_VERSIONS))
    st = kms_error_set(err, KMS_UNAVAILABLE, 0, "full: the test backend is full");
  int64_t ver = 0;
  char copy[VAL_MAX] = {0};
  if (st == KMS_OK) {
    memcpy(copy, value, len);
    memcpy(b->values[b->n_versions++], copy, VAL_MAX);
    b->deleted = 0;
    ver = b->n_versions;
  }
  pthread_mutex_unlock(&backend_lock);
  if (st == KMS_OK && (st = lock(&in->lock, err)) == KMS_OK) {
    cstore(in, ns, name, copy, ver); /* our own change: no notification */
    pthread_mutex_unlock(&in->lock);
  }
  kms_wipe(copy, sizeof copy);
  return kms_stats_result(in->stats, st, err);
}

static kms_status f_write(kms_instance *in, const char *name, const char *value, size_t len,
                          const kms_write_options *w, kms_error *err) {
  return f_write_opt(in, name, value, len, w, NULL, err);
}

static kms_status f_delete_opt(kms_instance *in, const char *name, const kms_call_options *opt,
                               kms_error *err) {
  char ns[NS_MAX];
  kms_status st = call_ns(opt, KMS_CALL_KIND_DELETE, ns, err);
  if (st == KMS_OK) st = check_name(name, err);
  if (st == KMS_OK) st = lock(&backend_lock, err);
  if (st != KMS_OK) return kms_stats_result(in->stats, st, err);
  struct bentry *b = bfind(ns, name);
  if (b && opt && KMS_FIELD_PRESENT(opt, kms_call_options, delete_mode) &&
      opt->delete_mode == KMS_DELETE_PERMANENT)
    kms_wipe(b, sizeof *b);
  else if (b)
    b->deleted = 1;
  pthread_mutex_unlock(&backend_lock);
  if ((st = lock(&in->lock, err)) == KMS_OK) {
    cstore(in, ns, name, NULL, 0);
    pthread_mutex_unlock(&in->lock);
  }
  return kms_stats_result(in->stats, st, err);
}

static kms_status f_delete(kms_instance *in, const char *name, kms_error *err) {
  return f_delete_opt(in, name, NULL, err);
}

/* Re-read every cached secret; each fetch notifies what changed. */
static kms_status f_refresh(kms_instance *in, kms_error *err) {
  struct centry snap[CACHE_SLOTS];
  kms_status st = lock(&in->lock, err);
  if (st != KMS_OK) return st;
  memcpy(snap, in->cache, sizeof snap);
  pthread_mutex_unlock(&in->lock);
  for (int i = 0; i < CACHE_SLOTS && st == KMS_OK; i++) {
    if (!snap[i].used) continue;
    char value[VAL_MAX];
    int64_t ver = 0;
    st = fetch(in, snap[i].ns, snap[i].name, value, &ver, err);
    if (st == KMS_NOT_FOUND) st = KMS_OK;
    kms_wipe(value, sizeof value);
  }
  kms_wipe(snap, sizeof snap);
  return kms_stats_result(in->stats, st, err);
}

static kms_status f_list(kms_instance *in, const char *prefix, const kms_call_options *opt,
                         kms_list_fn fn, void *ctx, kms_error *err) {
  char ns[NS_MAX];
  char (*names)[NAME_MAX_] = malloc(BACKEND_SLOTS * sizeof *names);
  if (!names) return kms_error_set(err, KMS_NO_MEMORY, 0, "full: out of memory");
  kms_status st = call_ns(opt, KMS_CALL_KIND_LIST, ns, err);
  if (st == KMS_OK) st = lock(&backend_lock, err);
  int n = 0;
  if (st == KMS_OK) {
    for (int i = 0; i < BACKEND_SLOTS; i++)
      if (backend[i].used && !backend[i].deleted && !strcmp(backend[i].ns, ns) &&
          !strncmp(backend[i].name, prefix, strlen(prefix)))
        strcpy(names[n++], backend[i].name);
    pthread_mutex_unlock(&backend_lock);
  }
  for (int i = 0; i < n && fn(ctx, names[i]) == 0; i++) { /* unlocked: fn is host code */ }
  free(names);
  return kms_stats_result(in->stats, st, err);
}

static kms_status f_health(kms_instance *in, kms_health *out, kms_error *err) {
  kms_status st = lock(&in->lock, err);
  if (st != KMS_OK) return st;
  uint64_t entries = 0;
  for (int i = 0; i < CACHE_SLOTS; i++) entries += (uint64_t)in->cache[i].used;
  pthread_mutex_unlock(&in->lock);
  kms_stats_fill(in->stats, out);
  out->reachable = 1;
  if (KMS_FIELD_PRESENT(out, kms_health, authenticated)) out->authenticated = 1;
  if (KMS_FIELD_PRESENT(out, kms_health, cache_entries)) out->cache_entries = entries;
  return KMS_OK;
}

static kms_status f_create(const kms_host *host, const kms_setting *s, size_t n,
                           kms_instance **out, kms_error *err) {
  (void)s, (void)n;
  kms_instance *in = calloc(1, sizeof *in);
  pthread_mutexattr_t a;
  if (!in || !(in->stats = kms_stats_new())) {
    free(in);
    return kms_error_set(err, KMS_NO_MEMORY, 0, "full: out of memory");
  }
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
  pthread_mutex_init(&in->lock, &a);
  pthread_mutexattr_destroy(&a);
  in->host = host;
  *out = in;
  return KMS_OK;
}

static void f_destroy(kms_instance *in) {
  if (!in) return;
  if (in->fetch_started) pthread_join(in->fetch_thread, NULL);
  pthread_mutex_destroy(&in->lock);
  kms_stats_free(in->stats);
  kms_wipe(in, sizeof *in);
  free(in);
}

static const kms_plugin table = {
    .struct_size = sizeof(kms_plugin),
    .abi_major = KMS_ABI_MAJOR,
    .abi_minor = KMS_ABI_MINOR,
    .name = TEST_PLUGIN_NAME,
    .version = "1.1.0",
    .capabilities = KMS_CAP_READ | KMS_CAP_WRITE | KMS_CAP_DELETE | KMS_CAP_REFRESH |
                    KMS_CAP_THREAD_SAFE | KMS_CAP_LIST | KMS_CAP_NOTIFY,
    .create = f_create,
    .destroy = f_destroy,
    .read_secret = f_read,
    .write_secret = f_write,
    .delete_secret = f_delete,
    .refresh = f_refresh,
    .free_secret = kms_secret_free,
    .read_secret_opt = f_read_opt,
    .write_secret_opt = f_write_opt,
    .delete_secret_opt = f_delete_opt,
    .read_secret_into = f_read_into,
    .list_secrets = f_list,
    .health = f_health,
};

KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t major, uint32_t minor);
KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t major, uint32_t minor) {
  (void)minor;
  return major == KMS_ABI_MAJOR ? &table : NULL;
}
