/*
 * store_pg.c -- the PostgreSQL store: its SQL, one function per transaction
 * (the ops table of store.h; host_store_* in store.c forward here).
 *
 * Same tables and contract as store_sqlite.c, for many kms-host replicas on
 * one database. What differs is the outbox, which any replica may deliver:
 *  - host_store_next CLAIMS a row (claimed_by, claimed_until = now + lease)
 *    with FOR UPDATE SKIP LOCKED, and only the oldest queued row of its
 *    secret name, so two operations on one name are never in flight at once
 *    and never applied out of order, while different names are delivered in
 *    parallel. A claim of a process killed mid-delivery ends with its lease;
 *    then any replica takes the row over (delivery is idempotent).
 *  - enqueue supersedes earlier queued writes of the name only when nobody
 *    is delivering them (a write in flight could otherwise land after the
 *    newer operation): the newer operation then waits behind it.
 * Statements bind every value; nothing is formatted into SQL.
 */
#include "store.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static host_pg_db *pg(host_db *h) { return (host_pg_db *)h; }

/* Run `sql` with up to 4 text parameters (NULL binds NULL), no result. */
static host_status run4(host_pg_db *d, const char *sql, int n, const char *a, const char *b,
                        const char *c, const char *e, host_result *r) {
  const char *const args[4] = {a, b, c, e};
  return host_pg_query(d, sql, n, args, NULL, NULL, 0, NULL, r);
}

/* ------------------------------------------------------------------ outbox */

static host_status enqueue_in_tx(host_pg_db *d, host_outbox_op op, const char *name,
                                 const char *location, const char *value, size_t len,
                                 host_result *r) {
  /* The same name in another location is another secret. */
  if (run4(d, "DELETE FROM kms_host_outbox WHERE secret_name = $1 AND location = $2 AND "
           "op = 'write' AND (claimed_until IS NULL OR claimed_until < now())", 2, name,
           location, NULL, NULL, r) != HOST_OK)
    return r->status;
  const char *const args[4] = {op == HOST_OUTBOX_WRITE ? "write" : "delete", name,
                               op == HOST_OUTBOX_WRITE ? value : NULL, location};
  const int lens[4] = {0, 0, (int)len, 0};
  const int fmts[4] = {0, 0, 1, 0}; /* the value is bytes */
  return host_pg_query(d, "INSERT INTO kms_host_outbox(op, secret_name, value, location) "
                       "VALUES($1, $2, $3, $4)", 4, args, lens, fmts, 0, NULL, r);
}

typedef struct enqueue_ctx {
  host_outbox_op op;
  const char *name, *location, *value;
  size_t len;
} enqueue_ctx;

static host_status enqueue_body(host_pg_db *d, void *vctx, host_result *r) {
  enqueue_ctx *c = vctx;
  return enqueue_in_tx(d, c->op, c->name, c->location, c->value, c->len, r);
}

static host_status pg_enqueue(host_db *h, host_outbox_op op, const char *name,
                              const char *location, const char *value, size_t len,
                              host_result *r) {
  enqueue_ctx c = {op, name, location, value, len};
  return host_pg_tx(pg(h), enqueue_body, &c, r);
}

/* A big-endian int8 from a binary result. */
static long long be64(const char *p) {
  unsigned long long v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | (unsigned char)p[i];
  return (long long)v;
}

/* Copy a claimed row (binary results) into `it`. */
static host_status take_row(PGresult *res, host_outbox_item *it, host_result *r) {
  it->seq = be64(PQgetvalue(res, 0, 0));
  it->op = strcmp(PQgetvalue(res, 0, 1), "write") ? HOST_OUTBOX_DELETE : HOST_OUTBOX_WRITE;
  it->name = strdup(PQgetvalue(res, 0, 2));
  it->len = PQgetisnull(res, 0, 3) ? 0 : (size_t)PQgetlength(res, 0, 3);
  it->value = malloc(it->len + 1);
  it->location = strdup(PQgetvalue(res, 0, 4));
  if (!it->name || !it->value || !it->location) {
    host_outbox_item_free(it);
    return host_fail(r, HOST_FAILED, "out of memory");
  }
  if (it->len) memcpy(it->value, PQgetvalue(res, 0, 3), it->len);
  it->value[it->len] = '\0';
  return HOST_OK;
}

static host_status pg_next(host_db *h, host_outbox_item *it, int *found, host_result *r) {
  host_pg_db *d = pg(h);
  memset(it, 0, sizeof *it);
  *found = 0;
  char lease[16];
  snprintf(lease, sizeof lease, "%u", d->lease_s);
  const char *const args[2] = {d->claimer, lease};
  PGresult *res = NULL;
  /* The oldest row of a name with no earlier row, not claimed by a live
   * lease of a live connection (our own claims excepted: a retry after a
   * lost connection). A killed process's connection ends, and with it the
   * session lock on its claimer number: its claims are free at once; a
   * connection alive but stuck keeps them until the lease ends. */
  if (host_pg_query(d, "UPDATE kms_host_outbox SET claimed_by = $1, "
                    "claimed_until = now() + make_interval(secs => $2::double precision) "
                    "WHERE seq = (SELECT o.seq FROM kms_host_outbox o "
                    "  WHERE (o.claimed_until IS NULL OR o.claimed_until < now() "
                    "         OR o.claimed_by = $1 OR NOT EXISTS (SELECT 1 FROM pg_locks l "
                    "           WHERE l.locktype = 'advisory' AND l.classid = "
                    HOST_PG_LOCK_CLAIMS " AND l.objsubid = 2 AND l.granted "
                    "             AND l.objid::text = o.claimed_by)) "
                    "    AND NOT EXISTS (SELECT 1 FROM kms_host_outbox p "
                    "                    WHERE p.secret_name = o.secret_name "
                    "                      AND p.location = o.location AND p.seq < o.seq) "
                    "  ORDER BY o.seq LIMIT 1 FOR UPDATE SKIP LOCKED) "
                    "RETURNING seq, op, secret_name, value, location", 2, args, NULL, NULL, 1, &res, r) !=
      HOST_OK)
    return r->status;
  host_status s = HOST_OK;
  if (PQntuples(res) == 1 && (s = take_row(res, it, r)) == HOST_OK) *found = 1;
  PQclear(res);
  return s;
}

static host_status pg_landed(host_db *h, long long seq, host_result *r) {
  char n[32];
  snprintf(n, sizeof n, "%lld", seq);
  return run4(pg(h), "DELETE FROM kms_host_outbox WHERE seq = $1::bigint", 1, n, NULL, NULL,
              NULL, r);
}

static void pg_failed(host_db *h, long long seq, const char *why) {
  char n[32];
  snprintf(n, sizeof n, "%lld", seq);
  host_result ignored = {HOST_OK, ""};
  /* Count it and give the claim back: the next delivery retries it. */
  (void)run4(pg(h), "UPDATE kms_host_outbox SET attempts = attempts + 1, last_error = $2, "
             "claimed_by = NULL, claimed_until = NULL WHERE seq = $1::bigint AND claimed_by = $3",
             3, n, why, pg(h)->claimer, NULL, &ignored);
}

static host_status pg_pending(host_db *h, long *n, host_result *r) {
  PGresult *res = NULL;
  *n = -1;
  if (host_pg_query(pg(h), "SELECT count(*) FROM kms_host_outbox", 0, NULL, NULL, NULL, 0, &res,
                    r) != HOST_OK)
    return r->status;
  *n = atol(PQgetvalue(res, 0, 0));
  PQclear(res);
  return HOST_OK;
}

/* ------------------------------------------------------------ virtual keys */

static char *val_dup(PGresult *res, int col) {
  return PQgetisnull(res, 0, col) ? NULL : strdup(PQgetvalue(res, 0, col));
}

static host_status pg_find(host_db *h, const char *alias, const char *token_hash,
                           host_key_row *row, host_result *r) {
  memset(row, 0, sizeof *row);
  PGresult *res = NULL;
  const char *const args[1] = {alias ? alias : token_hash};
  const char *sql = alias ? "SELECT key_id, alias, secret_name, team_id, location "
                            "FROM kms_host_virtual_keys WHERE alias = $1"
                          : "SELECT key_id, alias, secret_name, team_id, location "
                            "FROM kms_host_virtual_keys WHERE token_hash = $1";
  if (host_pg_query(pg(h), sql, 1, args, NULL, NULL, 0, &res, r) != HOST_OK) return r->status;
  host_status s = HOST_OK;
  if (PQntuples(res) == 1) {
    snprintf(row->key_id, sizeof row->key_id, "%s", PQgetvalue(res, 0, 0));
    row->alias = val_dup(res, 1);
    row->secret_name = val_dup(res, 2);
    row->team_id = val_dup(res, 3);
    row->location = val_dup(res, 4);
    if (!row->location) {
      host_key_row_free(row);
      s = host_fail(r, HOST_FAILED, "out of memory");
    }
  } else if (alias) {
    s = host_fail(r, HOST_FAILED, "no virtual key with alias '%s'", alias);
  } else {
    s = host_fail(r, HOST_FAILED, "no such virtual key (it may have been deleted or regenerated)");
  }
  PQclear(res);
  return s;
}

/* The arguments of one key change, for its transaction body. */
typedef struct change_ctx {
  const char *key_id, *token_hash, *alias, *name, *key;
  const host_key_row *row;
  int drop_old;
  const char *team_id, *location; /* generate */
} change_ctx;

static host_status generate_body(host_pg_db *d, void *vctx, host_result *r) {
  change_ctx *c = vctx;
  const char *const args[6] = {c->key_id, c->token_hash, c->alias, c->name, c->team_id,
                               c->location};
  host_status s = HOST_OK;
  if (c->team_id) { /* still there, and kept until COMMIT (a concurrent team remove waits) */
    PGresult *res = NULL;
    if (host_pg_query(d, "SELECT 1 FROM kms_host_teams WHERE team_id = $1 FOR SHARE", 1,
                      &c->team_id, NULL, NULL, 0, &res, r) != HOST_OK)
      return r->status;
    int found = PQntuples(res) == 1;
    PQclear(res);
    if (!found) return host_fail(r, HOST_FAILED, "no team '%s'", c->team_id);
  }
  s = host_pg_query(d, "INSERT INTO kms_host_virtual_keys(key_id, token_hash, alias, secret_name, "
                    "team_id, location) VALUES($1, $2, $3, $4, $5, $6)", 6, args, NULL, NULL, 0,
                    NULL, r);
  if (s == HOST_OK && c->name)
    s = enqueue_in_tx(d, HOST_OUTBOX_WRITE, c->name, c->location, c->key, strlen(c->key), r);
  return s;
}

static host_status pg_generate(host_db *h, const char *key_id, const char *token_hash,
                               const char *alias, const char *team_id, const char *location,
                               const char *name, const char *key, host_result *r) {
  change_ctx c = {key_id, token_hash, alias, name, key, NULL, 0, team_id, location};
  return host_pg_tx(pg(h), generate_body, &c, r);
}

static host_status delete_body(host_pg_db *d, void *vctx, host_result *r) {
  change_ctx *c = vctx;
  host_status s = run4(d, "DELETE FROM kms_host_virtual_keys WHERE key_id = $1", 1,
                       c->row->key_id, NULL, NULL, NULL, r);
  if (s == HOST_OK && c->row->secret_name)
    s = enqueue_in_tx(d, HOST_OUTBOX_DELETE, c->row->secret_name, c->row->location, NULL, 0, r);
  return s;
}

static host_status pg_delete(host_db *h, const host_key_row *row, host_result *r) {
  change_ctx c = {NULL, NULL, NULL, NULL, NULL, row, 0, NULL, NULL};
  return host_pg_tx(pg(h), delete_body, &c, r);
}

/* regenerate and rename: one UPDATE (`sql`, with $2 = `arg2` and $3 = the
 * new name), the write of the key to the new name, the delete of the old. */
static host_status update_body(host_pg_db *d, const change_ctx *c, const char *sql,
                               const char *arg2, host_result *r) {
  host_status s = run4(d, sql, 3, c->row->key_id, arg2, c->name, NULL, r);
  if (s == HOST_OK && c->name) /* the key stays where it was stored */
    s = enqueue_in_tx(d, HOST_OUTBOX_WRITE, c->name, c->row->location, c->key, strlen(c->key),
                      r);
  if (s == HOST_OK && c->drop_old)
    s = enqueue_in_tx(d, HOST_OUTBOX_DELETE, c->row->secret_name, c->row->location, NULL, 0, r);
  return s;
}

static host_status regenerate_body(host_pg_db *d, void *vctx, host_result *r) {
  const change_ctx *c = vctx;
  return update_body(d, c, "UPDATE kms_host_virtual_keys SET token_hash = $2, secret_name = $3, "
                     "updated_at = now() WHERE key_id = $1", c->token_hash, r);
}

static host_status pg_regenerate(host_db *h, const host_key_row *row, const char *token_hash,
                                 const char *name, const char *key, int drop_old,
                                 host_result *r) {
  change_ctx c = {NULL, token_hash, NULL, name, key, row, drop_old, NULL, NULL};
  return host_pg_tx(pg(h), regenerate_body, &c, r);
}

static host_status rename_body(host_pg_db *d, void *vctx, host_result *r) {
  const change_ctx *c = vctx;
  return update_body(d, c, "UPDATE kms_host_virtual_keys SET alias = $2, secret_name = $3, "
                     "updated_at = now() WHERE key_id = $1", c->alias, r);
}

/* An alias change: the new alias and name, the write of `key` to `name` and
 * the delete of the old name when it differs, in one transaction. */
static host_status pg_rename(host_db *h, const host_key_row *row, const char *alias,
                             const char *name, const char *key, host_result *r) {
  int drop_old = row->secret_name && (!name || strcmp(name, row->secret_name) != 0);
  change_ctx c = {NULL, NULL, alias, name, key, row, drop_old, NULL, NULL};
  return host_pg_tx(pg(h), rename_body, &c, r);
}

/* ----------------------------------------------------------------- listing */

static const char *cell(PGresult *res, int row, int col) {
  return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static host_status pg_list(host_db *h, const host_list_sink *sink, host_result *r) {
  PGresult *res = NULL;
  if (host_pg_query(pg(h), "SELECT key_id, alias, secret_name, team_id, location, "
                    "to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                    "FROM kms_host_virtual_keys ORDER BY created_at, key_id", 0, NULL, NULL,
                    NULL, 0, &res, r) != HOST_OK)
    return r->status;
  for (int i = 0; i < PQntuples(res); i++)
    sink->key(sink->ctx, cell(res, i, 0), cell(res, i, 1), cell(res, i, 2), cell(res, i, 3),
              cell(res, i, 4), cell(res, i, 5));
  PQclear(res);
  if (host_pg_query(pg(h), "SELECT seq, op, secret_name, location, attempts, last_error "
                    "FROM kms_host_outbox ORDER BY seq", 0, NULL, NULL, NULL, 0, &res, r) !=
      HOST_OK)
    return r->status;
  for (int i = 0; i < PQntuples(res); i++)
    sink->queued(sink->ctx, atoll(cell(res, i, 0)), cell(res, i, 1), cell(res, i, 2),
                 cell(res, i, 3), atoi(cell(res, i, 4)), cell(res, i, 5));
  PQclear(res);
  return HOST_OK;
}

/* reconcile's orphan delete (host.h). The key table is locked in SHARE
 * mode first: that waits for every transaction that has inserted, updated
 * or deleted a key and not committed yet (their ROW EXCLUSIVE lock
 * conflicts), and holds off new ones until this COMMIT. So the SELECT
 * below (a fresh snapshot under READ COMMITTED) sees every key change that
 * could own the name, and a change that starts later queues its write
 * after this delete. Readers are not blocked; writers wait milliseconds. */
typedef struct orphan_ctx {
  const char *name, *location;
  int *owned;
} orphan_ctx;

static host_status orphan_delete_body(host_pg_db *d, void *vctx, host_result *r) {
  orphan_ctx *c = vctx;
  *c->owned = 0;
  if (host_pg_query(d, "LOCK TABLE kms_host_virtual_keys IN SHARE MODE", 0, NULL, NULL, NULL, 0,
                    NULL, r) != HOST_OK)
    return r->status;
  const char *const args[2] = {c->name, c->location};
  PGresult *res = NULL;
  if (host_pg_query(d, "SELECT 1 FROM kms_host_virtual_keys WHERE secret_name = $1 AND "
                    "location = $2 LIMIT 1", 2, args, NULL, NULL, 0, &res, r) != HOST_OK)
    return r->status;
  *c->owned = PQntuples(res) > 0;
  PQclear(res);
  return *c->owned ? HOST_OK
                   : enqueue_in_tx(d, HOST_OUTBOX_DELETE, c->name, c->location, NULL, 0, r);
}

static host_status pg_enqueue_orphan_delete(host_db *h, const char *name, const char *location,
                                            int *owned, host_result *r) {
  orphan_ctx c = {name, location, owned};
  return host_pg_tx(pg(h), orphan_delete_body, &c, r);
}

/* ------------------------------------------------------------------- teams */

static host_status pg_team_put(host_db *h, const char *team_id, const char *team_alias,
                               const char *location, int create, host_result *r) {
  const char *const args[3] = {team_id, team_alias, location};
  PGresult *res = NULL;
  /* RETURNING tells "exists" (create) and "no such team" (update) apart
   * without reading a constraint error. */
  if (host_pg_query(pg(h), create ? "INSERT INTO kms_host_teams(team_id, team_alias, location) "
                                    "VALUES($1, $2, $3) ON CONFLICT (team_id) DO NOTHING "
                                    "RETURNING team_id"
                                  : "UPDATE kms_host_teams SET team_alias = $2, location = $3, "
                                    "updated_at = now() WHERE team_id = $1 RETURNING team_id",
                    3, args, NULL, NULL, 0, &res, r) != HOST_OK)
    return r->status;
  int done = PQntuples(res) == 1;
  PQclear(res);
  if (done) return HOST_OK;
  return create ? host_fail(r, HOST_FAILED, "team '%s' already exists (use team update)", team_id)
                : host_fail(r, HOST_FAILED, "no team '%s' (create it with team add)", team_id);
}

#define PG_TEAM_SELECT                                                                       \
  "SELECT t.team_id, t.team_alias, t.location, "                                             \
  "(SELECT count(*) FROM kms_host_virtual_keys k WHERE k.team_id = t.team_id), "             \
  "to_char(t.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "             \
  "FROM kms_host_teams t "

static host_status team_at(PGresult *res, int i, host_team_row *t, host_result *r) {
  memset(t, 0, sizeof *t);
  t->team_id = strdup(PQgetvalue(res, i, 0));
  t->team_alias = PQgetisnull(res, i, 1) ? NULL : strdup(PQgetvalue(res, i, 1));
  t->location = strdup(PQgetvalue(res, i, 2));
  t->keys = atol(PQgetvalue(res, i, 3));
  t->updated_at = strdup(PQgetvalue(res, i, 4));
  if (t->team_id && t->location && t->updated_at) return HOST_OK;
  host_team_row_free(t);
  return host_fail(r, HOST_FAILED, "out of memory");
}

static host_status pg_team_get(host_db *h, const char *team_id, host_team_row *t,
                               host_result *r) {
  const char *const args[1] = {team_id};
  PGresult *res = NULL;
  memset(t, 0, sizeof *t);
  if (host_pg_query(pg(h), PG_TEAM_SELECT "WHERE t.team_id = $1", 1, args, NULL, NULL, 0, &res,
                    r) != HOST_OK)
    return r->status;
  host_status s = PQntuples(res) == 1
                      ? team_at(res, 0, t, r)
                      : host_fail(r, HOST_FAILED, "no team '%s' (create it with team add, or "
                                  "/team/new)", team_id);
  PQclear(res);
  return s;
}

static host_status pg_team_list(host_db *h, void (*fn)(void *ctx, const host_team_row *t),
                                void *ctx, host_result *r) {
  PGresult *res = NULL;
  if (host_pg_query(pg(h), PG_TEAM_SELECT "ORDER BY t.team_id", 0, NULL, NULL, NULL, 0, &res,
                    r) != HOST_OK)
    return r->status;
  host_status s = HOST_OK;
  for (int i = 0; i < PQntuples(res) && s == HOST_OK; i++) {
    host_team_row t;
    if ((s = team_at(res, i, &t, r)) == HOST_OK) fn(ctx, &t);
    host_team_row_free(&t);
  }
  PQclear(res);
  return s;
}

static host_status team_remove_body(host_pg_db *d, void *vctx, host_result *r) {
  const char *team_id = vctx;
  const char *const args[1] = {team_id};
  PGresult *res = NULL;
  /* Lock the team row first: a key generated for it concurrently either
   * committed before (counted here) or waits and then finds no team. */
  if (host_pg_query(d, "SELECT (SELECT count(*) FROM kms_host_virtual_keys k "
                    "WHERE k.team_id = t.team_id) FROM kms_host_teams t WHERE t.team_id = $1 "
                    "FOR UPDATE", 1, args, NULL, NULL, 0, &res, r) != HOST_OK)
    return r->status;
  long keys = PQntuples(res) == 1 ? atol(PQgetvalue(res, 0, 0)) : -1;
  PQclear(res);
  if (keys < 0) return host_fail(r, HOST_FAILED, "no team '%s'", team_id);
  if (keys > 0)
    return host_fail(r, HOST_FAILED, "team '%s' still has %ld virtual key(s): delete them first "
                     "(each key stays attributable to its team)", team_id, keys);
  return run4(d, "DELETE FROM kms_host_teams WHERE team_id = $1", 1, team_id, NULL, NULL, NULL,
              r);
}

static host_status pg_team_remove(host_db *h, const char *team_id, host_result *r) {
  return host_pg_tx(pg(h), team_remove_body, (void *)team_id, r);
}

static host_status pg_locations(host_db *h, void (*fn)(void *ctx, const char *location),
                                void *ctx, host_result *r) {
  PGresult *res = NULL;
  if (host_pg_query(pg(h), "SELECT DISTINCT location FROM kms_host_virtual_keys "
                    "WHERE secret_name IS NOT NULL ORDER BY location", 0, NULL, NULL, NULL, 0,
                    &res, r) != HOST_OK)
    return r->status;
  for (int i = 0; i < PQntuples(res); i++) fn(ctx, PQgetvalue(res, i, 0));
  PQclear(res);
  return HOST_OK;
}

static host_status pg_key_locations(host_db *h, host_key_location_fn fn, void *ctx,
                                    host_result *r) {
  PGresult *res = NULL;
  if (host_pg_query(pg(h), "SELECT key_id, secret_name, team_id, location "
                    "FROM kms_host_virtual_keys WHERE secret_name IS NOT NULL "
                    "ORDER BY location, secret_name", 0, NULL, NULL, NULL, 0, &res, r) != HOST_OK)
    return r->status;
  for (int i = 0; i < PQntuples(res); i++)
    fn(ctx, cell(res, i, 0), cell(res, i, 1), cell(res, i, 2), cell(res, i, 3));
  PQclear(res);
  return HOST_OK;
}

/* -------------------------------------------------------- delivery lock */

#define LOCK_POLL_MS 50u

/* Who holds the delivery lock: its application_name (kms-host pid N) and
 * client address, for the message. */
static void lock_holder(host_pg_db *d, char *buf, size_t n) {
  PGresult *res = NULL;
  host_result ignored = {HOST_OK, ""};
  snprintf(buf, n, "another session");
  if (host_pg_query(d, "SELECT a.application_name, coalesce(host(a.client_addr), 'local') "
                    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.classid = " HOST_PG_LOCK_CLASS
                    " AND l.objid = " HOST_PG_LOCK_DELIVERY " AND l.granted LIMIT 1",
                    0, NULL, NULL, NULL, 0, &res, &ignored) != HOST_OK)
    return;
  if (PQntuples(res) == 1)
    snprintf(buf, n, "'%s' from %s", PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
  PQclear(res);
}

static host_status pg_lock(host_db *h, const char *target, unsigned timeout_ms,
                           const host_clock *clock, int *fd, host_result *r) {
  (void)target; /* the URL: never in a message */
  host_pg_db *d = pg(h);
  *fd = -1;
  uint64_t start = clock->now_ms(clock->ctx);
  for (;;) {
    PGresult *res = NULL;
    if (host_pg_query(d, "SELECT pg_try_advisory_lock(" HOST_PG_LOCK_CLASS ", "
                      HOST_PG_LOCK_DELIVERY ")", 0, NULL, NULL, NULL, 0, &res, r) != HOST_OK)
      return r->status;
    int got = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (got) {
      d->lock_held = 1;
      return HOST_OK;
    }
    uint64_t waited = clock->now_ms(clock->ctx) - start;
    if (waited >= timeout_ms) {
      char who[160];
      lock_holder(d, who, sizeof who);
      return host_fail(r, HOST_FAILED, "the delivery lock (a PostgreSQL advisory lock of the "
                       "database) is held by %s (another kms-host changing keys or delivering "
                       "queued work); gave up after %u ms: try again when it is done, or raise "
                       "--lock-timeout", who, timeout_ms);
    }
    uint64_t left = timeout_ms - waited;
    clock->sleep_ms(clock->ctx, left < LOCK_POLL_MS ? (unsigned)left : LOCK_POLL_MS);
  }
}

const host_store_ops host_pg_ops = {
  "postgresql", pg_find, pg_generate, pg_delete, pg_regenerate, pg_enqueue, pg_next,
  pg_landed, pg_failed, pg_pending, pg_list, pg_lock, host_pg_close, pg_rename,
  pg_team_put, pg_team_get, pg_team_list, pg_team_remove, pg_locations, pg_key_locations,
  pg_enqueue_orphan_delete,
};
