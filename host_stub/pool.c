/*
 * pool.c -- a small pool of store connections for a multi-threaded host
 * (kms-host serve): each connection is used by one thread at a time, so a
 * thread takes one, runs its transactions, and gives it back.
 *
 * The first connection is opened by host_db_pool_open (so a bad URL, an
 * unreachable server or a newer schema is reported at start); the others
 * when a thread needs one and all open ones are busy, up to `size`. A thread
 * that finds the pool exhausted waits for a connection to come back.
 * Thread safety: take/give from any thread; open/close from one.
 */
#include "store.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct host_db_pool {
  pthread_mutex_t mu;
  pthread_cond_t back;  /* a connection was given back */
  char *target;         /* path or URL (wiped on close: it may hold a password) */
  host_db **idle;       /* open and free */
  size_t n_idle;
  size_t n_open;        /* idle + taken */
  size_t size;
};

host_status host_db_pool_open(const char *target, unsigned size, host_db_pool **out,
                              host_result *r) {
  *out = NULL;
  if (size == 0) return host_fail(r, HOST_FAILED, "a connection pool needs at least 1 connection");
  host_db_pool *p = calloc(1, sizeof *p);
  if (!p || !(p->target = strdup(target)) || !(p->idle = calloc(size, sizeof *p->idle))) {
    if (p) free(p->target);
    free(p);
    return host_fail(r, HOST_FAILED, "out of memory");
  }
  p->size = size;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->back, NULL);
  if (host_store_open(target, &p->idle[0], r) != HOST_OK) {
    host_db_pool_close(p);
    return r->status;
  }
  p->n_idle = p->n_open = 1;
  *out = p;
  return HOST_OK;
}

host_status host_db_pool_take(host_db_pool *p, host_db **db, host_result *r) {
  *db = NULL;
  pthread_mutex_lock(&p->mu);
  while (p->n_idle == 0 && p->n_open == p->size) pthread_cond_wait(&p->back, &p->mu);
  if (p->n_idle > 0) {
    *db = p->idle[--p->n_idle];
    pthread_mutex_unlock(&p->mu);
    return HOST_OK;
  }
  p->n_open++; /* reserve the slot, connect outside the lock */
  pthread_mutex_unlock(&p->mu);
  if (host_store_open(p->target, db, r) == HOST_OK) return HOST_OK;
  pthread_mutex_lock(&p->mu);
  p->n_open--;
  pthread_cond_signal(&p->back);
  pthread_mutex_unlock(&p->mu);
  return r->status;
}

void host_db_pool_give(host_db_pool *p, host_db *db) {
  if (!db) return;
  pthread_mutex_lock(&p->mu);
  p->idle[p->n_idle++] = db;
  pthread_cond_signal(&p->back);
  pthread_mutex_unlock(&p->mu);
}

void host_db_pool_close(host_db_pool *p) {
  if (!p) return;
  for (size_t i = 0; i < p->n_idle; i++) host_db_close(p->idle[i]);
  OPENSSL_cleanse(p->target, strlen(p->target));
  free(p->target);
  free(p->idle);
  pthread_cond_destroy(&p->back);
  pthread_mutex_destroy(&p->mu);
  free(p);
}
