/*
 * kpc_http.c -- libcurl client: handle pool, TLS, timeouts, size cap,
 * retries with jittered backoff and Retry-After, one self-followed redirect
 * (see kpc_http.h for the contract).
 */
#include "kpc_http.h"

#include "kms_plugin_util.h"
#include "kpc_proxy.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>


struct kpc_http {
  const kpc_http_config *cfg;
  const kpc_logger *lg;
  const kpc_clock *clock; /* NULL: CLOCK_MONOTONIC */
  CURLSH *share;
  pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
  pthread_mutex_t mu; /* guards idle[] and rng; with cancel_cv, the retry waits */
  kpc_rng rng;      /* backoff jitter */
  CURL **idle;
  size_t n_idle, max_idle;
  long base_ms, max_ms;
  char *addr_host; /* lower-case host of cfg->addr (for tls_server_name) */
  pthread_cond_t cancel_cv; /* with mu: wakes retry waits on cancel */
  int cancelled;            /* kpc_http_cancel() was called (atomic) */
  /* health (atomic): the last exchange's observations, -1 unknown; written
   * only by health_record() and kpc_http_note_auth() */
  int reachable, authenticated;
};

/* ---- global init ------------------------------------------------------- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static CURLcode g_init_rc = CURLE_OK;
static void global_init(void) { g_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* ---- time and randomness ----------------------------------------------- */

static int64_t now_ms(const kpc_http *h) { return kpc_clock_now(h->clock); }

static int is_cancelled(kpc_http *h) { return __atomic_load_n(&h->cancelled, __ATOMIC_ACQUIRE); }

/* Wait ms milliseconds (real time: the condition variable cannot follow
 * an injected clock), or less if the client is cancelled: returns 1 then.
 * An injected clock with sleep_ms advances itself instead (tests). */
static int wait_ms(kpc_http *h, int64_t ms) {
  if (h->clock && h->clock->sleep_ms) {
    h->clock->sleep_ms(h->clock->ctx, ms);
    return is_cancelled(h);
  }
  struct timespec ts;
  kpc_timespec_in(ms, &ts);
  pthread_mutex_lock(&h->mu);
  while (!h->cancelled)
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

static kms_status cancelled_error(const kpc_http_request *req, kms_error *err) {
  return kms_error_set(err, KMS_UNAVAILABLE, 0,
                       "%s: cancelled (the instance is being destroyed)", req->op);
}

/* A backoff delay for attempt n (1-based): base doubling up to max, drawn
 * from [d/2, d]. */
static int64_t backoff_ms(kpc_http *h, int n) {
  int64_t d = h->base_ms;
  for (int i = 1; i < n && d < h->max_ms; i++) d *= 2;
  if (d > h->max_ms) d = h->max_ms;
  pthread_mutex_lock(&h->mu);
  int64_t r = kpc_rng_jitter(&h->rng, d);
  pthread_mutex_unlock(&h->mu);
  return r;
}

/* ---- share locks ------------------------------------------------------- */

static void share_lock(CURL *c, curl_lock_data data, curl_lock_access access, void *u) {
  (void)c;
  (void)access;
  kpc_http *h = u;
  if ((unsigned)data < CURL_LOCK_DATA_LAST) pthread_mutex_lock(&h->share_mu[data]);
}

static void share_unlock(CURL *c, curl_lock_data data, void *u) {
  (void)c;
  kpc_http *h = u;
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

static int host_allowed(const kpc_http *h, const origin *o) {
  char hp[300];
  snprintf(hp, sizeof hp, "%s:%ld", o->host, o->port);
  for (size_t i = 0; i < h->cfg->n_redirect_allowed_hosts; i++)
    if (strcmp(h->cfg->redirect_allowed_hosts[i], hp) == 0) return 1;
  return 0;
}

/* ---- lifecycle --------------------------------------------------------- */

kms_status kpc_http_new(const kpc_http_config *cfg, const kpc_logger *lg,
                          const kpc_clock *clock, kpc_http **out, kms_error *err) {
  *out = NULL;
  pthread_once(&g_once, global_init);
  if (g_init_rc != CURLE_OK)
    return kms_error_set(err, KMS_INTERNAL, 0, "curl_global_init failed: %s",
                         curl_easy_strerror(g_init_rc));
  curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
  if (!vi || !(vi->features & CURL_VERSION_SSL))
    return kms_error_set(err, KMS_UNSUPPORTED, 0, "libcurl was built without TLS support");
  kpc_http *h = calloc(1, sizeof *h);
  if (!h) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  h->cfg = cfg;
  h->lg = lg;
  h->clock = clock;
  kpc_rng_seed(&h->rng, 0, h);
  h->base_ms = 100;
  h->reachable = h->authenticated = -1;
  h->max_ms = 2000;
  h->max_idle = cfg->max_idle_connections ? cfg->max_idle_connections : 1;
  pthread_mutex_init(&h->mu, NULL);
  kpc_cond_init(&h->cancel_cv);
  for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&h->share_mu[i], NULL);
  h->idle = calloc(h->max_idle, sizeof *h->idle);
  origin o;
  if (get_origin(cfg->addr, &o) == 0) h->addr_host = strdup(o.host);
  h->share = curl_share_init();
  if (!h->idle || !h->addr_host || !h->share) {
    kpc_http_free(h);
    return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  }
  curl_share_setopt(h->share, CURLSHOPT_LOCKFUNC, share_lock);
  curl_share_setopt(h->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
  curl_share_setopt(h->share, CURLSHOPT_USERDATA, h);
  curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  *out = h;
  return KMS_OK;
}

void kpc_http_free(kpc_http *h) {
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

void kpc_http_cancel(kpc_http *h) {
  if (!h) return;
  pthread_mutex_lock(&h->mu);
  __atomic_store_n(&h->cancelled, 1, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&h->cancel_cv);
  pthread_mutex_unlock(&h->mu);
}

int64_t kpc_http_deadline(const kpc_http *h) { return now_ms(h) + h->cfg->timeout_ms; }

void kpc_http_set_backoff(kpc_http *h, long base_ms, long max_ms) {
  h->base_ms = base_ms > 0 ? base_ms : 1;
  h->max_ms = max_ms >= h->base_ms ? max_ms : h->base_ms;
}

static CURL *pool_get(kpc_http *h) {
  CURL *c = NULL;
  pthread_mutex_lock(&h->mu);
  if (h->n_idle) c = h->idle[--h->n_idle];
  pthread_mutex_unlock(&h->mu);
  return c ? c : curl_easy_init();
}

static void pool_put(kpc_http *h, CURL *c) {
  if (!c) return;
  pthread_mutex_lock(&h->mu);
  if (h->n_idle < h->max_idle) {
    h->idle[h->n_idle++] = c;
    c = NULL;
  }
  pthread_mutex_unlock(&h->mu);
  if (c) curl_easy_cleanup(c);
}

/* ---- one request's state ------------------------------------------------ */

void kpc_http_response_clear(kpc_http_response *r) {
  if (!r) return;
  if (r->body) {
    OPENSSL_cleanse(r->body, r->cap);
    free(r->body);
  }
  r->body = NULL;
  r->len = r->cap = 0;
  r->status = 0;
}

/*
 * Everything one kpc_http_perform call carries across its attempts and
 * its redirect (curl's SingleRequest is the model): the fixed inputs, the
 * per-exchange scratch, and what the last exchange found out.
 */
typedef struct xfer {
  /* the call */
  kpc_http *h;
  const kpc_http_request *req;
  CURL *c;
  int64_t deadline;
  const char *path; /* req->url after the address: messages only */
  kpc_http_response *resp;
  kms_error *err;
  int attempts;
  /* this exchange */
  const char *url; /* req->url, or the redirect target */
  int send_creds;
  char *real_url; /* url with tls_server_name as host (curl_free) */
  struct curl_slist *hdrs, *connect_to;
  char ebuf[CURL_ERROR_SIZE];
  /* what it found out */
  char location[2048]; /* redirect target, "" if none */
  long retry_after_ms; /* -1: no Retry-After */
  char why[CURL_ERROR_SIZE + 1]; /* transport failure text */
  int too_large;  /* body larger than max_response_bytes */
  int mtls_drop;  /* new mTLS connection died before a response byte */
  int no_san;     /* server certificate without subjectAltName */
  int reached;    /* last exchange: 1 an HTTP answer began, 0 transport failure, -1 none */
} xfer;

typedef enum xfer_class {
  X_HTTP,    /* an HTTP answer arrived */
  X_RETRY,   /* transient transport failure */
  X_TIMEOUT, /* the call's deadline was reached */
  X_FATAL    /* error already set in x->err */
} xfer_class;

static kms_status oom(kms_error *err) {
  return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *u) {
  xfer *x = u;
  size_t n = size * nmemb, max = x->h->cfg->max_response_bytes;
  kpc_http_response *r = x->resp;
  if (n > max || r->len > max - n) {
    x->too_large = 1;
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

/* Go (1.15 on), and so Vault's own client, ignores a certificate's Common
 * Name: a server certificate without a subjectAltName matches no host name.
 * libcurl would fall back to the CN, so the leaf is checked here: the
 * verification fails (and libcurl reports it) when the extension is absent. */
static int verify_san(int ok, X509_STORE_CTX *sc) {
  if (!ok || X509_STORE_CTX_get_error_depth(sc) != 0) return ok;
  GENERAL_NAMES *san = X509_get_ext_d2i(X509_STORE_CTX_get_current_cert(sc),
                                        NID_subject_alt_name, NULL, NULL);
  if (san) {
    GENERAL_NAMES_free(san);
    return ok;
  }
  SSL *ssl = X509_STORE_CTX_get_ex_data(sc, SSL_get_ex_data_X509_STORE_CTX_idx());
  xfer *x = ssl ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
  if (x) x->no_san = 1;
  X509_STORE_CTX_set_error(sc, X509_V_ERR_HOSTNAME_MISMATCH);
  return 0;
}

/* libcurl hands us each new connection's SSL_CTX before the handshake. */
static CURLcode on_ssl_ctx(CURL *c, void *ssl_ctx, void *u) {
  (void)c;
  SSL_CTX_set_app_data(ssl_ctx, u);
  SSL_CTX_set_verify(ssl_ctx, SSL_CTX_get_verify_mode(ssl_ctx), verify_san);
  return CURLE_OK;
}

/* Wipe the header values (they hold credentials) before curl frees them. */
static void slist_free_wiped(struct curl_slist *l) {
  for (struct curl_slist *p = l; p; p = p->next)
    if (p->data) OPENSSL_cleanse(p->data, strlen(p->data));
  curl_slist_free_all(l);
}

static struct curl_slist *add_hdr(struct curl_slist *l, const char *name, const char *value,
                                  int *nomem) {
  if (*nomem) return l;
  size_t n = strlen(name) + strlen(value) + 3;
  char *line = malloc(n);
  if (!line) {
    *nomem = 1;
    return l;
  }
  snprintf(line, n, "%s: %s", name, value);
  struct curl_slist *nl = curl_slist_append(l, line);
  OPENSSL_cleanse(line, n);
  free(line);
  if (!nl) *nomem = 1;
  return nl ? nl : l;
}

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

/* ---- one exchange: set up, perform, read the answer, clean up ----------- */

/* tls_server_name: put the name in the URL (SNI, certificate check,
 * Host) and connect to the configured host. Also picks the proxy (by the
 * URL's own host). */
static xfer_class route(xfer *x) {
  const kpc_http_config *cfg = x->h->cfg;
  origin o;
  if (get_origin(x->url, &o) != 0) {
    kms_error_set(x->err, KMS_INTERNAL, 0, "%s: cannot parse the request URL", x->req->op);
    return X_FATAL;
  }
  char bare[sizeof o.host];
  size_t hl = strlen(o.host);
  snprintf(bare, sizeof bare, "%.*s", (int)(o.host[0] == '[' ? hl - 2 : hl),
           o.host + (o.host[0] == '['));
  const char *proxy = kpc_proxy_for(&cfg->proxy, o.scheme, bare, o.port);
  /* "" rather than NULL: libcurl must not read the proxy variables itself */
  curl_easy_setopt(x->c, CURLOPT_PROXY, proxy ? proxy : "");
  curl_easy_setopt(x->c, CURLOPT_NOPROXY, "");
  if (!cfg->tls_server_name || strcmp(o.scheme, "https") != 0 ||
      (strcmp(o.host, x->h->addr_host) != 0 && strcasecmp(o.host, cfg->tls_server_name) != 0))
    return X_HTTP;
  CURLU *u = curl_url();
  char buf[600];
  if (!u || curl_url_set(u, CURLUPART_URL, x->url, 0) != CURLUE_OK ||
      curl_url_set(u, CURLUPART_HOST, cfg->tls_server_name, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_URL, &x->real_url, 0) != CURLUE_OK) {
    curl_url_cleanup(u);
    oom(x->err);
    return X_FATAL;
  }
  curl_url_cleanup(u);
  snprintf(buf, sizeof buf, "%s:%ld:%s:%ld", cfg->tls_server_name, o.port,
           strcasecmp(o.host, cfg->tls_server_name) == 0 ? x->h->addr_host : o.host, o.port);
  if (!(x->connect_to = curl_slist_append(NULL, buf))) {
    oom(x->err);
    return X_FATAL;
  }
  curl_easy_setopt(x->c, CURLOPT_CONNECT_TO, x->connect_to);
  return X_HTTP;
}

/* Transport, limits and TLS options of one exchange. */
static void set_options(xfer *x, int64_t remaining) {
  const kpc_http_config *cfg = x->h->cfg;
  CURL *c = x->c;
  curl_easy_setopt(c, CURLOPT_URL, x->real_url ? x->real_url : x->url);
  curl_easy_setopt(c, CURLOPT_SHARE, x->h->share);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->ebuf);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)remaining);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   (long)(cfg->connect_timeout_ms < remaining ? cfg->connect_timeout_ms : remaining));
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, x->h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cfg->max_response_bytes);
  curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, cfg->skip_verify ? 0L : 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, cfg->skip_verify ? 0L : 2L);
  if (!cfg->skip_verify) {
    curl_easy_setopt(c, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
    curl_easy_setopt(c, CURLOPT_SSL_CTX_DATA, x);
  }
  if (cfg->ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, cfg->ca_file);
  if (cfg->ca_path) curl_easy_setopt(c, CURLOPT_CAPATH, cfg->ca_path);
  if (cfg->client_cert) {
    curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(c, CURLOPT_SSLCERT, cfg->client_cert);
    curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
    curl_easy_setopt(c, CURLOPT_SSLKEY, cfg->client_key);
  }
}

/* Headers (the caller's only when sending credentials) and the method. */
static xfer_class set_request(xfer *x) {
  const kpc_http_request *req = x->req;
  CURL *c = x->c;
  int nomem = 0;
  for (size_t i = 0; x->send_creds && i < req->n_headers; i++)
    if (req->headers[i].value)
      x->hdrs = add_hdr(x->hdrs, req->headers[i].name, req->headers[i].value, &nomem);
  if (req->body)
    x->hdrs = add_hdr(x->hdrs, "Content-Type",
                      req->content_type ? req->content_type : "application/json", &nomem);
  struct curl_slist *nl = nomem ? NULL : curl_slist_append(x->hdrs, "Expect:");
  if (!nl) {
    oom(x->err);
    return X_FATAL;
  }
  x->hdrs = nl;
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, x->hdrs);
  if (strcmp(req->method, "GET") == 0) {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    return X_HTTP;
  }
  int post = strcmp(req->method, "POST") == 0;
  if (req->body || post) { /* a bodiless POST sends an empty body */
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body ? req->body : "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? req->body_len : 0));
  }
  if (!post) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
  return X_HTTP;
}

/* Retry-After: seconds or an HTTP date; -1 when absent or unreadable. */
static long retry_after(CURL *c) {
  struct curl_header *ra = NULL;
  if (curl_easy_header(c, "Retry-After", 0, CURLH_HEADER, -1, &ra) != CURLHE_OK || !ra ||
      !ra->value)
    return -1;
  const char *v = ra->value;
  while (*v == ' ') v++;
  if (isdigit((unsigned char)*v)) {
    errno = 0;
    long sec = strtol(v, NULL, 10);
    return errno || sec > 86400 ? 86400000L : sec * 1000L;
  }
  time_t t = curl_getdate(v, NULL);
  if (t == (time_t)-1) return -1;
  time_t now = time(NULL); /* an HTTP date is wall-clock time */
  return t > now ? (long)(t - now > 86400 ? 86400 : t - now) * 1000L : 0;
}

/* An answer arrived: status, redirect target, Retry-After. */
static xfer_class collect_answer(xfer *x) {
  kpc_http_response *r = x->resp;
  curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &r->status);
  char *loc = NULL;
  if (curl_easy_getinfo(x->c, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc)
    snprintf(x->location, sizeof x->location, "%s", loc);
  x->retry_after_ms = retry_after(x->c);
  if (!r->body) { /* empty body: keep an empty string for parsers */
    if (!(r->body = calloc(1, 1))) {
      oom(x->err);
      return X_FATAL;
    }
    r->cap = 1;
  }
  return X_HTTP;
}

/* A new mTLS connection dying before a single response byte. TLS 1.3: the
 * client sends its certificate in its last handshake flight and considers
 * the handshake done; a server that rejects the certificate answers with an
 * alert and closes. Under load the alert can be lost to a connection reset
 * (or a bare close), so libcurl reports a send/receive error instead of a
 * TLS one: that is most likely a rejected client certificate. */
static int mtls_dropped(const xfer *x, CURLcode rc) {
  if (!x->h->cfg->client_cert || strncasecmp(x->url, "https:", 6) != 0 ||
      (rc != CURLE_RECV_ERROR && rc != CURLE_SEND_ERROR && rc != CURLE_GOT_NOTHING))
    return 0;
  long nconn = 0, hsize = 0;
  curl_easy_getinfo(x->c, CURLINFO_NUM_CONNECTS, &nconn);
  curl_easy_getinfo(x->c, CURLINFO_HEADER_SIZE, &hsize);
  return nconn > 0 && hsize == 0;
}

static int transient_transport(CURLcode rc) {
  return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
         rc == CURLE_COULDNT_RESOLVE_PROXY || rc == CURLE_OPERATION_TIMEDOUT ||
         rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING ||
         rc == CURLE_PARTIAL_FILE || rc == CURLE_HTTP2 || rc == CURLE_HTTP2_STREAM;
}

/* After CURLE_OUT_OF_MEMORY: is memory actually short? (1 if a 1 MiB
 * allocation, more than any header libcurl would hold, still succeeds.) */
static int memory_available(void) {
  void *p = malloc(1024 * 1024);
  free(p);
  return p != NULL;
}

/* No answer: what kind of failure, with the error set for the fatal ones. */
static xfer_class classify_failure(xfer *x, CURLcode rc) {
  const kpc_http_request *req = x->req;
  const kpc_http_config *cfg = x->h->cfg;
  snprintf(x->why, sizeof x->why, "%s", x->ebuf[0] ? x->ebuf : curl_easy_strerror(rc));
  x->mtls_drop = mtls_dropped(x, rc);
  if (rc == CURLE_ABORTED_BY_CALLBACK && is_cancelled(x->h)) {
    cancelled_error(req, x->err);
  } else if (x->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
    kms_error_set(x->err, KMS_INTERNAL, 0,
                  "%s %.80s: response larger than max_response_bytes (%zu); raise the setting "
                  "if the secret is that large", req->op, x->path, cfg->max_response_bytes);
  } else if (x->no_san) {
    kms_error_set(x->err, KMS_UNAVAILABLE, 0,
                  "%s %.60s: TLS failed: the server certificate has no subjectAltName (its "
                  "Common Name is ignored, as by Go and Vault's own client); reissue it with a "
                  "DNS or IP subjectAltName", req->op, x->path);
  } else if (tls_error(rc, x->ebuf)) {
    kms_error_set(x->err, KMS_UNAVAILABLE, 0,
                  "%s %.60s: TLS failed: %.90s (check %s and the client certificate)", req->op,
                  x->path, x->why, cfg->tls_vars);
  } else if (rc == CURLE_OPERATION_TIMEDOUT && now_ms(x->h) >= x->deadline - 5) {
    return X_TIMEOUT;
  } else if (transient_transport(rc)) {
    return X_RETRY;
  } else if (rc == CURLE_OUT_OF_MEMORY && memory_available()) {
    /* libcurl answers a response header line over its limit (100 KiB) with
     * CURLE_OUT_OF_MEMORY and no message: the server's doing, not ours */
    kms_error_set(x->err, KMS_INTERNAL, 0,
                  "%s %.80s: libcurl refused the response: a response header larger than it "
                  "accepts (100 KiB); is %s a %s server?", req->op, x->path, cfg->addr_var,
                  cfg->server_word);
  } else if (rc == CURLE_OUT_OF_MEMORY) {
    oom(x->err);
  } else {
    kms_error_set(x->err, KMS_INTERNAL, 0, "%s %.80s: %.120s", req->op, x->path, x->why);
  }
  return X_FATAL;
}

static void exchange_cleanup(xfer *x) {
  curl_easy_setopt(x->c, CURLOPT_HTTPHEADER, NULL);
  curl_easy_setopt(x->c, CURLOPT_CONNECT_TO, NULL);
  curl_easy_setopt(x->c, CURLOPT_POSTFIELDS, NULL);
  curl_easy_setopt(x->c, CURLOPT_ERRORBUFFER, NULL);
  curl_easy_setopt(x->c, CURLOPT_SSL_CTX_DATA, NULL);
  slist_free_wiped(x->hdrs);
  curl_slist_free_all(x->connect_to);
  curl_free(x->real_url);
  x->hdrs = x->connect_to = NULL;
  x->real_url = NULL;
}

/* One request to `url` (no redirect handling here). */
static xfer_class exchange(xfer *x, const char *url, int send_creds) {
  x->url = url;
  x->send_creds = send_creds;
  x->ebuf[0] = x->location[0] = x->why[0] = '\0';
  x->retry_after_ms = -1;
  x->too_large = x->mtls_drop = x->no_san = 0;
  kpc_http_response_clear(x->resp);
  int64_t remaining = x->deadline - now_ms(x->h);
  if (remaining <= 0) return X_TIMEOUT;
  curl_easy_reset(x->c);
  xfer_class cls = route(x);
  if (cls == X_HTTP) {
    set_options(x, remaining);
    cls = set_request(x);
  }
  if (cls == X_HTTP && x->req->setup && x->req->setup(x->req->setup_ctx, x->c, x->err) != KMS_OK)
    cls = X_FATAL;
  if (cls == X_HTTP) {
    CURLcode rc = curl_easy_perform(x->c);
    long code = 0; /* > 0 once a status line arrived, even if the body was then refused */
    curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &code);
    if (rc == CURLE_OK || code > 0) x->reached = 1;
    else if (!(rc == CURLE_ABORTED_BY_CALLBACK && is_cancelled(x->h))) x->reached = 0;
    cls = rc == CURLE_OK ? collect_answer(x) : classify_failure(x, rc);
  }
  exchange_cleanup(x);
  if (cls != X_HTTP) kpc_http_response_clear(x->resp);
  return cls;
}

/* ---- redirects, attempts, retries -------------------------------------- */

static int is_redirect(long st) {
  return st == 301 || st == 302 || st == 303 || st == 307 || st == 308;
}

int kpc_http_retryable_status(long st) {
  return st == 412 || st == 429 || (st >= 500 && st <= 599 && st != 501);
}

static int retryable_answer(const xfer *x) {
  const kpc_http_request *req = x->req;
  return req->retryable ? req->retryable(req->retryable_ctx, x->resp)
                        : kpc_http_retryable_status(x->resp->status);
}

static xfer_class refuse_redirect(xfer *x, long first) {
  kpc_http_response_clear(x->resp);
  x->err->backend_status = (int32_t)first;
  return X_FATAL;
}

/* The answer was a redirect to x->location: follow it once, if allowed. */
static xfer_class follow_redirect(xfer *x) {
  const kpc_http_request *req = x->req;
  const kpc_http_config *cfg = x->h->cfg;
  long first = x->resp->status;
  char location[sizeof x->location];
  memcpy(location, x->location, sizeof location);
  origin from, to;
  if (get_origin(req->url, &from) != 0 || get_origin(location, &to) != 0 ||
      (strcmp(to.scheme, "http") != 0 && strcmp(to.scheme, "https") != 0)) {
    kms_error_set(x->err, KMS_UNAVAILABLE, 0,
                  "%s %.80s: HTTP %ld redirect to an unusable location", req->op, x->path, first);
    return refuse_redirect(x, first);
  }
  if (strcmp(from.scheme, "https") == 0 && strcmp(to.scheme, "http") == 0) {
    kms_error_set(x->err, KMS_UNAVAILABLE, 0,
                  "%s %.60s: HTTP %ld redirect from https to http://%.60s:%ld refused (it "
                  "would expose the credentials); point %s at the active node", req->op, x->path,
                  first, to.host, to.port, cfg->addr_var);
    return refuse_redirect(x, first);
  }
  if (!same_origin(&from, &to) && !host_allowed(x->h, &to)) {
    kms_error_set(x->err, KMS_UNAVAILABLE, 0,
                  "%s %.50s: HTTP %ld redirect to %s://%.60s:%ld refused: credentials are only sent "
                  "to %s (add %.60s:%ld to redirect_allowed_hosts to trust it)", req->op, x->path,
                  first, to.scheme, to.host, to.port, cfg->addr_var, to.host, to.port);
    return refuse_redirect(x, first);
  }
  kpc_logf(x->h->lg, KMS_LOG_INFO, "%s %.80s: following HTTP %ld redirect to %s://%.60s:%ld",
             req->op, x->path, first, to.scheme, to.host, to.port);
  xfer_class cls = exchange(x, location, 1);
  if (cls == X_HTTP && is_redirect(x->resp->status)) {
    kms_error_set(x->err, KMS_UNAVAILABLE, 0,
                  "%s %.80s: redirected more than once (HTTP %ld, then HTTP %ld); point "
                  "%s at the active node", req->op, x->path, first, x->resp->status,
                  cfg->addr_var);
    return refuse_redirect(x, x->resp->status);
  }
  return cls;
}

/* One attempt: the request plus at most one redirect. */
static xfer_class attempt(xfer *x) {
  xfer_class cls = exchange(x, x->req->url, 1);
  if (cls != X_HTTP || !is_redirect(x->resp->status) || !x->location[0]) return cls;
  return follow_redirect(x);
}

/* The retries are spent (or the next wait would cross the deadline) after
 * a transport failure: say why, and what to check. */
static kms_status give_up(xfer *x, int budget_left) {
  const kpc_http_config *cfg = x->h->cfg;
  const kpc_http_request *req = x->req;
  int n = x->attempts;
  if (x->mtls_drop) /* see mtls_dropped(): most likely a rejected client certificate */
    return kms_error_set(x->err, KMS_UNAVAILABLE, 0,
                         "%s %.50s: TLS: %s closed the connection right after the "
                         "handshake (%d attempt%s): it most likely rejects the client "
                         "certificate %s (%.60s)", req->op, x->path, cfg->server_word, n,
                         n > 1 ? "s" : "", cfg->client_cert_var, x->why);
  int mtls = cfg->client_cert && strncasecmp(req->url, "https:", 6) == 0;
  return kms_error_set(x->err, KMS_UNAVAILABLE, 0,
                       "%s %.60s: cannot reach %.60s: %.70s (%d attempt%s%s); is %s running%s%s?",
                       req->op, x->path, cfg->addr, x->why, n, n > 1 ? "s" : "",
                       budget_left ? "" : ", timeout budget spent", cfg->server_word,
                       mtls ? ", and does it trust " : " at ",
                       mtls ? cfg->client_cert_var : cfg->addr_var);
}

static kms_status timed_out(xfer *x) {
  const kpc_http_config *cfg = x->h->cfg;
  int n = x->attempts;
  return kms_error_set(x->err, KMS_UNAVAILABLE, 0,
                       "%s %.80s: no answer within %s (%lld ms for the whole call, %d attempt%s "
                       "of this request); %s is slow or unreachable", x->req->op, x->path,
                       cfg->timeout_var, (long long)cfg->timeout_ms, n, n > 1 ? "s" : "",
                       cfg->server_word);
}

/* After attempt x->attempts failed retryably: wait and return 1 to try
 * again, or return 0 with *st set (the status to return). */
static int retry_or_stop(xfer *x, xfer_class cls, kms_status *st) {
  const kpc_http_config *cfg = x->h->cfg;
  int n = x->attempts;
  int64_t delay = x->retry_after_ms >= 0 ? x->retry_after_ms : backoff_ms(x->h, n);
  int budget_left = now_ms(x->h) + delay < x->deadline;
  if (n > cfg->max_retries || !budget_left) {
    /* an HTTP answer is the caller's to map (UNAVAILABLE) */
    *st = cls == X_HTTP ? KMS_OK : give_up(x, budget_left);
    return 0;
  }
  char code[24];
  snprintf(code, sizeof code, "HTTP %ld", x->resp->status);
  kpc_logf(x->h->lg, KMS_LOG_INFO, "%s %.100s: %.80s; retry %d of %d in %lld ms", x->req->op,
             x->path, cls == X_HTTP ? code : x->why, n, cfg->max_retries, (long long)delay);
  kpc_http_response_clear(x->resp);
  if (wait_ms(x->h, delay)) {
    *st = cancelled_error(x->req, x->err);
    return 0;
  }
  return 1;
}

/* ---- health ------------------------------------------------------------ */

int kpc_http_auth_by_status(long status, const char *body, size_t len) {
  (void)body, (void)len;
  if (status == 401 || status == 403) return 0;
  if (status == 412 || status == 429 || status >= 500 || status < 200) return -1;
  return 1; /* 2xx, and a 4xx the server gave after accepting the credentials */
}

/* The one place health is written from an exchange: reachable from the last
 * exchange (any HTTP answer vs a transport failure; nothing when no exchange
 * was made or it was cancelled), authenticated from the final answer of a
 * request that checks credentials. */
static void health_record(kpc_http *h, const kpc_http_request *req, int reached, kms_status st,
                          const kpc_http_response *resp) {
  if (reached >= 0) __atomic_store_n(&h->reachable, reached, __ATOMIC_RELAXED);
  if (st != KMS_OK || !req->auth_verdict) return;
  int v = req->auth_verdict(resp->status, resp->body, resp->len);
  if (v >= 0) __atomic_store_n(&h->authenticated, v, __ATOMIC_RELAXED);
}

void kpc_http_note_auth(kpc_http *h, int authenticated) {
  __atomic_store_n(&h->authenticated, authenticated, __ATOMIC_RELAXED);
}

void kpc_http_health(const kpc_http *h, int *reachable, int *authenticated) {
  *reachable = __atomic_load_n(&h->reachable, __ATOMIC_RELAXED);
  *authenticated = __atomic_load_n(&h->authenticated, __ATOMIC_RELAXED);
}

kms_status kpc_http_perform(kpc_http *h, const kpc_http_request *req,
                              kpc_http_response *resp, kms_error *err) {
  memset(resp, 0, sizeof *resp);
  kms_error local = {0}; /* stands in when the caller passes no err; cppcheck wants it set */
  xfer x = {.h = h, .req = req, .resp = resp, .err = err ? err : &local, .reached = -1};
  x.deadline = req->deadline_ms ? req->deadline_ms : kpc_http_deadline(h);
  x.path = kpc_url_path(h->cfg->addr, req->url);
  if (is_cancelled(h)) return cancelled_error(req, x.err);
  if (!(x.c = pool_get(h))) return oom(x.err);
  kms_status st = KMS_OK;
  for (;;) {
    x.attempts++;
    xfer_class cls = attempt(&x);
    resp->attempts = x.attempts;
    if (cls == X_FATAL) {
      st = x.err->status != KMS_OK ? x.err->status : KMS_INTERNAL;
      break;
    }
    if (cls == X_TIMEOUT) {
      st = timed_out(&x);
      break;
    }
    if (cls == X_HTTP && !retryable_answer(&x)) break;
    if (!retry_or_stop(&x, cls, &st)) break;
  }
  pool_put(h, x.c);
  health_record(h, req, x.reached, st, resp);
  if (st != KMS_OK) kpc_http_response_clear(resp);
  return st;
}
