/*
 * test_vault_tls.c -- the real plugin over HTTPS and mutual TLS: token auth
 * with the client certificate on every request, wrong CA / missing client
 * certificate / wrong server name refused with a clear error and no retry,
 * VAULT_CAPATH, VAULT_TLS_SERVER_NAME, VAULT_SKIP_VERIFY (warned once), and
 * one kept-alive connection reused across calls.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "itest.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static vf_server *mtls, *tls;

static int setup(void **state) {
  mtls = vf_start(&(vf_options){.mtls = 1});
  tls = vf_start(&(vf_options){.tls = 1});
  return mtls && tls ? 0 : -1;
}

static int teardown(void **state) {
  vf_stop(mtls);
  vf_stop(tls);
  return 0;
}

static int reset(void **state) {
  vf_clear_requests(mtls);
  vf_clear_requests(tls);
  vf_clear_faults(mtls);
  vf_clear_faults(tls);
  return 0;
}

/* The client certificate here is the mutual-TLS credential and the token
 * authenticates: auth_method token (auto would log in with the certificate). */
static const kms_setting TLS_SETTINGS[] = {{"access_mode", "read_and_write"},
                                           {"auth_method", "token"}};

static kms_status make(it_host *h, vf_server *s, int ca, int cert, kms_client **c, kms_error *err) {
  it_host_init(h);
  it_target(h, s, ca, cert);
  it_set(h, "HCP_VAULT_REFRESH_INTERVAL", "0");
  it_set(h, "VAULT_MAX_RETRIES", "3");
  return it_client(h, TLS_SETTINGS, 2, c, err);
}

static void test_mtls_token_auth(void **state) {
  it_host h;
  kms_client *c;
  kms_error err;
  assert_int_equal(make(&h, mtls, 1, 1, &c, &err), KMS_OK);
  assert_int_equal(kms_client_write(c, "t1", "over-tls", 8, NULL, &err), KMS_OK);
  kms_secret *s;
  assert_int_equal(kms_client_read(c, "t1", &s, &err), KMS_OK);
  assert_string_equal(s->value, "over-tls");
  kms_client_free_secret(c, s);
  assert_int_equal(kms_client_delete(c, "t1", &err), KMS_OK);
  vf_log *log = vf_requests(mtls);
  assert_int_equal(log->n, 3);
  for (size_t i = 0; i < log->n; i++) {
    assert_true(log->r[i].tls);
    assert_non_null(log->r[i].client_cert_subject);
    assert_non_null(strstr(log->r[i].client_cert_subject, "kmsplug-client"));
  }
  vf_log_free(log);
  kms_client_destroy(c);
  it_host_free(&h);
}

static void expect_tls_failure(it_host *h, kms_client *c, vf_server *s, const char *needle) {
  kms_error err;
  kms_secret *sec = NULL;
  assert_int_equal(kms_client_read(c, "t1", &sec, &err), KMS_UNAVAILABLE);
  if (!strstr(err.message, "TLS") || (needle && !strstr(err.message, needle)))
    fail_msg("message: %s", err.message);
  /* not retried: TLS failures are configuration problems */
  assert_int_equal(it_log_count(h, "retry"), 0);
  vf_log *log = vf_requests(s);
  assert_int_equal(log->n, 0);
  vf_log_free(log);
}

static void test_wrong_ca(void **state) {
  it_host h;
  kms_client *c;
  kms_error err;
  assert_int_equal(make(&h, tls, 1, 0, &c, &err), KMS_OK);
  kms_client_destroy(c);
  it_set(&h, "VAULT_CACERT", vf_cert("other-ca.pem"));
  assert_int_equal(it_client(&h, IT_RW, IT_RW_N, &c, &err), KMS_OK);
  expect_tls_failure(&h, c, tls, "VAULT_CACERT");
  kms_client_destroy(c);
  /* no CA at all: the system store does not know the test CA either */
  it_set(&h, "VAULT_CACERT", NULL);
  assert_int_equal(it_client(&h, IT_RW, IT_RW_N, &c, &err), KMS_OK);
  expect_tls_failure(&h, c, tls, NULL);
  kms_client_destroy(c);
  it_host_free(&h);
}

static void test_client_cert_optional_but_verified(void **state) {
  it_host h;
  kms_client *c;
  kms_error err;
  /* the server asks for a client certificate but, like Vault by default
   * (tls_require_and_verify_client_cert = false), does not require one */
  assert_int_equal(make(&h, mtls, 1, 0, &c, &err), KMS_OK);
  kms_secret *s = NULL;
  assert_int_equal(kms_client_read(c, "t1", &s, &err), KMS_NOT_FOUND);
  kms_client_destroy(c);
  vf_log *log = vf_requests(mtls);
  assert_int_equal(log->n, 1);
  assert_null(log->r[0].client_cert_subject);
  vf_log_free(log);
  reset(NULL);
  it_set(&h, "HCP_VAULT_CLIENT_CERT", vf_cert("untrusted-client.pem"));
  it_set(&h, "HCP_VAULT_CLIENT_KEY", vf_cert("untrusted-client.key"));
  assert_int_equal(it_client(&h, IT_RW, IT_RW_N, &c, &err), KMS_OK);
  assert_int_equal(kms_client_read(c, "t1", &s, &err), KMS_UNAVAILABLE);
  /* TLS 1.3: the rejection arrives as an alert, or (under load) as a reset
   * or closed connection right after the client finished its handshake;
   * either way the plugin names TLS and the client certificate */
  if (!strstr(err.message, "TLS") || !strstr(err.message, "client certificate"))
    fail_msg("message: %s", err.message);
  kms_client_destroy(c);
  log = vf_requests(mtls);
  assert_int_equal(log->n, 0);
  vf_log_free(log);
  it_host_free(&h);
}

static void test_server_name(void **state) {
  it_host h;
  kms_client *c;
  kms_error err;
  kms_secret *s = NULL;
  /* address by IP, certificate checked against the name "localhost" */
  assert_int_equal(make(&h, tls, 1, 0, &c, &err), KMS_OK);
  kms_client_destroy(c);
  it_set(&h, "VAULT_TLS_SERVER_NAME", "localhost");
  assert_int_equal(it_client(&h, IT_RW, IT_RW_N, &c, &err), KMS_OK);
  assert_int_equal(kms_client_write(c, "sn", "v", 1, NULL, &err), KMS_OK);
  assert_int_equal(kms_client_read(c, "sn", &s, &err), KMS_OK);
  kms_client_free_secret(c, s);
  kms_client_destroy(c);
  vf_log *log = vf_requests(tls);
  assert_int_equal(log->n, 2);
  assert_non_null(strstr(vf_header(&log->r[0], "Host"), "localhost"));
  vf_log_free(log);
  /* a name the certificate does not carry */
  reset(NULL);
  it_set(&h, "VAULT_TLS_SERVER_NAME", "vault.example.com");
  assert_int_equal(it_client(&h, IT_RW, IT_RW_N, &c, &err), KMS_OK);
  expect_tls_failure(&h, c, tls, NULL);
  kms_client_destroy(c);
  it_host_free(&h);
}

static void test_capath(void **state) {
  char dir[] = "/tmp/vf_capath.XXXXXX";
  assert_non_null(mkdtemp(dir));
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "cp '%s' '%s/' && openssl rehash '%s' 2>/dev/null", vf_cert("ca.pem"), dir, dir);
  assert_int_equal(system(cmd), 0);
  it_host h;
  kms_client *c;
  kms_error err;
  assert_int_equal(make(&h, tls, 0, 0, &c, &err), KMS_OK);
  kms_client_destroy(c);
  it_set(&h, "VAULT_CAPATH", dir);
  assert_int_equal(it_client(&h, IT_RW, IT_RW_N, &c, &err), KMS_OK);
  assert_int_equal(kms_client_write(c, "cp", "v", 1, NULL, &err), KMS_OK);
  kms_client_destroy(c);
  it_host_free(&h);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

static void test_skip_verify_warns_once(void **state) {
  it_host h;
  kms_client *c;
  kms_error err;
  assert_int_equal(make(&h, tls, 0, 0, &c, &err), KMS_OK);
  kms_client_destroy(c);
  it_clear_logs(&h);
  it_set(&h, "VAULT_SKIP_VERIFY", "true");
  assert_int_equal(it_client(&h, IT_RW, IT_RW_N, &c, &err), KMS_OK);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(kms_client_write(c, "sv", "v", 1, NULL, &err), KMS_OK);
    kms_secret *s;
    assert_int_equal(kms_client_read(c, "sv", &s, &err), KMS_OK);
    kms_client_free_secret(c, s);
  }
  assert_int_equal(it_log_count(&h, "VAULT_SKIP_VERIFY"), 1);
  assert_int_equal(it_log_count(&h, "WARN"), 1);
  kms_client_destroy(c);
  it_host_free(&h);
}

static long stat_of(vf_server *s, const char *key) {
  char *b = NULL;
  assert_int_equal(vf_http(s, "GET", "/__test__/stats", NULL, NULL, &b), 200);
  cJSON *j = cJSON_Parse(b);
  free(b);
  long v = (long)cJSON_GetObjectItem(j, key)->valuedouble;
  cJSON_Delete(j);
  return v;
}

static void test_connection_reuse(void **state) {
  it_host h;
  kms_client *c;
  kms_error err;
  assert_int_equal(make(&h, mtls, 1, 1, &c, &err), KMS_OK);
  assert_int_equal(kms_client_write(c, "reuse", "v", 1, NULL, &err), KMS_OK);
  long hs0 = stat_of(mtls, "tls_handshakes"), conn0 = stat_of(mtls, "connections");
  for (int i = 0; i < 20; i++) {
    kms_secret *s;
    assert_int_equal(kms_client_read(c, "reuse", &s, &err), KMS_OK);
    kms_client_free_secret(c, s);
  }
  /* only the fixture's own stats connections are new; the plugin reused its one */
  long hs = stat_of(mtls, "tls_handshakes") - hs0, conn = stat_of(mtls, "connections") - conn0;
  vf_log *log = vf_requests(mtls);
  assert_int_equal(log->n, 21);
  for (size_t i = 1; i < log->n; i++) assert_int_equal(log->r[i].connection_id, log->r[0].connection_id);
  vf_log_free(log);
  assert_true(hs <= 2 && conn <= 2); /* the fixture's two stats requests */
  kms_client_destroy(c);
  it_host_free(&h);
}

/* The fixture's vf_cert() paths stay valid however many a test holds (it
 * once handed out a ring of 16 static buffers). */
static void test_fixture_cert_paths_stable(void **state) {
  enum { N = 40 };
  const char *p[N];
  char name[N][32];
  for (int i = 0; i < N; i++) {
    snprintf(name[i], sizeof name[i], "file-%d.pem", i);
    p[i] = vf_cert(name[i]);
    assert_non_null(p[i]);
  }
  for (int i = 0; i < N; i++) {
    const char *slash = strrchr(p[i], '/');
    assert_non_null(slash);
    assert_string_equal(slash + 1, name[i]);
    assert_ptr_equal(vf_cert(name[i]), p[i]); /* one string per name */
  }
}

/* Issue 15: a server certificate without subjectAltName (only a Common
 * Name, even a matching one) is refused, as Go (and so Vault's own client)
 * refuses it; libcurl alone would accept the CN. The certificate is made
 * here, signed by the test CA, with CN=localhost and no extensions. */
static void test_no_san_refused(void **state) {
  char dir[] = "/tmp/vault_nosan.XXXXXX";
  assert_non_null(mkdtemp(dir));
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "cd %s && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out k.pem "
           "2>/dev/null && openssl req -new -key k.pem -subj /CN=localhost -out r.csr 2>/dev/null "
           "&& openssl x509 -req -in r.csr -CA %s -CAkey %s -CAcreateserial -days 2 -sha256 "
           "-out c.pem 2>/dev/null && ! openssl x509 -in c.pem -noout -ext subjectAltName "
           "2>/dev/null | grep -q DNS",
           dir, vf_cert("ca.pem"), vf_cert("ca.key"));
  assert_int_equal(system(cmd), 0);
  char cert[64], key[64];
  snprintf(cert, sizeof cert, "%s/c.pem", dir);
  snprintf(key, sizeof key, "%s/k.pem", dir);
  vf_server *nosan = vf_start(&(vf_options){.tls = 1, .tls_cert = cert, .tls_key = key});
  assert_non_null(nosan);
  it_host h;
  kms_client *c;
  kms_error err;
  assert_int_equal(make(&h, nosan, 1, 0, &c, &err), KMS_OK);
  char url[80];
  snprintf(url, sizeof url, "https://localhost:%d", vf_port(nosan));
  kms_client_destroy(c);
  it_set(&h, "HCP_VAULT_ADDR", url); /* the CN matches the host name */
  assert_int_equal(it_client(&h, TLS_SETTINGS, 2, &c, &err), KMS_OK);
  assert_int_equal(it_read(c, "x", NULL, 0, NULL, &err), KMS_UNAVAILABLE);
  if (!strstr(err.message, "subjectAltName")) fail_msg("message: %s", err.message);
  /* (the handshake failed, so no request and no token reached the server;
   * its log cannot be fetched over that same certificate) */
  it_done(&h, c);
  vf_stop(nosan);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_mtls_token_auth, reset),
    cmocka_unit_test_setup(test_wrong_ca, reset),
    cmocka_unit_test_setup(test_client_cert_optional_but_verified, reset),
    cmocka_unit_test_setup(test_server_name, reset),
    cmocka_unit_test_setup(test_capath, reset),
    cmocka_unit_test_setup(test_skip_verify_warns_once, reset),
    cmocka_unit_test_setup(test_connection_reuse, reset),
    cmocka_unit_test(test_fixture_cert_paths_stable),
    cmocka_unit_test(test_no_san_refused),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
