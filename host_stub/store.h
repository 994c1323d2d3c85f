/*
 * store.h -- the storage interface behind host_store_* (host.h): one ops
 * table, two implementations.
 *
 * keys.c, outbox.c, main.c (and serve) call host_store_* with a host_db;
 * store.c forwards each call to db->ops. store_sqlite.c + db.c keep the
 * embedded SQLite file (one machine); store_pg.c + db_pg.c keep the same
 * tables in PostgreSQL (many replicas on one database). Each op has the
 * contract of the host_store_* function of the same name in host.h; every
 * op is one transaction. Internal to host_stub: not for tests or plugins.
 */
#ifndef KMS_HOST_STORE_H
#define KMS_HOST_STORE_H

#include "host.h"

typedef struct host_store_ops {
  const char *kind; /* "sqlite" | "postgresql", for messages */
  host_status (*find)(host_db *db, const char *alias, const char *token_hash,
                      host_key_row *row, host_result *r);
  host_status (*generate)(host_db *db, const char *key_id, const char *token_hash,
                          const char *alias, const char *team_id, const char *location,
                          const char *name, const char *key, host_result *r);
  host_status (*remove)(host_db *db, const host_key_row *row, host_result *r);
  host_status (*regenerate)(host_db *db, const host_key_row *row, const char *token_hash,
                            const char *name, const char *key, int drop_old, host_result *r);
  host_status (*enqueue)(host_db *db, host_outbox_op op, const char *name,
                         const char *location, const char *value, size_t len, host_result *r);
  host_status (*next)(host_db *db, host_outbox_item *it, int *found, host_result *r);
  host_status (*landed)(host_db *db, long long seq, host_result *r);
  void (*failed)(host_db *db, long long seq, const char *why);
  host_status (*pending)(host_db *db, long *n, host_result *r);
  host_status (*list)(host_db *db, const host_list_sink *sink, host_result *r);
  /* The delivery lock (see host_db_lock in host.h). */
  host_status (*lock)(host_db *db, const char *target, unsigned timeout_ms,
                      const host_clock *clock, int *fd, host_result *r);
  void (*close)(host_db *db);
  host_status (*rename)(host_db *db, const host_key_row *row, const char *alias,
                        const char *name, const char *key, host_result *r);
  /* Teams (schema 2; teams.c): location is a location text, never NULL. */
  host_status (*team_put)(host_db *db, const char *team_id, const char *team_alias,
                          const char *location, int create, host_result *r);
  host_status (*team_get)(host_db *db, const char *team_id, host_team_row *t, host_result *r);
  host_status (*team_list)(host_db *db, void (*fn)(void *ctx, const host_team_row *t), void *ctx,
                           host_result *r);
  host_status (*team_remove)(host_db *db, const char *team_id, host_result *r);
  host_status (*locations)(host_db *db, void (*fn)(void *ctx, const char *location), void *ctx,
                           host_result *r);
  host_status (*key_locations)(host_db *db, host_key_location_fn fn, void *ctx, host_result *r);
  host_status (*enqueue_orphan_delete)(host_db *db, const char *name, const char *location,
                                       int *owned, host_result *r);
} host_store_ops;

/* The common head of every implementation's handle. */
struct host_db {
  const host_store_ops *ops;
};

/* The SQLite handle (db.c opens it, store_sqlite.c uses it). */
typedef struct host_sqlite_db {
  host_db base;
  sqlite3 *conn;
} host_sqlite_db;
extern const host_store_ops host_sqlite_ops;

/* The PostgreSQL handle (db_pg.c connects and migrates, store_pg.c runs the
 * statements). */
typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;
typedef struct host_pg_db {
  host_db base;
  PGconn *conn;
  char claimer[16];    /* this connection's name on the outbox rows it claims: a
                          random number it holds a session advisory lock on
                          (class HOST_PG_LOCK_CLAIMS), so a claim of a dead
                          session is seen as dead at once */
  unsigned lease_s;    /* how long a claim holds (KMS_HOST_OUTBOX_LEASE) */
  int in_tx;           /* inside BEGIN: a lost connection is not retried here */
  int reconnecting;    /* host_pg_reconnect's own statements: not retried either */
  int lock_held;       /* the delivery lock (advisory, of this session) */
  const host_clock *clock;
} host_pg_db;
extern const host_store_ops host_pg_ops;

/* Advisory lock keys (classid, objid) of kms-host in a shared database:
 * class 0x6b6d7368 ("kmsh"); 1 the delivery lock, 2 migrations; class
 * 0x6b6d7369 holds one lock per live connection (its claimer number). */
#define HOST_PG_LOCK_CLASS "1802335080"
#define HOST_PG_LOCK_DELIVERY "1"
#define HOST_PG_LOCK_MIGRATE "2"
#define HOST_PG_LOCK_CLAIMS "1802335081" /* class of the claimers' locks */

/* Run one statement with text parameters (NULL binds NULL; `lens`/`fmts`
 * may be NULL: all text) and results in text (binary 0) or binary (1).
 * Outside a transaction a lost connection is re-established (bounded) and
 * the statement run again; inside one the error is returned (the caller's
 * transaction is retried whole, host_pg_tx). HOST_OK with *res (PQclear it;
 * `res` may be NULL) or HOST_FAILED. */
host_status host_pg_query(host_pg_db *d, const char *sql, int n, const char *const *vals,
                          const int *lens, const int *fmts, int binary, PGresult **res,
                          host_result *r);
/* Run `body` in BEGIN ... COMMIT (ROLLBACK on error). A connection lost
 * before COMMIT reconnects and runs it all again, once; lost during COMMIT
 * the outcome is unknown and the message says so. */
host_status host_pg_tx(host_pg_db *d, host_status (*body)(host_pg_db *d, void *ctx,
                                                          host_result *r),
                       void *ctx, host_result *r);
/* Bring the schema to steps[n-1].version under the migration lock;
 * refuse a newer one (HOST_CONFIG). Exposed for tests. */
host_status host_pg_migrate(host_db *db, const host_migration *steps, size_t n, host_result *r);
/* The recorded schema version, or -1. */
int host_pg_schema_version(host_db *db);
void host_pg_close(host_db *db);
/* Reconnect after the server went away (restart, failover), for a bounded
 * time; re-takes the delivery lock if this session held it. */
host_status host_pg_reconnect(host_pg_db *d, host_result *r);

#endif /* KMS_HOST_STORE_H */
