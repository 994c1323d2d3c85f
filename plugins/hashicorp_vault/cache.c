/*
 * cache.c -- TTL cache with stale-if-error, single-flight and background
 * refresh points (see cache.h).
 *
 * A read-write lock guards a chained hash table of entries: a fresh hit
 * (the common case) takes it shared and copies the value under the shared
 * lock, so concurrent readers do not serialise; misses, stores and
 * evictions take it exclusive, but the copies a fetch hands out (to the
 * cache, to the waiters) are made before the exclusive lock is taken, and
 * waiters copy their result with no cache lock at all. Threads waiting for
 * an in-flight fetch sleep on a separate mutex + condition variable (`fmu`,
 * `fcv`) that only guards flight->done. A fetch runs without any lock. Each
 * entry carries a generation number, bumped by put/invalidate, so a fetch
 * that raced a write never overwrites the newer value. Values whose stale
 * window has passed are dropped a few buckets at a time by every operation
 * that takes the exclusive lock (and by vault_cache_keys/vault_cache_due).
 */
#include "cache.h"

#include "kms_loader.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
  int64_t refresh_at;  /* background refresh point (0: none) */
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
  size_t sweep; /* next bucket the amortised sweep looks at */
  vault_rng rng; /* refresh-point jitter (under rw, exclusive) */
  int outage; /* a stale value was served since the last successful fetch */
};

static int64_t now_ms(const vault_cache *c) { return vault_clock_now(&c->opt.clock); }

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
  if (c->opt.ttl_ms < 0) c->opt.ttl_ms = 0;
  if (c->opt.stale_ms < 0) c->opt.stale_ms = 0;
  if (c->opt.refresh_lo_pm < 0 || c->opt.refresh_hi_pm < c->opt.refresh_lo_pm ||
      c->opt.refresh_hi_pm >= 1000)
    c->opt.refresh_lo_pm = c->opt.refresh_hi_pm = 0;
  vault_rng_seed(&c->rng, c->opt.seed, c);
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

/* Amortised eviction (rw held exclusive): look at a few buckets per call,
 * dropping values that can never be served again and entries left without
 * value or fetch, so secrets that are never read again do not stay in
 * memory until refresh(). */
static void sweep_some(vault_cache *c, int64_t now) {
  for (int i = 0; i < 2; i++) {
    size_t b = c->sweep++ & (c->nbuckets - 1);
    entry *e = c->buckets[b];
    while (e) {
      entry *n = e->next;
      expire_value(c, e, now);
      if (!e->has && !e->fl) remove_entry(c, e);
      e = n;
    }
  }
}

/* When a value stored now should be re-read in the background: at a random
 * point between refresh_lo_pm and refresh_hi_pm permille of the TTL, drawn
 * per entry (rw held exclusive). 0 when background refresh is off. */
static int64_t refresh_point(vault_cache *c, int64_t now) {
  const vault_cache_options *o = &c->opt;
  if (o->refresh_hi_pm <= 0 || o->ttl_ms <= 0) return 0;
  int64_t span = o->refresh_hi_pm - o->refresh_lo_pm + 1;
  int64_t pm = o->refresh_lo_pm + (int64_t)(vault_rng_next(&c->rng) % (uint64_t)span);
  int64_t at = now + o->ttl_ms * pm / 1000;
  return at > now ? at : now + 1;
}

static kms_status nomem(kms_error *err) {
  return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
}

/* 1 if e can be answered from the cache without a fetch: a fresh value, or
 * a stale value inside its retry pause. Needs rw held (shared is enough). */
static int servable(const entry *e, int64_t now, int force) {
  if (!e || !e->has || force) return 0;
  if (now < e->expires) return 1;
  return e->stale_serving && now < e->next_fetch && now < e->stale_until && !e->fl;
}

/* Copy out a servable value (rw held, shared is enough). */
static kms_status serve(const entry *e, int64_t now, vault_cache_value *out, unsigned *flags,
                        kms_error *err) {
  if (value_copy(out, &e->v) != 0) return nomem(err);
  *flags = VAULT_CACHE_HIT;
  if (now >= e->expires) {
    *flags |= VAULT_CACHE_STALE;
    if (err && e->last_err) *err = *e->last_err;
  }
  return KMS_OK;
}

static void flight_free(flight *f) {
  vault_cache_value_clear(&f->v);
  OPENSSL_cleanse(&f->err, sizeof f->err);
  free(f);
}

typedef enum get_mode {
  MODE_READ,      /* vault_cache_get: serve from the cache when possible */
  MODE_FORCE,     /* vault_cache_get(force): refresh() re-reads now */
  MODE_BACKGROUND /* vault_cache_refresh_key: re-read a fresh value that is due */
} get_mode;

/*
 * The one implementation behind vault_cache_get and vault_cache_refresh_key.
 * *raw (may be NULL) receives the fetch's own status (before a stale serve
 * turns an UNAVAILABLE into KMS_OK), *fetched whether this call fetched.
 */
static kms_status get_impl(vault_cache *c, const char *key, get_mode mode,
                           vault_cache_fetch_fn fetch, void *fetch_ctx, int64_t retry_ms,
                           vault_cache_value *out, unsigned *flags, kms_error *err,
                           kms_status *raw, int *fetched) {
  unsigned fl_local = 0;
  if (!flags) flags = &fl_local;
  *flags = 0;
  memset(out, 0, sizeof *out);
  if (fetched) *fetched = 0;
  if (raw) *raw = KMS_OK;
  uint64_t h = fnv1a(key);
  int force = mode != MODE_READ;
  kms_status st;
  entry *e;
  int64_t now;

  for (;;) {
    if (mode == MODE_READ) {
      /* Fast path: shared lock, fresh hit, copied under the shared lock. */
      pthread_rwlock_rdlock(&c->rw);
      now = now_ms(c);
      e = find(c, key, h);
      int ok = servable(e, now, 0);
      if (ok) st = serve(e, now, out, flags, err);
      pthread_rwlock_unlock(&c->rw);
      if (ok) return st;
    }
    pthread_rwlock_wrlock(&c->rw);
    now = now_ms(c);
    sweep_some(c, now);
    e = find(c, key, h);
    if (e) expire_value(c, e, now);
    if (!servable(e, now, force)) break; /* rw stays held (exclusive) */
    pthread_rwlock_unlock(&c->rw); /* filled meanwhile: serve it shared */
  }

  if (mode == MODE_BACKGROUND &&
      (!e || !e->has || e->fl || !e->refresh_at || now < e->refresh_at || now >= e->expires)) {
    /* gone, in flight, not due, or expired (then reads decide): nothing to do */
    pthread_rwlock_unlock(&c->rw);
    return KMS_OK;
  }

  if (e && e->fl) { /* join the fetch in flight */
    flight *f = e->fl;
    f->waiters++;
    pthread_rwlock_unlock(&c->rw);
    pthread_mutex_lock(&c->fmu);
    while (!f->done) pthread_cond_wait(&c->fcv, &c->fmu);
    pthread_mutex_unlock(&c->fmu);
    /* Once done, the flight's result is immutable and f stays allocated
     * while we are counted in f->waiters: copy it without any lock. */
    st = f->st;
    int r = 0;
    if (st == KMS_OK) r = value_copy(out, &f->v);
    if (err && (st != KMS_OK || (f->flags & VAULT_CACHE_STALE))) *err = f->err;
    *flags = f->flags & ~VAULT_CACHE_WARN;
    if (raw) *raw = st;
    pthread_rwlock_wrlock(&c->rw);
    int last = --f->waiters == 0;
    pthread_rwlock_unlock(&c->rw);
    if (last) flight_free(f);
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
  if (fetched) *fetched = 1;

  vault_cache_value v = {0};
  kms_error ferr;
  kms_error_clear(&ferr);
  st = fetch(fetch_ctx, key, &v, &ferr);
  if (st == KMS_OK && !v.data) st = kms_error_set(&ferr, KMS_INTERNAL, 0, "empty fetch");
  if (raw) *raw = st;

  /* The copies a success hands out, made before taking the exclusive lock:
   * one for the cache, one for the waiters; the caller gets v itself. */
  vault_cache_value keep = {0}, share = {0};
  if (st == KMS_OK) {
    if (c->opt.ttl_ms > 0 && value_copy(&keep, &v) != 0) keep.data = NULL; /* not cached */
    if (value_copy(&share, &v) != 0) share.data = NULL;
  }

  pthread_rwlock_wrlock(&c->rw);
  now = now_ms(c);
  unsigned rflags = 0;
  int same_gen = e->gen == f->gen;
  vault_cache_value old = {0}; /* a replaced value, wiped after unlocking */
  if (st == KMS_OK) {
    c->outage = 0;
    e->stale_serving = 0;
    clear_last_err(e);
    if (keep.data && same_gen) {
      old = e->v;
      if (e->has) c->nvalues--;
      e->v = keep;
      memset(&keep, 0, sizeof keep);
      e->has = 1;
      c->nvalues++;
      e->expires = now + c->opt.ttl_ms;
      e->stale_until = e->expires + c->opt.stale_ms;
      e->refresh_at = refresh_point(c, now);
    }
    *out = v; /* move */
    memset(&v, 0, sizeof v);
  } else if (st == KMS_UNAVAILABLE && mode != MODE_FORCE && e->has && same_gen &&
             c->opt.stale_ms > 0 && now >= e->expires && now < e->stale_until) {
    /* Rare (an outage, at most once per stale_retry per key): the copy is
     * made under the exclusive lock. A background leader (the value
     * expired during its fetch) serves its waiters but leaves the outage
     * warning to the next read that leads a fetch. */
    if (!e->last_err) e->last_err = malloc(sizeof *e->last_err);
    if (e->last_err && value_copy(out, &e->v) == 0) {
      rflags = VAULT_CACHE_STALE;
      e->stale_serving = 1;
      e->next_fetch = now + c->opt.stale_retry_ms;
      *e->last_err = ferr;
      if (!c->outage && mode == MODE_READ) {
        c->outage = 1;
        rflags |= VAULT_CACHE_WARN;
      }
      st = KMS_OK;
    } else {
      st = nomem(&ferr);
    }
  } else if (st == KMS_NOT_FOUND || st == KMS_PERMISSION_DENIED ||
             (st == KMS_UNAUTHENTICATED && mode != MODE_BACKGROUND)) {
    /* Vault's answer about this secret: never masked, the value goes. (A
     * background re-read keeps the value on UNAUTHENTICATED: that is about
     * the plugin's credentials, and the value is still fresh.) */
    entry_drop_value(c, e);
    e->gen++;
  } else if (mode == MODE_BACKGROUND && e->has && same_gen) {
    e->refresh_at = now + (retry_ms > 0 ? retry_ms : 1); /* keep the value, try again later */
  }
  vault_cache_value_clear(&v);

  f->st = st;
  f->err = ferr;
  f->flags = rflags;
  if (st == KMS_OK && f->waiters > 0) {
    if (rflags & VAULT_CACHE_STALE) {
      if (value_copy(&f->v, out) != 0) f->st = nomem(&f->err); /* rare: see above */
    } else if (share.data) {
      f->v = share;
      memset(&share, 0, sizeof share);
    } else {
      f->st = nomem(&f->err);
    }
  }
  e->fl = NULL;
  if (!e->has) remove_entry(c, e);
  pthread_mutex_lock(&c->fmu);
  f->done = 1;
  pthread_cond_broadcast(&c->fcv);
  pthread_mutex_unlock(&c->fmu);
  int free_f = f->waiters == 0;
  pthread_rwlock_unlock(&c->rw);
  if (free_f) flight_free(f);
  vault_cache_value_clear(&old);
  vault_cache_value_clear(&keep);
  vault_cache_value_clear(&share);

  *flags = rflags;
  if (err && (st != KMS_OK || (rflags & VAULT_CACHE_STALE))) *err = ferr;
  OPENSSL_cleanse(&ferr, sizeof ferr);
  return st;
}

kms_status vault_cache_get(vault_cache *c, const char *key, int force, vault_cache_fetch_fn fetch,
                           void *fetch_ctx, vault_cache_value *out, unsigned *flags,
                           kms_error *err) {
  return get_impl(c, key, force ? MODE_FORCE : MODE_READ, fetch, fetch_ctx, 0, out, flags, err,
                  NULL, NULL);
}

kms_status vault_cache_refresh_key(vault_cache *c, const char *key, vault_cache_fetch_fn fetch,
                                   void *fetch_ctx, int64_t retry_ms, int *fetched,
                                   kms_error *err) {
  vault_cache_value v;
  kms_status raw = KMS_OK;
  int did = 0;
  kms_error e;
  kms_error_clear(&e);
  get_impl(c, key, MODE_BACKGROUND, fetch, fetch_ctx, retry_ms, &v, NULL, &e, &raw, &did);
  vault_cache_value_clear(&v);
  if (fetched) *fetched = did;
  if (raw != KMS_OK && err) *err = e;
  OPENSSL_cleanse(&e, sizeof e);
  return raw;
}

void vault_cache_put(vault_cache *c, const char *key, const char *data, size_t len,
                     int64_t version) {
  uint64_t h = fnv1a(key);
  pthread_rwlock_wrlock(&c->rw);
  sweep_some(c, now_ms(c));
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
      e->refresh_at = refresh_point(c, now);
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

size_t vault_cache_due(vault_cache *c, int64_t slack_ms, char ***keys, int64_t *next_ms) {
  *keys = NULL;
  *next_ms = 0;
  size_t n = 0, cap = 0;
  char **k = NULL;
  pthread_rwlock_wrlock(&c->rw);
  int64_t now = now_ms(c), next = 0;
  for (size_t i = 0; i < c->nbuckets; i++) {
    entry *e = c->buckets[i];
    while (e) {
      entry *nx = e->next;
      expire_value(c, e, now);
      if (!e->has && !e->fl) {
        remove_entry(c, e);
      } else if (e->has && !e->fl && e->refresh_at && now < e->expires) {
        if (e->refresh_at <= now + slack_ms) {
          if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nk = realloc(k, nc * sizeof *nk);
            if (!nk) goto oom;
            k = nk;
            cap = nc;
          }
          if (!(k[n] = strdup(e->key))) goto oom;
          n++;
        } else if (!next || e->refresh_at < next) {
          next = e->refresh_at;
        }
      }
      e = nx;
    }
  }
  pthread_rwlock_unlock(&c->rw);
  *keys = k;
  *next_ms = next;
  return n;
oom:
  pthread_rwlock_unlock(&c->rw);
  vault_cache_keys_free(k, n);
  *next_ms = now + 1000; /* try again soon */
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
