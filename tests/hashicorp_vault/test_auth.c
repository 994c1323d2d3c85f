/*
 * test_auth.c -- the real plugin logging in to tests/vault_server over
 * HTTPS + mTLS, with the server's cert and AppRole auth methods configured
 * through its Vault API (root token):
 *   certificate login (with and without HCP_VAULT_CERT_ROLE) and AppRole
 *   login (default and custom mount), login namespace header, priority
 *   AppRole > certificate > token; token expiry mid-run with cert and with
 *   AppRole (one re-login, caller sees success); re-login that still gets
 *   403 (PERMISSION_DENIED after one retry, no loop) and a policy denial
 *   with a live token (no login at all); renew-self at 2/3 of the lease;
 *   fresh login at the max TTL; refresh() renewing; 8 threads on a cold
 *   start (one login); create errors naming the variable and the file;
 *   bad AppRole secret (UNAUTHENTICATED with Vault's text, secret id
 *   nowhere, no login per request).
 * Each test gets its own server (fresh tokens, roles and request log).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "auth.h"
#include "config.h"
#include "http.h"
#include "itest.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CERT_LOGIN "/v1/auth/cert/login"
#define APPROLE_LOGIN "/v1/auth/approle/login"
#define RENEW "/v1/auth/token/renew-self"
#define LOOKUP "/v1/auth/token/lookup-self"

static vf_server *srv;
static char root_hash[80];
static const char *g_ca, *g_cert, *g_key; /* vf_cert(): valid until exit */

static int start(void **state) {
  static const char *const ns[] = {"team1", NULL};
  srv = vf_start(&(vf_options){.mtls = 1, .namespaces = ns});
  if (!srv) return -1;
  if (!g_ca) {
    g_ca = vf_cert("ca.pem");
    g_cert = vf_cert("client.pem");
    g_key = vf_cert("client.key");
  }
  vf_token_hash(vf_root_token(srv), root_hash, sizeof root_hash);
  return 0;
}

static int stop(void **state) {
  vf_stop(srv);
  srv = NULL;
  return 0;
}

/* ---- configuring the server through its Vault API ----------------------- */

static char *api(const char *method, const char *path, const char *json) {
  char *body = NULL;
  long st = vf_http(srv, method, path, vf_root_token(srv), json, &body);
  if (st < 200 || st > 299) fail_msg("%s %s: HTTP %ld %s", method, path, st, body ? body : "");
  return body;
}

static void api0(const char *method, const char *path, const char *json) { free(api(method, path, json)); }

static void policy(const char *ns, const char *name, const char *hcl) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "policy", hcl);
  char *b = cJSON_PrintUnformatted(j), path[200];
  snprintf(path, sizeof path, "/v1/%s%ssys/policies/acl/%s", ns ? ns : "", ns ? "/" : "", name);
  api0("PUT", path, b);
  free(b);
  cJSON_Delete(j);
}

#define KV_RW "path \"secret/data/*\" { capabilities = [\"create\", \"read\", \"update\"] }"

static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  static char buf[16384];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return strdup(buf);
}

/* cert auth enabled with role `role` trusting the test CA. */
static void cert_role(const char *role, const char *pol, int ttl, int max_ttl) {
  char *b = NULL;
  if (vf_http(srv, "GET", "/v1/sys/auth", vf_root_token(srv), NULL, &b) != 200 || !strstr(b, "\"cert/\""))
    api0("POST", "/v1/sys/auth/cert", "{\"type\":\"cert\"}");
  free(b);
  char *pem = slurp(g_ca);
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "certificate", pem);
  cJSON_AddStringToObject(j, "token_policies", pol);
  cJSON_AddNumberToObject(j, "token_ttl", ttl);
  cJSON_AddNumberToObject(j, "token_max_ttl", max_ttl);
  char *body = cJSON_PrintUnformatted(j), path[200];
  snprintf(path, sizeof path, "/v1/auth/cert/certs/%s", role);
  api0("POST", path, body);
  free(body);
  free(pem);
  cJSON_Delete(j);
}

typedef struct creds {
  char role_id[128], secret_id[128];
} creds;

static const char *jstr(const char *json, const char *k1, const char *k2, char *out, size_t n) {
  cJSON *j = cJSON_Parse(json);
  cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(j, k1), k2);
  assert_true(cJSON_IsString(v));
  snprintf(out, n, "%s", v->valuestring);
  cJSON_Delete(j);
  return out;
}

/* AppRole enabled at `mount` (in namespace ns, or root), role `role`. */
static creds approle(const char *ns, const char *mount, const char *role, const char *pol, int ttl,
                     int max_ttl) {
  char p[300], body[300], *b;
  const char *pre = ns ? ns : "", *sl = ns ? "/" : "";
  snprintf(p, sizeof p, "/v1/%s%ssys/auth/%s", pre, sl, mount);
  b = NULL;
  char lp[300];
  snprintf(lp, sizeof lp, "/v1/%s%ssys/auth", pre, sl);
  char want[80];
  snprintf(want, sizeof want, "\"%s/\"", mount);
  if (vf_http(srv, "GET", lp, vf_root_token(srv), NULL, &b) != 200 || !strstr(b, want))
    api0("POST", p, "{\"type\":\"approle\"}");
  free(b);
  snprintf(p, sizeof p, "/v1/%s%sauth/%s/role/%s", pre, sl, mount, role);
  snprintf(body, sizeof body, "{\"token_policies\":\"%s\",\"token_ttl\":%d,\"token_max_ttl\":%d}", pol,
           ttl, max_ttl);
  api0("POST", p, body);
  creds c;
  snprintf(p, sizeof p, "/v1/%s%sauth/%s/role/%s/role-id", pre, sl, mount, role);
  b = api("GET", p, NULL);
  jstr(b, "data", "role_id", c.role_id, sizeof c.role_id);
  free(b);
  snprintf(p, sizeof p, "/v1/%s%sauth/%s/role/%s/secret-id", pre, sl, mount, role);
  b = api("POST", p, "{}");
  jstr(b, "data", "secret_id", c.secret_id, sizeof c.secret_id);
  free(b);
  return c;
}

static void expire_all(void) {
  assert_int_equal(vf_http(srv, "POST", "/__test__/tokens/expire", NULL, "{\"all_non_root\":true}", NULL),
                   200);
}

/* ---- plugin side ---------------------------------------------------------- */

/* A host pointed at srv over TLS, no cache (every read reaches Vault), no
 * static token; env adds/overrides pairs (value NULL unsets). */
static kms_status make(it_host *h, const char *const *env, kms_client **c, kms_error *err) {
  it_host_init(h);
  it_set(h, "HCP_VAULT_ADDR", vf_url(srv));
  it_set(h, "VAULT_CACERT", g_ca);
  it_set(h, "HCP_VAULT_REFRESH_INTERVAL", "0");
  for (size_t i = 0; env && env[i]; i += 2) it_set(h, env[i], env[i + 1]);
  *c = NULL;
  return it_client(h, IT_RW, IT_RW_N, c, err);
}

static kms_client *client(it_host *h, const char *const *env) {
  kms_client *c;
  kms_error err;
  if (make(h, env, &c, &err) != KMS_OK) fail_msg("create: %s", err.message);
  return c;
}

#define CERT_ENV "HCP_VAULT_CLIENT_CERT", g_cert, "HCP_VAULT_CLIENT_KEY", g_key

static void done(it_host *h, kms_client *c) {
  kms_client_destroy(c);
  /* tokens are never logged (the server mints "hvs." tokens), destroy included */
  char *logs = it_logs(h);
  if (strstr(logs, "hvs.")) fail_msg("a token reached the host log:\n%s", logs);
  free(logs);
  it_host_free(h);
}

static kms_status rd(kms_client *c, const char *name, char *val, size_t vs, kms_error *err) {
  return it_read(c, name, val, vs, NULL, err);
}

static void read_ok(kms_client *c, const char *name, const char *want) {
  kms_error err;
  char v[64];
  kms_status st = rd(c, name, v, sizeof v, &err);
  if (st != KMS_OK) fail_msg("read %s: %s %s", name, kms_status_str(st), err.message);
  assert_string_equal(v, want);
}

static const char *tok(const vf_request *r) {
  const char *t = vf_header(r, "X-Vault-Token");
  return t ? t : "";
}

/* The request log as one line per request ("METHOD path"), for messages. */
static char *log_text(const vf_log *log) {
  size_t cap = 64 + log->n * 96;
  char *s = calloc(1, cap);
  for (size_t i = 0; i < log->n; i++) {
    size_t l = strlen(s);
    snprintf(s + l, cap - l, "  %s %s %.20s\n", log->r[i].method, log->r[i].path, tok(&log->r[i]));
  }
  return s;
}

/* Assert the log, as "METHOD path" strings in order (NULL-terminated). */
static void expect_log(const vf_log *log, const char *const *want) {
  size_t n = 0;
  while (want[n]) n++;
  int bad = n != log->n;
  for (size_t i = 0; !bad && i < n; i++) {
    char got[300];
    snprintf(got, sizeof got, "%s %s", log->r[i].method, log->r[i].path);
    bad = strcmp(got, want[i]) != 0;
  }
  if (bad) {
    char *t = log_text(log);
    fail_msg("unexpected request log:\n%s", t);
  }
}

/* ---- login ----------------------------------------------------------------- */

static void test_cert_login(void **state) {
  policy(NULL, "kv", KV_RW);
  cert_role("web", "kv", 3600, 7200);
  vf_put(srv, "secret/data/a", "{\"key\":\"va\"}");
  vf_clear_requests(srv);
  it_host h;
  kms_client *c = client(&h, (const char *[]){CERT_ENV, "HCP_VAULT_CERT_ROLE", "web", NULL});
  for (int i = 0; i < 3; i++) read_ok(c, "a", "va");
  vf_log *log = vf_requests(srv);
  expect_log(log, (const char *[]){"POST " CERT_LOGIN, "GET /v1/secret/data/a", "GET /v1/secret/data/a",
                                   "GET /v1/secret/data/a", NULL});
  /* the login: client certificate on the connection, role in the body, no token */
  assert_non_null(log->r[0].client_cert_subject);
  assert_non_null(strstr(log->r[0].client_cert_subject, "kmsplug-client"));
  assert_null(vf_header(&log->r[0], "X-Vault-Token"));
  assert_null(vf_header(&log->r[0], "X-Vault-Namespace"));
  cJSON *body = cJSON_Parse(log->r[0].body);
  assert_string_equal(cJSON_GetObjectItem(body, "name")->valuestring, "web");
  cJSON_Delete(body);
  /* the reads: the login token (one and the same), never the root token */
  const char *t = tok(&log->r[1]);
  assert_true(strncmp(t, "sha256:", 7) == 0);
  assert_string_not_equal(t, root_hash);
  for (size_t i = 2; i < log->n; i++) assert_string_equal(tok(&log->r[i]), t);
  vf_log_free(log);
  assert_int_equal(it_log_count(&h, "certificate login succeeded"), 1);
  done(&h, c);
}

static void test_cert_login_without_role(void **state) {
  policy(NULL, "kv", KV_RW);
  cert_role("any", "kv", 3600, 7200);
  vf_put(srv, "secret/data/a", "{\"key\":\"va\"}");
  vf_clear_requests(srv);
  it_host h;
  kms_client *c = client(&h, (const char *[]){CERT_ENV, NULL});
  read_ok(c, "a", "va");
  vf_log *log = vf_requests(srv);
  expect_log(log, (const char *[]){"POST " CERT_LOGIN, "GET /v1/secret/data/a", NULL});
  assert_string_equal(log->r[0].body, "{}"); /* Vault tries every role */
  vf_log_free(log);
  done(&h, c);
}

static void test_approle_login(void **state) {
  policy(NULL, "kv", KV_RW);
  creds cr = approle(NULL, "approle", "app", "kv", 3600, 7200);
  vf_put(srv, "secret/data/b", "{\"key\":\"vb\"}");
  vf_clear_requests(srv);
  it_host h;
  kms_client *c = client(&h, (const char *[]){"HCP_VAULT_APPROLE_ROLE_ID", cr.role_id,
                                              "HCP_VAULT_APPROLE_SECRET_ID", cr.secret_id, NULL});
  read_ok(c, "b", "vb");
  kms_error err;
  assert_int_equal(kms_client_write(c, "b2", "w", 1, NULL, &err), KMS_OK);
  read_ok(c, "b", "vb");
  vf_log *log = vf_requests(srv);
  expect_log(log, (const char *[]){"POST " APPROLE_LOGIN, "GET /v1/secret/data/b", "POST /v1/secret/data/b2",
                                   "GET /v1/secret/data/b", NULL});
  assert_null(vf_header(&log->r[0], "X-Vault-Token"));
  cJSON *body = cJSON_Parse(log->r[0].body);
  assert_string_equal(cJSON_GetObjectItem(body, "role_id")->valuestring, cr.role_id);
  assert_string_equal(cJSON_GetObjectItem(body, "secret_id")->valuestring, cr.secret_id);
  cJSON_Delete(body);
  for (size_t i = 2; i < log->n; i++) assert_string_equal(tok(&log->r[i]), tok(&log->r[1]));
  assert_string_not_equal(tok(&log->r[1]), root_hash);
  vf_log_free(log);
  char *logs = it_logs(&h);
  assert_null(strstr(logs, cr.secret_id));
  free(logs);
  done(&h, c);
}

static void test_approle_custom_mount_and_namespace(void **state) {
  /* AppRole mounted at "svc" inside namespace team1: the login goes to
   * auth/svc/login with X-Vault-Namespace: team1 (HCP_VAULT_LOGIN_NAMESPACE),
   * the KV path carries the secret namespace (HCP_VAULT_NAMESPACE). */
  policy("team1", "kv", KV_RW);
  creds cr = approle("team1", "svc", "app", "kv", 3600, 7200);
  vf_put(srv, "team1/secret/data/n", "{\"key\":\"vn\"}");
  vf_clear_requests(srv);
  it_host h;
  kms_client *c = client(&h, (const char *[]){"HCP_VAULT_APPROLE_ROLE_ID", cr.role_id,
                                              "HCP_VAULT_APPROLE_SECRET_ID", cr.secret_id,
                                              "HCP_VAULT_APPROLE_MOUNT_PATH", "svc",
                                              "HCP_VAULT_LOGIN_NAMESPACE", "team1",
                                              "HCP_VAULT_SECRET_NAMESPACE", "team1", NULL});
  read_ok(c, "n", "vn");
  vf_log *log = vf_requests(srv);
  expect_log(log, (const char *[]){"POST /v1/auth/svc/login", "GET /v1/team1/secret/data/n", NULL});
  assert_string_equal(vf_header(&log->r[0], "X-Vault-Namespace"), "team1");
  assert_null(vf_header(&log->r[1], "X-Vault-Namespace"));
  vf_log_free(log);
  done(&h, c);
  /* HCP_VAULT_NAMESPACE alone is the login namespace too */
  vf_clear_requests(srv);
  c = client(&h, (const char *[]){"HCP_VAULT_APPROLE_ROLE_ID", cr.role_id, "HCP_VAULT_APPROLE_SECRET_ID",
                                  cr.secret_id, "HCP_VAULT_APPROLE_MOUNT_PATH", "svc",
                                  "HCP_VAULT_NAMESPACE", "team1", NULL});
  read_ok(c, "n", "vn");
  log = vf_requests(srv);
  expect_log(log, (const char *[]){"POST /v1/auth/svc/login", "GET /v1/team1/secret/data/n", NULL});
  assert_string_equal(vf_header(&log->r[0], "X-Vault-Namespace"), "team1");
  vf_log_free(log);
  done(&h, c);
}

static void test_priority(void **state) {
  policy(NULL, "kv", KV_RW);
  cert_role("web", "kv", 3600, 7200);
  creds cr = approle(NULL, "approle", "app", "kv", 3600, 7200);
  vf_put(srv, "secret/data/p", "{\"key\":\"vp\"}");
  struct {
    const char *env[16];
    const char *login; /* NULL: the static token, no login */
  } t[] = {
    /* everything set: AppRole wins */
    {{"HCP_VAULT_TOKEN", "root", "HCP_VAULT_APPROLE_ROLE_ID", cr.role_id, "HCP_VAULT_APPROLE_SECRET_ID",
      cr.secret_id, CERT_ENV, "HCP_VAULT_CERT_ROLE", "web", NULL},
     APPROLE_LOGIN},
    /* certificate (with its role) over the token */
    {{"HCP_VAULT_TOKEN", "root", CERT_ENV, "HCP_VAULT_CERT_ROLE", "web", NULL}, CERT_LOGIN},
    /* certificate alone */
    {{CERT_ENV, NULL}, CERT_LOGIN},
    /* token alone */
    {{"HCP_VAULT_TOKEN", "root", NULL}, NULL},
    /* token + certificate without a role: certificate login, as LiteLLM
     * does (auth_method: token keeps the token; test_auth_method_setting) */
    {{"HCP_VAULT_TOKEN", "root", CERT_ENV, NULL}, CERT_LOGIN},
  };
  for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
    vf_clear_requests(srv);
    it_host h;
    kms_client *c = client(&h, t[i].env);
    read_ok(c, "p", "vp");
    vf_log *log = vf_requests(srv);
    if (t[i].login) {
      char post[100];
      snprintf(post, sizeof post, "POST %s", t[i].login);
      expect_log(log, (const char *[]){post, "GET /v1/secret/data/p", NULL});
      assert_string_not_equal(tok(&log->r[1]), root_hash);
    } else {
      expect_log(log, (const char *[]){"GET /v1/secret/data/p", NULL});
      assert_string_equal(tok(&log->r[0]), root_hash);
    }
    vf_log_free(log);
    done(&h, c);
  }
}

/* ---- token lifecycle ----------------------------------------------------- */

/* The token expires between two reads. Vault >= 1.16 says "invalid
 * token" in its 403: the token is dead, one re-login at once. `bare`: the
 * 403 says only "permission denied" (older Vaults, OpenBao), so lookup-self
 * is asked first (its 403: dead). */
static void expiry_mid_run(const char *const *env, const char *login, int bare) {
  vf_put(srv, "secret/data/e", "{\"key\":\"ve\"}");
  vf_clear_requests(srv);
  it_host h;
  kms_client *c = client(&h, env);
  read_ok(c, "e", "ve");
  expire_all();
  if (bare)
    assert_int_equal(vf_fault(srv, "{\"method\":\"GET\",\"path\":\"^/v1/secret/data/e$\","
                                   "\"status\":403,\"body\":{\"errors\":[\"permission denied\"]},"
                                   "\"times\":1}"),
                     0);
  read_ok(c, "e", "ve"); /* the caller sees success */
  read_ok(c, "e", "ve");
  vf_log *log = vf_requests(srv);
  char post[100];
  snprintf(post, sizeof post, "POST %s", login);
  const char *lookup = bare ? "GET " LOOKUP : NULL; /* 403: the token is dead */
  expect_log(log, (const char *[]){post, "GET /v1/secret/data/e",
                                   "GET /v1/secret/data/e", /* 403: expired */
                                   lookup ? lookup : post,  /* exactly one re-login */
                                   lookup ? post : "GET /v1/secret/data/e",
                                   "GET /v1/secret/data/e", lookup ? "GET /v1/secret/data/e" : NULL,
                                   NULL});
  size_t first_new = bare ? 5 : 4;
  assert_string_equal(tok(&log->r[2]), tok(&log->r[1]));
  assert_string_not_equal(tok(&log->r[first_new]), tok(&log->r[1]));
  assert_string_equal(tok(&log->r[first_new + 1]), tok(&log->r[first_new]));
  vf_log_free(log);
  done(&h, c);
}

/* The auth_method setting overrides the automatic choice, and insists on
 * the credentials of the method it names. */
static void test_auth_method_setting(void **state) {
  policy(NULL, "kv", KV_RW);
  cert_role("web", "kv", 3600, 7200);
  vf_put(srv, "secret/data/m", "{\"key\":\"vm\"}");
  it_host h;
  it_host_init(&h);
  it_set(&h, "HCP_VAULT_ADDR", vf_url(srv));
  it_set(&h, "VAULT_CACERT", g_ca);
  it_set(&h, "HCP_VAULT_REFRESH_INTERVAL", "0");
  it_set(&h, "HCP_VAULT_TOKEN", "root");
  it_set(&h, "HCP_VAULT_CLIENT_CERT", g_cert);
  it_set(&h, "HCP_VAULT_CLIENT_KEY", g_key);
  /* token: the certificate is only the mTLS credential, no login */
  kms_setting tok_s[] = {{"access_mode", "read_and_write"}, {"auth_method", "token"}};
  kms_client *c = NULL;
  kms_error err;
  vf_clear_requests(srv);
  if (it_client(&h, tok_s, 2, &c, &err) != KMS_OK) fail_msg("create: %s", err.message);
  read_ok(c, "m", "vm");
  vf_log *log = vf_requests(srv);
  expect_log(log, (const char *[]){"GET /v1/secret/data/m", NULL});
  assert_string_equal(tok(&log->r[0]), root_hash);
  vf_log_free(log);
  kms_client_destroy(c);
  /* approle without AppRole credentials, and an unknown method: refused */
  kms_setting bad[][2] = {{{"access_mode", "read_only"}, {"auth_method", "approle"}},
                          {{"access_mode", "read_only"}, {"auth_method", "kerberos"}}};
  const char *want[] = {"HCP_VAULT_APPROLE_ROLE_ID", "auto, token, cert or approle"};
  for (int i = 0; i < 2; i++) {
    c = NULL;
    assert_int_equal(it_client(&h, bad[i], 2, &c, &err), KMS_INVALID_ARGUMENT);
    assert_null(c);
    if (!strstr(err.message, want[i])) fail_msg("message lacks '%s': %s", want[i], err.message);
  }
  it_host_free(&h);
}

static void test_expiry_cert(void **state) {
  policy(NULL, "kv", KV_RW);
  cert_role("web", "kv", 3600, 7200);
  expiry_mid_run((const char *[]){CERT_ENV, "HCP_VAULT_CERT_ROLE", "web", NULL}, CERT_LOGIN, 0);
}

static void test_expiry_approle(void **state) {
  policy(NULL, "kv", KV_RW);
  creds cr = approle(NULL, "approle", "app", "kv", 3600, 7200);
  expiry_mid_run((const char *[]){"HCP_VAULT_APPROLE_ROLE_ID", cr.role_id, "HCP_VAULT_APPROLE_SECRET_ID",
                                  cr.secret_id, NULL},
                 APPROLE_LOGIN, 1);
}

static void test_relogin_still_denied_no_loop(void **state) {
  policy(NULL, "kv", KV_RW);
  policy(NULL, "other", "path \"secret/data/other/*\" { capabilities = [\"read\"] }");
  creds cr = approle(NULL, "approle", "app", "kv", 3600, 7200);
  vf_put(srv, "secret/data/d", "{\"key\":\"vd\"}");
  it_host h;
  kms_client *c = client(&h, (const char *[]){"HCP_VAULT_APPROLE_ROLE_ID", cr.role_id,
                                              "HCP_VAULT_APPROLE_SECRET_ID", cr.secret_id, NULL});
  read_ok(c, "d", "vd");
  /* the role loses access and the token expires: the re-login succeeds but
   * the new token is denied too */
  api0("POST", "/v1/auth/approle/role/app", "{\"token_policies\":\"other\"}");
  expire_all();
  vf_clear_requests(srv);
  kms_error err;
  assert_int_equal(rd(c, "d", NULL, 0, &err), KMS_PERMISSION_DENIED);
  assert_int_equal(err.backend_status, 403);
  vf_log *log = vf_requests(srv);
  expect_log(log, (const char *[]){"GET /v1/secret/data/d", /* 403 "invalid token" */
                                   "POST " APPROLE_LOGIN, "GET /v1/secret/data/d", NULL});
  vf_log_free(log);
  /* a policy denial with a live token costs a lookup, never a login */
  vf_clear_requests(srv);
  for (int i = 0; i < 3; i++) assert_int_equal(rd(c, "d", NULL, 0, &err), KMS_PERMISSION_DENIED);
  log = vf_requests(srv);
  expect_log(log, (const char *[]){"GET /v1/secret/data/d", "GET " LOOKUP, "GET /v1/secret/data/d",
                                   "GET " LOOKUP, "GET /v1/secret/data/d", "GET " LOOKUP, NULL});
  vf_log_free(log);
  done(&h, c);
}

/* ---- the auth provider on an injected clock ---------------------------------
 * Renewal timing is the plugin's own (2/3 of the lease, the 1 s pause after
 * a failure): these tests drive vault_auth (the same objects the .so is
 * built from, kms_vault_core) on a clock they advance, against the real
 * server, instead of sleeping through leases. The server's own lease clock
 * barely moves, so its renewals are never capped. */

typedef struct clocked {
  it_host h;
  kpc_logger lg;
  vault_config cfg;
  vault_http *http;
  vault_auth *auth;
  int64_t now;
  kpc_clock clk;
} clocked;

static int64_t fake_now(void *ctx) { return *(const int64_t *)ctx; }

static void clocked_start(clocked *k, const char *const *env) {
  memset(k, 0, sizeof *k);
  it_host_init(&k->h);
  it_set(&k->h, "HCP_VAULT_ADDR", vf_url(srv));
  it_set(&k->h, "VAULT_CACERT", g_ca);
  for (size_t i = 0; env && env[i]; i += 2) it_set(&k->h, env[i], env[i + 1]);
  k->lg.host = &k->h.host;
  k->lg.prefix = VAULT_MSG_PREFIX;
  k->now = 1000000;
  k->clk = (kpc_clock){.now_ms = fake_now, .ctx = &k->now};
  kms_error err;
  if (vault_config_load(&k->cfg, &k->h.host, NULL, 0, &k->lg, &err) != KMS_OK ||
      vault_http_new(&k->cfg, &k->lg, &k->clk, &k->http, &err) != KMS_OK ||
      vault_auth_new(&k->cfg, k->http, &k->lg, &k->clk, &k->auth, &err) != KMS_OK)
    fail_msg("clocked auth: %s", err.message);
}

/* The token a request would use now (copied into out). */
static void clocked_token(clocked *k, char *out, size_t n) {
  char *t = NULL;
  uint64_t gen;
  kms_error err;
  if (vault_auth_token(k->auth, vault_http_deadline(k->http), &t, &gen, &err) != KMS_OK)
    fail_msg("token: %s", err.message);
  snprintf(out, n, "%s", t);
  vault_auth_token_free(t);
}

static void clocked_stop(clocked *k) {
  vault_auth_free(k->auth);
  vault_http_free(k->http);
  vault_config_free(&k->cfg);
  char *logs = it_logs(&k->h);
  if (strstr(logs, "hvs.")) fail_msg("a token reached the host log:\n%s", logs);
  free(logs);
  it_host_free(&k->h);
}

static void test_renewal(void **state) {
  /* lease 9 s: renew-self once 6 s (2/3) have passed, no new login; the
   * renewed token stays in use */
  policy(NULL, "kv", KV_RW);
  creds cr = approle(NULL, "approle", "app", "kv", 9, 60);
  vf_clear_requests(srv);
  clocked k;
  clocked_start(&k, (const char *[]){"HCP_VAULT_APPROLE_ROLE_ID", cr.role_id,
                                     "HCP_VAULT_APPROLE_SECRET_ID", cr.secret_id, NULL});
  char t1[128], t2[128];
  clocked_token(&k, t1, sizeof t1);
  k.now += 5000; /* well before 2/3: nothing */
  clocked_token(&k, t2, sizeof t2);
  k.now += 1400; /* 6.4 s */
  clocked_token(&k, t2, sizeof t2);
  clocked_token(&k, t2, sizeof t2);
  assert_string_equal(t1, t2);
  vf_log *log = vf_requests(srv);
  expect_log(log, (const char *[]){"POST " APPROLE_LOGIN, "POST " RENEW, NULL});
  char h1[80];
  assert_string_equal(tok(&log->r[1]), vf_token_hash(t1, h1, sizeof h1)); /* renewed itself */
  vf_log_free(log);
  clocked_stop(&k);
}

static void test_renewal_while_vault_down(void **state) {
  /* lease 15 s: the renewal at 10 s meets a 503, and so does the next one a
   * second later; the token stays in use (no login), the outage is warned
   * about once, and once Vault is back the next renewal succeeds */
  policy(NULL, "kv", KV_RW);
  creds cr = approle(NULL, "approle", "app", "kv", 15, 60);
  vf_clear_requests(srv);
  clocked k;
  clocked_start(&k, (const char *[]){"HCP_VAULT_APPROLE_ROLE_ID", cr.role_id,
                                     "HCP_VAULT_APPROLE_SECRET_ID", cr.secret_id,
                                     "VAULT_MAX_RETRIES", "0", NULL});
  char t0[128], t[128];
  clocked_token(&k, t0, sizeof t0);
  assert_int_equal(vf_fault(srv, "{\"method\":\"POST\",\"path\":\"renew-self$\",\"status\":503,\"times\":-1}"), 0);
  k.now += 10400;
  clocked_token(&k, t, sizeof t);
  assert_string_equal(t, t0);
  k.now += 500; /* inside the pause after a failure: no new attempt */
  clocked_token(&k, t, sizeof t);
  k.now += 600;
  clocked_token(&k, t, sizeof t);
  vf_clear_faults(srv);
  k.now += 1100;
  clocked_token(&k, t, sizeof t);
  assert_string_equal(t, t0);
  vf_log *log = vf_requests(srv);
  expect_log(log, (const char *[]){"POST " APPROLE_LOGIN, "POST " RENEW, "POST " RENEW,
                                   "POST " RENEW, NULL});
  vf_log_free(log);
  /* two failed renewals, one warning; the recovery is said once */
  assert_int_equal(it_log_count(&k.h, "WARN hashicorp_vault: token renewal"), 1);
  assert_int_equal(it_log_count(&k.h, "DEBUG hashicorp_vault: token renewal"), 1);
  assert_int_equal(it_log_count(&k.h, "INFO hashicorp_vault: renewed the Vault token"), 1);
  assert_int_equal(it_log_count(&k.h, "after earlier failures"), 1);
  clocked_stop(&k);
}

static void test_login_failure_pause(void **state) {
  /* a failed login is repeated to callers without a request for 1 s, then
   * tried once more: bad credentials never become a login per request, and
   * a Vault that comes back is used at once after the pause */
  policy(NULL, "kv", KV_RW);
  creds cr = approle(NULL, "approle", "app", "kv", 3600, 7200);
  const char *bad_sid = "0f1e2d3c-bad0-secr-et00-123456789abc";
  for (int unavailable = 0; unavailable < 2; unavailable++) {
    vf_clear_requests(srv);
    if (unavailable)
      assert_int_equal(vf_fault(srv, "{\"method\":\"POST\",\"path\":\"^/v1/auth/approle/login$\","
                                     "\"status\":503,\"times\":-1}"), 0);
    clocked k;
    clocked_start(&k, (const char *[]){"HCP_VAULT_APPROLE_ROLE_ID", cr.role_id,
                                       "HCP_VAULT_APPROLE_SECRET_ID",
                                       unavailable ? cr.secret_id : bad_sid,
                                       "VAULT_MAX_RETRIES", "0", NULL});
    kms_status want = unavailable ? KMS_UNAVAILABLE : KMS_UNAUTHENTICATED;
    char *t = NULL;
    uint64_t gen;
    kms_error err;
    assert_int_equal(vault_auth_token(k.auth, vault_http_deadline(k.http), &t, &gen, &err), want);
    k.now += 900; /* inside the pause: the same answer, no request */
    assert_int_equal(vault_auth_token(k.auth, vault_http_deadline(k.http), &t, &gen, &err), want);
    vf_log *log = vf_requests(srv);
    expect_log(log, (const char *[]){"POST " APPROLE_LOGIN, NULL});
    vf_log_free(log);
    vf_clear_faults(srv);
    k.now += 200; /* past it: one new attempt */
    kms_status st = vault_auth_token(k.auth, vault_http_deadline(k.http), &t, &gen, &err);
    assert_int_equal(st, unavailable ? KMS_OK : KMS_UNAUTHENTICATED);
    vault_auth_token_free(t);
    log = vf_requests(srv);
    expect_log(log, (const char *[]){"POST " APPROLE_LOGIN, "POST " APPROLE_LOGIN, NULL});
    vf_log_free(log);
    clocked_stop(&k);
  }
}

static void test_max_ttl_fresh_login(void **state) {
  /* lease 9 s, max TTL 12 s: the renewal at 6 s is capped (about 5 s left,
   * less than asked for) -> a fresh login right away */
  policy(NULL, "kv", KV_RW);
  cert_role("short", "kv", 9, 12);
  vf_put(srv, "secret/data/m", "{\"key\":\"vm\"}");
  vf_clear_requests(srv);
  it_host h;
  kms_client *c = client(&h, (const char *[]){CERT_ENV, "HCP_VAULT_CERT_ROLE", "short", NULL});
  read_ok(c, "m", "vm");
  it_sleep_ms(6400);
  read_ok(c, "m", "vm");
  read_ok(c, "m", "vm");
  vf_log *log = vf_requests(srv);
  expect_log(log, (const char *[]){"POST " CERT_LOGIN, "GET /v1/secret/data/m", "POST " RENEW,
                                   "POST " CERT_LOGIN, "GET /v1/secret/data/m", "GET /v1/secret/data/m",
                                   NULL});
  assert_string_not_equal(tok(&log->r[4]), tok(&log->r[1]));
  vf_log_free(log);
  assert_int_equal(it_log_count(&h, "max TTL"), 1);
  done(&h, c);
}

static void test_refresh_renews(void **state) {
  policy(NULL, "kv", KV_RW);
  creds cr = approle(NULL, "approle", "app", "kv", 3600, 7200);
  vf_put(srv, "secret/data/f", "{\"key\":\"vf\"}");
  vf_clear_requests(srv);
  it_host h;
  kms_client *c = client(&h, (const char *[]){"HCP_VAULT_APPROLE_ROLE_ID", cr.role_id,
                                              "HCP_VAULT_APPROLE_SECRET_ID", cr.secret_id, NULL});
  kms_error err;
  /* refresh before any request: logs in */
  assert_int_equal(kms_client_refresh(c, &err), KMS_OK);
  read_ok(c, "f", "vf");
  /* refresh with a live token: renew-self */
  assert_int_equal(kms_client_refresh(c, &err), KMS_OK);
  /* refresh with a dead token: renewal refused -> fresh login */
  expire_all();
  assert_int_equal(kms_client_refresh(c, &err), KMS_OK);
  read_ok(c, "f", "vf");
  vf_log *log = vf_requests(srv);
  expect_log(log, (const char *[]){"POST " APPROLE_LOGIN, "GET /v1/secret/data/f", "POST " RENEW,
                                   "POST " RENEW, "POST " APPROLE_LOGIN, "GET /v1/secret/data/f", NULL});
  assert_string_equal(tok(&log->r[2]), tok(&log->r[1]));
  assert_string_not_equal(tok(&log->r[5]), tok(&log->r[1]));
  vf_log_free(log);
  done(&h, c);
}

/* ---- concurrency ----------------------------------------------------------- */

#define N_THREADS 8

typedef struct reader {
  kms_client *c;
  pthread_barrier_t *bar;
  int idx;
  kms_status st;
  char msg[256];
} reader;

static void *reader_main(void *p) {
  reader *r = p;
  char name[16], want[16], got[32];
  snprintf(name, sizeof name, "c%d", r->idx);
  snprintf(want, sizeof want, "v%d", r->idx);
  pthread_barrier_wait(r->bar);
  kms_error err;
  kms_error_clear(&err);
  r->st = rd(r->c, name, got, sizeof got, &err);
  if (r->st == KMS_OK && strcmp(got, want) != 0) r->st = KMS_INTERNAL;
  snprintf(r->msg, sizeof r->msg, "%s", err.message);
  return NULL;
}

static void test_cold_start_threads_one_login(void **state) {
  policy(NULL, "kv", KV_RW);
  cert_role("web", "kv", 3600, 7200);
  for (int i = 0; i < N_THREADS; i++) {
    char p[64], v[64];
    snprintf(p, sizeof p, "secret/data/c%d", i);
    snprintf(v, sizeof v, "{\"key\":\"v%d\"}", i);
    vf_put(srv, p, v);
  }
  vf_clear_requests(srv);
  it_host h;
  kms_client *c = client(&h, (const char *[]){CERT_ENV, "HCP_VAULT_CERT_ROLE", "web", NULL});
  pthread_t t[N_THREADS];
  reader r[N_THREADS];
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, N_THREADS);
  for (int i = 0; i < N_THREADS; i++) {
    r[i] = (reader){.c = c, .bar = &bar, .idx = i};
    assert_int_equal(pthread_create(&t[i], NULL, reader_main, &r[i]), 0);
  }
  for (int i = 0; i < N_THREADS; i++) pthread_join(t[i], NULL);
  pthread_barrier_destroy(&bar);
  for (int i = 0; i < N_THREADS; i++)
    if (r[i].st != KMS_OK) fail_msg("thread %d: %s %s", i, kms_status_str(r[i].st), r[i].msg);
  vf_log *log = vf_requests(srv);
  assert_int_equal(log->n, 1 + N_THREADS);
  assert_int_equal(vf_count(log, "POST", CERT_LOGIN), 1);
  assert_string_equal(log->r[0].path, CERT_LOGIN); /* before any read */
  for (size_t i = 2; i < log->n; i++) assert_string_equal(tok(&log->r[i]), tok(&log->r[1]));
  vf_log_free(log);
  done(&h, c);
}

static void test_expiry_threads_one_relogin(void **state) {
  /* every thread gets a 403 for the expired token at once: one re-login */
  policy(NULL, "kv", KV_RW);
  creds cr = approle(NULL, "approle", "app", "kv", 3600, 7200);
  for (int i = 0; i < N_THREADS; i++) {
    char p[64], v[64];
    snprintf(p, sizeof p, "secret/data/c%d", i);
    snprintf(v, sizeof v, "{\"key\":\"v%d\"}", i);
    vf_put(srv, p, v);
  }
  it_host h;
  kms_client *c = client(&h, (const char *[]){"HCP_VAULT_APPROLE_ROLE_ID", cr.role_id,
                                              "HCP_VAULT_APPROLE_SECRET_ID", cr.secret_id, NULL});
  read_ok(c, "c0", "v0");
  expire_all();
  vf_clear_requests(srv);
  pthread_t t[N_THREADS];
  reader r[N_THREADS];
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, N_THREADS);
  for (int i = 0; i < N_THREADS; i++) {
    r[i] = (reader){.c = c, .bar = &bar, .idx = i};
    assert_int_equal(pthread_create(&t[i], NULL, reader_main, &r[i]), 0);
  }
  for (int i = 0; i < N_THREADS; i++) pthread_join(t[i], NULL);
  pthread_barrier_destroy(&bar);
  for (int i = 0; i < N_THREADS; i++)
    if (r[i].st != KMS_OK) fail_msg("thread %d: %s %s", i, kms_status_str(r[i].st), r[i].msg);
  vf_log *log = vf_requests(srv);
  if (vf_count(log, "POST", APPROLE_LOGIN) != 1) {
    char *tx = log_text(log);
    fail_msg("want one re-login:\n%s", tx);
  }
  /* each thread: a 403 ("invalid token": no lookup needed), one successful
   * retry (a thread that starts after the re-login goes straight to its 200) */
  size_t reads = vf_count(log, "GET", NULL) - vf_count(log, "GET", LOOKUP);
  assert_true(reads > N_THREADS && reads <= 2 * N_THREADS);
  assert_int_equal(vf_count(log, "GET", LOOKUP), 0);
  vf_log_free(log);
  done(&h, c);
}

static void test_login_unavailable_then_recovers(void **state) {
  policy(NULL, "kv", KV_RW);
  creds cr = approle(NULL, "approle", "app", "kv", 3600, 7200);
  vf_put(srv, "secret/data/u", "{\"key\":\"vu\"}");
  vf_clear_requests(srv);
  assert_int_equal(vf_fault(srv, "{\"method\":\"POST\",\"path\":\"^/v1/auth/approle/login$\","
                                 "\"status\":503,\"body\":{\"errors\":[\"Vault is sealed\"]},"
                                 "\"times\":-1}"),
                   0);
  it_host h;
  kms_client *c = client(&h, (const char *[]){"HCP_VAULT_APPROLE_ROLE_ID", cr.role_id,
                                              "HCP_VAULT_APPROLE_SECRET_ID", cr.secret_id,
                                              "VAULT_MAX_RETRIES", "0", NULL});
  kms_error err;
  assert_int_equal(rd(c, "u", NULL, 0, &err), KMS_UNAVAILABLE);
  assert_int_equal(err.backend_status, 503);
  if (!strstr(err.message, "Vault is sealed") || !strstr(err.message, "AppRole login"))
    fail_msg("message: %s", err.message);
  vf_clear_faults(srv);
  /* (the recovery after the 1 s pause: test_login_failure_pause, on the
   * injected clock) */
  vf_log *log = vf_requests(srv);
  expect_log(log, (const char *[]){"POST " APPROLE_LOGIN, NULL});
  vf_log_free(log);
  done(&h, c);
}

/* ---- errors ------------------------------------------------------------------ */

static void test_create_errors(void **state) {
  const char *cert = g_cert, *key = g_key;
  const char *wrong = vf_cert("wrong-key.pem"), *ecert = vf_cert("expired-client.pem"),
             *ekey = vf_cert("expired-client.key"), *cakey = vf_cert("ca.key");
  struct {
    const char *env[8];
    const char *needles[3];
  } t[] = {
    {{"HCP_VAULT_CLIENT_CERT", "/nonexistent/client.pem", "HCP_VAULT_CLIENT_KEY", key, NULL},
     {"HCP_VAULT_CLIENT_CERT", "/nonexistent/client.pem", "cannot be read"}},
    {{"HCP_VAULT_CLIENT_CERT", cert, "HCP_VAULT_CLIENT_KEY", "/nonexistent/client.key", NULL},
     {"HCP_VAULT_CLIENT_KEY", "/nonexistent/client.key", "cannot be read"}},
    {{"HCP_VAULT_CLIENT_CERT", cakey, "HCP_VAULT_CLIENT_KEY", key, NULL},
     {"HCP_VAULT_CLIENT_CERT", cakey, "not a PEM certificate"}},
    {{"HCP_VAULT_CLIENT_CERT", cert, "HCP_VAULT_CLIENT_KEY", wrong, NULL},
     {"HCP_VAULT_CLIENT_KEY", wrong, "does not match"}},
    {{"HCP_VAULT_CLIENT_CERT", ecert, "HCP_VAULT_CLIENT_KEY", ekey, NULL},
     {"HCP_VAULT_CLIENT_CERT", ecert, "expired"}},
    {{"HCP_VAULT_CLIENT_CERT", cert, NULL}, {"HCP_VAULT_CLIENT_CERT=", cert, "HCP_VAULT_CLIENT_KEY is not"}},
    {{"HCP_VAULT_CLIENT_KEY", key, NULL}, {"HCP_VAULT_CLIENT_KEY=", key, "HCP_VAULT_CLIENT_CERT is not"}},
    {{"HCP_VAULT_CERT_ROLE", "web", NULL}, {"HCP_VAULT_CERT_ROLE", "HCP_VAULT_CLIENT_CERT", NULL}},
    {{"HCP_VAULT_APPROLE_ROLE_ID", "r", NULL}, {"HCP_VAULT_APPROLE_SECRET_ID", NULL, NULL}},
    /* certificate login over plain HTTP: Vault would refuse it */
    {{CERT_ENV, "HCP_VAULT_ADDR", "http://127.0.0.1:8200", NULL}, {"certificate login", "https://", NULL}},
  };
  for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
    it_host h;
    kms_client *c;
    kms_error err;
    kms_status st = make(&h, t[i].env, &c, &err);
    if (st != KMS_INVALID_ARGUMENT) fail_msg("case %zu: %s %s", i, kms_status_str(st), err.message);
    for (int k = 0; k < 3 && t[i].needles[k]; k++)
      if (!strstr(err.message, t[i].needles[k]))
        fail_msg("case %zu: '%s' not in '%s'", i, t[i].needles[k], err.message);
    assert_null(c);
    it_host_free(&h);
  }
  vf_log *log = vf_requests(srv);
  assert_int_equal(log->n, 0); /* create never talks to Vault */
  vf_log_free(log);
}

static void test_bad_approle_secret(void **state) {
  policy(NULL, "kv", KV_RW);
  creds cr = approle(NULL, "approle", "app", "kv", 3600, 7200);
  const char *bad_sid = "0f1e2d3c-bad0-secr-et00-123456789abc";
  vf_clear_requests(srv);
  it_host h;
  kms_client *c = client(&h, (const char *[]){"HCP_VAULT_APPROLE_ROLE_ID", cr.role_id,
                                              "HCP_VAULT_APPROLE_SECRET_ID", bad_sid, NULL});
  kms_error err;
  assert_int_equal(rd(c, "x", NULL, 0, &err), KMS_UNAUTHENTICATED);
  assert_int_equal(err.backend_status, 400);
  if (!strstr(err.message, "invalid role or secret ID") || !strstr(err.message, "400") ||
      !strstr(err.message, "AppRole"))
    fail_msg("message: %s", err.message);
  assert_null(strstr(err.message, bad_sid));
  assert_null(strstr(err.message, cr.secret_id));
  /* an immediate second request gets the same answer without a new login */
  assert_int_equal(rd(c, "x", NULL, 0, &err), KMS_UNAUTHENTICATED);
  vf_log *log = vf_requests(srv);
  expect_log(log, (const char *[]){"POST " APPROLE_LOGIN, NULL});
  vf_log_free(log);
  /* (one new attempt after the pause: test_login_failure_pause) */
  char *logs = it_logs(&h);
  assert_null(strstr(logs, bad_sid));
  assert_non_null(strstr(logs, "invalid role or secret ID"));
  free(logs);
  done(&h, c);
}

static void test_cert_login_rejected(void **state) {
  /* a role the certificate does not match: UNAUTHENTICATED with Vault's text */
  policy(NULL, "kv", KV_RW);
  cert_role("web", "kv", 3600, 7200);
  it_host h;
  kms_client *c = client(&h, (const char *[]){CERT_ENV, "HCP_VAULT_CERT_ROLE", "nosuchrole", NULL});
  kms_error err;
  assert_int_equal(rd(c, "x", NULL, 0, &err), KMS_UNAUTHENTICATED);
  if (!strstr(err.message, "invalid certificate") || !strstr(err.message, "certificate login"))
    fail_msg("message: %s", err.message);
  done(&h, c);
}

/* ---- one deadline per call, token checks (issue 15) ------------------------- */

static void test_one_deadline_per_call(void **state) {
  /* VAULT_CLIENT_TIMEOUT=4: the login takes 2.5 s and so would the GET. Each
   * fits the budget on its own (as every request of a call did when each got
   * a fresh deadline: the 20 s read under a 5 s timeout), but not
   * both: the GET gets what is left of the call's budget and the call ends
   * with the timeout. The assertion is on the outcome and the requests, not
   * on elapsed time; the 1.5 s margins only absorb valgrind's slowness. */
  policy(NULL, "kv", KV_RW);
  creds cr = approle(NULL, "approle", "app", "kv", 3600, 7200);
  vf_put(srv, "secret/data/dl", "{\"key\":\"vd\"}");
  vf_clear_requests(srv);
  assert_int_equal(vf_fault(srv, "{\"method\":\"POST\",\"path\":\"^/v1/auth/approle/login$\","
                                 "\"delay_ms\":2500,\"times\":1}"), 0);
  assert_int_equal(vf_fault(srv, "{\"method\":\"GET\",\"path\":\"^/v1/secret/data/dl$\","
                                 "\"delay_ms\":2500,\"times\":1}"), 0);
  it_host h;
  kms_client *c = client(&h, (const char *[]){"HCP_VAULT_APPROLE_ROLE_ID", cr.role_id,
                                              "HCP_VAULT_APPROLE_SECRET_ID", cr.secret_id,
                                              "VAULT_CLIENT_TIMEOUT", "4", "VAULT_MAX_RETRIES", "0",
                                              NULL});
  kms_error err;
  kms_status st = rd(c, "dl", NULL, 0, &err);
  if (st != KMS_UNAVAILABLE || !strstr(err.message, "VAULT_CLIENT_TIMEOUT"))
    fail_msg("want the call's timeout, got %s: %s", kms_status_str(st), err.message);
  assert_int_equal(it_log_count(&h, "AppRole login succeeded"), 1); /* the login fit */
  vf_log *log = vf_requests(srv);
  expect_log(log, (const char *[]){"POST " APPROLE_LOGIN, "GET /v1/secret/data/dl", NULL});
  vf_log_free(log);
  /* the next call has a budget of its own: the token is reused, the GET fits */
  read_ok(c, "dl", "vd");
  done(&h, c);
}

static void test_login_token_validated(void **state) {
  /* a login answer whose client_token would inject a header is refused
   * before the token is ever sent */
  static const char *const bad[] = {
      "{\\\"auth\\\":{\\\"client_token\\\":\\\"hvs.x\\\\r\\\\nX-Evil: 1\\\",\\\"lease_duration\\\":3600}}",
      "{\\\"auth\\\":{\\\"client_token\\\":\\\"hvs x\\\",\\\"lease_duration\\\":3600}}",
  };
  creds cr = approle(NULL, "approle", "app", "kv", 3600, 7200);
  for (size_t i = 0; i < 2; i++) {
    vf_clear_requests(srv);
    char f[512];
    snprintf(f, sizeof f, "{\"method\":\"POST\",\"path\":\"^/v1/auth/approle/login$\","
             "\"status\":200,\"raw_body\":\"%s\",\"times\":1}", bad[i]);
    assert_int_equal(vf_fault(srv, f), 0);
    it_host h;
    kms_client *c = client(&h, (const char *[]){"HCP_VAULT_APPROLE_ROLE_ID", cr.role_id,
                                                "HCP_VAULT_APPROLE_SECRET_ID", cr.secret_id, NULL});
    kms_error err;
    assert_int_equal(rd(c, "x", NULL, 0, &err), KMS_INTERNAL);
    if (!strstr(err.message, "client_token") || !strstr(err.message, "control characters"))
      fail_msg("message: %s", err.message);
    vf_log *log = vf_requests(srv);
    expect_log(log, (const char *[]){"POST " APPROLE_LOGIN, NULL}); /* no request carried it */
    vf_log_free(log);
    done(&h, c);
  }
}

static void test_refresh_checks_static_token(void **state) {
  /* refresh with a static token asks Vault (lookup-self) instead of
   * reporting success without contacting it */
  char *b = api("POST", "/v1/auth/token/create", "{\"policies\":[\"default\"]}");
  char tk[128];
  jstr(b, "auth", "client_token", tk, sizeof tk);
  free(b);
  vf_clear_requests(srv);
  it_host h;
  kms_client *c = client(&h, (const char *[]){"HCP_VAULT_TOKEN", tk, NULL});
  kms_error err;
  assert_int_equal(kms_client_refresh(c, &err), KMS_OK);
  vf_log *log = vf_requests(srv);
  expect_log(log, (const char *[]){"GET " LOOKUP, NULL});
  vf_log_free(log);
  char body[200];
  snprintf(body, sizeof body, "{\"token\":\"%s\"}", tk);
  assert_int_equal(vf_http(srv, "POST", "/__test__/tokens/revoke", NULL, body, NULL), 200);
  assert_int_equal(kms_client_refresh(c, &err), KMS_UNAUTHENTICATED);
  if (!strstr(err.message, "lookup-self") || !strstr(err.message, "HCP_VAULT_TOKEN"))
    fail_msg("message: %s", err.message);
  assert_null(strstr(err.message, tk));
  /* Vault unreachable: the transport error, not a success */
  vf_fault(srv, "{\"method\":\"GET\",\"path\":\"lookup-self$\",\"drop\":true,\"times\":-1}");
  it_set(&h, "VAULT_MAX_RETRIES", "0");
  assert_int_equal(kms_client_refresh(c, &err), KMS_UNAVAILABLE);
  vf_clear_faults(srv);
  done(&h, c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_cert_login, start, stop),
    cmocka_unit_test_setup_teardown(test_cert_login_without_role, start, stop),
    cmocka_unit_test_setup_teardown(test_approle_login, start, stop),
    cmocka_unit_test_setup_teardown(test_approle_custom_mount_and_namespace, start, stop),
    cmocka_unit_test_setup_teardown(test_priority, start, stop),
    cmocka_unit_test_setup_teardown(test_auth_method_setting, start, stop),
    cmocka_unit_test_setup_teardown(test_expiry_cert, start, stop),
    cmocka_unit_test_setup_teardown(test_expiry_approle, start, stop),
    cmocka_unit_test_setup_teardown(test_relogin_still_denied_no_loop, start, stop),
    cmocka_unit_test_setup_teardown(test_renewal, start, stop),
    cmocka_unit_test_setup_teardown(test_renewal_while_vault_down, start, stop),
    cmocka_unit_test_setup_teardown(test_login_failure_pause, start, stop),
    cmocka_unit_test_setup_teardown(test_max_ttl_fresh_login, start, stop),
    cmocka_unit_test_setup_teardown(test_refresh_renews, start, stop),
    cmocka_unit_test_setup_teardown(test_cold_start_threads_one_login, start, stop),
    cmocka_unit_test_setup_teardown(test_expiry_threads_one_relogin, start, stop),
    cmocka_unit_test_setup_teardown(test_login_unavailable_then_recovers, start, stop),
    cmocka_unit_test_setup_teardown(test_create_errors, start, stop),
    cmocka_unit_test_setup_teardown(test_bad_approle_secret, start, stop),
    cmocka_unit_test_setup_teardown(test_cert_login_rejected, start, stop),
    cmocka_unit_test_setup_teardown(test_one_deadline_per_call, start, stop),
    cmocka_unit_test_setup_teardown(test_login_token_validated, start, stop),
    cmocka_unit_test_setup_teardown(test_refresh_checks_static_token, start, stop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
