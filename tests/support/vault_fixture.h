/*
 * vault_fixture.h -- start/stop tests/vault_server from C tests and benchmarks,
 * drive its test controls, and read its request log.
 *
 *   vf_server *s = vf_start(&(vf_options){.tls = 1, .mtls = 1});
 *   ... point the plugin at vf_url(s) with VAULT_CACERT=vf_cert("ca.pem") ...
 *   vf_log *log = vf_requests(s);        // what the server received
 *   vf_stop(s);
 *
 * Environment: KMS_SOURCE_DIR (the source tree; set by CTest) locates
 * tests/vault_server; KMS_PYTHON (default /usr/bin/python3) runs it.
 * Certificates come from tests/vault_server/make_certs.sh, generated once
 * per process into a temporary directory removed at exit.
 * Failures print a reason on stderr and return NULL / -1.
 *
 * Thread-safety: vf_start/vf_stop from one thread (the test's main
 * thread); vf_cert, vf_http and the helpers built on it may be called from
 * any thread while the server runs.
 */
#ifndef VAULT_FIXTURE_H
#define VAULT_FIXTURE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vf_options {
  int tls;                        /* HTTPS with server.pem (CA ca.pem) */
  int mtls;                       /* also ask for a client cert (--client-ca ca.pem):
                                     optional, but verified when sent, as Vault does */
  const char *root_token;         /* default "root" */
  const char *const *mounts;      /* extra KV v2 mounts (NULL-terminated), optional */
  const char *const *namespaces;  /* namespaces to create (NULL-terminated), optional */
  const char *tls_cert, *tls_key; /* with tls: serve this certificate and key instead of
                                     server.pem/.key (e.g. one made by the test), optional */
  /* Another server on the same shared layer (test controls, request log):
   * "aws" runs tests/aws_server/server.py (no root token, mounts or
   * namespaces); NULL: the Vault server. extra_args: more command-line
   * arguments (NULL-terminated, at most 16), e.g. {"--region", "eu-west-1"}. */
  const char *server;
  const char *const *extra_args;
} vf_options;

typedef struct vf_server vf_server;

/* Start a server on a free loopback port with --test-controls. */
vf_server *vf_start(const vf_options *opt);
/* SIGTERM, wait, clean up. NULL is a no-op. */
void vf_stop(vf_server *s);
/* Base URL, e.g. "https://127.0.0.1:41234" (no trailing slash). */
const char *vf_url(const vf_server *s);
int vf_port(const vf_server *s);
const char *vf_root_token(const vf_server *s);

/* Absolute path of a file made by make_certs.sh ("ca.pem", "client.key",
 * ...), or NULL when certificates could not be made (or out of memory).
 * Each distinct name gets its own string, allocated once and valid until
 * exit: callers may keep any number of them. Thread-safe. */
const char *vf_cert(const char *file);

/* One HTTP request to the server (test controls or Vault API). `path` starts
 * with '/'. token and json may be NULL. Returns the HTTP status or -1;
 * *body (if body != NULL) receives the malloc'ed response body. */
long vf_http(vf_server *s, const char *method, const char *path, const char *token,
             const char *json, char **body);

/* Test controls; return 0 on success. */
int vf_fault(vf_server *s, const char *fault_json); /* POST /__test__/faults */
int vf_clear_faults(vf_server *s);
int vf_clear_requests(vf_server *s);
int vf_seal(vf_server *s, int sealed);
int vf_standby(vf_server *s, const char *redirect_to, int status); /* NULL: active again */

/* Write a KV v2 secret directly: path like "secret/data/x", json_data the
 * value of "data", e.g. "{\"key\":\"v\"}". Returns the HTTP status. */
long vf_put(vf_server *s, const char *path, const char *json_data);

/* The request log. */
typedef struct vf_request {
  long seq;
  double time;          /* server's time.time() when received */
  char *method;
  char *path;           /* raw (still percent-encoded) path, e.g. /v1/secret/data/x */
  char *query;
  char *body;
  long connection_id;
  int tls;
  char *client_cert_subject; /* NULL when none */
  void *headers_;        /* internal; use vf_header() */
} vf_request;

typedef struct vf_log {
  size_t n;
  vf_request *r;
} vf_log;

vf_log *vf_requests(vf_server *s);
void vf_log_free(vf_log *log);
/* A request header by name (case-insensitive), or NULL. The token appears
 * as "sha256:<hex>" (see vf_token_hash). */
const char *vf_header(const vf_request *r, const char *name);
/* Number of logged requests with this method and path (exact match). */
size_t vf_count(const vf_log *log, const char *method, const char *path);
/* "sha256:<hex of sha256(token)>" into out (at least 72 bytes). */
char *vf_token_hash(const char *token, char *out, size_t size);

#ifdef __cplusplus
}
#endif

#endif
