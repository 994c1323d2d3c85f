/*
 * outbox.c -- delivering the durable queue of secret-manager operations.
 *
 * A key change and the store operation it implies were committed in ONE
 * transaction (store.c). Delivery takes the oldest queued operation, calls
 * the plugin, and removes the row only after the plugin said it landed,
 * stopping at the first failure so order is kept. Both operations are
 * idempotent at the store (rewriting the same value; deleting a missing
 * secret is KMS_OK), so a crash after the call but before the row is
 * removed only repeats work -- never loses it. Callers hold the delivery
 * lock (host_db_lock) so two processes never deliver concurrently; on
 * PostgreSQL the store's claims also keep replicas that deliver at once
 * from taking the same operation or two of one secret name (host.h).
 * Each operation carries the location it was made for (teams.c): "" goes
 * through the 1.0 calls, anything else through the 1.1 calls with the
 * location as per-call options -- never to the default place instead.
 */
#include "host.h"

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

/* Hand one operation to the plugin. */
static kms_status deliver_one(kms_client *client, const host_outbox_item *it, kms_error *e) {
  if (!client)
    return kms_error_set(e, KMS_UNAVAILABLE, 0,
                         "no secret-manager instance to deliver it to (general_settings."
                         "key_management_system is not set, or its plugin could not start)");
  if (!it->location || !*it->location) { /* the instance's own location: the 1.0 calls */
    if (it->op == HOST_OUTBOX_WRITE)
      return kms_client_write(client, it->name, it->value, it->len, NULL, e);
    return kms_client_delete(client, it->name, e);
  }
  /* A team's location: the 1.1 calls with the location as options. A
   * plugin without them gets KMS_UNSUPPORTED from the loader (it is not
   * called, so nothing lands in the default place) and the row stays. */
  char buf[HOST_LOCATION_TEXT_MAX];
  kms_setting set[HOST_LOCATION_NKEYS];
  size_t n = 0;
  host_result lr = {HOST_OK, ""};
  if (host_location_settings(it->location, buf, set, &n, &lr) != HOST_OK)
    return kms_error_set(e, KMS_INVALID_ARGUMENT, 0, "%s", lr.msg);
  kms_call_options o;
  memset(&o, 0, sizeof o);
  o.struct_size = sizeof o;
  o.location = set;
  o.n_location = n;
  if (it->op == HOST_OUTBOX_WRITE)
    return kms_client_write_opt(client, it->name, it->value, it->len, NULL, &o, e);
  return kms_client_delete_opt(client, it->name, &o, e);
}

/* " (at namespace=..., ...)" for messages about a team's location, or "". */
static void at_text(const host_outbox_item *it, char *out, size_t n) {
  char buf[HOST_LOCATION_TEXT_MAX];
  if (it->location && *it->location)
    snprintf(out, n, " (at %s)", host_location_describe(it->location, buf));
  else
    out[0] = '\0';
}

/* Nothing this process may take: on SQLite the queue is empty; on
 * PostgreSQL the rest may be claimed by another live kms-host. */
static host_status claimed_elsewhere(host_db *db, long *left, host_result *r) {
  if (host_store_pending(db, left, r) != HOST_OK) return r->status;
  if (*left == 0) return HOST_OK;
  return host_fail(r, HOST_QUEUED, "%ld operation(s) are being delivered by another kms-host "
                   "(claimed; a claim of a process that died lapses at once, one of a process "
                   "that hangs after KMS_HOST_OUTBOX_LEASE seconds)", *left);
}

host_status host_outbox_deliver(host_db *db, kms_client *client, long *left, host_result *r) {
  *left = 0;
  for (;;) {
    host_outbox_item it;
    int found;
    if (host_store_next(db, &it, &found, r) != HOST_OK) return r->status;
    if (!found) return claimed_elsewhere(db, left, r);
    kms_error e;
    kms_status ks = deliver_one(client, &it, &e);
    const char *verb = it.op == HOST_OUTBOX_WRITE ? "write" : "delete";
    char at[HOST_LOCATION_TEXT_MAX + 8];
    at_text(&it, at, sizeof at);
    if (ks != KMS_OK) {
      host_fail(r, HOST_QUEUED, "%s %s%s: %s (%s)", verb, it.name, at, e.message,
                kms_status_str(ks));
      host_store_failed(db, it.seq, r->msg);
      host_outbox_item_free(&it);
      host_result pr = {HOST_OK, ""};
      if (host_store_pending(db, left, &pr) != HOST_OK) return host_fail(r, HOST_FAILED, "%s",
                                                                          pr.msg);
      return HOST_QUEUED;
    }
    host_log(KMS_LOG_INFO, "outbox: %s %s%s landed", verb, it.name, at);
    long long seq = it.seq;
    host_outbox_item_free(&it);
    if (host_store_landed(db, seq, r) != HOST_OK) return r->status;
  }
}

host_status host_outbox_deliver_after_commit(host_db *db, kms_client *client, host_result *r) {
  host_crash_point();
  long left = 0;
  host_result d = {HOST_OK, ""};
  host_status s = host_outbox_deliver(db, client, &left, &d);
  if (s == HOST_OK) return HOST_OK;
  if (s == HOST_QUEUED)
    return host_fail(r, HOST_QUEUED, "the key change is saved, but %ld secret-manager "
                     "operation(s) are still queued: %s; run `kms-host sync` once the secret "
                     "manager is reachable (every later key change retries too)", left, d.msg);
  return host_fail(r, HOST_FAILED, "the key change is saved, but the outbox could not be "
                   "delivered: %s", d.msg);
}
