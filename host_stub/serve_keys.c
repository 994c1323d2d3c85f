/*
 * serve_keys.c -- the endpoints of `kms-host serve`, shaped as LiteLLM's
 * proxy shapes them: /key/generate, /key/delete, /key/regenerate (and
 * /key/{key}/regenerate), /key/info, /key/list, /health/liveliness and
 * /health/readiness; and teams (teams.c): /team/new, /team/update,
 * /team/info, /team/list, /team/delete, whose secret-manager settings
 * (metadata.secret_manager_settings) say where /key/generate {"team_id"}
 * stores the team's keys.
 *
 * Key changes go through host_key_* (one transaction with their outbox
 * rows) under db_mu; the reply is built after the commit, once the worker
 * delivered the change or the bounded wait ran out. What the host does not
 * keep (metadata, team_id, duration, models, budgets ...) is accepted and
 * echoed in /key/generate's reply as LiteLLM echoes its request, and listed
 * under kms_host.not_enforced so nobody mistakes it for a limit.
 */
#include "serve.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

/* Fields of LiteLLM's /key/generate the host stores or acts on. */
static const char *const kept_fields[] = {"key", "key_alias", "team_id", NULL};

static int is_kept(const char *name) {
  for (size_t i = 0; kept_fields[i]; i++)
    if (!strcmp(kept_fields[i], name)) return 1;
  return 0;
}

static host_key_ctx key_ctx(serve_ctx *s) {
  host_key_ctx k = {s->db, s->cfg, s->plugin, s->client};
  return k;
}

/* kms_host: where the secret-manager side of a change stands. */
static void add_delivery(serve_ctx *s, cJSON *o, const host_key_change *c) {
  cJSON *k = cJSON_AddObjectToObject(o, "kms_host");
  if (!k) return;
  if (c->secret_name) cJSON_AddStringToObject(k, "secret_name", c->secret_name);
  if (c->removed_secret) cJSON_AddStringToObject(k, "removed_secret", c->removed_secret);
  char loc[HOST_LOCATION_TEXT_MAX];
  if (c->location) cJSON_AddStringToObject(k, "location", host_location_describe(c->location, loc));
  if (!c->queued) {
    cJSON_AddStringToObject(k, "secret_manager", "not_stored");
    return;
  }
  serve_delivery d;
  serve_worker_deliver(s->worker, s->deliver_wait_ms, &d);
  cJSON_AddStringToObject(k, "secret_manager", d.landed ? "landed" : "queued");
  if (!d.landed) {
    if (d.queued >= 0) cJSON_AddNumberToObject(k, "queued_operations", (double)d.queued);
    cJSON_AddStringToObject(k, "error", d.error);
  }
}

/* LiteLLM's key_name: "sk-...XXXX", the last four characters. */
static void add_key_fields(cJSON *o, const host_key_change *c) {
  char name[16];
  size_t n = strlen(c->key);
  snprintf(name, sizeof name, "sk-...%s", n >= 4 ? c->key + n - 4 : "");
  cJSON_DeleteItemFromObjectCaseSensitive(o, "key");
  cJSON_AddStringToObject(o, "key", c->key);
  cJSON_DeleteItemFromObjectCaseSensitive(o, "key_alias");
  if (c->alias) cJSON_AddStringToObject(o, "key_alias", c->alias);
  else cJSON_AddNullToObject(o, "key_alias");
  cJSON_AddStringToObject(o, "key_name", name);
  cJSON_AddStringToObject(o, "token_id", c->key_id);
  if (!cJSON_HasObjectItem(o, "expires")) cJSON_AddNullToObject(o, "expires");
}

/* The request's fields the host accepted but does not act on. */
static void add_not_enforced(cJSON *o, const cJSON *req) {
  cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "kms_host");
  cJSON *list = k ? cJSON_AddArrayToObject(k, "not_enforced") : NULL;
  if (!list) return;
  for (const cJSON *f = req->child; f; f = f->next)
    if (!is_kept(f->string)) cJSON_AddItemToArray(list, cJSON_CreateString(f->string));
}

/* Whether the host has team `team_id` (caller holds db_mu). */
static int team_known(serve_ctx *s, const char *team_id) {
  host_team_row t;
  host_result r = {HOST_OK, ""};
  if (!host_team_id_valid(team_id) || host_store_team_get(s->db, team_id, &t, &r) != HOST_OK)
    return 0;
  host_team_row_free(&t);
  return 1;
}

static void generate(serve_ctx *s, serve_req *q, serve_reply *rep) {
  cJSON *req = serve_parse_object(q, rep);
  if (!req) return;
  const char *alias, *key, *team;
  if (serve_get_string(req, "key_alias", &alias, rep) != 0 ||
      serve_get_string(req, "key", &key, rep) != 0 ||
      serve_get_string(req, "team_id", &team, rep) != 0) {
    cJSON_Delete(req);
    return;
  }
  host_key_ctx k = key_ctx(s);
  host_key_change c;
  host_result r = {HOST_OK, ""};
  pthread_mutex_lock(&s->db_mu);
  /* A team this host does not know (never created with /team/new or `team
   * add`), as LiteLLM's generate_key_fn: with litellm_settings.
   * key_generation_settings it is refused (400, LiteLLM's message); else it
   * has no settings, so the key goes to the default place (where LiteLLM's
   * hook, finding no team, writes it too) and team_id is listed as not
   * enforced. The key remembers that place, so a team created later with
   * that id never redirects its delete. */
  int unknown_team = team && !team_known(s, team);
  if (unknown_team && s->cfg->key_generation_settings) {
    pthread_mutex_unlock(&s->db_mu);
    serve_reply_error(rep, 400, "bad_request_error", "team_id", "Unable to find team object "
                      "in database. Team ID: %s", team);
    cJSON_Delete(req);
    return;
  }
  if (unknown_team) team = NULL;
  host_status st = host_key_generate_team(&k, alias, key, team, &c, &r);
  pthread_mutex_unlock(&s->db_mu);
  if (st != HOST_OK) {
    serve_reply_result(rep, &r, team && strstr(r.msg, "team") ? "team_id" : "key_alias");
    cJSON_Delete(req);
    return;
  }
  cJSON *o = cJSON_Duplicate(req, 1); /* LiteLLM echoes the request's fields */
  if (o) {
    add_key_fields(o, &c);
    add_delivery(s, o, &c);
    add_not_enforced(o, req);
    cJSON *ne = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "kms_host"),
                                                 "not_enforced");
    if (unknown_team && ne) cJSON_AddItemToArray(ne, cJSON_CreateString("team_id"));
  }
  host_key_change_clear(&c);
  cJSON_Delete(req);
  serve_reply_json(rep, 200, o);
}

/* Delete one key (by value or alias); 0, or -1 with rep filled. */
static int delete_one(serve_ctx *s, const char *alias, const char *key, int *queued,
                      host_key_change *last, serve_reply *rep) {
  if (key && !host_key_format_valid(key)) {
    serve_reply_error(rep, 400, "bad_request_error", "keys", "'keys' holds a value that is not a "
                      "virtual key (sk- followed by at least 22 base64url characters)");
    return -1;
  }
  host_key_ctx k = key_ctx(s);
  host_key_change c;
  host_result r = {HOST_OK, ""};
  pthread_mutex_lock(&s->db_mu);
  host_status st = host_key_delete(&k, alias, key, &c, &r);
  pthread_mutex_unlock(&s->db_mu);
  if (st != HOST_OK) {
    serve_reply_result(rep, &r, alias ? "key_aliases" : "keys");
    return -1;
  }
  *queued |= c.queued;
  host_key_change_clear(last);
  *last = c;
  return 0;
}

/* keys / key_aliases: arrays of strings, or absent. */
static int string_array(const cJSON *req, const char *name, const cJSON **out, serve_reply *rep) {
  *out = cJSON_GetObjectItemCaseSensitive(req, name);
  if (!*out || cJSON_IsNull(*out)) {
    *out = NULL;
    return 0;
  }
  int ok = cJSON_IsArray(*out);
  for (const cJSON *i = ok ? (*out)->child : NULL; i && ok; i = i->next) ok = cJSON_IsString(i);
  if (!ok) serve_reply_error(rep, 400, "bad_request_error", name,
                             "'%s' must be a list of strings", name);
  return ok ? 0 : -1;
}

static void delete_keys(serve_ctx *s, serve_req *q, serve_reply *rep) {
  cJSON *req = serve_parse_object(q, rep);
  if (!req) return;
  const cJSON *keys, *aliases;
  if (string_array(req, "keys", &keys, rep) != 0 ||
      string_array(req, "key_aliases", &aliases, rep) != 0) {
    cJSON_Delete(req);
    return;
  }
  if (!cJSON_GetArraySize(keys) && !cJSON_GetArraySize(aliases)) {
    serve_reply_error(rep, 400, "bad_request_error", "keys",
                      "give 'keys' (a list of sk-... keys) and/or 'key_aliases'");
    cJSON_Delete(req);
    return;
  }
  int queued = 0, failed = 0;
  host_key_change last;
  memset(&last, 0, sizeof last);
  cJSON *deleted = cJSON_CreateArray();
  for (const cJSON *i = keys ? keys->child : NULL; i && !failed; i = i->next)
    if (!(failed = delete_one(s, NULL, i->valuestring, &queued, &last, rep) != 0))
      cJSON_AddItemToArray(deleted, cJSON_CreateString(i->valuestring));
  for (const cJSON *i = aliases ? aliases->child : NULL; i && !failed; i = i->next)
    if (!(failed = delete_one(s, i->valuestring, NULL, &queued, &last, rep) != 0))
      cJSON_AddItemToArray(deleted, cJSON_CreateString(i->valuestring));
  if (!failed) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "deleted_keys", deleted);
    deleted = NULL;
    host_key_change_clear(&last); /* the names of the last only; one summary for all */
    last.queued = queued;
    add_delivery(s, o, &last);
    serve_reply_json(rep, 200, o);
  } else if (queued) {
    /* Keys before the failing one are deleted and their store work is
     * committed: start its delivery, without waiting (the reply is the error). */
    serve_delivery d;
    serve_worker_deliver(s->worker, 0, &d);
  }
  host_key_change_clear(&last);
  cJSON_Delete(deleted);
  cJSON_Delete(req);
}

static void regenerate(serve_ctx *s, const char *path_key, serve_req *q, serve_reply *rep) {
  cJSON *req = serve_parse_object(q, rep);
  if (!req) return;
  const char *key = path_key;
  if (!key && serve_get_string(req, "key", &key, rep) != 0) {
    cJSON_Delete(req);
    return;
  }
  if (!key) {
    serve_reply_error(rep, 400, "bad_request_error", "key",
                      "give the key to regenerate: {\"key\": \"sk-...\"} or "
                      "/key/sk-.../regenerate");
    cJSON_Delete(req);
    return;
  }
  host_key_ctx k = key_ctx(s);
  host_key_change c;
  host_result r = {HOST_OK, ""};
  pthread_mutex_lock(&s->db_mu);
  host_status st = host_key_regenerate(&k, NULL, key, &c, &r);
  pthread_mutex_unlock(&s->db_mu);
  cJSON_Delete(req);
  if (st != HOST_OK) {
    serve_reply_result(rep, &r, "key");
    return;
  }
  cJSON *o = cJSON_CreateObject();
  add_key_fields(o, &c);
  add_delivery(s, o, &c);
  host_key_change_clear(&c);
  serve_reply_json(rep, 200, o);
}

/* POST /key/update {"key": "sk-...", "key_alias": ...}: an alias change
 * moves the stored secret (LiteLLM does the same); other fields are
 * echoed and listed as not enforced. */
static void update(serve_ctx *s, serve_req *q, serve_reply *rep) {
  cJSON *req = serve_parse_object(q, rep);
  if (!req) return;
  const char *key, *alias;
  if (serve_get_string(req, "key", &key, rep) != 0 ||
      serve_get_string(req, "key_alias", &alias, rep) != 0) {
    cJSON_Delete(req);
    return;
  }
  if (!key) {
    serve_reply_error(rep, 400, "bad_request_error", "key", "give the key to update: "
                      "{\"key\": \"sk-...\", \"key_alias\": \"new-alias\"}");
    cJSON_Delete(req);
    return;
  }
  host_key_ctx k = key_ctx(s);
  host_key_change c;
  memset(&c, 0, sizeof c);
  host_result r = {HOST_OK, ""};
  host_status st = HOST_OK;
  if (cJSON_HasObjectItem(req, "key_alias")) { /* "key_alias": null removes it */
    pthread_mutex_lock(&s->db_mu);
    st = host_key_update_alias(&k, key, alias, &c, &r);
    pthread_mutex_unlock(&s->db_mu);
  } else {
    char hash[65];
    host_key_row row;
    pthread_mutex_lock(&s->db_mu);
    st = host_key_format_valid(key) && host_key_hash(key, hash) == 0
             ? host_store_find(s->db, NULL, hash, &row, &r)
             : host_fail(&r, HOST_FAILED, "'key' expects a virtual key (sk- followed by at "
                         "least 22 base64url characters)");
    pthread_mutex_unlock(&s->db_mu);
    if (st == HOST_OK) {
      memcpy(c.key_id, row.key_id, sizeof c.key_id);
      c.alias = row.alias;
      row.alias = NULL;
      host_key_row_free(&row);
    }
  }
  if (st != HOST_OK) {
    serve_reply_result(rep, &r, "key");
    cJSON_Delete(req);
    return;
  }
  cJSON *o = cJSON_Duplicate(req, 1);
  if (o) {
    cJSON_DeleteItemFromObjectCaseSensitive(o, "key_alias");
    if (c.alias) cJSON_AddStringToObject(o, "key_alias", c.alias);
    else cJSON_AddNullToObject(o, "key_alias");
    cJSON_AddStringToObject(o, "token_id", c.key_id);
    add_delivery(s, o, &c);
    add_not_enforced(o, req);
  }
  host_key_change_clear(&c);
  cJSON_Delete(req);
  serve_reply_json(rep, 200, o);
}

/* ------------------------------------------------------------ read-only */

/* A key as LiteLLM's /key/info and /key/list show one: token, key_alias,
 * team_id (null: none). LiteLLM has no field for where a key's secret
 * lives (it derives it from the team's settings of the moment), so the
 * key's remembered location goes under kms_host, as /key/generate's does:
 * "default" or "namespace=team-a, mount=kv"; null when no secret is stored. */
static cJSON *row_info(const host_key_row *row) {
  cJSON *i = cJSON_CreateObject();
  cJSON_AddStringToObject(i, "token", row->key_id);
  if (row->alias) cJSON_AddStringToObject(i, "key_alias", row->alias);
  else cJSON_AddNullToObject(i, "key_alias");
  if (row->secret_name) cJSON_AddStringToObject(i, "secret_name", row->secret_name);
  else cJSON_AddNullToObject(i, "secret_name");
  if (row->team_id) cJSON_AddStringToObject(i, "team_id", row->team_id);
  else cJSON_AddNullToObject(i, "team_id");
  cJSON *k = cJSON_AddObjectToObject(i, "kms_host");
  char buf[HOST_LOCATION_TEXT_MAX];
  if (k && row->secret_name)
    cJSON_AddStringToObject(k, "location", host_location_describe(row->location, buf));
  else if (k)
    cJSON_AddNullToObject(k, "location");
  return i;
}

/* GET /key/info[?key=sk-...]: the master key asks about any key; a virtual
 * key only about itself (no key= means the caller's own key). */
static void key_info(serve_ctx *s, serve_caller who, const char *credential, const char *key,
                     serve_reply *rep) {
  if (!key) key = credential;
  if (who == SERVE_CALLER_VIRTUAL && strcmp(key, credential) != 0) {
    serve_reply_error(rep, 403, "auth_error", "key", "a virtual key may only ask /key/info about "
                      "itself; use the master key for other keys");
    return;
  }
  char hash[65];
  if (!host_key_format_valid(key) || host_key_hash(key, hash) != 0) {
    serve_reply_error(rep, 400, "bad_request_error", "key", "'key' expects a virtual key "
                      "(sk- followed by at least 22 base64url characters)");
    return;
  }
  host_key_row row;
  host_result r = {HOST_OK, ""};
  pthread_mutex_lock(&s->db_mu);
  host_status st = host_store_find(s->db, NULL, hash, &row, &r);
  pthread_mutex_unlock(&s->db_mu);
  if (st != HOST_OK) {
    serve_reply_result(rep, &r, "key");
    return;
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "key", row.key_id); /* the id: never the key itself */
  cJSON_AddItemToObject(o, "info", row_info(&row));
  host_key_row_free(&row);
  serve_reply_json(rep, 200, o);
}

typedef struct list_acc {
  cJSON *keys;
  const char *team; /* ?team_id=: only that team's keys, or NULL */
  int full;
  long queued;
  unsigned long seen, first, size; /* the page is rows [first, first + size) */
} list_acc;

static void list_key(void *ctx, const char *key_id, const char *alias, const char *name,
                     const char *team, const char *location, const char *updated) {
  list_acc *a = ctx;
  if (a->team && (!team || strcmp(team, a->team) != 0)) return;
  unsigned long at = a->seen++;
  if (at < a->first || at >= a->first + a->size) return;
  if (!a->full) {
    cJSON_AddItemToArray(a->keys, cJSON_CreateString(key_id));
    return;
  }
  host_key_row row = {"", (char *)alias, (char *)name, (char *)team, (char *)location};
  snprintf(row.key_id, sizeof row.key_id, "%s", key_id);
  cJSON *i = row_info(&row);
  cJSON_AddStringToObject(i, "updated_at", updated);
  cJSON_AddItemToArray(a->keys, i);
}

static void list_queued(void *ctx, long long seq, const char *op, const char *name,
                        const char *location, int attempts, const char *last_error) {
  (void)seq, (void)op, (void)name, (void)location, (void)attempts, (void)last_error;
  ((list_acc *)ctx)->queued++;
}

/* A query parameter as a whole number in [lo, hi], `dflt` when absent; -1
 * with a 400 reply otherwise. */
static long query_uint(const char *v, const char *name, long lo, long hi, long dflt,
                       serve_reply *rep) {
  if (!v) return dflt;
  char *end;
  long n = strtol(v, &end, 10);
  if (*v && !*end && n >= lo && n <= hi) return n;
  serve_reply_error(rep, 400, "bad_request_error", name, "'%s' must be a whole number from %ld "
                    "to %ld", name, lo, hi);
  return -1;
}

/* GET /key/list?page=P&size=S (LiteLLM's defaults: page 1, size 10, size
 * at most 100) [&return_full_object=true] [&team_id=T: that team's keys,
 * as LiteLLM filters]. */
static void key_list(serve_ctx *s, serve_query_fn query, void *qctx, serve_reply *rep) {
  long page = query_uint(query(qctx, "page"), "page", 1, 1000000, 1, rep);
  long size = page < 0 ? -1 : query_uint(query(qctx, "size"), "size", 1, 100, 10, rep);
  if (size < 0) return;
  const char *full = query(qctx, "return_full_object");
  list_acc a = {cJSON_CreateArray(), query(qctx, "team_id"), full && !strcmp(full, "true"), 0,
                0, (unsigned long)(page - 1) * (unsigned long)size, (unsigned long)size};
  host_list_sink sink = {list_key, list_queued, &a};
  host_result r = {HOST_OK, ""};
  pthread_mutex_lock(&s->db_mu);
  host_status st = host_store_list(s->db, &sink, &r);
  pthread_mutex_unlock(&s->db_mu);
  if (st != HOST_OK) {
    cJSON_Delete(a.keys);
    serve_reply_result(rep, &r, NULL);
    return;
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddItemToObject(o, "keys", a.keys);
  cJSON_AddNumberToObject(o, "total_count", (double)a.seen);
  cJSON_AddNumberToObject(o, "current_page", (double)page);
  cJSON_AddNumberToObject(o, "total_pages", (double)((a.seen + a.size - 1) / a.size));
  cJSON_AddNumberToObject(o, "queued_operations", (double)a.queued);
  serve_reply_json(rep, 200, o);
}

/* /health/readiness: the database answers and the secret manager's
 * refresh (revalidate credentials) succeeds. 503 otherwise. */
static void readiness(serve_ctx *s, serve_reply *rep) {
  long queued = -1;
  host_result r = {HOST_OK, ""};
  pthread_mutex_lock(&s->db_mu);
  int db_ok = host_store_pending(s->db, &queued, &r) == HOST_OK;
  pthread_mutex_unlock(&s->db_mu);
  const char *sm = "not configured";
  char why[HOST_ERR_SIZE] = "";
  if (s->plugin && s->client && (s->plugin->capabilities & KMS_CAP_REFRESH)) {
    kms_error e;
    pthread_mutex_lock(&s->plugin_mu);
    kms_status ks = kms_client_refresh(s->client, &e);
    pthread_mutex_unlock(&s->plugin_mu);
    sm = ks == KMS_OK ? "connected" : "unhealthy";
    if (ks != KMS_OK) snprintf(why, sizeof why, "%s (%s)", e.message, kms_status_str(ks));
  } else if (s->plugin) {
    sm = "loaded"; /* no refresh slot: nothing to probe without touching a secret */
  }
  int ok = db_ok && strcmp(sm, "unhealthy") != 0;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "status", ok ? "healthy" : "unhealthy");
  cJSON_AddStringToObject(o, "db", db_ok ? "connected" : "unhealthy");
  cJSON *k = cJSON_AddObjectToObject(o, "secret_manager");
  cJSON_AddStringToObject(k, "name", s->cfg->kms ? s->cfg->kms : "none");
  cJSON_AddStringToObject(k, "status", sm);
  if (why[0]) cJSON_AddStringToObject(k, "error", why);
  cJSON_AddNumberToObject(k, "queued_operations", (double)queued);
  serve_reply_json(rep, ok ? 200 : 503, o);
}

/* ----------------------------------------------------------------- teams */

/* A team as LiteLLM shows it: team_id, team_alias, metadata with the
 * secret-manager settings (LiteLLM keeps them at
 * metadata.secret_manager_settings), plus the host's key count. */
static cJSON *team_json(const host_team_row *t) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "team_id", t->team_id);
  if (t->team_alias) cJSON_AddStringToObject(o, "team_alias", t->team_alias);
  else cJSON_AddNullToObject(o, "team_alias");
  cJSON *sms = cJSON_AddObjectToObject(cJSON_AddObjectToObject(o, "metadata"),
                                       "secret_manager_settings");
  char buf[HOST_LOCATION_TEXT_MAX];
  kms_setting set[HOST_LOCATION_NKEYS];
  size_t n = 0;
  host_result ignored = {HOST_OK, ""};
  if (host_location_settings(t->location, buf, set, &n, &ignored) == HOST_OK)
    for (size_t i = 0; i < n; i++) cJSON_AddStringToObject(sms, set[i].key, set[i].value);
  cJSON_AddNumberToObject(o, "keys", (double)t->keys);
  cJSON_AddStringToObject(o, "updated_at", t->updated_at);
  return o;
}

/* The secret-manager settings of a /team/new or /team/update body:
 * secret_manager_settings (LiteLLM's request field) or
 * metadata.secret_manager_settings, an object of strings. *given 0 when
 * neither is there; else *loc is the location text (teams.c refuses
 * unknown keys, naming them). 0, or -1 with rep filled. */
static int team_settings(const cJSON *req, int *given, char **loc, serve_reply *rep) {
  const cJSON *sms = cJSON_GetObjectItemCaseSensitive(req, "secret_manager_settings");
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(req, "metadata");
  if (!sms && cJSON_IsObject(meta))
    sms = cJSON_GetObjectItemCaseSensitive(meta, "secret_manager_settings");
  *given = sms && !cJSON_IsNull(sms);
  *loc = NULL;
  if (!*given) return 0;
  kms_setting pairs[HOST_LOCATION_NKEYS + 1];
  size_t n = 0;
  int ok = cJSON_IsObject(sms);
  for (const cJSON *f = ok ? sms->child : NULL; f && ok; f = f->next) {
    ok = cJSON_IsString(f) || cJSON_IsNull(f);
    if (ok && n == HOST_LOCATION_NKEYS + 1) break; /* one too many: a repeat or unknown */
    if (ok) pairs[n++] = (kms_setting){f->string, cJSON_IsString(f) ? f->valuestring : NULL};
  }
  if (!ok) {
    serve_reply_error(rep, 400, "bad_request_error", "secret_manager_settings",
                      "'secret_manager_settings' must be an object of strings (namespace, "
                      "mount, path_prefix)");
    return -1;
  }
  host_result r = {HOST_OK, ""};
  if (host_location_from_pairs(pairs, n, "secret_manager_settings", loc, &r) != HOST_OK) {
    serve_reply_result(rep, &r, "secret_manager_settings");
    return -1;
  }
  return 0;
}

/* A team id LiteLLM would generate when none is given: a random UUID. */
static int new_team_id(char out[37]) {
  char a[HOST_KEY_ID_HEX + 1], b[HOST_KEY_ID_HEX + 1];
  if (host_key_id_new(a) != 0 || host_key_id_new(b) != 0) return -1;
  snprintf(out, 37, "%.8s-%.4s-4%.3s-a%.3s-%.12s", a, a + 8, a + 12, b, b + 3);
  return 0;
}

/* Reply with the team as stored now, `status` 200. */
static void reply_team(serve_ctx *s, const char *team_id, serve_reply *rep) {
  host_team_row t;
  host_result r = {HOST_OK, ""};
  pthread_mutex_lock(&s->db_mu);
  host_status st = host_store_team_get(s->db, team_id, &t, &r);
  pthread_mutex_unlock(&s->db_mu);
  if (st != HOST_OK) {
    serve_reply_result(rep, &r, "team_id");
    return;
  }
  serve_reply_json(rep, 200, team_json(&t));
  host_team_row_free(&t);
}

/* POST /team/new and /team/update {team_id, team_alias, secret_manager_settings
 * | metadata.secret_manager_settings}. update keeps what the body leaves out;
 * settings given replace the old ones whole (LiteLLM replaces the field).
 * Other fields (models, budgets ...) are not kept: listed as not enforced. */
static void team_put(serve_ctx *s, int create, serve_req *q, serve_reply *rep) {
  cJSON *req = serve_parse_object(q, rep);
  if (!req) return;
  const char *id, *alias;
  char gen[37], *loc = NULL;
  int given = 0;
  if (serve_get_string(req, "team_id", &id, rep) != 0 ||
      serve_get_string(req, "team_alias", &alias, rep) != 0 ||
      team_settings(req, &given, &loc, rep) != 0)
    goto done;
  if (!id && create && new_team_id(gen) == 0) id = gen;
  if (!id || !host_team_id_valid(id)) {
    serve_reply_error(rep, 400, "bad_request_error", "team_id", "%s", id ? "'team_id' must be "
                      "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
                      : "give the team to update: {\"team_id\": \"...\"}");
    goto done;
  }
  host_team_row old;
  memset(&old, 0, sizeof old);
  host_result r = {HOST_OK, ""};
  pthread_mutex_lock(&s->db_mu);
  host_status st = create ? HOST_OK : host_store_team_get(s->db, id, &old, &r);
  if (st == HOST_OK)
    st = host_store_team_put(s->db, id, alias || create ? alias : old.team_alias,
                             given || create ? (loc ? loc : "") : old.location, create, &r);
  pthread_mutex_unlock(&s->db_mu);
  host_team_row_free(&old);
  if (st != HOST_OK) serve_reply_result(rep, &r, "team_id");
  else reply_team(s, id, rep);
done:
  free(loc);
  cJSON_Delete(req);
}

typedef struct team_acc {
  cJSON *list;
  const char *only; /* /team/info: keys of this team */
} team_acc;

static void team_to_list(void *ctx, const host_team_row *t) {
  cJSON_AddItemToArray(((team_acc *)ctx)->list, team_json(t));
}

static void team_key(void *ctx, const char *key_id, const char *name, const char *team_id,
                     const char *location) {
  team_acc *a = ctx;
  (void)location;
  if (!team_id || strcmp(team_id, a->only) != 0) return;
  cJSON *k = cJSON_CreateObject();
  cJSON_AddStringToObject(k, "token", key_id);
  cJSON_AddStringToObject(k, "secret_name", name);
  cJSON_AddItemToArray(a->list, k);
}

/* GET /team/list (a list, as LiteLLM's), GET /team/info?team_id=T
 * ({team_id, team_info, keys}: the keys with a stored secret). */
static void team_read(serve_ctx *s, const char *info_id, serve_reply *rep) {
  host_result r = {HOST_OK, ""};
  team_acc a = {cJSON_CreateArray(), info_id};
  host_team_row t;
  memset(&t, 0, sizeof t);
  pthread_mutex_lock(&s->db_mu);
  host_status st = info_id ? host_store_team_get(s->db, info_id, &t, &r)
                           : host_store_team_list(s->db, team_to_list, &a, &r);
  if (st == HOST_OK && info_id) st = host_store_key_locations(s->db, team_key, &a, &r);
  pthread_mutex_unlock(&s->db_mu);
  if (st != HOST_OK) {
    cJSON_Delete(a.list);
    host_team_row_free(&t);
    serve_reply_result(rep, &r, "team_id");
    return;
  }
  cJSON *o = a.list;
  if (info_id) {
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "team_id", info_id);
    cJSON_AddItemToObject(o, "team_info", team_json(&t));
    cJSON_AddItemToObject(o, "keys", a.list);
  }
  host_team_row_free(&t);
  serve_reply_json(rep, 200, o);
}

/* POST /team/delete {"team_ids": [...]}: each removed, stopping at the
 * first refusal (a team with keys: 400, unknown: 404). */
static void team_delete(serve_ctx *s, serve_req *q, serve_reply *rep) {
  cJSON *req = serve_parse_object(q, rep);
  const cJSON *ids = NULL;
  if (!req || string_array(req, "team_ids", &ids, rep) != 0) {
    cJSON_Delete(req);
    return;
  }
  if (!cJSON_GetArraySize(ids)) {
    serve_reply_error(rep, 400, "bad_request_error", "team_ids",
                      "give 'team_ids': a list of team ids");
    cJSON_Delete(req);
    return;
  }
  cJSON *deleted = cJSON_CreateArray();
  host_result r = {HOST_OK, ""};
  host_status st = HOST_OK;
  for (const cJSON *i = ids->child; i && st == HOST_OK; i = i->next) {
    pthread_mutex_lock(&s->db_mu);
    st = host_store_team_remove(s->db, i->valuestring, &r);
    pthread_mutex_unlock(&s->db_mu);
    if (st == HOST_OK) cJSON_AddItemToArray(deleted, cJSON_CreateString(i->valuestring));
  }
  if (st == HOST_OK) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "deleted_teams", deleted);
    serve_reply_json(rep, 200, o);
  } else {
    cJSON_Delete(deleted);
    if (strstr(r.msg, "still has"))
      serve_reply_error(rep, 400, "bad_request_error", "team_ids", "%s", r.msg);
    else
      serve_reply_result(rep, &r, "team_ids");
  }
  cJSON_Delete(req);
}

/* --------------------------------------------------------------- routing */

/* Who is calling: the master key, a virtual key this host knows, or nobody. */
static serve_caller identify(serve_ctx *s, const char *credential) {
  if (!credential) return SERVE_CALLER_NONE;
  if (serve_is_master(s->master_sha, credential)) return SERVE_CALLER_MASTER;
  char hash[65];
  if (!host_key_format_valid(credential) || host_key_hash(credential, hash) != 0)
    return SERVE_CALLER_NONE;
  host_key_row row;
  host_result r = {HOST_OK, ""};
  pthread_mutex_lock(&s->db_mu);
  host_status st = host_store_find(s->db, NULL, hash, &row, &r);
  pthread_mutex_unlock(&s->db_mu);
  if (st != HOST_OK) return SERVE_CALLER_NONE;
  host_key_row_free(&row);
  return SERVE_CALLER_VIRTUAL;
}

/* /key/<key>/regenerate: the key between the slashes, or NULL. */
static char *path_key(const char *path) {
  const char *p = path + 5, *end = strchr(p, '/');
  if (strncmp(path, "/key/", 5) != 0 || !end || strcmp(end, "/regenerate") != 0 || end == p)
    return NULL;
  return strndup(p, (size_t)(end - p));
}

static int is(const char *method, const char *path, const char *m, const char *p) {
  return !strcmp(method, m) && !strcmp(path, p);
}

/* The fixed routes, as the access log names them (static strings: the log
 * runs after the request's own buffers are gone). */
static const char *const routes[] = {"/health/liveliness", "/health/liveness",
                                     "/health/readiness", "/key/generate", "/key/delete",
                                     "/key/regenerate", "/key/update", "/key/info", "/key/list",
                                     "/team/new", "/team/update", "/team/info", "/team/list",
                                     "/team/delete", NULL};

static const char *route_of(const char *path) {
  for (size_t i = 0; routes[i]; i++)
    if (!strcmp(routes[i], path)) return routes[i];
  return "(unknown)";
}

/* The team routes (master key only; checked by the caller). */
static void team_route(serve_ctx *s, const char *method, const char *path, serve_query_fn query,
                       void *query_ctx, serve_req *q, serve_reply *rep) {
  if (is(method, path, "POST", "/team/new")) {
    team_put(s, 1, q, rep);
  } else if (is(method, path, "POST", "/team/update")) {
    team_put(s, 0, q, rep);
  } else if (is(method, path, "POST", "/team/delete")) {
    team_delete(s, q, rep);
  } else if (is(method, path, "GET", "/team/list")) {
    team_read(s, NULL, rep);
  } else {
    const char *id = query(query_ctx, "team_id");
    if (id) team_read(s, id, rep);
    else serve_reply_error(rep, 400, "bad_request_error", "team_id", "give ?team_id=...");
  }
}

void serve_handle(serve_ctx *s, const char *method, const char *path, serve_query_fn query,
                  void *query_ctx, const char *credential, serve_req *q, serve_reply *rep) {
  char *pk = NULL;
  q->route = route_of(path);
  if (is(method, path, "GET", "/health/liveliness") || is(method, path, "GET", "/health/liveness")) {
    serve_reply_json(rep, 200, cJSON_CreateString("I'm alive!"));
    return;
  }
  if (is(method, path, "GET", "/health/readiness")) {
    readiness(s, rep);
    return;
  }
  int known = is(method, path, "POST", "/key/generate") || is(method, path, "POST", "/key/delete") ||
              is(method, path, "POST", "/key/regenerate") || is(method, path, "POST", "/key/update") ||
              is(method, path, "GET", "/key/info") ||
              is(method, path, "GET", "/key/list") || is(method, path, "POST", "/team/new") ||
              is(method, path, "POST", "/team/update") || is(method, path, "GET", "/team/info") ||
              is(method, path, "GET", "/team/list") || is(method, path, "POST", "/team/delete");
  if (!known && !strcmp(method, "POST") && (pk = path_key(path))) q->route = "/key/{key}/regenerate";
  if (!known && !pk) {
    serve_reply_error(rep, 404, "not_found_error", NULL, "no such endpoint: %s %s", method,
                      strncmp(path, "/key/", 5) ? path : "/key/...");
    return;
  }
  serve_caller who = identify(s, credential);
  if (who == SERVE_CALLER_NONE) {
    serve_reply_error(rep, 401, "auth_error", "None", "Authentication Error, %s",
                      credential ? "invalid key: send the master key (general_settings.master_key)"
                                 : "no api key passed in: send 'Authorization: Bearer <master "
                                   "key>' or 'x-litellm-api-key: <master key>'");
  } else if (who == SERVE_CALLER_VIRTUAL && !is(method, path, "GET", "/key/info")) {
    serve_reply_error(rep, 403, "auth_error", "None", "only the master key may call %s",
                      q->route);
  } else if (is(method, path, "POST", "/key/generate")) {
    generate(s, q, rep);
  } else if (is(method, path, "POST", "/key/delete")) {
    delete_keys(s, q, rep);
  } else if (is(method, path, "POST", "/key/update")) {
    update(s, q, rep);
  } else if (is(method, path, "POST", "/key/regenerate") || pk) {
    regenerate(s, pk, q, rep);
  } else if (is(method, path, "GET", "/key/info")) {
    key_info(s, who, credential, query(query_ctx, "key"), rep);
  } else if (!strncmp(path, "/team/", 6)) {
    team_route(s, method, path, query, query_ctx, q, rep);
  } else {
    key_list(s, query, query_ctx, rep);
  }
  if (pk) OPENSSL_cleanse(pk, strlen(pk));
  free(pk);
}
