/*
 * test_vault_health_auth.c -- health's `reachable` and `authenticated`
 * against the Vault-compatible server, as recorded by every HTTP exchange
 * (http.c, the one place they are written): nothing observed yet (-1);
 * Vault down (connection dropped) -> reachable 0; back -> 1; a bare
 * "permission denied" -> lookup-self decides (alive: still 1); "invalid
 * token" -> authenticated 0 while reachable stays 1, and the next accepted
 * request -> 1 again; a revoked token -> authenticated 0; a refused AppRole
 * login (no KV request ever sent) -> authenticated 0, a good login -> 1; a
 * path the policy really denies -> still 1.
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

static vf_server *srv;

static int setup(void **state) {
  (void)state;
  srv = vf_start(&(vf_options){0});
  return srv ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  vf_stop(srv);
  return 0;
}

static int reset(void **state) {
  (void)state;
  vf_clear_faults(srv);
  return 0;
}

#define KV_RW "path \"secret/data/*\" { capabilities = [\"create\", \"read\", \"update\"] }"

/* A JSON string member of a member of the root-token API's answer. */
static void api_str(const char *method, const char *path, const char *json, const char *outer,
                    const char *inner, char *out, size_t size) {
  char *body = NULL;
  long st = vf_http(srv, method, path, vf_root_token(srv), json, &body);
  if (st < 200 || st > 299) fail_msg("%s %s: HTTP %ld %s", method, path, st, body ? body : "");
  out[0] = '\0';
  if (outer) {
    cJSON *r = cJSON_Parse(body);
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(r, outer), inner);
    if (!cJSON_IsString(v)) fail_msg("%s %s: no %s.%s in %s", method, path, outer, inner, body);
    snprintf(out, size, "%s", v->valuestring);
    cJSON_Delete(r);
  }
  free(body);
}

/* A token (not root) with policy `name` = `hcl` (written first). */
static void policy_token(const char *name, const char *hcl, char *tok, size_t size) {
  char tmp[8], path[96], req[128];
  cJSON *p = cJSON_CreateObject();
  cJSON_AddStringToObject(p, "policy", hcl);
  char *pj = cJSON_PrintUnformatted(p);
  snprintf(path, sizeof path, "/v1/sys/policies/acl/%s", name);
  api_str("PUT", path, pj, NULL, NULL, tmp, sizeof tmp);
  free(pj);
  cJSON_Delete(p);
  snprintf(req, sizeof req, "{\"policies\":[\"%s\"]}", name);
  api_str("POST", "/v1/auth/token/create", req, "auth", "client_token", tok, size);
}

/* A token (not root) allowed to read and write secret/. */
static void kv_token(char *tok, size_t size) { policy_token("kvrw", KV_RW, tok, size); }

/* Revoke `tok` on the server (its test hook): it answers "invalid token". */
static void revoke(const char *tok) {
  char body[200];
  snprintf(body, sizeof body, "{\"token\":\"%s\"}", tok);
  assert_int_equal(vf_http(srv, "POST", "/__test__/tokens/revoke", NULL, body, NULL), 200);
}

/* No cache (every read asks Vault), no retries (a dropped connection fails
 * at once). */
static kms_client *client_env(it_host *h, const char *const *env) {
  it_host_init(h);
  it_target(h, srv, 0, 0);
  it_set(h, "HCP_VAULT_REFRESH_INTERVAL", "0");
  it_set(h, "VAULT_MAX_RETRIES", "0");
  for (size_t i = 0; env[i]; i += 2) it_set(h, env[i], env[i + 1]);
  kms_client *c = NULL;
  kms_error err;
  if (it_client(h, IT_RW, IT_RW_N, &c, &err) != KMS_OK) fail_msg("create: %s", err.message);
  return c;
}

static void test_token_down_denied_recovered(void **state) {
  (void)state;
  char tok[128];
  kv_token(tok, sizeof tok);
  it_host h;
  kms_client *c = client_env(&h, (const char *const[]){"HCP_VAULT_TOKEN", tok, NULL});
  kms_error err;
  char v[32];
  IT_EXPECT_HEALTH(c, -1, -1); /* nothing observed yet */

  assert_int_equal(kms_client_write(c, "hh", "v1", 2, NULL, &err), KMS_OK);
  IT_EXPECT_HEALTH(c, 1, 1);
  assert_int_equal(it_read(c, "hh-missing", v, sizeof v, NULL, NULL), KMS_NOT_FOUND);
  IT_EXPECT_HEALTH(c, 1, 1); /* a 404 comes after Vault accepted the token */

  /* Vault down: every connection dropped without an answer */
  assert_int_equal(vf_fault(srv, "{\"path\":\"^/v1/\",\"drop\":true,\"times\":-1}"), 0);
  assert_int_equal(it_read(c, "hh", v, sizeof v, NULL, NULL), KMS_UNAVAILABLE);
  IT_EXPECT_HEALTH(c, 0, 1); /* nothing said the token was refused */
  assert_int_equal(vf_clear_faults(srv), 0);
  assert_int_equal(it_read(c, "hh", v, sizeof v, NULL, NULL), KMS_OK);
  assert_string_equal(v, "v1");
  IT_EXPECT_HEALTH(c, 1, 1); /* back */

  /* A bare "permission denied" cannot tell: a path the policy denies gets
   * it, and so does a dead token on a Vault before 1.16. lookup-self asks
   * about the token itself: alive, so still authenticated */
  vf_clear_requests(srv);
  assert_int_equal(vf_fault(srv, "{\"method\":\"GET\",\"path\":\"^/v1/secret/data/hh$\","
                                 "\"status\":403,\"body\":{\"errors\":[\"permission denied\"]},"
                                 "\"times\":1}"),
                   0);
  assert_int_not_equal(it_read(c, "hh", v, sizeof v, NULL, NULL), KMS_OK);
  vf_log *log = vf_requests(srv);
  assert_int_equal(vf_count(log, "GET", "/v1/auth/token/lookup-self"), 1);
  vf_log_free(log);
  IT_EXPECT_HEALTH(c, 1, 1);
  /* Vault says "invalid token" (>= 1.16, for a revoked, expired or unknown
   * token): refused without asking; the next accepted request recovers */
  vf_clear_requests(srv);
  assert_int_equal(vf_fault(srv, "{\"method\":\"GET\",\"path\":\"^/v1/secret/data/hh$\","
                                 "\"status\":403,\"body\":{\"errors\":[\"permission denied\","
                                 "\"invalid token\"]},\"times\":1}"),
                   0);
  assert_int_not_equal(it_read(c, "hh", v, sizeof v, NULL, NULL), KMS_OK);
  log = vf_requests(srv);
  assert_int_equal(vf_count(log, "GET", "/v1/auth/token/lookup-self"), 0);
  vf_log_free(log);
  IT_EXPECT_HEALTH(c, 1, 0);
  assert_int_equal(it_read(c, "hh", v, sizeof v, NULL, NULL), KMS_OK);
  IT_EXPECT_HEALTH(c, 1, 1);

  /* a sealed Vault answers 503 before it looks at the token: reachable,
   * and the last verdict on the token stands */
  assert_int_equal(vf_seal(srv, 1), 0);
  assert_int_equal(it_read(c, "hh", v, sizeof v, NULL, NULL), KMS_UNAVAILABLE);
  IT_EXPECT_HEALTH(c, 1, 1);
  assert_int_equal(vf_seal(srv, 0), 0);

  /* the token revoked for real: the server refuses it */
  revoke(tok);
  assert_int_not_equal(it_read(c, "hh", v, sizeof v, NULL, NULL), KMS_OK);
  IT_EXPECT_HEALTH(c, 1, 0);
  it_done(&h, c);
}

/* A real policy denial (the server's policy engine, not a fault): a token
 * allowed only under secret/data/ok/ reads elsewhere. The read is refused
 * (PERMISSION_DENIED), but the token is alive: health stays authenticated,
 * on a static token as on a login's. */
static void test_policy_denial_is_not_a_dead_token(void **state) {
  (void)state;
  char tok[128];
  policy_token("okonly", "path \"secret/data/ok/*\" { capabilities = [\"read\"] }", tok,
               sizeof tok);
  it_host h;
  kms_client *c = client_env(&h, (const char *const[]){"HCP_VAULT_TOKEN", tok, NULL});
  char v[32];
  kms_error err;
  assert_int_equal(it_read(c, "ok/missing", v, sizeof v, NULL, NULL), KMS_NOT_FOUND);
  IT_EXPECT_HEALTH(c, 1, 1);
  vf_clear_requests(srv);
  assert_int_equal(it_read(c, "denied", v, sizeof v, NULL, &err), KMS_PERMISSION_DENIED);
  IT_EXPECT_HEALTH(c, 1, 1);
  vf_log *log = vf_requests(srv);
  assert_int_equal(vf_count(log, "GET", "/v1/secret/data/denied"), 1); /* no retry */
  assert_int_equal(vf_count(log, "GET", "/v1/auth/token/lookup-self"), 1);
  vf_log_free(log);
  /* revoked: the server says "invalid token" */
  revoke(tok);
  assert_int_not_equal(it_read(c, "ok/missing", v, sizeof v, NULL, NULL), KMS_OK);
  IT_EXPECT_HEALTH(c, 1, 0);
  it_done(&h, c);
}

/* AppRole enabled at approle/, role "app" with the KV policy. */
static void approle(char *role_id, size_t rs, char *secret_id, size_t ss) {
  char tmp[8], *b = NULL;
  if (vf_http(srv, "GET", "/v1/sys/auth", vf_root_token(srv), NULL, &b) != 200 ||
      !strstr(b, "\"approle/\""))
    api_str("POST", "/v1/sys/auth/approle", "{\"type\":\"approle\"}", NULL, NULL, tmp, sizeof tmp);
  free(b);
  api_str("POST", "/v1/auth/approle/role/app",
          "{\"token_policies\":\"kvrw\",\"token_ttl\":3600,\"token_max_ttl\":7200}", NULL, NULL,
          tmp, sizeof tmp);
  api_str("GET", "/v1/auth/approle/role/app/role-id", NULL, "data", "role_id", role_id, rs);
  api_str("POST", "/v1/auth/approle/role/app/secret-id", "{}", "data", "secret_id", secret_id,
          ss);
}

static void test_login_refused_then_accepted(void **state) {
  (void)state;
  char tok[128], rid[128], sid[128];
  kv_token(tok, sizeof tok); /* (creates the kvrw policy) */
  approle(rid, sizeof rid, sid, sizeof sid);
  it_host h;
  kms_client *c = client_env(&h, (const char *const[]){"HCP_VAULT_APPROLE_ROLE_ID", rid,
                                                       "HCP_VAULT_APPROLE_SECRET_ID",
                                                       "not-the-secret-id", NULL});
  char v[32];
  vf_clear_requests(srv);
  assert_int_equal(it_read(c, "al", v, sizeof v, NULL, NULL), KMS_UNAUTHENTICATED);
  vf_log *log = vf_requests(srv);
  assert_int_equal(vf_count(log, "GET", "/v1/secret/data/al"), 0); /* only the login went out */
  assert_int_equal(vf_count(log, "POST", "/v1/auth/approle/login"), 1);
  vf_log_free(log);
  IT_EXPECT_HEALTH(c, 1, 0);
  it_done(&h, c);

  c = client_env(&h, (const char *const[]){"HCP_VAULT_APPROLE_ROLE_ID", rid,
                                           "HCP_VAULT_APPROLE_SECRET_ID", sid, NULL});
  assert_int_equal(it_read(c, "al", v, sizeof v, NULL, NULL), KMS_NOT_FOUND);
  IT_EXPECT_HEALTH(c, 1, 1);
  it_done(&h, c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_token_down_denied_recovered, reset),
      cmocka_unit_test_setup(test_login_refused_then_accepted, reset),
      cmocka_unit_test_setup(test_policy_denial_is_not_a_dead_token, reset),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
