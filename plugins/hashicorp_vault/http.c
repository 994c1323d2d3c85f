/*
 * http.c -- libcurl client: handle pool, TLS, timeouts, size cap, retries
 * with jittered backoff and Retry-After, one self-followed redirect
 * (see http.h for the contract).
 */
#include "http.h"

#include "kms_loader.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define P "hashicorp_vault: "

struct vault_http {
  const vault_config *cfg;
  const vault_logger *lg;
  CURLSH *share;
  pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
  pthread_mutex_t mu; /* guards idle[]; with cancel_cv, the retry waits */
  CURL **idle;
  size_t n_idle, max_idle;
  long base_ms, max_ms;
  char *addr_host; /* lower-case host of cfg->addr (for VAULT_TLS_SERVER_NAME) */
  pthread_cond_t cancel_cv; /* with mu: wakes retry waits on cancel */
  int cancelled;            /* vault_http_cancel() was called (atomic) */
};

/* ---- global init ------------------------------------------------------- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static CURLcode g_init_rc = CURLE_OK;
static void global_init(void) { g_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* ---- time and randomness ----------------------------------------------- */

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int is_cancelled(vault_http *h) { return __atomic_load_n(&h->cancelled, __ATOMIC_ACQUIRE); }

/* Wait ms milliseconds, or less if the client is cancelled: returns 1 then. */
static int wait_ms(vault_http *h, int64_t ms) {
  int64_t until = mono_ms() + ms;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += (time_t)(ms / 1000);
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&h->mu);
  while (!h->cancelled && mono_ms() < until)
    if (pthread_cond_timedwait(&h->cancel_cv, &h->mu, &ts) == ETIMEDOUT) break;
  int c = h->cancelled;
  pthread_mutex_unlock(&h->mu);
  return c;
}

/* libcurl's progress callback: a non-zero return aborts the transfer. */
static int on_progress(void *u, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
  (void)dt, (void)dn, (void)ut, (void)un;
  return is_cancelled(u);
}

static kms_status cancelled_error(const vault_http_request *req, kms_error *err) {
  return kms_error_set(err, KMS_UNAVAILABLE, 0,
                       P "%s: cancelled (the instance is being destroyed)", req->op);
}

static uint64_t rnd(void) {
  static _Thread_local uint64_t s;
  if (!s) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    s = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)(uintptr_t)&s ^ (uint64_t)ts.tv_sec;
    if (!s) s = 88172645463325252ull;
  }
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

/* ---- share locks ------------------------------------------------------- */

static void share_lock(CURL *c, curl_lock_data data, curl_lock_access access, void *u) {
  (void)c;
  (void)access;
  vault_http *h = u;
  if ((unsigned)data < CURL_LOCK_DATA_LAST) pthread_mutex_lock(&h->share_mu[data]);
}

static void share_unlock(CURL *c, curl_lock_data data, void *u) {
  (void)c;
  vault_http *h = u;
  if ((unsigned)data < CURL_LOCK_DATA_LAST) pthread_mutex_unlock(&h->share_mu[data]);
}

/* ---- URL helpers ------------------------------------------------------- */

typedef struct origin {
  char scheme[8];
  char host[256];
  long port;
} origin;

static int get_origin(const char *url, origin *o) {
  memset(o, 0, sizeof *o);
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL, *port = NULL;
  int rc = -1;
  if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
      strlen(scheme) < sizeof o->scheme && strlen(host) < sizeof o->host) {
    for (char *p = scheme; *p; p++) *p = (char)tolower((unsigned char)*p);
    for (char *p = host; *p; p++) *p = (char)tolower((unsigned char)*p);
    strcpy(o->scheme, scheme);
    strcpy(o->host, host);
    o->port = strtol(port, NULL, 10);
    rc = 0;
  }
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(u);
  return rc;
}

static int same_origin(const origin *a, const origin *b) {
  return strcmp(a->scheme, b->scheme) == 0 && strcmp(a->host, b->host) == 0 && a->port == b->port;
}

static int host_allowed(const vault_http *h, const origin *o) {
  char hp[300];
  snprintf(hp, sizeof hp, "%s:%ld", o->host, o->port);
  for (size_t i = 0; i < h->cfg->n_redirect_allowed_hosts; i++)
    if (strcmp(h->cfg->redirect_allowed_hosts[i], hp) == 0) return 1;
  return 0;
}

/* The part of a URL after the configured address (for messages/logs). */
static const char *url_path(const vault_http *h, const char *url) {
  size_t n = strlen(h->cfg->addr);
  if (strncmp(url, h->cfg->addr, n) == 0 && url[n] == '/') return url + n;
  return url;
}

/* ---- lifecycle --------------------------------------------------------- */

kms_status vault_http_new(const vault_config *cfg, const vault_logger *lg, vault_http **out,
                          kms_error *err) {
  *out = NULL;
  pthread_once(&g_once, global_init);
  if (g_init_rc != CURLE_OK)
    return kms_error_set(err, KMS_INTERNAL, 0, P "curl_global_init failed: %s",
                         curl_easy_strerror(g_init_rc));
  curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
  if (!vi || !(vi->features & CURL_VERSION_SSL))
    return kms_error_set(err, KMS_UNSUPPORTED, 0, P "libcurl was built without TLS support");
  vault_http *h = calloc(1, sizeof *h);
  if (!h) return kms_error_set(err, KMS_NO_MEMORY, 0, P "out of memory");
  h->cfg = cfg;
  h->lg = lg;
  h->base_ms = 100;
  h->max_ms = 2000;
  h->max_idle = cfg->max_idle_connections ? cfg->max_idle_connections : 1;
  pthread_mutex_init(&h->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&h->cancel_cv, &ca);
  pthread_condattr_destroy(&ca);
  for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&h->share_mu[i], NULL);
  h->idle = calloc(h->max_idle, sizeof *h->idle);
  origin o;
  if (get_origin(cfg->addr, &o) == 0) h->addr_host = strdup(o.host);
  h->share = curl_share_init();
  if (!h->idle || !h->addr_host || !h->share) {
    vault_http_free(h);
    return kms_error_set(err, KMS_NO_MEMORY, 0, P "out of memory");
  }
  curl_share_setopt(h->share, CURLSHOPT_LOCKFUNC, share_lock);
  curl_share_setopt(h->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
  curl_share_setopt(h->share, CURLSHOPT_USERDATA, h);
  curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  *out = h;
  return KMS_OK;
}

void vault_http_free(vault_http *h) {
  if (!h) return;
  for (size_t i = 0; i < h->n_idle; i++) curl_easy_cleanup(h->idle[i]);
  free(h->idle);
  if (h->share) curl_share_cleanup(h->share);
  for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_destroy(&h->share_mu[i]);
  pthread_cond_destroy(&h->cancel_cv);
  pthread_mutex_destroy(&h->mu);
  free(h->addr_host);
  free(h);
}

void vault_http_cancel(vault_http *h) {
  if (!h) return;
  pthread_mutex_lock(&h->mu);
  __atomic_store_n(&h->cancelled, 1, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&h->cancel_cv);
  pthread_mutex_unlock(&h->mu);
}

void vault_http_set_backoff(vault_http *h, long base_ms, long max_ms) {
  h->base_ms = base_ms > 0 ? base_ms : 1;
  h->max_ms = max_ms >= h->base_ms ? max_ms : h->base_ms;
}

static CURL *pool_get(vault_http *h) {
  CURL *c = NULL;
  pthread_mutex_lock(&h->mu);
  if (h->n_idle) c = h->idle[--h->n_idle];
  pthread_mutex_unlock(&h->mu);
  return c ? c : curl_easy_init();
}

static void pool_put(vault_http *h, CURL *c) {
  if (!c) return;
  pthread_mutex_lock(&h->mu);
  if (h->n_idle < h->max_idle) {
    h->idle[h->n_idle++] = c;
    c = NULL;
  }
  pthread_mutex_unlock(&h->mu);
  if (c) curl_easy_cleanup(c);
}

/* ---- one exchange ------------------------------------------------------ */

void vault_http_response_clear(vault_http_response *r) {
  if (!r) return;
  if (r->body) {
    OPENSSL_cleanse(r->body, r->cap);
    free(r->body);
  }
  r->body = NULL;
  r->len = r->cap = 0;
  r->status = 0;
}

typedef struct sink {
  vault_http_response *r;
  size_t max;
  int too_large;
} sink;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *u) {
  sink *s = u;
  size_t n = size * nmemb;
  vault_http_response *r = s->r;
  if (n > s->max || r->len > s->max - n) {
    s->too_large = 1;
    return 0;
  }
  if (r->len + n + 1 > r->cap) {
    size_t cap = r->cap ? r->cap : 1024;
    while (cap < r->len + n + 1) cap *= 2;
    /* grow by hand so the old buffer can be wiped (realloc would not) */
    char *nb = malloc(cap);
    if (!nb) return 0;
    if (r->body) {
      memcpy(nb, r->body, r->len);
      OPENSSL_cleanse(r->body, r->cap);
      free(r->body);
    }
    r->body = nb;
    r->cap = cap;
  }
  memcpy(r->body + r->len, ptr, n);
  r->len += n;
  r->body[r->len] = '\0';
  return n;
}

/* Wipe the header values (they hold the token) before curl frees them. */
static void slist_free_wiped(struct curl_slist *l) {
  for (struct curl_slist *p = l; p; p = p->next)
    if (p->data) OPENSSL_cleanse(p->data, strlen(p->data));
  curl_slist_free_all(l);
}

static struct curl_slist *add_hdr(struct curl_slist *l, const char *name, const char *value,
                                  int *oom) {
  if (*oom) return l;
  size_t n = strlen(name) + strlen(value) + 3;
  char *line = malloc(n);
  if (!line) {
    *oom = 1;
    return l;
  }
  snprintf(line, n, "%s: %s", name, value);
  struct curl_slist *nl = curl_slist_append(l, line);
  OPENSSL_cleanse(line, n);
  free(line);
  if (!nl) *oom = 1;
  return nl ? nl : l;
}

typedef enum xfer_class {
  X_HTTP,      /* an HTTP answer arrived */
  X_RETRY,     /* transient transport failure */
  X_TIMEOUT,   /* total timeout reached */
  X_FATAL      /* error already set in err */
} xfer_class;

static int tls_error(CURLcode rc, const char *ebuf) {
  switch (rc) {
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_USE_SSL_FAILED:
    return 1;
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
    /* TLS 1.3: a rejected client certificate shows up as an alert on read */
    return strstr(ebuf, "alert") != NULL && strstr(ebuf, "SSL") != NULL;
  default:
    return 0;
  }
}

/*
 * One request to `url` (no redirect handling here). Sets resp on X_HTTP.
 * For transport failures fills `why` with curl's text.
 */
static xfer_class exchange(vault_http *h, CURL *c, const vault_http_request *req, const char *url,
                           int send_creds, int64_t deadline, vault_http_response *resp,
                           char *location, size_t loc_size, long *retry_after_ms, char *why,
                           size_t why_size, int *mtls_drop, kms_error *err) {
  const vault_config *cfg = h->cfg;
  char ebuf[CURL_ERROR_SIZE] = "";
  struct curl_slist *hdrs = NULL, *connect_to = NULL;
  char *real_url = NULL;
  int oom = 0;
  xfer_class cls = X_FATAL;
  sink s = {resp, cfg->max_response_bytes, 0};
  location[0] = '\0';
  *retry_after_ms = -1;
  vault_http_response_clear(resp);

  int64_t remaining = deadline - mono_ms();
  if (remaining <= 0) return X_TIMEOUT;

  /* VAULT_TLS_SERVER_NAME: put the name in the URL (SNI, certificate check,
   * Host) and connect to the configured host. */
  origin o;
  if (cfg->tls_server_name && get_origin(url, &o) == 0 && strcmp(o.scheme, "https") == 0 &&
      (strcmp(o.host, h->addr_host) == 0 || strcasecmp(o.host, cfg->tls_server_name) == 0)) {
    CURLU *u = curl_url();
    char buf[600];
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_set(u, CURLUPART_HOST, cfg->tls_server_name, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &real_url, 0) != CURLUE_OK) {
      curl_url_cleanup(u);
      kms_error_set(err, KMS_NO_MEMORY, 0, P "out of memory");
      return X_FATAL;
    }
    curl_url_cleanup(u);
    snprintf(buf, sizeof buf, "%s:%ld:%s:%ld", cfg->tls_server_name, o.port,
             strcasecmp(o.host, cfg->tls_server_name) == 0 ? h->addr_host : o.host, o.port);
    connect_to = curl_slist_append(NULL, buf);
    if (!connect_to) oom = 1;
  }

  curl_easy_reset(c);
  curl_easy_setopt(c, CURLOPT_URL, real_url ? real_url : url);
  curl_easy_setopt(c, CURLOPT_SHARE, h->share);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)remaining);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   (long)(cfg->connect_timeout_ms < remaining ? cfg->connect_timeout_ms : remaining));
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cfg->max_response_bytes);
  curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, cfg->skip_verify ? 0L : 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, cfg->skip_verify ? 0L : 2L);
  if (cfg->ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, cfg->ca_file);
  if (cfg->ca_path) curl_easy_setopt(c, CURLOPT_CAPATH, cfg->ca_path);
  if (cfg->client_cert) {
    curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(c, CURLOPT_SSLCERT, cfg->client_cert);
    curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
    curl_easy_setopt(c, CURLOPT_SSLKEY, cfg->client_key);
  }
  if (connect_to) curl_easy_setopt(c, CURLOPT_CONNECT_TO, connect_to);

  hdrs = add_hdr(hdrs, "X-Vault-Request", "true", &oom);
  if (send_creds && req->token) hdrs = add_hdr(hdrs, "X-Vault-Token", req->token, &oom);
  if (send_creds && req->namespace_) hdrs = add_hdr(hdrs, "X-Vault-Namespace", req->namespace_, &oom);
  if (req->body) hdrs = add_hdr(hdrs, "Content-Type", "application/json", &oom);
  if (!oom && !(hdrs = curl_slist_append(hdrs, "Expect:"))) oom = 1;
  if (oom) {
    kms_error_set(err, KMS_NO_MEMORY, 0, P "out of memory");
    goto out;
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);

  if (strcmp(req->method, "GET") == 0) {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else {
    if (req->body) {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body);
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    }
    if (strcmp(req->method, "POST") != 0 || !req->body)
      curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
    if (!req->body && strcmp(req->method, "POST") == 0) {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
  }

  CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    char *loc = NULL;
    if (curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc)
      snprintf(location, loc_size, "%s", loc);
    struct curl_header *ra = NULL;
    if (curl_easy_header(c, "Retry-After", 0, CURLH_HEADER, -1, &ra) == CURLHE_OK && ra &&
        ra->value) {
      const char *v = ra->value;
      while (*v == ' ') v++;
      if (isdigit((unsigned char)*v)) {
        long sec = strtol(v, NULL, 10);
        *retry_after_ms = sec < 0 ? 0 : sec > 86400 ? 86400000L : sec * 1000L;
      } else {
        time_t t = curl_getdate(v, NULL);
        if (t != (time_t)-1) {
          time_t now = time(NULL);
          *retry_after_ms = t > now ? (long)(t - now) * 1000L : 0;
        }
      }
    }
    if (!resp->body) { /* empty body: keep an empty string for parsers */
      resp->body = calloc(1, 1);
      resp->cap = 1;
      if (!resp->body) {
        kms_error_set(err, KMS_NO_MEMORY, 0, P "out of memory");
        goto out;
      }
    }
    cls = X_HTTP;
    goto out;
  }

  const char *p = url_path(h, url);
  snprintf(why, why_size, "%s", ebuf[0] ? ebuf : curl_easy_strerror(rc));
  /* TLS 1.3: the client sends its certificate in its last handshake flight
   * and considers the handshake done; a server that rejects the certificate
   * answers with an alert and closes. Under load the alert can be lost to a
   * connection reset (or a bare close), so libcurl reports a send/receive
   * error instead of a TLS one. A brand-new https connection on which we
   * presented a client certificate, dying before a single response byte,
   * is therefore most likely a rejected client certificate: say so. */
  *mtls_drop = 0;
  if (cfg->client_cert && strncasecmp(url, "https:", 6) == 0 &&
      (rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR || rc == CURLE_GOT_NOTHING)) {
    long nconn = 0, hsize = 0;
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &nconn);
    curl_easy_getinfo(c, CURLINFO_HEADER_SIZE, &hsize);
    *mtls_drop = nconn > 0 && hsize == 0;
  }
  if (rc == CURLE_ABORTED_BY_CALLBACK && is_cancelled(h)) {
    cancelled_error(req, err);
  } else if (s.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
    kms_error_set(err, KMS_INTERNAL, 0,
                  P "%s %.80s: response larger than max_response_bytes (%zu); raise the setting "
                  "if the secret is that large", req->op, p, cfg->max_response_bytes);
  } else if (tls_error(rc, ebuf)) {
    kms_error_set(err, KMS_UNAVAILABLE, 0,
                  P "%s %.60s: TLS failed: %.90s (check VAULT_CACERT, VAULT_TLS_SERVER_NAME and "
                  "the client certificate)", req->op, p, why);
  } else if (rc == CURLE_OPERATION_TIMEDOUT && mono_ms() >= deadline - 5) {
    cls = X_TIMEOUT;
  } else if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
             rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_SEND_ERROR ||
             rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING || rc == CURLE_PARTIAL_FILE ||
             rc == CURLE_HTTP2 || rc == CURLE_HTTP2_STREAM) {
    cls = X_RETRY;
  } else if (rc == CURLE_OUT_OF_MEMORY) {
    kms_error_set(err, KMS_NO_MEMORY, 0, P "out of memory");
  } else {
    kms_error_set(err, KMS_INTERNAL, 0, P "%s %.80s: %.120s", req->op, p, why);
  }
out:
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
  curl_easy_setopt(c, CURLOPT_CONNECT_TO, NULL);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
  slist_free_wiped(hdrs);
  curl_slist_free_all(connect_to);
  curl_free(real_url);
  if (cls != X_HTTP && resp->body) vault_http_response_clear(resp);
  return cls;
}

static int is_redirect(long st) {
  return st == 301 || st == 302 || st == 303 || st == 307 || st == 308;
}

static int retryable_status(long st) {
  return st == 412 || st == 429 || (st >= 500 && st <= 599 && st != 501);
}

/* One attempt: the request plus at most one redirect. */
static xfer_class attempt(vault_http *h, CURL *c, const vault_http_request *req, int64_t deadline,
                          vault_http_response *resp, long *retry_after_ms, char *why,
                          size_t why_size, int *mtls_drop, kms_error *err) {
  char location[2048];
  xfer_class cls = exchange(h, c, req, req->url, 1, deadline, resp, location, sizeof location,
                            retry_after_ms, why, why_size, mtls_drop, err);
  if (cls != X_HTTP || !is_redirect(resp->status) || !location[0]) return cls;

  const char *p = url_path(h, req->url);
  long first = resp->status;
  origin from, to;
  if (get_origin(req->url, &from) != 0 || get_origin(location, &to) != 0 ||
      (strcmp(to.scheme, "http") != 0 && strcmp(to.scheme, "https") != 0)) {
    kms_error_set(err, KMS_UNAVAILABLE, (int32_t)first,
                  P "%s %.80s: HTTP %ld redirect to an unusable location", req->op, p, first);
    vault_http_response_clear(resp);
    return X_FATAL;
  }
  if (strcmp(from.scheme, "https") == 0 && strcmp(to.scheme, "http") == 0) {
    kms_error_set(err, KMS_UNAVAILABLE, (int32_t)first,
                  P "%s %.60s: HTTP %ld redirect from https to http://%.60s:%ld refused (it "
                  "would expose the token); point HCP_VAULT_ADDR at the active node", req->op, p,
                  first, to.host, to.port);
    vault_http_response_clear(resp);
    return X_FATAL;
  }
  int creds = same_origin(&from, &to) || host_allowed(h, &to);
  if (!creds) {
    kms_error_set(err, KMS_UNAVAILABLE, (int32_t)first,
                  P "%s %.50s: HTTP %ld redirect to %s://%.60s:%ld refused: the token is only sent "
                  "to HCP_VAULT_ADDR (add %.60s:%ld to redirect_allowed_hosts to trust it)",
                  req->op, p, first, to.scheme, to.host, to.port, to.host, to.port);
    vault_http_response_clear(resp);
    return X_FATAL;
  }
  vault_logf(h->lg, KMS_LOG_INFO, "%s %.80s: following HTTP %ld redirect to %s://%.60s:%ld",
             req->op, p, first, to.scheme, to.host, to.port);
  char loc2[16];
  cls = exchange(h, c, req, location, creds, deadline, resp, loc2, sizeof loc2, retry_after_ms,
                 why, why_size, mtls_drop, err);
  if (cls == X_HTTP && is_redirect(resp->status)) {
    kms_error_set(err, KMS_UNAVAILABLE, (int32_t)resp->status,
                  P "%s %.80s: redirected more than once (HTTP %ld, then HTTP %ld); point "
                  "HCP_VAULT_ADDR at the active node", req->op, p, first, resp->status);
    vault_http_response_clear(resp);
    return X_FATAL;
  }
  return cls;
}

kms_status vault_http_perform(vault_http *h, const vault_http_request *req,
                              vault_http_response *resp, kms_error *err) {
  memset(resp, 0, sizeof *resp);
  kms_error local;
  if (!err) err = &local;
  const vault_config *cfg = h->cfg;
  int64_t start = mono_ms(), deadline = start + cfg->timeout_ms;
  const char *p = url_path(h, req->url);
  if (is_cancelled(h)) return cancelled_error(req, err);
  CURL *c = pool_get(h);
  if (!c) return kms_error_set(err, KMS_NO_MEMORY, 0, P "out of memory");
  kms_status st = KMS_OK;
  char why[CURL_ERROR_SIZE + 1];
  for (int n = 1;; n++) {
    long retry_after = -1;
    int mtls_drop = 0;
    why[0] = '\0';
    xfer_class cls =
        attempt(h, c, req, deadline, resp, &retry_after, why, sizeof why, &mtls_drop, err);
    resp->attempts = n;
    if (cls == X_FATAL) {
      st = err->status != KMS_OK ? err->status : KMS_INTERNAL;
      break;
    }
    if (cls == X_TIMEOUT) {
      st = kms_error_set(err, KMS_UNAVAILABLE, 0,
                         P "%s %.80s: no answer within VAULT_CLIENT_TIMEOUT (%lld ms, %d "
                         "attempt%s); Vault is slow or unreachable", req->op, p,
                         (long long)cfg->timeout_ms, n, n > 1 ? "s" : "");
      break;
    }
    if (cls == X_HTTP && !retryable_status(resp->status)) break;

    /* Retryable. */
    const char *what = cls == X_HTTP ? "HTTP error" : why;
    char code[24];
    snprintf(code, sizeof code, "HTTP %ld", resp->status);
    if (cls == X_HTTP) what = code;
    int64_t delay;
    if (retry_after >= 0) {
      delay = retry_after;
    } else {
      int64_t d = h->base_ms;
      for (int i = 1; i < n && d < h->max_ms; i++) d *= 2;
      if (d > h->max_ms) d = h->max_ms;
      delay = d / 2 + (int64_t)(rnd() % (uint64_t)(d / 2 + 1));
    }
    int budget_left = mono_ms() + delay < deadline;
    if (n > cfg->max_retries || !budget_left) {
      if (cls == X_HTTP) break; /* caller maps the status (UNAVAILABLE) */
      int mtls = cfg->client_cert && strncasecmp(req->url, "https:", 6) == 0;
      if (mtls_drop) /* see exchange(): most likely a rejected client certificate */
        st = kms_error_set(err, KMS_UNAVAILABLE, 0,
                           P "%s %.50s: TLS: Vault closed the connection right after the "
                           "handshake (%d attempt%s): it most likely rejects the client "
                           "certificate HCP_VAULT_CLIENT_CERT (%.60s)", req->op, p, n,
                           n > 1 ? "s" : "", why);
      else
        st = kms_error_set(err, KMS_UNAVAILABLE, 0,
                           P "%s %.60s: cannot reach %.60s: %.70s (%d attempt%s%s); %s", req->op,
                           p, cfg->addr, why, n, n > 1 ? "s" : "",
                           budget_left ? "" : ", timeout budget spent",
                           mtls ? "is Vault running, and does it trust HCP_VAULT_CLIENT_CERT?"
                                : "is Vault running at HCP_VAULT_ADDR?");
      break;
    }
    vault_logf(h->lg, KMS_LOG_INFO, "%s %.100s: %.80s; retry %d of %d in %lld ms", req->op, p,
               what, n, cfg->max_retries, (long long)delay);
    vault_http_response_clear(resp);
    if (wait_ms(h, delay)) {
      st = cancelled_error(req, err);
      break;
    }
  }
  pool_put(h, c);
  if (st != KMS_OK) vault_http_response_clear(resp);
  return st;
}
