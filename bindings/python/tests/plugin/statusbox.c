/*
 * statusbox.c -- a purpose-built plugin for the Python binding's tests.
 *
 * An in-memory store that keeps values as counted bytes (NULs allowed), plus
 * names that make the plugin answer on demand:
 *   status/<N>     fails with status N, backend_status 400+N, a fixed message
 *   barrier/<K>    waits until K callers are inside the plugin at once (10 s
 *                  cap, then UNAVAILABLE): proves calls really run in parallel
 *   outstanding    the number of secrets returned and not yet freed
 *   overlaps       (serial variant) how many calls found another call inside
 *   gate/wait      blocks until some instance reads gate/open (10 s cap, then
 *                  UNAVAILABLE); gate/reset closes the gate again
 * Settings: fail_status=<N> makes create fail with N; log=<text> logs it at
 * INFO from create; wait_gate=1 makes create wait for the gate (a slow
 * create); access_mode is accepted and ignored (the LiteLLM bridge passes
 * it); anything else is INVALID_ARGUMENT naming the key.
 * Built twice: statusbox (thread-safe) and, with STATUSBOX_SERIAL,
 * statusbox_serial (no thread-safe capability: the host must serialise).
 */
#include "kms_plugin.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef STATUSBOX_SERIAL
#define SB_NAME "statusbox_serial"
#define SB_CAPS (KMS_CAP_READ | KMS_CAP_WRITE | KMS_CAP_DELETE | KMS_CAP_REFRESH)
#else
#define SB_NAME "statusbox"
#define SB_CAPS (KMS_CAP_READ | KMS_CAP_WRITE | KMS_CAP_DELETE | KMS_CAP_REFRESH | KMS_CAP_THREAD_SAFE)
#endif

#define SB_MAX 256

struct entry {
  char *name;
  char *value;
  size_t length;
  int64_t version;
};

struct kms_instance {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct entry entries[SB_MAX];
  int inside;  /* callers currently in a barrier */
  atomic_int active; /* calls in progress (overlap detection) */
  atomic_int overlaps;
};

static atomic_long g_outstanding; /* secrets handed out, not yet freed */

/* The gate is process-wide so a second client can release the first. */
static pthread_mutex_t g_gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_gate_cond = PTHREAD_COND_INITIALIZER;
static int g_gate_open;

static kms_status fail(kms_error *err, kms_status st, int32_t backend, const char *msg) {
  err->status = st;
  err->backend_status = backend;
  snprintf(err->message, sizeof err->message, "statusbox: %s", msg);
  return st;
}

static kms_status make_secret(const char *bytes, size_t len, int64_t version, kms_secret **out,
                              kms_error *err) {
  kms_secret *s = calloc(1, sizeof *s);
  char *v = malloc(len + 1);
  if (!s || !v) {
    free(s);
    free(v);
    return fail(err, KMS_NO_MEMORY, 0, "out of memory");
  }
  memcpy(v, bytes, len);
  v[len] = '\0';
  s->struct_size = sizeof *s;
  s->value = v;
  s->length = len;
  s->version = version;
  atomic_fetch_add(&g_outstanding, 1);
  *out = s;
  return KMS_OK;
}

static void sb_free_secret(kms_secret *s) {
  if (!s) return;
  volatile char *p = (volatile char *)s->value; /* wipe before free, as the ABI asks */
  for (size_t i = 0; i < s->length; i++) p[i] = 0;
  free((void *)s->value);
  free(s);
  atomic_fetch_sub(&g_outstanding, 1);
}

static kms_status gate(const char *what, kms_secret **out, kms_error *err) {
  int rc = 0;
  pthread_mutex_lock(&g_gate_lock);
  if (strcmp(what, "open") == 0) {
    g_gate_open = 1;
    pthread_cond_broadcast(&g_gate_cond);
  } else if (strcmp(what, "reset") == 0) {
    g_gate_open = 0;
  } else {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    while (!g_gate_open && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&g_gate_cond, &g_gate_lock, &until);
  }
  int open = g_gate_open;
  pthread_mutex_unlock(&g_gate_lock);
  if (!open && strcmp(what, "wait") == 0) return fail(err, KMS_UNAVAILABLE, 0, "gate timed out");
  return make_secret(what, strlen(what), 0, out, err);
}

static kms_status sb_create(const kms_host *host, const kms_setting *s, size_t n, kms_instance **out,
                            kms_error *err) {
  for (size_t i = 0; i < n; i++) {
    if (strcmp(s[i].key, "fail_status") == 0)
      return fail(err, (kms_status)atoi(s[i].value), 0, "create failed as asked (fail_status)");
    if (strcmp(s[i].key, "access_mode") == 0) continue;
    if (strcmp(s[i].key, "wait_gate") == 0) {
      kms_secret *ignored = NULL;
      kms_status st = gate("wait", &ignored, err);
      sb_free_secret(ignored);
      if (st != KMS_OK) return st;
      continue;
    }
    if (strcmp(s[i].key, "log") == 0) {
      if (host && host->struct_size >= offsetof(kms_host, log) + sizeof host->log && host->log)
        host->log(host->ctx, KMS_LOG_INFO, s[i].value);
      continue;
    }
    char msg[200];
    snprintf(msg, sizeof msg, "unknown setting '%.64s' (known: fail_status, log, wait_gate, access_mode)", s[i].key);
    return fail(err, KMS_INVALID_ARGUMENT, 0, msg);
  }
  kms_instance *in = calloc(1, sizeof *in);
  if (!in) return fail(err, KMS_NO_MEMORY, 0, "out of memory");
  pthread_mutex_init(&in->lock, NULL);
  pthread_cond_init(&in->cond, NULL);
  *out = in;
  return KMS_OK;
}

static void sb_destroy(kms_instance *in) {
  if (!in) return;
  for (int i = 0; i < SB_MAX; i++) {
    free(in->entries[i].name);
    free(in->entries[i].value);
  }
  pthread_cond_destroy(&in->cond);
  pthread_mutex_destroy(&in->lock);
  free(in);
}

/* Overlap detection for the serial variant: a call that finds another call
 * inside counts one overlap; the short sleep widens the window. */
static void enter(kms_instance *in) {
  if (atomic_fetch_add(&in->active, 1) != 0) atomic_fetch_add(&in->overlaps, 1);
#ifdef STATUSBOX_SERIAL
  usleep(200);
#endif
}
static void leave(kms_instance *in) { atomic_fetch_sub(&in->active, 1); }

static kms_status barrier(kms_instance *in, int k, kms_secret **out, kms_error *err) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 10;
  int rc = 0;
  pthread_mutex_lock(&in->lock);
  in->inside++;
  pthread_cond_broadcast(&in->cond);
  while (in->inside < k && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&in->cond, &in->lock, &until);
  int reached = in->inside >= k;
  pthread_mutex_unlock(&in->lock);
  /* Nobody leaves before all have arrived, so the count only grows here;
   * tests use a fresh instance per barrier. */
  if (!reached) return fail(err, KMS_UNAVAILABLE, 0, "barrier timed out: calls did not overlap");
  return make_secret("released", 8, 0, out, err);
}

static struct entry *find(kms_instance *in, const char *name) {
  for (int i = 0; i < SB_MAX; i++)
    if (in->entries[i].name && strcmp(in->entries[i].name, name) == 0) return &in->entries[i];
  return NULL;
}

static kms_status sb_read(kms_instance *in, const char *name, kms_secret **out, kms_error *err) {
  char num[32];
  kms_status st;
  enter(in);
  if (strncmp(name, "status/", 7) == 0) {
    int n = atoi(name + 7);
    st = fail(err, (kms_status)n, 400 + n, "status requested by name");
  } else if (strncmp(name, "barrier/", 8) == 0) {
    st = barrier(in, atoi(name + 8), out, err);
  } else if (strncmp(name, "gate/", 5) == 0) {
    st = gate(name + 5, out, err);
  } else if (strcmp(name, "outstanding") == 0 || strcmp(name, "overlaps") == 0) {
    long v = name[0] == 'o' && name[1] == 'u' ? atomic_load(&g_outstanding) : atomic_load(&in->overlaps);
    int len = snprintf(num, sizeof num, "%ld", v);
    st = make_secret(num, (size_t)len, 0, out, err);
  } else {
    pthread_mutex_lock(&in->lock);
    struct entry *e = find(in, name);
    st = e ? make_secret(e->value, e->length, e->version, out, err)
           : fail(err, KMS_NOT_FOUND, 404, "no such secret");
    pthread_mutex_unlock(&in->lock);
  }
  leave(in);
  return st;
}

static kms_status store(kms_instance *in, const char *name, const char *value, size_t len,
                        const kms_write_options *o, kms_error *err) {
  struct entry *e = find(in, name);
  int cas = o && o->struct_size >= offsetof(kms_write_options, cas_version) + sizeof o->cas_version &&
            (o->flags & KMS_WRITE_CAS);
  if (cas && (uint64_t)(e ? e->version : 0) != o->cas_version)
    return fail(err, KMS_CONFLICT, 400, "check-and-set version did not match");
  for (int i = 0; !e && i < SB_MAX; i++)
    if (!in->entries[i].name) e = &in->entries[i];
  if (!e) return fail(err, KMS_NO_MEMORY, 0, "store full");
  char *v = malloc(len + 1);
  char *n = e->name ? e->name : strdup(name);
  if (!v || !n) {
    free(v);
    if (n != e->name) free(n);
    return fail(err, KMS_NO_MEMORY, 0, "out of memory");
  }
  memcpy(v, value, len);
  free(e->value);
  e->name = n;
  e->value = v;
  e->length = len;
  e->version++;
  return KMS_OK;
}

static kms_status sb_write(kms_instance *in, const char *name, const char *value, size_t len,
                           const kms_write_options *o, kms_error *err) {
  enter(in);
  kms_status st;
  if (strncmp(name, "status/", 7) == 0) {
    int n = atoi(name + 7);
    st = fail(err, (kms_status)n, 400 + n, "status requested by name");
  } else {
    pthread_mutex_lock(&in->lock);
    st = store(in, name, value, len, o, err);
    pthread_mutex_unlock(&in->lock);
  }
  leave(in);
  return st;
}

static kms_status sb_delete(kms_instance *in, const char *name, kms_error *err) {
  enter(in);
  pthread_mutex_lock(&in->lock);
  struct entry *e = find(in, name);
  if (e) {
    free(e->name);
    free(e->value);
    memset(e, 0, sizeof *e);
  }
  pthread_mutex_unlock(&in->lock);
  leave(in);
  return KMS_OK;
}

static kms_status sb_refresh(kms_instance *in, kms_error *err) { return KMS_OK; }

/* A 1.0 table (the binding's tests check 1.0 behaviour), whichever 1.x
 * header builds it: it ends after free_secret, the last 1.0 slot. */
static const kms_plugin table = {
    .struct_size = offsetof(kms_plugin, free_secret) + sizeof(void (*)(kms_secret *)),
    .abi_major = KMS_ABI_MAJOR,
    .abi_minor = 0,
    .name = SB_NAME,
    .version = "0.0.1-test",
    .capabilities = SB_CAPS,
    .create = sb_create,
    .destroy = sb_destroy,
    .read_secret = sb_read,
    .write_secret = sb_write,
    .delete_secret = sb_delete,
    .refresh = sb_refresh,
    .free_secret = sb_free_secret,
};

KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t major, uint32_t minor);
KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t major, uint32_t minor) {
  return major == KMS_ABI_MAJOR ? &table : NULL;
}
