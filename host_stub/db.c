/*
 * db.c -- the host's SQLite database: virtual keys and the outbox.
 *
 * The file is created with mode 0600: while a write is queued, the outbox
 * holds the virtual key it must deliver (that is what makes a crash or an
 * outage lose nothing). secure_delete is on, so a delivered row's bytes are
 * overwritten rather than left in free pages.
 */
#include "host.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define HOST_SCHEMA_VERSION 1

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS virtual_keys("
    "  key_id TEXT PRIMARY KEY,"          /* random public id, 16 hex digits */
    "  token_hash TEXT NOT NULL UNIQUE,"  /* hex SHA-256 of the key */
    "  alias TEXT UNIQUE,"
    "  secret_name TEXT,"                 /* where the key is stored, or NULL */
    "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')),"
    "  updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')));"
    "CREATE TABLE IF NOT EXISTS outbox("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  op TEXT NOT NULL CHECK(op IN ('write','delete')),"
    "  secret_name TEXT NOT NULL,"
    "  value BLOB,"                       /* the value to write; NULL for delete */
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  last_error TEXT,"
    "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')));";

int host_db_exec(sqlite3 *db, const char *sql, char *err, size_t errsz) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    snprintf(err, errsz, "database: %s", msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return -1;
  }
  return 0;
}

int host_db_open(const char *path, sqlite3 **out, char *err, size_t errsz) {
  *out = NULL;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(err, errsz, "cannot open database %s: %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) == 0 && (st.st_mode & 077))
    host_log(KMS_LOG_WARN, "database %s is readable by group or others; it may hold queued "
             "virtual keys (chmod 600 %s)", path, path);
  close(fd);
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) !=
      SQLITE_OK) {
    snprintf(err, errsz, "cannot open database %s: %s", path,
             db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return -1;
  }
  sqlite3_busy_timeout(db, 10000);
  if (host_db_exec(db, "PRAGMA secure_delete=ON; PRAGMA synchronous=FULL;", err, errsz) != 0 ||
      host_db_exec(db, schema_sql, err, errsz) != 0 ||
      host_db_exec(db, "PRAGMA user_version=1;", err, errsz) != 0) {
    sqlite3_close(db);
    return -1;
  }
  (void)HOST_SCHEMA_VERSION;
  *out = db;
  return 0;
}

void host_db_close(sqlite3 *db) { sqlite3_close(db); }

int host_db_lock(const char *path, char *err, size_t errsz) {
  size_t n = strlen(path) + 6;
  char *lp = malloc(n);
  if (!lp) {
    snprintf(err, errsz, "out of memory");
    return -1;
  }
  snprintf(lp, n, "%s.lock", path);
  int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(err, errsz, "cannot open lock file %s: %s", lp, strerror(errno));
    free(lp);
    return -1;
  }
  if (flock(fd, LOCK_EX) != 0) {
    snprintf(err, errsz, "cannot lock %s: %s", lp, strerror(errno));
    close(fd);
    free(lp);
    return -1;
  }
  free(lp);
  return fd;
}
