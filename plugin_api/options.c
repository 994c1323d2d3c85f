/*
 * options.c -- the ABI 1.1 helpers of kms_plugin_util.h: checking per-call
 * options (one implementation for the loader and every plugin, so "unknown
 * key is INVALID_ARGUMENT naming it" means the same everywhere), the
 * allocation-free copy behind read_secret_into, and the health counters.
 * Built into libkmsplugutil.a (hidden, for plugins) and libkmsloader.
 */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif
#include "kms_plugin_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OPT_HAS(o, field) KMS_FIELD_PRESENT(o, kms_call_options, field)

int kms_call_options_default(const kms_call_options *o) {
  if (!o) return 1;
  return !((OPT_HAS(o, flags) && o->flags) || (OPT_HAS(o, n_location) && o->n_location) ||
           (OPT_HAS(o, version) && o->version) ||
           (OPT_HAS(o, delete_mode) && o->delete_mode) ||
           (OPT_HAS(o, recovery_window_days) && o->recovery_window_days));
}

static const char *kind_name(kms_call_kind kind) {
  switch (kind) {
  case KMS_CALL_KIND_READ: return "read";
  case KMS_CALL_KIND_WRITE: return "write";
  case KMS_CALL_KIND_DELETE: return "delete";
  case KMS_CALL_KIND_LIST: return "list";
  }
  return "this call";
}

/* Fields other than location that `kind` does not take must be zero. */
static kms_status check_fields(const kms_call_options *o, kms_call_kind kind, const char *who,
                               kms_error *err) {
  const char *k = kind_name(kind);
  uint32_t flags = OPT_HAS(o, flags) ? o->flags : 0;
  const uint32_t known = KMS_CALL_NONBLOCKING | KMS_CALL_BYPASS_CACHE;
  if (flags & ~known)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s: unknown option flag bits 0x%x (this ABI knows 0x%x)", who,
                         (unsigned)(flags & ~known), (unsigned)known);
  if (flags && kind != KMS_CALL_KIND_READ)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s: option flags (nonblocking, bypass_cache) apply to reads, not to "
                         "%s", who, k);
  if ((flags & known) == known)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s: options nonblocking and bypass_cache contradict each other: "
                         "choose one", who);
  if (OPT_HAS(o, version) && o->version && kind != KMS_CALL_KIND_READ)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s: option 'version' pins reads only, not %s", who, k);
  if (OPT_HAS(o, version) && o->version < 0)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s: option 'version' must be positive (0 = the current version)", who);
  uint32_t mode = OPT_HAS(o, delete_mode) ? o->delete_mode : 0;
  uint32_t window = OPT_HAS(o, recovery_window_days) ? o->recovery_window_days : 0;
  if ((mode || window) && kind != KMS_CALL_KIND_DELETE)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s: option '%s' applies to deletes, not to %s", who,
                         mode ? "delete_mode" : "recovery_window_days", k);
  if (mode > KMS_DELETE_PERMANENT)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s: unknown delete_mode %u (0 default, 1 soft, 2 permanent)", who,
                         (unsigned)mode);
  if (window && mode == KMS_DELETE_PERMANENT)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s: option 'recovery_window_days' needs a soft delete, not a "
                         "permanent one", who);
  return KMS_OK;
}

kms_status kms_options_check(const kms_call_options *o, kms_call_kind kind,
                             const char *const *known_keys, const char *who, kms_error *err) {
  if (!o) return KMS_OK;
  if (o->struct_size < offsetof(kms_call_options, flags) + sizeof o->flags)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s: call options have struct_size %zu: set it to "
                         "sizeof(kms_call_options)", who, o->struct_size);
  kms_status st = check_fields(o, kind, who, err);
  if (st != KMS_OK) return st;
  size_t n = OPT_HAS(o, n_location) ? o->n_location : 0;
  if (n && !o->location)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s: option location is NULL but n_location is %zu", who, n);
  for (size_t i = 0; i < n; i++) {
    const kms_setting *l = &o->location[i];
    if (!l->key || !l->value)
      return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                           "%s: location entry %zu has a NULL key or value", who, i);
    for (size_t j = 0; j < i; j++)
      if (strcmp(o->location[j].key, l->key) == 0)
        return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                             "%s: location key '%.64s' given twice", who, l->key);
    if (!known_keys) continue;
    int found = 0;
    for (const char *const *k = known_keys; *k && !found; k++) found = strcmp(*k, l->key) == 0;
    if (!found)
      return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                           "%s: unknown location key '%.64s' (%s)", who, l->key,
                           known_keys[0] ? "see the plugin's README for its keys"
                                         : "this plugin takes no location keys");
  }
  return KMS_OK;
}

const char *kms_options_get(const kms_call_options *o, const char *key) {
  if (!o || !key || !OPT_HAS(o, n_location) || !o->location) return NULL;
  for (size_t i = 0; i < o->n_location; i++)
    if (o->location[i].key && strcmp(o->location[i].key, key) == 0) return o->location[i].value;
  return NULL;
}

#define INFO_HAS(i, field) KMS_FIELD_PRESENT(i, kms_secret_info, field)

kms_status kms_secret_copy_into(const char *value, size_t length, int64_t version, uint32_t flags,
                                char *buf, size_t size, kms_secret_info *info, const char *who,
                                kms_error *err) {
  if (info && INFO_HAS(info, length)) info->length = length;
  if (length >= size || !buf)
    return kms_error_set(err, KMS_BUFFER_TOO_SMALL, 0,
                         "%s: the value has %zu bytes; the buffer holds %zu (give at least "
                         "%zu: the value and a NUL)", who, length, size, length + 1);
  if (length) memcpy(buf, value, length);
  buf[length] = '\0';
  if (info && INFO_HAS(info, version)) info->version = version;
  if (info && INFO_HAS(info, flags)) info->flags = flags;
  return KMS_OK;
}

/* ---------------------------------------------------------------------- */
/* Health counters.                                                        */

/* Counters are striped: each thread adds to its own cache line, so a hit
 * counted on every cached read does not make two readers' cores fight over
 * one line (the reads themselves scale; the counting must not undo that).
 * health sums the stripes. */
#define STATS_STRIPES 8
#define CACHE_LINE 64

struct stats_stripe {
  _Alignas(CACHE_LINE) _Atomic uint64_t counters[KMS_STAT_COUNT];
};

struct kms_stats {
  struct stats_stripe stripes[STATS_STRIPES];
  _Atomic uint64_t errors[KMS_HEALTH_STATUS_SLOTS]; /* failures only: rare */
  pthread_mutex_t lock; /* guards the last error only */
  kms_status last_status;
  int64_t last_time;
  char last_message[KMS_ERROR_MESSAGE_SIZE];
};

/* This thread's stripe: threads take stripes round-robin on first use. */
static unsigned stripe_index(void) {
  static _Atomic unsigned next;
  static _Thread_local unsigned mine; /* 0: not assigned yet */
  if (!mine) mine = atomic_fetch_add_explicit(&next, 1, memory_order_relaxed) % STATS_STRIPES + 1;
  return mine - 1;
}

kms_stats *kms_stats_new(void) {
  size_t size = (sizeof(kms_stats) + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
  kms_stats *s = aligned_alloc(CACHE_LINE, size);
  if (!s) return NULL;
  memset(s, 0, size);
  for (int k = 0; k < STATS_STRIPES; k++)
    for (int i = 0; i < KMS_STAT_COUNT; i++) atomic_init(&s->stripes[k].counters[i], 0);
  for (int i = 0; i < KMS_HEALTH_STATUS_SLOTS; i++) atomic_init(&s->errors[i], 0);
  if (pthread_mutex_init(&s->lock, NULL) != 0) {
    free(s);
    return NULL;
  }
  return s;
}

void kms_stats_free(kms_stats *s) {
  if (!s) return;
  pthread_mutex_destroy(&s->lock);
  free(s);
}

void kms_stats_add(kms_stats *s, kms_stat which, uint64_t n) {
  if (s && (int)which >= 0 && which < KMS_STAT_COUNT)
    atomic_fetch_add_explicit(&s->stripes[stripe_index()].counters[which], n,
                              memory_order_relaxed);
}

kms_status kms_stats_result(kms_stats *s, kms_status st, const kms_error *err) {
  if (!s || st == KMS_OK) return st;
  unsigned slot = (unsigned)st < KMS_HEALTH_STATUS_SLOTS ? (unsigned)st : KMS_INTERNAL;
  atomic_fetch_add_explicit(&s->errors[slot], 1, memory_order_relaxed);
  pthread_mutex_lock(&s->lock);
  s->last_status = st;
  s->last_time = (int64_t)time(NULL);
  if (err && err->message[0]) {
    memcpy(s->last_message, err->message, sizeof s->last_message);
    s->last_message[sizeof s->last_message - 1] = '\0';
  } else {
    strcpy(s->last_message, kms_status_str(st)); /* the plugin gave no text */
  }
  pthread_mutex_unlock(&s->lock);
  return st;
}

#define HEALTH_HAS(h, field) KMS_FIELD_PRESENT(h, kms_health, field)

static uint64_t stat_sum(kms_stats *s, kms_stat which) {
  uint64_t sum = 0;
  for (int k = 0; k < STATS_STRIPES; k++)
    sum += atomic_load_explicit(&s->stripes[k].counters[which], memory_order_relaxed);
  return sum;
}

void kms_stats_fill(kms_stats *s, kms_health *h) {
  if (!s || !h) return;
#define LOAD(i) stat_sum(s, i)
  if (HEALTH_HAS(h, hits)) h->hits = LOAD(KMS_STAT_HITS);
  if (HEALTH_HAS(h, misses)) h->misses = LOAD(KMS_STAT_MISSES);
  if (HEALTH_HAS(h, negative_hits)) h->negative_hits = LOAD(KMS_STAT_NEGATIVE_HITS);
  if (HEALTH_HAS(h, stale_serves)) h->stale_serves = LOAD(KMS_STAT_STALE_SERVES);
  if (HEALTH_HAS(h, fetches)) h->fetches = LOAD(KMS_STAT_FETCHES);
  if (HEALTH_HAS(h, logins)) h->logins = LOAD(KMS_STAT_LOGINS);
  if (HEALTH_HAS(h, renewals)) h->renewals = LOAD(KMS_STAT_RENEWALS);
#undef LOAD
  if (HEALTH_HAS(h, errors_by_status))
    for (int i = 0; i < KMS_HEALTH_STATUS_SLOTS; i++)
      h->errors_by_status[i] = atomic_load_explicit(&s->errors[i], memory_order_relaxed);
  pthread_mutex_lock(&s->lock);
  if (HEALTH_HAS(h, last_error_status)) h->last_error_status = s->last_status;
  if (HEALTH_HAS(h, last_error_time)) h->last_error_time = s->last_time;
  if (HEALTH_HAS(h, last_error)) memcpy(h->last_error, s->last_message, sizeof h->last_error);
  pthread_mutex_unlock(&s->lock);
}
