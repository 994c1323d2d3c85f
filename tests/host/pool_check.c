/*
 * pool_check.c -- see pool_check.h. 6 threads x 10 operations through a
 * pool of 3 connections.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>

#include "host.h"
#include "pool_check.h"

#define THREADS 6
#define OPS 10

typedef struct worker {
  host_db_pool *pool;
  int id;
  int failures;
} worker;

static void *work(void *arg) {
  worker *w = arg;
  for (int i = 0; i < OPS; i++) {
    host_db *db = NULL;
    host_result r = {HOST_OK, ""};
    char name[64];
    snprintf(name, sizeof name, "pool/%d/%d", w->id, i);
    if (host_db_pool_take(w->pool, &db, &r) != HOST_OK) {
      w->failures++;
      continue;
    }
    if (host_store_enqueue(db, HOST_OUTBOX_WRITE, name, "v", 1, &r) != HOST_OK) w->failures++;
    host_db_pool_give(w->pool, db);
  }
  return NULL;
}

void pool_check(const char *target) {
  host_db_pool *pool = NULL;
  host_result r = {HOST_OK, ""};
  assert_int_equal(host_db_pool_open(target, 3, &pool, &r), HOST_OK);
  pthread_t t[THREADS];
  worker w[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i] = (worker){pool, i, 0};
    assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(w[i].failures, 0);
  }
  host_db *db = NULL;
  long n = -1;
  assert_int_equal(host_db_pool_take(pool, &db, &r), HOST_OK);
  assert_int_equal(host_store_pending(db, &n, &r), HOST_OK);
  assert_int_equal(n, THREADS * OPS);
  host_db_pool_give(pool, db);
  host_db_pool_close(pool);
  /* a pool of nothing is refused, a bad target reported at open */
  assert_int_equal(host_db_pool_open(target, 0, &pool, &r), HOST_FAILED);
}
