/*
 * outbox.c -- the durable queue of secret-manager operations.
 *
 * A key change and the store operation it implies are committed in ONE
 * SQLite transaction (host_outbox_enqueue runs inside the caller's), then
 * delivered by host_outbox_replay: oldest first, each row deleted only after
 * the plugin said the operation landed, stopping at the first failure so
 * order is kept. Both operations are idempotent at the store (rewriting the
 * same value; deleting a missing secret is KMS_OK), so a crash after the
 * call but before the row is removed only repeats work -- never loses it.
 * Callers hold host_db_lock() so two processes never deliver concurrently.
 */
#include "host.h"

#include <openssl/crypto.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void host_crash_point(void) {
  /* TEST HOOK (documented in README.md): simulate a crash right after the
   * key change and its outbox row were committed, before any delivery. */
  const char *v = getenv("KMS_HOST_CRASH_AFTER_COMMIT");
  if (v && !strcmp(v, "1")) {
    fflush(stdout);
    fflush(stderr);
    _exit(99);
  }
}

static int db_fail(sqlite3 *db, const char *what, char *err, size_t errsz) {
  snprintf(err, errsz, "database: %s: %s", what, sqlite3_errmsg(db));
  return -1;
}

int host_outbox_enqueue(sqlite3 *db, host_outbox_op op, const char *name, const char *value,
                        size_t len, char *err, size_t errsz) {
  sqlite3_stmt *st = NULL;
  /* Earlier queued writes of this name are superseded. */
  if (sqlite3_prepare_v2(db, "DELETE FROM outbox WHERE secret_name=?1 AND op='write'", -1, &st,
                         NULL) != SQLITE_OK)
    return db_fail(db, "outbox", err, errsz);
  sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return db_fail(db, "outbox", err, errsz);
  if (sqlite3_prepare_v2(db, "INSERT INTO outbox(op, secret_name, value) VALUES(?1, ?2, ?3)", -1,
                         &st, NULL) != SQLITE_OK)
    return db_fail(db, "outbox", err, errsz);
  sqlite3_bind_text(st, 1, op == HOST_OUTBOX_WRITE ? "write" : "delete", -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
  if (op == HOST_OUTBOX_WRITE)
    sqlite3_bind_blob(st, 3, value, (int)len, SQLITE_TRANSIENT);
  else
    sqlite3_bind_null(st, 3);
  rc = sqlite3_step(st);
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return db_fail(db, "outbox", err, errsz);
  return 0;
}

long host_outbox_pending(sqlite3 *db) {
  sqlite3_stmt *st = NULL;
  long n = -1;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM outbox", -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    n = (long)sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return n;
}

static void record_failure(sqlite3 *db, sqlite3_int64 seq, const char *msg) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, "UPDATE outbox SET attempts=attempts+1, last_error=?2 WHERE seq=?1",
                         -1, &st, NULL) != SQLITE_OK)
    return;
  sqlite3_bind_int64(st, 1, seq);
  sqlite3_bind_text(st, 2, msg, -1, SQLITE_TRANSIENT);
  (void)sqlite3_step(st);
  sqlite3_finalize(st);
}

long host_outbox_replay(sqlite3 *db, kms_client *client, char *err, size_t errsz) {
  err[0] = '\0';
  for (;;) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT seq, op, secret_name, value FROM outbox ORDER BY seq "
                           "LIMIT 1", -1, &st, NULL) != SQLITE_OK)
      return db_fail(db, "outbox", err, errsz);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
      sqlite3_finalize(st);
      return 0;
    }
    if (rc != SQLITE_ROW) {
      sqlite3_finalize(st);
      return db_fail(db, "outbox", err, errsz);
    }
    sqlite3_int64 seq = sqlite3_column_int64(st, 0);
    int is_write = !strcmp((const char *)sqlite3_column_text(st, 1), "write");
    char *name = strdup((const char *)sqlite3_column_text(st, 2));
    size_t len = (size_t)sqlite3_column_bytes(st, 3);
    char *value = malloc(len + 1);
    if (value && len) memcpy(value, sqlite3_column_blob(st, 3), len);
    if (value) value[len] = '\0';
    sqlite3_finalize(st);
    if (!name || !value) {
      free(name);
      if (value) OPENSSL_cleanse(value, len);
      free(value);
      snprintf(err, errsz, "out of memory");
      return -1;
    }
    kms_status ks;
    kms_error e;
    if (!client) {
      ks = kms_error_set(&e, KMS_UNAVAILABLE, 0,
                         "no secret-manager instance to deliver it to (general_settings."
                         "key_management_system is not set, or its plugin could not start)");
    } else if (is_write) {
      ks = kms_client_write(client, name, value, len, NULL, &e);
    } else {
      ks = kms_client_delete(client, name, &e);
    }
    OPENSSL_cleanse(value, len);
    free(value);
    if (ks != KMS_OK) {
      snprintf(err, errsz, "%s %s: %s (%s)", is_write ? "write" : "delete", name, e.message,
               kms_status_str(ks));
      record_failure(db, seq, err);
      free(name);
      long left = host_outbox_pending(db);
      return left < 0 ? -1 : left;
    }
    host_log(KMS_LOG_INFO, "outbox: %s %s landed", is_write ? "write" : "delete", name);
    free(name);
    if (sqlite3_prepare_v2(db, "DELETE FROM outbox WHERE seq=?1", -1, &st, NULL) != SQLITE_OK)
      return db_fail(db, "outbox", err, errsz);
    sqlite3_bind_int64(st, 1, seq);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return db_fail(db, "outbox", err, errsz);
  }
}
