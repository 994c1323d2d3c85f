/*
 * store.c -- the storage interface: host_store_* forward to the store the
 * connection belongs to (store.h), and the helpers both stores share.
 *
 * The key and outbox logic above (keys.c, outbox.c, main.c, serve) is
 * written once against these functions; store_sqlite.c and store_pg.c hold
 * the SQL of each store; store_open.c opens the one a target names. Thread
 * safety: as the connection (one thread at a time).
 */
#include "store.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

void host_db_close(host_db *db) {
  if (db) db->ops->close(db);
}

const char *host_db_kind(const host_db *db) { return db->ops->kind; }

host_status host_db_lock(host_db *db, const char *target, unsigned timeout_ms,
                         const host_clock *clock, int *fd, host_result *r) {
  return db->ops->lock(db, target, timeout_ms, clock, fd, r);
}

void host_outbox_item_free(host_outbox_item *it) {
  free(it->name);
  if (it->value) OPENSSL_cleanse(it->value, it->len);
  free(it->value);
  free(it->location);
  memset(it, 0, sizeof *it);
}

void host_key_row_free(host_key_row *row) {
  free(row->alias);
  free(row->secret_name);
  free(row->team_id);
  free(row->location);
  memset(row, 0, sizeof *row);
}

host_status host_store_find(host_db *db, const char *alias, const char *token_hash,
                            host_key_row *row, host_result *r) {
  return db->ops->find(db, alias, token_hash, row, r);
}

host_status host_store_generate(host_db *db, const char *key_id, const char *token_hash,
                                const char *alias, const char *name, const char *key,
                                host_result *r) {
  return db->ops->generate(db, key_id, token_hash, alias, NULL, "", name, key, r);
}

host_status host_store_enqueue_orphan_delete(host_db *db, const char *name,
                                             const char *location, int *owned,
                                             host_result *r) {
  return db->ops->enqueue_orphan_delete(db, name, location ? location : "", owned, r);
}

host_status host_store_generate_at(host_db *db, const char *key_id, const char *token_hash,
                                   const char *alias, const char *team_id, const char *location,
                                   const char *name, const char *key, host_result *r) {
  return db->ops->generate(db, key_id, token_hash, alias, team_id, location ? location : "",
                           name, key, r);
}

host_status host_store_delete(host_db *db, const host_key_row *row, host_result *r) {
  return db->ops->remove(db, row, r);
}

host_status host_store_regenerate(host_db *db, const host_key_row *row, const char *token_hash,
                                  const char *name, const char *key, int drop_old,
                                  host_result *r) {
  return db->ops->regenerate(db, row, token_hash, name, key, drop_old, r);
}

host_status host_store_rename(host_db *db, const host_key_row *row, const char *alias,
                              const char *name, const char *key, host_result *r) {
  return db->ops->rename(db, row, alias, name, key, r);
}

host_status host_store_enqueue(host_db *db, host_outbox_op op, const char *name,
                               const char *value, size_t len, host_result *r) {
  return db->ops->enqueue(db, op, name, "", value, len, r);
}

host_status host_store_enqueue_at(host_db *db, host_outbox_op op, const char *name,
                                  const char *location, const char *value, size_t len,
                                  host_result *r) {
  return db->ops->enqueue(db, op, name, location ? location : "", value, len, r);
}

host_status host_store_next(host_db *db, host_outbox_item *it, int *found, host_result *r) {
  return db->ops->next(db, it, found, r);
}

host_status host_store_landed(host_db *db, long long seq, host_result *r) {
  return db->ops->landed(db, seq, r);
}

void host_store_failed(host_db *db, long long seq, const char *why) {
  db->ops->failed(db, seq, why);
}

host_status host_store_pending(host_db *db, long *n, host_result *r) {
  return db->ops->pending(db, n, r);
}

host_status host_store_list(host_db *db, const host_list_sink *sink, host_result *r) {
  return db->ops->list(db, sink, r);
}

/* ------------------------------------------------------------------ teams */

host_status host_store_team_put(host_db *db, const char *team_id, const char *team_alias,
                                const char *location, int create, host_result *r) {
  return db->ops->team_put(db, team_id, team_alias, location ? location : "", create, r);
}

host_status host_store_team_get(host_db *db, const char *team_id, host_team_row *t,
                                host_result *r) {
  return db->ops->team_get(db, team_id, t, r);
}

host_status host_store_team_list(host_db *db, void (*fn)(void *ctx, const host_team_row *t),
                                 void *ctx, host_result *r) {
  return db->ops->team_list(db, fn, ctx, r);
}

host_status host_store_team_remove(host_db *db, const char *team_id, host_result *r) {
  return db->ops->team_remove(db, team_id, r);
}

host_status host_store_locations(host_db *db, void (*fn)(void *ctx, const char *location),
                                 void *ctx, host_result *r) {
  return db->ops->locations(db, fn, ctx, r);
}

host_status host_store_key_locations(host_db *db, host_key_location_fn fn, void *ctx,
                                     host_result *r) {
  return db->ops->key_locations(db, fn, ctx, r);
}
