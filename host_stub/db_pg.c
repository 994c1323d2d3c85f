/*
 * db_pg.c -- the PostgreSQL store's connection: connect, reconnect,
 * timeouts, transactions, schema migrations and the delivery lock.
 *
 * Many kms-host replicas share one database (LiteLLM's DATABASE_URL), so:
 *  - the schema has a recorded version (kms_host_schema) and an ordered
 *    list of steps, applied by whichever process starts first, under a
 *    transaction-scoped advisory lock so concurrent starts wait for it; a
 *    binary refuses a schema newer than it knows (HOST_CONFIG);
 *  - the delivery lock is an advisory lock of the session, not a file, so
 *    it spans machines;
 *  - a connection lost (server restart, failover) is re-established for a
 *    bounded time and the statement or transaction run again when that is
 *    safe;
 *  - every statement has a timeout (30 s unless the URL's `options` say
 *    otherwise) and the connection attempt one (10 s unless the URL's
 *    connect_timeout says otherwise);
 *  - libpq reads the password from the URL, PGPASSWORD or ~/.pgpass and
 *    TLS settings (sslmode, sslrootcert, ...) from the URL. Messages name
 *    the server as host:port/dbname, never the URL (it may hold the
 *    password).
 * Thread safety: a connection is used by one thread at a time.
 */
#include "store.h"

#include <libpq-fe.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PG_RECONNECT_MS 20000u     /* how long a lost connection is retried */
#define PG_RECONNECT_PAUSE_MS 500u
#define PG_LEASE_DEFAULT 120u       /* seconds */
#define PG_LEASE_MAX 86400u

/* The schema's history on PostgreSQL: the same versions as db.c's SQLite
 * history (HOST_SCHEMA_VERSION), in PostgreSQL's dialect. Append a step for
 * every change, never edit one. Tables carry a kms_host_ prefix: the
 * database is shared with LiteLLM's own tables. */
static const host_migration pg_schema_history[] = {
  {1, "CREATE TABLE kms_host_virtual_keys("
      "  key_id text PRIMARY KEY,"
      "  token_hash text NOT NULL UNIQUE,"
      "  alias text UNIQUE,"
      "  secret_name text,"
      "  created_at timestamptz NOT NULL DEFAULT now(),"
      "  updated_at timestamptz NOT NULL DEFAULT now());"
      "CREATE TABLE kms_host_outbox("
      "  seq bigserial PRIMARY KEY,"
      "  op text NOT NULL CHECK(op IN ('write','delete')),"
      "  secret_name text NOT NULL,"
      "  value bytea,"
      "  attempts integer NOT NULL DEFAULT 0,"
      "  last_error text,"
      "  claimed_by text,"              /* the connection delivering it, or NULL */
      "  claimed_until timestamptz,"    /* its lease: after this, anyone may take it */
      "  created_at timestamptz NOT NULL DEFAULT now());"
      "CREATE INDEX kms_host_outbox_name ON kms_host_outbox(secret_name, seq);"},
  /* 2: teams and locations (teams.c); existing rows get '' (the instance's
   * own location). An operation waits only behind earlier ones of the same
   * name in the same location: the index follows. */
  {2, "CREATE TABLE kms_host_teams("
      "  team_id text PRIMARY KEY,"
      "  team_alias text,"
      "  location text NOT NULL DEFAULT '',"
      "  created_at timestamptz NOT NULL DEFAULT now(),"
      "  updated_at timestamptz NOT NULL DEFAULT now());"
      "ALTER TABLE kms_host_virtual_keys ADD COLUMN team_id text;"
      "ALTER TABLE kms_host_virtual_keys ADD COLUMN location text NOT NULL DEFAULT '';"
      "ALTER TABLE kms_host_outbox ADD COLUMN location text NOT NULL DEFAULT '';"
      "DROP INDEX kms_host_outbox_name;"
      "CREATE INDEX kms_host_outbox_name ON kms_host_outbox(secret_name, location, seq);"},
};
_Static_assert(sizeof pg_schema_history / sizeof *pg_schema_history == HOST_SCHEMA_VERSION,
               "the PostgreSQL history has one step per schema version");

/* "host:port/dbname" of a connection, for messages (never the URL). */
static void server_name(PGconn *c, char *buf, size_t n) {
  const char *h = c ? PQhost(c) : NULL;
  const char *p = c ? PQport(c) : NULL;
  const char *db = c ? PQdb(c) : NULL;
  snprintf(buf, n, "%s:%s/%s", h && *h ? h : "?", p && *p ? p : "?", db && *db ? db : "?");
}

/* libpq's last message on one line (it ends with a newline). */
static void one_line(const char *m, char *buf, size_t n) {
  snprintf(buf, n, "%s", m && *m ? m : "unknown error");
  for (char *c = buf; *c; c++)
    if (*c == '\n' || *c == '\r') *c = ' ';
  size_t len = strlen(buf);
  while (len && buf[len - 1] == ' ') buf[--len] = '\0';
}

static host_status pg_fail(host_pg_db *d, const PGresult *res, host_result *r) {
  char srv[256], msg[HOST_ERR_SIZE];
  server_name(d->conn, srv, sizeof srv);
  one_line(res ? PQresultErrorMessage(res) : PQerrorMessage(d->conn), msg, sizeof msg);
  if (!*msg || !strcmp(msg, "unknown error")) one_line(PQerrorMessage(d->conn), msg, sizeof msg);
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  if (state && !strcmp(state, "23505"))
    return host_fail(r, HOST_FAILED, "that alias is already used by another virtual key");
  return host_fail(r, HOST_FAILED, "database (PostgreSQL %s): %s", srv, msg);
}

static host_status hold_claimer_lock(host_pg_db *d, host_result *r);

host_status host_pg_reconnect(host_pg_db *d, host_result *r) {
  int had_lock = d->lock_held;
  d->lock_held = 0;
  d->in_tx = 0;
  uint64_t start = d->clock->now_ms(d->clock->ctx);
  while (d->clock->now_ms(d->clock->ctx) - start < PG_RECONNECT_MS) {
    PQreset(d->conn);
    if (PQstatus(d->conn) == CONNECTION_OK) {
      char srv[256];
      server_name(d->conn, srv, sizeof srv);
      host_log(KMS_LOG_WARN, "reconnected to PostgreSQL %s after the connection was lost", srv);
      d->reconnecting = 1; /* no nested reconnect from the statements below */
      host_status s = hold_claimer_lock(d, r);
      d->reconnecting = 0;
      if (s != HOST_OK) return s;
      if (had_lock) {
        PGresult *res = PQexec(d->conn, "SELECT pg_try_advisory_lock(" HOST_PG_LOCK_CLASS ", "
                               HOST_PG_LOCK_DELIVERY ")");
        d->lock_held = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
                       PQgetvalue(res, 0, 0)[0] == 't';
        PQclear(res);
        if (!d->lock_held)
          host_log(KMS_LOG_WARN, "the delivery lock was lost with the connection and another "
                   "process holds it now; outbox claims keep delivery safe");
      }
      return HOST_OK;
    }
    d->clock->sleep_ms(d->clock->ctx, PG_RECONNECT_PAUSE_MS);
  }
  return pg_fail(d, NULL, r);
}

host_status host_pg_query(host_pg_db *d, const char *sql, int n, const char *const *vals,
                          const int *lens, const int *fmts, int binary, PGresult **out,
                          host_result *r) {
  if (out) *out = NULL;
  for (int attempt = 0;; attempt++) {
    /* Without parameters: the simple protocol, which also runs several
     * statements (a migration step). */
    PGresult *res = n == 0 && !binary ? PQexec(d->conn, sql)
                                      : PQexecParams(d->conn, sql, n, NULL, vals, lens, fmts,
                                                     binary);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
      if (out) *out = res;
      else PQclear(res);
      return HOST_OK;
    }
    int lost = PQstatus(d->conn) == CONNECTION_BAD;
    if (!lost || d->in_tx || d->reconnecting || attempt > 0) {
      host_status s = pg_fail(d, res, r);
      PQclear(res);
      return s;
    }
    PQclear(res);
    if (host_pg_reconnect(d, r) != HOST_OK) return r->status;
  }
}

static host_status pg_exec(host_pg_db *d, const char *sql, host_result *r) {
  return host_pg_query(d, sql, 0, NULL, NULL, NULL, 0, NULL, r);
}

static void pg_rollback(host_pg_db *d) {
  if (PQstatus(d->conn) == CONNECTION_OK) PQclear(PQexec(d->conn, "ROLLBACK"));
  d->in_tx = 0;
}

host_status host_pg_tx(host_pg_db *d, host_status (*body)(host_pg_db *, void *, host_result *),
                       void *ctx, host_result *r) {
  for (int attempt = 0;; attempt++) {
    if (pg_exec(d, "BEGIN", r) != HOST_OK) return r->status;
    d->in_tx = 1;
    host_status s = body(d, ctx, r);
    if (s == HOST_OK) {
      PGresult *res = PQexec(d->conn, "COMMIT");
      int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
      d->in_tx = 0;
      if (ok) {
        PQclear(res);
        return HOST_OK;
      }
      if (PQstatus(d->conn) == CONNECTION_BAD) {
        PQclear(res);
        return host_fail(r, HOST_FAILED, "the connection to PostgreSQL was lost while "
                         "committing: the change may or may not be saved; check with "
                         "`kms-host key list`");
      }
      s = pg_fail(d, res, r);
      PQclear(res);
      return s;
    }
    int lost = PQstatus(d->conn) == CONNECTION_BAD;
    pg_rollback(d);
    if (!lost || attempt > 0) return s;
    if (host_pg_reconnect(d, r) != HOST_OK) return r->status;
  }
}

/* ------------------------------------------------------------- migrations */

typedef struct migrate_ctx {
  const host_migration *steps;
  size_t n;
  char srv[256];
} migrate_ctx;

static host_status migrate_body(host_pg_db *d, void *vctx, host_result *r) {
  migrate_ctx *m = vctx;
  int target = m->n ? m->steps[m->n - 1].version : 0;
  PGresult *res = NULL;
  /* Concurrent first starts queue here; the later ones then see the
   * version the first one wrote. */
  if (pg_exec(d, "SELECT pg_advisory_xact_lock(" HOST_PG_LOCK_CLASS ", " HOST_PG_LOCK_MIGRATE ")",
              r) != HOST_OK ||
      pg_exec(d, "CREATE TABLE IF NOT EXISTS kms_host_schema("
                 "id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL)", r) !=
          HOST_OK ||
      pg_exec(d, "INSERT INTO kms_host_schema VALUES (1, 0) ON CONFLICT (id) DO NOTHING", r) !=
          HOST_OK ||
      host_pg_query(d, "SELECT version FROM kms_host_schema WHERE id = 1", 0, NULL, NULL, NULL,
                    0, &res, r) != HOST_OK)
    return r->status;
  int v = atoi(PQgetvalue(res, 0, 0));
  PQclear(res);
  if (v > target)
    return host_fail(r, HOST_CONFIG, "database (PostgreSQL %s) has kms-host schema version %d, "
                     "newer than this kms-host understands (%d): it was written by a newer "
                     "kms-host; use that version (or newer), or another database", m->srv, v,
                     target);
  for (size_t i = 0; i < m->n; i++) {
    if (m->steps[i].version <= v) continue;
    char ver[16];
    snprintf(ver, sizeof ver, "%d", m->steps[i].version);
    const char *args[1] = {ver};
    host_result step = {HOST_OK, ""};
    if (pg_exec(d, m->steps[i].sql, &step) != HOST_OK ||
        host_pg_query(d, "UPDATE kms_host_schema SET version = $1::integer WHERE id = 1", 1,
                      args, NULL, NULL, 0, NULL, &step) != HOST_OK)
      return host_fail(r, HOST_FAILED, "%s (migrating to schema version %d)", step.msg,
                       m->steps[i].version);
  }
  return HOST_OK;
}

host_status host_pg_migrate(host_db *db, const host_migration *steps, size_t n, host_result *r) {
  host_pg_db *d = (host_pg_db *)db;
  migrate_ctx m = {steps, n, ""};
  server_name(d->conn, m.srv, sizeof m.srv);
  return host_pg_tx(d, migrate_body, &m, r);
}

int host_pg_schema_version(host_db *db) {
  PGresult *res = NULL;
  host_result ignored = {HOST_OK, ""};
  if (host_pg_query((host_pg_db *)db, "SELECT version FROM kms_host_schema WHERE id = 1", 0, NULL,
                    NULL, NULL, 0, &res, &ignored) != HOST_OK)
    return -1;
  int v = PQntuples(res) == 1 ? atoi(PQgetvalue(res, 0, 0)) : -1;
  PQclear(res);
  return v;
}

/* ------------------------------------------------------------------- open */

/* KMS_HOST_OUTBOX_LEASE: whole seconds, 1..86400. */
static host_status lease_from_env(unsigned *out, host_result *r) {
  const char *s = getenv("KMS_HOST_OUTBOX_LEASE");
  *out = PG_LEASE_DEFAULT;
  if (!s) return HOST_OK;
  char *end;
  unsigned long v = strtoul(s, &end, 10);
  if (!*s || *end || *s == '-' || v < 1 || v > PG_LEASE_MAX)
    return host_fail(r, HOST_CONFIG, "KMS_HOST_OUTBOX_LEASE: expected whole seconds from 1 to "
                     "%u (how long an outbox claim holds), got '%s'", PG_LEASE_MAX, s);
  *out = (unsigned)v;
  return HOST_OK;
}

/* A claimer number no other live connection has (1 .. 2^31-1), and the
 * session lock that tells the others this connection is alive. */
static void claimer_name(char *buf, size_t n) {
  unsigned char rnd[4] = {0};
  (void)RAND_bytes(rnd, sizeof rnd);
  unsigned long v = ((unsigned long)rnd[0] << 24 | (unsigned long)rnd[1] << 16 |
                     (unsigned long)rnd[2] << 8 | rnd[3]) & 0x7fffffffUL;
  snprintf(buf, n, "%lu", v ? v : 1UL);
}

/* Take the session lock on this connection's claimer number; a number
 * another live connection holds (a 1 in 2^31 chance) is drawn again, except
 * after a reconnect, when our own claims carry it. */
static host_status hold_claimer_lock(host_pg_db *d, host_result *r) {
  for (int i = 0; i < 8; i++) {
    const char *const args[1] = {d->claimer};
    PGresult *res = NULL;
    if (host_pg_query(d, "SELECT pg_try_advisory_lock(" HOST_PG_LOCK_CLAIMS ", $1::integer)", 1,
                      args, NULL, NULL, 0, &res, r) != HOST_OK)
      return r->status;
    int got = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (got) return HOST_OK;
    claimer_name(d->claimer, sizeof d->claimer);
  }
  return host_fail(r, HOST_FAILED, "database: no free outbox claimer number after 8 tries");
}

/* Server notices ("relation ... already exists, skipping") are not for
 * the operator; libpq would print them to stderr. */
static void quiet_notice(void *arg, const char *message) {
  (void)arg;
  (void)message;
}

static PGconn *pg_connect(const char *url) {
  char app[64];
  snprintf(app, sizeof app, "kms-host pid %ld", (long)getpid());
  /* Our defaults first: the URL (expanded from dbname) overrides them. */
  const char *const keys[] = {"connect_timeout", "options", "application_name", "dbname", NULL};
  const char *const vals[] = {"10", "-c statement_timeout=30000", app, url, NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (c) PQsetNoticeProcessor(c, quiet_notice, NULL);
  return c;
}

host_status host_db_open_pg(const char *url, host_db **out, host_result *r) {
  *out = NULL;
  host_pg_db *d = calloc(1, sizeof *d);
  if (!d) return host_fail(r, HOST_FAILED, "out of memory");
  d->base.ops = &host_pg_ops;
  d->clock = host_clock_system();
  claimer_name(d->claimer, sizeof d->claimer);
  if (lease_from_env(&d->lease_s, r) != HOST_OK) {
    free(d);
    return r->status;
  }
  d->conn = pg_connect(url);
  if (!d->conn) {
    free(d);
    return host_fail(r, HOST_FAILED, "out of memory");
  }
  if (PQstatus(d->conn) != CONNECTION_OK) {
    char srv[256], msg[HOST_ERR_SIZE];
    server_name(d->conn, srv, sizeof srv);
    one_line(PQerrorMessage(d->conn), msg, sizeof msg);
    host_fail(r, HOST_FAILED, "cannot connect to PostgreSQL %s: %s", srv, msg);
    host_db_close(&d->base);
    return HOST_FAILED;
  }
  if (hold_claimer_lock(d, r) != HOST_OK ||
      host_pg_migrate(&d->base, pg_schema_history, HOST_SCHEMA_VERSION, r) != HOST_OK) {
    host_db_close(&d->base);
    return r->status;
  }
  *out = &d->base;
  return HOST_OK;
}

void host_pg_close(host_db *db) {
  host_pg_db *d = (host_pg_db *)db;
  PQfinish(d->conn); /* ends the session: its advisory locks go with it */
  free(d);
}
