/*
 * reconcile.c -- `kms-host reconcile`: does the secret manager hold exactly
 * the secrets the key table says it should? (ABI 1.1 kms_client_list_names.)
 *
 * Keys live in more than one place: the instance's own location, and each
 * team's namespace/mount/path_prefix as it was when the key was made (a key
 * remembers its location; teams.c). So reconcile visits every location a
 * key can live in: the default one, each team's current one (where the
 * team's next key goes, and where a hand-made or lost secret of the team
 * would be), every distinct location stored on a key, and every location a
 * queued operation goes to. Per location it lists the names under
 * prefix_for_stored_virtual_keys, compares them with the keys stored THERE
 * (a key owns (location, name), never a bare name), and confirms with a
 * read that bypasses the cache (a Vault LIST also shows soft-deleted
 * secrets, which a read answers NOT_FOUND). Findings, each with its
 * location:
 *   orphan   a live secret no key owns there (a crash between delivery and
 *            commit elsewhere, a hand-made secret, a key deleted while the
 *            delete was lost)
 *   missing  a key whose secret is not at its stored location
 * Repairs only ever go through the outbox, to the finding's location, so a
 * failure queues instead of losing work: a queued write of a missing secret
 * or a queued delete of an orphan is delivered; --delete-orphans enqueues a
 * delete per orphan first, each through host_store_enqueue_orphan_delete,
 * which re-checks ownership in the enqueue's own transaction (a key made
 * meanwhile, by serve or another replica, keeps its secret). A missing
 * secret with no queued write cannot be recreated -- keys.c keeps only the
 * key's SHA-256 -- so it is reported with the fix (regenerate).
 */
#include "hostcmds.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct rc_key {
  char key_id[HOST_KEY_ID_HEX + 1];
  char *alias;    /* or NULL */
  char *name;     /* its secret, or NULL when it was never stored */
  char *location; /* its stored location text, "" the instance's own */
} rc_key;

typedef struct rc_op {
  long long seq;
  int is_write;
  char *name;
  char *location;
  int attempts;
  char *last_error; /* or NULL */
} rc_op;

/* The key table and the queue, as host_store_list showed them. */
typedef struct rc_snapshot {
  rc_key *keys;
  size_t n_keys, cap_keys;
  rc_op *ops;
  size_t n_ops, cap_ops;
  int oom;
} rc_snapshot;

/* Where secrets live: a location text, its key/value pairs for
 * kms_call_options.location (none: the instance's configured location),
 * the teams whose settings point there now, and the keys stored there. */
typedef struct rc_location {
  char *text;
  char buf[HOST_LOCATION_TEXT_MAX];
  kms_setting pairs[HOST_LOCATION_NKEYS];
  size_t n_pairs;
  char **teams;
  size_t n_teams;
  const rc_key **keys;
  size_t n_keys;
  size_t listed; /* names the listing returned */
} rc_location;

typedef struct rc_locations {
  rc_location *v;
  size_t n, cap;
} rc_locations;

typedef enum rc_kind { RC_ORPHAN, RC_MISSING } rc_kind;
typedef enum rc_state {
  RC_FOUND,    /* orphan kept (no --delete-orphans) */
  RC_ENQUEUED, /* its repair is in the outbox, not delivered yet */
  RC_LANDED,   /* its repair was delivered in this run */
  RC_LOST,     /* missing and nothing can write it again */
  RC_MOOT      /* a key took the orphan's name meanwhile: left alone */
} rc_state;

typedef struct rc_finding {
  rc_kind kind;
  char *name;
  const rc_key *key;      /* RC_MISSING: the owner */
  const rc_location *loc;
  long long queued_seq;   /* the queued operation that explains it, or 0 */
  rc_state state;
} rc_finding;

typedef struct rc_report {
  rc_finding *f;
  size_t n, cap;
} rc_report;

host_status host_reconcile_parse(int argc, char **argv, host_reconcile_args *a, host_result *r) {
  memset(a, 0, sizeof *a);
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--delete-orphans")) a->delete_orphans = 1;
    else if (!strcmp(argv[i], "--json")) a->json = 1;
    else return host_fail(r, HOST_USAGE, "reconcile: unexpected argument '%s'", argv[i]);
  }
  return HOST_OK;
}

/* ------------------------------------------------------------ snapshot */

static void *grow(void *p, size_t *cap, size_t n, size_t size) {
  if (n < *cap) return p;
  size_t c = *cap ? *cap * 2 : 16;
  void *q = realloc(p, c * size);
  if (q) *cap = c;
  return q;
}

static char *dup_or_null(const char *s, int *oom) {
  if (!s) return NULL;
  char *d = strdup(s);
  if (!d) *oom = 1;
  return d;
}

static void snap_key(void *ctx, const char *key_id, const char *alias, const char *name,
                     const char *team_id, const char *location, const char *updated) {
  (void)updated, (void)team_id;
  rc_snapshot *s = ctx;
  rc_key *k = grow(s->keys, &s->cap_keys, s->n_keys, sizeof *k);
  if (!k) {
    s->oom = 1;
    return;
  }
  s->keys = k;
  k += s->n_keys++;
  memset(k, 0, sizeof *k);
  snprintf(k->key_id, sizeof k->key_id, "%s", key_id);
  k->alias = dup_or_null(alias, &s->oom);
  k->name = dup_or_null(name, &s->oom);
  k->location = dup_or_null(location ? location : "", &s->oom);
}

static void snap_op(void *ctx, long long seq, const char *op, const char *name,
                    const char *location, int attempts, const char *last_error) {
  rc_snapshot *s = ctx;
  rc_op *o = grow(s->ops, &s->cap_ops, s->n_ops, sizeof *o);
  if (!o) {
    s->oom = 1;
    return;
  }
  s->ops = o;
  o += s->n_ops++;
  o->seq = seq;
  o->is_write = !strcmp(op, "write");
  o->name = dup_or_null(name, &s->oom);
  o->location = dup_or_null(location ? location : "", &s->oom);
  o->attempts = attempts;
  o->last_error = dup_or_null(last_error, &s->oom);
}

static void snap_free(rc_snapshot *s) {
  for (size_t i = 0; i < s->n_keys; i++) {
    free(s->keys[i].alias);
    free(s->keys[i].name);
    free(s->keys[i].location);
  }
  for (size_t i = 0; i < s->n_ops; i++) {
    free(s->ops[i].name);
    free(s->ops[i].location);
    free(s->ops[i].last_error);
  }
  free(s->keys);
  free(s->ops);
  memset(s, 0, sizeof *s);
}

static host_status snap_take(host_db *db, rc_snapshot *s, host_result *r) {
  memset(s, 0, sizeof *s);
  host_list_sink sink = {snap_key, snap_op, s};
  if (host_store_list(db, &sink, r) != HOST_OK) {
    snap_free(s);
    return r->status;
  }
  if (s->oom) {
    snap_free(s);
    return host_fail(r, HOST_FAILED, "out of memory");
  }
  return HOST_OK;
}

/* The last queued operation of `name` at `location` (the one that decides
 * its fate; the same name elsewhere is another secret). */
static const rc_op *last_op(const rc_snapshot *s, const char *name, const char *location) {
  const rc_op *found = NULL;
  for (size_t i = 0; i < s->n_ops; i++)
    if (s->ops[i].name && !strcmp(s->ops[i].name, name) && !strcmp(s->ops[i].location, location))
      found = &s->ops[i];
  return found;
}

/* ------------------------------------------------------------ locations */

static void rc_locations_free(rc_locations *ls) {
  for (size_t i = 0; i < ls->n; i++) {
    free(ls->v[i].text);
    for (size_t t = 0; t < ls->v[i].n_teams; t++) free(ls->v[i].teams[t]);
    free(ls->v[i].teams);
    free(ls->v[i].keys);
  }
  free(ls->v);
  memset(ls, 0, sizeof *ls);
}

/* The entry for location text `text`, added when new; NULL with r filled
 * on failure. (Its pairs are split once every entry is in: they point into
 * the entry's own buf, which a realloc of ls->v would move.) */
static rc_location *loc_add(rc_locations *ls, const char *text, host_result *r) {
  for (size_t i = 0; i < ls->n; i++)
    if (!strcmp(ls->v[i].text, text)) return &ls->v[i];
  rc_location *v = grow(ls->v, &ls->cap, ls->n, sizeof *v);
  if (!v) {
    host_fail(r, HOST_FAILED, "out of memory");
    return NULL;
  }
  ls->v = v;
  rc_location *l = &v[ls->n];
  memset(l, 0, sizeof *l);
  if (!(l->text = strdup(text))) {
    host_fail(r, HOST_FAILED, "out of memory");
    return NULL;
  }
  ls->n++;
  return l;
}

typedef struct team_acc {
  rc_locations *ls;
  host_result *r;
  host_status st;
} team_acc;

/* host_store_team_list's callback: the team's current location, and the
 * team's id on it (for the report). */
static void loc_of_team(void *ctx, const host_team_row *t) {
  team_acc *a = ctx;
  if (a->st != HOST_OK) return;
  rc_location *l = loc_add(a->ls, t->location, a->r);
  char **v = l ? realloc(l->teams, (l->n_teams + 1) * sizeof *v) : NULL;
  if (v) l->teams = v;
  if (v && (v[l->n_teams] = strdup(t->team_id))) l->n_teams++;
  else a->st = l ? host_fail(a->r, HOST_FAILED, "out of memory") : a->r->status;
}

/* Every location a key can live in (see the top of this file), each with
 * the keys whose secret is stored there. The default location comes first
 * and is always visited. */
static host_status rc_locations_find(host_db *db, const rc_snapshot *s, rc_locations *ls,
                                     host_result *r) {
  memset(ls, 0, sizeof *ls);
  if (!loc_add(ls, "", r)) return r->status;
  team_acc acc = {ls, r, HOST_OK};
  if (host_store_team_list(db, loc_of_team, &acc, r) != HOST_OK) return r->status;
  if (acc.st != HOST_OK) return acc.st;
  for (size_t i = 0; i < s->n_keys; i++)
    if (s->keys[i].name && !loc_add(ls, s->keys[i].location, r)) return r->status;
  for (size_t i = 0; i < s->n_ops; i++)
    if (!loc_add(ls, s->ops[i].location, r)) return r->status;
  for (size_t i = 0; i < ls->n; i++) { /* ls->v stays where it is from here on */
    rc_location *l = &ls->v[i];
    if (host_location_settings(l->text, l->buf, l->pairs, &l->n_pairs, r) != HOST_OK)
      return r->status;
    if (!(l->keys = calloc(s->n_keys ? s->n_keys : 1, sizeof *l->keys)))
      return host_fail(r, HOST_FAILED, "out of memory");
    for (size_t k = 0; k < s->n_keys; k++)
      if (s->keys[k].name && !strcmp(s->keys[k].location, l->text))
        l->keys[l->n_keys++] = &s->keys[k];
  }
  return HOST_OK;
}

/* A location as the report names it: "default" or "namespace=a, mount=kv". */
static const char *loc_name(const rc_location *loc, char buf[HOST_LOCATION_TEXT_MAX]) {
  return host_location_describe(loc->text, buf);
}

static kms_call_options rc_options(const rc_location *loc, uint32_t flags) {
  kms_call_options o;
  memset(&o, 0, sizeof o);
  o.struct_size = sizeof o;
  o.flags = flags;
  o.location = loc->n_pairs ? loc->pairs : NULL;
  o.n_location = loc->n_pairs;
  return o;
}

/* Does `name` have a live value at `loc`? Read past the cache and wipe the
 * value at once (it is a virtual key). *live 1/0; HOST_BACKEND when the
 * backend could not say. */
static host_status rc_live(kms_client *client, const rc_location *loc, const char *name,
                           int *live, host_result *r) {
  kms_call_options o = rc_options(loc, KMS_CALL_BYPASS_CACHE);
  kms_secret *s = NULL;
  kms_error e;
  kms_status st = kms_client_read_opt(client, name, &o, &s, &e);
  kms_client_free_secret(client, s);
  *live = st == KMS_OK;
  if (st == KMS_OK || st == KMS_NOT_FOUND) return HOST_OK;
  char where[HOST_LOCATION_TEXT_MAX];
  return host_fail(r, st == KMS_UNSUPPORTED ? HOST_UNSUPPORTED : HOST_BACKEND,
                   "reconcile: cannot read %s at %s to check it: %s (%s); nothing was changed",
                   name, loc_name(loc, where), e.message, kms_status_str(st));
}

static host_status add_finding(rc_report *rep, rc_kind kind, const char *name, const rc_key *key,
                               const rc_location *loc, const rc_op *op, host_result *r) {
  rc_finding *f = grow(rep->f, &rep->cap, rep->n, sizeof *f);
  if (!f) return host_fail(r, HOST_FAILED, "out of memory");
  rep->f = f;
  f += rep->n;
  memset(f, 0, sizeof *f);
  if (!(f->name = strdup(name))) return host_fail(r, HOST_FAILED, "out of memory");
  rep->n++;
  f->kind = kind;
  f->key = key;
  f->loc = loc;
  /* only the right kind of queued operation explains it */
  if (op && op->is_write == (kind == RC_MISSING)) f->queued_seq = op->seq;
  f->state = f->queued_seq ? RC_ENQUEUED : kind == RC_MISSING ? RC_LOST : RC_FOUND;
  return HOST_OK;
}

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Orphans among the listed names, then keys whose secret is missing.
 * `owned` is the sorted names of the location's keys (`n_owned`). */
static host_status compare(kms_client *client, const char *prefix, const rc_location *loc,
                           char **names, size_t n, const char **owned, size_t n_owned,
                           const rc_snapshot *s, rc_report *rep, host_result *r) {
  for (size_t i = 0; i < n; i++) {
    if (bsearch(&names[i], owned, n_owned, sizeof *owned, name_cmp)) continue; /* below */
    int live;
    if (rc_live(client, loc, names[i], &live, r) != HOST_OK) return r->status;
    if (live && add_finding(rep, RC_ORPHAN, names[i], NULL, loc,
                            last_op(s, names[i], loc->text), r) != HOST_OK)
      return r->status;
  }
  size_t plen = strlen(prefix);
  for (size_t i = 0; i < loc->n_keys; i++) {
    const rc_key *k = loc->keys[i];
    const char *nm = k->name;
    int listed = n && bsearch(&nm, names, n, sizeof *names, name_cmp) != NULL;
    int live = 0;
    /* a name outside today's prefix (written under an earlier one) is not
     * in the listing: a read decides */
    if ((listed || strncmp(k->name, prefix, plen)) && rc_live(client, loc, k->name, &live, r) !=
                                                          HOST_OK)
      return r->status;
    if (!live && add_finding(rep, RC_MISSING, k->name, k, loc, last_op(s, k->name, loc->text),
                             r) != HOST_OK)
      return r->status;
  }
  return HOST_OK;
}

/* One location: list what is under the prefix there and compare it with
 * the keys stored there. */
static host_status reconcile_location(kms_client *client, const char *prefix, rc_location *loc,
                                      const rc_snapshot *s, rc_report *rep, host_result *r) {
  kms_call_options o = rc_options(loc, 0);
  char **names = NULL, where[HOST_LOCATION_TEXT_MAX];
  size_t n = 0;
  kms_error e;
  kms_status st = kms_client_list_names(client, prefix, &o, &names, &n, &e);
  if (st == KMS_UNSUPPORTED)
    return host_fail(r, HOST_UNSUPPORTED, "reconcile: the plugin cannot list secrets at %s (%s); "
                     "reconcile needs a plugin with list_secrets (ABI 1.1)",
                     loc_name(loc, where), e.message);
  if (st != KMS_OK)
    return host_fail(r, HOST_BACKEND, "reconcile: cannot list the secrets under %s at %s: %s "
                     "(%s); nothing was compared or changed", prefix, loc_name(loc, where),
                     e.message, kms_status_str(st));
  loc->listed = n;
  if (n) qsort(names, n, sizeof *names, name_cmp); /* sorted already; bsearch relies on it */
  const char **owned = calloc(loc->n_keys ? loc->n_keys : 1, sizeof *owned);
  for (size_t i = 0; owned && i < loc->n_keys; i++) owned[i] = loc->keys[i]->name;
  host_status hs = owned ? HOST_OK : host_fail(r, HOST_FAILED, "out of memory");
  if (hs == HOST_OK) {
    if (loc->n_keys) qsort(owned, loc->n_keys, sizeof *owned, name_cmp);
    hs = compare(client, prefix, loc, names, n, owned, loc->n_keys, s, rep, r);
  }
  free(owned);
  kms_client_list_names_free(names, n);
  return hs;
}

/* ------------------------------------------------------------ repairs */

/* Test hook (README): with KMS_HOST_TEST_RECONCILE_PAUSE=PATH, reconcile
 * --delete-orphans creates PATH.paused once it has compared and before it
 * enqueues any delete, then waits (at most 120 s) until PATH is gone, so a
 * test can commit a key change in that window and see it survive. */
static void test_pause(void) {
  const char *path = getenv("KMS_HOST_TEST_RECONCILE_PAUSE");
  if (!path || !*path) return;
  char marker[4096];
  snprintf(marker, sizeof marker, "%s.paused", path);
  FILE *f = fopen(marker, "w");
  if (f) fclose(f);
  struct timespec tick = {0, 20 * 1000 * 1000};
  for (int i = 0; i < 6000 && access(path, F_OK) == 0; i++) nanosleep(&tick, NULL);
}

/* --delete-orphans: a delete per orphan at its location, queued like a key
 * delete's. Each goes through host_store_enqueue_orphan_delete, which checks
 * in the enqueue's own transaction that no key owns (location, name) now: a
 * key created since the listing (by serve or another replica, which commit
 * without the delivery lock) keeps its secret, however close the race. */
static host_status enqueue_orphan_deletes(host_db *db, rc_report *rep, host_result *r) {
  int any = 0;
  for (size_t i = 0; i < rep->n; i++)
    any |= rep->f[i].kind == RC_ORPHAN && rep->f[i].state == RC_FOUND;
  if (any) test_pause();
  host_status s = HOST_OK;
  for (size_t i = 0; i < rep->n && s == HOST_OK; i++) {
    rc_finding *f = &rep->f[i];
    if (f->kind != RC_ORPHAN || f->state != RC_FOUND) continue;
    int owned = 0;
    s = host_store_enqueue_orphan_delete(db, f->name, f->loc->text, &owned, r);
    if (s == HOST_OK) f->state = owned ? RC_MOOT : RC_ENQUEUED;
  }
  return s;
}

/* Deliver the outbox when a finding waits on it, then mark what landed
 * (its name has no queued operation left at its location). *why: the
 * delivery error. */
static host_status deliver_repairs(host_db *db, kms_client *client, rc_report *rep, char *why,
                                   size_t why_size, host_result *r) {
  why[0] = '\0';
  int waiting = 0;
  for (size_t i = 0; i < rep->n; i++) waiting |= rep->f[i].state == RC_ENQUEUED;
  if (!waiting) return HOST_OK;
  long left = 0;
  host_result d = {HOST_OK, ""};
  host_status s = host_outbox_deliver(db, client, &left, &d);
  if (s == HOST_FAILED) return host_fail(r, HOST_FAILED, "reconcile: %s", d.msg);
  if (s == HOST_QUEUED) snprintf(why, why_size, "%s", d.msg);
  rc_snapshot after;
  if (snap_take(db, &after, r) != HOST_OK) return r->status;
  for (size_t i = 0; i < rep->n; i++)
    if (rep->f[i].state == RC_ENQUEUED && !last_op(&after, rep->f[i].name, rep->f[i].loc->text))
      rep->f[i].state = RC_LANDED;
  snap_free(&after);
  return HOST_OK;
}

/* ------------------------------------------------------------ report */

static const char *state_word(const rc_finding *f) {
  switch (f->state) {
  case RC_FOUND: return "kept";
  case RC_ENQUEUED: return f->kind == RC_ORPHAN ? "delete_queued" : "write_queued";
  case RC_LANDED: return f->kind == RC_ORPHAN ? "deleted" : "redelivered";
  case RC_LOST: return "lost";
  case RC_MOOT: return "now_owned";
  }
  return "?";
}

/* What the operator does about a finding that remains, or "". */
static void fix_text(const rc_finding *f, char *buf, size_t size) {
  buf[0] = '\0';
  if (f->state == RC_FOUND)
    snprintf(buf, size, "run `kms-host reconcile --delete-orphans` to delete it through the "
             "outbox");
  else if (f->state == RC_ENQUEUED)
    snprintf(buf, size, "run `kms-host sync` once the secret manager is reachable");
  else if (f->state == RC_LOST && f->key->alias)
    snprintf(buf, size, "only the key's SHA-256 is stored, so its value cannot be written again: "
             "give the key a new value with `kms-host key regenerate --alias %s`",
             f->key->alias);
  else if (f->state == RC_LOST)
    snprintf(buf, size, "only the key's SHA-256 is stored, so its value cannot be written again: "
             "give the key (id %s) a new value with `kms-host key regenerate --key -` (the key "
             "on standard input)", f->key->key_id);
}

/* Names come from the secret manager's listing and errors from the plugin:
 * escaped so they cannot drive a terminal (io.c). */
static void put_safe(FILE *out, const char *s) {
  char *e = host_text_escape(s, strlen(s));
  fputs(e ? e : "(not shown: out of memory)", out);
  free(e);
}

static void print_finding_text(const rc_finding *f, FILE *out) {
  char fix[HOST_ERR_SIZE];
  fix_text(f, fix, sizeof fix);
  char where[HOST_LOCATION_TEXT_MAX];
  fputs(f->kind == RC_ORPHAN ? "orphan " : "missing ", out);
  put_safe(out, f->name);
  fprintf(out, " at %s", loc_name(f->loc, where));
  if (f->kind == RC_ORPHAN)
    fputs(": no key owns it", out);
  else
    fprintf(out, ": key %s%s%s has no secret there", f->key->key_id,
            f->key->alias ? " alias " : "", f->key->alias ? f->key->alias : "");
  if (f->queued_seq)
    fprintf(out, " (its %s was queued as #%lld)", f->kind == RC_ORPHAN ? "delete" : "write",
            f->queued_seq);
  fprintf(out, " -- %s%s%s\n", state_word(f), fix[0] ? "; " : "", fix);
}

/* One line per location: `location default prefix=litellm/ listed=2
 * keys=2 teams=acme,beta` (teams: those whose settings point there now). */
static void print_text(const rc_report *rep, const rc_locations *ls, const char *prefix,
                       const rc_snapshot *q, FILE *out) {
  char where[HOST_LOCATION_TEXT_MAX];
  for (size_t i = 0; i < ls->n; i++) {
    const rc_location *l = &ls->v[i];
    fprintf(out, "location %s prefix=%s listed=%zu keys=%zu", loc_name(l, where), prefix,
            l->listed, l->n_keys);
    for (size_t t = 0; t < l->n_teams; t++) fprintf(out, "%s%s", t ? "," : " teams=", l->teams[t]);
    fputc('\n', out);
  }
  for (size_t i = 0; i < rep->n; i++) print_finding_text(&rep->f[i], out);
  for (size_t i = 0; i < q->n_ops; i++) {
    fprintf(out, "queued #%lld %s %s at %s (attempts %d", q->ops[i].seq,
            q->ops[i].is_write ? "write" : "delete", q->ops[i].name,
            host_location_describe(q->ops[i].location, where), q->ops[i].attempts);
    if (q->ops[i].last_error) {
      fputs("; last error: ", out);
      put_safe(out, q->ops[i].last_error);
    }
    fputs(")\n", out);
  }
}

static cJSON *location_json(const rc_location *loc) {
  if (!loc->n_pairs) return cJSON_CreateNull();
  cJSON *o = cJSON_CreateObject();
  for (size_t p = 0; o && p < loc->n_pairs; p++)
    cJSON_AddStringToObject(o, loc->pairs[p].key, loc->pairs[p].value);
  return o;
}

static cJSON *finding_json(const rc_finding *f) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  char fix[HOST_ERR_SIZE];
  fix_text(f, fix, sizeof fix);
  cJSON_AddStringToObject(o, "name", f->name);
  cJSON_AddItemToObject(o, "location", location_json(f->loc));
  if (f->key) {
    cJSON_AddStringToObject(o, "key_id", f->key->key_id);
    if (f->key->alias) cJSON_AddStringToObject(o, "alias", f->key->alias);
    else cJSON_AddNullToObject(o, "alias");
  }
  cJSON_AddStringToObject(o, "state", state_word(f));
  if (f->queued_seq) cJSON_AddNumberToObject(o, "queued_seq", (double)f->queued_seq);
  else cJSON_AddNullToObject(o, "queued_seq");
  if (fix[0]) cJSON_AddStringToObject(o, "fix", fix);
  else cJSON_AddNullToObject(o, "fix");
  return o;
}

/* A queued operation's location text as location_json shows one. */
static cJSON *text_json(const char *text) {
  rc_location l;
  host_result ignored = {HOST_OK, ""};
  memset(&l, 0, sizeof l);
  l.text = (char *)text;
  if (host_location_settings(text, l.buf, l.pairs, &l.n_pairs, &ignored) != HOST_OK)
    return cJSON_CreateString(text); /* not one this host writes: shown as stored */
  return location_json(&l);
}

static host_status print_json(const rc_report *rep, const rc_locations *locs, const char *prefix,
                              const rc_snapshot *q, const char *result, FILE *out,
                              host_result *r) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return host_fail(r, HOST_FAILED, "out of memory");
  cJSON_AddStringToObject(o, "result", result);
  cJSON_AddStringToObject(o, "prefix", prefix);
  cJSON *ls = cJSON_AddArrayToObject(o, "locations");
  for (size_t i = 0; ls && i < locs->n; i++) {
    const rc_location *loc = &locs->v[i];
    cJSON *l = cJSON_CreateObject();
    if (!l) break;
    cJSON_AddItemToObject(l, "location", location_json(loc));
    cJSON_AddNumberToObject(l, "listed", (double)loc->listed);
    cJSON_AddNumberToObject(l, "keys", (double)loc->n_keys);
    cJSON *teams = cJSON_AddArrayToObject(l, "teams");
    for (size_t t = 0; teams && t < loc->n_teams; t++)
      cJSON_AddItemToArray(teams, cJSON_CreateString(loc->teams[t]));
    cJSON_AddItemToArray(ls, l);
  }
  cJSON *orph = cJSON_AddArrayToObject(o, "orphans"), *miss = cJSON_AddArrayToObject(o, "missing");
  for (size_t i = 0; orph && miss && i < rep->n; i++)
    cJSON_AddItemToArray(rep->f[i].kind == RC_ORPHAN ? orph : miss, finding_json(&rep->f[i]));
  cJSON *qs = cJSON_AddArrayToObject(o, "queued");
  for (size_t i = 0; qs && i < q->n_ops; i++) {
    cJSON *j = cJSON_CreateObject();
    if (!j) break;
    cJSON_AddNumberToObject(j, "seq", (double)q->ops[i].seq);
    cJSON_AddStringToObject(j, "op", q->ops[i].is_write ? "write" : "delete");
    cJSON_AddStringToObject(j, "name", q->ops[i].name);
    cJSON_AddItemToObject(j, "location", text_json(q->ops[i].location));
    cJSON_AddNumberToObject(j, "attempts", q->ops[i].attempts);
    if (q->ops[i].last_error) cJSON_AddStringToObject(j, "last_error", q->ops[i].last_error);
    else cJSON_AddNullToObject(j, "last_error");
    cJSON_AddItemToArray(qs, j);
  }
  char *text = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  if (!text) return host_fail(r, HOST_FAILED, "out of memory");
  fprintf(out, "%s\n", text);
  cJSON_free(text);
  return HOST_OK;
}

/* ------------------------------------------------------------ the run */

static void rc_report_free(rc_report *rep) {
  for (size_t i = 0; i < rep->n; i++) free(rep->f[i].name);
  free(rep->f);
}

/* The outcome after repairs: differences that remain, then queued ones. */
static host_status verdict(const rc_report *rep, const char *why, const char **result,
                           host_result *r) {
  size_t orphans = 0, lost = 0, queued = 0;
  for (size_t i = 0; i < rep->n; i++) {
    orphans += rep->f[i].state == RC_FOUND;
    lost += rep->f[i].state == RC_LOST;
    queued += rep->f[i].state == RC_ENQUEUED;
  }
  *result = orphans + lost ? "differences" : queued ? "queued" : "consistent";
  if (orphans + lost)
    return host_fail(r, HOST_FAILED, "reconcile: %zu difference(s) remain: %zu orphan(s), %zu "
                     "key(s) whose secret is lost%s; the report says what to do", orphans + lost,
                     orphans, lost, queued ? ", and repairs are queued" : "");
  if (queued)
    return host_fail(r, HOST_QUEUED, "reconcile: %zu repair(s) are queued in the outbox%s%s; "
                     "run `kms-host sync` once the secret manager is reachable", queued,
                     why[0] ? ": " : "", why);
  return HOST_OK;
}

static host_status report_out(const rc_report *rep, const rc_locations *locs,
                              const host_config *cfg, host_db *db, const char *why, int json,
                              FILE *out, host_result *r) {
  rc_snapshot q; /* the queue as it is now, after any delivery */
  if (snap_take(db, &q, r) != HOST_OK) return r->status;
  const char *result;
  host_result v = {HOST_OK, ""};
  host_status hs = verdict(rep, why, &result, &v);
  if (json) {
    if (print_json(rep, locs, cfg->prefix, &q, result, out, r) != HOST_OK) hs = r->status;
  } else {
    print_text(rep, locs, cfg->prefix, &q, out);
    fprintf(out, "result: %s\n", result);
  }
  fflush(out);
  snap_free(&q);
  if (hs == v.status) *r = v;
  return hs;
}

host_status host_reconcile_run(host_db *db, const host_config *cfg, kms_client *client,
                               const host_reconcile_args *a, FILE *out, host_result *r) {
  rc_snapshot s;
  if (snap_take(db, &s, r) != HOST_OK) return r->status;
  rc_locations locs;
  rc_report rep = {NULL, 0, 0};
  char why[HOST_ERR_SIZE] = "";
  host_status hs = rc_locations_find(db, &s, &locs, r);
  for (size_t i = 0; hs == HOST_OK && i < locs.n; i++)
    hs = reconcile_location(client, cfg->prefix, &locs.v[i], &s, &rep, r);
  if (hs == HOST_OK && a->delete_orphans) hs = enqueue_orphan_deletes(db, &rep, r);
  if (hs == HOST_OK) hs = deliver_repairs(db, client, &rep, why, sizeof why, r);
  if (hs == HOST_OK) hs = report_out(&rep, &locs, cfg, db, why, a->json, out, r);
  rc_report_free(&rep);
  rc_locations_free(&locs);
  snap_free(&s);
  return hs;
}
