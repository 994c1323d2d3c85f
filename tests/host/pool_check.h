/*
 * pool_check.h -- one check of host_db_pool for both stores (the SQLite
 * unit test and the PostgreSQL claims test compile pool_check.c): threads
 * share a pool smaller than their number, each taking a connection,
 * queueing operations and giving it back; every operation must be there.
 */
#ifndef KMS_HOST_POOL_CHECK_H
#define KMS_HOST_POOL_CHECK_H

/* Runs the check against `target` (a path or a URL) whose outbox is empty.
 * Fails through cmocka's assertions. */
void pool_check(const char *target);

#endif
