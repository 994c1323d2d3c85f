/*
 * test_host_pg_claims.c -- the PostgreSQL outbox's claims, with two
 * connections to one database as two replicas would hold them.
 *
 * Run by tests/host/test_host_pg.py with KMS_TEST_PG_URL set to a fresh
 * database of the suite's server (a missing URL fails; it never skips).
 * Checks: a claimed operation is not handed to anyone else; a later
 * operation on the same name waits until the earlier one landed, while
 * other names go ahead; a claim of a closed connection is taken over at
 * once; a live claim whose lease ended is taken over (the lease is moved
 * into the past with SQL, so nothing sleeps); a claimed write is not
 * superseded by a newer operation of its name (it could still land).
 * And the connection pool's check (pool_check.c) on PostgreSQL.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "pool_check.h"
#include "store.h"

static const char *url(void) {
  const char *u = getenv("KMS_TEST_PG_URL");
  if (!u || !*u) fail_msg("KMS_TEST_PG_URL is not set (test_host_pg.py sets it)");
  return u;
}

static host_db *open_db(void) {
  host_db *db = NULL;
  host_result r = {HOST_OK, ""};
  if (host_store_open(url(), &db, &r) != HOST_OK) fail_msg("open: %s", r.msg);
  assert_string_equal(host_db_kind(db), "postgresql");
  return db;
}

static void sql(host_db *db, const char *s) {
  PGresult *res = PQexec(((host_pg_db *)db)->conn, s);
  if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
    fail_msg("%s: %s", s, PQresultErrorMessage(res));
  PQclear(res);
}

static void enqueue(host_db *db, host_outbox_op op, const char *name, const char *v) {
  host_result r = {HOST_OK, ""};
  assert_int_equal(host_store_enqueue(db, op, name, v, v ? strlen(v) : 0, &r), HOST_OK);
}

/* The next operation `db` may claim: its name and value ("-" for none). */
static void expect_next(host_db *db, const char *name, const char *value, long long *seq) {
  host_outbox_item it;
  int found = -1;
  host_result r = {HOST_OK, ""};
  assert_int_equal(host_store_next(db, &it, &found, &r), HOST_OK);
  if (!name) {
    assert_int_equal(found, 0);
    return;
  }
  assert_int_equal(found, 1);
  assert_string_equal(it.name, name);
  if (value) assert_string_equal(it.value, value);
  if (seq) *seq = it.seq;
  host_outbox_item_free(&it);
}

static void landed(host_db *db, long long seq) {
  host_result r = {HOST_OK, ""};
  assert_int_equal(host_store_landed(db, seq, &r), HOST_OK);
}

static void test_claims(void **state) {
  (void)state;
  host_db *a = open_db(), *b = open_db();
  sql(a, "DELETE FROM kms_host_outbox");
  enqueue(a, HOST_OUTBOX_WRITE, "n/x", "x1");
  enqueue(a, HOST_OUTBOX_WRITE, "n/y", "y1");
  long long sx, sy;
  expect_next(a, "n/x", "x1", &sx);          /* a claims x ... */
  enqueue(b, HOST_OUTBOX_DELETE, "n/x", NULL); /* ... which is not superseded */
  expect_next(b, "n/y", "y1", &sy);          /* b goes ahead with another name */
  landed(b, sy);
  expect_next(b, NULL, NULL, NULL);          /* the delete of x waits behind x1 */
  long pending = 0;
  host_result r = {HOST_OK, ""};
  assert_int_equal(host_store_pending(b, &pending, &r), HOST_OK);
  assert_int_equal(pending, 2);
  landed(a, sx);
  long long sd;
  expect_next(b, "n/x", NULL, &sd);          /* now the delete, in order */
  landed(b, sd);
  /* a claim of a connection that is gone is taken over at once */
  enqueue(a, HOST_OUTBOX_WRITE, "n/z", "z1");
  expect_next(a, "n/z", "z1", NULL);
  expect_next(b, NULL, NULL, NULL);
  host_db_close(a);
  /* (its server process ends a moment after the connection closes) */
  long long sz = 0;
  for (int i = 0; i < 200 && !sz; i++) {
    host_outbox_item it;
    int found = 0;
    assert_int_equal(host_store_next(b, &it, &found, &r), HOST_OK);
    if (found) {
      assert_string_equal(it.name, "n/z");
      sz = it.seq;
      host_outbox_item_free(&it);
    } else {
      host_clock_system()->sleep_ms(host_clock_system()->ctx, 25);
    }
  }
  assert_true(sz > 0);
  /* a live claim whose lease ended is taken over too */
  host_db *c = open_db();
  expect_next(c, NULL, NULL, NULL);          /* b's claim is live */
  sql(c, "UPDATE kms_host_outbox SET claimed_until = now() - interval '1 second'");
  expect_next(c, "n/z", "z1", NULL);
  host_store_failed(c, sz, "test failure");  /* gives the claim back */
  expect_next(b, "n/z", "z1", NULL);
  host_db_close(b);
  host_db_close(c);
}

/* The connection pool on PostgreSQL (pool_check.c). */
static void test_pool(void **state) {
  (void)state;
  host_db *db = open_db();
  sql(db, "DELETE FROM kms_host_outbox");
  host_db_close(db);
  pool_check(url());
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_claims), cmocka_unit_test(test_pool)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
