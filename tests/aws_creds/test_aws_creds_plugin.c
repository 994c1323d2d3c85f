/*
 * test_aws_creds_plugin.c -- each temporary credential source end to end
 * through the real aws_secret_manager.so (loaded by the loader): the plugin
 * finds STS web identity, IMDSv2 or ECS credentials through its own HTTP
 * client over HTTPS (the test CA) against a real tests/aws_server, signs
 * Secrets Manager calls with them, and reports the seconds left in health;
 * a refused web identity token surfaces as UNAUTHENTICATED at the call.
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
#include <sys/stat.h>
#include <unistd.h>

#define REGION "eu-central-1"
#define WEB_TOKEN "eyJhbGciOiJSUzI1NiJ9.kmsplug-plugin-web-identity.sig"
#define ECS_TOKEN "kmsplug-plugin-ecs-token"
#define ROLE "arn:aws:iam::123456789012:role/kmsplug"

static vf_server *g_srv;
static char g_dir[64], g_token[128];

/* A host with only the server, its CA and one credential source (`kv`). */
static kms_client *client_with(it_host *h, const char *const *kv, kms_status want,
                               kms_error *err) {
  it_host_init(h);
  it_set(h, "AWS_REGION", REGION);
  it_set(h, "AWS_ENDPOINT_URL", vf_url(g_srv)); /* Secrets Manager and STS */
  it_set(h, "AWS_CA_BUNDLE", vf_cert("ca.pem"));
  it_set(h, "AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials");
  it_set(h, "AWS_CONFIG_FILE", "/nonexistent/config");
  it_set(h, "AWS_EC2_METADATA_DISABLED", "true");
  for (size_t i = 0; kv[i]; i += 2) it_set(h, kv[i], kv[i + 1]);
  kms_client *c = NULL;
  kms_status st = it_client(h, IT_RW, IT_RW_N, &c, err);
  if (st != want) fail_msg("create: %s", err->message);
  return c;
}

/* Write, read back and delete one secret; the health's seconds left. */
static void round_trip(kms_client *c, const char *name) {
  kms_error err;
  char v[64];
  kms_status st = kms_client_write(c, name, "sk-round-trip", 13, NULL, &err);
  if (st != KMS_OK) fail_msg("write: %s", err.message);
  st = it_read(c, name, v, sizeof v, NULL, &err);
  if (st != KMS_OK) fail_msg("read: %s", err.message);
  assert_string_equal(v, "sk-round-trip");
  assert_int_equal(kms_client_delete(c, name, &err), KMS_OK);
  kms_health hl = {.struct_size = sizeof hl};
  assert_int_equal(kms_client_health(c, &hl, &err), KMS_OK);
  assert_true(hl.token_ttl_seconds > 3000 && hl.token_ttl_seconds <= 3600);
}

static int reset(void **state) {
  (void)state;
  assert_int_equal(vf_http(g_srv, "POST", "/__test__/reset", NULL, "{}", NULL), 200);
  assert_int_equal(vf_clear_requests(g_srv), 0);
  FILE *f = fopen(g_token, "w");
  assert_non_null(f);
  fputs(WEB_TOKEN "\n", f);
  fclose(f);
  assert_int_equal(chmod(g_token, 0600), 0);
  return 0;
}

static void test_plugin_web_identity(void **state) {
  (void)state;
  it_host h;
  kms_error err;
  const char *const kv[] = {"AWS_WEB_IDENTITY_TOKEN_FILE", g_token, "AWS_ROLE_ARN", ROLE, NULL};
  kms_client *c = client_with(&h, kv, KMS_OK, &err);
  round_trip(c, "creds/web-identity");
  it_done(&h, c);
  /* a token STS refuses: the call says so, without the token */
  FILE *f = fopen(g_token, "w");
  assert_non_null(f);
  fputs("eyJ.not-a-known-token.sig", f);
  fclose(f);
  c = client_with(&h, kv, KMS_OK, &err);
  char v[64];
  assert_int_equal(it_read(c, "creds/x", v, sizeof v, NULL, &err), KMS_UNAUTHENTICATED);
  assert_non_null(strstr(err.message, "InvalidIdentityToken"));
  assert_null(strstr(err.message, "not-a-known-token"));
  char *logs = it_logs(&h);
  assert_null(strstr(logs, "not-a-known-token"));
  free(logs);
  it_done(&h, c);
}

static void test_plugin_imds(void **state) {
  (void)state;
  it_host h;
  kms_error err;
  const char *const kv[] = {"AWS_EC2_METADATA_DISABLED", "false",
                            "AWS_EC2_METADATA_SERVICE_ENDPOINT", vf_url(g_srv), NULL};
  kms_client *c = client_with(&h, kv, KMS_OK, &err);
  round_trip(c, "creds/imds");
  it_done(&h, c);
}

static void test_plugin_ecs(void **state) {
  (void)state;
  it_host h;
  kms_error err;
  char full[256];
  snprintf(full, sizeof full, "%s/v2/credentials/task", vf_url(g_srv));
  const char *const kv[] = {"AWS_CONTAINER_CREDENTIALS_FULL_URI", full,
                            "AWS_CONTAINER_AUTHORIZATION_TOKEN", ECS_TOKEN, NULL};
  kms_client *c = client_with(&h, kv, KMS_OK, &err);
  round_trip(c, "creds/ecs");
  it_done(&h, c);
}

int main(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/aws_creds_plugin.XXXXXX");
  if (!mkdtemp(g_dir)) return 1;
  snprintf(g_token, sizeof g_token, "%s/token", g_dir);
  it_use_plugin("aws_secret_manager");
  const char *const args[] = {"--region", REGION, "--web-identity-token", WEB_TOKEN,
                              "--ecs-auth-token", ECS_TOKEN, NULL};
  g_srv = vf_start(&(vf_options){.server = "aws", .tls = 1, .extra_args = args});
  if (!g_srv) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_plugin_web_identity, reset),
      cmocka_unit_test_setup(test_plugin_imds, reset),
      cmocka_unit_test_setup(test_plugin_ecs, reset),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  vf_stop(g_srv);
  unlink(g_token);
  rmdir(g_dir);
  return rc;
}
