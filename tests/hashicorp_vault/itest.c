/*
 * itest.c -- shared helpers of the hashicorp_vault integration tests (itest.h).
 */
#include "itest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const kms_setting IT_RW[] = {{"access_mode", "read_and_write"}};

static const char *it_getenv(void *ctx, const char *name) {
  it_host *h = ctx;
  const char *v = NULL;
  pthread_mutex_lock(&h->mu);
  for (size_t i = 0; i < h->n; i++)
    if (strcmp(h->names[i], name) == 0) v = h->values[i];
  pthread_mutex_unlock(&h->mu);
  return v;
}

static void it_log(void *ctx, kms_log_level level, const char *msg) {
  static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
  it_host *h = ctx;
  char line[1024];
  int n = snprintf(line, sizeof line, "%s %s\n", (unsigned)level < 4 ? names[level] : "?", msg);
  if (n < 0) return;
  if ((size_t)n >= sizeof line) n = sizeof line - 1;
  pthread_mutex_lock(&h->mu);
  if (h->loglen + (size_t)n + 1 > h->logcap) {
    size_t cap = (h->logcap ? h->logcap * 2 : 4096) + (size_t)n;
    char *p = realloc(h->logs, cap);
    if (p) {
      h->logs = p;
      h->logcap = cap;
    }
  }
  if (h->loglen + (size_t)n + 1 <= h->logcap) {
    memcpy(h->logs + h->loglen, line, (size_t)n + 1);
    h->loglen += (size_t)n;
  }
  pthread_mutex_unlock(&h->mu);
  if (getenv("IT_VERBOSE")) fputs(line, stderr);
}

void it_host_init(it_host *h) {
  memset(h, 0, sizeof *h);
  pthread_mutex_init(&h->mu, NULL);
  h->host.struct_size = sizeof h->host;
  h->host.abi_major = KMS_ABI_MAJOR;
  h->host.abi_minor = KMS_ABI_MINOR;
  h->host.ctx = h;
  h->host.log = it_log;
  h->host.getenv = it_getenv;
}

void it_host_free(it_host *h) {
  for (size_t i = 0; i < h->n; i++) {
    free(h->names[i]);
    free(h->values[i]);
  }
  free(h->logs);
  pthread_mutex_destroy(&h->mu);
  memset(h, 0, sizeof *h);
}

void it_set(it_host *h, const char *name, const char *value) {
  pthread_mutex_lock(&h->mu);
  for (size_t i = 0; i < h->n; i++) {
    if (strcmp(h->names[i], name) == 0) {
      free(h->values[i]);
      if (value) {
        h->values[i] = strdup(value);
      } else {
        free(h->names[i]);
        h->names[i] = h->names[h->n - 1];
        h->values[i] = h->values[h->n - 1];
        h->n--;
      }
      pthread_mutex_unlock(&h->mu);
      return;
    }
  }
  if (value && h->n < IT_MAX_ENV) {
    h->names[h->n] = strdup(name);
    h->values[h->n] = strdup(value);
    h->n++;
  }
  pthread_mutex_unlock(&h->mu);
}

void it_target(it_host *h, vf_server *s, int tls, int mtls) {
  it_set(h, "HCP_VAULT_ADDR", vf_url(s));
  it_set(h, "HCP_VAULT_TOKEN", vf_root_token(s));
  if (tls) it_set(h, "VAULT_CACERT", vf_cert("ca.pem"));
  if (mtls) {
    it_set(h, "HCP_VAULT_CLIENT_CERT", vf_cert("client.pem"));
    it_set(h, "HCP_VAULT_CLIENT_KEY", vf_cert("client.key"));
  }
}

char *it_logs(it_host *h) {
  pthread_mutex_lock(&h->mu);
  char *c = strdup(h->logs ? h->logs : "");
  pthread_mutex_unlock(&h->mu);
  return c;
}

size_t it_log_count(it_host *h, const char *needle) {
  size_t n = 0;
  pthread_mutex_lock(&h->mu);
  for (const char *p = h->logs; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
  pthread_mutex_unlock(&h->mu);
  return n;
}

void it_clear_logs(it_host *h) {
  pthread_mutex_lock(&h->mu);
  h->loglen = 0;
  if (h->logs) h->logs[0] = '\0';
  pthread_mutex_unlock(&h->mu);
}

static kms_module *g_module;
static const char *g_plugin = "hashicorp_vault";

static void unload(void) { kms_module_unload(g_module); }

void it_use_plugin(const char *name) { g_plugin = name; }

const kms_module *it_module(void) {
  if (!g_module) {
    kms_error err;
    kms_status st = kms_module_load(getenv("KMS_PLUGIN_DIR"), g_plugin, &g_module, &err);
    if (st != KMS_OK) {
      fprintf(stderr, "cannot load %s: %s\n", g_plugin, err.message);
      abort();
    }
    atexit(unload);
  }
  return g_module;
}

kms_status it_client(it_host *h, const kms_setting *s, size_t n, kms_client **out,
                     kms_error *err) {
  return kms_client_create(it_module(), &h->host, s, n, out, err);
}

kms_status it_read(kms_client *c, const char *name, char *val, size_t vs, uint32_t *flags,
                   kms_error *err) {
  kms_secret *s = NULL;
  kms_error local;
  kms_status st = kms_client_read(c, name, &s, err ? err : &local);
  if (val) snprintf(val, vs, "%s", st == KMS_OK ? s->value : "");
  if (flags) *flags = st == KMS_OK ? s->flags : 0;
  kms_client_free_secret(c, s);
  return st;
}

kms_status it_health(kms_client *c, kms_health *out) {
  memset(out, 0, sizeof *out);
  out->struct_size = sizeof *out;
  kms_error err;
  return kms_client_health(c, out, &err);
}

void it_done(it_host *h, kms_client *c) {
  kms_client_destroy(c);
  it_host_free(h);
}

void it_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

long long it_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- change notifications, recorded ---- */
static pthread_mutex_t rec_mu = PTHREAD_MUTEX_INITIALIZER;
static char rec_text[4096];
static int rec_count;

void it_notify_record(void *ctx, const kms_change *ch) {
  (void)ctx;
  pthread_mutex_lock(&rec_mu);
  char line[256];
  int n = snprintf(line, sizeof line, "%s %s v%lld", ch->kind == KMS_CHANGE_DELETED ? "DEL" : "UPD",
                   ch->name, (long long)ch->version);
  for (size_t i = 0; i < ch->n_location; i++)
    n += snprintf(line + n, sizeof line - (size_t)n, " %s=%s", ch->location[i].key,
                  ch->location[i].value);
  snprintf(line + n, sizeof line - (size_t)n, "\n");
  if (strlen(rec_text) + strlen(line) < sizeof rec_text) strcat(rec_text, line);
  rec_count++;
  pthread_mutex_unlock(&rec_mu);
}

void it_rec_clear(void) {
  pthread_mutex_lock(&rec_mu);
  rec_text[0] = '\0';
  rec_count = 0;
  pthread_mutex_unlock(&rec_mu);
}

int it_rec_has(const char *line) {
  pthread_mutex_lock(&rec_mu);
  int r = strstr(rec_text, line) != NULL;
  pthread_mutex_unlock(&rec_mu);
  return r;
}

int it_rec_count(void) {
  pthread_mutex_lock(&rec_mu);
  int n = rec_count;
  pthread_mutex_unlock(&rec_mu);
  return n;
}

int it_rec_wait(const char *line, long timeout_ms) {
  for (long waited = 0; !it_rec_has(line) && waited < timeout_ms; waited += 10) it_sleep_ms(10);
  return it_rec_has(line);
}
