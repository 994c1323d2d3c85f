/*
 * config.c -- read, normalise and validate the aws_secret_manager plugin's
 * environment (the AWS SDKs' variables, LiteLLM's AWS_REGION_NAME), its
 * shared credentials/config files and its key_management_settings into one
 * aws_config (see config.h for the precedence). Errors name the variable,
 * setting or file and what is allowed; values of credentials never appear.
 */
#include "config.h"

#include "ini.h"
#include "kpc_common.h"
#include "kpc_log.h"
#include "kpc_settings.h"
#include "kms_plugin_util.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAMES KPC_NAMES
#define OOM(err) kms_error_set((err), KMS_NO_MEMORY, 0, "out of memory")

typedef struct env_ctx {
  const kms_host *host;
} env_ctx;


/* Warnings go to the host's log. */
#define AWS_LOG_PREFIX "aws_secret_manager: "
#define logw(host, ...) \
  kpc_logf(&(kpc_logger){(host), AWS_LOG_PREFIX}, KMS_LOG_WARN, __VA_ARGS__)

/* The first of `names` set and not blank (kpc_settings.h). */
static const char *env_first(const env_ctx *e, const char *const *names, const char **which) {
  return kpc_env_first(e->host, names, which);
}

/* No control characters (and so no CR/LF that could split an HTTP header). */
static int printable(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f) return 0;
  return 1;
}

int aws_region_valid(const char *r) {
  size_t n = strlen(r);
  if (n == 0 || n > 50 || !islower((unsigned char)r[0]) || r[n - 1] == '-') return 0;
  for (size_t i = 0; i < n; i++)
    if (!islower((unsigned char)r[i]) && !isdigit((unsigned char)r[i]) && r[i] != '-') return 0;
  return 1;
}

/* A Secrets Manager name (primary_secret_name): 1-512 of A-Za-z0-9/_+=.@- */
static int sm_name_valid(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 512) return 0;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && !strchr("/_+=.@-", *s)) return 0;
  return 1;
}

/* ---- URLs ------------------------------------------------------------- */

/* Normalise an endpoint URL: http(s)://host[:port] (a lone trailing '/'
 * dropped); no user info, path, query or fragment: requests go to "/" (the
 * JSON and Query protocols) or fixed paths (IMDS). allow_path keeps a path
 * (the container full URI). */
static kms_status norm_url(const char *var, const char *in, int allow_path, char **out,
                           kms_error *err) {
  *out = NULL;
  char *s = kpc_dup_trim(in), *host = NULL, *user = NULL, *query = NULL, *frag = NULL, *path = NULL;
  if (!s) return OOM(err);
  size_t n = strlen(s);
  if (!allow_path)
    while (n && s[n - 1] == '/') s[--n] = '\0';
  kms_status st = KMS_OK;
  CURLU *u = curl_url();
  if (!u) {
    free(s);
    return OOM(err);
  }
  if ((strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0) || !printable(s) ||
      curl_url_set(u, CURLUPART_URL, s, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host) {
    st = kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                       "%s must be an http:// or https:// URL such as https://host:port (got "
                       "'%.80s')", var, strchr(s, '@') ? "(not shown: it has a '@')" : s);
    goto out;
  }
  curl_url_get(u, CURLUPART_USER, &user, 0);
  curl_url_get(u, CURLUPART_QUERY, &query, 0);
  curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0);
  curl_url_get(u, CURLUPART_PATH, &path, 0);
  if (user || query || frag || strpbrk(s, "?#@")) {
    st = kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                       "%s must not contain user@, a query (?) or a fragment (#): use "
                       "scheme://host[:port]", var);
    goto out;
  }
  if (!allow_path && path && strcmp(path, "/") != 0) {
    st = kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                       "%s must not have a path (got '%.80s'): use scheme://host[:port]", var, s);
    goto out;
  }
  *out = s;
  s = NULL;
out:
  curl_free(host);
  curl_free(user);
  curl_free(query);
  curl_free(frag);
  curl_free(path);
  curl_url_cleanup(u);
  free(s);
  return st;
}

/* The SDKs refuse an http:// container full URI unless it is the ECS or EKS
 * agent or a loopback address: credentials must not cross a network in clear. */
static int container_host_ok(const char *url) {
  if (strncmp(url, "https://", 8) == 0) return 1;
  CURLU *u = curl_url();
  char *host = NULL;
  int ok = 0;
  if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host) {
    ok = strncmp(host, "127.", 4) == 0 || strcmp(host, "[::1]") == 0 ||
         strcasecmp(host, "localhost") == 0 || strcmp(host, "169.254.170.2") == 0 ||
         strcmp(host, "169.254.170.23") == 0 || strcasecmp(host, "[fd00:ec2::23]") == 0;
  }
  curl_free(host);
  curl_url_cleanup(u);
  return ok;
}

/* "https://<service>.<region>.amazonaws.com" (".com.cn" in the China regions). */
static char *service_url(const char *service, const char *region) {
  const char *suffix = strncmp(region, "cn-", 3) == 0 ? "amazonaws.com.cn" : "amazonaws.com";
  size_t n = strlen(service) + strlen(region) + strlen(suffix) + 16;
  char *s = malloc(n);
  if (s) snprintf(s, n, "https://%s.%s.%s", service, region, suffix);
  return s;
}

/* ---- string checks ------------------------------------------------------ */

static int chk_region(const char *s) { return aws_region_valid(s); }
static int chk_name(const char *s) { return sm_name_valid(s); }
static int chk_profile(const char *s) {
  return strlen(s) <= 128 && printable(s) && !strpbrk(s, "[]");
}
static int chk_arn(const char *s) {
  return strncmp(s, "arn:", 4) == 0 && strlen(s) >= 20 && strlen(s) <= 2048 && printable(s) &&
         !strchr(s, ' ');
}
/* STS RoleSessionName: 2-64 of [\w+=,.@-] */
static int chk_session(const char *s) {
  size_t n = strlen(s);
  if (n < 2 || n > 64) return 0;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && !strchr("_+=,.@-", *s)) return 0;
  return 1;
}
static int chk_path(const char *s) { return strlen(s) < PATH_MAX && printable(s); }
static int chk_text(const char *s) {
  size_t n = strlen(s);
  return n <= AWS_DESCRIPTION_MAX && kpc_utf8_valid((const unsigned char *)s, n);
}
static int chk_stage(const char *s) { return strlen(s) <= 256 && printable(s); }

static void free_tags(aws_config *cfg) {
  for (size_t i = 0; i < cfg->n_tags; i++) {
    free(cfg->tags[i].key);
    free(cfg->tags[i].value);
  }
  free(cfg->tags);
  cfg->tags = NULL;
  cfg->n_tags = 0;
}

/* One tag; 0, -1 (invalid), -2 (out of memory). */
static int add_tag(aws_config *cfg, const cJSON *k, const cJSON *v) {
  if (!cJSON_IsString(k) || !(cJSON_IsString(v) || cJSON_IsNumber(v) || cJSON_IsBool(v)))
    return -1;
  char num[64];
  const char *vs = cJSON_IsString(v) ? v->valuestring : cJSON_IsBool(v) ? (cJSON_IsTrue(v) ? "true" : "false") : num;
  if (cJSON_IsNumber(v)) snprintf(num, sizeof num, "%.17g", v->valuedouble);
  size_t kn = strlen(k->valuestring), vn = strlen(vs);
  if (kn == 0 || kn > AWS_TAG_KEY_MAX || vn > AWS_TAG_VALUE_MAX ||
      !kpc_utf8_valid((const unsigned char *)k->valuestring, kn) ||
      !kpc_utf8_valid((const unsigned char *)vs, vn) || strncasecmp(k->valuestring, "aws:", 4) == 0 ||
      cfg->n_tags == AWS_TAGS_MAX)
    return -1;
  aws_tag *t = &cfg->tags[cfg->n_tags];
  if (!(t->key = strdup(k->valuestring)) || !(t->value = strdup(vs))) return -2;
  cfg->n_tags++;
  return 0;
}

/* `tags`: LiteLLM's mapping ({Environment: Prod}, which the host passes as
 * JSON text) or AWS's list form ([{"Key": ..., "Value": ...}]). */
static kms_status parse_tags(aws_config *cfg, const char *v, kms_error *err) {
  free_tags(cfg);
  cJSON *j = cJSON_Parse(v);
  int r = -1;
  if (j && (cJSON_IsObject(j) || cJSON_IsArray(j))) {
    int n = cJSON_GetArraySize(j);
    r = n > AWS_TAGS_MAX ? -1 : 0;
    if (r == 0 && n > 0 && !(cfg->tags = calloc((size_t)n, sizeof *cfg->tags))) r = -2;
    const cJSON *it;
    cJSON_ArrayForEach(it, j) {
      if (r != 0) break;
      if (cJSON_IsObject(j)) {
        cJSON kj = {0};
        kj.type = cJSON_String;
        kj.valuestring = it->string;
        r = add_tag(cfg, &kj, it);
      } else if (cJSON_IsObject(it)) {
        r = add_tag(cfg, cJSON_GetObjectItemCaseSensitive(it, "Key"),
                    cJSON_GetObjectItemCaseSensitive(it, "Value"));
      } else r = -1;
    }
  }
  cJSON_Delete(j);
  if (r == -2) return OOM(err);
  if (r != 0) {
    free_tags(cfg);
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "setting 'tags' must be a mapping of tag keys to values (e.g. "
                         "{Environment: Prod}), at most %d tags, keys 1-%d and values 0-%d "
                         "characters of UTF-8, keys not starting with 'aws:'",
                         AWS_TAGS_MAX, AWS_TAG_KEY_MAX, AWS_TAG_VALUE_MAX);
  }
  return KMS_OK;
}

/* The setting aws_sts_endpoint: an endpoint URL. */
static kms_status set_sts_url(void *c, const kpc_setting_row *r, const char *label,
                              const char *v, kms_error *err) {
  (void)r;
  aws_config *cfg = c;
  char *u = NULL;
  kms_status st = norm_url(label, v, 0, &u, err);
  if (st != KMS_OK) return st;
  free(cfg->sts_endpoint);
  cfg->sts_endpoint = u;
  return KMS_OK;
}

static kms_status set_tags(void *c, const kpc_setting_row *r, const char *label, const char *v,
                           kms_error *err) {
  (void)r, (void)label;
  return parse_tags(c, v, err);
}

/* AWS_MAX_ATTEMPTS counts the first try (the SDKs'); the setting
 * max_retries, applied after, wins. */
static kms_status set_attempts(void *c, const kpc_setting_row *r, const char *label,
                               const char *v, kms_error *err) {
  int64_t n;
  if (kpc_parse_i64(v, 1, 101, &n) != 0) return kpc_settings_bad(err, r, label, v);
  ((aws_config *)c)->max_retries = (int)(n - 1);
  return KMS_OK;
}

/* ---- the settings table (kpc_settings.h) ------------------------------------ */

/* One row per key_management_settings key (and AWS_MAX_ATTEMPTS): how its
 * value is read, its default, range or check, and the aws_config field it
 * lands in. Adding a setting is adding a row (and its README line).
 * Booleans are YAML's/botocore's words in any case (true/yes/on/1). */
#define F(f, t) KPC_FIELD(aws_config, f, t)
#define STR(k, chk, f, w) {.key = k, .kind = KPC_SET_STRING, F(f, KPC_F_STR), .check = chk, .what = w}
#define DUR(k, low, d, f, dflt, w) \
  {.key = k, .kind = KPC_SET_DURATION, F(f, KPC_F_I64), .def = dflt, .lo = low, \
   .hi = INT64_MAX / 4, .div = d, .what = w}
#define IGNORED(k) {.key = k, .kind = KPC_SET_IGNORED}
static const kpc_setting_row ROWS[] = {
    {.env = KPC_NAMES("AWS_MAX_ATTEMPTS"), .kind = KPC_SET_CUSTOM, .set = set_attempts,
     .what = "a whole number between 1 and 101 (the first try included)"},
    {.key = "access_mode", .kind = KPC_SET_ENUM, F(access_mode, KPC_F_INT),
     .def = AWS_ACCESS_READ_ONLY, .choices = KPC_NAMES("read_only", "write_only", "read_and_write"),
     .what = "read_only, write_only or read_and_write"},
    STR("primary_secret_name", chk_name, primary_secret_name,
        "a secret name of 1-512 characters from A-Z a-z 0-9 / _ + = . @ -"),
    {.key = "recovery_window_in_days", .kind = KPC_SET_INT, F(recovery_window_days, KPC_F_INT),
     .def = AWS_DEFAULT_RECOVERY_DAYS, .lo = 7, .hi = 30,
     .what = "a whole number of days between 7 and 30 (AWS's range; use "
             "force_delete_without_recovery: true for none)"},
    {.key = "force_delete_without_recovery", .kind = KPC_SET_BOOL, F(force_delete, KPC_F_INT),
     .dialect = KPC_BOOL_YAML},
    {.key = "background_refresh", .kind = KPC_SET_BOOL, F(background_refresh, KPC_F_INT),
     .dialect = KPC_BOOL_YAML},
    STR("description", chk_text, description, "valid UTF-8 text of at most 2048 bytes"),
    {.key = "tags", .kind = KPC_SET_CUSTOM, .set = set_tags},
    STR("version_stage", chk_stage, version_stage,
        "a version stage label of 1-256 printable characters, e.g. AWSCURRENT or AWSPREVIOUS"),
    STR("aws_region_name", chk_region, region, "an AWS region such as us-east-1"),
    STR("aws_profile_name", chk_profile, profile,
        "a profile name of at most 128 printable characters without '[' or ']'"),
    STR("aws_role_name", chk_arn, role_arn,
        "a role ARN such as arn:aws:iam::123456789012:role/NAME"),
    STR("aws_session_name", chk_session, role_session_name,
        "2-64 characters from A-Z a-z 0-9 _ + = , . @ -"),
    STR("aws_web_identity_token", chk_path, web_identity_token_file,
        "the path of the web identity token file (e.g. os.environ/AWS_WEB_IDENTITY_TOKEN_FILE)"),
    {.key = "aws_sts_endpoint", .kind = KPC_SET_CUSTOM, .set = set_sts_url},
    {.key = "aws_external_id", .kind = KPC_SET_REFUSED,
     .what = "needs STS AssumeRole, which this plugin does not implement; use web identity "
             "(aws_role_name + aws_web_identity_token) or remove it"},
    STR("ca_file", chk_path, ca_file, "the path of a PEM CA bundle"),
    STR("ca_path", chk_path, ca_path, "the path of a c_rehash'ed CA directory"),
    DUR("refresh_interval", 0, 1000, refresh_interval_s, AWS_DEFAULT_REFRESH_S,
        "a number of seconds or a duration such as '1h' (0 disables the cache)"),
    DUR("timeout", 1, 1, timeout_ms, AWS_DEFAULT_TIMEOUT_MS,
        "a positive number of seconds or a duration such as '30s'"),
    DUR("connect_timeout", 1, 1, connect_timeout_ms, AWS_DEFAULT_CONNECT_TIMEOUT_MS,
        "a positive number of seconds or a duration such as '5s'"),
    {.key = "max_retries", .kind = KPC_SET_INT, F(max_retries, KPC_F_INT),
     .def = AWS_DEFAULT_MAX_RETRIES, .lo = 0, .hi = 100, .what = "a whole number between 0 and 100"},
    DUR("stale_if_error", 0, 1000, stale_if_error_s, AWS_DEFAULT_STALE_IF_ERROR_S,
        "a number of seconds or a duration such as '90s' or '1h'"),
    DUR("stale_retry_interval", 0, 1, stale_retry_ms, AWS_DEFAULT_STALE_RETRY_MS,
        "a number of seconds or a duration such as '5s'"),
    DUR("neg_ttl", 0, 1, neg_ttl_ms, 0,
        "a number of seconds or a duration such as '5s' (0 disables negative caching)"),
    {.key = "max_response_bytes", .kind = KPC_SET_INT, F(max_response_bytes, KPC_F_SIZE),
     .def = AWS_DEFAULT_MAX_RESPONSE, .lo = 1024, .hi = 256 * 1024 * 1024,
     .what = "an integer between 1024 and 268435456"},
    {.key = "max_idle_connections", .kind = KPC_SET_INT, F(max_idle_connections, KPC_F_UINT),
     .def = AWS_DEFAULT_MAX_IDLE, .lo = 1, .hi = 256, .what = "an integer between 1 and 256"},
    /* LiteLLM's host-level key_management_settings */
    IGNORED("store_virtual_keys"),
    IGNORED("prefix_for_stored_virtual_keys"),
    IGNORED("hosted_keys"),
    IGNORED("custom_secret_manager"),
};
#undef F
#undef STR
#undef DUR
#undef IGNORED
#define N_ROWS (sizeof ROWS / sizeof *ROWS)

/* ---- environment ----------------------------------------------------------- */

/* *out = trimmed copy of the first set variable of names (unchanged if
 * none is set or *out is already set: a setting won). */
static kms_status take(const env_ctx *e, const char *const *names, char **out,
                       const char **which, kms_error *err) {
  const char *w = NULL, *v;
  if (*out || !(v = env_first(e, names, &w))) return KMS_OK;
  if (!(*out = kpc_dup_trim(v))) return OOM(err);
  if (which) *which = w;
  if (!printable(*out))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s contains control characters; set it to the value alone", w);
  return KMS_OK;
}

/* "~/..." and "~" expanded against HOME (or the password database). */
static kms_status expand_home(const env_ctx *e, const char *var, const char *path, char **out,
                              kms_error *err) {
  *out = NULL;
  if (path[0] != '~' || (path[1] && path[1] != '/'))
    return (*out = strdup(path)) ? KMS_OK : OOM(err);
  const char *home = env_first(e, NAMES("HOME"), NULL);
  struct passwd pw, *found = NULL;
  char scratch[1024];
  if (!home && getpwuid_r(geteuid(), &pw, scratch, sizeof scratch, &found) == 0 && found)
    home = found->pw_dir;
  if (!home)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s starts with '~' but HOME is not set; give an absolute path", var);
  size_t n = strlen(home) + strlen(path) + 1;
  if (!(*out = malloc(n))) return OOM(err);
  snprintf(*out, n, "%s%s", home, path + 1);
  return KMS_OK;
}

/* AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN: both keys or
 * neither (the SDKs ignore a lone one; we say so, it is always a mistake). */
static kms_status load_env_keys(aws_config *cfg, const env_ctx *e, kms_error *err) {
  kms_status st;
  if ((st = take(e, NAMES("AWS_ACCESS_KEY_ID"), &cfg->env_access_key_id, NULL, err)) != KMS_OK ||
      (st = take(e, NAMES("AWS_SECRET_ACCESS_KEY"), &cfg->env_secret_access_key, NULL, err)) != KMS_OK ||
      (st = take(e, NAMES("AWS_SESSION_TOKEN"), &cfg->env_session_token, NULL, err)) != KMS_OK)
    return st;
  if (!!cfg->env_access_key_id != !!cfg->env_secret_access_key)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s is set but %s is not; set both (or neither, to use another "
                         "credential source)",
                         cfg->env_access_key_id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                         cfg->env_access_key_id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
  if (cfg->env_session_token && !cfg->env_access_key_id)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "AWS_SESSION_TOKEN is set without AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY; set all three");
  return KMS_OK;
}

/* Web identity from the settings or AWS_ROLE_ARN / AWS_WEB_IDENTITY_TOKEN_FILE. */
static kms_status load_env_web_identity(aws_config *cfg, const env_ctx *e, kms_error *err) {
  kms_status st;
  const char *w = NULL;
  if (!cfg->web_identity_token_file)
    cfg->web_identity_source = "AWS_WEB_IDENTITY_TOKEN_FILE";
  if ((st = take(e, NAMES("AWS_WEB_IDENTITY_TOKEN_FILE"), &cfg->web_identity_token_file, &w,
                 err)) != KMS_OK ||
      (st = take(e, NAMES("AWS_ROLE_ARN"), &cfg->role_arn, &w, err)) != KMS_OK ||
      (st = take(e, NAMES("AWS_ROLE_SESSION_NAME"), &cfg->role_session_name, &w, err)) != KMS_OK)
    return st;
  if (!cfg->web_identity_token_file) cfg->web_identity_source = NULL;
  if (cfg->role_arn && !chk_arn(cfg->role_arn))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "AWS_ROLE_ARN must be a role ARN such as "
                         "arn:aws:iam::123456789012:role/NAME");
  if (cfg->role_session_name && !chk_session(cfg->role_session_name))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "AWS_ROLE_SESSION_NAME must be 2-64 characters from A-Z a-z 0-9 "
                         "_ + = , . @ -");
  if (cfg->web_identity_token_file && !cfg->role_arn)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s is set but no role to assume: set AWS_ROLE_ARN (or the "
                         "aws_role_name setting)", cfg->web_identity_source);
  if (cfg->role_arn && !cfg->web_identity_token_file)
    return kms_error_set(err, KMS_UNSUPPORTED, 0,
                         "a role to assume (AWS_ROLE_ARN or aws_role_name) is set without a "
                         "web identity token file; assuming a role with other credentials "
                         "(STS AssumeRole) is not implemented: set AWS_WEB_IDENTITY_TOKEN_FILE "
                         "(or aws_web_identity_token)");
  return KMS_OK;
}

/* ECS: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (on 169.254.170.2) wins over
 * _FULL_URI, as in botocore; the token file wins over the token. */
static kms_status load_env_container(aws_config *cfg, const env_ctx *e, kms_error *err) {
  kms_status st;
  const char *w, *rel = env_first(e, NAMES("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"), &w);
  if (rel) {
    char *t = kpc_dup_trim(rel);
    if (!t) return OOM(err);
    size_t n = strlen(AWS_ECS_HOST_URL) + strlen(t) + 1;
    char *u = t[0] == '/' && printable(t) && !strpbrk(t, " #") ? malloc(n) : NULL;
    if (u) snprintf(u, n, "%s%s", AWS_ECS_HOST_URL, t);
    int bad = !u && (t[0] != '/' || !printable(t) || strpbrk(t, " #"));
    free(t);
    if (bad)
      return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                           "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must be a path starting "
                           "with '/' (it is requested from %s)", AWS_ECS_HOST_URL);
    if (!u) return OOM(err);
    cfg->container_full_uri = u;
  } else if ((rel = env_first(e, NAMES("AWS_CONTAINER_CREDENTIALS_FULL_URI"), &w))) {
    if ((st = norm_url(w, rel, 1, &cfg->container_full_uri, err)) != KMS_OK) return st;
    if (!container_host_ok(cfg->container_full_uri))
      return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                           "AWS_CONTAINER_CREDENTIALS_FULL_URI over http:// must name a "
                           "loopback address or the ECS/EKS agent (169.254.170.2, "
                           "169.254.170.23): credentials must not cross a network in clear; "
                           "use https://");
  }
  if ((st = take(e, NAMES("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
                 &cfg->container_auth_token_file, &w, err)) != KMS_OK)
    return st;
  if (!cfg->container_auth_token_file &&
      (st = take(e, NAMES("AWS_CONTAINER_AUTHORIZATION_TOKEN"), &cfg->container_auth_token, &w,
                 err)) != KMS_OK)
    return st;
  return KMS_OK;
}

/* IMDS: AWS_EC2_METADATA_DISABLED, AWS_EC2_METADATA_SERVICE_ENDPOINT[_MODE]. */
static kms_status load_env_imds(aws_config *cfg, const env_ctx *e, kms_error *err) {
  const char *w, *v = env_first(e, NAMES("AWS_EC2_METADATA_DISABLED"), &w);
  char *t = v ? kpc_dup_trim(v) : NULL;
  if (v && !t) return OOM(err);
  cfg->imds_disabled = t && strcasecmp(t, "true") == 0; /* botocore: only "true" */
  free(t);
  if ((v = env_first(e, NAMES("AWS_EC2_METADATA_SERVICE_ENDPOINT"), &w)))
    return norm_url(w, v, 0, &cfg->imds_endpoint, err);
  const char *mode = env_first(e, NAMES("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"), &w);
  int v6 = mode && strncasecmp(mode, "ipv6", 4) == 0;
  if (mode && !v6 && strncasecmp(mode, "ipv4", 4) != 0)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE must be IPv4 or IPv6");
  cfg->imds_endpoint = strdup(v6 ? "http://[fd00:ec2::254]" : AWS_DEFAULT_IMDS_ENDPOINT);
  return cfg->imds_endpoint ? KMS_OK : OOM(err);
}

/* CA trust: ca_file setting, AWS_CA_BUNDLE (the SDKs'), SSL_CERT_FILE. */
static kms_status load_tls(aws_config *cfg, const env_ctx *e, kms_error *err) {
  const char *w = cfg->ca_file ? "setting 'ca_file'" : NULL;
  kms_status st = take(e, NAMES("AWS_CA_BUNDLE", "SSL_CERT_FILE"), &cfg->ca_file, &w, err);
  if (st != KMS_OK) return st;
  struct stat sb;
  if (cfg->ca_file && (stat(cfg->ca_file, &sb) != 0 || !S_ISREG(sb.st_mode) ||
                       access(cfg->ca_file, R_OK) != 0))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s=%s is not a readable file; point it at the PEM CA bundle", w,
                         cfg->ca_file);
  if (cfg->ca_path && (stat(cfg->ca_path, &sb) != 0 || !S_ISDIR(sb.st_mode)))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "setting 'ca_path'=%s is not a directory; point it at a c_rehash'ed "
                         "CA directory", cfg->ca_path);
  return KMS_OK;
}

/* ---- the shared files ---------------------------------------------------------- */

static kms_status profile_paths(aws_config *cfg, const env_ctx *e, kms_error *err) {
  const char *w = "AWS_SHARED_CREDENTIALS_FILE", *v = env_first(e, NAMES(w), NULL);
  kms_status st = expand_home(e, w, v ? v : "~/.aws/credentials", &cfg->credentials_file, err);
  if (st != KMS_OK) return st;
  w = "AWS_CONFIG_FILE";
  v = env_first(e, NAMES(w), NULL);
  if ((st = expand_home(e, w, v ? v : "~/.aws/config", &cfg->config_file, err)) != KMS_OK)
    return st;
  const char *which = NULL; /* AWS_DEFAULT_PROFILE: botocore's older name */
  if ((st = take(e, NAMES("AWS_PROFILE", "AWS_DEFAULT_PROFILE"), &cfg->profile, &which, err)) !=
      KMS_OK)
    return st;
  if (cfg->profile && !cfg->profile_source) cfg->profile_source = which;
  if (cfg->profile && !chk_profile(cfg->profile))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s must be a profile name of at most 128 printable characters "
                         "without '[' or ']'", cfg->profile_source);
  if (!cfg->profile) {
    cfg->profile_source = "default";
    if (!(cfg->profile = strdup("default"))) return OOM(err);
  }
  return KMS_OK;
}

static char *take_field(char **f) {
  char *v = *f;
  *f = NULL;
  return v;
}

/* What the selected profile gives: region, static keys (the credentials
 * file's pair, else the config file's: never one key from each), web identity
 * when neither the settings nor the environment named one, and the first key
 * that asks for a mechanism the plugin lacks. */
static kms_status load_profile(aws_config *cfg, const env_ctx *e, kms_error *err) {
  kms_status st = profile_paths(cfg, e, err);
  aws_profile cr = {0}, co = {0};
  if (st == KMS_OK)
    st = aws_profile_read(cfg->credentials_file, "AWS_SHARED_CREDENTIALS_FILE", 0, cfg->profile,
                          &cr, err);
  if (st == KMS_OK)
    st = aws_profile_read(cfg->config_file, "AWS_CONFIG_FILE", 1, cfg->profile, &co, err);
  if (st != KMS_OK) goto out;
  cfg->profile_found = cr.found || co.found;
  if (!cfg->profile_found && strcmp(cfg->profile_source, "default") != 0) {
    st = kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                       "%s names profile '%s', which is in neither %s nor %s; add it or "
                       "fix the name", cfg->profile_source, cfg->profile, cfg->credentials_file,
                       cfg->config_file);
    goto out;
  }
  aws_profile *keys = cr.aws_access_key_id || cr.aws_secret_access_key ? &cr : &co;
  if (keys->aws_access_key_id || keys->aws_secret_access_key) {
    if (!keys->aws_access_key_id || !keys->aws_secret_access_key) {
      st = kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "profile '%s' in %s has %s but not %s; set both", cfg->profile,
                         keys == &cr ? cfg->credentials_file : cfg->config_file,
                         keys->aws_access_key_id ? "aws_access_key_id" : "aws_secret_access_key",
                         keys->aws_access_key_id ? "aws_secret_access_key" : "aws_access_key_id");
      goto out;
    }
    cfg->profile_access_key_id = take_field(&keys->aws_access_key_id);
    cfg->profile_secret_access_key = take_field(&keys->aws_secret_access_key);
    cfg->profile_session_token = take_field(&keys->aws_session_token);
    cfg->profile_keys_file = keys == &cr ? "credentials" : "config";
  }
  if (!cfg->region && co.region) {
    cfg->region = take_field(&co.region);
    cfg->region_source = "the profile's region";
  }
  if (!cfg->role_arn && co.role_arn && co.web_identity_token_file) {
    cfg->role_arn = take_field(&co.role_arn);
    cfg->web_identity_token_file = take_field(&co.web_identity_token_file);
    cfg->role_session_name = take_field(&co.role_session_name);
    cfg->web_identity_source = "profile";
    if (!chk_arn(cfg->role_arn) ||
        (cfg->role_session_name && !chk_session(cfg->role_session_name)) ||
        !chk_path(cfg->web_identity_token_file))
      st = kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "profile '%s' in %s: role_arn must be a role ARN, role_session_name "
                         "2-64 of A-Z a-z 0-9 _ + = , . @ -, web_identity_token_file a path",
                         cfg->profile, cfg->config_file);
  } else if (co.credential_process || cr.credential_process) {
    cfg->profile_unsupported = "credential_process";
  } else if (co.sso_start_url || co.sso_session) {
    cfg->profile_unsupported = co.sso_start_url ? "sso_start_url" : "sso_session";
  } else if (co.role_arn) {
    cfg->profile_unsupported = co.source_profile ? "source_profile" : "credential_source";
  }
out:
  aws_profile_clear(&cr);
  aws_profile_clear(&co);
  return st;
}

/* The region from the environment, unless the setting gave one (before the
 * profile: AWS_REGION and AWS_DEFAULT_REGION win over its `region`). */
static kms_status load_region_env(aws_config *cfg, const env_ctx *e, kms_error *err) {
  const char *w = NULL;
  if (cfg->region) return KMS_OK;
  kms_status st = take(e, NAMES("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_REGION_NAME"),
                       &cfg->region, &w, err);
  if (st == KMS_OK && cfg->region) cfg->region_source = w;
  return st;
}

/* Region (required: it is in every signature) and the endpoints. */
static kms_status load_endpoints(aws_config *cfg, const env_ctx *e, kms_error *err) {
  const char *w = NULL, *v;
  kms_status st;
  if (!cfg->region)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, LiteLLM's "
                         "AWS_REGION_NAME, the aws_region_name setting, or `region` in profile "
                         "'%s' of %s)", cfg->profile, cfg->config_file);
  if (!aws_region_valid(cfg->region))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s must be an AWS region such as us-east-1 (lower-case letters, "
                         "digits and '-'; got '%.60s')", cfg->region_source,
                         printable(cfg->region) ? cfg->region : "(not shown)");
  if ((v = env_first(e, NAMES("AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL"), &w))) {
    if ((st = norm_url(w, v, 0, &cfg->endpoint, err)) != KMS_OK) return st;
    cfg->endpoint_overridden = 1;
  } else if (!(cfg->endpoint = service_url("secretsmanager", cfg->region))) {
    return OOM(err);
  }
  if (!cfg->sts_endpoint) {
    if ((v = env_first(e, NAMES("AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"), &w)))
      return norm_url(w, v, 0, &cfg->sts_endpoint, err);
    if (!(cfg->sts_endpoint = service_url("sts", cfg->region))) return OOM(err);
  }
  return KMS_OK;
}

static kms_status load(aws_config *cfg, const env_ctx *e, const kms_setting *settings,
                       size_t n_settings, kms_error *err) {
  kms_status st;
  const kpc_logger lg = {e->host, AWS_LOG_PREFIX};
  kpc_settings_defaults(ROWS, N_ROWS, cfg);
  /* AWS_MAX_ATTEMPTS, then the settings (which win over it) */
  if ((st = kpc_settings_apply_env(ROWS, N_ROWS, cfg, e->host, err)) != KMS_OK ||
      (st = kpc_settings_apply(ROWS, N_ROWS, cfg, settings, n_settings, &lg, err)) != KMS_OK)
    return st;
  /* what the settings named, for messages (the environment is read next
   * and only fills what they left unset) */
  if (cfg->region) cfg->region_source = "aws_region_name";
  if (cfg->profile) cfg->profile_source = "aws_profile_name";
  if (cfg->web_identity_token_file) cfg->web_identity_source = "aws_web_identity_token";
  if ((st = load_env_keys(cfg, e, err)) != KMS_OK ||
      (st = load_env_web_identity(cfg, e, err)) != KMS_OK ||
      (st = load_region_env(cfg, e, err)) != KMS_OK || (st = load_profile(cfg, e, err)) != KMS_OK ||
      (st = load_env_container(cfg, e, err)) != KMS_OK ||
      (st = load_env_imds(cfg, e, err)) != KMS_OK || (st = load_tls(cfg, e, err)) != KMS_OK ||
      (st = load_endpoints(cfg, e, err)) != KMS_OK)
    return st;
  if (cfg->connect_timeout_ms > cfg->timeout_ms) cfg->connect_timeout_ms = cfg->timeout_ms;
  if (cfg->force_delete && cfg->recovery_window_days != AWS_DEFAULT_RECOVERY_DAYS)
    logw(e->host, "force_delete_without_recovery is on: recovery_window_in_days is not used");
  return KMS_OK;
}

kms_status aws_config_load(aws_config *cfg, const kms_host *host, const kms_setting *settings,
                           size_t n_settings, kms_error *err) {
  memset(cfg, 0, sizeof *cfg);
  env_ctx e = {host};
  kms_status st = load(cfg, &e, settings, n_settings, err);
  if (st != KMS_OK) aws_config_free(cfg);
  return st;
}

void aws_config_free(aws_config *cfg) {
  if (!cfg) return;
  char **strs[] = {&cfg->region, &cfg->endpoint, &cfg->sts_endpoint, &cfg->profile,
                   &cfg->credentials_file, &cfg->config_file, &cfg->web_identity_token_file,
                   &cfg->role_arn, &cfg->role_session_name, &cfg->container_full_uri,
                   &cfg->container_auth_token_file, &cfg->imds_endpoint, &cfg->ca_file,
                   &cfg->ca_path, &cfg->primary_secret_name, &cfg->description,
                   &cfg->version_stage};
  for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) free(*strs[i]);
  char **secrets[] = {&cfg->env_access_key_id, &cfg->env_secret_access_key,
                      &cfg->env_session_token, &cfg->profile_access_key_id,
                      &cfg->profile_secret_access_key, &cfg->profile_session_token,
                      &cfg->container_auth_token};
  for (size_t i = 0; i < sizeof secrets / sizeof *secrets; i++) kpc_wipe_free(*secrets[i]);
  free_tags(cfg);
  memset(cfg, 0, sizeof *cfg);
}
