/*
 * creds.c -- the AWS credential chain (see creds.h for the order and the
 * refresh rules): static keys from the environment or the profile, and
 * temporary ones from STS AssumeRoleWithWebIdentity, the ECS container
 * endpoint or EC2 IMDSv2, refreshed before they expire, one refresh at a
 * time. The HTTP transport is injected; answers are parsed here.
 *
 * Secrets (keys, session tokens, web identity and container tokens, the
 * IMDS session token) are wiped before they are freed and never put into
 * an error message; messages quote AWS's own error code and text only.
 */
#include "creds.h"

#include "kpc_common.h"
#include "ini.h"
#include "kms_plugin_util.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OOM(err) kms_error_set((err), KMS_NO_MEMORY, 0, "out of memory")
#define IMDS_TIMEOUT_MS 1000   /* botocore's: off EC2 the address does not answer */
#define TOKEN_FILE_MAX 20000   /* STS WebIdentityToken's maximum length */
#define ECS_TOKEN_MAX 16384

typedef enum source { SRC_ENV, SRC_WEB_IDENTITY, SRC_PROFILE, SRC_ECS, SRC_IMDS } source;
static const char *const SOURCE_NAME[] = {"env", "web_identity", "profile", "ecs", "imds"};

struct aws_creds_provider {
  const aws_config *cfg;
  const aws_clock *clock;
  aws_creds_http_fn http;
  void *http_ctx;
  source src;

  pthread_mutex_t mu;
  pthread_cond_t cv;      /* signalled when a refresh ends */
  int refreshing;         /* one refresh at a time */
  uint64_t generation;    /* refreshes finished */
  aws_credentials cur;    /* cur.access_key_id == NULL: none yet */
  int force;              /* invalidated: refresh before the next use */
  int64_t next_try_ms;    /* no advisory refresh before this (after a failure) */
  kms_status last_status;
  kms_error last_err;     /* of the last failed refresh (no secret in it) */

  char *imds_token;       /* IMDSv2 session token (wiped); refresher only */
  int64_t imds_token_expires_ms;
};


void aws_credentials_clear(aws_credentials *c) {
  if (!c) return;
  kpc_wipe_free(c->access_key_id);
  kpc_wipe_free(c->secret_access_key);
  kpc_wipe_free(c->session_token);
  memset(c, 0, sizeof *c);
}

static kms_status copy_creds(const aws_credentials *in, aws_credentials *out, kms_error *err) {
  aws_credentials_clear(out);
  out->access_key_id = strdup(in->access_key_id);
  out->secret_access_key = strdup(in->secret_access_key);
  out->session_token = in->session_token ? strdup(in->session_token) : NULL;
  out->expires_ms = in->expires_ms;
  if (!out->access_key_id || !out->secret_access_key || (in->session_token && !out->session_token)) {
    aws_credentials_clear(out);
    return OOM(err);
  }
  return KMS_OK;
}

/* A printable one-line excerpt of outside text for messages (AWS's codes and
 * messages): control characters become '?', at most size-1 bytes. */
static void excerpt(const char *s, size_t n, char *buf, size_t size) {
  size_t j = 0;
  for (size_t i = 0; i < n && j + 1 < size; i++)
    buf[j++] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
  buf[j] = '\0';
}

/* Replace every occurrence of `secret` in err->message with "(redacted)":
 * an endpoint that echoes the token we sent into its error text must not
 * get it into our messages. Secrets shorter than 8 bytes are not searched
 * (they would match ordinary words). */
static void scrub(kms_error *err, const char *secret) {
  size_t n = secret ? strlen(secret) : 0;
  char *hit;
  if (n < 8) return;
  while ((hit = strstr(err->message, secret))) {
    static const char R[] = "(redacted)";
    size_t tail = strlen(hit + n) + 1;
    if (n >= sizeof R - 1) {
      memcpy(hit, R, sizeof R - 1);
      memmove(hit + sizeof R - 1, hit + n, tail);
    } else { /* shorter than the marker: mask it in place */
      memset(hit, '*', n);
    }
  }
}

/* ---- time --------------------------------------------------------------------- */

/* ISO 8601 UTC as AWS writes Expiration: 2026-12-04T05:21:59Z, optional
 * fractional seconds, "Z" or "+00:00". -1 if malformed. */
static int64_t parse_iso8601(const char *s) {
  int y, mo, d, h, mi, sec, n = 0;
  if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
    return -1;
  const char *p = s + n;
  if (*p == '.')
    for (p++; isdigit((unsigned char)*p); p++) {}
  if (!(strcmp(p, "Z") == 0 || strcmp(p, "+00:00") == 0 || strcmp(p, "+0000") == 0)) return -1;
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return -1;
  struct tm tm = {0};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  time_t t = timegm(&tm);
  return t == (time_t)-1 ? -1 : (int64_t)t;
}

/* The Expiration (wall) as a time on the provider's clock. */
static kms_status set_expiry(const char *what, const char *iso, int64_t now_wall_s, int64_t now_ms,
                             aws_credentials *out, kms_error *err) {
  int64_t t = iso ? parse_iso8601(iso) : -1;
  if (t < 0)
    return kms_error_set(err, KMS_INTERNAL, 0,
                         "%s answered credentials without a valid Expiration (ISO 8601)", what);
  if (t <= now_wall_s)
    return kms_error_set(err, KMS_UNAUTHENTICATED, 0,
                         "%s answered credentials that expired already (check this host's "
                         "clock)", what);
  out->expires_ms = now_ms + (t - now_wall_s) * 1000;
  return KMS_OK;
}

/* An access key id as AWS issues them: 16-128 of A-Z0-9 (checked so that
 * garbage from a wrong endpoint is reported as such, not sent on). */
static int key_id_ok(const char *s) {
  size_t n = strlen(s);
  if (n < 16 || n > 128) return 0;
  for (; *s; s++)
    if (!isupper((unsigned char)*s) && !isdigit((unsigned char)*s)) return 0;
  return 1;
}

/* Secret keys and session tokens go into headers and the signature: no
 * control characters or spaces. */
static int token_ok(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if ((unsigned char)*s <= 0x20 || *s == 0x7f) return 0;
  return 1;
}

/* ---- STS XML -------------------------------------------------------------------- */

/* The text of the first <tag>...</tag> within [b, e) (no attributes: STS
 * writes none on these elements), or NULL. *te receives its end. */
static const char *xml_find(const char *b, const char *e, const char *tag, const char **te) {
  char open[64], close[64];
  snprintf(open, sizeof open, "<%s>", tag);
  snprintf(close, sizeof close, "</%s>", tag);
  size_t ol = strlen(open), cl = strlen(close);
  for (const char *p = b; p + ol <= e; p++) {
    if (memcmp(p, open, ol) != 0) continue;
    for (const char *q = p + ol; q + cl <= e; q++)
      if (memcmp(q, close, cl) == 0) {
        *te = q;
        return p + ol;
      }
    return NULL;
  }
  return NULL;
}

/* Decode XML character data [b, e) (the five entities and &#N; / &#xN;
 * ASCII references) into a malloc'ed string. NULL if malformed or out of
 * memory (*oom set). */
static char *xml_text(const char *b, const char *e, int *oom) {
  char *s = malloc((size_t)(e - b) + 1), *o = s;
  if (!s) return *oom = 1, NULL;
  static const struct { const char *ent; char c; } ENT[] = {
      {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
  for (const char *p = b; p < e;) {
    if (*p == '<') goto bad; /* nested markup: not a text element */
    if (*p != '&') {
      *o++ = *p++;
      continue;
    }
    size_t i, left = (size_t)(e - p);
    for (i = 0; i < 5; i++)
      if (left >= strlen(ENT[i].ent) && memcmp(p, ENT[i].ent, strlen(ENT[i].ent)) == 0) break;
    if (i < 5) {
      *o++ = ENT[i].c;
      p += strlen(ENT[i].ent);
      continue;
    }
    unsigned long cp = 0;
    int hex = left > 3 && p[1] == '#' && (p[2] == 'x' || p[2] == 'X');
    const char *q = p + (hex ? 3 : 2);
    if (left < 4 || p[1] != '#') goto bad;
    for (; q < e && *q != ';' && cp < 0x80; q++) {
      if (hex ? !isxdigit((unsigned char)*q) : !isdigit((unsigned char)*q)) goto bad;
      cp = cp * (hex ? 16 : 10) + (unsigned long)(isdigit((unsigned char)*q) ? *q - '0' : (tolower((unsigned char)*q) - 'a' + 10));
    }
    if (q >= e || *q != ';' || cp == 0 || cp >= 0x80) goto bad;
    *o++ = (char)cp;
    p = q + 1;
  }
  *o = '\0';
  return s;
bad:
  kms_wipe(s, (size_t)(o - s));
  free(s);
  return NULL;
}

/* AWS's Code and Message of an error answer (XML or JSON), for messages. */
static void aws_error_text(const char *body, size_t len, char *buf, size_t size) {
  const char *e = body + len, *ce, *me, *c = xml_find(body, e, "Code", &ce);
  const char *m = xml_find(body, e, "Message", &me);
  char cb[96] = "", mb[256] = "";
  if (c) excerpt(c, (size_t)(ce - c), cb, sizeof cb);
  if (m) excerpt(m, (size_t)(me - m), mb, sizeof mb);
  if (!c && !m) {
    cJSON *j = kpc_json_parse(body, len);
    const cJSON *jc = cJSON_GetObjectItemCaseSensitive(j, "Code");
    if (!jc) jc = cJSON_GetObjectItemCaseSensitive(j, "__type"); /* AWS's JSON protocols */
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(j, "Message");
    if (!jm) jm = cJSON_GetObjectItemCaseSensitive(j, "message");
    if (cJSON_IsString(jc)) excerpt(jc->valuestring, strlen(jc->valuestring), cb, sizeof cb);
    if (cJSON_IsString(jm)) excerpt(jm->valuestring, strlen(jm->valuestring), mb, sizeof mb);
    kpc_json_wipe_delete(j);
  }
  snprintf(buf, size, "%s%s%s", cb, *cb && *mb ? ": " : "", mb);
}

kms_status aws_creds_parse_sts_xml(const char *body, size_t len, int64_t now_wall_s,
                                   int64_t now_ms, aws_credentials *out, kms_error *err) {
  aws_credentials_clear(out);
  const char *e = body + len, *ce, *cb = xml_find(body, e, "Credentials", &ce);
  static const char *const TAGS[] = {"AccessKeyId", "SecretAccessKey", "SessionToken",
                                     "Expiration"};
  char *v[4] = {0};
  int oom = 0;
  const char *missing = cb ? NULL : "Credentials";
  for (size_t i = 0; i < 4 && !missing; i++) {
    const char *te, *t = xml_find(cb, ce, TAGS[i], &te);
    if (!t || !(v[i] = xml_text(t, te, &oom))) missing = TAGS[i];
  }
  kms_status st = KMS_OK;
  if (oom) st = OOM(err);
  else if (missing)
    st = kms_error_set(err, KMS_INTERNAL, 0,
                       "STS AssumeRoleWithWebIdentity answered without a readable %s element; "
                       "is the STS endpoint right?", missing);
  else if (!key_id_ok(v[0]) || !token_ok(v[1]) || !token_ok(v[2]))
    st = kms_error_set(err, KMS_INTERNAL, 0,
                       "STS AssumeRoleWithWebIdentity answered malformed credentials");
  if (st == KMS_OK)
    st = set_expiry("STS AssumeRoleWithWebIdentity", v[3], now_wall_s, now_ms, out, err);
  if (st == KMS_OK) {
    out->access_key_id = v[0];
    out->secret_access_key = v[1];
    out->session_token = v[2];
    v[0] = v[1] = v[2] = NULL;
  } else {
    out->expires_ms = 0;
  }
  for (size_t i = 0; i < 4; i++) kpc_wipe_free(v[i]);
  return st;
}

/* ---- ECS / IMDS JSON ------------------------------------------------------------- */

kms_status aws_creds_parse_json(const char *body, size_t len, int64_t now_wall_s, int64_t now_ms,
                                aws_credentials *out, kms_error *err) {
  aws_credentials_clear(out);
  cJSON *j = kpc_json_parse(body, len);
  const cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "Code");
  const cJSON *f[4] = {cJSON_GetObjectItemCaseSensitive(j, "AccessKeyId"),
                       cJSON_GetObjectItemCaseSensitive(j, "SecretAccessKey"),
                       cJSON_GetObjectItemCaseSensitive(j, "Token"),
                       cJSON_GetObjectItemCaseSensitive(j, "Expiration")};
  kms_status st = KMS_OK;
  if (!cJSON_IsObject(j))
    st = kms_error_set(err, KMS_INTERNAL, 0, "the credentials endpoint answered no JSON object");
  else if (code && !(cJSON_IsString(code) && strcmp(code->valuestring, "Success") == 0)) {
    char c[64] = "";
    if (cJSON_IsString(code)) excerpt(code->valuestring, strlen(code->valuestring), c, sizeof c);
    st = kms_error_set(err, KMS_UNAUTHENTICATED, 0,
                       "the credentials endpoint answered Code '%s' instead of Success", c);
  } else if (!cJSON_IsString(f[0]) || !cJSON_IsString(f[1]) || !key_id_ok(f[0]->valuestring) ||
             !token_ok(f[1]->valuestring) ||
             (f[2] && !(cJSON_IsString(f[2]) && token_ok(f[2]->valuestring))))
    st = kms_error_set(err, KMS_INTERNAL, 0,
                       "the credentials endpoint answered without a valid AccessKeyId, "
                       "SecretAccessKey and Token");
  else if (f[3] || f[2]) /* temporary credentials always carry an Expiration */
    st = set_expiry("the credentials endpoint",
                    cJSON_IsString(f[3]) ? f[3]->valuestring : NULL, now_wall_s, now_ms, out, err);
  if (st == KMS_OK) {
    out->access_key_id = strdup(f[0]->valuestring);
    out->secret_access_key = strdup(f[1]->valuestring);
    out->session_token = f[2] ? strdup(f[2]->valuestring) : NULL;
    if (!out->access_key_id || !out->secret_access_key || (f[2] && !out->session_token))
      st = OOM(err);
  }
  if (st != KMS_OK) aws_credentials_clear(out);
  kpc_json_wipe_delete(j);
  return st;
}

/* ---- fetching ---------------------------------------------------------------------- */

static int64_t now_ms(const aws_creds_provider *p) { return kpc_clock_now(p->clock); }
static int64_t wall_s(void) { return (int64_t)time(NULL); }

/* One request through the injected transport; a non-2xx answer becomes
 * `fail` (or KMS_UNAVAILABLE for 5xx and 429) naming `what` and AWS's text. */
static kms_status call(aws_creds_provider *p, const char *what, const char *method,
                       const char *url, const char *const *headers, const char *body,
                       int64_t deadline_ms, kms_status fail, char **resp, size_t *resp_len,
                       kms_error *err) {
  long status = 0;
  *resp = NULL;
  *resp_len = 0;
  kms_status st = p->http(p->http_ctx, method, url, headers, body, body ? strlen(body) : 0,
                          deadline_ms, &status, resp, resp_len, err);
  if (st != KMS_OK) {
    char inner[KMS_ERROR_MESSAGE_SIZE];
    snprintf(inner, sizeof inner, "%s", err->message);
    return kms_error_set(err, st, err->backend_status, "%s: %s", what, inner);
  }
  if (status >= 200 && status < 300) return KMS_OK;
  char text[400];
  aws_error_text(*resp ? *resp : "", *resp_len, text, sizeof text);
  kpc_wipe_free(*resp);
  *resp = NULL;
  /* STS's transient refusals (its identity provider unreachable, throttling)
   * are worth retrying, unlike a bad token */
  static const char *const TRANSIENT[] = {"IDPCommunicationError", "Throttling",
                                          "RequestLimitExceeded", "ServiceUnavailable"};
  for (size_t i = 0; i < sizeof TRANSIENT / sizeof *TRANSIENT; i++)
    if (strncmp(text, TRANSIENT[i], strlen(TRANSIENT[i])) == 0) fail = KMS_UNAVAILABLE;
  if (status >= 500 || status == 429) fail = KMS_UNAVAILABLE;
  return kms_error_set(err, fail, (int32_t)status, "%s answered HTTP %ld%s%s", what, status,
                       *text ? ": " : "", text);
}

/* "key=value" form-encoded (RFC 3986 unreserved kept) onto *buf. */
static int form_add(char **buf, size_t *len, const char *key, const char *val) {
  size_t need = *len + strlen(key) + 3 * strlen(val) + 3;
  char *b = malloc(need);
  if (!b) return -1;
  if (*len) memcpy(b, *buf, *len);
  size_t n = *len;
  n += (size_t)sprintf(b + n, "%s%s=", n ? "&" : "", key);
  for (const unsigned char *s = (const unsigned char *)val; *s; s++) {
    if (isalnum(*s) || strchr("-._~", *s)) b[n++] = (char)*s;
    else n += (size_t)sprintf(b + n, "%%%02X", *s);
  }
  b[n] = '\0';
  if (*buf) {
    kms_wipe(*buf, *len);
    free(*buf);
  }
  *buf = b;
  *len = n;
  return 0;
}

/* STS AssumeRoleWithWebIdentity (Query protocol, unsigned): the token file is
 * read on every refresh (Kubernetes rotates it). */
static kms_status fetch_web_identity(aws_creds_provider *p, int64_t deadline, aws_credentials *out,
                                     kms_error *err) {
  const aws_config *c = p->cfg;
  char *token = NULL, *body = NULL, *resp = NULL, session[40];
  size_t tlen, blen = 0, rlen = 0;
  kms_status st = aws_read_secret_file(c->web_identity_token_file, "the web identity token file",
                                       TOKEN_FILE_MAX, &token, &tlen, err);
  if (st != KMS_OK) return st;
  snprintf(session, sizeof session, "kmsplug-%lld", (long long)wall_s());
  if (form_add(&body, &blen, "Action", "AssumeRoleWithWebIdentity") ||
      form_add(&body, &blen, "Version", "2011-06-15") ||
      form_add(&body, &blen, "RoleArn", c->role_arn) ||
      form_add(&body, &blen, "RoleSessionName", c->role_session_name ? c->role_session_name : session) ||
      form_add(&body, &blen, "WebIdentityToken", token))
    st = OOM(err);
  size_t ulen = strlen(c->sts_endpoint) + 2;
  char *url = st == KMS_OK ? malloc(ulen) : NULL;
  if (st == KMS_OK && !url) st = OOM(err);
  if (st == KMS_OK) {
    snprintf(url, ulen, "%s/", c->sts_endpoint);
    const char *const hdr[] = {"Content-Type: application/x-www-form-urlencoded; charset=utf-8",
                               "Accept: text/xml", NULL};
    st = call(p, "STS AssumeRoleWithWebIdentity", "POST", url, hdr, body, deadline,
              KMS_UNAUTHENTICATED, &resp, &rlen, err);
    if (st != KMS_OK) scrub(err, token);
  }
  if (st == KMS_OK) st = aws_creds_parse_sts_xml(resp, rlen, wall_s(), now_ms(p), out, err);
  kpc_wipe_free(token);
  free(url);
  if (body) kms_wipe(body, blen);
  free(body);
  if (resp) kms_wipe(resp, rlen);
  free(resp);
  return st;
}

/* The ECS/EKS container endpoint, with its Authorization token if any. */
static kms_status fetch_ecs(aws_creds_provider *p, int64_t deadline, aws_credentials *out,
                            kms_error *err) {
  const aws_config *c = p->cfg;
  char *token = NULL, *hdr = NULL, *resp = NULL;
  size_t tlen = 0, rlen = 0;
  kms_status st = KMS_OK;
  if (c->container_auth_token_file)
    st = aws_read_secret_file(c->container_auth_token_file,
                              "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", ECS_TOKEN_MAX, &token,
                              &tlen, err);
  else if (c->container_auth_token && !(token = strdup(c->container_auth_token)))
    st = OOM(err);
  if (st == KMS_OK && token) {
    size_t n = strlen(token) + 32;
    if (!(hdr = malloc(n))) st = OOM(err);
    else snprintf(hdr, n, "Authorization: %s", token);
  }
  if (st == KMS_OK) {
    const char *const hdrs[] = {"Accept: application/json", hdr, NULL};
    st = call(p, "the container credentials endpoint", "GET", c->container_full_uri, hdrs, NULL,
              deadline, KMS_UNAUTHENTICATED, &resp, &rlen, err);
    if (st != KMS_OK) scrub(err, token);
  }
  if (st == KMS_OK) st = aws_creds_parse_json(resp, rlen, wall_s(), now_ms(p), out, err);
  kpc_wipe_free(token);
  kpc_wipe_free(hdr);
  if (resp) kms_wipe(resp, rlen);
  free(resp);
  return st;
}

/* An IAM role name as IMDS lists it, checked before it goes into a URL:
 * 1-64 of A-Za-z0-9 + = , . @ _ - */
static int role_name_ok(const char *s, size_t n) {
  if (n == 0 || n > 64) return 0;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && !strchr("+=,.@_-", s[i])) return 0;
  return 1;
}

/* The IMDSv2 session token (PUT /latest/api/token), reused until a minute
 * before its TTL ends. */
static kms_status imds_token(aws_creds_provider *p, int64_t deadline, kms_error *err) {
  if (p->imds_token && now_ms(p) < p->imds_token_expires_ms) return KMS_OK;
  kpc_wipe_free(p->imds_token);
  p->imds_token = NULL;
  char url[600], ttl[64], *resp = NULL;
  size_t rlen = 0;
  snprintf(url, sizeof url, "%s/latest/api/token", p->cfg->imds_endpoint);
  snprintf(ttl, sizeof ttl, "X-aws-ec2-metadata-token-ttl-seconds: %d", AWS_IMDS_TOKEN_TTL_S);
  const char *const hdrs[] = {ttl, NULL};
  kms_status st = call(p, "EC2 instance metadata (IMDSv2 token)", "PUT", url, hdrs, "", deadline,
                       KMS_UNAVAILABLE, &resp, &rlen, err);
  if (st != KMS_OK) return st;
  while (rlen && isspace((unsigned char)resp[rlen - 1])) resp[--rlen] = '\0';
  if (!token_ok(resp) || strlen(resp) != rlen) {
    kpc_wipe_free(resp);
    return kms_error_set(err, KMS_INTERNAL, 0, "EC2 instance metadata answered a malformed token");
  }
  p->imds_token = resp;
  p->imds_token_expires_ms = now_ms(p) + (AWS_IMDS_TOKEN_TTL_S - 60) * 1000LL;
  return KMS_OK;
}

/* GET an IMDS path with the session token; a 401 (token expired early) drops
 * the token and tries once more with a new one. */
static kms_status imds_get(aws_creds_provider *p, const char *path, int64_t deadline, char **resp,
                           size_t *rlen, kms_error *err) {
  for (int attempt = 0;; attempt++) {
    kms_status st = imds_token(p, deadline, err);
    if (st != KMS_OK) return st;
    char url[700];
    size_t hn = strlen(p->imds_token) + 40;
    char *hdr = malloc(hn);
    if (!hdr) return OOM(err);
    snprintf(hdr, hn, "X-aws-ec2-metadata-token: %s", p->imds_token);
    snprintf(url, sizeof url, "%s%s", p->cfg->imds_endpoint, path);
    const char *const hdrs[] = {hdr, NULL};
    st = call(p, "EC2 instance metadata", "GET", url, hdrs, NULL, deadline, KMS_UNAUTHENTICATED,
              resp, rlen, err);
    if (st != KMS_OK) scrub(err, p->imds_token);
    kpc_wipe_free(hdr);
    if (st == KMS_OK || err->backend_status != 401 || attempt) return st;
    kpc_wipe_free(p->imds_token);
    p->imds_token = NULL;
  }
}

/* IMDSv2: token, the role name, then its credentials. Each request has at
 * most IMDS_TIMEOUT_MS: off EC2 nothing answers at all. */
static kms_status fetch_imds(aws_creds_provider *p, int64_t deadline, aws_credentials *out,
                             kms_error *err) {
  static const char base[] = "/latest/meta-data/iam/security-credentials/";
  int64_t d = now_ms(p) + IMDS_TIMEOUT_MS;
  if (d > deadline) d = deadline;
  char *resp = NULL, path[sizeof base + 70];
  size_t rlen = 0;
  kms_status st = imds_get(p, base, d, &resp, &rlen, err);
  if (st != KMS_OK) return st;
  size_t n = strcspn(resp, "\r\n");
  if (!role_name_ok(resp, n)) {
    free(resp);
    return kms_error_set(err, KMS_UNAUTHENTICATED, 0,
                         "EC2 instance metadata names no valid IAM role: attach an instance "
                         "profile to this instance, or configure another credential source");
  }
  snprintf(path, sizeof path, "%s%.*s", base, (int)n, resp);
  free(resp);
  d = now_ms(p) + IMDS_TIMEOUT_MS;
  if (d > deadline) d = deadline;
  if ((st = imds_get(p, path, d, &resp, &rlen, err)) != KMS_OK) return st;
  st = aws_creds_parse_json(resp, rlen, wall_s(), now_ms(p), out, err);
  kms_wipe(resp, rlen);
  free(resp);
  return st;
}

static kms_status fetch(aws_creds_provider *p, int64_t deadline, aws_credentials *out,
                        kms_error *err) {
  switch (p->src) {
  case SRC_WEB_IDENTITY: return fetch_web_identity(p, deadline, out, err);
  case SRC_ECS: return fetch_ecs(p, deadline, out, err);
  case SRC_IMDS: return fetch_imds(p, deadline, out, err);
  default: return kms_error_set(err, KMS_INTERNAL, 0, "static credentials are never fetched");
  }
}

/* ---- the provider ----------------------------------------------------------------- */

/* The first configured source, in the SDKs' order (creds.h). */
static kms_status pick_source(const aws_config *c, source *src, kms_error *err) {
  if (c->env_access_key_id) return *src = SRC_ENV, KMS_OK;
  if (c->web_identity_token_file && c->role_arn) return *src = SRC_WEB_IDENTITY, KMS_OK;
  if (c->profile_access_key_id) return *src = SRC_PROFILE, KMS_OK;
  if (c->profile_unsupported)
    return kms_error_set(err, KMS_UNSUPPORTED, 0,
                         "profile '%s' gets its credentials through '%s', which this plugin "
                         "does not implement; give the profile aws_access_key_id and "
                         "aws_secret_access_key, or use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                         "web identity or the container/instance credentials",
                         c->profile, c->profile_unsupported);
  if (c->container_full_uri) return *src = SRC_ECS, KMS_OK;
  if (!c->imds_disabled) return *src = SRC_IMDS, KMS_OK;
  return kms_error_set(err, KMS_UNAUTHENTICATED, 0,
                       "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                       "or AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, or keys for profile "
                       "'%s' in %s, or AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/FULL_URI "
                       "(AWS_EC2_METADATA_DISABLED turns the instance metadata off)",
                       c->profile ? c->profile : "default",
                       c->credentials_file ? c->credentials_file : "~/.aws/credentials");
}

kms_status aws_creds_new(const aws_config *cfg, const aws_clock *clock, aws_creds_http_fn http,
                         void *http_ctx, aws_creds_provider **out, kms_error *err) {
  *out = NULL;
  source src;
  kms_status st = pick_source(cfg, &src, err);
  if (st != KMS_OK) return st;
  if (!http && src != SRC_ENV && src != SRC_PROFILE)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "%s credentials need an HTTP function",
                         SOURCE_NAME[src]);
  aws_creds_provider *p = calloc(1, sizeof *p);
  if (!p) return OOM(err);
  p->cfg = cfg;
  p->clock = clock;
  p->http = http;
  p->http_ctx = http_ctx;
  p->src = src;
  if (src == SRC_ENV || src == SRC_PROFILE) {
    aws_credentials s = {
        src == SRC_ENV ? cfg->env_access_key_id : cfg->profile_access_key_id,
        src == SRC_ENV ? cfg->env_secret_access_key : cfg->profile_secret_access_key,
        src == SRC_ENV ? cfg->env_session_token : cfg->profile_session_token, 0};
    if ((st = copy_creds(&s, &p->cur, err)) != KMS_OK) {
      free(p);
      return st;
    }
  }
  pthread_mutex_init(&p->mu, NULL);
  kpc_cond_init(&p->cv);
  *out = p;
  return KMS_OK;
}

/* What the cached credentials allow at `now`. */
typedef enum freshness { FRESH, ADVISORY, MUST_REFRESH } freshness;

static freshness fresh_at(const aws_creds_provider *p, int64_t now) {
  if (!p->cur.access_key_id || p->force) return MUST_REFRESH;
  if (p->cur.expires_ms == 0) return FRESH;
  int64_t left = p->cur.expires_ms - now;
  if (left > AWS_CREDS_REFRESH_MS) return FRESH;
  return left > AWS_CREDS_MANDATORY_MS ? ADVISORY : MUST_REFRESH;
}

/* Run one refresh (p->refreshing set by the caller; the lock is NOT held). */
static kms_status refresh(aws_creds_provider *p, int64_t deadline, kms_error *err) {
  aws_credentials fresh = {0};
  kms_status st = fetch(p, deadline, &fresh, err);
  if (st != KMS_OK && p->src == SRC_IMDS && !p->cur.access_key_id &&
      (st == KMS_UNAVAILABLE || err->backend_status == 404)) {
    char inner[KMS_ERROR_MESSAGE_SIZE];
    snprintf(inner, sizeof inner, "%s", err->message);
    kms_error_set(err, KMS_UNAUTHENTICATED, err->backend_status,
                  "no AWS credentials: nothing is configured (no AWS_ACCESS_KEY_ID, web "
                  "identity, profile keys or container endpoint) and the EC2 instance metadata "
                  "at %s gave none (%s)", p->cfg->imds_endpoint, inner);
    st = KMS_UNAUTHENTICATED;
  }
  pthread_mutex_lock(&p->mu);
  p->refreshing = 0;
  p->generation++;
  p->last_status = st;
  if (st == KMS_OK) {
    aws_credentials_clear(&p->cur);
    p->cur = fresh;
    p->force = 0;
    p->next_try_ms = 0;
  } else {
    p->last_err = *err;
    p->next_try_ms = now_ms(p) + AWS_CREDS_RETRY_MS;
  }
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return st;
}

kms_status aws_creds_get(aws_creds_provider *p, int64_t deadline_ms, aws_credentials *out,
                         kms_error *err) {
  aws_credentials_clear(out);
  pthread_mutex_lock(&p->mu);
  for (uint64_t seen = p->generation;;) {
    int64_t now = now_ms(p);
    freshness f = fresh_at(p, now);
    int may_refresh = !p->refreshing && (f == MUST_REFRESH || now >= p->next_try_ms);
    if (f == FRESH || (f == ADVISORY && !may_refresh)) {
      kms_status st = copy_creds(&p->cur, out, err);
      pthread_mutex_unlock(&p->mu);
      return st;
    }
    if (p->generation != seen && p->last_status != KMS_OK && f == MUST_REFRESH) {
      *err = p->last_err; /* the refresh we waited for failed: its error */
      pthread_mutex_unlock(&p->mu);
      return err->status;
    }
    if (may_refresh) {
      p->refreshing = 1;
      pthread_mutex_unlock(&p->mu);
      kms_status st = refresh(p, deadline_ms, err);
      pthread_mutex_lock(&p->mu);
      if (st == KMS_OK || fresh_at(p, now_ms(p)) != MUST_REFRESH) {
        st = copy_creds(&p->cur, out, err); /* advisory failure: the old ones still serve */
      }
      pthread_mutex_unlock(&p->mu);
      return st;
    }
    if (now >= deadline_ms) {
      pthread_mutex_unlock(&p->mu);
      return kms_error_set(err, KMS_UNAVAILABLE, 0,
                           "timed out waiting for the %s credentials refresh",
                           SOURCE_NAME[p->src]);
    }
    struct timespec ts; /* another thread refreshes: wait for it (real time) */
    kpc_timespec_in(deadline_ms - now, &ts);
    pthread_cond_timedwait(&p->cv, &p->mu, &ts);
  }
}

void aws_creds_invalidate(aws_creds_provider *p) {
  if (!p || p->src == SRC_ENV || p->src == SRC_PROFILE) return;
  pthread_mutex_lock(&p->mu);
  p->force = 1;
  pthread_mutex_unlock(&p->mu);
}

void aws_creds_health_get(aws_creds_provider *p, aws_creds_health *out) {
  pthread_mutex_lock(&p->mu);
  out->source = SOURCE_NAME[p->src];
  out->temporary = p->src != SRC_ENV && p->src != SRC_PROFILE;
  out->expires_in_s = -1;
  if (p->cur.access_key_id && p->cur.expires_ms) {
    int64_t left = p->cur.expires_ms - now_ms(p);
    out->expires_in_s = left > 0 ? left / 1000 : 0;
  }
  out->last_status = p->last_status;
  pthread_mutex_unlock(&p->mu);
}

void aws_creds_free(aws_creds_provider *p) {
  if (!p) return;
  aws_credentials_clear(&p->cur);
  kpc_wipe_free(p->imds_token);
  kms_wipe(&p->last_err, sizeof p->last_err);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p);
}
