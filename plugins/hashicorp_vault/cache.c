/*
 * cache.c -- TTL cache with stale-if-error and single-flight (see cache.h).
 *
 * A read-write lock guards a chained hash table of entries: a fresh hit
 * (the common case) takes it shared, so concurrent readers do not serialise;
 * misses, stores and evictions take it exclusive. Threads waiting for an
 * in-flight fetch sleep on a separate mutex + condition variable (`fmu`,
 * `fcv`) that only guards flight->done. A fetch runs without any lock. Each
 * entry carries a generation number, bumped by put/invalidate, so a fetch
 * that raced a write never overwrites the newer value.
 */
#include "cache.h"

#include "kms_loader.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct flight {
  int done; /* guarded by fmu; everything else by rw */
  size_t waiters;
  uint64_t gen; /* entry generation when the fetch started */
  kms_status st;
  kms_error err;
  vault_cache_value v; /* copy for the waiters (only when st == OK) */
  unsigned flags;
} flight;

typedef struct entry {
  struct entry *next;
  uint64_t hash;
  char *key;
  int has; /* v holds a value */
  vault_cache_value v;
  int64_t expires;     /* fresh until */
  int64_t stale_until; /* may be served stale until */
  int stale_serving;   /* last fetch failed and we served stale */
  int64_t next_fetch;  /* while stale_serving: do not fetch before */
  kms_error *last_err; /* the failure behind stale_serving (NULL otherwise) */
  uint64_t gen;
  flight *fl; /* in-flight fetch, or NULL */
} entry;

struct vault_cache {
  vault_cache_options opt;
  pthread_rwlock_t rw;
  pthread_mutex_t fmu;
  pthread_cond_t fcv;
  entry **buckets;
  size_t nbuckets, nentries, nvalues;
  int outage; /* a stale value was served since the last successful fetch */
};

static int64_t mono_ms(void *ctx) {
  (void)ctx;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_ms(const vault_cache *c) { return c->opt.clock(c->opt.clock_ctx); }

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

void vault_cache_value_clear(vault_cache_value *v) {
  if (!v) return;
  if (v->data) {
    OPENSSL_cleanse(v->data, v->len);
    free(v->data);
  }
  v->data = NULL;
  v->len = 0;
  v->version = 0;
}

static int value_copy(vault_cache_value *dst, const vault_cache_value *src) {
  dst->data = malloc(src->len + 1);
  if (!dst->data) return -1;
  memcpy(dst->data, src->data, src->len);
  dst->data[src->len] = '\0';
  dst->len = src->len;
  dst->version = src->version;
  return 0;
}

vault_cache *vault_cache_new(const vault_cache_options *opt) {
  vault_cache *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->opt = *opt;
  if (!c->opt.clock) c->opt.clock = mono_ms;
  if (c->opt.ttl_ms < 0) c->opt.ttl_ms = 0;
  if (c->opt.stale_ms < 0) c->opt.stale_ms = 0;
  c->nbuckets = 64;
  c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
  if (!c->buckets) {
    free(c);
    return NULL;
  }
  pthread_rwlockattr_t ra;
  pthread_rwlockattr_init(&ra);
  /* misses must not starve behind a stream of hits */
  pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&c->rw, &ra);
  pthread_rwlockattr_destroy(&ra);
  pthread_mutex_init(&c->fmu, NULL);
  pthread_cond_init(&c->fcv, NULL);
  return c;
}

static void clear_last_err(entry *e) {
  if (!e->last_err) return;
  OPENSSL_cleanse(e->last_err, sizeof *e->last_err);
  free(e->last_err);
  e->last_err = NULL;
}

static void entry_drop_value(vault_cache *c, entry *e) {
  if (e->has) c->nvalues--;
  vault_cache_value_clear(&e->v);
  e->has = 0;
  e->stale_serving = 0;
  clear_last_err(e);
}

static void entry_free(vault_cache *c, entry *e) {
  entry_drop_value(c, e);
  free(e->key);
  free(e);
}

void vault_cache_free(vault_cache *c) {
  if (!c) return;
  for (size_t i = 0; i < c->nbuckets; i++) {
    entry *e = c->buckets[i];
    while (e) {
      entry *n = e->next;
      entry_free(c, e);
      e = n;
    }
  }
  free(c->buckets);
  pthread_rwlock_destroy(&c->rw);
  pthread_mutex_destroy(&c->fmu);
  pthread_cond_destroy(&c->fcv);
  free(c);
}

static entry *find(vault_cache *c, const char *key, uint64_t h) {
  for (entry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->next)
    if (e->hash == h && strcmp(e->key, key) == 0) return e;
  return NULL;
}

static void grow(vault_cache *c) {
  size_t nb = c->nbuckets * 2;
  entry **b = calloc(nb, sizeof *b);
  if (!b) return; /* keep the old table: slower, still correct */
  for (size_t i = 0; i < c->nbuckets; i++) {
    entry *e = c->buckets[i];
    while (e) {
      entry *n = e->next;
      e->next = b[e->hash & (nb - 1)];
      b[e->hash & (nb - 1)] = e;
      e = n;
    }
  }
  free(c->buckets);
  c->buckets = b;
  c->nbuckets = nb;
}

static entry *insert(vault_cache *c, const char *key, uint64_t h) {
  entry *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  e->key = strdup(key);
  if (!e->key) {
    free(e);
    return NULL;
  }
  e->hash = h;
  if (c->nentries >= c->nbuckets) grow(c);
  e->next = c->buckets[h & (c->nbuckets - 1)];
  c->buckets[h & (c->nbuckets - 1)] = e;
  c->nentries++;
  return e;
}

static void remove_entry(vault_cache *c, entry *e) {
  entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
  while (*pp && *pp != e) pp = &(*pp)->next;
  if (*pp) *pp = e->next;
  c->nentries--;
  entry_free(c, e);
}

/* Drop a value whose stale window has passed (it can never be served). */
static void expire_value(vault_cache *c, entry *e, int64_t now) {
  if (e->has && now >= e->expires && now >= e->stale_until) entry_drop_value(c, e);
}

static kms_status nomem(kms_error *err) {
  return kms_error_set(err, KMS_NO_MEMORY, 0, "hashicorp_vault: out of memory");
}

/* Fresh value, or a stale value inside its retry pause: copy it out.
 * Needs rw held (shared is enough). Returns 1 if served (status in *st). */
static int try_serve(vault_cache *c, entry *e, int64_t now, int force, vault_cache_value *out,
                     unsigned *flags, kms_error *err, kms_status *st) {
  if (!e || !e->has || force) return 0;
  if (now < e->expires) {
    *st = value_copy(out, &e->v) == 0 ? KMS_OK : nomem(err);
    if (*st == KMS_OK) *flags = VAULT_CACHE_HIT;
    return 1;
  }
  if (e->stale_serving && now < e->next_fetch && now < e->stale_until && !e->fl) {
    *st = value_copy(out, &e->v) == 0 ? KMS_OK : nomem(err);
    if (*st == KMS_OK) {
      *flags = VAULT_CACHE_HIT | VAULT_CACHE_STALE;
      if (err && e->last_err) *err = *e->last_err;
    }
    return 1;
  }
  return 0;
}

static void flight_free(flight *f) {
  vault_cache_value_clear(&f->v);
  OPENSSL_cleanse(&f->err, sizeof f->err);
  free(f);
}

kms_status vault_cache_get(vault_cache *c, const char *key, int force, vault_cache_fetch_fn fetch,
                           void *fetch_ctx, vault_cache_value *out, unsigned *flags,
                           kms_error *err) {
  unsigned fl_local = 0;
  if (!flags) flags = &fl_local;
  *flags = 0;
  memset(out, 0, sizeof *out);
  uint64_t h = fnv1a(key);
  kms_status st;

  /* Fast path: shared lock, fresh hit. */
  pthread_rwlock_rdlock(&c->rw);
  int served = try_serve(c, find(c, key, h), now_ms(c), force, out, flags, err, &st);
  pthread_rwlock_unlock(&c->rw);
  if (served) return st;

  pthread_rwlock_wrlock(&c->rw);
  int64_t now = now_ms(c);
  entry *e = find(c, key, h);
  if (e) expire_value(c, e, now);
  if (try_serve(c, e, now, force, out, flags, err, &st)) { /* filled meanwhile */
    pthread_rwlock_unlock(&c->rw);
    return st;
  }

  if (e && e->fl) { /* join the fetch in flight */
    flight *f = e->fl;
    f->waiters++;
    pthread_rwlock_unlock(&c->rw);
    pthread_mutex_lock(&c->fmu);
    while (!f->done) pthread_cond_wait(&c->fcv, &c->fmu);
    pthread_mutex_unlock(&c->fmu);
    pthread_rwlock_wrlock(&c->rw);
    f->waiters--;
    st = f->st;
    int r = 0;
    if (st == KMS_OK) r = value_copy(out, &f->v);
    if (err && (st != KMS_OK || (f->flags & VAULT_CACHE_STALE))) *err = f->err;
    *flags = f->flags & ~VAULT_CACHE_WARN;
    if (f->waiters == 0) flight_free(f);
    pthread_rwlock_unlock(&c->rw);
    if (r) return nomem(err);
    return st;
  }

  /* Lead a fetch. */
  if (!e && !(e = insert(c, key, h))) {
    pthread_rwlock_unlock(&c->rw);
    return nomem(err);
  }
  flight *f = calloc(1, sizeof *f);
  if (!f) {
    if (!e->has) remove_entry(c, e);
    pthread_rwlock_unlock(&c->rw);
    return nomem(err);
  }
  f->gen = e->gen;
  e->fl = f;
  pthread_rwlock_unlock(&c->rw);

  vault_cache_value v = {0};
  kms_error ferr;
  kms_error_clear(&ferr);
  st = fetch(fetch_ctx, key, &v, &ferr);
  if (st == KMS_OK && !v.data) st = kms_error_set(&ferr, KMS_INTERNAL, 0, "hashicorp_vault: empty fetch");

  pthread_rwlock_wrlock(&c->rw);
  now = now_ms(c);
  unsigned rflags = 0;
  int same_gen = e->gen == f->gen;
  if (st == KMS_OK) {
    c->outage = 0;
    e->stale_serving = 0;
    clear_last_err(e);
    if (c->opt.ttl_ms > 0 && same_gen) {
      entry_drop_value(c, e);
      if (value_copy(&e->v, &v) == 0) {
        e->has = 1;
        c->nvalues++;
        e->expires = now + c->opt.ttl_ms;
        e->stale_until = e->expires + c->opt.stale_ms;
      }
    }
    *out = v; /* move */
    memset(&v, 0, sizeof v);
  } else if (st == KMS_UNAVAILABLE && !force && e->has && same_gen && c->opt.stale_ms > 0 &&
             now < e->stale_until) {
    if (!e->last_err) e->last_err = malloc(sizeof *e->last_err);
    if (e->last_err && value_copy(out, &e->v) == 0) {
      rflags = VAULT_CACHE_STALE;
      e->stale_serving = 1;
      e->next_fetch = now + c->opt.stale_retry_ms;
      *e->last_err = ferr;
      if (!c->outage) {
        c->outage = 1;
        rflags |= VAULT_CACHE_WARN;
      }
      st = KMS_OK;
    } else {
      st = nomem(&ferr);
    }
  } else if (st == KMS_NOT_FOUND || st == KMS_PERMISSION_DENIED || st == KMS_UNAUTHENTICATED) {
    entry_drop_value(c, e);
    e->gen++;
  }
  vault_cache_value_clear(&v);

  f->st = st;
  f->err = ferr;
  f->flags = rflags;
  if (f->waiters > 0 && st == KMS_OK && value_copy(&f->v, out) != 0) f->st = nomem(&f->err);
  e->fl = NULL;
  if (!e->has) remove_entry(c, e);
  pthread_mutex_lock(&c->fmu);
  f->done = 1;
  pthread_cond_broadcast(&c->fcv);
  pthread_mutex_unlock(&c->fmu);
  if (f->waiters == 0) flight_free(f);
  pthread_rwlock_unlock(&c->rw);

  *flags = rflags;
  if (err && (st != KMS_OK || (rflags & VAULT_CACHE_STALE))) *err = ferr;
  OPENSSL_cleanse(&ferr, sizeof ferr);
  return st;
}

void vault_cache_put(vault_cache *c, const char *key, const char *data, size_t len,
                     int64_t version) {
  uint64_t h = fnv1a(key);
  pthread_rwlock_wrlock(&c->rw);
  entry *e = find(c, key, h);
  if (c->opt.ttl_ms <= 0) {
    if (e) {
      entry_drop_value(c, e);
      e->gen++;
      if (!e->fl) remove_entry(c, e);
    }
    pthread_rwlock_unlock(&c->rw);
    return;
  }
  if (!e) e = insert(c, key, h);
  if (e) {
    entry_drop_value(c, e);
    e->gen++;
    vault_cache_value src = {(char *)data, len, version};
    if (value_copy(&e->v, &src) == 0) {
      int64_t now = now_ms(c);
      e->has = 1;
      c->nvalues++;
      e->expires = now + c->opt.ttl_ms;
      e->stale_until = e->expires + c->opt.stale_ms;
    } else if (!e->fl) {
      remove_entry(c, e);
    }
  }
  pthread_rwlock_unlock(&c->rw);
}

void vault_cache_invalidate(vault_cache *c, const char *key) {
  uint64_t h = fnv1a(key);
  pthread_rwlock_wrlock(&c->rw);
  entry *e = find(c, key, h);
  if (e) {
    entry_drop_value(c, e);
    e->gen++;
    if (!e->fl) remove_entry(c, e);
  }
  pthread_rwlock_unlock(&c->rw);
}

size_t vault_cache_keys(vault_cache *c, char ***keys) {
  *keys = NULL;
  pthread_rwlock_wrlock(&c->rw);
  int64_t now = now_ms(c);
  for (size_t i = 0; i < c->nbuckets; i++) {
    entry *e = c->buckets[i];
    while (e) {
      entry *n = e->next;
      expire_value(c, e, now);
      if (!e->has && !e->fl) remove_entry(c, e);
      e = n;
    }
  }
  size_t n = 0;
  char **k = c->nvalues ? calloc(c->nvalues, sizeof *k) : NULL;
  if (k) {
    for (size_t i = 0; i < c->nbuckets; i++)
      for (entry *e = c->buckets[i]; e; e = e->next)
        if (e->has && n < c->nvalues) {
          if (!(k[n] = strdup(e->key))) goto oom;
          n++;
        }
  }
  pthread_rwlock_unlock(&c->rw);
  *keys = k;
  return n;
oom:
  pthread_rwlock_unlock(&c->rw);
  vault_cache_keys_free(k, n);
  return 0;
}

void vault_cache_keys_free(char **keys, size_t n) {
  if (!keys) return;
  for (size_t i = 0; i < n; i++) free(keys[i]);
  free(keys);
}

size_t vault_cache_waiters(vault_cache *c, const char *key) {
  pthread_rwlock_rdlock(&c->rw);
  entry *e = find(c, key, fnv1a(key));
  size_t n = e && e->fl ? e->fl->waiters : 0;
  pthread_rwlock_unlock(&c->rw);
  return n;
}

size_t vault_cache_size(vault_cache *c) {
  pthread_rwlock_rdlock(&c->rw);
  size_t n = c->nvalues;
  pthread_rwlock_unlock(&c->rw);
  return n;
}
