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
 * it); unreachable=1 makes reads of stored names fail with UNAVAILABLE and
 * health report the backend unreachable;
 * no_recovery_window=1 makes a delete with a recovery window UNSUPPORTED
 * (a backend without one); anything else is INVALID_ARGUMENT naming the key.
 * Built three times: statusbox (thread-safe, ABI 1.0 table), with
 * STATUSBOX_SERIAL statusbox_serial (ABI 1.0, no thread-safe capability: the
 * host must serialise), and with STATUSBOX_V11 statusbox_v11, an ABI 1.1
 * table with every 1.1 slot:
 *   location keys namespace, mount, path_prefix (others INVALID_ARGUMENT):
 *                  a value lives under "<namespace>:<mount>:<path_prefix>:"
 *                  + name, so a location is a separate store;
 *   last_options   reads back the options of the latest read/write/delete
 *                  ("flags=F version=V delete_mode=D recovery=R location=k=v,..")
 *                  so tests see exactly what reached the plugin;
 *   a version pin other than the stored version is NOT_FOUND; a NONBLOCKING
 *   read of a missing name is UNAVAILABLE (nothing to fetch in memory);
 *   notify/<name>, notify_deleted/<name> call host->notify (UPDATED with
 *   version 7 / DELETED, with the call's location) from the calling thread;
 *   notify_thread/<name> does so from a new thread the plugin starts and joins;
 *   read_secret_into, list_secrets (within the location) and health (hits,
 *   misses, errors by status, last error) as the ABI describes.
 */
#include "kms_plugin.h"
#include "kms_plugin_util.h"

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
#elif defined(STATUSBOX_V11)
#define SB_NAME "statusbox_v11"
#define SB_CAPS (KMS_CAP_READ | KMS_CAP_WRITE | KMS_CAP_DELETE | KMS_CAP_REFRESH | \
                 KMS_CAP_THREAD_SAFE | KMS_CAP_LIST | KMS_CAP_NOTIFY)
#else
#define SB_NAME "statusbox"
#define SB_CAPS (KMS_CAP_READ | KMS_CAP_WRITE | KMS_CAP_DELETE | KMS_CAP_REFRESH | KMS_CAP_THREAD_SAFE)
#endif

#define SB_MAX 256
#define SB_KEY_MAX 512 /* composed "<location>:" + name */

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
  const kms_host *host;      /* for notify (1.1 variant) */
  kms_stats *stats;          /* for health (1.1 variant) */
  char last_options[512];    /* under lock: see the file comment */
  int unreachable, no_recovery_window; /* settings */
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
  int unreachable = 0, no_window = 0;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(s[i].key, "unreachable") == 0 || strcmp(s[i].key, "no_recovery_window") == 0) {
      *(s[i].key[0] == 'u' ? &unreachable : &no_window) = strcmp(s[i].value, "1") == 0;
      continue;
    }
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
    snprintf(msg, sizeof msg,
             "unknown setting '%.64s' (known: fail_status, log, wait_gate, access_mode, "
             "unreachable, no_recovery_window)", s[i].key);
    return fail(err, KMS_INVALID_ARGUMENT, 0, msg);
  }
  kms_instance *in = calloc(1, sizeof *in);
  if (!in || !(in->stats = kms_stats_new())) {
    free(in);
    return fail(err, KMS_NO_MEMORY, 0, "out of memory");
  }
  in->host = host;
  in->unreachable = unreachable;
  in->no_recovery_window = no_window;
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
  kms_stats_free(in->stats);
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

static const char *const sb_keys[] = {"namespace", "mount", "path_prefix", NULL};

/* The store key of `name` under the call's location: each location is its
 * own store, so a write through one location is invisible from another.
 * Checks the options as a 1.1 plugin must (unknown keys named). */
static kms_status sb_key(kms_instance *in, const char *name, const kms_call_options *opt,
                         kms_call_kind kind, char *key, kms_error *err) {
  kms_status st = kms_options_check(opt, kind, sb_keys, "statusbox", err);
  if (st != KMS_OK) return st;
  const char *ns = kms_options_get(opt, "namespace"), *mount = kms_options_get(opt, "mount");
  const char *pp = kms_options_get(opt, "path_prefix");
  int n = (ns || mount || pp)
              ? snprintf(key, SB_KEY_MAX, "%s:%s:%s:%s", ns ? ns : "", mount ? mount : "",
                         pp ? pp : "", name)
              : snprintf(key, SB_KEY_MAX, "%s", name);
  if (n < 0 || n >= SB_KEY_MAX) return fail(err, KMS_INVALID_ARGUMENT, 0, "name too long");
  if (opt) { /* record what arrived, for the last_options name */
    char loc[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < opt->n_location && used < sizeof loc; i++)
      used += (size_t)snprintf(loc + used, sizeof loc - used, "%s%s=%s", i ? "," : "",
                               opt->location[i].key, opt->location[i].value);
    pthread_mutex_lock(&in->lock);
    snprintf(in->last_options, sizeof in->last_options,
             "flags=%u version=%lld delete_mode=%u recovery=%u location=%s", opt->flags,
             (long long)opt->version, opt->delete_mode, opt->recovery_window_days, loc);
    pthread_mutex_unlock(&in->lock);
  }
  return KMS_OK;
}

#ifdef STATUSBOX_V11
struct notice {
  const kms_host *host;
  kms_change change;
};

static void *notice_thread(void *arg) {
  struct notice *n = arg;
  n->host->notify(n->host->ctx, &n->change);
  return NULL;
}

/* notify/<name>, notify_deleted/<name>, notify_thread/<name>: tell the host,
 * never under a lock of ours (the ABI's rule). */
static kms_status notify_name(kms_instance *in, const char *name, const kms_call_options *opt,
                              kms_secret **out, kms_error *err) {
  const kms_host *h = in->host;
  if (!h || h->struct_size < offsetof(kms_host, notify) + sizeof h->notify || !h->notify)
    return fail(err, KMS_UNSUPPORTED, 0, "the host has no notify");
  const char *slash = strchr(name, '/');
  struct notice n = {h, {sizeof(kms_change), slash + 1, KMS_CHANGE_UPDATED, 7,
                         opt ? opt->location : NULL, opt ? opt->n_location : 0}};
  if (strncmp(name, "notify_deleted/", 15) == 0) {
    n.change.kind = KMS_CHANGE_DELETED;
    n.change.version = 0;
  }
  if (strncmp(name, "notify_thread/", 14) == 0) {
    pthread_t t;
    if (pthread_create(&t, NULL, notice_thread, &n) != 0)
      return fail(err, KMS_INTERNAL, 0, "cannot start a thread");
    pthread_join(t, NULL);
  } else {
    notice_thread(&n);
  }
  return make_secret("notified", 8, 0, out, err);
}
#endif

/* The stored value of `key` (under the lock), honouring a version pin and
 * NONBLOCKING; counts hits and misses for health. */
static kms_status lookup(kms_instance *in, const char *key, const kms_call_options *opt,
                         kms_secret **out, kms_error *err) {
  int64_t pin = opt ? opt->version : 0;
  kms_status st;
  pthread_mutex_lock(&in->lock);
  struct entry *e = find(in, key);
  if (in->unreachable)
    st = fail(err, KMS_UNAVAILABLE, 503, "backend unreachable (setting unreachable=1)");
  else if (e && pin && pin != e->version)
    st = fail(err, KMS_NOT_FOUND, 404, "no such version");
  else if (e)
    st = make_secret(e->value, e->length, e->version, out, err);
  else if (opt && (opt->flags & KMS_CALL_NONBLOCKING))
    st = fail(err, KMS_UNAVAILABLE, 0, "not cached (nonblocking read)");
  else
    st = fail(err, KMS_NOT_FOUND, 404, "no such secret");
  pthread_mutex_unlock(&in->lock);
  kms_stats_add(in->stats, st == KMS_OK ? KMS_STAT_HITS : KMS_STAT_MISSES, 1);
  return st;
}

static kms_status sb_read_opt(kms_instance *in, const char *name, const kms_call_options *opt,
                              kms_secret **out, kms_error *err) {
  char num[32], key[SB_KEY_MAX];
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
  } else if (strcmp(name, "last_options") == 0) {
    pthread_mutex_lock(&in->lock);
    st = make_secret(in->last_options, strlen(in->last_options), 0, out, err);
    pthread_mutex_unlock(&in->lock);
#ifdef STATUSBOX_V11
  } else if (strncmp(name, "notify", 6) == 0 && strchr(name, '/')) {
    st = sb_key(in, name, opt, KMS_CALL_KIND_READ, key, err);
    if (st == KMS_OK) st = notify_name(in, name, opt, out, err);
#endif
  } else {
    st = sb_key(in, name, opt, KMS_CALL_KIND_READ, key, err);
    if (st == KMS_OK) st = lookup(in, key, opt, out, err);
  }
  leave(in);
  return kms_stats_result(in->stats, st, err);
}

static kms_status sb_read(kms_instance *in, const char *name, kms_secret **out, kms_error *err) {
  return sb_read_opt(in, name, NULL, out, err);
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

static kms_status sb_write_opt(kms_instance *in, const char *name, const char *value, size_t len,
                               const kms_write_options *o, const kms_call_options *opt,
                               kms_error *err) {
  char key[SB_KEY_MAX];
  enter(in);
  kms_status st;
  if (strncmp(name, "status/", 7) == 0) {
    int n = atoi(name + 7);
    st = fail(err, (kms_status)n, 400 + n, "status requested by name");
  } else if ((st = sb_key(in, name, opt, KMS_CALL_KIND_WRITE, key, err)) == KMS_OK) {
    pthread_mutex_lock(&in->lock);
    st = store(in, key, value, len, o, err);
    pthread_mutex_unlock(&in->lock);
  }
  leave(in);
  return kms_stats_result(in->stats, st, err);
}

static kms_status sb_write(kms_instance *in, const char *name, const char *value, size_t len,
                           const kms_write_options *o, kms_error *err) {
  return sb_write_opt(in, name, value, len, o, NULL, err);
}

static kms_status sb_delete_opt(kms_instance *in, const char *name, const kms_call_options *opt,
                                kms_error *err) {
  char key[SB_KEY_MAX];
  enter(in);
  kms_status st = sb_key(in, name, opt, KMS_CALL_KIND_DELETE, key, err);
  if (st == KMS_OK && in->no_recovery_window && opt && opt->recovery_window_days)
    st = fail(err, KMS_UNSUPPORTED, 0, "option 'recovery_window_days': this store has no recovery window");
  if (st == KMS_OK) {
    pthread_mutex_lock(&in->lock);
    struct entry *e = find(in, key);
    if (e) {
      free(e->name);
      free(e->value);
      memset(e, 0, sizeof *e);
    }
    pthread_mutex_unlock(&in->lock);
  }
  leave(in);
  return kms_stats_result(in->stats, st, err);
}

static kms_status sb_delete(kms_instance *in, const char *name, kms_error *err) {
  return sb_delete_opt(in, name, NULL, err);
}

static kms_status sb_refresh(kms_instance *in, kms_error *err) { return KMS_OK; }

#ifdef STATUSBOX_V11
static kms_status sb_read_into(kms_instance *in, const char *name, const kms_call_options *opt,
                               char *buf, size_t size, kms_secret_info *info, kms_error *err) {
  kms_secret *s = NULL; /* the test plugin reuses its read; the loader's contract is the same */
  kms_status st = sb_read_opt(in, name, opt, &s, err);
  if (st != KMS_OK) return st;
  st = kms_secret_copy_into(s->value, s->length, s->version, s->flags, buf, size, info,
                            "statusbox", err);
  sb_free_secret(s);
  return kms_stats_result(in->stats, st, err);
}

/* Names under the location's store key prefix + `prefix`, collected under
 * the lock and delivered outside it (fn is host code). */
static kms_status sb_list(kms_instance *in, const char *prefix, const kms_call_options *opt,
                          kms_list_fn fn, void *ctx, kms_error *err) {
  char base[SB_KEY_MAX];
  kms_status st = sb_key(in, "", opt, KMS_CALL_KIND_LIST, base, err);
  if (st != KMS_OK) return kms_stats_result(in->stats, st, err);
  size_t blen = strlen(base), plen = prefix ? strlen(prefix) : 0, n = 0;
  char *names[SB_MAX];
  pthread_mutex_lock(&in->lock);
  for (int i = 0; i < SB_MAX; i++) {
    const char *k = in->entries[i].name;
    if (!k || strncmp(k, base, blen) != 0 || (!blen && strchr(k, ':'))) continue;
    if (plen && strncmp(k + blen, prefix, plen) != 0) continue;
    if (!(names[n] = strdup(k + blen))) break;
    n++;
  }
  pthread_mutex_unlock(&in->lock);
  int stop = 0;
  for (size_t i = 0; i < n; i++) {
    if (!stop) stop = fn(ctx, names[i]);
    free(names[i]);
  }
  return KMS_OK;
}

static kms_status sb_health(kms_instance *in, kms_health *out, kms_error *err) {
  (void)err;
  uint64_t count = 0;
  pthread_mutex_lock(&in->lock);
  for (int i = 0; i < SB_MAX; i++) count += in->entries[i].name != NULL;
  pthread_mutex_unlock(&in->lock);
  kms_stats_fill(in->stats, out);
  out->reachable = in->unreachable ? 0 : 1;
  out->authenticated = 1;
  out->cache_entries = count;
  return KMS_OK;
}

static const kms_plugin table = {
    .struct_size = sizeof(kms_plugin),
    .abi_major = KMS_ABI_MAJOR,
    .abi_minor = 1,
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
    .read_secret_opt = sb_read_opt,
    .write_secret_opt = sb_write_opt,
    .delete_secret_opt = sb_delete_opt,
    .read_secret_into = sb_read_into,
    .list_secrets = sb_list,
    .health = sb_health,
};
#else
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
#endif

KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t major, uint32_t minor);
KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t major, uint32_t minor) {
  return major == KMS_ABI_MAJOR ? &table : NULL;
}
