/*
 * db.c -- the host's SQLite file: who may read it, what stays in it, and
 * which schema it has.
 *
 * While a write is queued the outbox holds the virtual key it must deliver
 * (that is what makes a crash or an outage lose nothing), so:
 *  - the file, any journal beside it and the directory must be private:
 *    files owned by this user with no group/other permission, the directory
 *    owned by this user or root and not writable by group or others (a
 *    writable directory lets another user replace the file or plant its
 *    journal). Anything else is refused (HOST_CONFIG) with the fix;
 *  - secure_delete overwrites a delivered row in the file, temp_store keeps
 *    temporary tables in memory, and the rollback journal -- which holds
 *    the pages a transaction changes, the key among them -- is overwritten
 *    with zeros before SQLite deletes it (a VFS that wraps the default one's
 *    xDelete), so its freed blocks do not keep the key either.
 * The schema has a version (PRAGMA user_version) and an ordered list of
 * migration steps; a binary refuses a database newer than it knows.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The schema's history: append a step for every change, never edit one. */
static const host_migration schema_history[] = {
  {1, "CREATE TABLE IF NOT EXISTS virtual_keys("
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
      "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')));"},
  /* 2: teams and locations (teams.c). A location is a text of the plugin's
   * location options ("namespace=a;mount=kv"); existing keys and queued
   * operations get '' -- the instance's own location, where they are. */
  {2, "CREATE TABLE teams("
      "  team_id TEXT PRIMARY KEY,"
      "  team_alias TEXT,"
      "  location TEXT NOT NULL DEFAULT '',"  /* its secret_manager_settings */
      "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')),"
      "  updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')));"
      "ALTER TABLE virtual_keys ADD COLUMN team_id TEXT;"
      "ALTER TABLE virtual_keys ADD COLUMN location TEXT NOT NULL DEFAULT '';"
      "ALTER TABLE outbox ADD COLUMN location TEXT NOT NULL DEFAULT '';"},
};
_Static_assert(sizeof schema_history / sizeof *schema_history == HOST_SCHEMA_VERSION,
               "HOST_SCHEMA_VERSION is the number of migration steps");

/* ---------------------------------------------------------- privacy checks */

host_status host_file_private(const char *what, const char *path, const struct stat *st,
                              host_result *r) {
  if (!S_ISREG(st->st_mode))
    return host_fail(r, HOST_CONFIG, "%s %s is not a regular file", what, path);
  if (st->st_uid != geteuid())
    return host_fail(r, HOST_CONFIG, "%s %s is owned by uid %u, not by this user (uid %u): "
                     "another user could read or change it; remove it or chown it to uid %u",
                     what, path, (unsigned)st->st_uid, (unsigned)geteuid(), (unsigned)geteuid());
  if (st->st_mode & 077)
    return host_fail(r, HOST_CONFIG, "%s %s is readable or writable by group or others "
                     "(mode %04o) and may hold queued virtual keys; run: chmod 600 %s",
                     what, path, (unsigned)(st->st_mode & 07777), path);
  return HOST_OK;
}

static host_status dir_private(const char *path, host_result *r) {
  /* The directory that really holds the file: --db may be a symlink. */
  char *dir = realpath(path, NULL);
  if (!dir && errno == ENOENT) dir = strdup(path); /* not created yet */
  if (!dir) return host_fail(r, HOST_CONFIG, "cannot use database %s: %s", path, strerror(errno));
  char *slash = strrchr(dir, '/');
  if (slash == dir) slash[1] = '\0';
  else if (slash) *slash = '\0';
  else strcpy(dir, ".");
  struct stat st;
  host_status s = HOST_OK;
  if (stat(dir, &st) != 0)
    s = host_fail(r, HOST_CONFIG, "cannot use the database directory %s: %s", dir,
                  strerror(errno));
  else if (st.st_uid != geteuid() && st.st_uid != 0)
    s = host_fail(r, HOST_CONFIG, "the database directory %s is owned by uid %u (neither this "
                  "user nor root), who could replace the database; move it (kms_db_path, --db) "
                  "to a directory of your own", dir, (unsigned)st.st_uid);
  else if (st.st_mode & 022)
    s = host_fail(r, HOST_CONFIG, "the database directory %s is writable by group or others "
                  "(mode %04o): they could replace the database or plant its journal; run: "
                  "chmod go-w %s, or move the database (kms_db_path, --db) to a private "
                  "directory", dir, (unsigned)(st.st_mode & 07777), dir);
  free(dir);
  return s;
}

/* SQLite's side files: each, if present, must be as private as the file.
 * SQLite puts them beside the file a symlink points to, and so do we. */
static host_status side_files_private(const char *path, host_result *r) {
  static const char *const suffixes[] = {"-journal", "-wal", "-shm"};
  char *real = realpath(path, NULL);
  const char *base = real ? real : path;
  size_t n = strlen(base) + 16;
  char *p = malloc(n);
  if (!p) {
    free(real);
    return host_fail(r, HOST_FAILED, "out of memory");
  }
  host_status s = HOST_OK;
  for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes && s == HOST_OK; i++) {
    snprintf(p, n, "%s%s", base, suffixes[i]);
    struct stat st;
    if (lstat(p, &st) == 0) s = host_file_private("database journal", p, &st, r);
  }
  free(p);
  free(real);
  return s;
}

/* Create the file 0600 if needed and check the file actually there. */
static host_status file_private(const char *path, host_result *r) {
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
  if (fd < 0)
    return host_fail(r, errno == EACCES ? HOST_CONFIG : HOST_FAILED,
                     "cannot open database %s: %s", path, strerror(errno));
  struct stat st;
  host_status s = fstat(fd, &st) == 0 ? host_file_private("database", path, &st, r)
                                      : host_fail(r, HOST_FAILED, "cannot stat %s: %s", path,
                                                  strerror(errno));
  close(fd);
  return s;
}

/* ------------------------------------------------- the journal-wiping VFS */

#define WIPE_VFS "kms-host-wipe"
static sqlite3_vfs wipe_vfs;
static sqlite3_vfs *base_vfs;
static int wipe_vfs_rc = SQLITE_ERROR;
static pthread_once_t wipe_once = PTHREAD_ONCE_INIT;

/* Overwrite a file's bytes with zeros (and sync) before it is unlinked:
 * SQLite deletes the rollback journal at every commit, and unlinking alone
 * would leave the pages it held -- queued keys among them -- in free
 * blocks. (On copy-on-write filesystems or flash, old blocks may survive
 * regardless: README.md says so.) */
static void zero_file(const char *path) {
  int fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return;
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    static const char zeros[8192];
    off_t off = 0;
    while (off < st.st_size) {
      size_t n = st.st_size - off < (off_t)sizeof zeros ? (size_t)(st.st_size - off)
                                                        : sizeof zeros;
      ssize_t w = pwrite(fd, zeros, n, off);
      if (w <= 0) break;
      off += w;
    }
    (void)fdatasync(fd);
  }
  close(fd);
}

static int wipe_delete(sqlite3_vfs *vfs, const char *path, int sync_dir) {
  (void)vfs;
  zero_file(path);
  return base_vfs->xDelete(base_vfs, path, sync_dir);
}

static void wipe_vfs_register(void) {
  base_vfs = sqlite3_vfs_find(NULL);
  if (!base_vfs) return;
  wipe_vfs = *base_vfs; /* same methods and file objects ... */
  wipe_vfs.zName = WIPE_VFS;
  wipe_vfs.pNext = NULL;
  wipe_vfs.xDelete = wipe_delete; /* ... but deleting zeroes first */
  wipe_vfs_rc = sqlite3_vfs_register(&wipe_vfs, 0);
}

/* -------------------------------------------------------------- migrations */

host_status host_db_exec(sqlite3 *db, const char *sql, host_result *r) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return HOST_OK;
  host_fail(r, HOST_FAILED, "database: %s", msg ? msg : sqlite3_errmsg(db));
  sqlite3_free(msg);
  return HOST_FAILED;
}

int host_db_schema_version(sqlite3 *db) {
  sqlite3_stmt *st = NULL;
  int v = -1;
  if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return v;
}

/* One step, in its own transaction with its version number; re-checked
 * under the write lock in case another process migrated first. */
static host_status migrate_step(sqlite3 *db, const host_migration *m, host_result *r) {
  if (host_db_exec(db, "BEGIN IMMEDIATE", r) != HOST_OK) return HOST_FAILED;
  int v = host_db_schema_version(db);
  char bump[48];
  snprintf(bump, sizeof bump, "PRAGMA user_version=%d", m->version);
  host_status s = v >= m->version ? HOST_OK : host_db_exec(db, m->sql, r);
  if (s == HOST_OK && v < m->version) s = host_db_exec(db, bump, r);
  if (s == HOST_OK) s = host_db_exec(db, "COMMIT", r);
  if (s != HOST_OK) {
    host_result ignored = {HOST_OK, ""};
    (void)host_db_exec(db, "ROLLBACK", &ignored);
  }
  return s;
}

host_status host_db_migrate(sqlite3 *db, const char *path, const host_migration *steps, size_t n,
                            host_result *r) {
  int target = n ? steps[n - 1].version : 0;
  int v = host_db_schema_version(db);
  if (v < 0) return host_fail(r, HOST_FAILED, "database %s: %s", path, sqlite3_errmsg(db));
  if (v > target)
    return host_fail(r, HOST_CONFIG, "database %s has schema version %d, newer than this "
                     "kms-host understands (%d): it was written by a newer kms-host; use that "
                     "version (or newer), or another database (kms_db_path, --db)", path, v,
                     target);
  for (size_t i = 0; i < n; i++) {
    if (steps[i].version <= v) continue;
    host_result step = {HOST_OK, ""};
    if (migrate_step(db, &steps[i], &step) != HOST_OK)
      return host_fail(r, HOST_FAILED, "database %s: migrating to schema version %d failed: %s",
                       path, steps[i].version, step.msg);
  }
  return HOST_OK;
}

/* ------------------------------------------------------------------- open */

host_status host_db_open(const char *path, host_db **out, host_result *r) {
  *out = NULL;
  if (dir_private(path, r) != HOST_OK || file_private(path, r) != HOST_OK ||
      side_files_private(path, r) != HOST_OK)
    return r->status;
  pthread_once(&wipe_once, wipe_vfs_register);
  if (wipe_vfs_rc != SQLITE_OK)
    return host_fail(r, HOST_FAILED, "cannot set up SQLite's journal-wiping VFS");
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, WIPE_VFS) !=
      SQLITE_OK) {
    host_fail(r, HOST_FAILED, "cannot open database %s: %s", path,
              db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return HOST_FAILED;
  }
  sqlite3_busy_timeout(db, 10000);
  /* journal_mode=DELETE: the journal is removed (zeroed first) at every
   * commit, never kept (PERSIST) or appended to (WAL). */
  if (host_db_exec(db, "PRAGMA secure_delete=ON; PRAGMA synchronous=FULL; "
                       "PRAGMA temp_store=MEMORY; PRAGMA journal_mode=DELETE;", r) != HOST_OK ||
      host_db_migrate(db, path, schema_history, HOST_SCHEMA_VERSION, r) != HOST_OK) {
    sqlite3_close(db);
    return r->status;
  }
  host_sqlite_db *h = calloc(1, sizeof *h);
  if (!h) {
    sqlite3_close(db);
    return host_fail(r, HOST_FAILED, "out of memory");
  }
  h->base.ops = &host_sqlite_ops;
  h->conn = db;
  *out = &h->base;
  return HOST_OK;
}

sqlite3 *host_db_sqlite(host_db *db) {
  return db && db->ops == &host_sqlite_ops ? ((host_sqlite_db *)db)->conn : NULL;
}
