/*
 * config.c -- read, normalise and validate every environment variable and
 * setting of the Vault plugin (see config.h for the precedence rules and
 * README.md for the table). Errors name the variable and the fix.
 */
#include "config.h"

#include "common.h"
#include "kms_plugin_util.h"
#include "kv2.h"
#include "kpc_settings.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>


typedef struct env_ctx {
  const kms_host *host;
  const char *family; /* "HCP_VAULT_", "VAULT_" or "BAO_": see pick_family() */
} env_ctx;

/* The first of `names` set and not blank (kpc_settings.h). */
static const char *env_first(const env_ctx *e, const char *const *names, const char **which) {
  return kpc_env_first(e->host, names, which);
}

/*
 * The variables that say where secrets are read and as whom, named in each
 * family as {family}{suffix}. One family is used for all of them (issue 10
 * item 9): mixing LiteLLM's HCP_VAULT_ADDR with a VAULT_NAMESPACE exported for
 * the Vault CLI would read secrets from another place than LiteLLM does.
 */
static const char *const FAMILY_SUFFIXES[] = {"ADDR", "TOKEN", "NAMESPACE", "CLIENT_CERT",
                                              "CLIENT_KEY", NULL};
/* LiteLLM-only names: any of them set also selects the HCP_VAULT_ family. */
static const char *const HCP_ONLY[] = {
    "HCP_VAULT_SECRET_NAMESPACE", "HCP_VAULT_LOGIN_NAMESPACE", "HCP_VAULT_MOUNT_NAME",
    "HCP_VAULT_PATH_PREFIX",      "HCP_VAULT_CERT_ROLE",       "HCP_VAULT_APPROLE_ROLE_ID",
    "HCP_VAULT_APPROLE_SECRET_ID", "HCP_VAULT_APPROLE_MOUNT_PATH", "HCP_VAULT_REFRESH_INTERVAL",
    NULL};
static const char *const FAMILIES[] = {"HCP_VAULT_", "VAULT_", "BAO_", NULL};

/* {family}{suffix} into buf (always fits: the longest is 22 bytes). */
static const char *fam_name(const char *family, const char *suffix, char buf[32]) {
  snprintf(buf, 32, "%s%s", family, suffix);
  return buf;
}

static int env_set(const env_ctx *e, const char *name) {
  const char *which;
  return env_first(e, (const char *const[]){name, NULL}, &which) != NULL;
}

static int family_set(const env_ctx *e, const char *family) {
  char buf[32];
  for (size_t i = 0; FAMILY_SUFFIXES[i]; i++)
    if (env_set(e, fam_name(family, FAMILY_SUFFIXES[i], buf))) return 1;
  if (strcmp(family, "HCP_VAULT_") == 0)
    for (size_t i = 0; HCP_ONLY[i]; i++)
      if (env_set(e, HCP_ONLY[i])) return 1;
  return 0;
}

/* HCP_VAULT_ when any HCP_VAULT_* variable is set (LiteLLM reads only
 * those), else VAULT_ when any of its family is set, else BAO_; nothing set:
 * HCP_VAULT_ (the defaults). Logs once which family is used and which set
 * variables of the others are ignored (names only). */
static void pick_family(env_ctx *e, const kpc_logger *lg) {
  e->family = FAMILIES[0];
  for (size_t f = 0; FAMILIES[f]; f++)
    if (family_set(e, FAMILIES[f])) {
      e->family = FAMILIES[f];
      break;
    }
  char ignored[256] = "";
  size_t used = 0;
  for (size_t f = 0; FAMILIES[f]; f++) {
    if (FAMILIES[f] == e->family) continue;
    for (size_t i = 0; FAMILY_SUFFIXES[i]; i++) {
      char buf[32];
      if (!env_set(e, fam_name(FAMILIES[f], FAMILY_SUFFIXES[i], buf))) continue;
      int w = snprintf(ignored + used, sizeof ignored - used, "%s%s", used ? ", " : "", buf);
      if (w > 0 && (size_t)w < sizeof ignored - used) used += (size_t)w;
    }
  }
  kpc_logf(lg, KMS_LOG_INFO, "address, token, namespace and client certificate come from the "
             "%s* variables%s%s%s", e->family,
             e->family == FAMILIES[0] ? " (LiteLLM's)" : " (no HCP_VAULT_* variable is set)",
             used ? "; ignored: " : "", ignored);
}

int vault_parse_duration_ms(const char *s, int64_t *ms) { return kpc_parse_duration_ms(s, ms); }

/*
 * Normalise a namespace / mount / prefix: trim whitespace and leading and
 * trailing '/', then refuse empty, "." and ".." segments and control
 * characters. "" -> NULL (unset). Returns 0 or -1.
 */
static int norm_path(const char *in, char **out) {
  *out = NULL;
  if (!in) return 0;
  char *s = kpc_dup_trim(in);
  if (!s) return -2;
  char *b = s;
  while (*b == '/') b++;
  size_t n = strlen(b);
  while (n && b[n - 1] == '/') n--;
  b[n] = '\0';
  /* trim again: " ns / " -> "ns " after slash removal */
  while (n && isspace((unsigned char)b[n - 1])) b[--n] = '\0';
  while (*b && isspace((unsigned char)*b)) b++, n--;
  if (!*b) {
    free(s);
    return 0;
  }
  const char *seg = b;
  for (const char *p = b;; p++) {
    if ((unsigned char)*p < 0x20 && *p != '\0') goto bad;
    if (*p == 0x7f) goto bad;
    if (*p == '/' || *p == '\0') {
      size_t len = (size_t)(p - seg);
      if (len == 0 || (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
        goto bad;
      if (!*p) break;
      seg = p + 1;
    }
  }
  memmove(s, b, n + 1);
  *out = s;
  return 0;
bad:
  free(s);
  return -1;
}

static int file_readable(const char *path, int want_dir) {
  struct stat st;
  if (stat(path, &st) != 0) return 0;
  if (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) return 0;
  return access(path, R_OK) == 0;
}

/* 1 if `path` holds at least one PEM certificate (a CA bundle without any
 * would make every TLS request fail, long after create). */
static int has_certificate(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  if (!x) ERR_clear_error(); /* leave no stale error for libcurl's OpenSSL calls */
  X509_free(x);
  return x != NULL;
}

/* A CA bundle named by `var`: a readable file holding a certificate. */
static kms_status check_ca_file(const char *var, const char *path, kms_error *err) {
  if (!file_readable(path, 0))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s=%s is not a readable file; point it at the PEM CA bundle", var, path);
  if (!has_certificate(path))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s=%s holds no PEM certificate, so no server could be trusted; point "
                         "it at the PEM CA bundle", var, path);
  return KMS_OK;
}

/* Check that the client certificate and key load, match and are in date.
 * Reports the file at fault. */
static kms_status check_client_cert(const char *cert_var, const char *cert, const char *key_var,
                                    const char *key, kms_error *err) {
  kms_status st = KMS_OK;
  X509 *x = NULL;
  EVP_PKEY *pk = NULL;
  FILE *f = fopen(cert, "r");
  if (!f)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s=%s cannot be read; point it at a readable PEM certificate",
                         cert_var, cert);
  x = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  if (!x)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s=%s is not a PEM certificate", cert_var, cert);
  f = fopen(key, "r");
  if (!f) {
    st = kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                       "%s=%s cannot be read; point it at a readable PEM private key", key_var,
                       key);
    goto out;
  }
  pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
  fclose(f);
  if (!pk) {
    st = kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                       "%s=%s is not an unencrypted PEM private key", key_var, key);
    goto out;
  }
  if (X509_check_private_key(x, pk) != 1) {
    st = kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                       "%s=%s does not match the certificate in %s=%s", key_var, key, cert_var,
                       cert);
    goto out;
  }
  if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
    st = kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                       "%s=%s has expired; renew the client certificate", cert_var, cert);
    goto out;
  }
  if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
    st = kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                       "%s=%s is not valid yet (check the clock)", cert_var, cert);
    goto out;
  }
out:
  EVP_PKEY_free(pk);
  X509_free(x);
  return st;
}

/* A path prefix of the address (LiteLLM appends /v1/... to whatever
 * HCP_VAULT_ADDR holds, so a gateway in front of Vault at /vault works):
 * '/'-separated segments, none empty, "." or ".." (also percent-encoded:
 * libcurl or the gateway would resolve them), no control characters.
 * 0 if usable. */
static int addr_path_ok(const char *path) {
  const char *seg = path + 1; /* path starts with '/' */
  for (const char *p = seg;; p++) {
    if ((unsigned char)*p < 0x20 && *p) return 0;
    if (*p == 0x7f) return 0;
    if (*p != '/' && *p) continue;
    size_t len = (size_t)(p - seg), dots = 0;
    for (size_t i = 0; i < len; i++) {
      if (seg[i] == '.') dots++;
      else if (seg[i] == '%' && i + 2 < len && seg[i + 1] == '2' &&
               (seg[i + 2] == 'e' || seg[i + 2] == 'E'))
        dots++, i += 2;
      else {
        dots = 3; /* an ordinary character: not a dot segment */
        break;
      }
    }
    if (len == 0 || dots == 1 || dots == 2) return 0;
    if (!*p) return 1;
    seg = p + 1;
  }
}

/* Validate and normalise the Vault address: http(s)://host[:port][/prefix],
 * no credentials, query or fragment; trailing '/' removed. Requests go to
 * {addr}/v1/..., as in LiteLLM's client. */
static kms_status norm_addr(const char *var, const char *in, char **out, const kpc_logger *lg,
                            kms_error *err) {
  *out = NULL;
  char *s = kpc_dup_trim(in);
  if (!s) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  size_t n = strlen(s);
  while (n && s[n - 1] == '/') s[--n] = '\0';
  kms_status st = KMS_OK;
  CURLU *u = curl_url();
  char *host = NULL, *user = NULL, *query = NULL, *frag = NULL;
  if (!u) {
    free(s);
    return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  }
  if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0) {
    st = kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                       "%s must start with http:// or https:// (got '%.80s'), e.g. "
                       "https://vault.example.com:8200", var, s);
    goto out;
  }
  /* The path is checked on the text as written: libcurl would silently
   * resolve "/a/../b". */
  const char *path = strchr(s + (s[4] == 's' ? 8 : 7), '/');
  if (curl_url_set(u, CURLUPART_URL, s, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host) {
    st = kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                       "%s is not a valid URL (got '%.80s'), e.g. https://vault.example.com:8200",
                       var, strchr(s, '@') ? "(not shown: it has a '@')" : s);
    goto out;
  }
  curl_url_get(u, CURLUPART_USER, &user, 0);
  curl_url_get(u, CURLUPART_QUERY, &query, 0);
  curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0);
  if (user) { /* first: the later messages quote the address */
    st = kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                       "%s must not contain credentials (user@); use HCP_VAULT_TOKEN", var);
    goto out;
  }
  if (query || frag || strpbrk(s, "?#")) {
    st = kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                       "%s must not have a query (?) or fragment (#): use "
                       "scheme://host[:port][/path] (got '%.80s')", var, s);
    goto out;
  }
  if (path && !addr_path_ok(path)) {
    st = kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                       "%s has a bad path prefix (got '%.80s'): use '/'-separated segments "
                       "without empty, '.' or '..' segments or control characters, e.g. "
                       "https://gw.example.com/vault", var, s);
    goto out;
  }
  if (path && n >= 3 && strcmp(s + n - 3, "/v1") == 0)
    kpc_logf(lg, KMS_LOG_WARN,
               "%s ends in /v1: requests go to %.80s/v1/... (as LiteLLM's client does); drop the "
               "/v1 if it is Vault's API root", var, s);
  *out = s;
  s = NULL;
out:
  curl_free(host);
  curl_free(user);
  curl_free(query);
  curl_free(frag);
  curl_url_cleanup(u);
  free(s);
  return st;
}

/* Validate a proxy URL: scheme://host[:port] with scheme http, https,
 * socks5 or socks5h (Go's set); no scheme means http://, as in Go. */
static kms_status norm_proxy(const char *var, const char *in, char **out, kms_error *err) {
  *out = NULL;
  char *t = kpc_dup_trim(in);
  if (!t) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  size_t n = strlen(t) + 8;
  char *s = malloc(n);
  if (!s) {
    free(t);
    return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  }
  snprintf(s, n, "%s%s", strstr(t, "://") ? "" : "http://", t);
  free(t);
  static const char *const schemes[] = {"http://", "https://", "socks5://", "socks5h://"};
  int known = 0;
  for (size_t i = 0; i < sizeof schemes / sizeof *schemes; i++)
    known |= strncasecmp(s, schemes[i], strlen(schemes[i])) == 0;
  CURLU *u = curl_url();
  char *host = NULL;
  int ok = known && u && curl_url_set(u, CURLUPART_URL, s, 0) == CURLUE_OK &&
           curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host && *host;
  curl_free(host);
  curl_url_cleanup(u);
  if (!ok) {
    kpc_wipe_free(s); /* may hold proxy credentials */
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s is not a usable proxy URL: use http://host:port (or https://, "
                         "socks5://, socks5h://)", var);
  }
  *out = s;
  return KMS_OK;
}

/* Shorthand: the fallback list of a variable. */
#define NAMES KPC_NAMES

static kms_status take_str(const env_ctx *e, const char *const *names, char **out,
                           const char **which, kms_error *err) {
  const char *v = env_first(e, names, which);
  *out = NULL;
  if (!v) return KMS_OK;
  *out = kpc_dup_trim(v);
  return *out ? KMS_OK : kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
}

static kms_status take_path(const env_ctx *e, const char *const *names, char **out,
                            const char *what, kms_error *err) {
  const char *which;
  const char *v = env_first(e, names, &which);
  *out = NULL;
  if (!v) return KMS_OK;
  int r = norm_path(v, out);
  if (r == -2) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  if (r < 0)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s is not a valid %s: use '/'-separated names without empty, '.' "
                         "or '..' segments or control characters", which, what);
  return KMS_OK;
}


static void free_hosts(vault_config *cfg) {
  for (size_t i = 0; i < cfg->n_redirect_allowed_hosts; i++) free(cfg->redirect_allowed_hosts[i]);
  free(cfg->redirect_allowed_hosts);
  cfg->redirect_allowed_hosts = NULL;
  cfg->n_redirect_allowed_hosts = 0;
}

/* The setting redirect_allowed_hosts: "host:port,host:port" into lower-case
 * entries (a later setting replaces the list). */
static kms_status set_hosts(void *c, const kpc_setting_row *r, const char *label, const char *v,
                            kms_error *err) {
  vault_config *cfg = c;
  free_hosts(cfg);
  size_t cap = 1;
  for (const char *p = v; *p; p++) cap += *p == ',';
  cfg->redirect_allowed_hosts = calloc(cap + 1, sizeof(char *));
  if (!cfg->redirect_allowed_hosts) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  const char *p = v;
  while (*p) {
    const char *q = strchr(p, ',');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    char tmp[300];
    if (n >= sizeof tmp) /* longer than any host name (253) plus a port */
      return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                           "%s: an entry is longer than %zu characters; list host:port "
                           "entries separated by commas", label, sizeof tmp - 1);
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    char *t = kpc_dup_trim(tmp);
    if (!t) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
    for (char *c2 = t; *c2; c2++) *c2 = (char)tolower((unsigned char)*c2);
    const char *colon = strrchr(t, ':');
    int64_t port;
    if (*t && (!colon || colon == t || kpc_parse_i64(colon + 1, 1, 65535, &port) != 0)) {
      kms_status st = kpc_settings_bad(err, r, label, t);
      free(t);
      return st;
    }
    if (*t)
      cfg->redirect_allowed_hosts[cfg->n_redirect_allowed_hosts++] = t;
    else
      free(t);
    p = q ? q + 1 : p + strlen(p);
  }
  return KMS_OK;
}

/* The setting description: UTF-8 that fits KV's custom_metadata. */
static int description_ok(const char *s) {
  size_t n = strlen(s);
  return n <= KV2_DESCRIPTION_MAX && kpc_utf8_valid((const unsigned char *)s, n);
}

/* ---- the settings table (kpc_settings.h) -------------------------------- */

/*
 * One row per number, switch, choice or text: where it comes from
 * (environment variables, first set wins, and/or a `key_management_settings`
 * key; a setting wins over a variable), how it is parsed, its default and
 * range, and the vault_config field it lands in. Adding a setting is adding
 * a row (and its README line). Booleans are Go's (strconv.ParseBool), as
 * Vault reads VAULT_SKIP_VERIFY, for the variables and the settings alike.
 * (file scope: the compound literals of KPC_NAMES are static there)
 */
#define F(f, t) KPC_FIELD(vault_config, f, t)
static const kpc_setting_row ROWS[] = {
    {.env = KPC_NAMES("HCP_VAULT_REFRESH_INTERVAL"), .kind = KPC_SET_INT,
     F(refresh_interval_s, KPC_F_I64), .def = VAULT_DEFAULT_REFRESH_S, .lo = 0,
     .hi = INT64_MAX / 1000000, .what = "a whole number of seconds >= 0 (0 disables the cache)"},
    {.env = KPC_NAMES("VAULT_CLIENT_TIMEOUT", "BAO_CLIENT_TIMEOUT"), .kind = KPC_SET_DURATION,
     F(timeout_ms, KPC_F_I64), .def = VAULT_DEFAULT_TIMEOUT_MS, .lo = 1, .hi = INT64_MAX / 4,
     .what = "a positive number of seconds or a duration such as '30s'"},
    {.env = KPC_NAMES("VAULT_MAX_RETRIES", "BAO_MAX_RETRIES"), .kind = KPC_SET_INT,
     F(max_retries, KPC_F_INT), .def = VAULT_DEFAULT_MAX_RETRIES, .lo = 0, .hi = 100,
     .what = "a whole number between 0 and 100"},
    {.env = KPC_NAMES("VAULT_SKIP_VERIFY", "BAO_SKIP_VERIFY"), .kind = KPC_SET_BOOL,
     F(skip_verify, KPC_F_INT), .dialect = KPC_BOOL_GO},
    {.key = "access_mode", .kind = KPC_SET_ENUM, F(access_mode, KPC_F_INT),
     .def = VAULT_ACCESS_READ_ONLY, .choices = KPC_NAMES("read_only", "write_only", "read_and_write"),
     .what = "read_only, write_only or read_and_write"},
    {.key = "auth_method", .kind = KPC_SET_ENUM, F(auth_requested, KPC_F_INT),
     .def = VAULT_AUTH_REQUEST_AUTO, .choices = KPC_NAMES("auto", "token", "cert", "approle"),
     .what = "auto, token, cert or approle"},
    {.key = "delete_mode", .kind = KPC_SET_ENUM, F(delete_mode, KPC_F_INT),
     .def = VAULT_DELETE_SOFT, .choices = KPC_NAMES("soft", "destroy"), .what = "soft or destroy"},
    {.key = "stale_if_error", .kind = KPC_SET_DURATION, F(stale_if_error_s, KPC_F_I64),
     .def = VAULT_DEFAULT_STALE_IF_ERROR_S, .lo = 0, .hi = INT64_MAX / 4, .div = 1000,
     .what = "a number of seconds or a duration such as '90s' or '1h'"},
    {.key = "stale_retry_interval", .kind = KPC_SET_DURATION, F(stale_retry_ms, KPC_F_I64),
     .def = VAULT_DEFAULT_STALE_RETRY_MS, .lo = 0, .hi = INT64_MAX / 4,
     .what = "a number of seconds or a duration such as '90s' or '1h'"},
    {.key = "connect_timeout", .kind = KPC_SET_DURATION, F(connect_timeout_ms, KPC_F_I64),
     .def = VAULT_DEFAULT_CONNECT_TIMEOUT_MS, .lo = 1, .hi = INT64_MAX / 4,
     .what = "a number of seconds or a duration such as '90s' (greater than 0)"},
    {.key = "background_refresh", .kind = KPC_SET_BOOL, F(background_refresh, KPC_F_INT),
     .dialect = KPC_BOOL_GO},
    {.key = "max_response_bytes", .kind = KPC_SET_INT, F(max_response_bytes, KPC_F_SIZE),
     .def = VAULT_DEFAULT_MAX_RESPONSE, .lo = 1024, .hi = 256 * 1024 * 1024,
     .what = "an integer between 1024 and 268435456"},
    {.key = "max_idle_connections", .kind = KPC_SET_INT, F(max_idle_connections, KPC_F_UINT),
     .def = VAULT_DEFAULT_MAX_IDLE, .lo = 1, .hi = 256, .what = "an integer between 1 and 256"},
    {.key = "redirect_allowed_hosts", .kind = KPC_SET_CUSTOM, .set = set_hosts,
     .what = "a comma-separated list of host:port (e.g. vault-2.example.com:8200)"},
    {.key = "description", .kind = KPC_SET_STRING, F(description, KPC_F_STR),
     .check = description_ok, .what = "valid UTF-8 text of at most 4096 bytes"},
    {.key = "description_metadata", .kind = KPC_SET_BOOL, F(description_metadata, KPC_F_INT),
     .dialect = KPC_BOOL_GO},
    {.key = "neg_ttl", .kind = KPC_SET_DURATION, F(neg_ttl_ms, KPC_F_I64), .lo = 0,
     .hi = INT64_MAX / 4,
     .what = "a number of seconds or a duration such as '5s' (0 disables negative caching)"},
    /* LiteLLM's host-level key_management_settings */
    {.key = "store_virtual_keys", .kind = KPC_SET_IGNORED},
    {.key = "prefix_for_stored_virtual_keys", .kind = KPC_SET_IGNORED},
    {.key = "hosted_keys", .kind = KPC_SET_IGNORED},
    {.key = "custom_secret_manager", .kind = KPC_SET_IGNORED},
};
#undef F
#define N_ROWS (sizeof ROWS / sizeof *ROWS)
_Static_assert(KV2_DESCRIPTION_MAX == 4096, "the description row's message says 4096");

void vault_config_free(vault_config *cfg) {
  if (!cfg) return;
  free(cfg->addr);
  free(cfg->secret_namespace);
  free(cfg->login_namespace);
  free(cfg->mount);
  free(cfg->prefix);
  kpc_wipe_free(cfg->token);
  free(cfg->client_cert);
  free(cfg->client_key);
  free(cfg->cert_role);
  free(cfg->approle_role_id);
  kpc_wipe_free(cfg->approle_secret_id);
  free(cfg->approle_mount);
  free(cfg->ca_file);
  free(cfg->ca_path);
  free(cfg->tls_server_name);
  kpc_wipe_free(cfg->proxy_explicit); /* proxy URLs may carry credentials */
  kpc_wipe_free(cfg->proxy_http);
  kpc_wipe_free(cfg->proxy_https);
  free(cfg->no_proxy);
  free_hosts(cfg);
  free(cfg->description);
  memset(cfg, 0, sizeof *cfg);
}

/* The proxy variables (see proxy.h for how they are applied). */
static kms_status load_proxies(vault_config *cfg, const env_ctx *e, kms_error *err) {
  const struct {
    const char *const *names;
    size_t field;
  } proxies[] = {
      {NAMES("VAULT_PROXY_ADDR", "VAULT_HTTP_PROXY", "BAO_HTTP_PROXY"),
       offsetof(vault_config, proxy_explicit)},
      {NAMES("HTTPS_PROXY", "https_proxy"), offsetof(vault_config, proxy_https)},
      {NAMES("HTTP_PROXY", "http_proxy"), offsetof(vault_config, proxy_http)},
  };
  const char *which;
  for (size_t i = 0; i < sizeof proxies / sizeof *proxies; i++) {
    const char *v = env_first(e, proxies[i].names, &which);
    kms_status st;
    if (v && (st = norm_proxy(which, v, (char **)((char *)cfg + proxies[i].field), err)) != KMS_OK)
      return st;
  }
  return take_str(e, NAMES("NO_PROXY", "no_proxy"), &cfg->no_proxy, &which, err);
}

/* Pick the login method. `auth_method: auto` (the default) follows LiteLLM's
 * priority: AppRole, then TLS certificate (client cert + key), then static
 * token. An explicit auth_method requires that method's credentials, and
 * `token` with a client certificate keeps the certificate for mutual TLS only. */
static kms_status choose_auth(vault_config *cfg, kms_error *err) {
  if (cfg->approle_role_id || cfg->approle_secret_id) {
    if (!cfg->approle_role_id || !cfg->approle_secret_id)
      return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                           "%s is set but %s is not; AppRole login needs both",
                           cfg->approle_role_id ? "HCP_VAULT_APPROLE_ROLE_ID"
                                                : "HCP_VAULT_APPROLE_SECRET_ID",
                           cfg->approle_role_id ? "HCP_VAULT_APPROLE_SECRET_ID"
                                                : "HCP_VAULT_APPROLE_ROLE_ID");
  }
  if (cfg->cert_role && !cfg->client_cert)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "HCP_VAULT_CERT_ROLE is set but HCP_VAULT_CLIENT_CERT and "
                         "HCP_VAULT_CLIENT_KEY are not; certificate login needs both files");
  switch (cfg->auth_requested) {
  case VAULT_AUTH_REQUEST_APPROLE:
    if (!cfg->approle_role_id)
      return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                           "auth_method is approle but HCP_VAULT_APPROLE_ROLE_ID and "
                           "HCP_VAULT_APPROLE_SECRET_ID are not set");
    cfg->auth_method = VAULT_AUTH_APPROLE;
    return KMS_OK;
  case VAULT_AUTH_REQUEST_CERT:
    if (!cfg->client_cert)
      return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                           "auth_method is cert but HCP_VAULT_CLIENT_CERT and "
                           "HCP_VAULT_CLIENT_KEY are not set");
    cfg->auth_method = VAULT_AUTH_CERT;
    return KMS_OK;
  case VAULT_AUTH_REQUEST_TOKEN:
    if (!cfg->token)
      return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                           "auth_method is token but HCP_VAULT_TOKEN (or VAULT_TOKEN) is "
                           "not set");
    cfg->auth_method = VAULT_AUTH_TOKEN;
    return KMS_OK;
  case VAULT_AUTH_REQUEST_AUTO:
    break;
  }
  if (cfg->approle_role_id) cfg->auth_method = VAULT_AUTH_APPROLE;
  else if (cfg->client_cert) cfg->auth_method = VAULT_AUTH_CERT;
  else if (cfg->token) cfg->auth_method = VAULT_AUTH_TOKEN;
  else
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "no Vault credentials: set HCP_VAULT_TOKEN (or VAULT_TOKEN), or "
                         "HCP_VAULT_CLIENT_CERT+KEY, or HCP_VAULT_APPROLE_ROLE_ID+SECRET_ID "
                         "(VAULT_* and BAO_* are read only when no HCP_VAULT_* variable is "
                         "set)");
  return KMS_OK;
}

/* Where: address, namespaces, mount, prefix. */
static kms_status load_where(vault_config *cfg, const env_ctx *e, const kpc_logger *lg,
                             kms_error *err) {
  kms_status st;
  const char *which, *v;
  /* Address. */
  char fb[32];
  v = env_first(e, NAMES(fam_name(e->family, "ADDR", fb)), &which);
  if ((st = norm_addr(which, v ? v : VAULT_DEFAULT_ADDR, &cfg->addr,
                      lg, err)) != KMS_OK)
    return st;

  /* Namespaces: the secret namespace goes into KV paths, the login namespace
   * into X-Vault-Namespace of login requests; both default to the general one. */
  char *general_ns = NULL;
  if ((st = take_path(e, NAMES(fam_name(e->family, "NAMESPACE", fb)),
                      &general_ns, "namespace", err)) != KMS_OK)
    return st;
  st = take_path(e, NAMES("HCP_VAULT_SECRET_NAMESPACE"), &cfg->secret_namespace, "namespace", err);
  if (st == KMS_OK)
    st = take_path(e, NAMES("HCP_VAULT_LOGIN_NAMESPACE"), &cfg->login_namespace, "namespace", err);
  if (st == KMS_OK && general_ns) {
    if (!cfg->secret_namespace) cfg->secret_namespace = strdup(general_ns);
    if (!cfg->login_namespace) cfg->login_namespace = strdup(general_ns);
    if (!cfg->secret_namespace || !cfg->login_namespace)
      st = kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  }
  free(general_ns);
  if (st != KMS_OK) return st;

  if ((st = take_path(e, NAMES("HCP_VAULT_MOUNT_NAME"), &cfg->mount, "mount path", err)) != KMS_OK)
    return st;
  if (!cfg->mount && !(cfg->mount = strdup(VAULT_DEFAULT_MOUNT)))
    return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  if ((st = take_path(e, NAMES("HCP_VAULT_PATH_PREFIX"), &cfg->prefix, "path prefix", err)) !=
      KMS_OK)
    return st;

  return KMS_OK;
}

/* Who: token, client certificate, cert role, AppRole. */
static kms_status load_credentials(vault_config *cfg, const env_ctx *e, kms_error *err) {
  kms_status st;
  const char *which;
  /* Credentials. */
  const char *token_var, *cert_var, *key_var, *role_var, *sid_var;
  char fb[32];
  if ((st = take_str(e, NAMES(fam_name(e->family, "TOKEN", fb)), &cfg->token,
                     &token_var, err)) != KMS_OK)
    return st;
  if (cfg->token) {
    for (const char *p = cfg->token; *p; p++)
      if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
        return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                             "%s contains spaces or control characters; paste the token "
                             "exactly", token_var);
  }
  char fb2[32], fb3[32];
  if ((st = take_str(e, NAMES(fam_name(e->family, "CLIENT_CERT", fb2)),
                     &cfg->client_cert, &cert_var, err)) != KMS_OK ||
      (st = take_str(e, NAMES(fam_name(e->family, "CLIENT_KEY", fb3)),
                     &cfg->client_key, &key_var, err)) != KMS_OK ||
      (st = take_str(e, NAMES("HCP_VAULT_CERT_ROLE"), &cfg->cert_role, &which, err)) != KMS_OK ||
      (st = take_str(e, NAMES("HCP_VAULT_APPROLE_ROLE_ID"), &cfg->approle_role_id, &role_var,
                     err)) != KMS_OK ||
      (st = take_str(e, NAMES("HCP_VAULT_APPROLE_SECRET_ID"), &cfg->approle_secret_id, &sid_var,
                     err)) != KMS_OK)
    return st;
  if ((st = take_path(e, NAMES("HCP_VAULT_APPROLE_MOUNT_PATH"), &cfg->approle_mount,
                      "AppRole mount path", err)) != KMS_OK)
    return st;
  if (!cfg->approle_mount && !(cfg->approle_mount = strdup(VAULT_DEFAULT_APPROLE_MOUNT)))
    return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");

  if (!!cfg->client_cert != !!cfg->client_key)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s=%.120s is set but %s is not; set both the client certificate "
                         "and its key", cfg->client_cert ? cert_var : key_var,
                         cfg->client_cert ? cfg->client_cert : cfg->client_key,
                         cfg->client_cert ? key_var : cert_var);
  if (cfg->client_cert &&
      (st = check_client_cert(cert_var, cfg->client_cert, key_var, cfg->client_key, err)) != KMS_OK)
    return st;

  return KMS_OK;
}

/* TLS trust: CA file/dir and server name (VAULT_SKIP_VERIFY is in the table). */
static kms_status load_tls(vault_config *cfg, const env_ctx *e, kms_error *err) {
  kms_status st;
  const char *which;
  /* TLS. */
  if ((st = take_str(e, NAMES("VAULT_CACERT", "BAO_CACERT"), &cfg->ca_file, &which, err)) != KMS_OK)
    return st;
  if (cfg->ca_file && (st = check_ca_file(which, cfg->ca_file, err)) != KMS_OK) return st;
  if ((st = take_str(e, NAMES("VAULT_CAPATH", "BAO_CAPATH"), &cfg->ca_path, &which, err)) != KMS_OK)
    return st;
  if (cfg->ca_path && !file_readable(cfg->ca_path, 1))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s=%s is not a readable directory; point it at a c_rehash'ed CA "
                         "directory", which, cfg->ca_path);
  if ((st = take_str(e, NAMES("VAULT_TLS_SERVER_NAME", "BAO_TLS_SERVER_NAME"),
                     &cfg->tls_server_name, &which, err)) != KMS_OK)
    return st;
  if (cfg->tls_server_name) {
    for (const char *p = cfg->tls_server_name; *p; p++)
      if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
        return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                             "%s must be a DNS host name (letters, digits, '-', '.')", which);
  }

  return KMS_OK;
}

/*
 * LiteLLM's global TLS settings, which its Vault client uses (get_ssl_verify
 * in LiteLLM): SSL_VERIFY is the path of an existing CA bundle, or a boolean
 * (true/false in any case, as LiteLLM's str_to_bool; also 1/0); with
 * verification on, SSL_CERT_FILE is the CA bundle. Both come AFTER the
 * VAULT_* ones: VAULT_SKIP_VERIFY (set either way) decides verification,
 * VAULT_CACERT / VAULT_CAPATH the trust. SSL_VERIFY is always checked;
 * SSL_CERT_FILE only when it is used (a bad one is an error where LiteLLM
 * silently ignores a missing file).
 */
static kms_status load_litellm_tls(vault_config *cfg, const env_ctx *e, kms_error *err) {
  const char *which;
  const char *sv = env_first(e, NAMES("SSL_VERIFY"), &which);
  int skip_set = env_first(e, NAMES("VAULT_SKIP_VERIFY", "BAO_SKIP_VERIFY"), &which) != NULL;
  int verify = 1;
  char *sv_path = NULL;
  if (sv) {
    char *t = kpc_dup_trim(sv);
    if (!t) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
    if (strcasecmp(t, "true") == 0 || strcmp(t, "1") == 0) verify = 1;
    else if (strcasecmp(t, "false") == 0 || strcmp(t, "0") == 0) verify = 0;
    else if (access(t, F_OK) == 0) sv_path = t, t = NULL;
    else {
      kms_status st = kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                                    "SSL_VERIFY must be true, false or the path of a PEM CA "
                                    "bundle file (got '%.80s', which is neither)", t);
      free(t);
      return st;
    }
    free(t);
  }
  kms_status st = KMS_OK;
  if (!skip_set && !verify) {
    cfg->skip_verify = 1;
    cfg->skip_verify_var = "SSL_VERIFY";
  }
  if (cfg->ca_file || cfg->ca_path || cfg->skip_verify) {
    free(sv_path);
    return KMS_OK;
  }
  if (sv_path) {
    if ((st = check_ca_file("SSL_VERIFY", sv_path, err)) == KMS_OK) cfg->ca_file = sv_path;
    else free(sv_path);
    return st;
  }
  if ((st = take_str(e, NAMES("SSL_CERT_FILE"), &cfg->ca_file, &which, err)) != KMS_OK ||
      !cfg->ca_file)
    return st;
  return check_ca_file("SSL_CERT_FILE", cfg->ca_file, err);
}

static kms_status load(vault_config *cfg, env_ctx *e, const kms_setting *settings,
                       size_t n_settings, const kpc_logger *lg, kms_error *err) {
  kms_status st;
  kpc_settings_defaults(ROWS, N_ROWS, cfg);
  pick_family(e, lg);
  if ((st = load_where(cfg, e, lg, err)) != KMS_OK || (st = load_credentials(cfg, e, err)) != KMS_OK ||
      (st = load_tls(cfg, e, err)) != KMS_OK || (st = load_proxies(cfg, e, err)) != KMS_OK ||
      (st = kpc_settings_apply_env(ROWS, N_ROWS, cfg, e->host, err)) != KMS_OK || (st = load_litellm_tls(cfg, e, err)) != KMS_OK)
    return st;
  if (cfg->skip_verify && !cfg->skip_verify_var) cfg->skip_verify_var = "VAULT_SKIP_VERIFY";

  /* Settings (after the environment: a setting wins). */
  if ((st = kpc_settings_apply(ROWS, N_ROWS, cfg, settings, n_settings, lg, err)) != KMS_OK)
    return st;
  if (cfg->connect_timeout_ms > cfg->timeout_ms) cfg->connect_timeout_ms = cfg->timeout_ms;
  if ((st = choose_auth(cfg, err)) != KMS_OK) return st;

  if (cfg->skip_verify && strncmp(cfg->addr, "https://", 8) == 0)
    kpc_logf(lg, KMS_LOG_WARN,
               "%s turns TLS verification off: the Vault server's TLS certificate is NOT "
               "verified, so anyone on the network path can impersonate it; use VAULT_CACERT "
               "(or SSL_CERT_FILE) instead", cfg->skip_verify_var);
  return KMS_OK;
}

kms_status vault_config_load(vault_config *cfg, const kms_host *host, const kms_setting *settings,
                             size_t n_settings, const kpc_logger *lg, kms_error *err) {
  memset(cfg, 0, sizeof *cfg);
  env_ctx e = {host, NULL};
  kms_status st = load(cfg, &e, settings, n_settings, lg, err);
  if (st != KMS_OK) vault_config_free(cfg);
  return st;
}
