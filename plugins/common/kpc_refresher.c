/*
 * kpc_refresher.c -- the background refresher thread (see kpc_refresher.h):
 * wake at the next refresh point, renew the credentials when due, re-read
 * due secrets through the cache's single-flight fetch, back off while the
 * backend is unavailable, log once per outage; stop at once on destroy.
 * Shared by the hashicorp_vault and aws_secret_manager plugins.
 */
#include "kpc_refresher.h"

#include "kms_plugin_util.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


#define MIN_SLEEP_MS 10      /* never spin */
#define MAX_SCAN_MS 60000    /* look for new entries at least this often */
#define MAX_BACKOFF_MS 60000 /* ceiling of the backoff while the backend is unavailable */

struct kpc_refresher {
  kpc_refresher_deps d;
  pthread_t thread;
  pthread_mutex_t mu; /* guards stop (also read atomically) around the sleep */
  pthread_cond_t cv;  /* CLOCK_MONOTONIC; signalled by stop and settle */
  pthread_cond_t idle; /* signalled each time the thread goes to sleep (settle) */
  int stop;
  /* Clock time at which the thread last went to sleep with nothing due
   * (INT64_MIN while a round runs); guarded by mu. For kpc_refresher_settle. */
  int64_t checked_at;

  /* Used by the thread only. */
  kpc_rng rng;
  int64_t scan_ms, slack_ms, retry_ms, backoff0_ms;
  int64_t backoff_ms, backoff_until; /* backend unavailable: no round before backoff_until */
  int64_t auth_gap_ms, auth_not_before;
  int failing; /* an outage was logged; log the recovery once */
};

static int64_t now_ms(const kpc_refresher *r) { return kpc_clock_now(r->d.clock); }

static int64_t clamp(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

static int64_t jitter(kpc_refresher *r, int64_t d) { return kpc_rng_jitter(&r->rng, d); }

static int stopping(kpc_refresher *r) { return __atomic_load_n(&r->stop, __ATOMIC_ACQUIRE); }

/* Renew or replace the credentials when they are due (at most every
 * auth_gap_ms while renewals fail). Returns when to look again (0: nothing
 * scheduled, or no renew_due hook). */
static int64_t credentials(kpc_refresher *r, int64_t now) {
  if (!r->d.renew_due || !r->d.renew) return 0;
  int64_t due = r->d.renew_due(r->d.renew_ctx);
  if (due && due <= now && now >= r->auth_not_before) {
    /* renews (or logs in again) as a request would; failures keep the
     * current credentials and are logged by their provider */
    r->d.renew(r->d.renew_ctx);
    now = now_ms(r);
    due = r->d.renew_due(r->d.renew_ctx);
    if (due && due <= now + 1000) /* still due: the renewal failed */
      r->auth_gap_ms = clamp(r->auth_gap_ms * 2, 1000, MAX_BACKOFF_MS);
    else
      r->auth_gap_ms = 1000;
    r->auth_not_before = now + r->auth_gap_ms;
  }
  if (!due) return 0;
  return due > r->auth_not_before ? due : r->auth_not_before;
}

/* Re-read the due secrets. Returns when to look again (0: nothing known). */
static int64_t secrets(kpc_refresher *r, int64_t now) {
  if (now < r->backoff_until) return r->backoff_until;
  char **keys = NULL;
  int64_t next = 0;
  size_t n = kpc_cache_due(r->d.cache, r->slack_ms, &keys, &next);
  size_t tried = 0, failed = 0;
  int unavailable = 0;
  kms_error first;
  kms_error_clear(&first);
  for (size_t i = 0; i < n && !stopping(r); i++) {
    kms_error e;
    kms_error_clear(&e);
    int fetched = 0;
    kms_status st = kpc_cache_refresh_key(r->d.cache, keys[i], r->d.fetch, r->d.fetch_ctx,
                                            jitter(r, r->retry_ms), &fetched, &e);
    if (!fetched) continue;
    tried++;
    if (st == KMS_OK || st == KMS_NOT_FOUND || st == KMS_PERMISSION_DENIED)
      continue; /* refreshed, or evicted as a read would */
    if (!failed++) first = e;
    if (st == KMS_UNAVAILABLE) {
      unavailable = 1; /* the others would fail the same way: back off */
      break;
    }
  }
  kpc_cache_keys_free(keys, n);
  if (stopping(r)) return 0;
  now = now_ms(r);
  if (unavailable) {
    r->backoff_until = now + jitter(r, r->backoff_ms);
    r->backoff_ms = clamp(r->backoff_ms * 2, r->backoff0_ms, MAX_BACKOFF_MS);
    next = r->backoff_until;
  } else {
    r->backoff_ms = r->backoff0_ms;
    if (failed && (!next || now + r->retry_ms < next)) next = now + r->retry_ms;
  }
  /* Log outside every lock; once per outage, never a value or a token. */
  if (failed && !r->failing) {
    r->failing = 1;
    kpc_logf(r->d.lg, KMS_LOG_WARN,
               "background refresh: %zu of %zu secrets could not be re-read; the cached values "
               "are kept (served until they expire, then stale_if_error applies); first: %.200s",
               failed, tried, first.message);
  } else if (!failed && tried && r->failing) {
    r->failing = 0;
    kpc_logf(r->d.lg, KMS_LOG_INFO, "background refresh: secrets are re-read again");
  }
  OPENSSL_cleanse(&first, sizeof first);
  return next;
}

static void *run(void *arg) {
  kpc_refresher *r = arg;
  int64_t wake = 0; /* first round at once: nothing is due, it just plans */
  for (;;) {
    pthread_mutex_lock(&r->mu);
    int64_t left;
    int64_t t;
    while (!r->stop && (left = wake - (t = now_ms(r))) > 0) {
      /* real time: the condition variable cannot follow an injected clock;
       * a test that advances its clock wakes us (kpc_refresher_settle) */
      r->checked_at = t;
      pthread_cond_broadcast(&r->idle);
      struct timespec ts;
      kpc_timespec_in(left, &ts);
      int rc = pthread_cond_timedwait(&r->cv, &r->mu, &ts);
      if (rc != 0 && rc != ETIMEDOUT && rc != EINTR) break;
    }
    r->checked_at = INT64_MIN; /* a round runs */
    int stop = r->stop;
    pthread_mutex_unlock(&r->mu);
    if (stop) break;

    int64_t now = now_ms(r);
    int64_t next = now + r->scan_ms;
    int64_t a = credentials(r, now);
    if (a && a < next) next = a;
    if (stopping(r)) break;
    int64_t s = secrets(r, now_ms(r));
    if (s && s < next) next = s;
    now = now_ms(r);
    wake = next > now + MIN_SLEEP_MS ? next : now + MIN_SLEEP_MS;
  }
  return NULL;
}

kms_status kpc_refresher_start(const kpc_refresher_deps *deps, kpc_refresher **out,
                                 kms_error *err) {
  *out = NULL;
  kpc_refresher *r = calloc(1, sizeof *r);
  if (!r) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  r->d = *deps;
  int64_t ttl = deps->ttl_ms > 0 ? deps->ttl_ms : 1000;
  r->scan_ms = clamp(ttl / 10, 50, MAX_SCAN_MS);
  r->slack_ms = ttl / 50; /* batch the points of the next 2% of the TTL */
  r->retry_ms = clamp(ttl / 10, 250, MAX_BACKOFF_MS);
  r->backoff0_ms = r->backoff_ms = clamp(ttl / 10, 250, 5000);
  r->auth_gap_ms = 1000;
  kpc_rng_seed(&r->rng, 0, r);
  r->checked_at = INT64_MIN;
  pthread_mutex_init(&r->mu, NULL);
  kpc_cond_init(&r->cv);
  kpc_cond_init(&r->idle);

  int rc = kpc_thread_start(&r->thread, run, r,
                            deps->thread_name ? deps->thread_name : "kpc-refresh");
  if (rc != 0) {
    pthread_cond_destroy(&r->idle);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
    return kms_error_set(err, KMS_INTERNAL, 0,
                         "cannot start the background refresher thread: %s (set "
                         "background_refresh to false)", strerror(rc));
  }
  *out = r;
  return KMS_OK;
}

void kpc_refresher_stop(kpc_refresher *r) {
  if (!r) return;
  pthread_mutex_lock(&r->mu);
  __atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  if (r->d.cancel) r->d.cancel(r->d.cancel_ctx); /* abort a request in flight */
  pthread_join(r->thread, NULL);
  pthread_cond_destroy(&r->idle);
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->mu);
  free(r);
}

int kpc_refresher_settle(kpc_refresher *r, int64_t timeout_ms) {
  int64_t at = now_ms(r);
  struct timespec ts;
  kpc_timespec_in(timeout_ms, &ts);
  int rc = 0;
  pthread_mutex_lock(&r->mu);
  pthread_cond_broadcast(&r->cv); /* look at the (advanced) clock again */
  while (!r->stop && r->checked_at < at && rc != ETIMEDOUT)
    rc = pthread_cond_timedwait(&r->idle, &r->mu, &ts);
  int ok = !r->stop && r->checked_at >= at;
  pthread_mutex_unlock(&r->mu);
  return ok ? 0 : -1;
}
