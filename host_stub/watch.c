/*
 * watch.c -- `kms-host watch`: print the plugin's change notifications
 * (ABI 1.1 kms_host.notify) as they come, for rotation demos.
 *
 * The plugin calls host_watch_notify from its own threads (the background
 * refresher, a read, a nonblocking fetch), never under its locks. The
 * callback only copies the change (name, kind, version, location; a change
 * never carries a value) into a bounded queue under a mutex and signals a
 * condition variable; the main thread drains the queue and prints, so
 * output is never interleaved and a slow terminal never stalls the plugin.
 *
 * A plugin learns of changes only to what it holds: watch reads each name
 * once at the start so it is cached, and turns on the plugin's
 * background_refresh (re-reads before the cache TTL ends) unless the config
 * already did. Names: those on the command line, else every os.environ/
 * reference of the config that is read through the plugin.
 */
#include "hostcmds.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WATCH_QUEUE_MAX 4096 /* changes held before newer ones are dropped */
#define WATCH_SLICE_MS 200   /* how often the wait looks at the signal flag */
#define WATCH_LOC_MAX 256    /* "k=v,k=v" of a change's location, truncated */

typedef struct watch_event {
  struct watch_event *next;
  char *name;
  uint32_t kind;
  int64_t version;
  char location[WATCH_LOC_MAX];
} watch_event;

struct host_watch {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  watch_event *head, *tail;
  size_t queued;
  unsigned long dropped; /* changes lost to a full queue, reported once drained */
};

static volatile sig_atomic_t watch_stop; /* SIGINT/SIGTERM arrived */

static void on_signal(int sig) {
  (void)sig;
  watch_stop = 1;
}

host_status host_watch_parse(int argc, char **argv, host_watch_args *a, host_result *r) {
  memset(a, 0, sizeof *a);
  for (int i = 0; i < argc; i++) {
    const char *opt = argv[i];
    int is_count = !strcmp(opt, "--count"), is_timeout = !strcmp(opt, "--timeout");
    if (!is_count && !is_timeout) {
      if (opt[0] == '-') return host_fail(r, HOST_USAGE, "watch: unknown option '%s'", opt);
      if (!a->names) a->names = argv + i; /* names are the trailing arguments */
      else if (a->names + a->n_names != argv + i)
        return host_fail(r, HOST_USAGE, "watch: options go before the NAMEs ('%s')", opt);
      a->n_names++;
      continue;
    }
    if (a->names) return host_fail(r, HOST_USAGE, "watch: options go before the NAMEs ('%s')",
                                   opt);
    if (i + 1 >= argc) return host_fail(r, HOST_USAGE, "watch: %s needs a value", opt);
    const char *v = argv[++i];
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (*v < '0' || *v > '9' || *end || errno || n == 0 || n > 86400u * 365u)
      return host_fail(r, HOST_USAGE, "watch: %s: '%s' is not a whole number from 1 to %u", opt,
                       v, 86400u * 365u);
    if (is_count) a->count = (long)n;
    else a->timeout_s = (unsigned)n;
  }
  return HOST_OK;
}

host_status host_watch_settings(const host_config *cfg, kms_setting extra[1], size_t *n,
                                host_result *r) {
  *n = 0;
  for (size_t i = 0; i < cfg->n_settings; i++) {
    if (strcmp(cfg->settings[i].key, "background_refresh")) continue;
    int on = 0;
    if (host_parse_bool(cfg->settings[i].value, &on) && on) return HOST_OK;
    return host_fail(r, HOST_CONFIG, "%s:%d: key_management_settings.background_refresh is "
                     "'%s': watch needs the plugin to re-read secrets in the background to see "
                     "changes; set it to true (or remove it: watch then turns it on for itself)",
                     cfg->path, cfg->settings[i].line, cfg->settings[i].value);
  }
  extra[0].key = "background_refresh";
  extra[0].value = "true";
  *n = 1;
  return HOST_OK;
}

host_status host_watch_new(host_watch **w, host_result *r) {
  *w = calloc(1, sizeof **w);
  if (!*w) return host_fail(r, HOST_FAILED, "out of memory");
  pthread_mutex_init(&(*w)->mu, NULL);
  pthread_condattr_t ca; /* waits are measured on the monotonic clock (deadline_in) */
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&(*w)->cv, &ca);
  pthread_condattr_destroy(&ca);
  return HOST_OK;
}

static void event_free(watch_event *e) {
  if (!e) return;
  free(e->name);
  free(e);
}

void host_watch_free(host_watch *w) {
  if (!w) return;
  while (w->head) {
    watch_event *e = w->head;
    w->head = e->next;
    event_free(e);
  }
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
  free(w);
}

/* The change's location pairs as "k=v,k=v" (values are locations, not
 * secrets), "" for the instance's own location. */
static void location_text(const kms_change *c, char *buf, size_t size) {
  buf[0] = '\0';
  if (!KMS_FIELD_PRESENT(c, kms_change, n_location) || !c->location) return;
  size_t used = 0;
  for (size_t i = 0; i < c->n_location && used < size; i++) {
    int n = snprintf(buf + used, size - used, "%s%s=%s", i ? "," : "",
                     c->location[i].key ? c->location[i].key : "",
                     c->location[i].value ? c->location[i].value : "");
    if (n < 0) break;
    used += (size_t)n;
  }
}

/* The host_notify_fn: runs on a plugin thread, so it only copies and
 * queues (a mutex held for a pointer swap; no I/O, no plugin call). */
void host_watch_notify(void *ctx, const kms_change *c) {
  host_watch *w = ctx;
  if (!KMS_FIELD_PRESENT(c, kms_change, kind) || !c->name) return;
  watch_event *e = calloc(1, sizeof *e);
  if (e) e->name = strdup(c->name);
  if (e && e->name) {
    e->kind = c->kind;
    e->version = KMS_FIELD_PRESENT(c, kms_change, version) ? c->version : 0;
    location_text(c, e->location, sizeof e->location);
  }
  pthread_mutex_lock(&w->mu);
  if (!e || !e->name || w->queued >= WATCH_QUEUE_MAX) {
    w->dropped++;
  } else {
    if (w->tail) w->tail->next = e;
    else w->head = e;
    w->tail = e;
    w->queued++;
    e = NULL;
  }
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  event_free(e);
}

void host_watch_counts(host_watch *w, size_t *queued, unsigned long *dropped) {
  pthread_mutex_lock(&w->mu);
  *queued = w->queued;
  *dropped = w->dropped;
  pthread_mutex_unlock(&w->mu);
}

static void deadline_in(struct timespec *ts, unsigned ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += ms / 1000u;
  ts->tv_nsec += (long)(ms % 1000u) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

/* Wait up to `ms` for a change; *e is the oldest (the caller frees it) or
 * NULL; *dropped takes the count of changes lost since the last call. */
static void watch_next(host_watch *w, unsigned ms, watch_event **e, unsigned long *dropped) {
  struct timespec until;
  deadline_in(&until, ms);
  pthread_mutex_lock(&w->mu);
  while (!w->head && !w->dropped && !watch_stop)
    if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT) break;
  *e = w->head;
  if (*e) {
    w->head = (*e)->next;
    if (!w->head) w->tail = NULL;
    w->queued--;
  }
  *dropped = w->dropped;
  w->dropped = 0;
  pthread_mutex_unlock(&w->mu);
}

/* The names to watch: the command line's, else the config's references
 * read through the plugin (each once). *names borrows the strings. */
static host_status watch_names(const host_config *cfg, const host_watch_args *a,
                               const char ***names, size_t *n, host_result *r) {
  *n = 0;
  size_t cap = a->n_names ? a->n_names : cfg->n_refs;
  *names = calloc(cap ? cap : 1, sizeof **names);
  if (!*names) return host_fail(r, HOST_FAILED, "out of memory");
  for (size_t i = 0; i < a->n_names; i++) (*names)[(*n)++] = a->names[i];
  for (size_t i = 0; !a->n_names && i < cfg->n_refs; i++) {
    const char *nm = cfg->refs[i].env_name;
    if (!nm || !*nm || !host_ref_uses_plugin(cfg, nm)) continue;
    int seen = 0;
    for (size_t j = 0; j < *n && !seen; j++) seen = !strcmp((*names)[j], nm);
    if (!seen) (*names)[(*n)++] = nm;
  }
  if (*n) return HOST_OK;
  return host_fail(r, HOST_USAGE, "watch: no NAMEs given and %s has no os.environ/ reference "
                   "read through the plugin; name the secrets to watch", cfg->path);
}

/* Read each name once so the plugin holds it (it notifies changes of what
 * it holds) and say where each one starts. A missing name is watched too
 * (reported when it appears, if the plugin caches "not found"). */
static host_status watch_seed(kms_client *client, const char **names, size_t n, FILE *out,
                              size_t *found, host_result *r) {
  *found = 0;
  for (size_t i = 0; i < n; i++) {
    kms_secret *s = NULL;
    kms_error e;
    kms_status st = kms_client_read(client, names[i], &s, &e);
    if (st == KMS_OK) {
      int64_t v = KMS_SECRET_HAS(s, version) ? s->version : 0;
      kms_client_free_secret(client, s);
      (*found)++;
      fprintf(out, "watching %s version=%lld\n", names[i], (long long)v);
    } else if (st == KMS_NOT_FOUND) {
      fprintf(out, "watching %s (not found now)\n", names[i]);
    } else {
      return host_fail(r, HOST_FAILED, "watch: cannot read %s to start watching it: %s (%s)",
                       names[i], e.message, kms_status_str(st));
    }
  }
  fflush(out);
  return HOST_OK;
}

/* A plugin that caches nothing never re-reads, so it never notices. */
static host_status watch_check_cache(kms_client *client, const char *plugin, host_result *r) {
  kms_health h;
  memset(&h, 0, sizeof h);
  h.struct_size = sizeof h;
  kms_error e;
  if (kms_client_health(client, &h, &e) != KMS_OK || h.cache_entries > 0) return HOST_OK;
  return host_fail(r, HOST_CONFIG, "watch: plugin '%s' holds none of the watched secrets after "
                   "reading them (its cache is off), so it never re-reads them and cannot see "
                   "a change; turn its cache on (hashicorp_vault: HCP_VAULT_REFRESH_INTERVAL, "
                   "aws_secret_manager: setting refresh_interval; above 0, in seconds: changes "
                   "then show within that interval)", plugin);
}

static void print_event(const watch_event *e, FILE *out) {
  char *name = host_text_escape(e->name, strlen(e->name)); /* not the plugin's to drive the tty */
  const char *nm = name ? name : "(name not shown: out of memory)";
  if (e->kind == KMS_CHANGE_UPDATED)
    fprintf(out, "updated %s version=%lld", nm, (long long)e->version);
  else if (e->kind == KMS_CHANGE_DELETED)
    fprintf(out, "deleted %s", nm);
  else
    fprintf(out, "changed %s kind=%u", nm, e->kind); /* unknown kind: "re-read it" */
  if (e->location[0]) fprintf(out, " location=%s", e->location);
  fputc('\n', out);
  fflush(out);
  free(name);
}

static uint64_t now_ms(void) { return host_clock_system()->now_ms(NULL); }

/* Drain changes until --count, --timeout or a signal. */
static host_status watch_loop(host_watch *w, const host_watch_args *a, FILE *out,
                              host_result *r) {
  uint64_t end = a->timeout_s ? now_ms() + (uint64_t)a->timeout_s * 1000u : 0;
  long seen = 0;
  while (!watch_stop && (!a->count || seen < a->count)) {
    uint64_t now = now_ms();
    if (end && now >= end) break;
    unsigned slice = WATCH_SLICE_MS;
    if (end && end - now < slice) slice = (unsigned)(end - now);
    watch_event *e;
    unsigned long dropped;
    watch_next(w, slice, &e, &dropped);
    if (dropped) fprintf(out, "dropped %lu change(s): more than %d were waiting\n", dropped,
                         WATCH_QUEUE_MAX);
    if (!e) continue;
    print_event(e, out);
    event_free(e);
    seen++;
  }
  if (!watch_stop && a->count && seen < a->count)
    return host_fail(r, HOST_FAILED, "watch: %ld of %ld change(s) seen within --timeout %u s",
                     seen, a->count, a->timeout_s);
  return HOST_OK;
}

host_status host_watch_run(host_watch *w, kms_client *client, const host_config *cfg,
                           const host_watch_args *a, FILE *out, host_result *r) {
  const kms_plugin *p = kms_client_plugin(client);
  if (!(p->capabilities & KMS_CAP_NOTIFY))
    return host_fail(r, HOST_UNSUPPORTED, "watch: plugin '%s' does not report changes (no "
                     "notify capability, ABI 1.1): nothing to watch with it", cfg->kms);
  const char **names = NULL;
  size_t n = 0;
  if (watch_names(cfg, a, &names, &n, r) != HOST_OK) {
    free(names);
    return r->status;
  }
  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: nothing here blocks uninterruptibly */
  sigemptyset(&sa.sa_mask);
  watch_stop = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  size_t found = 0;
  host_status s = watch_seed(client, names, n, out, &found, r);
  if (s == HOST_OK && found) s = watch_check_cache(client, cfg->kms, r);
  if (s == HOST_OK) s = watch_loop(w, a, out, r);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  free(names);
  return s;
}
