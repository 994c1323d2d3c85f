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
 * reconcile's orphan delete waits for a key change in flight on another
 * connection and then sees the key (no delete queued). And the connection
 * pool's check (pool_check.c) on PostgreSQL.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <pthread.h>
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

typedef struct orphan_call {
  host_db *db;
  int owned;
  host_status st;
  int done; /* set (atomically) when the call returned */
} orphan_call;

static void *orphan_delete(void *p) {
  orphan_call *c = p;
  host_result r = {HOST_OK, ""};
  c->st = host_store_enqueue_orphan_delete(c->db, "litellm/race", "", &c->owned, &r);
  __atomic_store_n(&c->done, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

/* A key for the orphan's name is inserted on connection b and not committed
 * yet (a /key/generate of another replica, mid-transaction) when reconcile
 * on connection a enqueues the orphan's delete: a waits for b's COMMIT,
 * then sees the key and queues nothing. Without the wait a's check could
 * not see the uncommitted key and would queue a delete after its write. */
static void test_orphan_delete_waits_for_a_key_in_flight(void **state) {
  (void)state;
  host_db *a = open_db(), *b = open_db();
  sql(a, "DELETE FROM kms_host_outbox");
  sql(a, "DELETE FROM kms_host_virtual_keys");
  sql(b, "BEGIN");
  sql(b, "INSERT INTO kms_host_virtual_keys(key_id, token_hash, alias, secret_name, location) "
         "VALUES ('00000000000000aa', 'h-race', 'race', 'litellm/race', '')");
  sql(b, "INSERT INTO kms_host_outbox(op, secret_name, value, location) "
         "VALUES ('write', 'litellm/race', 'sk-v', '')");
  orphan_call c = {a, -1, HOST_FAILED, 0};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, orphan_delete, &c), 0);
  host_clock_system()->sleep_ms(host_clock_system()->ctx, 500);
  assert_int_equal(__atomic_load_n(&c.done, __ATOMIC_SEQ_CST), 0); /* waiting for b */
  sql(b, "COMMIT");
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_int_equal(c.st, HOST_OK);
  assert_int_equal(c.owned, 1);
  PGresult *res = PQexec(((host_pg_db *)a)->conn, "SELECT op FROM kms_host_outbox ORDER BY seq");
  assert_int_equal(PQntuples(res), 1);
  assert_string_equal(PQgetvalue(res, 0, 0), "write"); /* the key's write stands alone */
  PQclear(res);
  /* nobody owns it at another location: queued there */
  host_result r = {HOST_OK, ""};
  int owned = -1;
  assert_int_equal(host_store_enqueue_orphan_delete(a, "litellm/race", "namespace=t", &owned, &r),
                   HOST_OK);
  assert_int_equal(owned, 0);
  res = PQexec(((host_pg_db *)a)->conn, "SELECT count(*) FROM kms_host_outbox WHERE op = "
               "'delete' AND location = 'namespace=t'");
  assert_string_equal(PQgetvalue(res, 0, 0), "1");
  PQclear(res);
  host_db_close(a);
  host_db_close(b);
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
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_claims),
                                     cmocka_unit_test(test_orphan_delete_waits_for_a_key_in_flight),
                                     cmocka_unit_test(test_pool)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
