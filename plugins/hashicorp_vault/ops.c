/*
 * ops.c -- the hashicorp_vault operations every slot shares: one
 * authenticated request (vault_call: the token, one re-login and retry on
 * a 403 that comes from a dead token), the cache's fetch (a cache key back
 * into a GET of data/), a write (POST data/, + metadata/ with
 * description_metadata, then the cache updated) and a delete (DELETE data/
 * or metadata/, then the cache's keys of the secret dropped) at a KV v2
 * layout (the instance's or a location override's), and the way out of
 * every slot (the plugin's name on messages, the outcome counted).
 * plugin.c (the 1.0 slots) and abi11.c (the 1.1 options around them) call
 * these; they call down to auth.c, http.c, kv2.c and the cache.
 *
 * Thread-safety: any thread (KMS_CAP_THREAD_SAFE): the instance's config
 * and layout are immutable, the cache, HTTP pool and auth provider lock
 * internally.
 */
#include "instance.h"

#include <stdlib.h>
#include <string.h>

/* Messages are written without the plugin's name; it is added here, once,
 * on the way out of every slot (logging.c does the same for log lines). */
kms_status vault_boundary(kms_status st, kms_error *err) {
  return kpc_error_prefix(st, err, VAULT_MSG_PREFIX);
}

kms_status vault_slot_end(kms_instance *in, kms_status st, kms_error *err) {
  vault_boundary(st, err);
  return kms_stats_result(in->stats, st, err);
}

vault_call_ctx vault_call_start(kms_instance *in) {
  return (vault_call_ctx){in, vault_http_deadline(in->http)};
}

/* One Vault request with the current token; on 403 the auth provider may
 * supply a new token, and the request is repeated once (never more). */
kms_status vault_call(const vault_call_ctx *k, const char *op, const char *method,
                             const char *url, const char *body, size_t body_len,
                             kpc_http_response *resp, kms_error *err) {
  kms_instance *in = k->in;
  kms_status st = KMS_OK;
  for (int round = 0; round < 2; round++) {
    char *token = NULL;
    uint64_t gen = 0;
    /* (health: every exchange, the login's too, is recorded in http.c) */
    if ((st = vault_auth_token(in->auth, k->deadline, &token, &gen, err)) != KMS_OK) return st;
    vault_http_request req = {op,  method,   url,         token,           NULL,
                              body, body_len, k->deadline, VAULT_CHECK_DATA};
    st = vault_http_perform(in->http, &req, resp, err);
    vault_auth_token_free(token);
    if (st != KMS_OK) return st;
    if (resp->status == 403 && round == 0 &&
        vault_auth_forbidden(in->auth, gen,
                             vault_errors_has(resp->body, resp->len, "invalid token"),
                             k->deadline)) {
      kpc_http_response_clear(resp);
      continue;
    }
    break;
  }
  return st;
}

/* The cache's fetch: ctx is the calling vault_call_ctx. The key (see
 * abi11.c) becomes the data URL: the instance's data base + the encoded
 * name, or the override's URL after '@'; "?version=N" is sent as is and
 * "#f=<field>" (read that field) is cut before sending. */
kms_status vault_fetch_secret(void *ctx, const char *key, kpc_cache_value *out,
                              kms_error *err) {
  vault_call_ctx *k = ctx;
  kms_instance *in = k->in;
  if (!k->deadline) k->deadline = vault_http_deadline(in->http); /* see read_cached */
  kms_stats_add(in->stats, KMS_STAT_FETCHES, 1);
  const char *hash = strstr(key, "#f="), *base = in->layout.data_base;
  if (key[0] == '@') {
    base = "";
    key++;
  }
  size_t bl = strlen(base), kl = hash ? (size_t)(hash - key) : strlen(key);
  char *url = malloc(bl + kl + 1);
  if (!url) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  memcpy(url, base, bl);
  memcpy(url + bl, key, kl);
  url[bl + kl] = '\0';
  const char *path = kpc_url_path(in->cfg.addr, url);
  kpc_http_response resp;
  kms_status st = vault_call(k, "read", "GET", url, NULL, 0, &resp, err);
  if (st == KMS_OK) {
    if (resp.status == 200)
      st = kv2_parse_read_field(resp.body, resp.len, path, hash ? hash + 3 : "key", &out->data,
                                &out->len, &out->version, err);
    else
      st = kv2_map_status("read", path, resp.status, resp.body, resp.len, resp.attempts, 1, err);
    kpc_http_response_clear(&resp);
  }
  free(url);
  return st;
}

static kms_status write_denied(const char *what, kms_error *err) {
  return kms_error_set(err, KMS_PERMISSION_DENIED, 0,
                       "access_mode is read_only: %s are refused (set access_mode to "
                       "read_and_write or write_only to allow them)", what);
}

/* Thread-safety: any thread (KMS_CAP_THREAD_SAFE). */
kms_status vault_do_write(kms_instance *in, const kv2_layout *l, const char *name,
                          const char *value, size_t len, const kms_write_options *opt,
                          kms_error *err) {
  if (in->cfg.access_mode == VAULT_ACCESS_READ_ONLY) return write_denied("writes", err);
  int cas = 0;
  uint64_t cas_version = 0;
  const char *description = in->cfg.description; /* the setting, unless the write gives one */
  if (opt) {
    if (KMS_FIELD_PRESENT(opt, kms_write_options, flags) && (opt->flags & KMS_WRITE_CAS) &&
        KMS_FIELD_PRESENT(opt, kms_write_options, cas_version)) {
      cas = 1;
      cas_version = opt->cas_version;
    }
    if (KMS_FIELD_PRESENT(opt, kms_write_options, description) && opt->description &&
        opt->description[0])
      description = opt->description;
  }
  char *url = NULL, *body = NULL;
  size_t body_len = 0;
  vault_key key;
  kms_status st = vault_key_make(in, l, name, 0, NULL, &key, err);
  if (st == KMS_OK && (st = kv2_url(l, KV2_DATA, name, &url, err)) != KMS_OK) vault_key_free(&key);
  if (st != KMS_OK) return st;
  const char *path = kpc_url_path(in->cfg.addr, url);
  if ((st = kv2_write_body_desc(value, len, description, cas, cas_version, &body, &body_len,
                                err)) != KMS_OK) {
    vault_key_free(&key);
    free(url);
    return st;
  }
  kpc_http_response resp;
  vault_call_ctx k = vault_call_start(in);
  st = vault_call(&k, "write", "POST", url, body, body_len, &resp, err);
  kv2_free_body(body, body_len);
  if (st == KMS_OK) {
    if (resp.status == 200 || resp.status == 204) {
      int64_t version = kv2_parse_write_version(resp.body, resp.len);
      kpc_cache_invalidate_all(in->cache, key.s); /* version pins, fields, a "not found" */
      if (in->cfg.access_mode == VAULT_ACCESS_READ_AND_WRITE)
        kpc_cache_put(in->cache, key.s, value, len, version);
      else
        kpc_cache_invalidate(in->cache, key.s);
    } else {
      st = kv2_map_status("write", path, resp.status, resp.body, resp.len, resp.attempts, 1, err);
    }
    kpc_http_response_clear(&resp);
  }
  if (st != KMS_OK) kpc_cache_invalidate_all(in->cache, key.s); /* state unknown */
  vault_key_free(&key);

  if (st == KMS_OK && description && in->cfg.description_metadata) {
    char *murl = NULL;
    if ((st = kv2_url(l, KV2_METADATA, name, &murl, err)) == KMS_OK &&
        (st = kv2_metadata_body(description, &body, &body_len, err)) == KMS_OK) {
      st = vault_call(&k, "write metadata", "POST", murl, body, body_len, &resp, err);
      kv2_free_body(body, body_len);
      if (st == KMS_OK) {
        if (resp.status != 200 && resp.status != 204)
          st = kv2_map_status("write metadata", kpc_url_path(in->cfg.addr, murl), resp.status,
                              resp.body, resp.len, resp.attempts, 1, err);
        kpc_http_response_clear(&resp);
      }
    }
    free(murl);
  }
  free(url);
  return st;
}

/* Thread-safety: any thread (KMS_CAP_THREAD_SAFE). */
kms_status vault_do_delete(kms_instance *in, const kv2_layout *l, const char *name, int destroy,
                           kms_error *err) {
  if (in->cfg.access_mode == VAULT_ACCESS_READ_ONLY) return write_denied("deletes", err);
  char *url = NULL;
  vault_key key;
  kms_status st = vault_key_make(in, l, name, 0, NULL, &key, err);
  if (st != KMS_OK) return st;
  if ((st = kv2_url(l, destroy ? KV2_METADATA : KV2_DATA, name, &url, err)) != KMS_OK) {
    vault_key_free(&key);
    return st;
  }
  const char *target = url;
  kpc_cache_invalidate_all(in->cache, key.s);
  kpc_http_response resp;
  vault_call_ctx k = vault_call_start(in);
  st = vault_call(&k, destroy ? "destroy" : "delete",
                  "DELETE", target, NULL, 0, &resp, err);
  if (st == KMS_OK) {
    if (resp.status != 200 && resp.status != 204 && resp.status != 404)
      st = kv2_map_status("delete", kpc_url_path(in->cfg.addr, target), resp.status, resp.body,
                          resp.len, resp.attempts, 1, err);
    kpc_http_response_clear(&resp);
  }
  kpc_cache_invalidate_all(in->cache, key.s); /* a read may have raced the delete */
  vault_key_free(&key);
  free(url);
  return st;
}
