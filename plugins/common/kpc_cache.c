/*
 * kpc_cache.c -- TTL cache with stale-if-error, single-flight and background
 * refresh points (see kpc_cache.h).
 *
 * The cache lock `rw` is striped: one read-write lock per stripe (a
 * power of two, about one per CPU, each on its own cache line). A fresh hit
 * (the common case) takes only its CPU's stripe shared (rd_lock) and copies
 * the value under it, so readers on different CPUs touch no common cache
 * line and do not serialise; misses, stores and evictions take every
 * stripe exclusive, in index order (wr_lock), which excludes all readers.
 * "rw held exclusive" below means wr_lock. The copies a fetch hands out (to
 * the cache, to the waiters) are made before the exclusive lock is taken,
 * and waiters copy their result with no cache lock at all. Threads waiting for
 * an in-flight fetch sleep on a separate mutex + condition variable (`fmu`,
 * `fcv`) that only guards flight->done. A fetch runs without any lock. Each
 * entry carries a generation number, bumped by put/invalidate, so a fetch
 * that raced a write never overwrites the newer value. Values whose stale
 * window has passed are dropped a few buckets at a time by every operation
 * that takes the exclusive lock (and by kpc_cache_keys/kpc_cache_due).
 *
 * Time: without an injected clock the cache reads CLOCK_MONOTONIC_COARSE
 * (a few ns instead of tens on the hit path; same epoch as CLOCK_MONOTONIC,
 * behind it by at most one tick, a few ms), so a TTL can end up to one tick
 * late; every time the cache stores is on that same clock.
 */
#include "kpc_cache.h"

#include "kms_plugin_util.h"

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
  kpc_cache_value v; /* copy for the waiters (only when st == OK) */
  unsigned flags;
} flight;

typedef struct entry {
  struct entry *next;
  uint64_t hash;
  char *key;
  int has; /* v holds a value */
  kpc_cache_value v;
  int64_t expires;     /* fresh until */
  int64_t stale_until; /* may be served stale until */
  int stale_serving;   /* last fetch failed and we served stale */
  int64_t next_fetch;  /* while stale_serving: do not fetch before */
  kms_error *last_err; /* the failure behind stale_serving (NULL otherwise) */
  int64_t refresh_at;  /* background refresh point (0: none) */
  int64_t neg_until;   /* a cached NOT_FOUND answers reads until then (0: none) */
  kms_error *neg_err;  /* that answer's error (NULL unless neg_until) */
  uint64_t gen;
  flight *fl; /* in-flight fetch, or NULL */
} entry;

/* One stripe of the cache lock, alone on its cache line(s). */
typedef struct lock_stripe {
  pthread_rwlock_t rw;
} __attribute__((aligned(64))) lock_stripe;

#define KPC_MAX_STRIPES 64

struct kpc_cache {
  kpc_cache_options opt;
  lock_stripe *rw; /* nstripes of them: see the top of this file */
  unsigned nstripes;
  pthread_mutex_t fmu;
  pthread_cond_t fcv;
  entry **buckets;
  size_t nbuckets, nentries, nvalues;
  size_t sweep; /* next bucket the amortised sweep looks at */
  kpc_rng rng; /* refresh-point jitter (under rw, exclusive) */
  int outage; /* a stale value was served since the last successful fetch */
  uint64_t hash_seed; /* key_hash's (immutable after new) */
};

static int64_t now_ms(const kpc_cache *c) {
  if (c->opt.clock.now_ms) return c->opt.clock.now_ms(c->opt.clock.ctx);
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); /* see the top of this file */
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Shared: this CPU's stripe. Returns the stripe to pass to rd_unlock (the
 * thread may migrate meanwhile). */
static unsigned rd_lock(kpc_cache *c) {
  unsigned i = kms_cpu_stripe(c->nstripes);
  pthread_rwlock_rdlock(&c->rw[i].rw);
  return i;
}

static void rd_unlock(kpc_cache *c, unsigned i) { pthread_rwlock_unlock(&c->rw[i].rw); }

/* Exclusive: every stripe, always in index order (no lock-order cycle). */
static void wr_lock(kpc_cache *c) {
  for (unsigned i = 0; i < c->nstripes; i++) pthread_rwlock_wrlock(&c->rw[i].rw);
}

static void wr_unlock(kpc_cache *c) {
  for (unsigned i = c->nstripes; i-- > 0;) pthread_rwlock_unlock(&c->rw[i].rw);
}

/* About one stripe per CPU, a power of two (kms_cpu_stripe takes a modulo). */
static unsigned stripe_count(void) {
  long cpus = sysconf(_SC_NPROCESSORS_CONF);
  unsigned n = 1;
  while (n < KPC_MAX_STRIPES && (long)n < cpus) n *= 2;
  return n;
}

/* The key's hash, eight bytes per step (a byte-at-a-time hash such as
 * FNV-1a costs a multiply's latency per byte, most of a hit's hashing),
 * seeded per cache so that chosen names cannot aim at one bucket as
 * easily; the final mix spreads every byte into the low bits the bucket
 * index uses. */
static uint64_t key_hash(const kpc_cache *c, const char *s) {
  size_t n = strlen(s);
  uint64_t h = c->hash_seed ^ n;
  for (; n >= 8; s += 8, n -= 8) {
    uint64_t w;
    memcpy(&w, s, 8);
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 31;
  }
  uint64_t w = 0;
  for (size_t i = 0; i < n; i++) w |= (uint64_t)(unsigned char)s[i] << (8 * i);
  h = (h ^ w) * 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  return h ^ (h >> 29);
}

void kpc_cache_value_clear(kpc_cache_value *v) {
  if (!v) return;
  if (v->data) {
    OPENSSL_cleanse(v->data, v->len);
    free(v->data);
  }
  v->data = NULL;
  v->len = 0;
  v->version = 0;
}

static int value_copy(kpc_cache_value *dst, const kpc_cache_value *src) {
  dst->data = malloc(src->len + 1);
  if (!dst->data) return -1;
  memcpy(dst->data, src->data, src->len);
  dst->data[src->len] = '\0';
  dst->len = src->len;
  dst->version = src->version;
  return 0;
}

kpc_cache *kpc_cache_new(const kpc_cache_options *opt) {
  kpc_cache *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->opt = *opt;
  if (c->opt.ttl_ms < 0) c->opt.ttl_ms = 0;
  if (c->opt.stale_ms < 0) c->opt.stale_ms = 0;
  if (c->opt.refresh_lo_pm < 0 || c->opt.refresh_hi_pm < c->opt.refresh_lo_pm ||
      c->opt.refresh_hi_pm >= 1000)
    c->opt.refresh_lo_pm = c->opt.refresh_hi_pm = 0;
  kpc_rng_seed(&c->rng, c->opt.seed, c);
  c->hash_seed = kpc_rng_next(&c->rng);
  c->nbuckets = 64;
  c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
  if (!c->buckets) {
    free(c);
    return NULL;
  }
  c->nstripes = stripe_count();
  c->rw = aligned_alloc(sizeof *c->rw, c->nstripes * sizeof *c->rw);
  if (!c->rw) {
    free(c->buckets);
    free(c);
    return NULL;
  }
  pthread_rwlockattr_t ra;
  pthread_rwlockattr_init(&ra);
  /* misses must not starve behind a stream of hits */
  pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  for (unsigned i = 0; i < c->nstripes; i++) pthread_rwlock_init(&c->rw[i].rw, &ra);
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

static void entry_drop_value(kpc_cache *c, entry *e) {
  if (e->has) c->nvalues--;
  kpc_cache_value_clear(&e->v);
  e->has = 0;
  e->stale_serving = 0;
  clear_last_err(e);
}

/* Forget a cached "not found". */
static void clear_neg(entry *e) {
  if (e->neg_err) {
    OPENSSL_cleanse(e->neg_err, sizeof *e->neg_err);
    free(e->neg_err);
  }
  e->neg_err = NULL;
  e->neg_until = 0;
}

static int neg_live(const entry *e, int64_t now) { return e->neg_err && now < e->neg_until; }

static void entry_free(kpc_cache *c, entry *e) {
  entry_drop_value(c, e);
  clear_neg(e);
  free(e->key);
  free(e);
}

void kpc_cache_free(kpc_cache *c) {
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
  for (unsigned i = 0; i < c->nstripes; i++) pthread_rwlock_destroy(&c->rw[i].rw);
  free(c->rw);
  pthread_mutex_destroy(&c->fmu);
  pthread_cond_destroy(&c->fcv);
  free(c);
}

static entry *find(kpc_cache *c, const char *key, uint64_t h) {
  for (entry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->next)
    if (e->hash == h && strcmp(e->key, key) == 0) return e;
  return NULL;
}

static void grow(kpc_cache *c) {
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

static entry *insert(kpc_cache *c, const char *key, uint64_t h) {
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

static void remove_entry(kpc_cache *c, entry *e) {
  entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
  while (*pp && *pp != e) pp = &(*pp)->next;
  if (*pp) *pp = e->next;
  c->nentries--;
  entry_free(c, e);
}

/* Drop a value whose stale window has passed (it can never be served). */
static void expire_value(kpc_cache *c, entry *e, int64_t now) {
  if (e->has && now >= e->expires && now >= e->stale_until) entry_drop_value(c, e);
  if (e->neg_err && !neg_live(e, now)) clear_neg(e);
}

/* Amortised eviction (rw held exclusive): look at a few buckets per call,
 * dropping values that can never be served again and entries left without
 * value or fetch, so secrets that are never read again do not stay in
 * memory until refresh(). */
static void sweep_bucket_unlocked(kpc_cache *c, size_t b, int64_t now) {
  entry *e = c->buckets[b];
  while (e) {
    entry *n = e->next;
    expire_value(c, e, now);
    if (!e->has && !e->fl && !e->neg_err) remove_entry(c, e);
    e = n;
  }
}

static void sweep_some(kpc_cache *c, int64_t now) {
  for (int i = 0; i < 2; i++) sweep_bucket_unlocked(c, c->sweep++ & (c->nbuckets - 1), now);
}

/* Every bucket (rw held exclusive): what sweep_some does a little at a time. */
static void sweep_all_unlocked(kpc_cache *c, int64_t now) {
  for (size_t i = 0; i < c->nbuckets; i++) sweep_bucket_unlocked(c, i, now);
}

/* When a value stored now should be re-read in the background: at a random
 * point between refresh_lo_pm and refresh_hi_pm permille of the TTL, drawn
 * per entry (rw held exclusive). 0 when background refresh is off. */
static int64_t refresh_point(kpc_cache *c, int64_t now) {
  const kpc_cache_options *o = &c->opt;
  if (o->refresh_hi_pm <= 0 || o->ttl_ms <= 0) return 0;
  int64_t span = o->refresh_hi_pm - o->refresh_lo_pm + 1;
  int64_t pm = o->refresh_lo_pm + (int64_t)(kpc_rng_next(&c->rng) % (uint64_t)span);
  int64_t at = now + o->ttl_ms * pm / 1000;
  return at > now ? at : now + 1;
}

static kms_status nomem(kms_error *err) {
  return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
}

/* 1 if e can be answered from the cache without a fetch: a fresh value, a
 * stale value inside its retry pause, or a cached "not found". Needs rw
 * held (shared is enough). */
static int servable(const entry *e, int64_t now, int force) {
  if (!e || force) return 0;
  if (!e->has) return neg_live(e, now) && !e->fl;
  if (now < e->expires) return 1;
  return e->stale_serving && now < e->next_fetch && now < e->stale_until && !e->fl;
}

/* Hand out a servable value (rw held, shared is enough): a copy into
 * `out`, or, with `into`, whatever into does with it (nothing allocated). */
static kms_status serve(const entry *e, int64_t now, kpc_cache_value *out,
                        kpc_cache_into_fn into, void *into_ctx, unsigned *flags,
                        kms_error *err) {
  if (!e->has) { /* a cached "not found" */
    *flags = KPC_CACHE_HIT | KPC_CACHE_NEGATIVE;
    if (err) *err = *e->neg_err;
    return KMS_NOT_FOUND;
  }
  *flags = KPC_CACHE_HIT;
  if (now >= e->expires) {
    *flags |= KPC_CACHE_STALE;
    if (err && e->last_err) *err = *e->last_err;
  }
  if (into) return into(into_ctx, &e->v, *flags);
  if (value_copy(out, &e->v) != 0) return nomem(err);
  return KMS_OK;
}

static void flight_free(flight *f) {
  kpc_cache_value_clear(&f->v);
  OPENSSL_cleanse(&f->err, sizeof f->err);
  free(f);
}

typedef enum get_mode {
  MODE_READ,      /* kpc_cache_get: serve from the cache when possible */
  MODE_FORCE,     /* kpc_cache_get(force): refresh() re-reads now */
  MODE_BACKGROUND /* kpc_cache_refresh_key: re-read a fresh value that is due */
} get_mode;

/*
 * One kpc_cache_get / kpc_cache_refresh_key call: its inputs, and what
 * it hands back. The steps below each take or drop a lock at most once;
 * the ones named *_unlocked are called with `rw` held exclusive and do not
 * change it (p11-kit's convention: the lock state is in the name).
 */
typedef struct get_call {
  kpc_cache *c;
  const char *key;
  uint64_t hash;
  get_mode mode;
  kpc_cache_fetch_fn fetch;
  void *fetch_ctx;
  int64_t retry_ms; /* MODE_BACKGROUND: next try after a failure */
  kpc_cache_value *out;
  kpc_cache_into_fn into; /* fresh hits go here instead of into out */
  void *into_ctx;
  unsigned flags;
  kms_error *err;
  kms_status raw; /* the fetch's own status (before a stale serve) */
  int fetched;    /* this call fetched */
  int change;     /* KPC_CHANGE_* the fetch revealed (0: none) */
  int64_t change_version;
} get_call;

/* Step 1 (takes and drops rw shared): a fresh hit, copied under the shared
 * lock. 1 with *st set if served. */
static int serve_shared(get_call *g, kms_status *st) {
  kpc_cache *c = g->c;
  unsigned rs = rd_lock(c);
  int64_t now = now_ms(c);
  entry *e = find(c, g->key, g->hash);
  int ok = servable(e, now, 0);
  if (ok) *st = serve(e, now, g->out, g->into, g->into_ctx, &g->flags, g->err);
  rd_unlock(c, rs);
  return ok;
}

/* Step 2 (takes rw exclusive and keeps it unless it returns 0): the entry
 * to fetch for, or NULL when there is none yet; 0 (lock dropped) when it
 * became servable meanwhile. */
static int lock_for_miss(get_call *g, entry **e, int64_t *now) {
  kpc_cache *c = g->c;
  wr_lock(c);
  *now = now_ms(c);
  sweep_some(c, *now);
  *e = find(c, g->key, g->hash);
  if (*e) expire_value(c, *e, *now);
  if (!servable(*e, *now, g->mode != MODE_READ)) return 1;
  wr_unlock(c);
  return 0;
}

/* A background re-read has nothing to do: the value is gone, in flight or
 * not due. A value past its TTL that is still held (inside stale_if_error)
 * is due: the refresher missed its window (the process was stalled, the
 * machine suspended, the backend slow) and must not give up on it, or the
 * secret would never be re-read in the background again nor its changes
 * told until some read fetched it. */
static int not_due_unlocked(const entry *e, int64_t now) {
  return !e || !e->has || e->fl || !e->refresh_at || now < e->refresh_at;
}

/* Step 3a (drops rw, waits on fmu, takes rw once more to leave): wait for
 * the fetch in flight and take its result. */
static kms_status join_flight(get_call *g, flight *f) {
  kpc_cache *c = g->c;
  f->waiters++;
  wr_unlock(c);
  pthread_mutex_lock(&c->fmu);
  while (!f->done) pthread_cond_wait(&c->fcv, &c->fmu);
  pthread_mutex_unlock(&c->fmu);
  /* Once done, the flight's result is immutable and f stays allocated
   * while we are counted in f->waiters: copy it without any lock. */
  kms_status st = f->st;
  int r = st == KMS_OK ? value_copy(g->out, &f->v) : 0;
  if (g->err && (st != KMS_OK || (f->flags & KPC_CACHE_STALE))) *g->err = f->err;
  g->flags = f->flags & ~KPC_CACHE_WARN;
  g->raw = st;
  wr_lock(c);
  int last = --f->waiters == 0;
  wr_unlock(c);
  if (last) flight_free(f);
  return r ? nomem(g->err) : st;
}

/* Step 3b (rw held; no lock change): become the leader of a fetch for the
 * key. NULL on out-of-memory. */
static flight *lead_unlocked(get_call *g, entry **e) {
  kpc_cache *c = g->c;
  if (!*e && !(*e = insert(c, g->key, g->hash))) return NULL;
  flight *f = calloc(1, sizeof *f);
  if (!f) {
    if (!(*e)->has) remove_entry(c, *e);
    return NULL;
  }
  f->gen = (*e)->gen;
  (*e)->fl = f;
  return f;
}

/* The result of the leader's fetch, while it is applied. */
typedef struct fetch_result {
  kms_status st;
  kms_error err;
  kpc_cache_value v;     /* the caller's copy (moved to g->out on success) */
  kpc_cache_value keep;  /* for the cache */
  kpc_cache_value share; /* for the waiters */
  kpc_cache_value old;   /* a replaced value, wiped after unlocking */
  unsigned flags;
} fetch_result;

/* Step 4 (no lock): fetch, and make the copies a success hands out before
 * the exclusive lock is taken again. */
static void run_fetch(get_call *g, fetch_result *r) {
  memset(r, 0, sizeof *r);
  kms_error_clear(&r->err);
  r->st = g->fetch(g->fetch_ctx, g->key, &r->v, &r->err);
  if (r->st == KMS_OK && !r->v.data) r->st = kms_error_set(&r->err, KMS_INTERNAL, 0, "empty fetch");
  g->raw = r->st;
  g->fetched = 1;
  if (r->st != KMS_OK) return;
  if (g->c->opt.ttl_ms > 0 && value_copy(&r->keep, &r->v) != 0) r->keep.data = NULL;
  if (value_copy(&r->share, &r->v) != 0) r->share.data = NULL;
}

/* Success (rw held): store the value unless a write/invalidate raced it. */
static void store_unlocked(kpc_cache *c, entry *e, int same_gen, fetch_result *r, int64_t now) {
  c->outage = 0;
  e->stale_serving = 0;
  clear_last_err(e);
  if (!r->keep.data || !same_gen) return;
  r->old = e->v;
  if (e->has) c->nvalues--;
  e->v = r->keep;
  memset(&r->keep, 0, sizeof r->keep);
  e->has = 1;
  c->nvalues++;
  e->expires = now + c->opt.ttl_ms;
  e->stale_until = e->expires + c->opt.stale_ms;
  e->refresh_at = refresh_point(c, now);
}

/* UNAVAILABLE with an old value inside its stale window (rw held): serve it
 * stale. Rare (an outage, at most once per stale_retry per key), so the
 * copy is made under the exclusive lock. A background leader (the value
 * expired during its fetch) serves its waiters but leaves the outage
 * warning to the next read that leads a fetch. */
static void serve_stale_unlocked(get_call *g, entry *e, fetch_result *r, int64_t now) {
  kpc_cache *c = g->c;
  if (!e->last_err) e->last_err = malloc(sizeof *e->last_err);
  if (!e->last_err || value_copy(g->out, &e->v) != 0) {
    r->st = nomem(&r->err);
    return;
  }
  r->flags = KPC_CACHE_STALE;
  e->stale_serving = 1;
  e->next_fetch = now + c->opt.stale_retry_ms;
  *e->last_err = r->err;
  if (!c->outage && g->mode == MODE_READ) {
    c->outage = 1;
    r->flags |= KPC_CACHE_WARN;
  }
  r->st = KMS_OK;
}

/* Step 5 (rw held): apply the fetch's result to the entry. */
static void settle_unlocked(get_call *g, entry *e, flight *f, fetch_result *r) {
  kpc_cache *c = g->c;
  int64_t now = now_ms(c);
  int same_gen = e->gen == f->gen;
  kms_status st = r->st;
  if (e->has && same_gen && st == KMS_OK && r->v.version != e->v.version) {
    g->change = KPC_CHANGE_UPDATED;
    g->change_version = r->v.version;
  } else if (e->has && same_gen && st == KMS_NOT_FOUND) {
    g->change = KPC_CHANGE_DELETED;
  }
  if (st == KMS_OK) {
    clear_neg(e);
    store_unlocked(c, e, same_gen, r, now);
    *g->out = r->v; /* move */
    memset(&r->v, 0, sizeof r->v);
  } else if (st == KMS_UNAVAILABLE && g->mode != MODE_FORCE && e->has && same_gen &&
             c->opt.stale_ms > 0 && now >= e->expires && now < e->stale_until) {
    serve_stale_unlocked(g, e, r, now);
  } else if (st == KMS_NOT_FOUND || st == KMS_PERMISSION_DENIED ||
             (st == KMS_UNAUTHENTICATED && g->mode != MODE_BACKGROUND)) {
    /* The backend's answer about this secret: never masked, the value goes. (A
     * background re-read keeps the value on UNAUTHENTICATED: that is about
     * the plugin's credentials, and the value is still fresh.) */
    entry_drop_value(c, e);
    if (st == KMS_NOT_FOUND && same_gen && c->opt.neg_ttl_ms > 0 &&
        (e->neg_err || (e->neg_err = malloc(sizeof *e->neg_err)) != NULL)) {
      *e->neg_err = r->err;
      e->neg_until = now + c->opt.neg_ttl_ms;
    }
    e->gen++;
  } else if (g->mode == MODE_BACKGROUND && e->has && same_gen) {
    e->refresh_at = now + (g->retry_ms > 0 ? g->retry_ms : 1); /* keep it, try again later */
  }
}

/* Step 6 (rw held): hand the result to the waiters and wake them. Returns
 * 1 if f has no waiters (the caller frees it after unlocking). */
static int publish_unlocked(get_call *g, entry *e, flight *f, fetch_result *r) {
  kpc_cache *c = g->c;
  f->st = r->st;
  f->err = r->err;
  f->flags = r->flags;
  if (r->st == KMS_OK && f->waiters > 0) {
    if (r->flags & KPC_CACHE_STALE) {
      if (value_copy(&f->v, g->out) != 0) f->st = nomem(&f->err); /* rare: see above */
    } else if (r->share.data) {
      f->v = r->share;
      memset(&r->share, 0, sizeof r->share);
    } else {
      f->st = nomem(&f->err);
    }
  }
  e->fl = NULL;
  if (!e->has && !e->neg_err) remove_entry(c, e);
  pthread_mutex_lock(&c->fmu);
  f->done = 1;
  pthread_cond_broadcast(&c->fcv);
  pthread_mutex_unlock(&c->fmu);
  return f->waiters == 0;
}

/* Lead a fetch (entered with rw held exclusive, returns with it dropped). */
static kms_status lead_fetch(get_call *g, entry *e) {
  kpc_cache *c = g->c;
  flight *f = lead_unlocked(g, &e);
  wr_unlock(c);
  if (!f) return nomem(g->err);
  fetch_result r;
  run_fetch(g, &r);
  wr_lock(c);
  settle_unlocked(g, e, f, &r);
  int free_f = publish_unlocked(g, e, f, &r);
  wr_unlock(c);
  if (free_f) flight_free(f);
  kpc_cache_value_clear(&r.v);
  kpc_cache_value_clear(&r.old);
  kpc_cache_value_clear(&r.keep);
  kpc_cache_value_clear(&r.share);
  g->flags = r.flags;
  if (g->err && (r.st != KMS_OK || (r.flags & KPC_CACHE_STALE))) *g->err = r.err;
  OPENSSL_cleanse(&r.err, sizeof r.err);
  if (g->change && c->opt.changed)
    c->opt.changed(c->opt.changed_ctx, g->key, g->change, g->change_version);
  return r.st;
}

/* The one path behind kpc_cache_get and kpc_cache_refresh_key. */
static kms_status get_impl(get_call *g) {
  memset(g->out, 0, sizeof *g->out);
  g->flags = 0;
  g->raw = KMS_OK;
  g->fetched = 0;
  g->hash = key_hash(g->c, g->key);
  kms_status st;
  entry *e;
  int64_t now;
  for (;;) {
    if (g->mode == MODE_READ && serve_shared(g, &st)) return st;
    if (lock_for_miss(g, &e, &now)) break; /* rw held exclusive */
  }
  if (g->mode == MODE_BACKGROUND && not_due_unlocked(e, now)) {
    wr_unlock(g->c);
    return KMS_OK;
  }
  if (e && e->fl) return join_flight(g, e->fl);
  return lead_fetch(g, e);
}

kms_status kpc_cache_get(kpc_cache *c, const char *key, int force, kpc_cache_fetch_fn fetch,
                           void *fetch_ctx, kpc_cache_value *out, unsigned *flags,
                           kms_error *err) {
  get_call g = {.c = c, .key = key, .mode = force ? MODE_FORCE : MODE_READ, .fetch = fetch,
                .fetch_ctx = fetch_ctx, .out = out, .err = err};
  kms_status st = get_impl(&g);
  if (flags) *flags = g.flags;
  return st;
}

kms_status kpc_cache_refresh_key(kpc_cache *c, const char *key, kpc_cache_fetch_fn fetch,
                                   void *fetch_ctx, int64_t retry_ms, int *fetched,
                                   kms_error *err) {
  kpc_cache_value v = {0}; /* get_impl may leave it untouched (nothing cached) */
  kms_error e;
  kms_error_clear(&e);
  get_call g = {.c = c, .key = key, .mode = MODE_BACKGROUND, .fetch = fetch,
                .fetch_ctx = fetch_ctx, .retry_ms = retry_ms, .out = &v, .err = &e};
  get_impl(&g);
  kpc_cache_value_clear(&v);
  if (fetched) *fetched = g.fetched;
  if (g.raw != KMS_OK && err) *err = e;
  OPENSSL_cleanse(&e, sizeof e);
  return g.raw;
}

kms_status kpc_cache_get_into(kpc_cache *c, const char *key, kpc_cache_fetch_fn fetch,
                                void *fetch_ctx, kpc_cache_into_fn into, void *into_ctx,
                                unsigned *flags, kms_error *err) {
  kpc_cache_value v = {0};
  get_call g = {.c = c, .key = key, .mode = MODE_READ, .fetch = fetch, .fetch_ctx = fetch_ctx,
                .out = &v, .into = into, .into_ctx = into_ctx, .err = err};
  kms_status st = get_impl(&g);
  if (st == KMS_OK && v.data) st = into(into_ctx, &v, g.flags); /* fetched: a copy */
  kpc_cache_value_clear(&v);
  if (flags) *flags = g.flags;
  return st;
}

kms_status kpc_cache_peek(kpc_cache *c, const char *key, kpc_cache_value *out,
                            kpc_cache_into_fn into, void *into_ctx, unsigned *flags,
                            kms_error *err) {
  if (out) memset(out, 0, sizeof *out);
  *flags = 0;
  kms_status st = KMS_UNAVAILABLE;
  unsigned rs = rd_lock(c);
  int64_t now = now_ms(c);
  entry *e = find(c, key, key_hash(c, key));
  if (e && ((e->has && now < e->stale_until) || (!e->has && neg_live(e, now)))) {
    st = serve(e, now, out, into, into_ctx, flags, err);
    if (*flags & KPC_CACHE_STALE) *flags |= KPC_CACHE_MISS;
  } else {
    *flags = KPC_CACHE_MISS;
  }
  rd_unlock(c, rs);
  return st;
}

static int extends(const char *k, const char *key, size_t n) {
  return strncmp(k, key, n) == 0 && (k[n] == '\0' || k[n] == '?' || k[n] == '#');
}

void kpc_cache_invalidate_all(kpc_cache *c, const char *key) {
  size_t n = strlen(key);
  wr_lock(c);
  for (size_t i = 0; i < c->nbuckets; i++) {
    entry *e = c->buckets[i];
    while (e) {
      entry *next = e->next;
      if (extends(e->key, key, n)) {
        entry_drop_value(c, e);
        clear_neg(e);
        e->gen++;
        if (!e->fl) remove_entry(c, e);
      }
      e = next;
    }
  }
  wr_unlock(c);
}

void kpc_cache_put(kpc_cache *c, const char *key, const char *data, size_t len,
                     int64_t version) {
  uint64_t h = key_hash(c, key);
  wr_lock(c);
  sweep_some(c, now_ms(c));
  entry *e = find(c, key, h);
  if (e) clear_neg(e);
  if (c->opt.ttl_ms <= 0) {
    if (e) {
      entry_drop_value(c, e);
      e->gen++;
      if (!e->fl) remove_entry(c, e);
    }
    wr_unlock(c);
    return;
  }
  if (!e) e = insert(c, key, h);
  if (e) {
    entry_drop_value(c, e);
    e->gen++;
    kpc_cache_value src = {(char *)data, len, version};
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
  wr_unlock(c);
}

void kpc_cache_invalidate(kpc_cache *c, const char *key) {
  uint64_t h = key_hash(c, key);
  wr_lock(c);
  entry *e = find(c, key, h);
  if (e) {
    entry_drop_value(c, e);
    clear_neg(e);
    e->gen++;
    if (!e->fl) remove_entry(c, e);
  }
  wr_unlock(c);
}

size_t kpc_cache_keys(kpc_cache *c, char ***keys) {
  *keys = NULL;
  wr_lock(c);
  sweep_all_unlocked(c, now_ms(c));
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
  wr_unlock(c);
  *keys = k;
  return n;
oom:
  wr_unlock(c);
  kpc_cache_keys_free(k, n);
  return 0;
}

size_t kpc_cache_due(kpc_cache *c, int64_t slack_ms, char ***keys, int64_t *next_ms) {
  *keys = NULL;
  *next_ms = 0;
  size_t n = 0, cap = 0;
  char **k = NULL;
  wr_lock(c);
  int64_t now = now_ms(c), next = 0;
  sweep_all_unlocked(c, now);
  for (size_t i = 0; i < c->nbuckets; i++) {
    for (entry *e = c->buckets[i]; e; e = e->next) {
      if (e->has && !e->fl && e->refresh_at) { /* expired but held: due (not_due_unlocked) */
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
    }
  }
  wr_unlock(c);
  *keys = k;
  *next_ms = next;
  return n;
oom:
  wr_unlock(c);
  kpc_cache_keys_free(k, n);
  *next_ms = now + 1000; /* try again soon */
  return 0;
}

void kpc_cache_keys_free(char **keys, size_t n) {
  if (!keys) return;
  for (size_t i = 0; i < n; i++) free(keys[i]);
  free(keys);
}

size_t kpc_cache_waiters(kpc_cache *c, const char *key) {
  unsigned rs = rd_lock(c);
  entry *e = find(c, key, key_hash(c, key));
  size_t n = e && e->fl ? e->fl->waiters : 0;
  rd_unlock(c, rs);
  return n;
}

size_t kpc_cache_size(kpc_cache *c) {
  unsigned rs = rd_lock(c);
  size_t n = c->nvalues;
  rd_unlock(c, rs);
  return n;
}

void kpc_cache_count_read(struct kms_stats *stats, kms_status st, unsigned flags) {
  if (flags & KPC_CACHE_NEGATIVE)
    kms_stats_add(stats, KMS_STAT_NEGATIVE_HITS, 1);
  else if (flags & KPC_CACHE_HIT)
    kms_stats_add(stats, KMS_STAT_HITS, 1);
  else if (st == KMS_OK || st == KMS_NOT_FOUND || (flags & KPC_CACHE_MISS))
    kms_stats_add(stats, KMS_STAT_MISSES, 1);
  if (flags & KPC_CACHE_STALE) kms_stats_add(stats, KMS_STAT_STALE_SERVES, 1);
}
