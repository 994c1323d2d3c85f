/*
 * test_vault_http_clock.c -- the HTTP client's retry timing (http.c) on an
 * injected clock, against tests/vault_server's fault controls: the waits
 * between attempts (Retry-After, backoff) advance the test's clock instead
 * of sleeping (kpc_clock.sleep_ms), so the test sees exactly how long the
 * client would have waited and never depends on the machine's speed.
 *   - 429 + Retry-After: 1 s honoured before the second request;
 *   - sealed (503) with a large retry budget: retries stop at the
 *     VAULT_CLIENT_TIMEOUT deadline (on the client's clock), never past it.
 * The same behaviour through the real plugin (messages, status mapping,
 * retry counts) stays in test_vault_resilience.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "http.h"
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static vf_server *A;

static int setup(void **state) {
  (void)state;
  A = vf_start(NULL);
  return A ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  vf_stop(A);
  return 0;
}

static int reset(void **state) {
  (void)state;
  vf_clear_faults(A);
  vf_seal(A, 0);
  vf_clear_requests(A);
  return 0;
}

typedef struct kit {
  it_host h;
  kpc_logger lg;
  vault_config cfg;
  vault_http *http;
  kpc_clock clk;
  int64_t now, slept; /* only the test's thread runs the client */
} kit;

static int64_t fake_now(void *ctx) { return ((kit *)ctx)->now; }

static void fake_sleep(void *ctx, int64_t ms) {
  kit *k = ctx;
  k->now += ms;
  k->slept += ms;
}

static void kit_start(kit *k, const char *const *env) {
  memset(k, 0, sizeof *k);
  it_host_init(&k->h);
  it_set(&k->h, "HCP_VAULT_ADDR", vf_url(A));
  it_set(&k->h, "HCP_VAULT_TOKEN", "root");
  for (size_t i = 0; env && env[i]; i += 2) it_set(&k->h, env[i], env[i + 1]);
  k->lg.host = &k->h.host;
  k->lg.prefix = VAULT_MSG_PREFIX;
  k->now = 1000000;
  k->clk = (kpc_clock){.now_ms = fake_now, .ctx = k, .sleep_ms = fake_sleep};
  kms_error err;
  if (vault_config_load(&k->cfg, &k->h.host, NULL, 0, &k->lg, &err) != KMS_OK ||
      vault_http_new(&k->cfg, &k->lg, &k->clk, &k->http, &err) != KMS_OK)
    fail_msg("kit: %s", err.message);
}

static void kit_stop(kit *k) {
  vault_http_free(k->http);
  vault_config_free(&k->cfg);
  it_host_free(&k->h);
}

static kms_status get(kit *k, const char *path, kpc_http_response *resp) {
  char url[256];
  snprintf(url, sizeof url, "%s/v1/%s", vf_url(A), path);
  vault_http_request req = {.op = "read", .method = "GET", .url = url, .token = "root"};
  kms_error err;
  kms_status st = vault_http_perform(k->http, &req, resp, &err);
  if (st != KMS_OK) fail_msg("perform: %s", err.message);
  return st;
}

static void test_429_retry_after(void **state) {
  (void)state;
  vf_put(A, "secret/data/r2", "{\"key\":\"v2\"}");
  vf_clear_requests(A);
  vf_fault(A, "{\"method\":\"GET\",\"path\":\"^/v1/secret/data/r2$\",\"status\":429,"
              "\"headers\":{\"Retry-After\":\"1\"},\"times\":1}");
  kit k;
  kit_start(&k, NULL);
  kpc_http_response resp;
  get(&k, "secret/data/r2", &resp);
  assert_int_equal(resp.status, 200);
  assert_int_equal(resp.attempts, 2);
  kpc_http_response_clear(&resp);
  assert_int_equal(k.slept, 1000); /* Retry-After, not the 100 ms backoff */
  vf_log *log = vf_requests(A);
  assert_int_equal(log->n, 2);
  vf_log_free(log);
  assert_int_equal(it_log_count(&k.h, "in 1000 ms"), 1);
  kit_stop(&k);
}

static void test_sealed_stops_at_deadline(void **state) {
  (void)state;
  vf_seal(A, 1);
  kit k;
  kit_start(&k, (const char *[]){"VAULT_CLIENT_TIMEOUT", "2", "VAULT_MAX_RETRIES", "100", NULL});
  int64_t t0 = k.now;
  kpc_http_response resp;
  get(&k, "secret/data/sealed", &resp);
  assert_int_equal(resp.status, 503); /* the last answer, for the caller to map */
  int attempts = resp.attempts;
  kpc_http_response_clear(&resp);
  /* retried (backoff 100 ms doubling to 2 s) until the next wait would
   * cross the 2 s deadline: more than one attempt, far fewer than 101, and
   * no wait past the deadline */
  assert_true(attempts > 1 && attempts < 101);
  if (k.now - t0 >= 2000) fail_msg("waited %lld ms past a 2000 ms budget", (long long)(k.now - t0));
  assert_true(k.slept > 0);
  vf_log *log = vf_requests(A);
  assert_int_equal((int)log->n, attempts);
  vf_log_free(log);
  kit_stop(&k);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_429_retry_after, reset),
    cmocka_unit_test_setup(test_sealed_stops_at_deadline, reset),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
