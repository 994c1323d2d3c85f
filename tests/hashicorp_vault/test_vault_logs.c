/*
 * test_vault_logs.c -- tokens and secret values never appear in log lines
 * or error messages. Drives every code path that logs or fails (create
 * errors, retries, timeouts, refused redirects, stale serving, 403/404,
 * malformed answers, TLS failures) with a recognisable token and secret
 * values, capturing everything the plugin hands the host.
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

#define TOKEN "hvs.TOPSECRET-token-4242"
#define VALUE "sk-SECRET-VALUE-9876"

static vf_server *srv, *tls_srv;
static char messages[65536];
static size_t mlen;

static int setup(void **state) {
  srv = vf_start(&(vf_options){.root_token = TOKEN});
  tls_srv = vf_start(&(vf_options){.tls = 1, .root_token = TOKEN});
  return srv && tls_srv ? 0 : -1;
}

static int teardown(void **state) {
  vf_stop(srv);
  vf_stop(tls_srv);
  return 0;
}

static void keep(const kms_error *err) {
  int n = snprintf(messages + mlen, sizeof messages - mlen, "%s\n", err->message);
  if (n > 0 && (size_t)n < sizeof messages - mlen) mlen += (size_t)n;
}

static void assert_clean(const char *text, const char *what) {
  static const char *const needles[] = {TOKEN, "TOPSECRET", VALUE, "SECRET-VALUE", "tok-in-env"};
  for (size_t i = 0; i < sizeof needles / sizeof *needles; i++)
    if (strstr(text, needles[i])) fail_msg("%s contains '%s':\n%s", what, needles[i], text);
}

static void test_nothing_secret_in_logs_or_messages(void **state) {
  it_host h;
  it_host_init(&h);
  it_set(&h, "HCP_VAULT_ADDR", vf_url(srv));
  it_set(&h, "HCP_VAULT_TOKEN", TOKEN);
  it_set(&h, "HCP_VAULT_REFRESH_INTERVAL", "1");
  it_set(&h, "VAULT_MAX_RETRIES", "2");
  kms_setting set[] = {{"access_mode", "read_and_write"}, {"stale_retry_interval", "0"},
                       {"unknown_" VALUE, VALUE}};
  kms_client *c;
  kms_error err;
  kms_secret *s;
  assert_int_equal(it_client(&h, set, 3, &c, &err), KMS_OK);

  /* ordinary traffic */
  assert_int_equal(kms_client_write(c, "k", VALUE, strlen(VALUE), NULL, &err), KMS_OK);
  kms_write_options cas = {sizeof cas, "desc", KMS_WRITE_CAS, 0};
  assert_int_equal(kms_client_write(c, "k", VALUE, strlen(VALUE), &cas, &err), KMS_CONFLICT);
  keep(&err);
  assert_int_equal(kms_client_read(c, "k", &s, &err), KMS_OK);
  assert_string_equal(s->value, VALUE);
  kms_client_free_secret(c, s);

  /* retries that end in success, and in failure */
  vf_fault(srv, "{\"method\":\"GET\",\"path\":\"/v1/secret/data/r$\",\"status\":503,\"times\":2}");
  vf_put(srv, "secret/data/r", "{\"key\":\"" VALUE "\"}");
  assert_int_equal(kms_client_read(c, "r", &s, &err), KMS_OK);
  kms_client_free_secret(c, s);
  vf_fault(srv, "{\"method\":\"GET\",\"path\":\"/v1/secret/data/bad$\",\"status\":500,\"body\":{\"errors\":[\"oops\"]},\"times\":-1}");
  assert_int_equal(kms_client_read(c, "bad", &s, &err), KMS_UNAVAILABLE);
  keep(&err);

  /* malformed answers that contain the value */
  vf_fault(srv, "{\"method\":\"GET\",\"path\":\"/v1/secret/data/mal$\",\"status\":200,\"raw_body\":\"{\\\"data\\\": " VALUE "\",\"times\":-1}");
  assert_int_equal(kms_client_read(c, "mal", &s, &err), KMS_INTERNAL);
  keep(&err);
  vf_put(srv, "secret/data/nokey", "{\"value\":\"" VALUE "\"}");
  assert_int_equal(kms_client_read(c, "nokey", &s, &err), KMS_INTERNAL);
  keep(&err);
  vf_put(srv, "secret/data/objkey", "{\"key\":{\"inner\":\"" VALUE "\"}}");
  assert_int_equal(kms_client_read(c, "objkey", &s, &err), KMS_INTERNAL);
  keep(&err);

  /* 404, refused write (value in the request) */
  assert_int_equal(kms_client_read(c, "nothing", &s, &err), KMS_NOT_FOUND);
  keep(&err);
  assert_int_equal(kms_client_write(c, "a//b", VALUE, strlen(VALUE), NULL, &err), KMS_INVALID_ARGUMENT);
  keep(&err);
  assert_int_equal(kms_client_write(c, "bin", VALUE "\xff", strlen(VALUE) + 1, NULL, &err), KMS_INVALID_ARGUMENT);
  keep(&err);

  /* stale serving during an outage */
  struct timespec ts = {1, 200000000};
  nanosleep(&ts, NULL);
  vf_seal(srv, 1);
  assert_int_equal(kms_client_read(c, "k", &s, &err), KMS_OK);
  assert_true(s->flags & KMS_SECRET_STALE);
  kms_client_free_secret(c, s);
  assert_int_equal(kms_client_refresh(c, &err), KMS_UNAVAILABLE);
  keep(&err);
  vf_seal(srv, 0);

  /* refused redirect */
  vf_standby(srv, vf_url(tls_srv), 307);
  assert_int_equal(kms_client_read(c, "elsewhere", &s, &err), KMS_UNAVAILABLE);
  keep(&err);
  vf_standby(srv, NULL, 0);
  kms_client_destroy(c);

  /* 403 with a token that is not valid */
  it_set(&h, "HCP_VAULT_TOKEN", "tok-in-env-" VALUE);
  assert_int_equal(it_client(&h, set, 3, &c, &err), KMS_OK);
  assert_int_equal(kms_client_read(c, "k", &s, &err), KMS_UNAUTHENTICATED);
  keep(&err);
  kms_client_destroy(c);

  /* TLS failure, skip-verify warning */
  it_set(&h, "HCP_VAULT_ADDR", vf_url(tls_srv));
  it_set(&h, "HCP_VAULT_TOKEN", TOKEN);
  assert_int_equal(it_client(&h, set, 3, &c, &err), KMS_OK);
  assert_int_equal(kms_client_read(c, "k", &s, &err), KMS_UNAVAILABLE);
  keep(&err);
  kms_client_destroy(c);
  it_set(&h, "VAULT_SKIP_VERIFY", "1");
  assert_int_equal(it_client(&h, set, 3, &c, &err), KMS_OK);
  assert_int_equal(kms_client_read(c, "k", &s, &err), KMS_NOT_FOUND);
  keep(&err);
  kms_client_destroy(c);

  /* create errors with credentials around */
  it_set(&h, "HCP_VAULT_TOKEN", TOKEN " with space");
  assert_int_equal(it_client(&h, set, 3, &c, &err), KMS_INVALID_ARGUMENT);
  keep(&err);
  it_set(&h, "HCP_VAULT_TOKEN", TOKEN);
  it_set(&h, "HCP_VAULT_APPROLE_ROLE_ID", "role");
  it_set(&h, "HCP_VAULT_APPROLE_SECRET_ID", VALUE);
  /* AppRole: refused at create, or a login that fails (no such role) */
  if (it_client(&h, set, 3, &c, &err) == KMS_OK) {
    assert_int_not_equal(kms_client_read(c, "k", &s, &err), KMS_OK);
    kms_client_destroy(c);
  }
  keep(&err);

  char *logs = it_logs(&h);
  /* the paths above did log: retries, stale warning, skip-verify warning */
  assert_non_null(strstr(logs, "retry"));
  assert_non_null(strstr(logs, "stale"));
  assert_non_null(strstr(logs, "VAULT_SKIP_VERIFY"));
  assert_clean(logs, "log");
  assert_clean(messages, "error messages");
  free(logs);
  it_host_free(&h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_nothing_secret_in_logs_or_messages),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
