/*
 * store_sqlite.c -- the SQLite store: its SQL, one function per transaction
 * (the ops table of store.h; host_store_* in store.c forward here).
 *
 * A key change and the secret-manager work it implies are committed in ONE
 * transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on any error), so
 * each host_store_<change> below holds all of its statements: the
 * virtual_keys change and the outbox rows. Delivery (outbox.c) then reads
 * the oldest row, and removes it only once the plugin said it landed.
 * Statements bind every value; nothing is formatted into SQL.
 */
#include "store.h"

#include <openssl/crypto.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sqlite3 *conn_of(host_db *h) { return ((host_sqlite_db *)h)->conn; }

static host_status db_fail(sqlite3 *db, host_result *r) {
  return host_fail(r, HOST_FAILED, "database: %s", sqlite3_errmsg(db));
}

/* Bind text, or NULL when `s` is NULL. */
static void bind_text(sqlite3_stmt *st, int i, const char *s) {
  if (s) sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
  else sqlite3_bind_null(st, i);
}

/* Prepare `sql`, bind its text parameters ?1..?n from `args` (NULL binds
 * NULL), run it to completion. A constraint violation is HOST_FAILED with
 * `dup` (the one UNIQUE the statement can break). *changes (may be NULL):
 * the rows changed. */
static host_status run_n(sqlite3 *db, const char *sql, const char *const *args, int nargs,
                         const char *dup, int *changes, host_result *r) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return db_fail(db, r);
  int n = sqlite3_bind_parameter_count(st);
  for (int i = 0; i < n && i < nargs; i++) bind_text(st, i + 1, args[i]);
  int rc = sqlite3_step(st);
  host_status s = HOST_OK;
  if (rc == SQLITE_CONSTRAINT)
    s = host_fail(r, HOST_FAILED, "%s", dup);
  else if (rc != SQLITE_DONE)
    s = db_fail(db, r);
  if (changes) *changes = sqlite3_changes(db);
  sqlite3_finalize(st);
  return s;
}

/* run_n with up to 4 parameters, where a constraint can only be the
 * alias's UNIQUE. */
static host_status run4(sqlite3 *db, const char *sql, const char *a, const char *b,
                        const char *c, const char *d, host_result *r) {
  const char *const args[4] = {a, b, c, d};
  return run_n(db, sql, args, 4, "that alias is already used by another virtual key", NULL, r);
}

/* End the caller's transaction: COMMIT when `s` is HOST_OK, else ROLLBACK
 * (keeping the first error). */
static host_status finish(sqlite3 *db, host_status s, host_result *r) {
  if (s == HOST_OK && host_db_exec(db, "COMMIT", r) == HOST_OK) return HOST_OK;
  host_result ignored = {HOST_OK, ""};
  (void)host_db_exec(db, "ROLLBACK", &ignored);
  return r->status;
}

/* ------------------------------------------------------------------ outbox */

static host_status sq_enqueue(host_db *h, host_outbox_op op, const char *name,
                               const char *location, const char *value, size_t len,
                               host_result *r) {
  sqlite3 *db = conn_of(h);
  /* Earlier queued writes of this name in this location are superseded
   * (the same name elsewhere is another secret). */
  if (run4(db, "DELETE FROM outbox WHERE secret_name=?1 AND location=?2 AND op='write'", name,
           location, NULL, NULL, r) != HOST_OK)
    return r->status;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, "INSERT INTO outbox(op, secret_name, value, location) "
                         "VALUES(?1, ?2, ?3, ?4)", -1, &st, NULL) != SQLITE_OK)
    return db_fail(db, r);
  sqlite3_bind_text(st, 4, location, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 1, op == HOST_OUTBOX_WRITE ? "write" : "delete", -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
  if (op == HOST_OUTBOX_WRITE) sqlite3_bind_blob(st, 3, value, (int)len, SQLITE_TRANSIENT);
  else sqlite3_bind_null(st, 3);
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? HOST_OK : db_fail(db, r);
}

static host_status sq_next(host_db *h, host_outbox_item *it, int *found, host_result *r) {
  sqlite3 *db = conn_of(h);
  memset(it, 0, sizeof *it);
  *found = 0;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, "SELECT seq, op, secret_name, value, location FROM outbox "
                         "ORDER BY seq LIMIT 1",
                         -1, &st, NULL) != SQLITE_OK)
    return db_fail(db, r);
  int rc = sqlite3_step(st);
  host_status s = HOST_OK;
  if (rc == SQLITE_ROW) {
    it->seq = sqlite3_column_int64(st, 0);
    it->op = strcmp((const char *)sqlite3_column_text(st, 1), "write") ? HOST_OUTBOX_DELETE
                                                                        : HOST_OUTBOX_WRITE;
    it->name = strdup((const char *)sqlite3_column_text(st, 2));
    it->len = (size_t)sqlite3_column_bytes(st, 3);
    it->value = malloc(it->len + 1);
    if (it->value && it->len) memcpy(it->value, sqlite3_column_blob(st, 3), it->len);
    if (it->value) it->value[it->len] = '\0';
    it->location = strdup((const char *)sqlite3_column_text(st, 4));
    if (!it->name || !it->value || !it->location) {
      host_outbox_item_free(it);
      s = host_fail(r, HOST_FAILED, "out of memory");
    } else {
      *found = 1;
    }
  } else if (rc != SQLITE_DONE) {
    s = db_fail(db, r);
  }
  sqlite3_finalize(st);
  return s;
}

static host_status sq_landed(host_db *h, long long seq, host_result *r) {
  sqlite3 *db = conn_of(h);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, "DELETE FROM outbox WHERE seq=?1", -1, &st, NULL) != SQLITE_OK)
    return db_fail(db, r);
  sqlite3_bind_int64(st, 1, seq);
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? HOST_OK : db_fail(db, r);
}

static void sq_failed(host_db *h, long long seq, const char *why) {
  sqlite3 *db = conn_of(h);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, "UPDATE outbox SET attempts=attempts+1, last_error=?2 WHERE seq=?1",
                         -1, &st, NULL) != SQLITE_OK)
    return;
  sqlite3_bind_int64(st, 1, seq);
  sqlite3_bind_text(st, 2, why, -1, SQLITE_TRANSIENT);
  (void)sqlite3_step(st);
  sqlite3_finalize(st);
}

static host_status sq_pending(host_db *h, long *n, host_result *r) {
  sqlite3 *db = conn_of(h);
  sqlite3_stmt *st = NULL;
  *n = -1;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM outbox", -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    *n = (long)sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return *n < 0 ? db_fail(db, r) : HOST_OK;
}

/* One number from `sql` with ?1 = `arg` (a count). */
static host_status sq_count(sqlite3 *db, const char *sql, const char *arg, long *n,
                            host_result *r) {
  sqlite3_stmt *st = NULL;
  *n = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
    sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW) *n = (long)sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  return *n < 0 ? db_fail(db, r) : HOST_OK;
}

/* ------------------------------------------------------------ virtual keys */

static char *col_dup(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return t ? strdup((const char *)t) : NULL;
}

static host_status sq_find(host_db *h, const char *alias, const char *token_hash,
                            host_key_row *row, host_result *r) {
  sqlite3 *db = conn_of(h);
  memset(row, 0, sizeof *row);
  sqlite3_stmt *st = NULL;
  const char *sql = alias ? "SELECT key_id, alias, secret_name, team_id, location "
                            "FROM virtual_keys WHERE alias=?1"
                          : "SELECT key_id, alias, secret_name, team_id, location "
                            "FROM virtual_keys WHERE token_hash=?1";
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return db_fail(db, r);
  sqlite3_bind_text(st, 1, alias ? alias : token_hash, -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st);
  host_status s = HOST_OK;
  if (rc == SQLITE_ROW) {
    snprintf(row->key_id, sizeof row->key_id, "%s", (const char *)sqlite3_column_text(st, 0));
    row->alias = col_dup(st, 1);
    row->secret_name = col_dup(st, 2);
    row->team_id = col_dup(st, 3);
    row->location = col_dup(st, 4);
    if (!row->location) {
      host_key_row_free(row);
      s = host_fail(r, HOST_FAILED, "out of memory");
    }
  } else if (rc != SQLITE_DONE) {
    s = db_fail(db, r);
  } else if (alias) {
    s = host_fail(r, HOST_FAILED, "no virtual key with alias '%s'", alias);
  } else {
    s = host_fail(r, HOST_FAILED, "no such virtual key (it may have been deleted or regenerated)");
  }
  sqlite3_finalize(st);
  return s;
}

static host_status sq_generate(host_db *h, const char *key_id, const char *token_hash,
                                const char *alias, const char *team_id, const char *location,
                                const char *name, const char *key, host_result *r) {
  sqlite3 *db = conn_of(h);
  if (host_db_exec(db, "BEGIN IMMEDIATE", r) != HOST_OK) return r->status;
  const char *const args[6] = {key_id, token_hash, alias, name, team_id, location};
  long teams = 1;
  /* The team is checked again inside the transaction: a `team remove`
   * between the caller's lookup and here must not leave a key of no team. */
  host_status s = team_id ? sq_count(db, "SELECT count(*) FROM teams WHERE team_id=?1", team_id,
                                     &teams, r)
                          : HOST_OK;
  if (s == HOST_OK && teams == 0) s = host_fail(r, HOST_FAILED, "no team '%s'", team_id);
  if (s == HOST_OK)
    s = run_n(db, "INSERT INTO virtual_keys(key_id, token_hash, alias, secret_name, "
              "team_id, location) VALUES(?1, ?2, ?3, ?4, ?5, ?6)", args, 6,
              "that alias is already used by another virtual key", NULL, r);
  if (s == HOST_OK && name)
    s = sq_enqueue(h, HOST_OUTBOX_WRITE, name, location, key, strlen(key), r);
  return finish(db, s, r);
}

static host_status sq_delete(host_db *h, const host_key_row *row, host_result *r) {
  sqlite3 *db = conn_of(h);
  if (host_db_exec(db, "BEGIN IMMEDIATE", r) != HOST_OK) return r->status;
  host_status s = run4(db, "DELETE FROM virtual_keys WHERE key_id=?1", row->key_id, NULL, NULL,
                       NULL, r);
  if (s == HOST_OK && row->secret_name)
    s = sq_enqueue(h, HOST_OUTBOX_DELETE, row->secret_name, row->location, NULL, 0, r);
  return finish(db, s, r);
}

/* regenerate and rename: one UPDATE (`sql`, with ?2 = `arg2` and ?3 = the
 * new name), the write of the key to the new name, the delete of the old,
 * in one transaction. */
static host_status sq_update(host_db *h, const host_key_row *row, const char *sql,
                             const char *arg2, const char *name, const char *key, int drop_old,
                             host_result *r) {
  sqlite3 *db = conn_of(h);
  if (host_db_exec(db, "BEGIN IMMEDIATE", r) != HOST_OK) return r->status;
  host_status s = run4(db, sql, row->key_id, arg2, name, NULL, r);
  if (s == HOST_OK && name) /* the key stays where it was stored */
    s = sq_enqueue(h, HOST_OUTBOX_WRITE, name, row->location, key, strlen(key), r);
  if (s == HOST_OK && drop_old)
    s = sq_enqueue(h, HOST_OUTBOX_DELETE, row->secret_name, row->location, NULL, 0, r);
  return finish(db, s, r);
}

static host_status sq_regenerate(host_db *h, const host_key_row *row, const char *token_hash,
                                 const char *name, const char *key, int drop_old,
                                 host_result *r) {
  return sq_update(h, row, "UPDATE virtual_keys SET token_hash=?2, secret_name=?3, "
                   "updated_at=strftime('%Y-%m-%dT%H:%M:%SZ','now') WHERE key_id=?1",
                   token_hash, name, key, drop_old, r);
}

static host_status sq_rename(host_db *h, const host_key_row *row, const char *alias,
                             const char *name, const char *key, host_result *r) {
  int drop_old = row->secret_name && (!name || strcmp(name, row->secret_name) != 0);
  return sq_update(h, row, "UPDATE virtual_keys SET alias=?2, secret_name=?3, "
                   "updated_at=strftime('%Y-%m-%dT%H:%M:%SZ','now') WHERE key_id=?1",
                   alias, name, key, drop_old, r);
}

/* reconcile's orphan delete: under BEGIN IMMEDIATE (the database's write
 * lock, which every key change also takes first), so the ownership check
 * and the enqueue see the same key table and no key change commits
 * between them. */
static host_status sq_enqueue_orphan_delete(host_db *h, const char *name, const char *location,
                                            int *owned, host_result *r) {
  sqlite3 *db = conn_of(h);
  *owned = 0;
  if (host_db_exec(db, "BEGIN IMMEDIATE", r) != HOST_OK) return r->status;
  sqlite3_stmt *st = NULL;
  long n = -1;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM virtual_keys WHERE secret_name=?1 AND "
                         "location=?2", -1, &st, NULL) == SQLITE_OK) {
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, location, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW) n = (long)sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  host_status s = n < 0 ? db_fail(db, r) : HOST_OK;
  if (s == HOST_OK && n > 0) *owned = 1;
  else if (s == HOST_OK) s = sq_enqueue(h, HOST_OUTBOX_DELETE, name, location, NULL, 0, r);
  return finish(db, s, r);
}

/* ----------------------------------------------------------------- listing */

static const char *col_text(sqlite3_stmt *st, int i) {
  return (const char *)sqlite3_column_text(st, i);
}

static host_status sq_list(host_db *h, const host_list_sink *sink, host_result *r) {
  sqlite3 *db = conn_of(h);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, "SELECT key_id, alias, secret_name, team_id, location, updated_at "
                         "FROM virtual_keys ORDER BY created_at, key_id", -1, &st, NULL) !=
      SQLITE_OK)
    return db_fail(db, r);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    sink->key(sink->ctx, col_text(st, 0), col_text(st, 1), col_text(st, 2), col_text(st, 3),
              col_text(st, 4), col_text(st, 5));
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return db_fail(db, r);
  if (sqlite3_prepare_v2(db, "SELECT seq, op, secret_name, location, attempts, last_error "
                         "FROM outbox ORDER BY seq", -1, &st, NULL) != SQLITE_OK)
    return db_fail(db, r);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    sink->queued(sink->ctx, (long long)sqlite3_column_int64(st, 0), col_text(st, 1),
                 col_text(st, 2), col_text(st, 3), sqlite3_column_int(st, 4), col_text(st, 5));
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? HOST_OK : db_fail(db, r);
}

/* ------------------------------------------------------------------- teams */

static host_status sq_team_put(host_db *h, const char *team_id, const char *team_alias,
                               const char *location, int create, host_result *r) {
  sqlite3 *db = conn_of(h);
  const char *const args[3] = {team_id, team_alias, location};
  char dup[HOST_TEAM_ID_MAX + 64];
  snprintf(dup, sizeof dup, "team '%s' already exists (use team update)", team_id);
  int changes = 0;
  host_status s = run_n(db, create ? "INSERT INTO teams(team_id, team_alias, location) "
                                     "VALUES(?1, ?2, ?3)"
                                   : "UPDATE teams SET team_alias=?2, location=?3, "
                                     "updated_at=strftime('%Y-%m-%dT%H:%M:%SZ','now') "
                                     "WHERE team_id=?1",
                        args, 3, dup, &changes, r);
  if (s == HOST_OK && !create && changes == 0)
    return host_fail(r, HOST_FAILED, "no team '%s' (create it with team add)", team_id);
  return s;
}

/* The team columns of the statement's current row into `t`. */
static host_status team_of(sqlite3_stmt *st, host_team_row *t, host_result *r) {
  memset(t, 0, sizeof *t);
  t->team_id = col_dup(st, 0);
  t->team_alias = col_dup(st, 1);
  t->location = col_dup(st, 2);
  t->keys = (long)sqlite3_column_int64(st, 3);
  t->updated_at = col_dup(st, 4);
  if (t->team_id && t->location && t->updated_at) return HOST_OK;
  host_team_row_free(t);
  return host_fail(r, HOST_FAILED, "out of memory");
}

#define SQ_TEAM_SELECT                                                                   \
  "SELECT t.team_id, t.team_alias, t.location, "                                         \
  "(SELECT count(*) FROM virtual_keys k WHERE k.team_id = t.team_id), t.updated_at "     \
  "FROM teams t "

static host_status sq_team_get(host_db *h, const char *team_id, host_team_row *t,
                               host_result *r) {
  sqlite3 *db = conn_of(h);
  sqlite3_stmt *st = NULL;
  memset(t, 0, sizeof *t);
  if (sqlite3_prepare_v2(db, SQ_TEAM_SELECT "WHERE t.team_id=?1", -1, &st, NULL) != SQLITE_OK)
    return db_fail(db, r);
  sqlite3_bind_text(st, 1, team_id, -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st);
  host_status s = rc == SQLITE_ROW    ? team_of(st, t, r)
                  : rc == SQLITE_DONE ? host_fail(r, HOST_FAILED, "no team '%s' (create it with "
                                                  "team add, or /team/new)", team_id)
                                      : db_fail(db, r);
  sqlite3_finalize(st);
  return s;
}

static host_status sq_team_list(host_db *h, void (*fn)(void *ctx, const host_team_row *t),
                                void *ctx, host_result *r) {
  sqlite3 *db = conn_of(h);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, SQ_TEAM_SELECT "ORDER BY t.team_id", -1, &st, NULL) != SQLITE_OK)
    return db_fail(db, r);
  int rc;
  host_status s = HOST_OK;
  while (s == HOST_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    host_team_row t;
    if ((s = team_of(st, &t, r)) == HOST_OK) fn(ctx, &t);
    host_team_row_free(&t);
  }
  if (s == HOST_OK && rc != SQLITE_DONE) s = db_fail(db, r);
  sqlite3_finalize(st);
  return s;
}

static host_status sq_team_remove(host_db *h, const char *team_id, host_result *r) {
  sqlite3 *db = conn_of(h);
  if (host_db_exec(db, "BEGIN IMMEDIATE", r) != HOST_OK) return r->status;
  long keys = 0;
  int changes = 0;
  const char *const args[1] = {team_id};
  host_status s = sq_count(db, "SELECT count(*) FROM virtual_keys WHERE team_id=?1", team_id,
                           &keys, r);
  if (s == HOST_OK && keys > 0)
    s = host_fail(r, HOST_FAILED, "team '%s' still has %ld virtual key(s): delete them first "
                  "(each key stays attributable to its team)", team_id, keys);
  if (s == HOST_OK)
    s = run_n(db, "DELETE FROM teams WHERE team_id=?1", args, 1, "", &changes, r);
  if (s == HOST_OK && changes == 0) s = host_fail(r, HOST_FAILED, "no team '%s'", team_id);
  return finish(db, s, r);
}

static host_status sq_locations(host_db *h, void (*fn)(void *ctx, const char *location),
                                void *ctx, host_result *r) {
  sqlite3 *db = conn_of(h);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, "SELECT DISTINCT location FROM virtual_keys "
                         "WHERE secret_name IS NOT NULL ORDER BY location", -1, &st, NULL) !=
      SQLITE_OK)
    return db_fail(db, r);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) fn(ctx, col_text(st, 0));
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? HOST_OK : db_fail(db, r);
}

static host_status sq_key_locations(host_db *h, host_key_location_fn fn, void *ctx,
                                    host_result *r) {
  sqlite3 *db = conn_of(h);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, "SELECT key_id, secret_name, team_id, location FROM virtual_keys "
                         "WHERE secret_name IS NOT NULL ORDER BY location, secret_name", -1, &st,
                         NULL) != SQLITE_OK)
    return db_fail(db, r);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    fn(ctx, col_text(st, 0), col_text(st, 1), col_text(st, 2), col_text(st, 3));
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? HOST_OK : db_fail(db, r);
}

static host_status sq_lock(host_db *h, const char *target, unsigned timeout_ms,
                           const host_clock *clock, int *fd, host_result *r) {
  (void)h;
  return host_lock_acquire(target, timeout_ms, clock, fd, r);
}

static void sq_close(host_db *h) {
  host_sqlite_db *d = (host_sqlite_db *)h;
  sqlite3_close(d->conn);
  free(d);
}

const host_store_ops host_sqlite_ops = {
  "sqlite", sq_find, sq_generate, sq_delete, sq_regenerate, sq_enqueue, sq_next,
  sq_landed, sq_failed, sq_pending, sq_list, sq_lock, sq_close, sq_rename,
  sq_team_put, sq_team_get, sq_team_list, sq_team_remove, sq_locations, sq_key_locations,
  sq_enqueue_orphan_delete,
};
