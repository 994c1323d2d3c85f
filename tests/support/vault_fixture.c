/*
 * vault_fixture.c -- tests/vault_server as a C test fixture (see
 * vault_fixture.h): process start/stop, certificates, test controls over
 * libcurl, and the request log parsed with cJSON.
 */
#include "vault_fixture.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct vf_server {
  pid_t pid;
  char dir[256];  /* temp dir: ready file, log */
  char url[128];
  int port;
  int tls, mtls;
  char token[128];
  char ca[512], cert[512], key[512]; /* for the fixture's own TLS requests */
};

static char g_cert_dir[256];
static int g_cert_state; /* 0 unknown, 1 ok, -1 failed */

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static const char *src_dir(void) {
  const char *s = getenv("KMS_SOURCE_DIR");
  return s && *s ? s : ".";
}

static const char *python(void) {
  const char *p = getenv("KMS_PYTHON");
  return p && *p ? p : "/usr/bin/python3";
}

static void rm_rf(const char *dir) {
  if (!dir[0]) return;
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "vault_fixture: could not remove %s\n", dir);
}

static void cleanup_certs(void) { rm_rf(g_cert_dir); }

static int run_wait(char *const argv[]) {
  pid_t pid;
  if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0) return -1;
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* One path per distinct file name, malloc'ed once and kept for the process
 * lifetime (so a test may hold any number of them). */
typedef struct cert_path {
  struct cert_path *next;
  char *name, *path;
} cert_path;
static cert_path *g_cert_paths;
static pthread_mutex_t g_cert_mu = PTHREAD_MUTEX_INITIALIZER;

static int make_cert_dir(void) {
  if (g_cert_state == 0) {
    snprintf(g_cert_dir, sizeof g_cert_dir, "/tmp/vf_certs.XXXXXX");
    if (!mkdtemp(g_cert_dir)) {
      g_cert_state = -1;
    } else {
      atexit(cleanup_certs);
      char script[512];
      snprintf(script, sizeof script, "%s/tests/vault_server/make_certs.sh", src_dir());
      char *argv[] = {"/bin/bash", script, g_cert_dir, NULL};
      g_cert_state = run_wait(argv) == 0 ? 1 : -1;
      if (g_cert_state < 0) fprintf(stderr, "vault_fixture: %s failed\n", script);
    }
  }
  return g_cert_state;
}

const char *vf_cert(const char *file) {
  const char *r = NULL;
  pthread_mutex_lock(&g_cert_mu);
  if (make_cert_dir() > 0) {
    cert_path *c;
    for (c = g_cert_paths; c && strcmp(c->name, file) != 0; c = c->next) {
    }
    if (!c && (c = calloc(1, sizeof *c))) {
      size_t n = strlen(g_cert_dir) + strlen(file) + 2;
      c->name = strdup(file);
      c->path = malloc(n);
      if (c->name && c->path) {
        snprintf(c->path, n, "%s/%s", g_cert_dir, file);
        c->next = g_cert_paths;
        g_cert_paths = c;
      } else {
        free(c->name);
        free(c->path);
        free(c);
        c = NULL;
      }
    }
    if (c) r = c->path;
  }
  pthread_mutex_unlock(&g_cert_mu);
  return r;
}

vf_server *vf_start(const vf_options *opt) {
  static const vf_options none;
  if (!opt) opt = &none;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  vf_server *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->tls = opt->tls || opt->mtls;
  s->mtls = opt->mtls;
  snprintf(s->token, sizeof s->token, "%s", opt->root_token ? opt->root_token : "root");
  snprintf(s->dir, sizeof s->dir, "/tmp/vf_server.XXXXXX");
  if (!mkdtemp(s->dir)) {
    free(s);
    return NULL;
  }
  char script[512], ready[300], logf[300];
  int aws = opt->server && strcmp(opt->server, "aws") == 0;
  snprintf(script, sizeof script, "%s/tests/%s/server.py", src_dir(),
           aws ? "aws_server" : "vault_server");
  snprintf(ready, sizeof ready, "%s/ready", s->dir);
  snprintf(logf, sizeof logf, "%s/server.log", s->dir);

  const char *argv[64];
  size_t n = 0;
  argv[n++] = python();
  argv[n++] = script;
  argv[n++] = "--host";
  argv[n++] = "127.0.0.1";
  argv[n++] = "--port";
  argv[n++] = "0";
  argv[n++] = "--ready-file";
  argv[n++] = ready;
  argv[n++] = "--test-controls";
  argv[n++] = "--exit-with-parent"; /* a crashed test leaves no server behind */
  if (!aws) {
    argv[n++] = "--root-token";
    argv[n++] = s->token;
  }
  if (s->tls) {
    const char *cert = vf_cert("server.pem");
    if (!cert) goto fail;
    snprintf(s->ca, sizeof s->ca, "%s", vf_cert("ca.pem"));
    snprintf(s->cert, sizeof s->cert, "%s", vf_cert("client.pem"));
    snprintf(s->key, sizeof s->key, "%s", vf_cert("client.key"));
    argv[n++] = "--tls-cert";
    argv[n++] = opt->tls_cert ? opt->tls_cert : cert;
    argv[n++] = "--tls-key";
    argv[n++] = opt->tls_key ? opt->tls_key : vf_cert("server.key");
    if (s->mtls) {
      argv[n++] = "--client-ca";
      argv[n++] = vf_cert("ca.pem");
    }
  }
  for (size_t i = 0; opt->extra_args && opt->extra_args[i] && i < 16; i++)
    argv[n++] = opt->extra_args[i];
  for (size_t i = 0; !aws && opt->mounts && opt->mounts[i] && n < 56; i++) {
    argv[n++] = "--mount";
    argv[n++] = opt->mounts[i];
  }
  for (size_t i = 0; !aws && opt->namespaces && opt->namespaces[i] && n < 60; i++) {
    argv[n++] = "--namespace";
    argv[n++] = opt->namespaces[i];
  }
  argv[n] = NULL;

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, logf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  int rc = posix_spawn(&s->pid, argv[0], &fa, NULL, (char *const *)argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    fprintf(stderr, "vault_fixture: cannot run %s: %s\n", argv[0], strerror(rc));
    goto fail;
  }
  for (int i = 0; i < 300; i++) { /* up to 30 s */
    FILE *f = fopen(ready, "r");
    if (f) {
      char line[128] = "";
      char *ok = fgets(line, sizeof line, f);
      fclose(f);
      size_t l = ok ? strlen(line) : 0;
      if (l && line[l - 1] == '\n') {
        line[l - 1] = '\0';
        snprintf(s->url, sizeof s->url, "%s", line);
        const char *colon = strrchr(s->url, ':');
        s->port = colon ? atoi(colon + 1) : 0;
        return s;
      }
    }
    int st;
    if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
      s->pid = 0;
      fprintf(stderr, "vault_fixture: server exited early; see its log:\n");
      char cmd[400];
      snprintf(cmd, sizeof cmd, "cat '%s' >&2", logf);
      if (system(cmd) != 0) {
      }
      goto fail;
    }
    sleep_ms(100);
  }
  fprintf(stderr, "vault_fixture: server did not become ready within 30 s\n");
fail:
  vf_stop(s);
  return NULL;
}

void vf_stop(vf_server *s) {
  if (!s) return;
  if (s->pid > 0) {
    kill(s->pid, SIGTERM);
    int st;
    int i;
    for (i = 0; i < 100; i++) {
      if (waitpid(s->pid, &st, WNOHANG) == s->pid) break;
      sleep_ms(50);
    }
    if (i == 100) {
      kill(s->pid, SIGKILL);
      waitpid(s->pid, &st, 0);
    }
  }
  rm_rf(s->dir);
  free(s);
}

const char *vf_url(const vf_server *s) { return s->url; }
int vf_port(const vf_server *s) { return s->port; }
const char *vf_root_token(const vf_server *s) { return s->token; }

typedef struct buf {
  char *p;
  size_t n;
} buf;

static size_t on_data(char *d, size_t sz, size_t nm, void *u) {
  buf *b = u;
  size_t n = sz * nm;
  char *np = realloc(b->p, b->n + n + 1);
  if (!np) return 0;
  memcpy(np + b->n, d, n);
  b->n += n;
  np[b->n] = '\0';
  b->p = np;
  return n;
}

long vf_http(vf_server *s, const char *method, const char *path, const char *token,
             const char *json, char **body) {
  if (body) *body = NULL;
  CURL *c = curl_easy_init();
  if (!c) return -1;
  char url[1024];
  snprintf(url, sizeof url, "%s%s", s->url, path);
  buf b = {0};
  struct curl_slist *h = NULL;
  char th[300];
  if (token) {
    snprintf(th, sizeof th, "X-Vault-Token: %s", token);
    h = curl_slist_append(h, th);
  }
  h = curl_slist_append(h, "Content-Type: application/json");
  h = curl_slist_append(h, "Expect:");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  if (json) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(json));
  }
  if (s->tls) {
    curl_easy_setopt(c, CURLOPT_CAINFO, s->ca);
    if (s->mtls) {
      curl_easy_setopt(c, CURLOPT_SSLCERT, s->cert);
      curl_easy_setopt(c, CURLOPT_SSLKEY, s->key);
    }
  }
  long status = -1;
  CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  else
    fprintf(stderr, "vault_fixture: %s %s: %s\n", method, path, curl_easy_strerror(rc));
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  if (body)
    *body = b.p;
  else
    free(b.p);
  return status;
}

static int ok2xx(long st) { return st >= 200 && st < 300 ? 0 : -1; }

int vf_fault(vf_server *s, const char *fault_json) {
  char *b = NULL;
  long st = vf_http(s, "POST", "/__test__/faults", NULL, fault_json, &b);
  if (ok2xx(st)) fprintf(stderr, "vault_fixture: fault %s refused: %ld %s\n", fault_json, st, b ? b : "");
  free(b);
  return ok2xx(st);
}

int vf_clear_faults(vf_server *s) { return ok2xx(vf_http(s, "DELETE", "/__test__/faults", NULL, NULL, NULL)); }
int vf_clear_requests(vf_server *s) { return ok2xx(vf_http(s, "DELETE", "/__test__/requests", NULL, NULL, NULL)); }

int vf_seal(vf_server *s, int sealed) {
  return ok2xx(vf_http(s, "POST", "/__test__/seal", NULL, sealed ? "{\"sealed\":true}" : "{\"sealed\":false}", NULL));
}

int vf_standby(vf_server *s, const char *redirect_to, int status) {
  char j[400];
  if (redirect_to)
    snprintf(j, sizeof j, "{\"redirect_to\":\"%s\",\"status\":%d}", redirect_to, status ? status : 307);
  else
    snprintf(j, sizeof j, "{\"redirect_to\":null}");
  return ok2xx(vf_http(s, "POST", "/__test__/standby", NULL, j, NULL));
}

long vf_put(vf_server *s, const char *path, const char *json_data) {
  size_t n = strlen(path) + 8, m = strlen(json_data) + 16;
  char *p = malloc(n), *j = malloc(m);
  if (!p || !j) {
    free(p);
    free(j);
    return -1;
  }
  snprintf(p, n, "/v1/%s", path);
  snprintf(j, m, "{\"data\":%s}", json_data);
  long st = vf_http(s, "POST", p, s->token, j, NULL);
  free(p);
  free(j);
  return st;
}

static char *dupstr(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) && v->valuestring ? strdup(v->valuestring) : NULL;
}

vf_log *vf_requests(vf_server *s) {
  char *b = NULL;
  long st = vf_http(s, "GET", "/__test__/requests", NULL, NULL, &b);
  vf_log *log = calloc(1, sizeof *log);
  cJSON *root = st == 200 && b ? cJSON_Parse(b) : NULL;
  free(b);
  if (!log || !root) {
    cJSON_Delete(root);
    free(log);
    fprintf(stderr, "vault_fixture: cannot read the request log (HTTP %ld)\n", st);
    return NULL;
  }
  const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "requests");
  size_t n = (size_t)cJSON_GetArraySize(arr);
  log->r = calloc(n ? n : 1, sizeof *log->r);
  const cJSON *e;
  cJSON_ArrayForEach(e, arr) {
    vf_request *r = &log->r[log->n++];
    const cJSON *v;
    r->seq = (v = cJSON_GetObjectItemCaseSensitive(e, "seq")) && cJSON_IsNumber(v) ? (long)v->valuedouble : 0;
    r->time = (v = cJSON_GetObjectItemCaseSensitive(e, "time")) && cJSON_IsNumber(v) ? v->valuedouble : 0;
    r->connection_id = (v = cJSON_GetObjectItemCaseSensitive(e, "connection_id")) && cJSON_IsNumber(v) ? (long)v->valuedouble : 0;
    r->tls = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "tls"));
    r->method = dupstr(e, "method");
    r->path = dupstr(e, "path");
    r->query = dupstr(e, "query");
    r->body = dupstr(e, "body");
    r->client_cert_subject = dupstr(e, "client_cert_subject");
    r->headers_ = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(e, "headers"), 1);
  }
  cJSON_Delete(root);
  return log;
}

void vf_log_free(vf_log *log) {
  if (!log) return;
  for (size_t i = 0; i < log->n; i++) {
    vf_request *r = &log->r[i];
    free(r->method);
    free(r->path);
    free(r->query);
    free(r->body);
    free(r->client_cert_subject);
    cJSON_Delete(r->headers_);
  }
  free(log->r);
  free(log);
}

const char *vf_header(const vf_request *r, const char *name) {
  const cJSON *h;
  cJSON_ArrayForEach(h, (const cJSON *)r->headers_) {
    if (h->string && strcasecmp(h->string, name) == 0 && cJSON_IsString(h)) return h->valuestring;
  }
  return NULL;
}

size_t vf_count(const vf_log *log, const char *method, const char *path) {
  size_t n = 0;
  for (size_t i = 0; log && i < log->n; i++)
    if ((!method || (log->r[i].method && strcmp(log->r[i].method, method) == 0)) &&
        (!path || (log->r[i].path && strcmp(log->r[i].path, path) == 0)))
      n++;
  return n;
}

char *vf_token_hash(const char *token, char *out, size_t size) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)token, strlen(token), d);
  char hex[2 * SHA256_DIGEST_LENGTH + 1];
  for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
  snprintf(out, size, "sha256:%s", hex);
  return out;
}
