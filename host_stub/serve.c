/*
 * serve.c -- `kms-host serve`: the libmicrohttpd daemon in front of
 * serve_keys.c.
 *
 * A thread pool (--threads) with keep-alive, loopback by default (--listen
 * ADDR:PORT), optional TLS (--tls-cert/--tls-key, GnuTLS inside MHD), bounded request bodies (SERVE_BODY_MAX: 413), bounded headers
 * (MHD's per-connection memory limit: 431/413 from MHD), an idle timeout
 * against slow clients, and a connection limit. The main thread blocks
 * SIGTERM/SIGINT before any thread starts and waits for them; then it stops
 * accepting, lets in-flight requests finish (bounded), stops the worker and
 * returns. Each finished request is one JSON access-log line on stderr with
 * the route pattern, never a path or query that could hold a key.
 */
#include "serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SERVE_THREADS_DEFAULT 4
#define SERVE_DELIVER_WAIT_DEFAULT_MS 5000
#define SERVE_TIMEOUT_S 30          /* idle or slow connection (--client-timeout) */
#define SERVE_HEADER_MEMORY (32u * 1024u) /* headers and MHD's buffers per connection */
#define SERVE_CONNECTIONS_MAX 512
#define SERVE_DRAIN_MS 30000        /* in-flight requests at shutdown */
#define SERVE_BACKOFF_MIN_MS 200
#define SERVE_BACKOFF_MAX_MS 30000

#define SERVE_PEM_MAX (1u << 20)   /* --tls-cert / --tls-key files */

typedef struct serve_opts {
  struct sockaddr_in addr;
  unsigned threads;
  unsigned deliver_wait_ms;
  unsigned client_timeout_s;
  const char *tls_cert, *tls_key; /* paths; both or neither */
  char *cert_pem, *key_pem;       /* their contents; the key is wiped when freed */
  size_t cert_len, key_len;
} serve_opts;

typedef struct serve_server {
  serve_ctx ctx;
  atomic_int in_flight;
} serve_server;

/* ------------------------------------------------------------- options */

static host_status parse_uint(const char *opt, const char *v, unsigned lo, unsigned hi,
                              unsigned *out, host_result *r) {
  char *end;
  errno = 0;
  unsigned long n = strtoul(v, &end, 10);
  if (!*v || *end || errno || n < lo || n > hi || *v == '-')
    return host_fail(r, HOST_USAGE, "%s expects a whole number from %u to %u, got '%s'", opt, lo,
                     hi, v);
  *out = (unsigned)n;
  return HOST_OK;
}

static host_status parse_listen(const char *v, struct sockaddr_in *a, host_result *r) {
  const char *colon = strrchr(v, ':');
  char host[64];
  unsigned port;
  if (!colon || (size_t)(colon - v) >= sizeof host)
    return host_fail(r, HOST_USAGE, "--listen expects ADDR:PORT (e.g. 127.0.0.1:4000), got '%s'",
                     v);
  memcpy(host, v, (size_t)(colon - v));
  host[colon - v] = '\0';
  if (parse_uint("--listen's port", colon + 1, 0, 65535, &port, r) != HOST_OK) return r->status;
  memset(a, 0, sizeof *a);
  a->sin_family = AF_INET;
  a->sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
    return host_fail(r, HOST_USAGE, "--listen: '%s' is not an IPv4 address (e.g. 127.0.0.1, or "
                     "0.0.0.0 for every interface)", host);
  return HOST_OK;
}

static host_status parse_opts(int argc, char **argv, serve_opts *o, host_result *r) {
  memset(o, 0, sizeof *o);
  if (parse_listen("127.0.0.1:4000", &o->addr, r) != HOST_OK) return r->status;
  o->threads = SERVE_THREADS_DEFAULT;
  o->deliver_wait_ms = SERVE_DELIVER_WAIT_DEFAULT_MS;
  o->client_timeout_s = SERVE_TIMEOUT_S;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    host_status s;
    if (!v) return host_fail(r, HOST_USAGE, "unexpected argument '%s'", a);
    if (!strcmp(a, "--listen")) s = parse_listen(v, &o->addr, r);
    else if (!strcmp(a, "--threads")) s = parse_uint(a, v, 1, 256, &o->threads, r);
    else if (!strcmp(a, "--deliver-wait-ms"))
      s = parse_uint(a, v, 0, 600000, &o->deliver_wait_ms, r);
    else if (!strcmp(a, "--client-timeout"))
      s = parse_uint(a, v, 1, 3600, &o->client_timeout_s, r);
    else if (!strcmp(a, "--tls-cert")) o->tls_cert = v, s = HOST_OK;
    else if (!strcmp(a, "--tls-key")) o->tls_key = v, s = HOST_OK;
    else return host_fail(r, HOST_USAGE, "unexpected argument '%s'", a);
    if (s != HOST_OK) return s;
    i++;
  }
  if (!o->tls_cert != !o->tls_key)
    return host_fail(r, HOST_USAGE, "--tls-cert and --tls-key go together (a PEM certificate "
                     "chain and its private key)");
  return HOST_OK;
}

/* Read --tls-cert and --tls-key (PEM) into memory for MHD (GnuTLS). */
static host_status read_pem(const char *path, const char *what, char **buf, size_t *len,
                            host_result *r) {
  FILE *f = fopen(path, "rb");
  if (!f) return host_fail(r, HOST_CONFIG, "%s %s: %s", what, path, strerror(errno));
  host_result rr = {HOST_OK, ""};
  host_status s = host_read_all(f, SERVE_PEM_MAX, what, buf, len, &rr);
  fclose(f);
  if (s != HOST_OK) return host_fail(r, HOST_CONFIG, "%s %s: %s", what, path, rr.msg);
  (*buf)[*len] = '\0'; /* host_read_all leaves a spare byte */
  return HOST_OK;
}

static host_status load_tls(serve_opts *o, host_result *r) {
  if (!o->tls_cert) return HOST_OK;
  if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
    return host_fail(r, HOST_CONFIG, "this libmicrohttpd was built without TLS: drop "
                     "--tls-cert/--tls-key and put a TLS proxy in front");
  if (read_pem(o->tls_cert, "--tls-cert", &o->cert_pem, &o->cert_len, r) != HOST_OK)
    return r->status;
  return read_pem(o->tls_key, "--tls-key", &o->key_pem, &o->key_len, r);
}

static void free_tls(serve_opts *o) {
  free(o->cert_pem);
  if (o->key_pem) OPENSSL_cleanse(o->key_pem, o->key_len);
  free(o->key_pem);
}

/* ------------------------------------------------------------ requests */

static const char *query_get(void *ctx, const char *name) {
  return MHD_lookup_connection_value((struct MHD_Connection *)ctx, MHD_GET_ARGUMENT_KIND, name);
}

static void free_body(void *p) {
  if (p) OPENSSL_cleanse(p, strlen(p));
  free(p);
}

static enum MHD_Result send_reply(struct MHD_Connection *c, serve_req *q, serve_reply *rep) {
  size_t n = rep->body ? strlen(rep->body) : 0;
  struct MHD_Response *resp =
      MHD_create_response_from_buffer_with_free_callback(n, rep->body, free_body);
  if (!resp) {
    serve_reply_free(rep);
    return MHD_NO;
  }
  rep->body = NULL; /* MHD owns it now; free_body wipes it */
  MHD_add_response_header(resp, "Content-Type", "application/json");
  q->status = rep->status;
  enum MHD_Result ok = MHD_queue_response(c, rep->status, resp);
  MHD_destroy_response(resp);
  return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls) {
  (void)version;
  serve_server *srv = cls;
  serve_req *q = *con_cls;
  if (!q) { /* first call: headers only */
    if (!(q = calloc(1, sizeof *q))) return MHD_NO;
    q->start_ms = host_clock_system()->now_ms(NULL);
    q->route = "(unknown)";
    *con_cls = q;
    atomic_fetch_add(&srv->in_flight, 1);
    return MHD_YES;
  }
  if (*upload_size) {
    serve_req_append(q, upload_data, *upload_size);
    *upload_size = 0;
    return MHD_YES;
  }
  serve_reply rep = {0, NULL};
  if (q->too_big) {
    serve_reply_error(&rep, 413, "bad_request_error", NULL, "the request body is larger than %u "
                      "bytes", SERVE_BODY_MAX);
  } else {
    const char *cred = serve_credential(
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-litellm-api-key"));
    serve_handle(&srv->ctx, method, url, query_get, c, cred, q, &rep);
  }
  return send_reply(c, q, &rep);
}

/* The access log: one JSON line per request, with the route pattern. */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  serve_server *srv = cls;
  serve_req *q = *con_cls;
  if (!q) return;
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  char peer[INET_ADDRSTRLEN] = "?";
  if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
    inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, peer, sizeof peer);
  uint64_t ms = host_clock_system()->now_ms(NULL) - q->start_ms;
  host_log(KMS_LOG_INFO, "access {\"route\":\"%s\",\"status\":%u,\"ms\":%llu,\"peer\":\"%s\","
           "\"completed\":%s}", q->route, q->status, (unsigned long long)ms, peer,
           toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "true" : "false");
  serve_req_free(q);
  free(q);
  *con_cls = NULL;
  atomic_fetch_sub(&srv->in_flight, 1);
}

/* ------------------------------------------------------------- running */

static struct MHD_Daemon *start_daemon(serve_server *srv, const serve_opts *o) {
  struct MHD_OptionItem common[] = {
      {MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)o->threads, NULL},
      {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)o->client_timeout_s, NULL},
      {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)SERVE_HEADER_MEMORY, NULL},
      {MHD_OPTION_CONNECTION_LIMIT, SERVE_CONNECTIONS_MAX, NULL},
      {MHD_OPTION_END, 0, NULL}};
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
                   MHD_USE_ERROR_LOG;
  if (o->key_pem)
    return MHD_start_daemon(flags | MHD_USE_TLS, 0, NULL, NULL, on_request, srv,
                            MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&o->addr,
                            MHD_OPTION_HTTPS_MEM_KEY, o->key_pem,
                            MHD_OPTION_HTTPS_MEM_CERT, o->cert_pem,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
                            MHD_OPTION_ARRAY, common, MHD_OPTION_END);
  return MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv,
                          MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&o->addr,
                          MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
                          MHD_OPTION_ARRAY, common, MHD_OPTION_END);
}

/* Wait for SIGTERM or SIGINT (blocked in every thread since before they
 * started). */
static int wait_for_signal(const sigset_t *set) {
  int sig = 0;
  while (sigwait(set, &sig) != 0) {
  }
  return sig;
}

/* Stop accepting, let in-flight requests finish (bounded), stop. */
static void drain(serve_server *srv, struct MHD_Daemon *d) {
  MHD_quiesce_daemon(d);
  const host_clock *clk = host_clock_system();
  uint64_t start = clk->now_ms(NULL);
  while (atomic_load(&srv->in_flight) > 0 && clk->now_ms(NULL) - start < SERVE_DRAIN_MS)
    clk->sleep_ms(NULL, 20);
  MHD_stop_daemon(d);
}

static unsigned bound_port(struct MHD_Daemon *d, const serve_opts *o) {
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  return di ? di->port : ntohs(o->addr.sin_port);
}

static host_status run_server(serve_server *srv, const serve_opts *o, const sigset_t *set,
                              host_result *r) {
  struct MHD_Daemon *d = start_daemon(srv, o);
  if (!d) {
    char a[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &o->addr.sin_addr, a, sizeof a);
    return host_fail(r, HOST_FAILED, "cannot listen on %s:%u (in use, not an address of this "
                     "machine%s): choose another --listen", a, ntohs(o->addr.sin_port),
                     o->key_pem ? ", or --tls-cert/--tls-key are not a matching PEM pair" : "");
  }
  char a[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &o->addr.sin_addr, a, sizeof a);
  /* The one stdout line: scripts (and the tests) read the port from it. */
  printf("listening: %s://%s:%u\n", o->key_pem ? "https" : "http", a, bound_port(d, o));
  fflush(stdout);
  int sig = wait_for_signal(set);
  host_log(KMS_LOG_INFO, "serve: %s: finishing in-flight requests, then stopping",
           sig == SIGTERM ? "SIGTERM" : "SIGINT");
  drain(srv, d);
  return HOST_OK;
}

host_status host_serve(const host_config *cfg, host_plugin *hp, host_db *db, const char *db_path,
                       int argc, char **argv, host_result *r) {
  serve_opts o;
  if (parse_opts(argc, argv, &o, r) != HOST_OK) return r->status;
  if (load_tls(&o, r) != HOST_OK) {
    free_tls(&o);
    return r->status;
  }
  serve_server srv;
  memset(&srv, 0, sizeof srv);
  serve_ctx *s = &srv.ctx;
  s->cfg = cfg;
  s->plugin = hp->module ? kms_module_plugin(hp->module) : NULL;
  s->client = hp->client;
  s->db = db;
  s->deliver_wait_ms = o.deliver_wait_ms;
  if (serve_master_key(cfg, hp->client, s->master_sha, r) != HOST_OK) {
    free_tls(&o);
    return r->status;
  }
  /* Block the signals before any thread starts, so only sigwait sees them. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  pthread_mutex_init(&s->db_mu, NULL);
  pthread_mutex_init(&s->plugin_mu, NULL);
  host_status st = serve_worker_start(db_path, hp->client, &s->plugin_mu, SERVE_BACKOFF_MIN_MS,
                                      SERVE_BACKOFF_MAX_MS, host_clock_system(), &s->worker, r);
  if (st == HOST_OK) st = run_server(&srv, &o, &set, r);
  serve_worker_stop(s->worker);
  pthread_mutex_destroy(&s->plugin_mu);
  pthread_mutex_destroy(&s->db_mu);
  OPENSSL_cleanse(s->master_sha, sizeof s->master_sha);
  free_tls(&o);
  return st;
}
