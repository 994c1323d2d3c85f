/*
 * test_vault_kv.c -- the real hashicorp_vault.so against tests/vault_server
 * over HTTP: exact requests (method, path, headers, body) for read / write /
 * delete across namespace / mount / prefix combinations, normalisation,
 * percent-encoding, CAS and descriptions, delete modes, the name-validation
 * and access-mode tables (no request sent), error statuses and messages,
 * and configuration errors at create.
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
static char root_hash[80];

static int setup(void **state) {
  static const char *const mounts[] = {"kv2", NULL};
  static const char *const nss[] = {"team1", "team1/sub", NULL};
  srv = vf_start(&(vf_options){.mounts = mounts, .namespaces = nss});
  if (!srv) return -1;
  vf_token_hash(vf_root_token(srv), root_hash, sizeof root_hash);
  return 0;
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

/* A client on srv with extra env pairs and settings. */
static kms_client *client(it_host *h, const char *const *env, const kms_setting *s, size_t n) {
  it_host_init(h);
  it_target(h, srv, 0, 0);
  for (size_t i = 0; env && env[i]; i += 2) it_set(h, env[i], env[i + 1]);
  kms_client *c = NULL;
  kms_error err;
  kms_status st = it_client(h, s, n, &c, &err);
  if (st != KMS_OK) fail_msg("create: %s: %s", kms_status_str(st), err.message);
  return c;
}


static void expect_headers(const vf_request *r, int body) {
  assert_string_equal(vf_header(r, "X-Vault-Token"), root_hash);
  assert_string_equal(vf_header(r, "X-Vault-Request"), "true");
  assert_null(vf_header(r, "X-Vault-Namespace")); /* the namespace is in the path */
  if (body) assert_string_equal(vf_header(r, "Content-Type"), "application/json");
}

static void test_read_write_delete_requests(void **state) {
  it_host h;
  const char *env[] = {"HCP_VAULT_REFRESH_INTERVAL", "0", NULL};
  kms_client *c = client(&h, env, IT_RW, IT_RW_N);
  kms_error err;
  assert_int_equal(kms_client_write(c, "k1", "v1", 2, NULL, &err), KMS_OK);
  kms_secret *s = NULL;
  assert_int_equal(kms_client_read(c, "k1", &s, &err), KMS_OK);
  assert_int_equal(s->length, 2);
  assert_string_equal(s->value, "v1");
  assert_int_equal(s->version, 1);
  assert_int_equal(s->flags, 0);
  kms_client_free_secret(c, s);
  assert_int_equal(kms_client_delete(c, "k1", &err), KMS_OK);
  assert_int_equal(kms_client_read(c, "k1", &s, &err), KMS_NOT_FOUND);
  assert_null(s);
  assert_non_null(strstr(err.message, "deleted"));
  assert_int_equal(err.backend_status, 404);

  vf_log *log = vf_requests(srv);
  assert_int_equal(log->n, 4);
  assert_string_equal(log->r[0].method, "POST");
  assert_string_equal(log->r[0].path, "/v1/secret/data/k1");
  assert_string_equal(log->r[0].body, "{\"data\":{\"key\":\"v1\"}}");
  expect_headers(&log->r[0], 1);
  assert_string_equal(log->r[1].method, "GET");
  assert_string_equal(log->r[1].path, "/v1/secret/data/k1");
  assert_string_equal(log->r[1].body, "");
  assert_string_equal(log->r[1].query, "");
  expect_headers(&log->r[1], 0);
  assert_string_equal(log->r[2].method, "DELETE");
  assert_string_equal(log->r[2].path, "/v1/secret/data/k1");
  expect_headers(&log->r[2], 0);
  assert_string_equal(log->r[3].method, "GET");
  vf_log_free(log);
  it_done(&h, c);
}

typedef struct layout_case {
  const char *ns, *mount, *prefix, *name, *path;
} layout_case;

static void test_layout_table(void **state) {
  static const layout_case cases[] = {
    {NULL, NULL, NULL, "a", "secret/data/a"},
    {"team1", NULL, NULL, "a", "team1/secret/data/a"},
    {"team1/sub", "kv2", "litellm/keys", "x/y", "team1/sub/kv2/data/litellm/keys/x/y"},
    {" /team1/ ", " kv2/ ", "/p/ ", "a", "team1/kv2/data/p/a"},
    {NULL, "kv2", NULL, "litellm/sk-1", "kv2/data/litellm/sk-1"},
    {NULL, NULL, NULL, "sp ace+\xc3\xa9%?#&", "secret/data/sp%20ace%2B%C3%A9%25%3F%23%26"},
    {NULL, NULL, "pre fix", "...", "secret/data/pre%20fix/..."},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const layout_case *lc = &cases[i];
    reset(NULL);
    it_host h;
    const char *env[9] = {"HCP_VAULT_REFRESH_INTERVAL", "0"};
    size_t k = 2;
    if (lc->ns) env[k++] = "HCP_VAULT_NAMESPACE", env[k++] = lc->ns;
    if (lc->mount) env[k++] = "HCP_VAULT_MOUNT_NAME", env[k++] = lc->mount;
    if (lc->prefix) env[k++] = "HCP_VAULT_PATH_PREFIX", env[k++] = lc->prefix;
    env[k] = NULL;
    kms_client *c = client(&h, env, IT_RW, IT_RW_N);
    /* the address is normalised too */
    char addr[200];
    snprintf(addr, sizeof addr, "  %s/  ", vf_url(srv));
    kms_client_destroy(c);
    it_set(&h, "HCP_VAULT_ADDR", addr);
    kms_error err;
    assert_int_equal(it_client(&h, IT_RW, IT_RW_N, &c, &err), KMS_OK);

    char val[64];
    snprintf(val, sizeof val, "value-%zu", i);
    if (kms_client_write(c, lc->name, val, strlen(val), NULL, &err) != KMS_OK)
      fail_msg("case %zu write: %s", i, err.message);
    kms_secret *s;
    if (kms_client_read(c, lc->name, &s, &err) != KMS_OK)
      fail_msg("case %zu read: %s", i, err.message);
    assert_string_equal(s->value, val);
    kms_client_free_secret(c, s);
    assert_int_equal(kms_client_delete(c, lc->name, &err), KMS_OK);

    char want[300];
    snprintf(want, sizeof want, "/v1/%s", lc->path);
    vf_log *log = vf_requests(srv);
    assert_int_equal(log->n, 3);
    for (size_t r = 0; r < 3; r++) {
      if (strcmp(log->r[r].path, want) != 0)
        fail_msg("case %zu request %zu: path %s, want %s", i, r, log->r[r].path, want);
      expect_headers(&log->r[r], r == 0);
    }
    assert_string_equal(log->r[0].method, "POST");
    assert_string_equal(log->r[1].method, "GET");
    assert_string_equal(log->r[2].method, "DELETE");
    vf_log_free(log);
    it_done(&h, c);
  }
}

static void test_fallback_variables(void **state) {
  /* VAULT_ADDR / VAULT_TOKEN when the HCP_ names are unset */
  it_host h;
  it_host_init(&h);
  it_set(&h, "VAULT_ADDR", vf_url(srv));
  it_set(&h, "VAULT_TOKEN", vf_root_token(srv));
  kms_client *c;
  kms_error err;
  assert_int_equal(it_client(&h, NULL, 0, &c, &err), KMS_OK);
  kms_secret *s;
  assert_int_equal(kms_client_read(c, "nope", &s, &err), KMS_NOT_FOUND);
  vf_log *log = vf_requests(srv);
  assert_int_equal(log->n, 1);
  expect_headers(&log->r[0], 0);
  vf_log_free(log);
  /* which family was used is logged once (issue 10 item 9) */
  assert_int_equal(it_log_count(&h, "come from the VAULT_* variables (no HCP_VAULT_* variable "
                                    "is set)"), 1);
  it_done(&h, c);
}

static void test_cas_and_description(void **state) {
  it_host h;
  kms_client *c = client(&h, NULL, IT_RW, IT_RW_N);
  kms_error err;
  kms_write_options o = {sizeof o, NULL, KMS_WRITE_CAS, 0};
  assert_int_equal(kms_client_write(c, "cas1", "a", 1, &o, &err), KMS_OK);
  assert_int_equal(kms_client_write(c, "cas1", "b", 1, &o, &err), KMS_CONFLICT);
  assert_int_equal(err.backend_status, 400);
  assert_non_null(strstr(err.message, "check-and-set"));
  o.cas_version = 1;
  assert_int_equal(kms_client_write(c, "cas1", "b", 1, &o, &err), KMS_OK);
  kms_write_options d = {sizeof d, "virtual key for team \"x\"", 0, 0};
  assert_int_equal(kms_client_write(c, "desc1", "v", 1, &d, &err), KMS_OK);

  /* Issue 10 item 12: the description goes inside the data, next to key, as
   * LiteLLM writes it; no metadata request (a LiteLLM policy may grant only data/). */
  vf_log *log = vf_requests(srv);
  assert_int_equal(log->n, 4);
  assert_string_equal(log->r[0].body, "{\"data\":{\"key\":\"a\"},\"options\":{\"cas\":0}}");
  assert_string_equal(log->r[2].body, "{\"data\":{\"key\":\"b\"},\"options\":{\"cas\":1}}");
  assert_string_equal(log->r[3].path, "/v1/secret/data/desc1");
  assert_string_equal(log->r[3].body,
                      "{\"data\":{\"key\":\"v\",\"description\":\"virtual key for team \\\"x\\\"\"}}");
  vf_log_free(log);
  /* and reads still return key */
  char val[16];
  assert_int_equal(it_read(c, "desc1", val, sizeof val, NULL, &err), KMS_OK);
  assert_string_equal(val, "v");
  it_done(&h, c);

  /* The `description` setting (LiteLLM's KeyManagementSettings.description) is
   * the default; a write's own description wins; description_metadata also
   * POSTs custom_metadata. */
  vf_clear_requests(srv);
  const kms_setting s2[] = {{"access_mode", "read_and_write"},
                            {"description", "stored by the gateway"},
                            {"description_metadata", "true"}};
  const char *env0[] = {"HCP_VAULT_REFRESH_INTERVAL", "0", NULL};
  c = client(&h, env0, s2, 3);
  assert_int_equal(kms_client_write(c, "desc2", "w", 1, NULL, &err), KMS_OK);
  assert_int_equal(kms_client_write(c, "desc3", "x", 1, &d, &err), KMS_OK);
  assert_int_equal(it_read(c, "desc2", val, sizeof val, NULL, &err), KMS_OK);
  assert_string_equal(val, "w");
  log = vf_requests(srv);
  assert_int_equal(log->n, 5);
  assert_string_equal(log->r[0].body,
                      "{\"data\":{\"key\":\"w\",\"description\":\"stored by the gateway\"}}");
  assert_string_equal(log->r[1].path, "/v1/secret/metadata/desc2");
  assert_string_equal(log->r[1].body,
                      "{\"custom_metadata\":{\"description\":\"stored by the gateway\"}}");
  expect_headers(&log->r[1], 1);
  assert_string_equal(log->r[2].body,
                      "{\"data\":{\"key\":\"x\",\"description\":\"virtual key for team \\\"x\\\"\"}}");
  assert_string_equal(log->r[3].path, "/v1/secret/metadata/desc3");
  vf_log_free(log);
  char *body = NULL;
  assert_int_equal(vf_http(srv, "GET", "/v1/secret/metadata/desc3", vf_root_token(srv), NULL, &body), 200);
  assert_non_null(strstr(body, "virtual key for team"));
  free(body);
  it_done(&h, c);
}

static void test_delete_modes(void **state) {
  kms_error err;
  kms_secret *s;
  /* soft (default): DELETE data/, the version can still be undeleted */
  it_host h;
  const char *env0[] = {"HCP_VAULT_REFRESH_INTERVAL", "0", NULL};
  kms_client *c = client(&h, env0, IT_RW, IT_RW_N);
  assert_int_equal(kms_client_write(c, "d1", "x", 1, NULL, &err), KMS_OK);
  assert_int_equal(kms_client_delete(c, "d1", &err), KMS_OK);
  assert_int_equal(kms_client_read(c, "d1", &s, &err), KMS_NOT_FOUND);
  assert_non_null(strstr(err.message, "version 1 was deleted"));
  assert_int_equal(kms_client_delete(c, "never-existed", &err), KMS_OK);
  it_done(&h, c);
  vf_log *log = vf_requests(srv);
  assert_int_equal(vf_count(log, "DELETE", "/v1/secret/data/d1"), 1);
  assert_int_equal(vf_count(log, "DELETE", "/v1/secret/data/never-existed"), 1);
  vf_log_free(log);

  /* destroy: DELETE metadata/, every version gone */
  reset(NULL);
  kms_setting s2[] = {{"access_mode", "read_and_write"}, {"delete_mode", "destroy"}};
  c = client(&h, env0, s2, 2);
  assert_int_equal(kms_client_write(c, "d2", "x", 1, NULL, &err), KMS_OK);
  assert_int_equal(kms_client_write(c, "d2", "y", 1, NULL, &err), KMS_OK);
  assert_int_equal(kms_client_delete(c, "d2", &err), KMS_OK);
  assert_int_equal(kms_client_read(c, "d2", &s, &err), KMS_NOT_FOUND);
  assert_int_equal(kms_client_delete(c, "d2", &err), KMS_OK); /* already gone: still OK */
  it_done(&h, c);
  log = vf_requests(srv);
  assert_int_equal(vf_count(log, "DELETE", "/v1/secret/metadata/d2"), 2);
  assert_int_equal(vf_count(log, "DELETE", "/v1/secret/data/d2"), 0);
  vf_log_free(log);
  assert_int_equal(vf_http(srv, "GET", "/v1/secret/metadata/d2", vf_root_token(srv), NULL, NULL), 404);
}

static void test_name_validation_table(void **state) {
  static const char *const bad[] = {"/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "../etc",
                                    "a\nb", "a\rb", "tab\there", "del\x7f"};
  it_host h;
  kms_client *c = client(&h, NULL, IT_RW, IT_RW_N);
  kms_error err;
  kms_secret *s;
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    assert_int_equal(kms_client_read(c, bad[i], &s, &err), KMS_INVALID_ARGUMENT);
    assert_int_equal(kms_client_write(c, bad[i], "v", 1, NULL, &err), KMS_INVALID_ARGUMENT);
    assert_int_equal(kms_client_delete(c, bad[i], &err), KMS_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "secret name"));
  }
  char *big = malloc(2000);
  memset(big, 'n', 1999);
  big[1999] = '\0';
  assert_int_equal(kms_client_read(c, big, &s, &err), KMS_INVALID_ARGUMENT);
  free(big);
  /* values Vault cannot store as text are refused before sending, too */
  assert_int_equal(kms_client_write(c, "bin", "a\0b", 3, NULL, &err), KMS_INVALID_ARGUMENT);
  assert_int_equal(kms_client_write(c, "bin", "\xff", 1, NULL, &err), KMS_INVALID_ARGUMENT);
  vf_log *log = vf_requests(srv);
  assert_int_equal(log->n, 0);
  vf_log_free(log);
  it_done(&h, c);
}

static void test_access_mode_table(void **state) {
  static const struct {
    const char *mode; /* NULL: default */
    kms_status read, write, del;
  } t[] = {
    {NULL, KMS_OK, KMS_PERMISSION_DENIED, KMS_PERMISSION_DENIED},
    {"read_only", KMS_OK, KMS_PERMISSION_DENIED, KMS_PERMISSION_DENIED},
    {"write_only", KMS_PERMISSION_DENIED, KMS_OK, KMS_OK},
    {"read_and_write", KMS_OK, KMS_OK, KMS_OK},
  };
  vf_put(srv, "secret/data/am", "{\"key\":\"v\"}");
  for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
    reset(NULL);
    it_host h;
    kms_setting s = {"access_mode", t[i].mode};
    const char *env0[] = {"HCP_VAULT_REFRESH_INTERVAL", "0", NULL};
    kms_client *c = client(&h, env0, &s, t[i].mode ? 1 : 0);
    kms_error err;
    kms_secret *sec = NULL;
    size_t expect = 0;
    assert_int_equal(kms_client_read(c, "am", &sec, &err), t[i].read);
    if (t[i].read == KMS_PERMISSION_DENIED) assert_non_null(strstr(err.message, "access_mode"));
    kms_client_free_secret(c, sec);
    expect += t[i].read == KMS_OK;
    assert_int_equal(kms_client_write(c, "am", "v", 1, NULL, &err), t[i].write);
    if (t[i].write == KMS_PERMISSION_DENIED) assert_non_null(strstr(err.message, "access_mode"));
    expect += t[i].write == KMS_OK;
    assert_int_equal(kms_client_delete(c, "am2", &err), t[i].del);
    expect += t[i].del == KMS_OK;
    vf_log *log = vf_requests(srv);
    if (log->n != expect) fail_msg("mode %s: %zu requests, want %zu", t[i].mode, log->n, expect);
    vf_log_free(log);
    it_done(&h, c);
  }
}

static char *token_with_policy(const char *policy_hcl, const char *name) {
  /* policy via sys/policies/acl, token via auth/token/create */
  cJSON *p = cJSON_CreateObject();
  cJSON_AddStringToObject(p, "policy", policy_hcl);
  char *pj = cJSON_PrintUnformatted(p);
  char path[200];
  snprintf(path, sizeof path, "/v1/sys/policies/acl/%s", name);
  assert_true(vf_http(srv, "POST", path, vf_root_token(srv), pj, NULL) / 100 == 2);
  free(pj);
  cJSON_Delete(p);
  char req[200], *body = NULL;
  snprintf(req, sizeof req, "{\"policies\":[\"%s\"]}", name);
  assert_int_equal(vf_http(srv, "POST", "/v1/auth/token/create", vf_root_token(srv), req, &body), 200);
  cJSON *r = cJSON_Parse(body);
  free(body);
  char *tok = strdup(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "auth"), "client_token")->valuestring);
  cJSON_Delete(r);
  return tok;
}

static void expect_read(kms_client *c, const char *name, kms_status st, const char *needle,
                        int backend) {
  kms_error err;
  kms_secret *s = NULL;
  kms_status got = kms_client_read(c, name, &s, &err);
  if (got != st || (needle && !strstr(err.message, needle)) ||
      (backend >= 0 && err.backend_status != backend))
    fail_msg("read %s: %s (%d) '%s'; want %s '%s'", name, kms_status_str(got), err.backend_status,
             err.message, kms_status_str(st), needle ? needle : "");
  assert_null(s);
}

static void test_error_statuses(void **state) {
  it_host h;
  const char *env0[] = {"HCP_VAULT_REFRESH_INTERVAL", "0", "VAULT_MAX_RETRIES", "0", NULL};
  kms_client *c = client(&h, env0, IT_RW, IT_RW_N);
  kms_error err;
  /* 404 */
  expect_read(c, "missing", KMS_NOT_FOUND, "HTTP 404", 404);
  /* soft-deleted and destroyed envelopes */
  assert_int_equal(kms_client_write(c, "gone", "x", 1, NULL, &err), KMS_OK);
  assert_int_equal(vf_http(srv, "DELETE", "/v1/secret/data/gone", vf_root_token(srv), NULL, NULL), 204);
  expect_read(c, "gone", KMS_NOT_FOUND, "was deleted", 404);
  assert_int_equal(kms_client_write(c, "burnt", "x", 1, NULL, &err), KMS_OK);
  assert_int_equal(vf_http(srv, "POST", "/v1/secret/destroy/burnt", vf_root_token(srv), "{\"versions\":[1]}", NULL), 204);
  expect_read(c, "burnt", KMS_NOT_FOUND, "was destroyed", 404);
  /* malformed JSON, missing key, non-string key */
  vf_fault(srv, "{\"method\":\"GET\",\"path\":\"^/v1/secret/data/garbled$\",\"status\":200,\"raw_body\":\"{not json\",\"times\":-1}");
  expect_read(c, "garbled", KMS_INTERNAL, "not JSON", 200);
  assert_int_equal(vf_put(srv, "secret/data/nokey", "{\"other\":\"x\"}"), 200);
  expect_read(c, "nokey", KMS_INTERNAL, "no field \"key\"", 200);
  assert_int_equal(vf_put(srv, "secret/data/numkey", "{\"key\":5}"), 200);
  expect_read(c, "numkey", KMS_INTERNAL, "is a number, not a string", 200);
  /* 400 with Vault's text */
  vf_fault(srv, "{\"method\":\"GET\",\"path\":\"^/v1/secret/data/b400$\",\"status\":400,\"body\":{\"errors\":[\"invalid request shape\"]}}");
  expect_read(c, "b400", KMS_INVALID_ARGUMENT, "HTTP 400: invalid request shape", 400);
  it_done(&h, c);

  /* oversized response */
  char big[5000];
  memset(big, 'z', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  char json[5100];
  snprintf(json, sizeof json, "{\"key\":\"%s\"}", big);
  assert_int_equal(vf_put(srv, "secret/data/huge", json), 200);
  kms_setting lim[] = {{"max_response_bytes", "2048"}};
  c = client(&h, env0, lim, 1);
  expect_read(c, "huge", KMS_INTERNAL, "max_response_bytes", -1);
  it_done(&h, c);

  /* 403: a token whose policy does not cover the path; an invalid token */
  char *tok = token_with_policy("path \"secret/data/allowed\" { capabilities = [\"read\"] }", "narrow");
  c = client(&h, env0, NULL, 0);
  it_set(&h, "HCP_VAULT_TOKEN", tok);
  kms_client_destroy(c);
  assert_int_equal(it_client(&h, NULL, 0, &c, &err), KMS_OK);
  expect_read(c, "forbidden", KMS_PERMISSION_DENIED, "HTTP 403: 1 error occurred:", 403);
  expect_read(c, "forbidden", KMS_PERMISSION_DENIED, "permission denied", 403);
  it_done(&h, c);
  free(tok);
  c = client(&h, env0, NULL, 0);
  it_set(&h, "HCP_VAULT_TOKEN", "hvs.not-a-real-token");
  kms_client_destroy(c);
  assert_int_equal(it_client(&h, NULL, 0, &c, &err), KMS_OK);
  expect_read(c, "x", KMS_UNAUTHENTICATED, "invalid token", 403);
  it_done(&h, c);
  vf_clear_faults(srv);
}

static void test_unreachable_and_timeout(void **state) {
  /* connection refused: a port nobody listens on (the server's, after it stopped) */
  vf_server *gone = vf_start(NULL);
  assert_non_null(gone);
  char addr[128];
  snprintf(addr, sizeof addr, "%s", vf_url(gone));
  vf_stop(gone);
  it_host h;
  it_host_init(&h);
  it_set(&h, "HCP_VAULT_ADDR", addr);
  it_set(&h, "HCP_VAULT_TOKEN", "root");
  it_set(&h, "VAULT_MAX_RETRIES", "1");
  it_set(&h, "VAULT_CLIENT_TIMEOUT", "5");
  kms_client *c;
  kms_error err;
  assert_int_equal(it_client(&h, NULL, 0, &c, &err), KMS_OK);
  long long t0 = it_now_ms();
  expect_read(c, "x", KMS_UNAVAILABLE, "cannot reach", 0);
  assert_true(it_now_ms() - t0 < 5000 + 3000);
  kms_secret *s;
  kms_client_read(c, "x", &s, &err);
  assert_non_null(strstr(err.message, "2 attempts"));
  it_done(&h, c);

  /* a server that never answers: bounded by VAULT_CLIENT_TIMEOUT */
  const char *env[] = {"VAULT_CLIENT_TIMEOUT", "1", "HCP_VAULT_REFRESH_INTERVAL", "0", NULL};
  c = client(&h, env, NULL, 0);
  vf_fault(srv, "{\"method\":\"GET\",\"path\":\"^/v1/secret/data/slow$\",\"delay_ms\":4000,\"status\":200,\"times\":-1}");
  t0 = it_now_ms();
  expect_read(c, "slow", KMS_UNAVAILABLE, "VAULT_CLIENT_TIMEOUT", 0);
  long long took = it_now_ms() - t0;
  assert_true(took < 1000 + 2500); /* hang detection, not a speed claim */
  it_done(&h, c);
  vf_clear_faults(srv);
}

typedef struct create_case {
  const char *env[6];
  const char *skey, *sval;
  kms_status st;
  const char *needle;
} create_case;

static void test_create_errors(void **state) {
  const char *cert = vf_cert("client.pem"), *key = vf_cert("client.key");
  assert_non_null(cert);
  const create_case t[] = {
    {{"HCP_VAULT_ADDR", "ftp://vault", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "HCP_VAULT_ADDR"},
    {{"HCP_VAULT_ADDR", "not a url", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "HCP_VAULT_ADDR"},
    {{"HCP_VAULT_REFRESH_INTERVAL", "soon", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "HCP_VAULT_REFRESH_INTERVAL"},
    {{"HCP_VAULT_CLIENT_CERT", cert, NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "HCP_VAULT_CLIENT_KEY"},
    {{"HCP_VAULT_CLIENT_CERT", cert, "HCP_VAULT_CLIENT_KEY", vf_cert("wrong-key.pem"), NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "does not match"},
    {{"HCP_VAULT_CLIENT_CERT", vf_cert("expired-client.pem"), "HCP_VAULT_CLIENT_KEY", vf_cert("expired-client.key"), NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "expired"},
    {{"HCP_VAULT_CLIENT_CERT", "/nonexistent.pem", "HCP_VAULT_CLIENT_KEY", key, NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "/nonexistent.pem"},
    {{"HCP_VAULT_TOKEN", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "no Vault credentials"},
    {{NULL}, "access_mode", "admin", KMS_INVALID_ARGUMENT, "access_mode"},
    {{"VAULT_SKIP_VERIFY", "sometimes", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "VAULT_SKIP_VERIFY"},
    {{"VAULT_MAX_RETRIES", "many", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "VAULT_MAX_RETRIES"},
    /* certificate login needs TLS (AppRole/cert login itself: test_auth.c) */
    {{"HCP_VAULT_TOKEN", NULL, "HCP_VAULT_CLIENT_CERT", cert, "HCP_VAULT_CLIENT_KEY", key}, NULL, NULL, KMS_INVALID_ARGUMENT, "certificate login"},
  };
  for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
    it_host h;
    it_host_init(&h);
    it_target(&h, srv, 0, 0);
    for (size_t k = 0; k < 6 && t[i].env[k]; k += 2) it_set(&h, t[i].env[k], t[i].env[k + 1]);
    kms_setting s = {t[i].skey, t[i].sval};
    kms_client *c = NULL;
    kms_error err;
    kms_status st = it_client(&h, &s, t[i].skey ? 1 : 0, &c, &err);
    if (st != t[i].st || !strstr(err.message, t[i].needle))
      fail_msg("case %zu: %s '%s'; want %s '%s'", i, kms_status_str(st), err.message,
               kms_status_str(t[i].st), t[i].needle);
    assert_null(c);
    it_host_free(&h);
  }
  vf_log *log = vf_requests(srv);
  assert_int_equal(log->n, 0); /* create never talks to Vault */
  vf_log_free(log);
}

static void test_host_level_settings_accepted(void **state) {
  kms_setting s[] = {{"store_virtual_keys", "true"}, {"prefix_for_stored_virtual_keys", "litellm/"},
                     {"hosted_keys", "[\"OPENAI_API_KEY\"]"}, {"access_mode", "read_and_write"},
                     {"frobnicate", "1"}};
  it_host h;
  kms_client *c = client(&h, NULL, s, 5);
  assert_int_equal(it_log_count(&h, "frobnicate"), 1);
  assert_int_equal(it_log_count(&h, "store_virtual_keys"), 0);
  assert_int_equal(it_log_count(&h, "hosted_keys"), 0);
  const kms_plugin *p = kms_client_plugin(c);
  assert_string_equal(p->name, "hashicorp_vault");
  assert_true(p->capabilities & KMS_CAP_THREAD_SAFE);
  it_done(&h, c);
}

/* Issue 15: a 1 MiB response header is the server's fault, reported as
 * such (INTERNAL with the reason), not as the plugin running out of memory. */
static void test_huge_response_header(void **state) {
  size_t big = 1024 * 1024;
  char *f = malloc(big + 256);
  assert_non_null(f);
  int n = snprintf(f, 256, "{\"method\":\"GET\",\"path\":\"^/v1/secret/data/bighdr$\","
                   "\"status\":200,\"body\":{},\"headers\":{\"X-Big\":\"");
  memset(f + n, 'a', big);
  snprintf(f + n + big, 64, "\"},\"times\":-1}");
  assert_int_equal(vf_fault(srv, f), 0);
  free(f);
  it_host h;
  kms_client *c = client(&h, (const char *[]){"VAULT_MAX_RETRIES", "0", NULL}, NULL, 0);
  kms_error err;
  kms_status st = it_read(c, "bighdr", NULL, 0, NULL, &err);
  if ((st != KMS_INTERNAL && st != KMS_UNAVAILABLE) || !strstr(err.message, "header"))
    fail_msg("want INTERNAL/UNAVAILABLE naming the header, got %s: %s", kms_status_str(st),
             err.message);
  it_done(&h, c);
}

/* Issue 15: a value as large as the host lets one write (1 MiB) reads back
 * with the default settings, even when every byte comes back JSON-escaped
 * six-fold (the server escapes control characters as \u00XX). */
static void test_1mib_value_roundtrip(void **state) {
  size_t len = 1024 * 1024;
  char *v = malloc(len + 1);
  assert_non_null(v);
  static const char pattern[] = "\x01<\x1f>&\"\\";
  for (size_t i = 0; i < len; i++) v[i] = pattern[i % (sizeof pattern - 1)];
  v[len] = '\0';
  it_host h;
  kms_client *c = client(&h, (const char *[]){"HCP_VAULT_REFRESH_INTERVAL", "0", NULL}, IT_RW,
                         IT_RW_N);
  kms_error err;
  if (kms_client_write(c, "big", v, len, NULL, &err) != KMS_OK) fail_msg("write: %s", err.message);
  kms_secret *s = NULL;
  if (kms_client_read(c, "big", &s, &err) != KMS_OK) fail_msg("read: %s", err.message);
  assert_int_equal(s->length, len);
  assert_memory_equal(s->value, v, len);
  kms_client_free_secret(c, s);
  it_done(&h, c);
  free(v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_read_write_delete_requests, reset),
    cmocka_unit_test_setup(test_layout_table, reset),
    cmocka_unit_test_setup(test_fallback_variables, reset),
    cmocka_unit_test_setup(test_cas_and_description, reset),
    cmocka_unit_test_setup(test_delete_modes, reset),
    cmocka_unit_test_setup(test_name_validation_table, reset),
    cmocka_unit_test_setup(test_access_mode_table, reset),
    cmocka_unit_test_setup(test_error_statuses, reset),
    cmocka_unit_test_setup(test_unreachable_and_timeout, reset),
    cmocka_unit_test_setup(test_create_errors, reset),
    cmocka_unit_test_setup(test_host_level_settings_accepted, reset),
    cmocka_unit_test_setup(test_huge_response_header, reset),
    cmocka_unit_test_setup(test_1mib_value_roundtrip, reset),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
