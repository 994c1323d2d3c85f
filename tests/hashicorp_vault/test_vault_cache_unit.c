/*
 * test_vault_cache_unit.c -- cache.c on its own: TTL, invalidation, put,
 * stale-if-error, never masking NOT_FOUND / PERMISSION_DENIED, warn once per
 * outage, single-flight, write-during-fetch, background refresh points
 * (jitter, due list, refresh_key success / failure / eviction, readers not
 * blocked by a background fetch), amortised eviction of dead values. Clock
 * and backend are fakes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kpc_cache.h"
#include "kms_plugin_util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct fake {
  int64_t now;
  int calls;
  kms_status next; /* status the backend returns */
  const char *value;
  int64_t version;
  /* single-flight support */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int release; /* fetch blocks until set (when block is set) */
  int block;
  kpc_cache *cache; /* for a fetch that writes during the fetch */
  int write_during_fetch;
} fake;

static int64_t fake_clock(void *ctx) { return ((fake *)ctx)->now; }

static kms_status fake_fetch(void *ctx, const char *key, kpc_cache_value *out, kms_error *err) {
  fake *f = ctx;
  pthread_mutex_lock(&f->mu);
  f->calls++;
  while (f->block && !f->release) pthread_cond_wait(&f->cv, &f->mu);
  kms_status st = f->next;
  const char *v = f->value;
  pthread_mutex_unlock(&f->mu);
  if (f->write_during_fetch) kpc_cache_put(f->cache, key, "newer", 5, 99);
  if (st != KMS_OK) return kms_error_set(err, st, 503, "backend says %d", (int)st);
  out->len = strlen(v);
  out->data = malloc(out->len + 1);
  memcpy(out->data, v, out->len + 1);
  out->version = f->version;
  return KMS_OK;
}

static kpc_cache *mk(fake *f, int64_t ttl, int64_t stale, int64_t stale_retry) {
  memset(f, 0, sizeof *f);
  pthread_mutex_init(&f->mu, NULL);
  pthread_cond_init(&f->cv, NULL);
  f->now = 1000;
  f->value = "v1";
  f->version = 1;
  kpc_cache_options o = {.ttl_ms = ttl, .stale_ms = stale, .stale_retry_ms = stale_retry,
                           .clock = {.now_ms = fake_clock, .ctx = f}};
  f->cache = kpc_cache_new(&o);
  assert_non_null(f->cache);
  return f->cache;
}

/* A cache with background refresh points between 750 and 900 permille. */
static kpc_cache *mk_bg(fake *f, int64_t ttl, int64_t stale) {
  mk(f, ttl, stale, 0);
  kpc_cache_free(f->cache);
  kpc_cache_options o = {.ttl_ms = ttl, .stale_ms = stale, .clock = {.now_ms = fake_clock, .ctx = f},
                           .refresh_lo_pm = 750, .refresh_hi_pm = 900, .seed = 42};
  f->cache = kpc_cache_new(&o);
  assert_non_null(f->cache);
  return f->cache;
}

static kms_status get(fake *f, const char *key, char *val, size_t vs, unsigned *flags) {
  kpc_cache_value v;
  kms_error err;
  kms_error_clear(&err);
  unsigned fl = 0;
  kms_status st = kpc_cache_get(f->cache, key, 0, fake_fetch, f, &v, &fl, &err);
  if (flags) *flags = fl;
  if (val) snprintf(val, vs, "%s", st == KMS_OK ? v.data : "");
  kpc_cache_value_clear(&v);
  return st;
}

static void done(fake *f) {
  kpc_cache_free(f->cache);
  pthread_mutex_destroy(&f->mu);
  pthread_cond_destroy(&f->cv);
}

static void test_ttl(void **state) {
  fake f;
  mk(&f, 1000, 0, 0);
  char v[32];
  unsigned fl;
  assert_int_equal(get(&f, "a", v, sizeof v, &fl), KMS_OK);
  assert_string_equal(v, "v1");
  assert_int_equal(fl, 0);
  f.value = "v2";
  f.now += 999;
  assert_int_equal(get(&f, "a", v, sizeof v, &fl), KMS_OK);
  assert_string_equal(v, "v1");
  assert_int_equal(fl, KPC_CACHE_HIT);
  assert_int_equal(f.calls, 1);
  f.now += 1;
  assert_int_equal(get(&f, "a", v, sizeof v, &fl), KMS_OK);
  assert_string_equal(v, "v2");
  assert_int_equal(f.calls, 2);
  assert_int_equal(kpc_cache_size(f.cache), 1);
  done(&f);
}

static void test_ttl_zero_disables(void **state) {
  fake f;
  mk(&f, 0, 60000, 0);
  for (int i = 0; i < 3; i++) assert_int_equal(get(&f, "a", NULL, 0, NULL), KMS_OK);
  assert_int_equal(f.calls, 3);
  assert_int_equal(kpc_cache_size(f.cache), 0);
  kpc_cache_put(f.cache, "a", "x", 1, 2);
  assert_int_equal(kpc_cache_size(f.cache), 0);
  done(&f);
}

static void test_put_and_invalidate(void **state) {
  fake f;
  mk(&f, 1000, 0, 0);
  char v[32];
  kpc_cache_put(f.cache, "a", "written", 7, 5);
  assert_int_equal(get(&f, "a", v, sizeof v, NULL), KMS_OK);
  assert_string_equal(v, "written");
  assert_int_equal(f.calls, 0);
  kpc_cache_invalidate(f.cache, "a");
  assert_int_equal(kpc_cache_size(f.cache), 0);
  assert_int_equal(get(&f, "a", v, sizeof v, NULL), KMS_OK);
  assert_string_equal(v, "v1");
  assert_int_equal(f.calls, 1);
  kpc_cache_invalidate(f.cache, "missing"); /* no-op */
  done(&f);
}

static void test_stale_if_error(void **state) {
  fake f;
  mk(&f, 1000, 5000, 0);
  char v[32];
  unsigned fl;
  assert_int_equal(get(&f, "a", v, sizeof v, NULL), KMS_OK);
  f.now += 1500;
  f.next = KMS_UNAVAILABLE;
  assert_int_equal(get(&f, "a", v, sizeof v, &fl), KMS_OK);
  assert_string_equal(v, "v1");
  assert_int_equal(fl, KPC_CACHE_STALE | KPC_CACHE_WARN);
  /* second stale serve of the same outage: no warning */
  assert_int_equal(get(&f, "a", v, sizeof v, &fl), KMS_OK);
  assert_int_equal(fl, KPC_CACHE_STALE);
  /* another key in the same outage: no warning either */
  f.next = KMS_OK;
  assert_int_equal(get(&f, "b", v, sizeof v, NULL), KMS_OK);
  /* b's success ended the outage; a fails again -> a new outage warns */
  f.next = KMS_UNAVAILABLE;
  assert_int_equal(get(&f, "a", v, sizeof v, &fl), KMS_OK);
  assert_int_equal(fl, KPC_CACHE_STALE | KPC_CACHE_WARN);
  /* past the window (expiry 2000 + 5000) -> the error */
  f.now = 7000;
  assert_int_equal(get(&f, "a", v, sizeof v, &fl), KMS_UNAVAILABLE);
  done(&f);
}

static void test_stale_retry_interval(void **state) {
  fake f;
  mk(&f, 1000, 60000, 3000);
  unsigned fl;
  assert_int_equal(get(&f, "a", NULL, 0, NULL), KMS_OK);
  f.now += 2000;
  f.next = KMS_UNAVAILABLE;
  assert_int_equal(get(&f, "a", NULL, 0, &fl), KMS_OK);
  assert_int_equal(f.calls, 2);
  f.now += 2999; /* within stale_retry: served without asking the backend */
  assert_int_equal(get(&f, "a", NULL, 0, &fl), KMS_OK);
  assert_int_equal(fl, KPC_CACHE_STALE | KPC_CACHE_HIT);
  assert_int_equal(f.calls, 2);
  f.now += 1;
  f.next = KMS_OK;
  f.value = "v2";
  char v[32];
  assert_int_equal(get(&f, "a", v, sizeof v, &fl), KMS_OK);
  assert_string_equal(v, "v2");
  assert_int_equal(fl, 0);
  done(&f);
}

static void test_errors_never_masked(void **state) {
  const kms_status never[] = {KMS_NOT_FOUND, KMS_PERMISSION_DENIED, KMS_UNAUTHENTICATED};
  for (size_t i = 0; i < 3; i++) {
    fake f;
    mk(&f, 1000, 60000, 0);
    assert_int_equal(get(&f, "a", NULL, 0, NULL), KMS_OK);
    f.now += 1001;
    f.next = never[i];
    assert_int_equal(get(&f, "a", NULL, 0, NULL), never[i]);
    assert_int_equal(kpc_cache_size(f.cache), 0); /* evicted and wiped */
    f.next = KMS_UNAVAILABLE;                       /* nothing left to serve stale */
    assert_int_equal(get(&f, "a", NULL, 0, NULL), KMS_UNAVAILABLE);
    done(&f);
  }
  /* INTERNAL is not an outage: not masked, but the entry stays */
  fake f;
  mk(&f, 1000, 60000, 0);
  assert_int_equal(get(&f, "a", NULL, 0, NULL), KMS_OK);
  f.now += 1001;
  f.next = KMS_INTERNAL;
  assert_int_equal(get(&f, "a", NULL, 0, NULL), KMS_INTERNAL);
  assert_int_equal(kpc_cache_size(f.cache), 1);
  done(&f);
}

static void test_force_and_keys(void **state) {
  fake f;
  mk(&f, 100000, 0, 0);
  assert_int_equal(get(&f, "a", NULL, 0, NULL), KMS_OK);
  assert_int_equal(get(&f, "b", NULL, 0, NULL), KMS_OK);
  char **keys;
  size_t n = kpc_cache_keys(f.cache, &keys);
  assert_int_equal(n, 2);
  f.value = "v9";
  for (size_t i = 0; i < n; i++) {
    kpc_cache_value v;
    assert_int_equal(kpc_cache_get(f.cache, keys[i], 1, fake_fetch, &f, &v, NULL, NULL), KMS_OK);
    assert_string_equal(v.data, "v9");
    kpc_cache_value_clear(&v);
  }
  kpc_cache_keys_free(keys, n);
  assert_int_equal(f.calls, 4);
  char v[8];
  assert_int_equal(get(&f, "a", v, sizeof v, NULL), KMS_OK);
  assert_string_equal(v, "v9");
  assert_int_equal(f.calls, 4);
  done(&f);
}

typedef struct reader {
  fake *f;
  kms_status st;
  char v[16];
} reader;

static void *read_thread(void *p) {
  reader *r = p;
  r->st = get(r->f, "cold", r->v, sizeof r->v, NULL);
  return NULL;
}

static void test_single_flight(void **state) {
  fake f;
  mk(&f, 1000, 0, 0);
  f.block = 1;
  enum { N = 16 };
  pthread_t t[N];
  reader r[N];
  for (int i = 0; i < N; i++) {
    r[i] = (reader){&f, KMS_INTERNAL, ""};
    assert_int_equal(pthread_create(&t[i], NULL, read_thread, &r[i]), 0);
  }
  /* wait until one thread fetches and the other 15 wait for it */
  for (int i = 0; i < 10000 && kpc_cache_waiters(f.cache, "cold") < N - 1; i++) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  assert_int_equal(kpc_cache_waiters(f.cache, "cold"), N - 1);
  pthread_mutex_lock(&f.mu);
  f.release = 1;
  pthread_cond_broadcast(&f.cv);
  pthread_mutex_unlock(&f.mu);
  for (int i = 0; i < N; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(r[i].st, KMS_OK);
    assert_string_equal(r[i].v, "v1");
  }
  assert_int_equal(f.calls, 1);
  done(&f);
}

static void test_single_flight_shares_errors(void **state) {
  fake f;
  mk(&f, 1000, 0, 0);
  f.block = 1;
  f.next = KMS_NOT_FOUND;
  enum { N = 4 };
  pthread_t t[N];
  reader r[N];
  for (int i = 0; i < N; i++) {
    r[i] = (reader){&f, KMS_OK, ""};
    pthread_create(&t[i], NULL, read_thread, &r[i]);
  }
  for (int i = 0; i < 10000 && kpc_cache_waiters(f.cache, "cold") < N - 1; i++) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  pthread_mutex_lock(&f.mu);
  f.release = 1;
  pthread_cond_broadcast(&f.cv);
  pthread_mutex_unlock(&f.mu);
  for (int i = 0; i < N; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(r[i].st, KMS_NOT_FOUND);
  }
  assert_int_equal(f.calls, 1);
  assert_int_equal(kpc_cache_size(f.cache), 0);
  done(&f);
}

static void test_write_during_fetch_wins(void **state) {
  fake f;
  mk(&f, 1000, 0, 0);
  f.write_during_fetch = 1;
  char v[16];
  assert_int_equal(get(&f, "a", v, sizeof v, NULL), KMS_OK);
  assert_string_equal(v, "v1"); /* the fetch's own caller gets what it fetched */
  f.write_during_fetch = 0;
  assert_int_equal(get(&f, "a", v, sizeof v, NULL), KMS_OK);
  assert_string_equal(v, "newer"); /* but the cache keeps the newer write */
  assert_int_equal(f.calls, 1);
  done(&f);
}

static void test_many_keys_grow(void **state) {
  fake f;
  mk(&f, 100000, 0, 0);
  char k[32];
  for (int i = 0; i < 500; i++) {
    snprintf(k, sizeof k, "key-%d", i);
    assert_int_equal(get(&f, k, NULL, 0, NULL), KMS_OK);
  }
  assert_int_equal(kpc_cache_size(f.cache), 500);
  for (int i = 0; i < 500; i++) {
    snprintf(k, sizeof k, "key-%d", i);
    assert_int_equal(get(&f, k, NULL, 0, NULL), KMS_OK);
  }
  assert_int_equal(f.calls, 500);
  done(&f);
}

static size_t due(fake *f, int64_t slack, int64_t *next) {
  char **k = NULL;
  size_t n = kpc_cache_due(f->cache, slack, &k, next);
  kpc_cache_keys_free(k, n);
  return n;
}

static kms_status bg(fake *f, const char *key, int *fetched) {
  kms_error err;
  kms_error_clear(&err);
  return kpc_cache_refresh_key(f->cache, key, fake_fetch, f, 100, fetched, &err);
}

static void test_background_refresh_point(void **state) {
  fake f;
  mk_bg(&f, 1000, 0);
  char v[32];
  int64_t next = 0;
  int fetched = -1;
  assert_int_equal(due(&f, 0, &next), 0); /* empty */
  assert_int_equal(next, 0);
  assert_int_equal(get(&f, "a", v, sizeof v, NULL), KMS_OK);
  assert_int_equal(due(&f, 0, &next), 0);
  assert_true(next >= 1000 + 750 && next <= 1000 + 900);
  /* not due yet: refresh_key does nothing */
  assert_int_equal(bg(&f, "a", &fetched), KMS_OK);
  assert_int_equal(fetched, 0);
  assert_int_equal(f.calls, 1);
  /* slack brings it forward */
  int64_t point = next;
  assert_int_equal(due(&f, point - f.now, &next), 1);
  f.now = point;
  assert_int_equal(due(&f, 0, &next), 1);
  assert_int_equal(next, 0);
  f.value = "v2";
  int64_t t = f.now;
  assert_int_equal(bg(&f, "a", &fetched), KMS_OK);
  assert_int_equal(fetched, 1);
  assert_int_equal(f.calls, 2);
  /* the new value, fresh for a whole TTL from the refresh, with a new point */
  f.now = t + 999;
  unsigned fl;
  assert_int_equal(get(&f, "a", v, sizeof v, &fl), KMS_OK);
  assert_string_equal(v, "v2");
  assert_int_equal(fl, KPC_CACHE_HIT);
  assert_int_equal(f.calls, 2);
  /* a value that already expired is left to reads */
  f.now = t + 1000;
  assert_int_equal(due(&f, 0, &next), 0);
  assert_int_equal(bg(&f, "a", &fetched), KMS_OK);
  assert_int_equal(fetched, 0);
  /* a key that is not cached is not fetched (nor created) */
  assert_int_equal(bg(&f, "never", &fetched), KMS_OK);
  assert_int_equal(fetched, 0);
  assert_int_equal(f.calls, 2);
  done(&f);
}

static void test_background_refresh_jitter(void **state) {
  fake f;
  mk_bg(&f, 100000, 0);
  char k[32];
  enum { N = 64 };
  for (int i = 0; i < N; i++) {
    snprintf(k, sizeof k, "j%d", i);
    assert_int_equal(get(&f, k, NULL, 0, NULL), KMS_OK);
  }
  /* walk the clock: every point lies in [75%, 90%] of the TTL, and they
   * are spread out (not all at the same millisecond) */
  int64_t start = f.now, next = 0, first = 0, last = 0;
  size_t seen = 0, steps = 0;
  assert_int_equal(due(&f, 0, &next), 0);
  while (next && next < start + 100000) { /* refreshed ones come back after the TTL */
    f.now = next;
    size_t n = due(&f, 0, &next);
    if (!first) first = f.now;
    last = f.now;
    for (int i = 0; i < N && n; i++) {
      snprintf(k, sizeof k, "j%d", i);
      int fetched = 0;
      bg(&f, k, &fetched);
      seen += (size_t)fetched;
    }
    steps++;
  }
  assert_int_equal(seen, N);
  assert_true(first >= start + 75000 && last <= start + 90000);
  assert_true(steps >= N / 2); /* distinct points */
  assert_true(last - first >= 5000);
  done(&f);
}

static void test_background_refresh_failures(void **state) {
  fake f;
  mk_bg(&f, 1000, 60000);
  char v[32];
  unsigned fl;
  int fetched;
  int64_t next;
  assert_int_equal(get(&f, "a", NULL, 0, NULL), KMS_OK);
  assert_int_equal(get(&f, "b", NULL, 0, NULL), KMS_OK);
  assert_int_equal(get(&f, "c", NULL, 0, NULL), KMS_OK);
  f.now += 900;
  assert_int_equal(due(&f, 0, &next), 3);
  /* Vault down: the value is kept (and still served fresh), retried later */
  f.next = KMS_UNAVAILABLE;
  assert_int_equal(bg(&f, "a", &fetched), KMS_UNAVAILABLE);
  assert_int_equal(fetched, 1);
  assert_int_equal(get(&f, "a", v, sizeof v, &fl), KMS_OK);
  assert_string_equal(v, "v1");
  assert_int_equal(fl, KPC_CACHE_HIT);
  /* credentials refused: about the plugin, not the secret: kept too */
  f.next = KMS_UNAUTHENTICATED;
  assert_int_equal(bg(&f, "b", &fetched), KMS_UNAUTHENTICATED);
  assert_int_equal(get(&f, "b", v, sizeof v, &fl), KMS_OK);
  assert_int_equal(fl, KPC_CACHE_HIT);
  /* both pushed back by retry_ms (100) */
  assert_int_equal(due(&f, 0, &next), 1); /* only c */
  assert_int_equal(next, f.now + 100);
  /* the secret is gone in Vault: evicted, as a read would */
  f.next = KMS_NOT_FOUND;
  assert_int_equal(bg(&f, "c", &fetched), KMS_NOT_FOUND);
  assert_int_equal(kpc_cache_size(f.cache), 2);
  assert_int_equal(f.calls, 6);
  assert_int_equal(get(&f, "c", NULL, 0, NULL), KMS_NOT_FOUND);
  /* after expiry the read path's stale-if-error rules apply as before */
  f.now += 100;
  f.next = KMS_UNAVAILABLE;
  assert_int_equal(get(&f, "a", v, sizeof v, &fl), KMS_OK);
  assert_string_equal(v, "v1");
  assert_int_equal(fl, KPC_CACHE_STALE | KPC_CACHE_WARN);
  done(&f);
}

typedef struct bg_arg {
  fake *f;
  kms_status st;
} bg_arg;

static void *bg_thread(void *p) {
  bg_arg *a = p;
  a->st = bg(a->f, "hot", NULL);
  return NULL;
}

static void test_background_fetch_does_not_block_readers(void **state) {
  fake f;
  mk_bg(&f, 1000, 0);
  assert_int_equal(get(&f, "hot", NULL, 0, NULL), KMS_OK);
  f.now += 950; /* due, still fresh */
  f.block = 1;
  f.value = "v2";
  bg_arg a = {&f, KMS_INTERNAL};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, bg_thread, &a), 0);
  for (int i = 0; i < 10000; i++) { /* until the background fetch is in flight */
    pthread_mutex_lock(&f.mu);
    int c = f.calls;
    pthread_mutex_unlock(&f.mu);
    if (c == 2) break;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  char v[32];
  unsigned fl;
  for (int i = 0; i < 5; i++) { /* served at once from the cache */
    assert_int_equal(get(&f, "hot", v, sizeof v, &fl), KMS_OK);
    assert_string_equal(v, "v1");
    assert_int_equal(fl, KPC_CACHE_HIT);
  }
  assert_int_equal(kpc_cache_waiters(f.cache, "hot"), 0);
  pthread_mutex_lock(&f.mu);
  f.release = 1;
  pthread_cond_broadcast(&f.cv);
  pthread_mutex_unlock(&f.mu);
  pthread_join(t, NULL);
  assert_int_equal(a.st, KMS_OK);
  assert_int_equal(get(&f, "hot", v, sizeof v, &fl), KMS_OK);
  assert_string_equal(v, "v2");
  assert_int_equal(f.calls, 2);
  done(&f);
}

static void test_dead_values_swept(void **state) {
  fake f;
  mk(&f, 1000, 500, 0);
  char k[32];
  for (int i = 0; i < 100; i++) {
    snprintf(k, sizeof k, "old-%d", i);
    assert_int_equal(get(&f, k, NULL, 0, NULL), KMS_OK);
  }
  assert_int_equal(kpc_cache_size(f.cache), 100);
  f.now += 1499; /* expired, but still inside the stale window: kept */
  for (int i = 0; i < 200; i++) kpc_cache_put(f.cache, "other", "x", 1, 1);
  assert_int_equal(kpc_cache_size(f.cache), 101);
  f.now += 1; /* past the stale window: never servable again */
  for (int i = 0; i < 200; i++) kpc_cache_put(f.cache, "other", "x", 1, 1);
  assert_int_equal(kpc_cache_size(f.cache), 1);
  done(&f);
}

/* ---- ABI 1.1 additions: negative entries, peek, change observer ---- */

static int changes_kind[8];
static int64_t changes_version[8];
static int nchanges;

static void observe(void *ctx, const char *key, int kind, int64_t version) {
  (void)ctx;
  (void)key;
  if (nchanges < 8) {
    changes_kind[nchanges] = kind;
    changes_version[nchanges] = version;
  }
  nchanges++;
}

static kpc_cache *mk_neg(fake *f, int64_t ttl, int64_t stale, int64_t neg) {
  mk(f, ttl, stale, 0);
  kpc_cache_free(f->cache);
  kpc_cache_options o = {.ttl_ms = ttl, .stale_ms = stale, .clock = {.now_ms = fake_clock, .ctx = f},
                           .neg_ttl_ms = neg, .changed = observe};
  f->cache = kpc_cache_new(&o);
  assert_non_null(f->cache);
  nchanges = 0;
  return f->cache;
}

static void test_negative_ttl(void **state) {
  fake f;
  mk_neg(&f, 1000, 0, 500);
  unsigned fl;
  f.next = KMS_NOT_FOUND;
  assert_int_equal(get(&f, "a", NULL, 0, &fl), KMS_NOT_FOUND);
  assert_int_equal(fl, 0);
  for (int i = 0; i < 100; i++) {
    assert_int_equal(get(&f, "a", NULL, 0, &fl), KMS_NOT_FOUND);
    assert_int_equal(fl, KPC_CACHE_HIT | KPC_CACHE_NEGATIVE);
  }
  assert_int_equal(f.calls, 1);
  assert_int_equal(kpc_cache_size(f.cache), 0); /* not a value */
  f.now += 500; /* neg_ttl passed: ask again */
  assert_int_equal(get(&f, "a", NULL, 0, NULL), KMS_NOT_FOUND);
  assert_int_equal(f.calls, 2);
  kpc_cache_put(f.cache, "a", "w", 1, 3); /* a write clears it */
  char v[8];
  assert_int_equal(get(&f, "a", v, sizeof v, NULL), KMS_OK);
  assert_string_equal(v, "w");
  kpc_cache_invalidate(f.cache, "a");
  assert_int_equal(get(&f, "a", NULL, 0, NULL), KMS_NOT_FOUND);
  assert_int_equal(f.calls, 3);
  kpc_cache_invalidate_all(f.cache, "a"); /* a delete clears it */
  f.next = KMS_OK;
  assert_int_equal(get(&f, "a", v, sizeof v, NULL), KMS_OK);
  assert_string_equal(v, "v1");
  /* neg_ttl 0: nothing remembered */
  done(&f);
  mk_neg(&f, 1000, 0, 0);
  f.next = KMS_NOT_FOUND;
  for (int i = 0; i < 3; i++) assert_int_equal(get(&f, "a", NULL, 0, NULL), KMS_NOT_FOUND);
  assert_int_equal(f.calls, 3);
  done(&f);
}

static void test_peek(void **state) {
  fake f;
  mk_neg(&f, 1000, 5000, 500);
  unsigned fl;
  kpc_cache_value v;
  kms_error err;
  assert_int_equal(kpc_cache_peek(f.cache, "a", &v, NULL, NULL, &fl, &err), KMS_UNAVAILABLE);
  assert_int_equal(fl, KPC_CACHE_MISS);
  assert_int_equal(f.calls, 0); /* never fetches */
  assert_int_equal(get(&f, "a", NULL, 0, NULL), KMS_OK);
  assert_int_equal(kpc_cache_peek(f.cache, "a", &v, NULL, NULL, &fl, &err), KMS_OK);
  assert_int_equal(fl, KPC_CACHE_HIT);
  assert_string_equal(v.data, "v1");
  kpc_cache_value_clear(&v);
  f.now += 2000; /* expired, inside the stale window: served stale, fetch wanted */
  assert_int_equal(kpc_cache_peek(f.cache, "a", &v, NULL, NULL, &fl, &err), KMS_OK);
  assert_int_equal(fl, KPC_CACHE_HIT | KPC_CACHE_STALE | KPC_CACHE_MISS);
  kpc_cache_value_clear(&v);
  f.next = KMS_NOT_FOUND;
  assert_int_equal(get(&f, "b", NULL, 0, NULL), KMS_NOT_FOUND);
  assert_int_equal(kpc_cache_peek(f.cache, "b", &v, NULL, NULL, &fl, &err), KMS_NOT_FOUND);
  assert_int_equal(fl, KPC_CACHE_HIT | KPC_CACHE_NEGATIVE);
  assert_int_equal(f.calls, 2);
  done(&f);
}

static void test_change_observer(void **state) {
  fake f;
  mk_neg(&f, 1000, 0, 0);
  assert_int_equal(get(&f, "a", NULL, 0, NULL), KMS_OK); /* first fetch: no change */
  assert_int_equal(nchanges, 0);
  kpc_cache_value v;
  kms_error err;
  assert_int_equal(kpc_cache_get(f.cache, "a", 1, fake_fetch, &f, &v, NULL, &err), KMS_OK);
  kpc_cache_value_clear(&v);
  assert_int_equal(nchanges, 0); /* same version */
  f.version = 2;
  assert_int_equal(kpc_cache_get(f.cache, "a", 1, fake_fetch, &f, &v, NULL, &err), KMS_OK);
  kpc_cache_value_clear(&v);
  assert_int_equal(nchanges, 1);
  assert_int_equal(changes_kind[0], KPC_CHANGE_UPDATED);
  assert_int_equal(changes_version[0], 2);
  kpc_cache_put(f.cache, "a", "own", 3, 3); /* our own write: not a change */
  assert_int_equal(nchanges, 1);
  f.next = KMS_NOT_FOUND;
  assert_int_equal(kpc_cache_get(f.cache, "a", 1, fake_fetch, &f, &v, NULL, &err),
                   KMS_NOT_FOUND);
  assert_int_equal(nchanges, 2);
  assert_int_equal(changes_kind[1], KPC_CHANGE_DELETED);
  done(&f);
}

static void test_invalidate_all(void **state) {
  fake f;
  mk(&f, 1000, 0, 0);
  const char *keys[] = {"u", "u?version=1", "u#f=x", "uv", "u/x"};
  for (size_t i = 0; i < 5; i++) kpc_cache_put(f.cache, keys[i], "x", 1, 1);
  kpc_cache_invalidate_all(f.cache, "u");
  char **k = NULL;
  size_t n = kpc_cache_keys(f.cache, &k);
  assert_int_equal(n, 2); /* uv and u/x are other secrets */
  kpc_cache_keys_free(k, n);
  done(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_ttl),
    cmocka_unit_test(test_ttl_zero_disables),
    cmocka_unit_test(test_put_and_invalidate),
    cmocka_unit_test(test_stale_if_error),
    cmocka_unit_test(test_stale_retry_interval),
    cmocka_unit_test(test_errors_never_masked),
    cmocka_unit_test(test_force_and_keys),
    cmocka_unit_test(test_single_flight),
    cmocka_unit_test(test_single_flight_shares_errors),
    cmocka_unit_test(test_write_during_fetch_wins),
    cmocka_unit_test(test_many_keys_grow),
    cmocka_unit_test(test_background_refresh_point),
    cmocka_unit_test(test_background_refresh_jitter),
    cmocka_unit_test(test_background_refresh_failures),
    cmocka_unit_test(test_background_fetch_does_not_block_readers),
    cmocka_unit_test(test_dead_values_swept),
    cmocka_unit_test(test_negative_ttl),
    cmocka_unit_test(test_peek),
    cmocka_unit_test(test_change_observer),
    cmocka_unit_test(test_invalidate_all),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
