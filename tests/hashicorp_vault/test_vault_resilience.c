/*
 * test_vault_resilience.c -- retries, redirects, stale-if-error and
 * single-flight against tests/vault_server's fault controls:
 *   503 twice then 200 (success, 3 requests); Retry-After beyond the
 *   budget; 400/403/404/501 never retried; dropped connection retried;
 *   sealed past the retry budget -> UNAVAILABLE; standby 307 to a
 *   second instance (followed with the token only when allowed; https->http
 *   refused; never more than one redirect); outage after expiry -> stale
 *   value flagged, warned once per outage, NOT_FOUND / PERMISSION_DENIED
 *   never masked; 16 threads on one cold secret -> one request.
 * Retry-After honoured and retries bounded by the timeout are driven on an
 * injected clock in test_vault_http_clock.c (no sleeping).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static vf_server *A, *B, *C; /* C serves HTTPS */
static char root_hash[80];

static int setup(void **state) {
  A = vf_start(NULL);
  B = vf_start(NULL);
  C = vf_start(&(vf_options){.tls = 1});
  if (!A || !B || !C) return -1;
  vf_token_hash("root", root_hash, sizeof root_hash);
  return 0;
}

static int teardown(void **state) {
  vf_stop(A);
  vf_stop(B);
  vf_stop(C);
  return 0;
}

static int reset(void **state) {
  vf_server *all[] = {A, B, C};
  for (int i = 0; i < 3; i++) {
    vf_clear_faults(all[i]);
    vf_clear_requests(all[i]);
    vf_seal(all[i], 0);
    vf_standby(all[i], NULL, 0);
  }
  return 0;
}

static kms_client *client(it_host *h, vf_server *s, const char *const *env, const kms_setting *set,
                          size_t n) {
  it_host_init(h);
  it_target(h, s, s == C, 0);
  for (size_t i = 0; env && env[i]; i += 2) it_set(h, env[i], env[i + 1]);
  kms_client *c = NULL;
  kms_error err;
  if (it_client(h, set, n, &c, &err) != KMS_OK) fail_msg("create: %s", err.message);
  return c;
}


static kms_status rd(kms_client *c, const char *name, char *val, size_t vs, uint32_t *flags,
                     kms_error *err) {
  return it_read(c, name, val, vs, flags, err);
}

static const char *NOCACHE[] = {"HCP_VAULT_REFRESH_INTERVAL", "0", NULL};

static void test_503_twice_then_ok(void **state) {
  vf_put(A, "secret/data/r1", "{\"key\":\"v1\"}");
  vf_clear_requests(A);
  vf_fault(A, "{\"method\":\"GET\",\"path\":\"^/v1/secret/data/r1$\",\"status\":503,\"times\":2}");
  it_host h;
  kms_client *c = client(&h, A, NOCACHE, NULL, 0);
  kms_error err;
  char v[32];
  assert_int_equal(rd(c, "r1", v, sizeof v, NULL, &err), KMS_OK);
  assert_string_equal(v, "v1");
  vf_log *log = vf_requests(A);
  assert_int_equal(vf_count(log, "GET", "/v1/secret/data/r1"), 3);
  vf_log_free(log);
  assert_int_equal(it_log_count(&h, "HTTP 503; retry"), 2);
  it_done(&h, c);
}

static void test_retry_after_beyond_budget(void **state) {
  /* Retry-After longer than what is left of the timeout: give up at once */
  vf_fault(A, "{\"method\":\"GET\",\"path\":\"^/v1/secret/data/r3$\",\"status\":503,\"headers\":{\"Retry-After\":\"30\"},\"times\":-1}");
  const char *env[] = {"HCP_VAULT_REFRESH_INTERVAL", "0", "VAULT_CLIENT_TIMEOUT", "3", NULL};
  it_host h;
  kms_client *c = client(&h, A, env, NULL, 0);
  kms_error err;
  long long t0 = it_now_ms();
  assert_int_equal(rd(c, "r3", NULL, 0, NULL, &err), KMS_UNAVAILABLE);
  assert_true(it_now_ms() - t0 < 3000 + 2000);
  assert_non_null(strstr(err.message, "HTTP 503"));
  vf_log *log = vf_requests(A);
  assert_int_equal(log->n, 1);
  vf_log_free(log);
  it_done(&h, c);
}

static void test_no_retry_statuses(void **state) {
  static const struct {
    int http;
    kms_status st;
  } t[] = {{400, KMS_INVALID_ARGUMENT}, {403, KMS_PERMISSION_DENIED}, {404, KMS_NOT_FOUND},
           {501, KMS_UNAVAILABLE}};
  for (size_t i = 0; i < 4; i++) {
    reset(NULL);
    char f[200];
    snprintf(f, sizeof f, "{\"method\":\"GET\",\"path\":\"^/v1/secret/data/nr$\",\"status\":%d,\"times\":-1}", t[i].http);
    vf_fault(A, f);
    it_host h;
    kms_client *c = client(&h, A, NOCACHE, NULL, 0);
    kms_error err;
    assert_int_equal(rd(c, "nr", NULL, 0, NULL, &err), t[i].st);
    assert_int_equal(err.backend_status, t[i].http);
    vf_log *log = vf_requests(A);
    /* (a bare 403 also asks lookup-self about the static token, for health) */
    size_t kv = vf_count(log, "GET", "/v1/secret/data/nr");
    if (kv != 1) fail_msg("HTTP %d: %zu requests", t[i].http, kv);
    if (log->n != (t[i].http == 403 ? 2u : 1u))
      fail_msg("HTTP %d: %zu requests in all", t[i].http, log->n);
    vf_log_free(log);
    it_done(&h, c);
  }
}

static void test_500_budget_and_errors_text(void **state) {
  vf_fault(A, "{\"method\":\"GET\",\"path\":\"^/v1/secret/data/r5$\",\"status\":500,\"body\":{\"errors\":[\"storage backend exploded\"]},\"times\":-1}");
  const char *env[] = {"HCP_VAULT_REFRESH_INTERVAL", "0", "VAULT_MAX_RETRIES", "1", NULL};
  it_host h;
  kms_client *c = client(&h, A, env, NULL, 0);
  kms_error err;
  assert_int_equal(rd(c, "r5", NULL, 0, NULL, &err), KMS_UNAVAILABLE);
  assert_int_equal(err.backend_status, 500);
  assert_non_null(strstr(err.message, "HTTP 500 after 2 attempts: storage backend exploded"));
  vf_log *log = vf_requests(A);
  assert_int_equal(log->n, 2);
  vf_log_free(log);
  it_done(&h, c);
}

static void test_dropped_connection_retried(void **state) {
  vf_put(A, "secret/data/r6", "{\"key\":\"v6\"}");
  vf_clear_requests(A);
  vf_fault(A, "{\"method\":\"GET\",\"path\":\"^/v1/secret/data/r6$\",\"drop\":true,\"times\":1}");
  it_host h;
  kms_client *c = client(&h, A, NOCACHE, NULL, 0);
  kms_error err;
  char v[16];
  assert_int_equal(rd(c, "r6", v, sizeof v, NULL, &err), KMS_OK);
  assert_string_equal(v, "v6");
  vf_log *log = vf_requests(A);
  assert_int_equal(log->n, 2);
  vf_log_free(log);
  it_done(&h, c);
}

static void test_sealed_past_budget(void **state) {
  /* (that retries stop at the VAULT_CLIENT_TIMEOUT deadline is driven on an
   * injected clock in test_vault_http_clock.c) */
  vf_seal(A, 1);
  /* with the default retry budget: exactly 1 + VAULT_MAX_RETRIES requests */
  const char *env2[] = {"HCP_VAULT_REFRESH_INTERVAL", "0", "VAULT_MAX_RETRIES", "2", NULL};
  it_host h;
  kms_client *c = client(&h, A, env2, NULL, 0);
  kms_error err;
  assert_int_equal(rd(c, "sealed", NULL, 0, NULL, &err), KMS_UNAVAILABLE);
  assert_non_null(strstr(err.message, "after 3 attempts"));
  assert_non_null(strstr(err.message, "Vault is sealed"));
  assert_int_equal(err.backend_status, 503);
  vf_log *log = vf_requests(A);
  assert_int_equal(log->n, 3);
  vf_log_free(log);
  it_done(&h, c);
}

static char *host_port(vf_server *s, char *buf, size_t n) {
  snprintf(buf, n, "127.0.0.1:%d", vf_port(s));
  return buf;
}

static void test_standby_redirect(void **state) {
  vf_put(B, "secret/data/sb", "{\"key\":\"from-b\"}");
  vf_clear_requests(B);
  vf_standby(A, vf_url(B), 307);
  kms_error err;
  char v[32];

  /* not allowed: refused, nothing (and no token) sent to B */
  it_host h;
  kms_client *c = client(&h, A, NOCACHE, NULL, 0);
  assert_int_equal(rd(c, "sb", v, sizeof v, NULL, &err), KMS_UNAVAILABLE);
  assert_non_null(strstr(err.message, "redirect_allowed_hosts"));
  assert_int_equal(err.backend_status, 307);
  vf_log *log = vf_requests(B);
  assert_int_equal(log->n, 0);
  vf_log_free(log);
  log = vf_requests(A);
  assert_int_equal(log->n, 1); /* a refused redirect is not retried */
  vf_log_free(log);
  it_done(&h, c);

  /* allowed: followed once, same method and body, token sent to B */
  reset(NULL);
  vf_standby(A, vf_url(B), 307);
  char hp[64];
  kms_setting s[] = {{"redirect_allowed_hosts", host_port(B, hp, sizeof hp)},
                     {"access_mode", "read_and_write"}};
  c = client(&h, A, NOCACHE, s, 2);
  assert_int_equal(rd(c, "sb", v, sizeof v, NULL, &err), KMS_OK);
  assert_string_equal(v, "from-b");
  assert_int_equal(kms_client_write(c, "sbw", "written-via-a", 13, NULL, &err), KMS_OK);
  log = vf_requests(B);
  assert_int_equal(log->n, 2);
  assert_string_equal(log->r[0].method, "GET");
  assert_string_equal(vf_header(&log->r[0], "X-Vault-Token"), root_hash);
  assert_string_equal(log->r[1].method, "POST");
  assert_string_equal(log->r[1].path, "/v1/secret/data/sbw");
  assert_string_equal(log->r[1].body, "{\"data\":{\"key\":\"written-via-a\"}}");
  vf_log_free(log);
  log = vf_requests(A);
  assert_int_equal(log->n, 2);
  vf_log_free(log);
  it_done(&h, c);
}

static void test_same_origin_redirect(void **state) {
  vf_put(A, "secret/data/target", "{\"key\":\"moved\"}");
  vf_clear_requests(A);
  char f[400];
  snprintf(f, sizeof f, "{\"method\":\"GET\",\"path\":\"^/v1/secret/data/old$\",\"status\":302,\"headers\":{\"Location\":\"%s/v1/secret/data/target\"},\"times\":1}", vf_url(A));
  vf_fault(A, f);
  it_host h;
  kms_client *c = client(&h, A, NOCACHE, NULL, 0);
  kms_error err;
  char v[32];
  assert_int_equal(rd(c, "old", v, sizeof v, NULL, &err), KMS_OK);
  assert_string_equal(v, "moved");
  vf_log *log = vf_requests(A);
  assert_int_equal(log->n, 2);
  assert_string_equal(log->r[1].path, "/v1/secret/data/target");
  assert_string_equal(vf_header(&log->r[1], "X-Vault-Token"), root_hash);
  vf_log_free(log);
  it_done(&h, c);
}

static void test_https_to_http_refused_and_one_redirect_only(void **state) {
  vf_standby(C, vf_url(B), 307);
  char hp[64];
  kms_setting s[] = {{"redirect_allowed_hosts", host_port(B, hp, sizeof hp)}};
  it_host h;
  kms_client *c = client(&h, C, NOCACHE, s, 1);
  kms_error err;
  assert_int_equal(rd(c, "x", NULL, 0, NULL, &err), KMS_UNAVAILABLE);
  assert_non_null(strstr(err.message, "https to http"));
  vf_log *log = vf_requests(B);
  assert_int_equal(log->n, 0);
  vf_log_free(log);
  it_done(&h, c);

  /* A -> B -> A: the second redirect is not followed */
  reset(NULL);
  vf_standby(A, vf_url(B), 307);
  vf_standby(B, vf_url(A), 307);
  kms_setting s2[] = {{"redirect_allowed_hosts", host_port(B, hp, sizeof hp)}};
  c = client(&h, A, NOCACHE, s2, 1);
  assert_int_equal(rd(c, "x", NULL, 0, NULL, &err), KMS_UNAVAILABLE);
  assert_non_null(strstr(err.message, "more than once"));
  log = vf_requests(A);
  assert_int_equal(log->n, 1);
  vf_log_free(log);
  it_done(&h, c);
}

static void test_stale_if_error(void **state) {
  vf_put(A, "secret/data/st", "{\"key\":\"last-good\"}");
  const char *env[] = {"HCP_VAULT_REFRESH_INTERVAL", "1", "VAULT_MAX_RETRIES", "0", NULL};
  kms_setting s[] = {{"stale_if_error", "60"}, {"stale_retry_interval", "0"}};
  it_host h;
  kms_client *c = client(&h, A, env, s, 2);
  kms_error err;
  char v[32];
  uint32_t fl;
  assert_int_equal(rd(c, "st", v, sizeof v, &fl, &err), KMS_OK);
  assert_int_equal(fl, 0);
  /* outage after expiry */
  struct timespec ts = {1, 200000000};
  nanosleep(&ts, NULL);
  vf_seal(A, 1);
  vf_clear_requests(A);
  assert_int_equal(rd(c, "st", v, sizeof v, &fl, &err), KMS_OK);
  assert_string_equal(v, "last-good");
  assert_int_equal(fl, KMS_SECRET_STALE);
  assert_int_equal(rd(c, "st", v, sizeof v, &fl, &err), KMS_OK);
  assert_int_equal(fl, KMS_SECRET_STALE);
  vf_log *log = vf_requests(A);
  assert_int_equal(log->n, 2); /* each read still tried Vault (stale_retry_interval 0) */
  vf_log_free(log);
  assert_int_equal(it_log_count(&h, "serving cached secrets marked stale"), 1);
  assert_int_equal(it_log_count(&h, "Vault is sealed"), 1);
  /* Vault is back: fresh value, flag cleared */
  vf_seal(A, 0);
  vf_put(A, "secret/data/st", "{\"key\":\"newer\"}");
  assert_int_equal(rd(c, "st", v, sizeof v, &fl, &err), KMS_OK);
  assert_string_equal(v, "newer");
  assert_int_equal(fl, 0);
  /* a second outage warns again */
  nanosleep(&ts, NULL);
  vf_seal(A, 1);
  assert_int_equal(rd(c, "st", v, sizeof v, &fl, &err), KMS_OK);
  assert_int_equal(fl, KMS_SECRET_STALE);
  assert_int_equal(it_log_count(&h, "serving cached secrets marked stale"), 2);
  it_done(&h, c);
}

static void test_stale_never_masks_not_found_or_denied(void **state) {
  static const struct {
    int http;
    kms_status st;
  } t[] = {{404, KMS_NOT_FOUND}, {403, KMS_PERMISSION_DENIED}};
  /* both cases side by side (one secret and one client each), so that one
   * wait past the 1 s TTL covers both */
  it_host h[2];
  kms_client *c[2];
  char path[64], name[16], f[200];
  kms_error err;
  for (size_t i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "secret/data/nm%zu", i);
    snprintf(name, sizeof name, "nm%zu", i);
    vf_put(A, path, "{\"key\":\"v\"}");
    const char *env[] = {"HCP_VAULT_REFRESH_INTERVAL", "1", NULL};
    c[i] = client(&h[i], A, env, NULL, 0);
    assert_int_equal(rd(c[i], name, NULL, 0, NULL, &err), KMS_OK);
  }
  struct timespec ts = {1, 200000000};
  nanosleep(&ts, NULL);
  for (size_t i = 0; i < 2; i++) {
    snprintf(name, sizeof name, "nm%zu", i);
    snprintf(f, sizeof f, "{\"method\":\"GET\",\"path\":\"^/v1/secret/data/nm%zu$\",\"status\":%d,\"times\":-1}", i, t[i].http);
    vf_fault(A, f);
    assert_int_equal(rd(c[i], name, NULL, 0, NULL, &err), t[i].st);
  }
  /* and the old values are gone for good: an outage now has nothing to serve */
  vf_clear_faults(A);
  vf_seal(A, 1);
  for (size_t i = 0; i < 2; i++) {
    snprintf(name, sizeof name, "nm%zu", i);
    assert_int_equal(rd(c[i], name, NULL, 0, NULL, &err), KMS_UNAVAILABLE);
    it_done(&h[i], c[i]);
  }
}

static void test_stale_window_bounded(void **state) {
  vf_put(A, "secret/data/sw", "{\"key\":\"v\"}");
  const char *env[] = {"HCP_VAULT_REFRESH_INTERVAL", "1", "VAULT_MAX_RETRIES", "0", NULL};
  kms_setting s[] = {{"stale_if_error", "1"}};
  it_host h;
  kms_client *c = client(&h, A, env, s, 1);
  kms_error err;
  assert_int_equal(rd(c, "sw", NULL, 0, NULL, &err), KMS_OK);
  struct timespec ts = {2, 300000000};
  nanosleep(&ts, NULL); /* past expiry (1 s) + stale window (1 s) */
  vf_seal(A, 1);
  assert_int_equal(rd(c, "sw", NULL, 0, NULL, &err), KMS_UNAVAILABLE);
  it_done(&h, c);
}

typedef struct reader {
  kms_client *c;
  pthread_barrier_t *bar;
  kms_status st;
  char v[32];
} reader;

static void *reader_main(void *p) {
  reader *r = p;
  kms_error err;
  pthread_barrier_wait(r->bar);
  r->st = rd(r->c, "cold", r->v, sizeof r->v, NULL, &err);
  return NULL;
}

static void test_single_flight_16_threads(void **state) {
  vf_put(A, "secret/data/cold", "{\"key\":\"shared\"}");
  vf_clear_requests(A);
  /* slow answer so that all 16 threads miss while the first request is out */
  vf_fault(A, "{\"method\":\"GET\",\"path\":\"^/v1/secret/data/cold$\",\"delay_ms\":700,\"times\":1}");
  const char *env[] = {"HCP_VAULT_REFRESH_INTERVAL", "60", NULL};
  it_host h;
  kms_client *c = client(&h, A, env, NULL, 0);
  enum { N = 16 };
  pthread_t t[N];
  reader r[N];
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, N);
  for (int i = 0; i < N; i++) {
    r[i] = (reader){c, &bar, KMS_INTERNAL, ""};
    assert_int_equal(pthread_create(&t[i], NULL, reader_main, &r[i]), 0);
  }
  for (int i = 0; i < N; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(r[i].st, KMS_OK);
    assert_string_equal(r[i].v, "shared");
  }
  pthread_barrier_destroy(&bar);
  vf_log *log = vf_requests(A);
  assert_int_equal(vf_count(log, "GET", "/v1/secret/data/cold"), 1);
  vf_log_free(log);
  it_done(&h, c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_503_twice_then_ok, reset),
    cmocka_unit_test_setup(test_retry_after_beyond_budget, reset),
    cmocka_unit_test_setup(test_no_retry_statuses, reset),
    cmocka_unit_test_setup(test_500_budget_and_errors_text, reset),
    cmocka_unit_test_setup(test_dropped_connection_retried, reset),
    cmocka_unit_test_setup(test_sealed_past_budget, reset),
    cmocka_unit_test_setup(test_standby_redirect, reset),
    cmocka_unit_test_setup(test_same_origin_redirect, reset),
    cmocka_unit_test_setup(test_https_to_http_refused_and_one_redirect_only, reset),
    cmocka_unit_test_setup(test_stale_if_error, reset),
    cmocka_unit_test_setup(test_stale_never_masks_not_found_or_denied, reset),
    cmocka_unit_test_setup(test_stale_window_bounded, reset),
    cmocka_unit_test_setup(test_single_flight_16_threads, reset),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
