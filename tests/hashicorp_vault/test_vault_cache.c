/*
 * test_vault_cache.c -- the plugin's cache seen from outside: TTL
 * (HCP_VAULT_REFRESH_INTERVAL) respected, write updates and delete
 * invalidates, 0 disables, refresh() re-reads every cached secret, keyed by
 * the full resolved path (two namespaces do not share entries), and many
 * threads reading through one instance (run under ThreadSanitizer too).
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
#include <time.h>

static vf_server *srv;

static int setup(void **state) {
  static const char *const nss[] = {"ns1", "ns2", NULL};
  srv = vf_start(&(vf_options){.namespaces = nss});
  return srv ? 0 : -1;
}

static int teardown(void **state) {
  vf_stop(srv);
  return 0;
}

static int reset(void **state) {
  vf_clear_faults(srv);
  vf_clear_requests(srv);
  return 0;
}

static kms_client *client(it_host *h, const char *interval, const char *ns) {
  it_host_init(h);
  it_target(h, srv, 0, 0);
  it_set(h, "HCP_VAULT_REFRESH_INTERVAL", interval);
  if (ns) it_set(h, "HCP_VAULT_NAMESPACE", ns);
  kms_client *c = NULL;
  kms_error err;
  if (it_client(h, IT_RW, IT_RW_N, &c, &err) != KMS_OK) fail_msg("create: %s", err.message);
  return c;
}


static kms_status rd(kms_client *c, const char *name, char *val, size_t vs) {
  return it_read(c, name, val, vs, NULL, NULL);
}

static size_t gets(const char *path) {
  vf_log *log = vf_requests(srv);
  size_t n = vf_count(log, "GET", path);
  vf_log_free(log);
  return n;
}

static void test_ttl(void **state) {
  vf_put(srv, "secret/data/ttl", "{\"key\":\"one\"}");
  it_host h;
  kms_client *c = client(&h, "1", NULL);
  char v[32];
  assert_int_equal(rd(c, "ttl", v, sizeof v), KMS_OK);
  vf_put(srv, "secret/data/ttl", "{\"key\":\"two\"}");
  assert_int_equal(rd(c, "ttl", v, sizeof v), KMS_OK);
  assert_string_equal(v, "one"); /* still cached */
  assert_int_equal(gets("/v1/secret/data/ttl"), 1);
  struct timespec ts = {1, 200000000};
  nanosleep(&ts, NULL);
  assert_int_equal(rd(c, "ttl", v, sizeof v), KMS_OK);
  assert_string_equal(v, "two");
  assert_int_equal(gets("/v1/secret/data/ttl"), 2);
  it_done(&h, c);
}

static void test_write_and_delete_update_cache(void **state) {
  it_host h;
  kms_client *c = client(&h, "3600", NULL);
  kms_error err;
  char v[32];
  assert_int_equal(kms_client_write(c, "wc", "first", 5, NULL, &err), KMS_OK);
  assert_int_equal(rd(c, "wc", v, sizeof v), KMS_OK);
  assert_string_equal(v, "first");
  assert_int_equal(kms_client_write(c, "wc", "second", 6, NULL, &err), KMS_OK);
  kms_secret *s;
  assert_int_equal(kms_client_read(c, "wc", &s, &err), KMS_OK);
  assert_string_equal(s->value, "second");
  assert_int_equal(s->version, 2);
  kms_client_free_secret(c, s);
  assert_int_equal(gets("/v1/secret/data/wc"), 0); /* served from the write */
  assert_int_equal(kms_client_delete(c, "wc", &err), KMS_OK);
  assert_int_equal(rd(c, "wc", v, sizeof v), KMS_NOT_FOUND);
  assert_int_equal(gets("/v1/secret/data/wc"), 1);
  it_done(&h, c);
}

static void test_zero_disables(void **state) {
  vf_put(srv, "secret/data/z", "{\"key\":\"v\"}");
  it_host h;
  kms_client *c = client(&h, "0", NULL);
  for (int i = 0; i < 3; i++) assert_int_equal(rd(c, "z", NULL, 0), KMS_OK);
  assert_int_equal(gets("/v1/secret/data/z"), 3);
  it_done(&h, c);
}

static void test_refresh_rereads_everything(void **state) {
  vf_put(srv, "secret/data/ra", "{\"key\":\"a1\"}");
  vf_put(srv, "secret/data/rb", "{\"key\":\"b1\"}");
  vf_put(srv, "secret/data/rc", "{\"key\":\"c1\"}");
  it_host h;
  kms_client *c = client(&h, "3600", NULL);
  char v[32];
  assert_int_equal(rd(c, "ra", NULL, 0), KMS_OK);
  assert_int_equal(rd(c, "rb", NULL, 0), KMS_OK);
  assert_int_equal(rd(c, "rc", NULL, 0), KMS_OK);
  vf_put(srv, "secret/data/ra", "{\"key\":\"a2\"}");
  assert_int_equal(vf_http(srv, "DELETE", "/v1/secret/metadata/rc", "root", NULL, NULL), 204);
  vf_clear_requests(srv);
  kms_error err;
  assert_int_equal(kms_client_refresh(c, &err), KMS_OK); /* rc vanished: evicted, not an error */
  vf_log *log = vf_requests(srv);
  /* the static token checked with Vault, then the three secrets */
  assert_int_equal(log->n, 4);
  assert_int_equal(vf_count(log, "GET", "/v1/auth/token/lookup-self"), 1);
  vf_log_free(log);
  assert_int_equal(rd(c, "ra", v, sizeof v), KMS_OK);
  assert_string_equal(v, "a2");
  assert_int_equal(rd(c, "rc", v, sizeof v), KMS_NOT_FOUND);
  assert_int_equal(gets("/v1/secret/data/ra"), 1); /* the refresh's; the read was a hit */
  /* refresh reports a failure (and keeps the values) when Vault is down */
  vf_fault(srv, "{\"method\":\"GET\",\"path\":\"^/v1/secret/\",\"status\":500,\"times\":-1}");
  assert_int_equal(kms_client_refresh(c, &err), KMS_UNAVAILABLE);
  assert_non_null(strstr(err.message, "2 of 2 cached secrets"));
  vf_clear_faults(srv);
  assert_int_equal(rd(c, "rb", v, sizeof v), KMS_OK);
  assert_string_equal(v, "b1");
  it_done(&h, c);
}

static void test_key_is_full_path(void **state) {
  vf_put(srv, "ns1/secret/data/same", "{\"key\":\"in-ns1\"}");
  vf_put(srv, "ns2/secret/data/same", "{\"key\":\"in-ns2\"}");
  it_host h1, h2;
  kms_client *c1 = client(&h1, "3600", "ns1");
  kms_client *c2 = client(&h2, "3600", "ns2");
  char v[32];
  assert_int_equal(rd(c1, "same", v, sizeof v), KMS_OK);
  assert_string_equal(v, "in-ns1");
  assert_int_equal(rd(c2, "same", v, sizeof v), KMS_OK);
  assert_string_equal(v, "in-ns2");
  it_done(&h1, c1);
  it_done(&h2, c2);
}

typedef struct worker {
  kms_client *c;
  int id;
  int errors;
} worker;

static void *work(void *p) {
  worker *w = p;
  char name[16], v[32], want[32];
  for (int i = 0; i < 60; i++) {
    int k = (w->id + i) % 5;
    snprintf(name, sizeof name, "cc%d", k);
    snprintf(want, sizeof want, "value-%d", k);
    if (rd(w->c, name, v, sizeof v) != KMS_OK || strcmp(v, want) != 0) w->errors++;
    if (i % 20 == 0) {
      kms_error err;
      if (kms_client_write(w->c, name, want, strlen(want), NULL, &err) != KMS_OK) w->errors++;
    }
    if (i % 30 == 0) {
      kms_error err;
      if (kms_client_refresh(w->c, &err) != KMS_OK) w->errors++;
    }
  }
  return NULL;
}

static void test_concurrent_readers(void **state) {
  char path[64], json[64];
  for (int k = 0; k < 5; k++) {
    snprintf(path, sizeof path, "secret/data/cc%d", k);
    snprintf(json, sizeof json, "{\"key\":\"value-%d\"}", k);
    vf_put(srv, path, json);
  }
  /* one cached instance and one uncached (every read goes to Vault through
   * the shared connection pool) */
  const char *intervals[] = {"3600", "0"};
  for (int n = 0; n < 2; n++) {
    it_host h;
    kms_client *c = client(&h, intervals[n], NULL);
    enum { N = 8 };
    pthread_t t[N];
    worker w[N];
    for (int i = 0; i < N; i++) {
      w[i] = (worker){c, i, 0};
      assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < N; i++) {
      pthread_join(t[i], NULL);
      assert_int_equal(w[i].errors, 0);
    }
    it_done(&h, c);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_ttl, reset),
    cmocka_unit_test_setup(test_write_and_delete_update_cache, reset),
    cmocka_unit_test_setup(test_zero_disables, reset),
    cmocka_unit_test_setup(test_refresh_rereads_everything, reset),
    cmocka_unit_test_setup(test_key_is_full_path, reset),
    cmocka_unit_test_setup(test_concurrent_readers, reset),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
