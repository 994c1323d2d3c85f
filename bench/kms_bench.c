/*
 * kms_bench.c -- kms-bench, the measuring half of bench/run.
 *
 * Every mode prints one or more lines "RESULT mode=... key=value ..." on
 * stdout (bench/run collects them and builds the table) and "ERROR ..." plus
 * exit status 3 when the thing measured failed (bench/run then prints n/a;
 * a figure never fails the run). Only loopback URLs given on the command
 * line are ever contacted, and every loop is bounded by a count and a time.
 *
 * Modes (see usage()):
 *   cached    cache population + cached reads through the ABI with N secrets
 *             on 1..T threads, next to a bare open-addressing hash lookup +
 *             malloc/memcpy/free of the same value (the floor): the
 *             allocating read (kms_client_read), the buffer read
 *             (kms_client_read_into), the never-blocking buffer read
 *             (KMS_CALL_NONBLOCKING, warm), and the env plugin reading the
 *             same table through the host's getenv (the ABI + loader
 *             overhead on its own); then the never-blocking read of names
 *             not cached yet (cold: UNAVAILABLE at once) next to a blocking
 *             cold read; RSS of the cache and of the floor table.
 *   uncached  refresh interval 0: every read is an HTTP request. impl=plugin
 *             or impl=libcurl (one easy handle, the floor). Requests/s,
 *             p50/p99, and (with --access-log or --stats-url) the upstream
 *             requests and connections/TLS handshakes it took.
 *   storm     T threads released by a barrier read one cold secret at once;
 *             upstream requests per storm and time until all are served.
 *   load      kms_module_load + kms_client_create time (first = cold process).
 */
#include "kms_loader.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

#define MAX_THREADS 64
#define MAX_ENV 32

/* ------------------------------------------------------------------ */
/* small helpers                                                        */

/* fail(), now_ns(), g_mode: bench_util.c */

/* The calling thread's CPU time: on a loaded machine it leaves out the time
 * the thread waited for a CPU, which wall time per call counts. */
static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) fail("out of memory");
  return p;
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = xmalloc(n);
  memcpy(p, s, n);
  return p;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}
static int cmp_dbl(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static double median_dbl(double *v, size_t n) {
  if (!n) return 0;
  qsort(v, n, sizeof *v, cmp_dbl);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
/* Nearest-rank percentile of a sorted array. */
static uint64_t pct_sorted(const uint64_t *v, size_t n, double p) {
  if (!n) return 0;
  size_t i = (size_t)(p / 100.0 * (double)n + 0.999999);
  if (i < 1) i = 1;
  if (i > n) i = n;
  return v[i - 1];
}

/* Keeps the optimiser from deleting a computation or a malloc/free pair. */
#define SINK(p) __asm__ volatile("" : : "r"(p) : "memory")

/* kB from /proc/self/status ("VmRSS", "VmHWM"); -1 when unavailable. */
static long proc_status_kb(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long v = -1;
  size_t fl = strlen(field);
  while (fgets(line, sizeof line, f))
    if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
      v = strtol(line + fl + 1, NULL, 10);
      break;
    }
  fclose(f);
  return v;
}

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* ------------------------------------------------------------------ */
/* the floor: a tiny open-addressing hash table (FNV-1a, linear probe)  */

typedef struct slot {
  char *key;
  uint64_t hash;
  char *val;
  size_t vlen;
} slot;

typedef struct table {
  slot *s;
  size_t cap; /* power of two, >= 2 * n */
  size_t n;
} table;

static uint64_t fnv1a(const char *k) {
  uint64_t h = 1469598103934665603u;
  for (; *k; k++) h = (h ^ (unsigned char)*k) * 1099511628211u;
  return h;
}

static void table_init(table *t, size_t n) {
  size_t cap = 16;
  while (cap < 2 * n) cap <<= 1;
  t->s = calloc(cap, sizeof *t->s);
  if (!t->s) fail("out of memory");
  t->cap = cap;
  t->n = 0;
}

static void table_put(table *t, const char *key, const char *val, size_t vlen) {
  uint64_t h = fnv1a(key);
  for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
    slot *s = &t->s[i];
    if (!s->key) {
      s->key = xstrdup(key);
      s->hash = h;
      s->val = xmalloc(vlen + 1);
      memcpy(s->val, val, vlen);
      s->val[vlen] = 0;
      s->vlen = vlen;
      t->n++;
      return;
    }
    if (s->hash == h && strcmp(s->key, key) == 0) return;
  }
}

static const slot *table_get(const table *t, const char *key) {
  if (!t->s) return NULL;
  uint64_t h = fnv1a(key);
  for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
    const slot *s = &t->s[i];
    if (!s->key) return NULL;
    if (s->hash == h && strcmp(s->key, key) == 0) return s;
  }
}

static void table_free(table *t) {
  for (size_t i = 0; i < t->cap; i++)
    if (t->s[i].key) {
      free(t->s[i].key);
      free(t->s[i].val);
    }
  free(t->s);
  t->s = NULL;
}

/* ------------------------------------------------------------------ */
/* options                                                              */

typedef struct opts {
  const char *plugin_dir;
  const char *plugin; /* "" = not built: plugin parts are skipped */
  const char *url, *token, *cacert, *mount;
  const char *name, *prefix, *value;
  const char *access_log, *stats_url;
  int runs, fill_threads, trials;
  unsigned impls; /* cached: bit i = IMPL_NAMES[i] measured, bit 4 = env */
  double secs;
  long max, warmup, secrets;
  int threads[16];
  int n_threads;
  const char *env_k[MAX_ENV], *env_v[MAX_ENV];
  int n_env;
} opts;

static void usage(void) {
  fputs("usage: kms-bench MODE [options]\n"
        "  MODE: cached | uncached | storm | load\n"
        "  --plugin-dir DIR --plugin NAME ('' = skip the plugin)  --url BASE_URL\n"
        "  --token T --cacert PEM --mount M --name SECRET --prefix NAME_PREFIX --value V\n"
        "  --impl plugin|libcurl (uncached)  --runs R --secs S --max N --warmup N\n"
        "  --secrets N --threads 1,2,... --fill-threads N --trials K\n"
        "  --access-log FILE (nginx: '$connection $connection_requests $request_method "
        "$request_uri $status')\n"
        "  --stats-url URL (tests/vault_server /__test__/stats)  --env K=V (repeatable)\n"
        "  --impls plugin,into,nb,env (cached: which reads next to the floor; default all;\n"
        "    one at a time is what a profiler wants)\n",
        stderr);
  exit(2);
}

/* ------------------------------------------------------------------ */
/* the host: getenv from a small list, then from the secrets table      */

typedef struct host_env {
  const opts *o;
  const table *t; /* env plugin's secrets (may be empty) */
  char refresh[32];
  int table_only; /* getenv is the floor's lookup alone (env.so's host) */
} host_env;

static const char *host_getenv(void *ctx, const char *name) {
  host_env *h = ctx;
  if (h->table_only) { /* so that env.so's row is the floor + the ABI, not this host's list */
    const slot *s = table_get(h->t, name);
    return s ? s->val : NULL;
  }
  const opts *o = h->o;
  for (int i = o->n_env - 1; i >= 0; i--)
    if (strcmp(o->env_k[i], name) == 0) return o->env_v[i];
  if (strcmp(name, "HCP_VAULT_ADDR") == 0) return o->url;
  if (strcmp(name, "HCP_VAULT_TOKEN") == 0) return o->token;
  if (strcmp(name, "HCP_VAULT_REFRESH_INTERVAL") == 0) return h->refresh;
  if (strcmp(name, "VAULT_CACERT") == 0) return o->cacert;
  if (strcmp(name, "HCP_VAULT_MOUNT_NAME") == 0) return o->mount;
  const slot *s = h->t ? table_get(h->t, name) : NULL;
  return s ? s->val : NULL;
}

static void host_log(void *ctx, kms_log_level level, const char *message) {
  if (level <= KMS_LOG_WARN) fprintf(stderr, "kms-bench: plugin log: %s\n", message);
}

static void make_host(kms_host *host, host_env *he) {
  memset(host, 0, sizeof *host);
  host->struct_size = sizeof *host;
  host->abi_major = KMS_ABI_MAJOR;
  host->abi_minor = KMS_ABI_MINOR;
  host->ctx = he;
  host->log = host_log;
  host->getenv = host_getenv;
}

/* Load + create; returns the elapsed ns. */
static uint64_t open_client(const opts *o, const char *plugin, const kms_host *host,
                            kms_module **m, kms_client **c) {
  kms_error err;
  uint64_t t0 = now_ns();
  if (kms_module_load(o->plugin_dir, plugin, m, &err) != KMS_OK)
    fail("load %s: %s: %s", plugin, kms_status_str(err.status), err.message);
  if (kms_client_create(*m, host, NULL, 0, c, &err) != KMS_OK)
    fail("create %s: %s: %s", plugin, kms_status_str(err.status), err.message);
  return now_ns() - t0;
}

static void close_client(kms_module *m, kms_client *c) {
  kms_client_destroy(c);
  kms_module_unload(m);
}

static char **make_names(const char *prefix, long n) {
  char **names = xmalloc((size_t)n * sizeof *names);
  for (long i = 0; i < n; i++) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s%07ld", prefix, i);
    names[i] = xstrdup(buf);
  }
  return names;
}

/* ------------------------------------------------------------------ */
/* mode: cached                                                         */

/* IMPL_INTO: kms_client_read_into (ABI 1.1: the caller's buffer, nothing
 * allocated); IMPL_NB: the same with KMS_CALL_NONBLOCKING (the event-loop
 * read: a cached value at once, never a fetch on the caller's thread). */
enum { IMPL_FLOOR, IMPL_CLIENT, IMPL_INTO, IMPL_NB, IMPL_COUNT };
static const char *const IMPL_NAMES[IMPL_COUNT] = {"floor", "plugin", "into", "nb"};

typedef struct cworker {
  int impl;
  kms_client *c;
  const table *t;
  char **names;
  long n;
  uint64_t budget_ns;
  long max_calls;
  pthread_barrier_t *bar;
  uint64_t seed;
  /* out */
  uint64_t calls, ns, cpu_ns; /* cpu_ns: this thread's CPU time (not while descheduled) */
  kms_status st;
  char msg[KMS_ERROR_MESSAGE_SIZE];
} cworker;

static void *cached_worker(void *arg) {
  cworker *w = arg;
  uint64_t seed = w->seed | 1;
  pthread_barrier_wait(w->bar);
  uint64_t t0 = now_ns(), deadline = t0 + w->budget_ns, calls = 0, c0 = thread_cpu_ns();
  unsigned sink = 0;
  while (calls < (uint64_t)w->max_calls) {
    for (int b = 0; b < 256; b++) {
      const char *name = w->names[(xorshift(&seed) >> 11) % (uint64_t)w->n];
      if (w->impl == IMPL_FLOOR) {
        const slot *s = table_get(w->t, name);
        char *copy = malloc(s->vlen + 1);
        if (!copy) abort();
        memcpy(copy, s->val, s->vlen);
        copy[s->vlen] = 0;
        SINK(copy);
        sink += (unsigned char)copy[0];
        free(copy);
      } else if (w->impl == IMPL_INTO || w->impl == IMPL_NB) { /* nothing allocated */
        static const kms_call_options nb = {.struct_size = sizeof nb,
                                            .flags = KMS_CALL_NONBLOCKING};
        char buf[256];
        kms_secret_info info = {sizeof info, 0, 0, 0};
        kms_error err;
        kms_status st = kms_client_read_into(w->c, name, w->impl == IMPL_NB ? &nb : NULL, buf,
                                             sizeof buf, &info, &err);
        if (st != KMS_OK) {
          w->st = st;
          snprintf(w->msg, sizeof w->msg, "%s", err.message);
          goto out;
        }
        sink += (unsigned char)buf[0];
      } else {
        kms_secret *sec;
        kms_error err;
        kms_status st = kms_client_read(w->c, name, &sec, &err);
        if (st != KMS_OK) {
          w->st = st;
          snprintf(w->msg, sizeof w->msg, "%s", err.message);
          goto out;
        }
        sink += (unsigned char)sec->value[0];
        kms_client_free_secret(w->c, sec);
      }
    }
    calls += 256;
    if (now_ns() >= deadline) break;
  }
out:
  SINK(&sink);
  w->ns = now_ns() - t0;
  w->cpu_ns = thread_cpu_ns() - c0;
  w->calls = calls;
  return NULL;
}

/* One timed run on `threads` threads; returns mean wall ns per call per
 * thread, and in *cpu the mean CPU ns per call per thread. */
static double cached_run(const opts *o, int impl, kms_client *c, const table *t, char **names,
                         long n, int threads, uint64_t seed, double *cpu) {
  cworker w[MAX_THREADS];
  pthread_t th[MAX_THREADS];
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, (unsigned)threads);
  for (int i = 0; i < threads; i++) {
    w[i] = (cworker){.impl = impl, .c = c, .t = t, .names = names, .n = n,
                     .budget_ns = (uint64_t)(o->secs * 1e9), .max_calls = o->max, .bar = &bar,
                     .seed = seed * 7919u + (uint64_t)i * 104729u + 1, .st = KMS_OK};
    if (pthread_create(&th[i], NULL, cached_worker, &w[i])) fail("pthread_create failed");
  }
  double sum = 0, csum = 0;
  for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&bar);
  for (int i = 0; i < threads; i++) {
    if (w[i].st != KMS_OK) fail("cached read: %s: %s", kms_status_str(w[i].st), w[i].msg);
    sum += w[i].calls ? (double)w[i].ns / (double)w[i].calls : 0;
    csum += w[i].calls ? (double)w[i].cpu_ns / (double)w[i].calls : 0;
  }
  *cpu = csum / threads;
  return sum / threads;
}

typedef struct filler {
  kms_client *c;
  char **names;
  long n;
  int idx, stride;
  kms_status st;
  char msg[KMS_ERROR_MESSAGE_SIZE];
  char name[128];
} filler;

static void *fill_worker(void *arg) {
  filler *f = arg;
  for (long i = f->idx; i < f->n; i += f->stride) {
    kms_secret *s;
    kms_error err;
    kms_status st = kms_client_read(f->c, f->names[i], &s, &err);
    if (st != KMS_OK) {
      f->st = st;
      snprintf(f->msg, sizeof f->msg, "%s", err.message);
      snprintf(f->name, sizeof f->name, "%s", f->names[i]);
      return NULL;
    }
    kms_client_free_secret(f->c, s);
  }
  return NULL;
}

/* Runs of every implementation on `th` threads, interleaved so that drift
 * in the machine's load hits all alike; one RESULT line with the medians
 * and the paired per-run ratios (each run's figure ÷ the floor measured
 * right before it). */
static void cached_reads(const opts *o, kms_client *c, kms_client *ec, const table *t,
                         char **names, long n, int th) {
  enum { ENV = IMPL_COUNT, SERIES };
  static const char *const label[SERIES] = {"floor", "plugin", "into", "nb", "env"};
  double v[SERIES][64] = {{0}}, ratio[SERIES][64] = {{0}};
  double cv[SERIES][64] = {{0}}, cratio[SERIES][64] = {{0}}; /* CPU time per call */
  int on[SERIES] = {1, c && (o->impls & 2u), c && (o->impls & 4u), c && (o->impls & 8u),
                    ec && (o->impls & 16u)};
  int runs = o->runs > 64 ? 64 : o->runs;
  for (int r = 0; r < runs; r++) {
    for (int k = 0; k < SERIES; k++)
      if (on[k])
        v[k][r] = cached_run(o, k == ENV ? IMPL_CLIENT : k, k == ENV ? ec : c, t, names, n, th,
                             (uint64_t)r + 1, &cv[k][r]);
    for (int k = 1; k < SERIES; k++) {
      ratio[k][r] = on[k] ? v[k][r] / v[0][r] : 0;
      cratio[k][r] = on[k] && cv[0][r] > 0 ? cv[k][r] / cv[0][r] : 0;
    }
  }
  printf("RESULT mode=cached what=read secrets=%ld threads=%d runs=%d floor_ns=%.1f", n, th, runs,
         median_dbl(v[0], (size_t)runs));
  for (int k = 1; k < SERIES; k++) {
    if (!on[k]) continue;
    double m = median_dbl(v[k], (size_t)runs), mr = median_dbl(ratio[k], (size_t)runs);
    /* median_dbl sorted ratio[k]: [0] is the least, [runs - 1] the most */
    printf(" %s_ns=%.1f %s_ratio=%.3f %s_ratio_min=%.3f %s_ratio_max=%.3f", label[k], m,
           label[k], mr, label[k], ratio[k][0], label[k], ratio[k][runs - 1]);
    printf(" %s_cpu_ns=%.1f %s_cpu_ratio=%.3f", label[k], median_dbl(cv[k], (size_t)runs),
           label[k], median_dbl(cratio[k], (size_t)runs));
  }
  printf(" floor_cpu_ns=%.1f", median_dbl(cv[0], (size_t)runs));
  printf("\n");
  fflush(stdout);
}

/* The never-blocking read of a secret not cached yet: it must answer
 * UNAVAILABLE at once (and start a background fetch). ns per call, median
 * over fresh names, next to a blocking read of a fresh name (a fetch). */
static void nonblocking_cold(const opts *o, kms_client *c) {
  enum { K = 200 };
  static const kms_call_options nb = {.struct_size = sizeof nb, .flags = KMS_CALL_NONBLOCKING};
  double cold[K], block[K / 4];
  char buf[256], name[160];
  kms_secret_info info = {sizeof info, 0, 0, 0};
  kms_error err;
  /* the blocking reads first: the queued background fetches would slow them */
  for (int i = 0; i < K / 4; i++) {
    snprintf(name, sizeof name, "%sBLOCKCOLD_%d", o->prefix, i);
    uint64_t a = now_ns();
    kms_status st = kms_client_read_into(c, name, NULL, buf, sizeof buf, &info, &err);
    block[i] = (double)(now_ns() - a);
    if (st != KMS_OK) fail("read of %s: %s: %s", name, kms_status_str(st), err.message);
  }
  for (int i = 0; i < K; i++) {
    snprintf(name, sizeof name, "%sNBCOLD_%d", o->prefix, i);
    uint64_t a = now_ns();
    kms_status st = kms_client_read_into(c, name, &nb, buf, sizeof buf, &info, &err);
    cold[i] = (double)(now_ns() - a);
    if (st != KMS_UNAVAILABLE)
      fail("nonblocking read of the uncached %s: %s (expected UNAVAILABLE): %s", name,
           kms_status_str(st), err.message);
  }
  printf("RESULT mode=cached what=nb_cold n=%d nb_cold_ns=%.1f block_cold_ns=%.1f\n", K,
         median_dbl(cold, K), median_dbl(block, K / 4));
  fflush(stdout);
}

static int mode_cached(const opts *o) {
  long n = o->secrets;
  const char *value = o->value ? o->value : "sk-bench-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQR";
  size_t vlen = strlen(value);
  long rss0 = proc_status_kb("VmRSS");
  char **names = make_names(o->prefix, n);
  long rss_names = proc_status_kb("VmRSS");
  table t;
  table_init(&t, (size_t)n);
  for (long i = 0; i < n; i++) table_put(&t, names[i], value, vlen);
  long rss_table = proc_status_kb("VmRSS");
  printf("RESULT mode=cached what=floor_rss secrets=%ld names_kib=%ld table_kib=%ld\n", n,
         rss_names - rss0, rss_table - rss_names);

  host_env he = {.o = o, .t = &t};
  snprintf(he.refresh, sizeof he.refresh, "86400");
  kms_host host;
  make_host(&host, &he);

  kms_module *m = NULL;
  kms_client *c = NULL;
  int have_plugin = o->plugin && *o->plugin;
  if (have_plugin) {
    long rss_before = proc_status_kb("VmRSS");
    uint64_t create_ns = open_client(o, o->plugin, &host, &m, &c);
    kms_secret *s;
    kms_error err;
    if (kms_client_read(c, names[0], &s, &err) != KMS_OK)
      fail("first read of %s: %s: %s", names[0], kms_status_str(err.status), err.message);
    int same = s->length == vlen && memcmp(s->value, value, vlen) == 0;
    kms_client_free_secret(c, s);
    if (!same) fprintf(stderr, "kms-bench: warning: the plugin's value differs from --value\n");
    long rss_ready = proc_status_kb("VmRSS");
    /* populate the cache */
    int nf = o->fill_threads < 1 ? 1 : o->fill_threads > MAX_THREADS ? MAX_THREADS : o->fill_threads;
    filler f[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    uint64_t t0 = now_ns();
    for (int i = 0; i < nf; i++)
      f[i] = (filler){.c = c, .names = names, .n = n, .idx = i, .stride = nf, .st = KMS_OK};
    if (nf == 1) { /* on this thread: no extra malloc arena in the RSS figure */
      fill_worker(&f[0]);
    } else {
      for (int i = 0; i < nf; i++)
        if (pthread_create(&th[i], NULL, fill_worker, &f[i])) fail("pthread_create failed");
      for (int i = 0; i < nf; i++) pthread_join(th[i], NULL);
    }
    uint64_t fill_ns = now_ns() - t0;
    for (int i = 0; i < nf; i++)
      if (f[i].st != KMS_OK)
        fail("populating the cache, %s: %s: %s", f[i].name, kms_status_str(f[i].st), f[i].msg);
    long rss_filled = proc_status_kb("VmRSS");
    printf("RESULT mode=cached what=plugin_rss secrets=%ld create_ms=%.3f base_kib=%ld "
           "loaded_kib=%ld cache_kib=%ld fill_s=%.3f fill_rate=%.0f hwm_kib=%ld\n",
           n, create_ns / 1e6, rss_before, rss_ready - rss_before, rss_filled - rss_ready,
           fill_ns / 1e9, n / (fill_ns / 1e9), proc_status_kb("VmHWM"));
    fflush(stdout);
  }

  /* env plugin: the same table read through the host's getenv */
  kms_module *em = NULL;
  kms_client *ec = NULL;
  kms_error err;
  host_env ehe = {.o = o, .t = &t, .table_only = 1};
  kms_host ehost;
  make_host(&ehost, &ehe);
  if (kms_module_load(o->plugin_dir, "env", &em, &err) == KMS_OK) {
    if (kms_client_create(em, &ehost, NULL, 0, &ec, &err) != KMS_OK) {
      fprintf(stderr, "kms-bench: env plugin create: %s\n", err.message);
      kms_module_unload(em);
      em = NULL;
      ec = NULL;
    }
  } else {
    em = NULL;
  }

  for (int ti = 0; ti < o->n_threads; ti++)
    cached_reads(o, c, ec, &t, names, n, o->threads[ti]);
  if (c && (o->impls & (1u << IMPL_NB))) nonblocking_cold(o, c);
  if (ec) close_client(em, ec);
  if (c) close_client(m, c);
  table_free(&t);
  for (long i = 0; i < n; i++) free(names[i]);
  free(names);
  return 0;
}

/* ------------------------------------------------------------------ */
/* upstream counters: nginx access log or tests/vault_server stats       */

typedef struct counters {
  long log_off;
  long stats[3]; /* connections, tls_handshakes, requests */
  long stats_overhead[3];
} counters;

static size_t sink_write(char *p, size_t sz, size_t nm, void *ud) {
  char **buf = ud;
  size_t n = sz * nm, have = *buf ? strlen(*buf) : 0;
  if (have + n > 1 << 20) return 0;
  char *nb = realloc(*buf, have + n + 1);
  if (!nb) return 0;
  memcpy(nb + have, p, n);
  nb[have + n] = 0;
  *buf = nb;
  return n;
}

static long json_int(const char *json, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\"", key);
  const char *p = strstr(json, pat);
  if (!p) return -1;
  p = strchr(p + strlen(pat), ':');
  return p ? strtol(p + 1, NULL, 10) : -1;
}

static void fetch_stats(const opts *o, long out[3]) {
  CURL *h = curl_easy_init();
  char *buf = NULL;
  curl_easy_setopt(h, CURLOPT_URL, o->stats_url);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &buf);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  if (o->cacert) curl_easy_setopt(h, CURLOPT_CAINFO, o->cacert);
  CURLcode rc = curl_easy_perform(h);
  curl_easy_cleanup(h);
  if (rc != CURLE_OK || !buf) fail("GET %s: %s", o->stats_url, curl_easy_strerror(rc));
  out[0] = json_int(buf, "connections");
  out[1] = json_int(buf, "tls_handshakes");
  out[2] = json_int(buf, "requests");
  free(buf);
}

static long file_size(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fclose(f);
  return n;
}

static void counters_start(const opts *o, counters *k) {
  memset(k, 0, sizeof *k);
  if (o->access_log) k->log_off = file_size(o->access_log);
  if (o->stats_url) {
    /* a stats request is itself a request on a new connection: measure what
     * one costs and subtract it */
    long a[3];
    fetch_stats(o, a);
    fetch_stats(o, k->stats);
    for (int i = 0; i < 3; i++) k->stats_overhead[i] = k->stats[i] - a[i];
  }
}

/* Upstream requests (matching `name` when given) and distinct connections
 * (nginx: distinct $connection; vault_server: connections and TLS handshakes)
 * since counters_start. -1 = unknown. */
static void counters_end(const opts *o, const counters *k, const char *name, long *reqs,
                         long *conns, long *tls) {
  *reqs = *conns = *tls = -1;
  if (o->access_log) {
    struct timespec ts = {0, 100 * 1000 * 1000}; /* let nginx write its last lines */
    nanosleep(&ts, NULL);
    FILE *f = fopen(o->access_log, "r");
    if (!f) return;
    fseek(f, k->log_off, SEEK_SET);
    char line[2048];
    long nreq = 0, nconn = 0, cap = 0, *ids = NULL;
    char suffix[512];
    snprintf(suffix, sizeof suffix, "/%s", name ? name : "");
    while (fgets(line, sizeof line, f)) {
      long id = strtol(line, NULL, 10);
      char method[16], uri[1024];
      if (sscanf(line, "%*d %*d %15s %1023s", method, uri) != 2) continue;
      if (name) {
        size_t ul = strlen(uri), sl = strlen(suffix);
        if (ul < sl || strcmp(uri + ul - sl, suffix) != 0) continue;
      }
      nreq++;
      int seen = 0;
      for (long i = 0; i < nconn; i++)
        if (ids[i] == id) seen = 1;
      if (!seen) {
        if (nconn == cap) {
          cap = cap ? cap * 2 : 64;
          long *ni = realloc(ids, (size_t)cap * sizeof *ids);
          if (!ni) break;
          ids = ni;
        }
        ids[nconn++] = id;
      }
    }
    fclose(f);
    free(ids);
    *reqs = nreq;
    *conns = nconn;
    if (o->url && strncmp(o->url, "https:", 6) == 0) *tls = nconn;
  } else if (o->stats_url) {
    long s[3];
    fetch_stats(o, s);
    long d[3];
    for (int i = 0; i < 3; i++) d[i] = s[i] - k->stats[i] - k->stats_overhead[i];
    *conns = d[0];
    *tls = d[1];
    *reqs = d[2];
  }
}

/* ------------------------------------------------------------------ */
/* mode: uncached                                                       */

static int mode_uncached(const opts *o, const char *impl) {
  if (!o->url) usage();
  long cap = o->max > 0 ? o->max : 1;
  uint64_t *lat = xmalloc((size_t)cap * sizeof *lat);
  uint64_t budget = (uint64_t)(o->secs * 1e9);
  long n = 0;
  uint64_t t_all = 0;
  counters k;
  long reqs, conns, tls;
  int is_plugin = strcmp(impl, "plugin") == 0;

  counters_start(o, &k);
  if (is_plugin) {
    host_env he = {.o = o, .t = NULL};
    snprintf(he.refresh, sizeof he.refresh, "0");
    kms_host host;
    make_host(&host, &he);
    kms_module *m;
    kms_client *c;
    open_client(o, o->plugin, &host, &m, &c);
    kms_secret *s;
    kms_error err;
    for (long i = 0; i < o->warmup; i++) {
      if (kms_client_read(c, o->name, &s, &err) != KMS_OK)
        fail("read %s: %s: %s", o->name, kms_status_str(err.status), err.message);
      kms_client_free_secret(c, s);
    }
    uint64_t t0 = now_ns();
    while (n < o->max) {
      uint64_t a = now_ns();
      if (kms_client_read(c, o->name, &s, &err) != KMS_OK)
        fail("read %s: %s: %s", o->name, kms_status_str(err.status), err.message);
      uint64_t b = now_ns();
      kms_client_free_secret(c, s);
      lat[n++] = b - a;
      if (b - t0 >= budget) break;
    }
    t_all = now_ns() - t0;
    counters_end(o, &k, o->name, &reqs, &conns, &tls);
    close_client(m, c);
  } else if (strcmp(impl, "libcurl") == 0) {
    char url[2048], hdr[1024];
    snprintf(url, sizeof url, "%s/v1/%s/data/%s", o->url, o->mount ? o->mount : "secret", o->name);
    snprintf(hdr, sizeof hdr, "X-Vault-Token: %s", o->token ? o->token : "");
    CURL *h = curl_easy_init();
    struct curl_slist *hl = curl_slist_append(NULL, hdr);
    char *buf = NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &buf);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    if (o->cacert) curl_easy_setopt(h, CURLOPT_CAINFO, o->cacert);
    long total = o->warmup + o->max;
    uint64_t t0 = 0;
    for (long i = 0; i < total; i++) {
      if (i == o->warmup) t0 = now_ns();
      if (buf) buf[0] = 0;
      uint64_t a = now_ns();
      CURLcode rc = curl_easy_perform(h);
      uint64_t b = now_ns();
      long code = 0;
      curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
      if (rc != CURLE_OK || code != 200)
        fail("GET %s: %s (HTTP %ld)", url, curl_easy_strerror(rc), code);
      if (i >= o->warmup) {
        lat[n++] = b - a;
        if (b - t0 >= budget) break;
      }
    }
    t_all = now_ns() - t0;
    counters_end(o, &k, o->name, &reqs, &conns, &tls);
    curl_easy_cleanup(h);
    curl_slist_free_all(hl);
    free(buf);
  } else {
    usage();
  }
  qsort(lat, (size_t)n, sizeof *lat, cmp_u64);
  printf("RESULT mode=uncached impl=%s n=%ld warmup=%ld secs=%.3f rps=%.1f p50_us=%.1f "
         "p99_us=%.1f upstream=%ld conns=%ld tls=%ld\n",
         impl, n, o->warmup, t_all / 1e9, n / (t_all / 1e9), pct_sorted(lat, (size_t)n, 50) / 1e3,
         pct_sorted(lat, (size_t)n, 99) / 1e3, reqs, conns, tls);
  free(lat);
  return 0;
}

/* ------------------------------------------------------------------ */
/* mode: storm                                                          */

typedef struct sworker {
  kms_client *c;
  const char *name;
  pthread_barrier_t *bar;
  uint64_t t0, t1;
  kms_status st;
  char msg[KMS_ERROR_MESSAGE_SIZE];
} sworker;

static void *storm_worker(void *arg) {
  sworker *w = arg;
  pthread_barrier_wait(w->bar);
  w->t0 = now_ns();
  kms_secret *s;
  kms_error err;
  w->st = kms_client_read(w->c, w->name, &s, &err);
  w->t1 = now_ns();
  if (w->st == KMS_OK)
    kms_client_free_secret(w->c, s);
  else
    snprintf(w->msg, sizeof w->msg, "%s", err.message);
  return NULL;
}

static int mode_storm(const opts *o) {
  if (!o->url) usage();
  host_env he = {.o = o, .t = NULL};
  snprintf(he.refresh, sizeof he.refresh, "86400");
  kms_host host;
  make_host(&host, &he);
  kms_module *m;
  kms_client *c;
  open_client(o, o->plugin, &host, &m, &c);
  /* one read of another secret so the connection is open, as in a running gateway */
  kms_secret *s;
  kms_error err;
  if (kms_client_read(c, o->name, &s, &err) != KMS_OK)
    fail("warm-up read %s: %s: %s", o->name, kms_status_str(err.status), err.message);
  kms_client_free_secret(c, s);

  for (int ti = 0; ti < o->n_threads; ti++) {
    int th = o->threads[ti];
    for (int trial = 0; trial < o->trials; trial++) {
      char name[128];
      snprintf(name, sizeof name, "%s%d_%d", o->prefix, th, trial);
      sworker w[MAX_THREADS];
      pthread_t tid[MAX_THREADS];
      pthread_barrier_t bar;
      pthread_barrier_init(&bar, NULL, (unsigned)th);
      counters k;
      counters_start(o, &k);
      for (int i = 0; i < th; i++) {
        w[i] = (sworker){.c = c, .name = name, .bar = &bar};
        if (pthread_create(&tid[i], NULL, storm_worker, &w[i])) fail("pthread_create failed");
      }
      for (int i = 0; i < th; i++) pthread_join(tid[i], NULL);
      pthread_barrier_destroy(&bar);
      uint64_t t0 = UINT64_MAX, t1 = 0;
      int ok = 0, bad = -1;
      for (int i = 0; i < th; i++) {
        if (w[i].t0 < t0) t0 = w[i].t0;
        if (w[i].t1 > t1) t1 = w[i].t1;
        if (w[i].st == KMS_OK) ok++;
        else bad = i;
      }
      if (!ok && bad >= 0) fail("storm read %s: %s: %s", name, kms_status_str(w[bad].st), w[bad].msg);
      long reqs, conns, tls;
      counters_end(o, &k, name, &reqs, &conns, &tls);
      printf("RESULT mode=storm threads=%d trial=%d ok=%d upstream=%ld conns=%ld ms=%.3f\n", th,
             trial, ok, reqs, conns, (t1 - t0) / 1e6);
      fflush(stdout);
    }
  }
  close_client(m, c);
  return 0;
}

/* ------------------------------------------------------------------ */
/* mode: load                                                           */

static int mode_load(const opts *o) {
  host_env he = {.o = o, .t = NULL};
  snprintf(he.refresh, sizeof he.refresh, "86400");
  kms_host host;
  make_host(&host, &he);
  int runs = o->runs < 1 ? 1 : o->runs > 1000 ? 1000 : o->runs;
  double v[1000];
  double first = 0;
  for (int r = 0; r <= runs; r++) {
    kms_module *m;
    kms_client *c;
    uint64_t ns = open_client(o, o->plugin, &host, &m, &c);
    close_client(m, c);
    if (r == 0) first = ns / 1e3;
    else v[r - 1] = ns / 1e3;
  }
  printf("RESULT mode=load plugin=%s first_us=%.1f warm_us=%.1f runs=%d\n", o->plugin, first,
         median_dbl(v, (size_t)runs), runs);
  return 0;
}

/* ------------------------------------------------------------------ */

/* "plugin,into,nb,env" -> bits (see opts.impls); an unknown name is usage. */
static unsigned parse_impls(const char *v) {
  unsigned bits = 0;
  char *dup = xstrdup(v), *save = NULL;
  for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    int k = -1;
    for (int i = 1; i < IMPL_COUNT; i++)
      if (!strcmp(t, IMPL_NAMES[i])) k = i;
    if (!strcmp(t, "env")) k = IMPL_COUNT;
    if (k < 0) usage();
    bits |= 1u << k;
  }
  free(dup);
  return bits;
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  g_mode = argv[1];
  opts o = {.plugin_dir = NULL, .plugin = "hashicorp_vault", .token = "root", .mount = NULL,
            .name = "bench", .prefix = "BENCH_", .runs = 3, .fill_threads = 2, .trials = 3,
            .secs = 0.5, .max = 200000, .warmup = 20, .secrets = 10, .impls = ~0u};
  const char *impl = "plugin";
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) usage();
    const char *v = argv[++i];
    if (!strcmp(a, "--plugin-dir")) o.plugin_dir = v;
    else if (!strcmp(a, "--plugin")) o.plugin = v;
    else if (!strcmp(a, "--url")) o.url = v;
    else if (!strcmp(a, "--token")) o.token = v;
    else if (!strcmp(a, "--cacert")) o.cacert = *v ? v : NULL;
    else if (!strcmp(a, "--mount")) o.mount = v;
    else if (!strcmp(a, "--name")) o.name = v;
    else if (!strcmp(a, "--prefix")) o.prefix = v;
    else if (!strcmp(a, "--value")) o.value = v;
    else if (!strcmp(a, "--impl")) impl = v;
    else if (!strcmp(a, "--access-log")) o.access_log = *v ? v : NULL;
    else if (!strcmp(a, "--stats-url")) o.stats_url = *v ? v : NULL;
    else if (!strcmp(a, "--runs")) o.runs = atoi(v);
    else if (!strcmp(a, "--secs")) o.secs = atof(v);
    else if (!strcmp(a, "--max")) o.max = atol(v);
    else if (!strcmp(a, "--warmup")) o.warmup = atol(v);
    else if (!strcmp(a, "--secrets")) o.secrets = atol(v);
    else if (!strcmp(a, "--fill-threads")) o.fill_threads = atoi(v);
    else if (!strcmp(a, "--trials")) o.trials = atoi(v);
    else if (!strcmp(a, "--impls")) o.impls = parse_impls(v);
    else if (!strcmp(a, "--threads")) {
      char *dup = xstrdup(v), *save = NULL;
      o.n_threads = 0;
      for (char *t = strtok_r(dup, ",", &save); t && o.n_threads < 16; t = strtok_r(NULL, ",", &save)) {
        int x = atoi(t);
        if (x >= 1 && x <= MAX_THREADS) o.threads[o.n_threads++] = x;
      }
      free(dup);
    } else if (!strcmp(a, "--env")) {
      const char *eq = strchr(v, '=');
      if (!eq || o.n_env >= MAX_ENV) usage();
      o.env_k[o.n_env] = strndup(v, (size_t)(eq - v));
      o.env_v[o.n_env++] = eq + 1;
    } else usage();
  }
  if (o.n_threads == 0) o.threads[o.n_threads++] = 1;
  if (o.runs < 1) o.runs = 1;
  if (o.max < 1) o.max = 1;
  if (o.secrets < 1) o.secrets = 1;
  if (o.warmup < 0) o.warmup = 0;
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) fail("curl_global_init failed");
  int rc;
  if (!strcmp(g_mode, "cached")) rc = mode_cached(&o);
  else if (!strcmp(g_mode, "uncached")) rc = mode_uncached(&o, impl);
  else if (!strcmp(g_mode, "storm")) rc = mode_storm(&o);
  else if (!strcmp(g_mode, "load")) rc = mode_load(&o);
  else usage();
  for (int i = 0; i < o.n_env; i++) free((char *)o.env_k[i]);
  curl_global_cleanup();
  return rc;
}
