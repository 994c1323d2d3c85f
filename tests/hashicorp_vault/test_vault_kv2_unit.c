/*
 * test_vault_kv2_unit.c -- kv2.c and config.c without a server: name
 * validation table, percent-encoding, URL layout (namespace/mount/prefix,
 * normalisation), request bodies, response parsing, status mapping,
 * configuration precedence, defaults and errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "kms_plugin_util.h"
#include "common.h"
#include "kv2.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

/* ---- a tiny host environment ---- */
typedef struct envt {
  const char *kv[40];
} envt;

static const char *env_get(void *ctx, const char *name) {
  envt *e = ctx;
  for (size_t i = 0; e->kv[i]; i += 2)
    if (strcmp(e->kv[i], name) == 0) return e->kv[i + 1];
  return NULL;
}

static kms_status load(envt *e, const kms_setting *s, size_t n, vault_config *cfg,
                       kms_error *err) {
  kms_host h = {sizeof h, KMS_ABI_MAJOR, KMS_ABI_MINOR, e, NULL, env_get, NULL};
  kpc_logger lg = {&h, VAULT_MSG_PREFIX};
  return vault_config_load(cfg, &h, s, n, &lg, err);
}

static void test_names(void **state) {
  static const char *const good[] = {"a", "a/b", "litellm/sk-1234", "...", ".a", "a..b",
                                     "sp ace", "ünï", "a%2F", "x.y/z_~-"};
  static const char *const bad[] = {"", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "../a",
                                    "a\nb", "a\tb", "a\x7f", "a\x01"};
  kms_error err;
  for (size_t i = 0; i < sizeof good / sizeof *good; i++)
    assert_int_equal(kv2_validate_name(good[i], &err), KMS_OK);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    assert_int_equal(kv2_validate_name(bad[i], &err), KMS_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "secret name"));
  }
  char big[VAULT_NAME_MAX + 2];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(kv2_validate_name(big, &err), KMS_INVALID_ARGUMENT);
  big[VAULT_NAME_MAX] = '\0';
  assert_int_equal(kv2_validate_name(big, &err), KMS_OK);
  /* A name refused for a '..' or empty segment that also holds a control
   * character is refused for the control character, so the message (which
   * quotes names) never carries a newline (found by fuzz_kv2_names). */
  static const char *const mixed[] = {"../a\nFAKE LOG LINE", "/x\r", "a//\x1b[31m"};
  for (size_t i = 0; i < sizeof mixed / sizeof *mixed; i++) {
    assert_int_equal(kv2_validate_name(mixed[i], &err), KMS_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "control character"));
    for (const char *p = err.message; *p; p++) assert_true((unsigned char)*p >= 0x20);
  }
}

static void test_encoding(void **state) {
  char *e = vault_encode_path("a b/c+d/%/é?#&=~._-");
  assert_string_equal(e, "a%20b/c%2Bd/%25/%C3%A9%3F%23%26%3D~._-");
  free(e);
}

static void check_url(envt *e, const char *name, const char *expect_data, const char *expect_meta) {
  vault_config cfg;
  kms_error err;
  assert_int_equal(load(e, NULL, 0, &cfg, &err), KMS_OK);
  kv2_layout l;
  assert_int_equal(kv2_layout_init(&l, &cfg, &err), KMS_OK);
  char *u;
  assert_int_equal(kv2_url(&l, KV2_DATA, name, &u, &err), KMS_OK);
  assert_string_equal(kpc_url_path(cfg.addr, u), expect_data);
  free(u);
  assert_int_equal(kv2_url(&l, KV2_METADATA, name, &u, &err), KMS_OK);
  assert_string_equal(kpc_url_path(cfg.addr, u), expect_meta);
  free(u);
  kv2_layout_free(&l);
  vault_config_free(&cfg);
}

static void test_url_layout(void **state) {
  envt e1 = {{"HCP_VAULT_TOKEN", "t", NULL}};
  check_url(&e1, "k", "/v1/secret/data/k", "/v1/secret/metadata/k");
  envt e2 = {{"HCP_VAULT_TOKEN", "t", "HCP_VAULT_NAMESPACE", "team1", NULL}};
  check_url(&e2, "k", "/v1/team1/secret/data/k", "/v1/team1/secret/metadata/k");
  envt e3 = {{"HCP_VAULT_TOKEN", "t", "HCP_VAULT_NAMESPACE", " /a/b c/ ", "HCP_VAULT_MOUNT_NAME",
              "kv2/ ", "HCP_VAULT_PATH_PREFIX", "/litellm/keys/", NULL}};
  check_url(&e3, "x/y z", "/v1/a/b%20c/kv2/data/litellm/keys/x/y%20z",
            "/v1/a/b%20c/kv2/metadata/litellm/keys/x/y%20z");
  /* the secret namespace wins over the general one; VAULT_NAMESPACE is a fallback */
  envt e4 = {{"HCP_VAULT_TOKEN", "t", "VAULT_NAMESPACE", "gen", "HCP_VAULT_SECRET_NAMESPACE", "sec",
              NULL}};
  check_url(&e4, "k", "/v1/sec/secret/data/k", "/v1/sec/secret/metadata/k");
  /* Issue 10 item 9: one family. With any HCP_VAULT_* set, VAULT_NAMESPACE
   * (exported for the Vault CLI) is ignored, as LiteLLM ignores it. */
  envt e5 = {{"HCP_VAULT_TOKEN", "t", "VAULT_NAMESPACE", "gen", "BAO_NAMESPACE", "bao", NULL}};
  check_url(&e5, "k", "/v1/secret/data/k", "/v1/secret/metadata/k");
  envt e6 = {{"VAULT_TOKEN", "t", "VAULT_NAMESPACE", "gen", "BAO_NAMESPACE", "bao", NULL}};
  check_url(&e6, "k", "/v1/gen/secret/data/k", "/v1/gen/secret/metadata/k");
  envt e7 = {{"BAO_TOKEN", "t", "BAO_NAMESPACE", "bao", NULL}};
  check_url(&e7, "k", "/v1/bao/secret/data/k", "/v1/bao/secret/metadata/k");
  /* an HCP_VAULT_-only variable selects the family too */
  envt e8 = {{"VAULT_TOKEN", "t", "VAULT_NAMESPACE", "gen", "HCP_VAULT_MOUNT_NAME", "kv", NULL}};
  vault_config c;
  kms_error err;
  assert_int_equal(load(&e8, NULL, 0, &c, &err), KMS_INVALID_ARGUMENT); /* no HCP_VAULT_TOKEN */
  assert_non_null(strstr(err.message, "HCP_VAULT_TOKEN"));
}

/* Issue 10 item 8: LiteLLM appends /v1/... to HCP_VAULT_ADDR as written, so
 * a path prefix (a gateway in front of Vault) is kept, trailing '/' trimmed. */
static void test_addr_path_prefix(void **state) {
  envt e1 = {{"HCP_VAULT_TOKEN", "t", "HCP_VAULT_ADDR", " https://gw.example.com/vault/ ", NULL}};
  check_url(&e1, "k", "/v1/secret/data/k", "/v1/secret/metadata/k");
  vault_config c;
  kms_error err;
  assert_int_equal(load(&e1, NULL, 0, &c, &err), KMS_OK);
  assert_string_equal(c.addr, "https://gw.example.com/vault");
  kv2_layout l;
  char *u;
  assert_int_equal(kv2_layout_init(&l, &c, &err), KMS_OK);
  assert_int_equal(kv2_url(&l, KV2_DATA, "a/b", &u, &err), KMS_OK);
  assert_string_equal(u, "https://gw.example.com/vault/v1/secret/data/a/b");
  free(u);
  kv2_layout_free(&l);
  vault_config_free(&c);
  envt e2 = {{"VAULT_TOKEN", "t", "VAULT_ADDR", "http://h:8200/a/b-c.d//", NULL}};
  assert_int_equal(load(&e2, NULL, 0, &c, &err), KMS_OK);
  assert_string_equal(c.addr, "http://h:8200/a/b-c.d");
  vault_config_free(&c);
}

static void test_config_defaults_and_fallbacks(void **state) {
  vault_config c;
  kms_error err;
  envt e = {{"BAO_TOKEN", "vt", "BAO_ADDR", " https://bao.example:8200/ ", NULL}};
  assert_int_equal(load(&e, NULL, 0, &c, &err), KMS_OK);
  assert_string_equal(c.addr, "https://bao.example:8200");
  assert_string_equal(c.token, "vt");
  assert_string_equal(c.mount, "secret");
  assert_null(c.prefix);
  assert_null(c.secret_namespace);
  assert_int_equal(c.refresh_interval_s, 86400);
  assert_int_equal(c.timeout_ms, 60000);
  assert_int_equal(c.max_retries, 2);
  assert_int_equal(c.stale_if_error_s, VAULT_DEFAULT_STALE_IF_ERROR_S);
  assert_int_equal(c.access_mode, VAULT_ACCESS_READ_ONLY);
  assert_int_equal(c.delete_mode, VAULT_DELETE_SOFT);
  assert_int_equal(c.auth_method, VAULT_AUTH_TOKEN);
  assert_string_equal(c.approle_mount, "approle");
  vault_config_free(&c);

  envt e2 = {{"HCP_VAULT_TOKEN", "h", "VAULT_TOKEN", "v", "HCP_VAULT_ADDR", "http://a:1",
              "VAULT_ADDR", "http://b:2", "VAULT_CLIENT_TIMEOUT", "1m30s", "BAO_MAX_RETRIES", "7",
              "HCP_VAULT_REFRESH_INTERVAL", "0", "VAULT_SKIP_VERIFY", "true",
              "HCP_VAULT_LOGIN_NAMESPACE", "login", "HCP_VAULT_NAMESPACE", "gen", NULL}};
  kms_setting s[] = {{"access_mode", "read_and_write"}, {"delete_mode", "destroy"},
                     {"stale_if_error", "2m"}, {"store_virtual_keys", "true"},
                     {"prefix_for_stored_virtual_keys", "litellm/"}, {"hosted_keys", "[a]"},
                     {"redirect_allowed_hosts", "Vault-2.Example:8200, other:1"}};
  assert_int_equal(load(&e2, s, 7, &c, &err), KMS_OK);
  assert_string_equal(c.token, "h");
  assert_string_equal(c.addr, "http://a:1");
  assert_int_equal(c.timeout_ms, 90000);
  assert_int_equal(c.max_retries, 7);
  assert_int_equal(c.refresh_interval_s, 0);
  assert_int_equal(c.skip_verify, 1);
  assert_string_equal(c.login_namespace, "login");
  assert_string_equal(c.secret_namespace, "gen");
  assert_int_equal(c.access_mode, VAULT_ACCESS_READ_AND_WRITE);
  assert_int_equal(c.delete_mode, VAULT_DELETE_DESTROY);
  assert_int_equal(c.stale_if_error_s, 120);
  assert_int_equal(c.n_redirect_allowed_hosts, 2);
  assert_string_equal(c.redirect_allowed_hosts[0], "vault-2.example:8200");
  vault_config_free(&c);
}

typedef struct bad_case {
  const char *kv[8];
  const char *setting_key, *setting_value;
  kms_status st;
  const char *needle;
} bad_case;

static void test_config_errors(void **state) {
  static const bad_case cases[] = {
    {{"HCP_VAULT_ADDR", "ftp://x", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "HCP_VAULT_ADDR"},
    {{"VAULT_ADDR", "http://", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "VAULT_ADDR"},
    /* a path prefix is kept (issue 10 item 8), but never with a query, fragment or dot segment */
    {{"HCP_VAULT_ADDR", "http://h:8200/vault?x=1", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "query (?) or fragment"},
    {{"HCP_VAULT_ADDR", "http://h:8200/vault#top", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "query (?) or fragment"},
    {{"HCP_VAULT_ADDR", "http://h/a/../b", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "bad path prefix"},
    {{"HCP_VAULT_ADDR", "http://h/a/%2E%2e/b", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "bad path prefix"},
    {{"HCP_VAULT_ADDR", "http://h//vault", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "bad path prefix"},
    {{"HCP_VAULT_ADDR", "http://h/./vault", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "bad path prefix"},
    {{"HCP_VAULT_ADDR", "http://u@h/vault", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "credentials"},
    {{"HCP_VAULT_ADDR", "http://u:p@h", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "credentials"},
    {{"HCP_VAULT_REFRESH_INTERVAL", "abc", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "HCP_VAULT_REFRESH_INTERVAL"},
    {{"HCP_VAULT_REFRESH_INTERVAL", "-1", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "HCP_VAULT_REFRESH_INTERVAL"},
    {{"VAULT_CLIENT_TIMEOUT", "0", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "VAULT_CLIENT_TIMEOUT"},
    {{"BAO_CLIENT_TIMEOUT", "soon", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "BAO_CLIENT_TIMEOUT"},
    {{"VAULT_MAX_RETRIES", "-1", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "VAULT_MAX_RETRIES"},
    {{"VAULT_SKIP_VERIFY", "maybe", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "VAULT_SKIP_VERIFY"},
    {{"VAULT_CACERT", "/nonexistent/ca.pem", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "VAULT_CACERT"},
    {{"VAULT_CAPATH", "/nonexistent", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "VAULT_CAPATH"},
    {{"VAULT_TLS_SERVER_NAME", "a b", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "VAULT_TLS_SERVER_NAME"},
    {{"HCP_VAULT_MOUNT_NAME", "a/../b", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "HCP_VAULT_MOUNT_NAME"},
    {{"HCP_VAULT_NAMESPACE", "a//b", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "HCP_VAULT_NAMESPACE"},
    {{"HCP_VAULT_PATH_PREFIX", "./x", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "HCP_VAULT_PATH_PREFIX"},
    {{"HCP_VAULT_CLIENT_CERT", "/tmp/c.pem", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "HCP_VAULT_CLIENT_KEY"},
    {{"HCP_VAULT_CLIENT_KEY", "/tmp/k.pem", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "HCP_VAULT_CLIENT_CERT"},
    {{"HCP_VAULT_APPROLE_ROLE_ID", "r", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "HCP_VAULT_APPROLE_SECRET_ID"},
    {{"HCP_VAULT_CERT_ROLE", "r", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "HCP_VAULT_CLIENT_CERT"},
    {{NULL}, "access_mode", "everything", KMS_INVALID_ARGUMENT, "access_mode"},
    {{NULL}, "delete_mode", "hard", KMS_INVALID_ARGUMENT, "delete_mode"},
    {{NULL}, "stale_if_error", "a while", KMS_INVALID_ARGUMENT, "stale_if_error"},
    {{NULL}, "redirect_allowed_hosts", "nohostport", KMS_INVALID_ARGUMENT, "redirect_allowed_hosts"},
    /* an over-long entry is refused, not cut (which could turn host:82001 into host:8200) */
    {{NULL}, "redirect_allowed_hosts",
     "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh"
     "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh"
     "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh"
     "hhhhhhhhhhhhhhhhhhhhhhhhhhhhh:82001",
     KMS_INVALID_ARGUMENT, "longer than 299"},
    {{NULL}, "max_response_bytes", "12", KMS_INVALID_ARGUMENT, "max_response_bytes"},
    {{NULL}, "connect_timeout", "0", KMS_INVALID_ARGUMENT, "connect_timeout"},
    /* quoted values keep the message one line (found by fuzz_vault_config) */
    {{NULL}, "access_mode", "x\nFAKE: line\x1b[2J", KMS_INVALID_ARGUMENT, "'x?FAKE: line?[2J'"},
    {{"VAULT_SKIP_VERIFY", "y\r\n", NULL}, NULL, NULL, KMS_INVALID_ARGUMENT, "(got 'y?" "?')" /* split: ??' is a trigraph */},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    envt e = {{NULL}};
    size_t k = 0;
    int has_token = 0;
    for (; cases[i].kv[k]; k += 2) {
      e.kv[k] = cases[i].kv[k];
      e.kv[k + 1] = cases[i].kv[k + 1];
      if (strstr(e.kv[k], "ROLE") || strstr(e.kv[k], "CLIENT_")) has_token = 1; /* keep no token */
    }
    if (!has_token || strstr(cases[i].kv[0], "CLIENT_")) {
      /* a token of the case's family (one family is read: issue 10 item 9) */
      e.kv[k++] = !cases[i].kv[0] || !strncmp(cases[i].kv[0], "HCP_", 4) ? "HCP_VAULT_TOKEN"
                  : !strncmp(cases[i].kv[0], "BAO_", 4)                   ? "BAO_TOKEN"
                                                                          : "VAULT_TOKEN";
      e.kv[k++] = "tok";
    }
    e.kv[k] = NULL;
    kms_setting s = {cases[i].setting_key, cases[i].setting_value};
    vault_config c;
    kms_error err;
    kms_error_clear(&err);
    kms_status st = load(&e, &s, cases[i].setting_key ? 1 : 0, &c, &err);
    if (st != cases[i].st || !strstr(err.message, cases[i].needle))
      fail_msg("case %zu: status %d message '%s' (want %d, '%s')", i, st, err.message, cases[i].st,
               cases[i].needle);
  }
  /* no credentials at all */
  envt none = {{NULL}};
  vault_config c;
  kms_error err;
  assert_int_equal(load(&none, NULL, 0, &c, &err), KMS_INVALID_ARGUMENT);
  assert_non_null(strstr(err.message, "HCP_VAULT_TOKEN"));
  /* a token with a space is refused without echoing it */
  envt sp = {{"HCP_VAULT_TOKEN", "hvs.abc def", NULL}};
  assert_int_equal(load(&sp, NULL, 0, &c, &err), KMS_INVALID_ARGUMENT);
  assert_null(strstr(err.message, "abc"));
}

static void test_durations(void **state) {
  int64_t ms;
  assert_int_equal(vault_parse_duration_ms("30", &ms), 0);
  assert_int_equal(ms, 30000);
  assert_int_equal(vault_parse_duration_ms("1h2m3s", &ms), 0);
  assert_int_equal(ms, 3723000);
  assert_int_equal(vault_parse_duration_ms("250ms", &ms), 0);
  assert_int_equal(ms, 250);
  assert_int_equal(vault_parse_duration_ms("", &ms), -1);
  assert_int_equal(vault_parse_duration_ms("1d", &ms), -1);
  assert_int_equal(vault_parse_duration_ms("s", &ms), -1);
  assert_int_equal(vault_parse_duration_ms("-1", &ms), -1);
}

static void test_bodies(void **state) {
  char *b;
  size_t n;
  kms_error err;
  assert_int_equal(kv2_write_body("v\"al\\ue\n", 8, 0, 0, &b, &n, &err), KMS_OK);
  assert_string_equal(b, "{\"data\":{\"key\":\"v\\\"al\\\\ue\\n\"}}");
  assert_int_equal(n, strlen(b));
  kv2_free_body(b, n);
  assert_int_equal(kv2_write_body("x", 1, 1, 7, &b, &n, &err), KMS_OK);
  assert_string_equal(b, "{\"data\":{\"key\":\"x\"},\"options\":{\"cas\":7}}");
  kv2_free_body(b, n);
  assert_int_equal(kv2_write_body("", 0, 1, 0, &b, &n, &err), KMS_OK);
  assert_string_equal(b, "{\"data\":{\"key\":\"\"},\"options\":{\"cas\":0}}");
  kv2_free_body(b, n);
  assert_int_equal(kv2_write_body("a\0b", 3, 0, 0, &b, &n, &err), KMS_INVALID_ARGUMENT);
  assert_int_equal(kv2_write_body("\xff\xfe", 2, 0, 0, &b, &n, &err), KMS_INVALID_ARGUMENT);
  assert_int_equal(kv2_write_body("\xc3\xa9\xf0\x9f\x94\x91", 6, 0, 0, &b, &n, &err), KMS_OK);
  kv2_free_body(b, n);
  /* worst-case escaping fits */
  char ctl[300];
  memset(ctl, 0x01, sizeof ctl);
  assert_int_equal(kv2_write_body(ctl, sizeof ctl, 1, UINT32_MAX, &b, &n, &err), KMS_OK);
  kv2_free_body(b, n);
  assert_int_equal(kv2_metadata_body("for \"team\"", &b, &n, &err), KMS_OK);
  assert_string_equal(b, "{\"custom_metadata\":{\"description\":\"for \\\"team\\\"\"}}");
  kv2_free_body(b, n);
}

static void test_parse_read(void **state) {
  char *v;
  size_t n;
  int64_t ver;
  kms_error err;
  const char *ok = "{\"data\":{\"data\":{\"key\":\"s3cr\\u00e9t\"},\"metadata\":{\"version\":4}}}";
  assert_int_equal(kv2_parse_read(ok, strlen(ok), "n", &v, &n, &ver, &err), KMS_OK);
  assert_string_equal(v, "s3cr\xc3\xa9t");
  assert_int_equal(n, 7);
  assert_int_equal(ver, 4);
  free(v);
  struct {
    const char *body;
    kms_status st;
    const char *needle;
  } bad[] = {
    {"{not json", KMS_INTERNAL, "not JSON"},
    {"{\"data\":{\"data\":{\"other\":\"x\"}}}", KMS_INTERNAL, "no field \"key\""},
    {"{\"data\":{\"data\":{\"key\":5}}}", KMS_INTERNAL, "number"},
    {"{\"data\":{\"data\":{\"key\":{\"a\":1}}}}", KMS_INTERNAL, "object"},
    {"{\"data\":{\"data\":null,\"metadata\":{\"version\":2}}}", KMS_NOT_FOUND, "deleted"},
    {"{\"data\":{\"key\":\"v\"}}", KMS_INTERNAL, "KV version 2"},
    {"[]", KMS_INTERNAL, "'data'"},
    /* a NUL inside the value would silently cut it short: refused instead */
    {"{\"data\":{\"data\":{\"key\":\"ab\\u0000cd\"}}}", KMS_UNSUPPORTED, "NUL character"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    kms_status st = kv2_parse_read(bad[i].body, strlen(bad[i].body), "n", &v, &n, &ver, &err);
    if (st != bad[i].st || !strstr(err.message, bad[i].needle))
      fail_msg("case %zu: %d '%s'", i, st, err.message);
    assert_null(v);
  }
  /* "\u0000" elsewhere, or as literal text after an escaped backslash, is fine */
  static const char *const nul_ok[] = {
    "{\"data\":{\"data\":{\"key\":\"v\",\"note\":\"a\\u0000b\"}}}",
    "{\"data\":{\"data\":{\"key\":\"v\\\\u0000\"}}}",
  };
  static const char *const nul_ok_value[] = {"v", "v\\u0000"};
  for (size_t i = 0; i < 2; i++) {
    assert_int_equal(kv2_parse_read(nul_ok[i], strlen(nul_ok[i]), "n", &v, &n, &ver, &err), KMS_OK);
    assert_string_equal(v, nul_ok_value[i]);
    free(v);
  }
  assert_int_equal(kv2_parse_write_version("{\"data\":{\"version\":3}}", 22), 3);
  assert_int_equal(kv2_parse_write_version("", 0), 0);
  /* Versions that do not fit int64 read as 0 (found by fuzz_kv2_response:
   * the double -> int64 cast of 1e300 was undefined behaviour). */
  static const char *const huge[] = {"1e300", "-1e300", "9223372036854775808", "-5", "1e19"};
  for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
    char b[160];
    snprintf(b, sizeof b, "{\"data\":{\"data\":{\"key\":\"v\"},\"metadata\":{\"version\":%s}}}",
             huge[i]);
    assert_int_equal(kv2_parse_read(b, strlen(b), "n", &v, &n, &ver, &err), KMS_OK);
    assert_int_equal(ver, 0);
    free(v);
    snprintf(b, sizeof b, "{\"data\":{\"version\":%s}}", huge[i]);
    assert_int_equal(kv2_parse_write_version(b, strlen(b)), 0);
    snprintf(b, sizeof b, "{\"data\":{\"data\":null,\"metadata\":{\"version\":%s,"
             "\"destroyed\":true}}}", huge[i]);
    assert_int_equal(kv2_map_status("read", "/v1/p", 404, b, strlen(b), 1, 1, &err), KMS_NOT_FOUND);
    assert_non_null(strstr(err.message, "version 0 was destroyed"));
  }
}

static void test_status_map(void **state) {
  struct {
    long http;
    const char *body;
    kms_status st;
    const char *needle;
  } t[] = {
    {404, "{\"errors\":[]}", KMS_NOT_FOUND, "HTTP 404"},
    {404, "{\"data\":{\"data\":null,\"metadata\":{\"deletion_time\":\"2024-01-01T00:00:00Z\",\"destroyed\":false,\"version\":3}}}",
     KMS_NOT_FOUND, "version 3 was deleted"},
    {404, "{\"data\":{\"data\":null,\"metadata\":{\"deletion_time\":\"\",\"destroyed\":true,\"version\":2}}}",
     KMS_NOT_FOUND, "version 2 was destroyed"},
    {400, "{\"errors\":[\"check-and-set parameter did not match the current version\"]}", KMS_CONFLICT, "check-and-set"},
    {400, "{\"errors\":[\"bad input\"]}", KMS_INVALID_ARGUMENT, "bad input"},
    {401, "", KMS_UNAUTHENTICATED, "HTTP 401"},
    {403, "{\"errors\":[\"1 error occurred:\\n\\t* permission denied\\n\\n\"]}", KMS_PERMISSION_DENIED, "permission denied"},
    {403, "{\"errors\":[\"2 errors occurred:\\n\\t* permission denied\\n\\t* invalid token\\n\\n\"]}", KMS_UNAUTHENTICATED, "invalid token"},
    {412, "", KMS_UNAVAILABLE, "HTTP 412"},
    {429, "", KMS_UNAVAILABLE, "HTTP 429"},
    {500, "{\"errors\":[\"boom\"]}", KMS_UNAVAILABLE, "boom"},
    {503, "{\"errors\":[\"Vault is sealed\"]}", KMS_UNAVAILABLE, "Vault is sealed"},
    {501, "", KMS_UNAVAILABLE, "not initialised"},
    {405, "", KMS_UNSUPPORTED, "KV version 2"},
    {418, "teapot", KMS_INTERNAL, "HTTP 418"},
  };
  for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
    kms_error err;
    kms_status st = kv2_map_status("read", "/v1/secret/data/x", t[i].http, t[i].body,
                                   strlen(t[i].body), 3, 1, &err);
    if (st != t[i].st || !strstr(err.message, t[i].needle) || err.backend_status != t[i].http)
      fail_msg("case %zu (HTTP %ld): %d '%s'", i, t[i].http, st, err.message);
    assert_null(strchr(err.message, '\n'));
  }
  kms_error err;
  assert_int_equal(kv2_map_status("read", "p", 403, "", 0, 1, 0, &err), KMS_UNAUTHENTICATED);
}

/* Issue 15: a raw NUL inside a response string is refused, not truncated;
 * invalid UTF-8 in a read value is refused as writes refuse it. */
static void test_parse_read_refuses_nul_and_bad_utf8(void **state) {
  char *v = NULL;
  size_t n;
  int64_t ver;
  kms_error err;
  static const char nul[] = "{\"data\":{\"data\":{\"key\":\"abc\0def\"},\"metadata\":{\"version\":1}}}";
  assert_int_equal(kv2_parse_read(nul, sizeof nul - 1, "n", &v, &n, &ver, &err), KMS_INTERNAL);
  assert_non_null(strstr(err.message, "raw NUL"));
  assert_null(v);
  static const char *const bad_utf8[] = {
    "{\"data\":{\"data\":{\"key\":\"a\xff" "b\"}}}",        /* not UTF-8 at all */
    "{\"data\":{\"data\":{\"key\":\"\xc0\xaf\"}}}",          /* overlong '/' */
    "{\"data\":{\"data\":{\"key\":\"\xed\xa0\x80\"}}}",      /* a surrogate */
    "{\"data\":{\"data\":{\"key\":\"trunc\xe2\x82\"}}}",     /* cut sequence */
  };
  for (size_t i = 0; i < sizeof bad_utf8 / sizeof *bad_utf8; i++) {
    assert_int_equal(kv2_parse_read(bad_utf8[i], strlen(bad_utf8[i]), "n", &v, &n, &ver, &err),
                     KMS_UNSUPPORTED);
    assert_non_null(strstr(err.message, "UTF-8"));
    assert_null(v);
  }
  /* escaped non-ASCII is fine */
  static const char esc[] = "{\"data\":{\"data\":{\"key\":\"\\u20ac \\ud83d\\ude00\"}}}";
  assert_int_equal(kv2_parse_read(esc, strlen(esc), "n", &v, &n, &ver, &err), KMS_OK);
  assert_string_equal(v, "\xe2\x82\xac \xf0\x9f\x98\x80");
  free(v);
}

/* Issue 15: VAULT_CACERT naming a file without any certificate fails at
 * create (not at the first request). */
static void test_cacert_without_certificate(void **state) {
  char path[] = "/tmp/vault_cacert.XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  static const char junk[] = "not a certificate\n-----BEGIN PRIVATE KEY-----\nAAAA\n"
                             "-----END PRIVATE KEY-----\n";
  assert_int_equal(write(fd, junk, sizeof junk - 1), (ssize_t)(sizeof junk - 1));
  close(fd);
  envt e = {{"HCP_VAULT_TOKEN", "tok", "VAULT_CACERT", path, NULL}};
  vault_config c;
  kms_error err;
  assert_int_equal(load(&e, NULL, 0, &c, &err), KMS_INVALID_ARGUMENT);
  assert_non_null(strstr(err.message, "VAULT_CACERT"));
  assert_non_null(strstr(err.message, "no PEM certificate"));
  /* an empty file too */
  fd = open(path, O_WRONLY | O_TRUNC);
  close(fd);
  assert_int_equal(load(&e, NULL, 0, &c, &err), KMS_INVALID_ARGUMENT);
  unlink(path);
}

/* Issue 10 item 12: a description goes inside the data, next to key (LiteLLM's layout). */
static void test_description_in_data(void **state) {
  char *b;
  size_t n;
  kms_error err;
  assert_int_equal(kv2_write_body_desc("v", 1, "Virtual key \"a\" \xc3\xa9", 1, 3, &b, &n, &err),
                   KMS_OK);
  assert_string_equal(b, "{\"data\":{\"key\":\"v\",\"description\":\"Virtual key \\\"a\\\" \xc3\xa9\"},"
                         "\"options\":{\"cas\":3}}");
  kv2_free_body(b, n);
  assert_int_equal(kv2_write_body_desc("v", 1, "\xff", 0, 0, &b, &n, &err), KMS_INVALID_ARGUMENT);
  assert_non_null(strstr(err.message, "description is not valid UTF-8"));
  char big[KV2_DESCRIPTION_MAX + 2];
  memset(big, 'd', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(kv2_write_body_desc("v", 1, big, 0, 0, &b, &n, &err), KMS_INVALID_ARGUMENT);
  /* the setting: trimmed, blank = unset, checked at create */
  vault_config c;
  envt e = {{"HCP_VAULT_TOKEN", "t", NULL}};
  kms_setting s[] = {{"description", "  stored by LiteLLM "}, {"description_metadata", "true"}};
  assert_int_equal(load(&e, s, 2, &c, &err), KMS_OK);
  assert_string_equal(c.description, "stored by LiteLLM");
  assert_int_equal(c.description_metadata, 1);
  vault_config_free(&c);
  kms_setting blank = {"description", "  "};
  assert_int_equal(load(&e, &blank, 1, &c, &err), KMS_OK);
  assert_null(c.description);
  assert_int_equal(c.description_metadata, 0);
  vault_config_free(&c);
  kms_setting bad = {"description", "\xc3"};
  assert_int_equal(load(&e, &bad, 1, &c, &err), KMS_INVALID_ARGUMENT);
  assert_non_null(strstr(err.message, "setting 'description' must be valid UTF-8"));
  kms_setting bad2 = {"description", big};
  assert_int_equal(load(&e, &bad2, 1, &c, &err), KMS_INVALID_ARGUMENT);
}

/* Issue 10 item 10: LiteLLM's SSL_VERIFY / SSL_CERT_FILE, after the VAULT_* ones. */
static void test_litellm_tls_variables(void **state) {
  vault_config c;
  kms_error err;
  static const struct {
    const char *kv[8];
    int skip;
    const char *var;
  } ok[] = {
    {{"SSL_VERIFY", "False", NULL}, 1, "SSL_VERIFY"},
    {{"SSL_VERIFY", " false ", NULL}, 1, "SSL_VERIFY"},
    {{"SSL_VERIFY", "0", NULL}, 1, "SSL_VERIFY"},
    {{"SSL_VERIFY", "TRUE", NULL}, 0, NULL},
    {{"SSL_VERIFY", "1", NULL}, 0, NULL},
    /* VAULT_SKIP_VERIFY, set either way, wins */
    {{"SSL_VERIFY", "false", "VAULT_SKIP_VERIFY", "false", NULL}, 0, NULL},
    {{"SSL_VERIFY", "true", "BAO_SKIP_VERIFY", "true", NULL}, 1, "VAULT_SKIP_VERIFY"},
    /* SSL_CERT_FILE is not looked at when verification is off or VAULT_CAPATH is set */
    {{"SSL_VERIFY", "false", "SSL_CERT_FILE", "/nonexistent/ca.pem", NULL}, 1, "SSL_VERIFY"},
    {{"VAULT_CAPATH", "/tmp", "SSL_CERT_FILE", "/nonexistent/ca.pem", NULL}, 0, NULL},
  };
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
    envt e = {{"HCP_VAULT_TOKEN", "tok", NULL}};
    for (size_t k = 0; ok[i].kv[k]; k++) e.kv[2 + k] = ok[i].kv[k];
    if (load(&e, NULL, 0, &c, &err) != KMS_OK) fail_msg("case %zu: %s", i, err.message);
    assert_int_equal(c.skip_verify, ok[i].skip);
    if (ok[i].var) assert_string_equal(c.skip_verify_var, ok[i].var);
    assert_null(c.ca_file);
    vault_config_free(&c);
  }
  char path[] = "/tmp/vault_sslcert.XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "junk\n", 5), 5);
  close(fd);
  const struct {
    const char *name, *value, *needle;
  } bad[] = {
    {"SSL_VERIFY", "maybe", "SSL_VERIFY must be true, false or the path"},
    {"SSL_VERIFY", "/nonexistent/ca.pem", "SSL_VERIFY must be true, false or the path"},
    {"SSL_VERIFY", path, "SSL_VERIFY"},
    {"SSL_CERT_FILE", path, "SSL_CERT_FILE"},
    {"SSL_CERT_FILE", "/nonexistent/ca.pem", "SSL_CERT_FILE=/nonexistent/ca.pem is not a readable"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    envt e = {{"HCP_VAULT_TOKEN", "tok", bad[i].name, bad[i].value, NULL}};
    assert_int_equal(load(&e, NULL, 0, &c, &err), KMS_INVALID_ARGUMENT);
    if (!strstr(err.message, bad[i].needle)) fail_msg("case %zu: %s", i, err.message);
  }
  unlink(path);
}

/* Issue 15: every numeric variable and setting: a value past its range
 * (including int64 overflow) is an error naming it; the largest accepted
 * values do not overflow anything derived from them (UBSan in --asan). */
static void test_numeric_overflow(void **state) {
  static const char *const huge[] = {"9223372036854775807", "99999999999999999999999",
                                     "9223372036854775807s", "2562047788015216h",
                                     "9223372036854775808ms", "-9223372036854775808"};
  static const char *const envs[] = {"HCP_VAULT_REFRESH_INTERVAL", "VAULT_CLIENT_TIMEOUT",
                                     "VAULT_MAX_RETRIES"};
  static const char *const settings[] = {"stale_if_error", "stale_retry_interval",
                                         "connect_timeout", "max_response_bytes",
                                         "max_idle_connections"};
  vault_config c;
  kms_error err;
  for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
    for (size_t k = 0; k < sizeof envs / sizeof *envs; k++) {
      envt e = {{"HCP_VAULT_TOKEN", "tok", envs[k], huge[i], NULL}};
      if (load(&e, NULL, 0, &c, &err) != KMS_INVALID_ARGUMENT || !strstr(err.message, envs[k]))
        fail_msg("%s=%s: %s", envs[k], huge[i], err.message);
    }
    for (size_t k = 0; k < sizeof settings / sizeof *settings; k++) {
      envt e = {{"HCP_VAULT_TOKEN", "tok", NULL}};
      kms_setting st = {settings[k], huge[i]};
      if (load(&e, &st, 1, &c, &err) != KMS_INVALID_ARGUMENT || !strstr(err.message, settings[k]))
        fail_msg("%s=%s: %s", settings[k], huge[i], err.message);
    }
  }
  /* the largest values accepted load, and the cache arithmetic built on
   * them (ttl * 1000, expiry + stale window, refresh points) stays defined */
  char big_s[32], big_d[32];
  snprintf(big_s, sizeof big_s, "%lld", (long long)(INT64_MAX / 1000000));
  snprintf(big_d, sizeof big_d, "%lldms", (long long)(INT64_MAX / 1000));
  envt e = {{"HCP_VAULT_TOKEN", "tok", "HCP_VAULT_REFRESH_INTERVAL", big_s,
             "VAULT_CLIENT_TIMEOUT", big_d, NULL}};
  kms_setting st[] = {{"stale_if_error", big_d}, {"stale_retry_interval", big_d}};
  if (load(&e, st, 2, &c, &err) != KMS_OK) fail_msg("largest values: %s", err.message);
  assert_true(c.timeout_ms > 0 && c.stale_retry_ms > 0);
  /* what plugin.c and cache.c derive from them */
  int64_t ttl = c.refresh_interval_s * 1000, stale = c.stale_if_error_s * 1000;
  int64_t now = INT64_MAX / 1000; /* a monotonic clock after ~292 years of uptime */
  assert_true(now + ttl + stale > now);
  assert_true(ttl * 900 / 1000 > 0); /* the refresh point, 90% of the TTL */
  vault_config_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_names),
    cmocka_unit_test(test_encoding),
    cmocka_unit_test(test_url_layout),
    cmocka_unit_test(test_addr_path_prefix),
    cmocka_unit_test(test_config_defaults_and_fallbacks),
    cmocka_unit_test(test_config_errors),
    cmocka_unit_test(test_durations),
    cmocka_unit_test(test_bodies),
    cmocka_unit_test(test_parse_read),
    cmocka_unit_test(test_status_map),
    cmocka_unit_test(test_parse_read_refuses_nul_and_bad_utf8),
    cmocka_unit_test(test_cacert_without_certificate),
    cmocka_unit_test(test_litellm_tls_variables),
    cmocka_unit_test(test_description_in_data),
    cmocka_unit_test(test_numeric_overflow),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
