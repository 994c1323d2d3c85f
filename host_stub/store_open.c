/*
 * store_open.c -- which store a target names, opened: a PostgreSQL URL
 * (db_pg.c) or a SQLite path (db.c). main.c picks the target from --db,
 * kms_db_path, database_url or DATABASE_URL. Kept apart from store.c so
 * the interface does not depend on the stores that implement it.
 * Pure dispatch; thread safety as the open functions (any thread).
 */
#include "host.h"

#include <string.h>

int host_db_is_url(const char *target) {
  return target && (!strncmp(target, "postgresql://", 13) || !strncmp(target, "postgres://", 11));
}

host_status host_store_open(const char *target, host_db **db, host_result *r) {
  return host_db_is_url(target) ? host_db_open_pg(target, db, r) : host_db_open(target, db, r);
}
