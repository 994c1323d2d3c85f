/*
 * test_vault_refresher_unit.c -- the background refresher (the shared
 * kpc_refresher.c with Vault's hooks, refresher.c) and the cache's refresh
 * points driven on an injected clock: the test advances the clock and waits
 * for the thread to settle (vault_refresher_settle) instead of sleeping
 * through TTLs. The fetch is the test's own (what the
 * plugin's read path would answer: a value, or Vault sealed); the auth
 * provider and HTTP client are the plugin's (token auth: nothing to renew,
 * no request is made). End-to-end runs through the real plugin and server
 * stay in test_vault_refresher.c.
 *   - a secret is re-read between 73% and 90% of its TTL (the drawn refresh
 *     point, batched 2% early), a changed value is picked up, and a read
 *     after the original TTL is a cache hit without a fetch;
 *   - Vault sealed: the refresher keeps the value (fresh, then served stale
 *     after expiry), warns once for the whole outage without the value, and
 *     says once that it recovered;
 *   - a refresher that missed the whole window (the clock jumps past the
 *     TTL) still re-reads the held value at its next round.
 * Real-time bounds (settle's 10 s) are hang detection, never speed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "auth.h"
#include "kpc_cache.h"
#include "config.h"
#include "http.h"
#include "itest.h"
#include "refresher.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TTL_MS 3000
#define STEP_MS 20

typedef struct kit {
  it_host h;
  kpc_logger lg;
  vault_config cfg;
  vault_http *http;
  vault_auth *auth;
  kpc_cache *cache;
  vault_refresher *ref;
  kpc_clock clk;
  int64_t now; /* written by the test only while the thread is settled */
  /* the fake backend (fetch runs on the refresher's thread or the test's) */
  pthread_mutex_t mu;
  const char *value;
  int sealed;
  int fetches;
  int64_t fetch_at[16];
} kit;

static int64_t fake_now(void *ctx) { return __atomic_load_n((int64_t *)ctx, __ATOMIC_ACQUIRE); }

static kms_status fetch(void *ctx, const char *key, kpc_cache_value *out, kms_error *err) {
  kit *k = ctx;
  (void)key;
  pthread_mutex_lock(&k->mu);
  if (k->fetches < 16) k->fetch_at[k->fetches] = fake_now(&k->now);
  k->fetches++;
  int sealed = k->sealed;
  const char *v = k->value;
  pthread_mutex_unlock(&k->mu);
  if (sealed) return kms_error_set(err, KMS_UNAVAILABLE, 503, "Vault is sealed");
  out->data = strdup(v);
  out->len = strlen(v);
  out->version = 1;
  return out->data ? KMS_OK : kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
}

static int fetches(kit *k) {
  pthread_mutex_lock(&k->mu);
  int n = k->fetches;
  pthread_mutex_unlock(&k->mu);
  return n;
}

static void kit_start(kit *k, int64_t stale_ms) {
  memset(k, 0, sizeof *k);
  pthread_mutex_init(&k->mu, NULL);
  it_host_init(&k->h);
  it_set(&k->h, "HCP_VAULT_ADDR", "http://127.0.0.1:9"); /* never contacted */
  it_set(&k->h, "HCP_VAULT_TOKEN", "test-token");
  k->lg.host = &k->h.host;
  k->lg.prefix = VAULT_MSG_PREFIX;
  k->now = 1000000;
  k->clk = (kpc_clock){.now_ms = fake_now, .ctx = &k->now};
  k->value = "one";
  kms_error err;
  if (vault_config_load(&k->cfg, &k->h.host, NULL, 0, &k->lg, &err) != KMS_OK ||
      vault_http_new(&k->cfg, &k->lg, &k->clk, &k->http, &err) != KMS_OK ||
      vault_auth_new(&k->cfg, k->http, &k->lg, &k->clk, &k->auth, &err) != KMS_OK)
    fail_msg("kit: %s", err.message);
  kpc_cache_options co = {.ttl_ms = TTL_MS,
                            .stale_ms = stale_ms,
                            .stale_retry_ms = 0,
                            .clock = k->clk,
                            .refresh_lo_pm = VAULT_REFRESH_LO_PM,
                            .refresh_hi_pm = VAULT_REFRESH_HI_PM};
  k->cache = kpc_cache_new(&co);
  assert_non_null(k->cache);
  vault_refresher_deps d = {k->cache, fetch, k, k->auth, k->http, &k->lg, TTL_MS, &k->clk};
  if (vault_refresher_start(&d, &k->ref, &err) != KMS_OK) fail_msg("start: %s", err.message);
  assert_int_equal(vault_refresher_settle(k->ref, 10000), 0);
}

static void kit_stop(kit *k) {
  vault_refresher_stop(k->ref);
  kpc_cache_free(k->cache);
  vault_auth_free(k->auth);
  vault_http_free(k->http);
  vault_config_free(&k->cfg);
  it_host_free(&k->h);
  pthread_mutex_destroy(&k->mu);
}

/* Advance the clock by ms in steps, letting the thread do what is due at
 * each step. */
static void advance(kit *k, int64_t ms) {
  for (int64_t done = 0; done < ms; done += STEP_MS) {
    __atomic_add_fetch(&k->now, STEP_MS, __ATOMIC_RELEASE);
    assert_int_equal(vault_refresher_settle(k->ref, 10000), 0);
  }
}

static kms_status get(kit *k, char *v, size_t n, unsigned *flags) {
  kpc_cache_value out = {0};
  kms_error err;
  kms_status st = kpc_cache_get(k->cache, "bg", 0, fetch, k, &out, flags, &err);
  if (st == KMS_OK) snprintf(v, n, "%s", out.data);
  kpc_cache_value_clear(&out);
  return st;
}

static void test_rereads_before_expiry(void **state) {
  (void)state;
  kit k;
  kit_start(&k, 0);
  char v[32];
  unsigned fl = 0;
  int64_t t0 = k.now;
  assert_int_equal(get(&k, v, sizeof v, &fl), KMS_OK);
  assert_string_equal(v, "one");
  assert_int_equal(fetches(&k), 1);
  pthread_mutex_lock(&k.mu);
  k.value = "two"; /* changed in Vault */
  pthread_mutex_unlock(&k.mu);
  /* up to the TTL: exactly one background re-read, at the refresh point */
  advance(&k, TTL_MS - STEP_MS);
  assert_int_equal(fetches(&k), 2);
  int64_t at = k.fetch_at[1] - t0;
  if (at < TTL_MS * (VAULT_REFRESH_LO_PM - 20) / 1000 || at > TTL_MS * VAULT_REFRESH_HI_PM / 1000)
    fail_msg("background re-read %lld ms after the read (TTL %d ms)", (long long)at, TTL_MS);
  /* past the first value's TTL: answered from the cache, no fetch */
  advance(&k, 300);
  assert_int_equal(get(&k, v, sizeof v, &fl), KMS_OK);
  assert_string_equal(v, "two"); /* the refresher picked up the change */
  assert_int_equal(fl, KPC_CACHE_HIT);
  assert_int_equal(fetches(&k), 2);
  assert_int_equal(it_log_count(&k.h, "background refresh"), 0); /* nothing went wrong */
  kit_stop(&k);
}

static void test_sealed_keeps_value(void **state) {
  (void)state;
  kit k;
  kit_start(&k, 60000);
  k.value = "s3cr3t-kept";
  char v[32];
  unsigned fl = 0;
  assert_int_equal(get(&k, v, sizeof v, &fl), KMS_OK);
  pthread_mutex_lock(&k.mu);
  k.sealed = 1;
  pthread_mutex_unlock(&k.mu);
  /* the refresher tries before expiry and is refused; the value stays */
  advance(&k, TTL_MS - STEP_MS);
  assert_true(fetches(&k) >= 2);
  assert_int_equal(get(&k, v, sizeof v, &fl), KMS_OK);
  assert_string_equal(v, "s3cr3t-kept");
  assert_int_equal(fl, KPC_CACHE_HIT);
  /* after expiry: the read path's stale-if-error rules: old value, flagged */
  advance(&k, 300);
  assert_int_equal(get(&k, v, sizeof v, &fl), KMS_OK);
  assert_string_equal(v, "s3cr3t-kept");
  assert_true(fl & KPC_CACHE_STALE);
  /* one warning for the whole outage, naming the failure, never the value */
  assert_int_equal(it_log_count(&k.h, "background refresh: 1 of 1 secrets could not be re-read"), 1);
  assert_int_equal(it_log_count(&k.h, "Vault is sealed"), 1);
  assert_int_equal(it_log_count(&k.h, "s3cr3t"), 0);
  /* back: the next read fetches; the refresher's next round succeeds and
   * says so once */
  pthread_mutex_lock(&k.mu);
  k.sealed = 0;
  k.value = "after";
  pthread_mutex_unlock(&k.mu);
  assert_int_equal(get(&k, v, sizeof v, &fl), KMS_OK);
  assert_string_equal(v, "after");
  assert_int_equal(fl, 0);
  advance(&k, TTL_MS);
  assert_int_equal(it_log_count(&k.h, "secrets are re-read again"), 1);
  assert_int_equal(it_log_count(&k.h, "could not be re-read"), 1);
  kit_stop(&k);
}

/* The refresher missed the whole window (the clock jumps past the TTL in
 * one step: a stalled process, a suspended machine): the value, still held
 * inside its stale window, is re-read at the next round anyway, so a read
 * after it is a fresh hit and changes keep being picked up. */
static void test_missed_window_still_rereads(void **state) {
  (void)state;
  kit k;
  kit_start(&k, 60000);
  char v[32];
  unsigned fl = 0;
  assert_int_equal(get(&k, v, sizeof v, &fl), KMS_OK);
  assert_int_equal(fetches(&k), 1);
  pthread_mutex_lock(&k.mu);
  k.value = "two";
  pthread_mutex_unlock(&k.mu);
  __atomic_add_fetch(&k.now, TTL_MS + 500, __ATOMIC_RELEASE);
  assert_int_equal(vault_refresher_settle(k.ref, 10000), 0);
  assert_int_equal(fetches(&k), 2); /* the refresher's, not a read's */
  assert_int_equal(get(&k, v, sizeof v, &fl), KMS_OK);
  assert_string_equal(v, "two");
  assert_int_equal(fl, KPC_CACHE_HIT);
  assert_int_equal(fetches(&k), 2);
  kit_stop(&k);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_rereads_before_expiry),
    cmocka_unit_test(test_sealed_keeps_value),
    cmocka_unit_test(test_missed_window_still_rereads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
