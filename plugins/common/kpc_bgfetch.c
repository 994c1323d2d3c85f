/*
 * kpc_bgfetch.c -- the queue and thread of never-blocking reads' background
 * fetches (see kpc_bgfetch.h). Moved here from the hashicorp_vault plugin so
 * that aws_secret_manager uses the same code.
 */
#include "kpc_bgfetch.h"

#include "kms_plugin_util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct bg_item {
  struct bg_item *next;
  char *key;
} bg_item;

struct kpc_bgfetch {
  kpc_bgfetch_deps d;
  pthread_mutex_t mu; /* guards head, stop, started */
  pthread_cond_t cv;
  bg_item *head;
  int stop, started;
  pthread_t thread;
};

/* One queued key: fetch through the cache, tell `landed`, log a failure. */
static void fetch_one(kpc_bgfetch *b, const char *key) {
  kpc_cache_value v = {0};
  unsigned flags = 0;
  kms_error e;
  kms_error_clear(&e);
  kms_status st = kpc_cache_get(b->d.cache, key, 0, b->d.fetch, b->d.fetch_ctx, &v, &flags, &e);
  if (st == KMS_OK && !(flags & KPC_CACHE_HIT) && b->d.landed)
    b->d.landed(b->d.landed_ctx, key, v.version);
  kpc_cache_value_clear(&v);
  if (st != KMS_OK && st != KMS_NOT_FOUND)
    kpc_logf(b->d.lg, KMS_LOG_WARN, "background fetch of a nonblocking read failed: %s",
             e.message);
}

static void *bg_main(void *arg) {
  kpc_bgfetch *b = arg;
  pthread_mutex_lock(&b->mu);
  for (;;) {
    while (!b->head && !b->stop) pthread_cond_wait(&b->cv, &b->mu);
    if (b->stop) break;
    bg_item *it = b->head; /* stays queued while fetched: a second miss adds nothing */
    pthread_mutex_unlock(&b->mu);
    fetch_one(b, it->key);
    pthread_mutex_lock(&b->mu);
    b->head = it->next;
    free(it->key);
    free(it);
  }
  pthread_mutex_unlock(&b->mu);
  return NULL;
}

kpc_bgfetch *kpc_bgfetch_new(const kpc_bgfetch_deps *deps) {
  kpc_bgfetch *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  b->d = *deps;
  pthread_mutex_init(&b->mu, NULL);
  pthread_cond_init(&b->cv, NULL);
  return b;
}

void kpc_bgfetch_enqueue(kpc_bgfetch *b, const char *key) {
  pthread_mutex_lock(&b->mu);
  if (!b->started && !b->stop)
    b->started = kpc_thread_start(&b->thread, bg_main, b, "kpc-nb-fetch") == 0;
  if (b->started) {
    bg_item **pp = &b->head;
    while (*pp && strcmp((*pp)->key, key) != 0) pp = &(*pp)->next;
    if (!*pp && (*pp = calloc(1, sizeof **pp)) != NULL && !((*pp)->key = strdup(key))) {
      free(*pp);
      *pp = NULL;
    }
    pthread_cond_signal(&b->cv);
  }
  pthread_mutex_unlock(&b->mu);
}

void kpc_bgfetch_free(kpc_bgfetch *b) {
  if (!b) return;
  pthread_mutex_lock(&b->mu);
  b->stop = 1;
  int started = b->started;
  pthread_cond_signal(&b->cv);
  pthread_mutex_unlock(&b->mu);
  if (started) {
    if (b->d.cancel) b->d.cancel(b->d.cancel_ctx); /* a fetch in flight ends within ~1 s */
    pthread_join(b->thread, NULL);
  }
  while (b->head) {
    bg_item *n = b->head->next;
    free(b->head->key);
    free(b->head);
    b->head = n;
  }
  pthread_mutex_destroy(&b->mu);
  pthread_cond_destroy(&b->cv);
  free(b);
}

kms_status kpc_read_cached(kpc_cache *c, kpc_bgfetch *bg, const char *key, uint32_t flags,
                           kpc_cache_fetch_fn fetch, void *fetch_ctx, kpc_cache_into_fn into,
                           void *into_ctx, unsigned *cflags, kms_error *why) {
  kms_status st;
  if (flags & KMS_CALL_NONBLOCKING) {
    st = kpc_cache_peek(c, key, NULL, into, into_ctx, cflags, why);
    if ((*cflags & KPC_CACHE_MISS) && bg) kpc_bgfetch_enqueue(bg, key);
    if (st == KMS_UNAVAILABLE)
      kms_error_set(why, KMS_UNAVAILABLE, 0,
                    "nonblocking read: not cached yet; a background fetch has started, retry "
                    "shortly (notify says when it lands)");
  } else if (flags & KMS_CALL_BYPASS_CACHE) {
    kpc_cache_value v = {0};
    st = kpc_cache_get(c, key, 1, fetch, fetch_ctx, &v, cflags, why);
    if (st == KMS_OK) st = into(into_ctx, &v, *cflags);
    kpc_cache_value_clear(&v);
  } else {
    st = kpc_cache_get_into(c, key, fetch, fetch_ctx, into, into_ctx, cflags, why);
  }
  return st;
}
