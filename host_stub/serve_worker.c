/*
 * serve_worker.c -- the background delivery worker of `kms-host serve`.
 *
 * The only thread of the server that delivers the outbox. A request that
 * committed a key change asks for a round (serve_worker_deliver) and waits
 * a bounded time for a round that *started after* its commit: delivery is
 * ordered and stops at the first failure, so such a round ending with an
 * empty queue means the change's operations landed. While work stays
 * queued the worker retries on its own with exponential backoff.
 *
 * Rounds are numbered: `requested` counts asks, a round covers every ask
 * made before it began (`covers`), `done` is the last covered ask and
 * `landed` the last covered ask of a round that emptied the queue. Each
 * round takes the delivery lock (lock.c) with one try, so a CLI `sync` or
 * `key generate` elsewhere is never delivered concurrently; a held lock is
 * treated like a failed round and retried.
 */
#include "serve.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct serve_worker {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t kick; /* to the worker: an ask, or stop */
  pthread_cond_t done_cv; /* to waiting requests: a round ended */
  unsigned long long requested, done, landed;
  long queued;
  char error[HOST_ERR_SIZE];
  int stop;
  host_db *db; /* the worker's own connection (SQLite file or PostgreSQL) */
  char *db_path;
  kms_client *client;
  pthread_mutex_t *plugin_mu;
  unsigned backoff_min_ms, backoff_max_ms;
  const host_clock *clock;
};

static struct timespec deadline_in(unsigned ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += ms / 1000u;
  ts.tv_nsec += (long)(ms % 1000u) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return ts;
}

static int cond_init_monotonic(pthread_cond_t *c) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  int rc = pthread_cond_init(c, &a);
  pthread_condattr_destroy(&a);
  return rc;
}

/* One round: lock, deliver everything it can, unlock. HOST_OK (empty),
 * HOST_QUEUED or HOST_FAILED; *left how many are queued. */
static host_status round_once(serve_worker *w, long *left, host_result *r) {
  int fd = -1;
  *left = -1;
  /* SQLite: the file lock the CLI takes too. PostgreSQL: no lock -- the
   * outbox's claims (FOR UPDATE SKIP LOCKED, per name in order) already let
   * replicas deliver side by side, and its advisory delivery lock lives as
   * long as the session, which for this connection is the whole run. */
  if (host_db_sqlite(w->db) && host_lock_acquire(w->db_path, 0, w->clock, &fd, r) != HOST_OK)
    return HOST_QUEUED;
  pthread_mutex_lock(w->plugin_mu);
  host_status s = host_outbox_deliver(w->db, w->client, left, r);
  pthread_mutex_unlock(w->plugin_mu);
  if (fd >= 0) host_lock_release(fd);
  return s;
}

static void *worker_main(void *arg) {
  serve_worker *w = arg;
  unsigned backoff = 0; /* 0: nothing queued that we know of */
  pthread_mutex_lock(&w->mu);
  for (;;) {
    /* Wait for an ask, or for the backoff to pass while work is queued. */
    int timed_out = 0;
    while (!w->stop && w->requested == w->done && !timed_out) {
      if (!backoff) {
        pthread_cond_wait(&w->kick, &w->mu);
      } else {
        struct timespec ts = deadline_in(backoff);
        timed_out = pthread_cond_timedwait(&w->kick, &w->mu, &ts) == ETIMEDOUT;
      }
    }
    if (w->stop) break;
    unsigned long long covers = w->requested;
    pthread_mutex_unlock(&w->mu);
    host_result r = {HOST_OK, ""};
    long left = 0;
    host_status s = round_once(w, &left, &r);
    pthread_mutex_lock(&w->mu);
    w->done = covers;
    w->queued = left;
    if (s == HOST_OK) {
      w->landed = covers;
      w->error[0] = '\0';
      backoff = 0;
    } else {
      snprintf(w->error, sizeof w->error, "%s", r.msg);
      backoff = !backoff ? w->backoff_min_ms
                : backoff >= w->backoff_max_ms / 2 ? w->backoff_max_ms : backoff * 2;
      host_log(KMS_LOG_WARN, "serve: delivery: %s; retrying in %u ms", r.msg, backoff);
    }
    pthread_cond_broadcast(&w->done_cv);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

host_status serve_worker_start(const char *db_path, kms_client *client,
                               pthread_mutex_t *plugin_mu, unsigned backoff_min_ms,
                               unsigned backoff_max_ms, const host_clock *clock,
                               serve_worker **out, host_result *r) {
  *out = NULL;
  serve_worker *w = calloc(1, sizeof *w);
  if (!w || !(w->db_path = strdup(db_path))) {
    free(w);
    return host_fail(r, HOST_FAILED, "out of memory");
  }
  w->client = client;
  w->plugin_mu = plugin_mu;
  w->backoff_min_ms = backoff_min_ms ? backoff_min_ms : 1;
  w->backoff_max_ms = backoff_max_ms < w->backoff_min_ms ? w->backoff_min_ms : backoff_max_ms;
  w->clock = clock;
  if (host_store_open(db_path, &w->db, r) != HOST_OK) {
    free(w->db_path);
    free(w);
    return r->status;
  }
  pthread_mutex_init(&w->mu, NULL);
  cond_init_monotonic(&w->kick);
  cond_init_monotonic(&w->done_cv);
  /* Work queued by an earlier run (or the CLI) is delivered at start. */
  w->requested = 1;
  if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
    host_db_close(w->db);
    free(w->db_path);
    free(w);
    return host_fail(r, HOST_FAILED, "cannot start the delivery worker thread");
  }
  *out = w;
  return HOST_OK;
}

void serve_worker_deliver(serve_worker *w, unsigned wait_ms, serve_delivery *d) {
  struct timespec ts = deadline_in(wait_ms);
  pthread_mutex_lock(&w->mu);
  unsigned long long mine = ++w->requested;
  pthread_cond_signal(&w->kick);
  while (w->done < mine && !w->stop)
    if (pthread_cond_timedwait(&w->done_cv, &w->mu, &ts) == ETIMEDOUT) break;
  d->landed = w->landed >= mine;
  d->queued = d->landed ? 0 : (w->done >= mine ? w->queued : -1);
  snprintf(d->error, sizeof d->error, "%s",
           d->landed ? "" : w->done >= mine ? w->error
                          : "delivery is still in progress (the secret manager is slow)");
  pthread_mutex_unlock(&w->mu);
}

void serve_worker_stop(serve_worker *w) {
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  w->stop = 1;
  pthread_cond_broadcast(&w->kick);
  pthread_cond_broadcast(&w->done_cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->thread, NULL);
  pthread_cond_destroy(&w->kick);
  pthread_cond_destroy(&w->done_cv);
  pthread_mutex_destroy(&w->mu);
  host_db_close(w->db);
  free(w->db_path);
  free(w);
}
