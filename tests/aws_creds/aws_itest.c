/*
 * aws_itest.c -- a real tests/aws_server process and a plain libcurl
 * transport for the aws_creds integration tests (see aws_itest.h).
 */
#include "aws_itest.h"

#include "kms_plugin_util.h"
#include "kpc_common.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct ait_server {
  pid_t pid;
  char dir[64];
  char url[128];
};

static void nap_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

ait_server *ait_start(const char *const *args) {
  ait_server *s = calloc(1, sizeof *s);
  const char *src = getenv("KMS_SOURCE_DIR"), *py = getenv("KMS_PYTHON");
  char script[512], ready[128], logf[128];
  if (!s || !src) {
    fprintf(stderr, "aws_itest: KMS_SOURCE_DIR is not set (run through ctest)\n");
    free(s);
    return NULL;
  }
  snprintf(s->dir, sizeof s->dir, "/tmp/aws_itest.XXXXXX");
  if (!mkdtemp(s->dir)) {
    free(s);
    return NULL;
  }
  snprintf(script, sizeof script, "%s/tests/aws_server/server.py", src);
  snprintf(ready, sizeof ready, "%s/ready", s->dir);
  snprintf(logf, sizeof logf, "%s/log", s->dir);
  const char *argv[64] = {py && *py ? py : "/usr/bin/python3", script, "--host", "127.0.0.1",
                          "--port", "0", "--ready-file", ready, "--test-controls",
                          "--exit-with-parent"};
  size_t n = 10;
  for (size_t i = 0; args && args[i] && n < 63; i++) argv[n++] = args[i];
  argv[n] = NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, logf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  int rc = posix_spawn(&s->pid, argv[0], &fa, NULL, (char *const *)argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    fprintf(stderr, "aws_itest: cannot run %s: %s\n", argv[0], strerror(rc));
    s->pid = 0;
    ait_stop(s);
    return NULL;
  }
  for (int i = 0; i < 300; i++) { /* up to 30 s */
    FILE *f = fopen(ready, "r");
    char line[128] = "";
    if (f) {
      char *ok = fgets(line, sizeof line, f);
      fclose(f);
      size_t l = ok ? strlen(line) : 0;
      if (l && line[l - 1] == '\n') {
        line[l - 1] = '\0';
        snprintf(s->url, sizeof s->url, "%s", line);
        return s;
      }
    }
    int st;
    if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
      s->pid = 0;
      fprintf(stderr, "aws_itest: aws_server exited early (log in %s)\n", logf);
      break;
    }
    nap_ms(100);
  }
  ait_stop(s);
  return NULL;
}

void ait_stop(ait_server *s) {
  if (!s) return;
  if (s->pid > 0) {
    kill(s->pid, SIGTERM);
    int st, i;
    for (i = 0; i < 100 && waitpid(s->pid, &st, WNOHANG) != s->pid; i++) nap_ms(50);
    if (i == 100) {
      kill(s->pid, SIGKILL);
      waitpid(s->pid, &st, 0);
    }
  }
  char p[128];
  const char *files[] = {"ready", "log"};
  for (size_t i = 0; i < 2; i++) {
    snprintf(p, sizeof p, "%s/%s", s->dir, files[i]);
    unlink(p);
  }
  rmdir(s->dir);
  free(s);
}

const char *ait_url(const ait_server *s) { return s->url; }

typedef struct buf {
  char *p;
  size_t n;
} buf;

static size_t on_data(char *d, size_t sz, size_t nm, void *u) {
  buf *b = u;
  size_t n = sz * nm;
  char *np = malloc(b->n + n + 1); /* not realloc: the old copy is wiped */
  if (!np) return 0;
  if (b->p) memcpy(np, b->p, b->n);
  memcpy(np + b->n, d, n);
  np[b->n + n] = '\0';
  if (b->p) kms_wipe(b->p, b->n);
  free(b->p);
  b->p = np;
  b->n += n;
  return n;
}

/* One libcurl request; 0 or the CURLcode. */
static CURLcode perform(const char *method, const char *url, const char *const *headers,
                        const char *body, size_t body_len, long timeout_ms, long *status,
                        buf *out) {
  CURL *c = curl_easy_init();
  struct curl_slist *h = NULL;
  if (!c) return CURLE_OUT_OF_MEMORY;
  for (size_t i = 0; headers && headers[i]; i++) h = curl_slist_append(h, headers[i]);
  h = curl_slist_append(h, "Expect:");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
  if (body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
  }
  CURLcode rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
  curl_slist_free_all(h); /* header strings may hold tokens: libcurl copied them */
  curl_easy_cleanup(c);
  return rc;
}

long ait_http(ait_server *s, const char *method, const char *path, const char *json, char **body) {
  char url[512];
  snprintf(url, sizeof url, "%s%s", s->url, path);
  const char *const hdrs[] = {"Content-Type: application/json", NULL};
  buf b = {0};
  long st = 0;
  CURLcode rc = perform(method, url, hdrs, json, json ? strlen(json) : 0, 10000, &st, &b);
  if (body) *body = b.p;
  else free(b.p);
  return rc == CURLE_OK ? st : -1;
}

kms_status ait_curl_http(void *ctx, const char *method, const char *url,
                         const char *const *headers, const char *body, size_t body_len,
                         int64_t deadline_ms, long *status, char **resp_body, size_t *resp_len,
                         kms_error *err) {
  int64_t left = deadline_ms - kpc_clock_now(ctx);
  buf b = {0};
  *resp_body = NULL;
  *resp_len = 0;
  if (left <= 0) return kms_error_set(err, KMS_UNAVAILABLE, 0, "deadline passed");
  CURLcode rc = perform(method, url, headers, body, body_len, (long)left, status, &b);
  if (rc != CURLE_OK) {
    if (b.p) kms_wipe(b.p, b.n);
    free(b.p);
    return kms_error_set(err, KMS_UNAVAILABLE, 0, "%s", curl_easy_strerror(rc));
  }
  if (!b.p && !(b.p = calloc(1, 1))) return kms_error_set(err, KMS_NO_MEMORY, 0, "oom");
  *resp_body = b.p;
  *resp_len = b.n;
  return KMS_OK;
}
