/*
 * test_aws_creds_server.c -- the credential chain against a real
 * tests/aws_server over real HTTP: STS AssumeRoleWithWebIdentity, IMDSv2 and
 * the ECS endpoint hand out credentials that the server then accepts in
 * SigV4-signed Secrets Manager calls (signed by libcurl's CURLOPT_AWS_SIGV4);
 * refresh before expiry on an injected clock with the server's clock moved
 * alongside; refusals (bad web identity or container token, expired
 * credentials, nothing configured) and their messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "aws_itest.h"
#include "config.h"
#include "creds.h"
#include "kpc_common.h"
#include "vault_fixture.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REGION "eu-central-1"
#define WEB_TOKEN "eyJhbGciOiJSUzI1NiJ9.kmsplug-web-identity.sig"
#define ECS_TOKEN "kmsplug-ecs-authorization-token"
#define ROLE "arn:aws:iam::123456789012:role/kmsplug"

static vf_server *g_srv;
static char g_dir[64];

typedef struct fake_clock {
  int64_t now;
} fake_clock;
static int64_t fake_now(void *ctx) { return ((fake_clock *)ctx)->now; }

static const char *getenv_kv(void *ctx, const char *name) {
  const char *const *kv = ctx;
  for (size_t i = 0; kv[i]; i += 2)
    if (strcmp(kv[i], name) == 0) return kv[i + 1];
  return NULL;
}

static char *in_dir(const char *name, char *buf) {
  snprintf(buf, 160, "%s/%s", g_dir, name);
  return buf;
}

static void write_token(const char *name, const char *text) {
  char p[160];
  FILE *f = fopen(in_dir(name, p), "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  assert_int_equal(chmod(p, 0600), 0);
}

/* Load a config from kv (NULL-terminated name/value pairs; the shared files
 * point at nothing) and make a provider on `clk` over real HTTP. */
static aws_creds_provider *provider_with(aws_config *c, const char **kv, const kms_setting *set,
                                         size_t n_set, const kpc_clock *clk) {
  char nofile[160];
  size_t n = 0;
  while (kv[n]) n += 2;
  char *none = strdup(in_dir("none", nofile));
  kv[n++] = "AWS_SHARED_CREDENTIALS_FILE";
  kv[n++] = none;
  kv[n++] = "AWS_CONFIG_FILE";
  kv[n++] = none;
  kv[n] = NULL;
  kms_host host = {sizeof host, 1, 1, (void *)kv, NULL, getenv_kv, NULL};
  kms_error err = {0};
  kms_status st = aws_config_load(c, &host, set, n_set, &err);
  free(none);
  kv[n - 4] = NULL; /* the names pointed at `none` */
  if (st != KMS_OK) fail_msg("config: %s", err.message);
  aws_creds_provider *p = NULL;
  st = aws_creds_new(c, clk, ait_curl_http, (void *)clk, &p, &err);
  if (st != KMS_OK) fail_msg("creds: %s", err.message);
  return p;
}

static aws_creds_provider *provider(aws_config *c, const char **kv, const kpc_clock *clk) {
  return provider_with(c, kv, NULL, 0, clk);
}

/* ListSecrets signed with `k` by libcurl's SigV4: the HTTP status. */
static long signed_call(const aws_credentials *k, char **body) {
  CURL *c = curl_easy_init();
  struct curl_slist *h = NULL;
  char tok[2048], user[512];
  h = curl_slist_append(h, "Content-Type: application/x-amz-json-1.1");
  h = curl_slist_append(h, "X-Amz-Target: secretsmanager.ListSecrets");
  if (k->session_token) {
    snprintf(tok, sizeof tok, "X-Amz-Security-Token: %s", k->session_token);
    h = curl_slist_append(h, tok);
  }
  snprintf(user, sizeof user, "%s:%s", k->access_key_id, k->secret_access_key);
  FILE *mem;
  size_t len = 0;
  *body = NULL;
  mem = open_memstream(body, &len);
  curl_easy_setopt(c, CURLOPT_URL, vf_url(g_srv));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{}");
  curl_easy_setopt(c, CURLOPT_USERPWD, user);
  curl_easy_setopt(c, CURLOPT_AWS_SIGV4, "aws:amz:" REGION ":secretsmanager");
  curl_easy_setopt(c, CURLOPT_WRITEDATA, mem);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  long status = -1;
  if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  fclose(mem);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return status;
}

static void assert_works(const aws_credentials *k) {
  char *body = NULL;
  long st = signed_call(k, &body);
  if (st != 200) fail_msg("signed ListSecrets: HTTP %ld %s", st, body ? body : "");
  free(body);
}

/* Occurrences of `needle` in the server's request log. */
static int logged(const char *needle) {
  char *body = NULL;
  assert_int_equal(vf_http(g_srv, "GET", "/__test__/requests", NULL, NULL, &body), 200);
  int n = 0;
  for (const char *p = body; (p = strstr(p, needle)); p++) n++;
  free(body);
  return n;
}

static int reset(void **state) {
  (void)state;
  assert_int_equal(vf_http(g_srv, "POST", "/__test__/reset", NULL, "{}", NULL), 200);
  assert_int_equal(vf_clear_requests(g_srv), 0);
  write_token("token", WEB_TOKEN);
  write_token("ecs", ECS_TOKEN);
  return 0;
}

static void test_web_identity(void **state) {
  (void)state;
  char tf[160];
  const char *kv[32] = {"AWS_REGION", REGION, "AWS_ROLE_ARN", ROLE, "AWS_ROLE_SESSION_NAME",
                        "kmsplug-itest", "AWS_WEB_IDENTITY_TOKEN_FILE", in_dir("token", tf),
                        "AWS_ENDPOINT_URL_STS", vf_url(g_srv), NULL};
  aws_config c;
  aws_creds_provider *p = provider(&c, kv, NULL);
  aws_credentials k = {0};
  kms_error err = {0};
  assert_int_equal(aws_creds_get(p, kpc_clock_now(NULL) + 10000, &k, &err), KMS_OK);
  assert_memory_equal(k.access_key_id, "ASIA", 4);
  assert_non_null(k.session_token);
  assert_true(k.expires_ms > kpc_clock_now(NULL) + 3500 * 1000LL);
  assert_works(&k);
  assert_int_equal(logged("AssumeRoleWithWebIdentity"), 1);
  assert_int_equal(logged(WEB_TOKEN), 0); /* the server's log hashes it; we sent it once */
  /* cached: no second STS call */
  assert_int_equal(aws_creds_get(p, kpc_clock_now(NULL) + 10000, &k, &err), KMS_OK);
  assert_int_equal(logged("AssumeRoleWithWebIdentity"), 1);
  /* STS cannot reach the identity provider: retryable, not a bad token */
  aws_creds_invalidate(p);
  assert_int_equal(vf_fault(g_srv, "{\"path\": \"^/$\", \"status\": 400, \"raw_body\": "
                                   "\"<ErrorResponse><Error><Type>Sender</Type><Code>"
                                   "IDPCommunicationError</Code><Message>IdP timed out</Message>"
                                   "</Error></ErrorResponse>\"}"), 0);
  assert_int_equal(aws_creds_get(p, kpc_clock_now(NULL) + 10000, &k, &err), KMS_UNAVAILABLE);
  assert_non_null(strstr(err.message, "IDPCommunicationError: IdP timed out"));
  assert_int_equal(aws_creds_get(p, kpc_clock_now(NULL) + 10000, &k, &err), KMS_OK);
  /* a rotated-out token: STS refuses it, the message is AWS's and holds no token */
  write_token("token", "eyJ.a-token-sts-does-not-know.sig");
  aws_creds_invalidate(p);
  assert_int_equal(aws_creds_get(p, kpc_clock_now(NULL) + 10000, &k, &err), KMS_UNAUTHENTICATED);
  assert_non_null(strstr(err.message, "STS AssumeRoleWithWebIdentity answered HTTP 400"));
  assert_non_null(strstr(err.message, "InvalidIdentityToken"));
  assert_null(strstr(err.message, "a-token-sts-does-not-know"));
  assert_null(k.access_key_id);
  aws_creds_free(p);
  aws_config_free(&c);
}

/* LiteLLM's IRSA settings (aws_role_name, aws_web_identity_token, ...)
 * instead of the variables. */
static void test_web_identity_settings(void **state) {
  (void)state;
  char tf[160];
  const char *kv[32] = {NULL};
  const kms_setting set[] = {{"aws_region_name", REGION},
                             {"aws_role_name", ROLE},
                             {"aws_session_name", "litellm-session"},
                             {"aws_web_identity_token", in_dir("token", tf)},
                             {"aws_sts_endpoint", vf_url(g_srv)}};
  aws_config c;
  aws_creds_provider *p = provider_with(&c, kv, set, 5, NULL);
  aws_credentials k = {0};
  kms_error err = {0};
  assert_int_equal(aws_creds_get(p, kpc_clock_now(NULL) + 10000, &k, &err), KMS_OK);
  assert_works(&k);
  assert_int_equal(logged("RoleSessionName=litellm-session"), 1);
  aws_credentials_clear(&k);
  aws_creds_free(p);
  aws_config_free(&c);
  /* a token file others can write is refused, naming the fix */
  assert_int_equal(chmod(tf, 0666), 0);
  p = provider_with(&c, kv, set, 5, NULL);
  assert_int_equal(aws_creds_get(p, kpc_clock_now(NULL) + 10000, &k, &err), KMS_PERMISSION_DENIED);
  assert_non_null(strstr(err.message, "writable by group or others"));
  assert_int_equal(logged("AssumeRoleWithWebIdentity"), 1); /* nothing sent */
  aws_creds_free(p);
  aws_config_free(&c);
}

static void test_imds_and_refresh(void **state) {
  (void)state;
  fake_clock fc = {kpc_clock_now(NULL)};
  kpc_clock clk = {fake_now, &fc, NULL};
  const char *kv[32] = {"AWS_REGION", REGION, "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                        vf_url(g_srv), NULL};
  aws_config c;
  aws_creds_provider *p = provider(&c, kv, &clk);
  aws_credentials k = {0};
  kms_error err = {0};
  assert_int_equal(aws_creds_get(p, fc.now + 10000, &k, &err), KMS_OK);
  char first[64];
  snprintf(first, sizeof first, "%s", k.access_key_id);
  assert_works(&k);
  assert_int_equal(logged("\"/latest/api/token\""), 1);
  assert_int_equal(logged("security-credentials/kmsplug-instance-role"), 1);
  aws_creds_health h;
  aws_creds_health_get(p, &h);
  assert_string_equal(h.source, "imds");
  assert_true(h.expires_in_s > 3500);
  /* 56 minutes on (server and client alike): refreshed before expiry */
  char adv[64];
  snprintf(adv, sizeof adv, "{\"advance\": %d}", 56 * 60);
  assert_int_equal(vf_http(g_srv, "POST", "/__test__/clock", NULL, adv, NULL), 200);
  fc.now += 56 * 60 * 1000LL;
  assert_int_equal(aws_creds_get(p, fc.now + 10000, &k, &err), KMS_OK);
  assert_string_not_equal(k.access_key_id, first);
  assert_int_equal(logged("security-credentials/kmsplug-instance-role"), 2);
  assert_int_equal(logged("\"/latest/api/token\""), 1); /* the session token is reused */
  assert_works(&k);
  /* the server expires them early: the service refuses them; invalidate renews */
  assert_int_equal(vf_http(g_srv, "POST", "/__test__/credentials/expire", NULL, "{}", NULL), 200);
  char *body = NULL;
  assert_int_equal(signed_call(&k, &body), 400);
  assert_non_null(strstr(body, "ExpiredTokenException"));
  free(body);
  aws_creds_invalidate(p);
  assert_int_equal(aws_creds_get(p, fc.now + 10000, &k, &err), KMS_OK);
  assert_works(&k);
  aws_credentials_clear(&k);
  aws_creds_free(p);
  aws_config_free(&c);
}

/* The IMDS session token ran out on the server before the client thought
 * so: the 401 makes it fetch a new one and retry once. */
static void test_imds_token_expired(void **state) {
  (void)state;
  fake_clock fc = {kpc_clock_now(NULL)};
  kpc_clock clk = {fake_now, &fc, NULL};
  const char *kv[32] = {"AWS_REGION", REGION, "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                        vf_url(g_srv), NULL};
  aws_config c;
  aws_creds_provider *p = provider(&c, kv, &clk);
  aws_credentials k = {0};
  kms_error err = {0};
  assert_int_equal(aws_creds_get(p, fc.now + 10000, &k, &err), KMS_OK);
  char adv[64];
  snprintf(adv, sizeof adv, "{\"advance\": %d}", AWS_IMDS_TOKEN_TTL_S + 60);
  assert_int_equal(vf_http(g_srv, "POST", "/__test__/clock", NULL, adv, NULL), 200);
  fc.now += (AWS_IMDS_TOKEN_TTL_S - 120) * 1000LL; /* still valid on the client's clock */
  assert_int_equal(aws_creds_get(p, fc.now + 10000, &k, &err), KMS_OK);
  assert_int_equal(logged("\"/latest/api/token\""), 2);
  assert_works(&k);
  aws_credentials_clear(&k);
  aws_creds_free(p);
  aws_config_free(&c);
}

static void test_ecs(void **state) {
  (void)state;
  char full[256], tf[160];
  snprintf(full, sizeof full, "%s/v2/credentials/kmsplug-task", vf_url(g_srv));
  const char *kv[32] = {"AWS_REGION", REGION, "AWS_CONTAINER_CREDENTIALS_FULL_URI", full,
                        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", in_dir("ecs", tf), NULL};
  aws_config c;
  aws_creds_provider *p = provider(&c, kv, NULL);
  aws_credentials k = {0};
  kms_error err = {0};
  assert_int_equal(aws_creds_get(p, kpc_clock_now(NULL) + 10000, &k, &err), KMS_OK);
  assert_works(&k);
  /* an endpoint that echoes the token into its error: not in our message */
  aws_creds_invalidate(p);
  assert_int_equal(vf_fault(g_srv, "{\"path\": \"^/v2/credentials\", \"status\": 403, "
                                   "\"code\": \"AccessDenied\", \"message\": \"token "
                                   ECS_TOKEN " is not allowed\"}"), 0);
  assert_int_equal(aws_creds_get(p, kpc_clock_now(NULL) + 10000, &k, &err), KMS_UNAUTHENTICATED);
  assert_non_null(strstr(err.message, "token (redacted) is not allowed"));
  assert_null(strstr(err.message, ECS_TOKEN));
  aws_creds_free(p);
  aws_config_free(&c);
  const char *kv2[32] = {"AWS_REGION", REGION, "AWS_CONTAINER_CREDENTIALS_FULL_URI", full,
                         "AWS_CONTAINER_AUTHORIZATION_TOKEN", "not-the-token", NULL};
  p = provider(&c, kv2, NULL);
  assert_int_equal(aws_creds_get(p, kpc_clock_now(NULL) + 10000, &k, &err), KMS_UNAUTHENTICATED);
  assert_int_equal(err.backend_status, 401);
  assert_non_null(strstr(err.message, "container credentials endpoint answered HTTP 401"));
  assert_null(strstr(err.message, "not-the-token"));
  aws_credentials_clear(&k);
  aws_creds_free(p);
  aws_config_free(&c);
}

static void test_nothing_configured(void **state) {
  (void)state;
  const char *kv[32] = {"AWS_REGION", REGION, "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                        "http://127.0.0.1:1", NULL};
  aws_config c;
  aws_creds_provider *p = provider(&c, kv, NULL);
  aws_credentials k = {0};
  kms_error err = {0};
  assert_int_equal(aws_creds_get(p, kpc_clock_now(NULL) + 5000, &k, &err), KMS_UNAUTHENTICATED);
  assert_non_null(strstr(err.message, "no AWS credentials: nothing is configured"));
  assert_non_null(strstr(err.message, "http://127.0.0.1:1"));
  aws_creds_free(p);
  aws_config_free(&c);
}

int main(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  snprintf(g_dir, sizeof g_dir, "/tmp/aws_creds_itest.XXXXXX");
  if (!mkdtemp(g_dir)) return 1;
  const char *const args[] = {"--region", REGION, "--web-identity-token", WEB_TOKEN,
                              "--ecs-auth-token", ECS_TOKEN, "--seed", "7", NULL};
  g_srv = vf_start(&(vf_options){.server = "aws", .extra_args = args});
  if (!g_srv) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_web_identity, reset),
      cmocka_unit_test_setup(test_web_identity_settings, reset),
      cmocka_unit_test_setup(test_imds_and_refresh, reset),
      cmocka_unit_test_setup(test_imds_token_expired, reset),
      cmocka_unit_test_setup(test_ecs, reset),
      cmocka_unit_test_setup(test_nothing_configured, reset),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  vf_stop(g_srv);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) rc = 1;
  curl_global_cleanup();
  return rc;
}
