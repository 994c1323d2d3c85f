/*
 * fuzz_vault_config.c -- the Vault plugin's configuration (vault_config_load)
 * with a fuzzer-made environment (served through kms_host.getenv, never the
 * process environment) and key_management_settings.
 *
 * Input: lines "NAME=value". A NAME the plugin reads from the environment
 * (HCP_VAULT_ADDR, VAULT_CLIENT_TIMEOUT, ...) becomes that variable; any
 * other line is a setting (access_mode, connect_timeout, unknown ones...);
 * a line without '=' is a setting with a NULL value. The certificate, key
 * and CA variables never point at real files: a non-blank value becomes
 * /nonexistent/kmsplug-fuzz/<NAME>. Credentials that must stay secret
 * (HCP_VAULT_TOKEN, VAULT_TOKEN, BAO_TOKEN, HCP_VAULT_APPROLE_SECRET_ID) get
 * a canary prefix.
 *
 * Invariants:
 *   - on failure: INVALID_ARGUMENT/UNSUPPORTED/NO_MEMORY, a non-empty
 *     one-line message, and *cfg left zeroed (freed);
 *   - on success: every field is normalised and in its documented range
 *     (address scheme://host[:port][/prefix] without trailing '/', query,
 *     fragment or empty/./.. prefix segment; paths without
 *     leading/trailing '/' or empty/./.. segments or control bytes, timeouts
 *     positive with connect <= total, redirect hosts "host:port" lower-case,
 *     token printable, an auth method whose credentials are present);
 *   - the canary never appears in the error message or in any log line.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_common.h"

#define CANARY "kmsfuzzTOKc4n4ry"

static const char *const env_names[] = {
    "HCP_VAULT_ADDR", "VAULT_ADDR", "BAO_ADDR", "HCP_VAULT_NAMESPACE", "VAULT_NAMESPACE",
    "BAO_NAMESPACE", "HCP_VAULT_SECRET_NAMESPACE", "HCP_VAULT_LOGIN_NAMESPACE",
    "HCP_VAULT_MOUNT_NAME", "HCP_VAULT_PATH_PREFIX", "HCP_VAULT_TOKEN", "VAULT_TOKEN", "BAO_TOKEN",
    "HCP_VAULT_CLIENT_CERT", "VAULT_CLIENT_CERT", "BAO_CLIENT_CERT", "HCP_VAULT_CLIENT_KEY",
    "VAULT_CLIENT_KEY", "BAO_CLIENT_KEY", "HCP_VAULT_CERT_ROLE", "HCP_VAULT_APPROLE_ROLE_ID",
    "HCP_VAULT_APPROLE_SECRET_ID", "HCP_VAULT_APPROLE_MOUNT_PATH", "VAULT_CACERT", "BAO_CACERT",
    "VAULT_CAPATH", "BAO_CAPATH", "VAULT_TLS_SERVER_NAME", "BAO_TLS_SERVER_NAME",
    "VAULT_SKIP_VERIFY", "BAO_SKIP_VERIFY", "HCP_VAULT_REFRESH_INTERVAL", "VAULT_CLIENT_TIMEOUT",
    "BAO_CLIENT_TIMEOUT", "VAULT_MAX_RETRIES", "BAO_MAX_RETRIES", "SSL_VERIFY", "SSL_CERT_FILE",
    NULL};

static int is_file_var(const char *n) {
  return strstr(n, "_CLIENT_CERT") || strstr(n, "_CLIENT_KEY") || strstr(n, "CACERT") ||
         strstr(n, "CAPATH") || !strcmp(n, "SSL_CERT_FILE");
}
static int is_secret_var(const char *n) {
  return !strcmp(n, "HCP_VAULT_TOKEN") || !strcmp(n, "VAULT_TOKEN") || !strcmp(n, "BAO_TOKEN") ||
         !strcmp(n, "HCP_VAULT_APPROLE_SECRET_ID");
}
static int blank(const char *s) {
  while (*s && isspace((unsigned char)*s)) s++;
  return !*s;
}

static int check_logs; /* 0 when the input itself spells the canary */
static void on_log(void *ctx, kms_log_level level, const char *message) {
  FUZZ_CHECK(message && strnlen(message, 4096) < 4096, "log line not terminated");
  if (check_logs) FUZZ_CHECK(!strstr(message, CANARY), "a credential leaked into a log line: %s", message);
}

static void check_norm_path(const char *what, const char *s) {
  if (!s) return;
  size_t n = strlen(s);
  FUZZ_CHECK(n > 0 && s[0] != '/' && s[n - 1] != '/', "%s '%s' not trimmed of '/'", what, s);
  FUZZ_CHECK(!isspace((unsigned char)s[0]) && !isspace((unsigned char)s[n - 1]),
             "%s '%s' not trimmed of spaces", what, s);
  const char *seg = s;
  for (const char *p = s;; p++) {
    unsigned char c = (unsigned char)*p;
    FUZZ_CHECK(!(c && c < 0x20) && c != 0x7f, "%s has a control byte", what);
    if (c == '/' || !c) {
      size_t l = (size_t)(p - seg);
      FUZZ_CHECK(l && !(l == 1 && seg[0] == '.') && !(l == 2 && seg[0] == '.' && seg[1] == '.'),
                 "%s '%s' has an empty, '.' or '..' segment", what, s);
      if (!c) break;
      seg = p + 1;
    }
  }
}

static void check_ok(const vault_config *c) {
  FUZZ_CHECK(c->addr && (!strncmp(c->addr, "http://", 7) || !strncmp(c->addr, "https://", 8)),
             "addr '%s'", c->addr ? c->addr : "(null)");
  size_t al = strlen(c->addr);
  FUZZ_CHECK(c->addr[al - 1] != '/', "addr '%s' ends with '/'", c->addr);
  FUZZ_CHECK(!strpbrk(c->addr, "?#"), "addr '%s' has a query or fragment", c->addr);
  const char *pfx = strchr(c->addr + (c->addr[4] == 's' ? 8 : 7), '/');
  FUZZ_CHECK(!pfx || (!strstr(pfx, "//") && !strstr(pfx, "/./") && !strstr(pfx, "/../") &&
                      strcmp(pfx + strlen(pfx) - 2, "/.") && strcmp(pfx + strlen(pfx) - 3, "/..")),
             "addr '%s' has an empty or dot segment", c->addr);
  for (const char *p = c->addr; *p; p++)
    FUZZ_CHECK((unsigned char)*p > 0x20 && *p != 0x7f, "addr has a space or control byte");
  check_norm_path("secret namespace", c->secret_namespace);
  check_norm_path("login namespace", c->login_namespace);
  FUZZ_CHECK(c->mount != NULL, "no mount");
  check_norm_path("mount", c->mount);
  check_norm_path("prefix", c->prefix);
  FUZZ_CHECK(c->approle_mount != NULL, "no approle mount");
  check_norm_path("approle mount", c->approle_mount);
  if (c->token)
    for (const char *p = c->token; *p; p++)
      FUZZ_CHECK((unsigned char)*p >= 0x21 && (unsigned char)*p <= 0x7e, "token byte 0x%02x",
                 (unsigned char)*p);
  if (c->tls_server_name)
    for (const char *p = c->tls_server_name; *p; p++)
      FUZZ_CHECK(isalnum((unsigned char)*p) || *p == '-' || *p == '.', "tls_server_name");
  FUZZ_CHECK(c->refresh_interval_s >= 0, "refresh_interval_s %lld", (long long)c->refresh_interval_s);
  FUZZ_CHECK(c->timeout_ms > 0, "timeout_ms %lld", (long long)c->timeout_ms);
  FUZZ_CHECK(c->connect_timeout_ms > 0 && c->connect_timeout_ms <= c->timeout_ms,
             "connect_timeout_ms %lld, timeout_ms %lld", (long long)c->connect_timeout_ms,
             (long long)c->timeout_ms);
  FUZZ_CHECK(c->max_retries >= 0 && c->max_retries <= 100, "max_retries %d", c->max_retries);
  FUZZ_CHECK(c->stale_if_error_s >= 0 && c->stale_retry_ms >= 0, "negative stale windows");
  FUZZ_CHECK(c->max_response_bytes >= 1024 && c->max_response_bytes <= 256u * 1024 * 1024,
             "max_response_bytes %zu", c->max_response_bytes);
  FUZZ_CHECK(c->max_idle_connections >= 1 && c->max_idle_connections <= 256,
             "max_idle_connections %u", c->max_idle_connections);
  FUZZ_CHECK(c->access_mode <= VAULT_ACCESS_READ_AND_WRITE && c->delete_mode <= VAULT_DELETE_DESTROY,
             "enum out of range");
  FUZZ_CHECK(c->n_redirect_allowed_hosts == 0 || c->redirect_allowed_hosts, "hosts array");
  for (size_t i = 0; i < c->n_redirect_allowed_hosts; i++) {
    const char *h = c->redirect_allowed_hosts[i], *colon = h ? strrchr(h, ':') : NULL;
    FUZZ_CHECK(h && *h && colon && colon != h, "redirect host %zu '%s'", i, h ? h : "(null)");
    for (const char *p = h; *p; p++)
      FUZZ_CHECK(!isupper((unsigned char)*p), "redirect host '%s' not lower-case", h);
    char *end;
    long port = strtol(colon + 1, &end, 10);
    FUZZ_CHECK(!*end && port >= 1 && port <= 65535, "redirect host '%s' port", h);
  }
  FUZZ_CHECK(!c->redirect_allowed_hosts || !c->redirect_allowed_hosts[c->n_redirect_allowed_hosts],
             "hosts array not NULL-terminated");
  switch (c->auth_method) {
  case VAULT_AUTH_TOKEN: FUZZ_CHECK(c->token, "token auth without a token"); break;
  case VAULT_AUTH_CERT: FUZZ_CHECK(c->client_cert && c->client_key, "cert auth without files"); break;
  case VAULT_AUTH_APPROLE:
    FUZZ_CHECK(c->approle_role_id && c->approle_secret_id, "approle auth without both ids");
    break;
  default: FUZZ_CHECK(0, "auth_method %d", (int)c->auth_method);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 16384) return 0;
  char *buf = malloc(size + 1);
  if (!buf) abort();
  memcpy(buf, data, size);
  buf[size] = '\0';
  check_logs = memmem(data, size, "c4n4ry", 6) == NULL;

  fuzz_env env = {{0}, {0}, 0};
  kms_setting settings[48];
  size_t ns = 0;
  char *owned[FUZZ_ENV_MAX];
  size_t nowned = 0;
  for (char *line = buf; line;) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = '\0';
    char *eq = strchr(line, '=');
    if (eq) *eq = '\0';
    const char *value = eq ? eq + 1 : NULL;
    const char *envname = NULL;
    for (size_t i = 0; env_names[i]; i++)
      if (!strcmp(line, env_names[i])) envname = env_names[i];
    if (envname) {
      if (!value) value = "";
      /* SSL_VERIFY may be a path too: never let it name a real file */
      if ((is_file_var(envname) || (!strcmp(envname, "SSL_VERIFY") && strchr(value, '/'))) &&
          !blank(value)) {
        char *v = malloc(64);
        if (!v) abort();
        snprintf(v, 64, "/nonexistent/kmsplug-fuzz/%s", envname);
        value = owned[nowned++] = v;
      } else if (is_secret_var(envname)) {
        size_t n = strlen(CANARY) + strlen(value) + 1;
        char *v = malloc(n);
        if (!v) abort();
        snprintf(v, n, "%s%s", CANARY, value);
        value = owned[nowned++] = v;
      }
      fuzz_env_set(&env, envname, value);
    } else if (ns < sizeof settings / sizeof *settings) {
      settings[ns].key = line;
      settings[ns++].value = value;
    }
    line = nl ? nl + 1 : NULL;
    if (nowned == FUZZ_ENV_MAX) break;
  }

  kms_host host = {sizeof host, KMS_ABI_MAJOR, KMS_ABI_MINOR, &env, on_log, fuzz_env_get, NULL};
  kpc_logger lg = {&host, VAULT_MSG_PREFIX};
  vault_config cfg;
  kms_error err;
  memset(&err, 0, sizeof err);
  kms_status st = vault_config_load(&cfg, &host, settings, ns, &lg, &err);
  if (st == KMS_OK) {
    check_ok(&cfg);
    vault_config_free(&cfg);
  } else {
    FUZZ_CHECK(st == KMS_INVALID_ARGUMENT || st == KMS_UNSUPPORTED || st == KMS_NO_MEMORY,
               "status %d", (int)st);
    fuzz_check_error(&err, st);
    static const vault_config zero;
    FUZZ_CHECK(!memcmp(&cfg, &zero, sizeof cfg), "config not freed after an error");
    if (check_logs)
      FUZZ_CHECK(!strstr(err.message, CANARY), "a credential leaked into the error: %s",
                 err.message);
  }
  for (size_t i = 0; i < nowned; i++) free(owned[i]);
  free(buf);
  return 0;
}
