/*
 * kv2.c -- KV v2 URLs, bodies, response parsing and status mapping (see kv2.h).
 */
#include "kv2.h"

#include "common.h"
#include "kms_plugin_util.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* ---- names and encoding ------------------------------------------------ */

kms_status kv2_validate_name(const char *name, kms_error *err) {
  if (!name || !*name)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "secret name is empty");
  size_t n = strlen(name);
  if (n > VAULT_NAME_MAX)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "secret name is %zu bytes long; at most %d are allowed", n,
                         VAULT_NAME_MAX);
  /* Control characters first: the messages below quote the name. */
  for (const char *p = name; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c < 0x20 || c == 0x7f)
      return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                           "secret name contains a control character (byte 0x%02x at offset "
                           "%zu)", c, (size_t)(p - name));
  }
  const char *seg = name;
  for (const char *p = name;; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '/' || c == 0) {
      size_t len = (size_t)(p - seg);
      if (len == 0)
        return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                             "secret name '%.100s' has an empty path segment (leading, trailing "
                             "or double '/')", name);
      if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
        return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                             "secret name '%.100s' has a '.' or '..' path segment", name);
      if (!c) break;
      seg = p + 1;
    }
  }
  return KMS_OK;
}

/* Append "{enc(s)}/" to the buffer if s is set. */
static int append_seg(char **buf, size_t *len, const char *s) {
  if (!s) return 0;
  char *e = vault_encode_path(s);
  if (!e) return -1;
  size_t el = strlen(e);
  char *nb = realloc(*buf, *len + el + 2);
  if (!nb) {
    free(e);
    return -1;
  }
  memcpy(nb + *len, e, el);
  nb[*len + el] = '/';
  nb[*len + el + 1] = '\0';
  *len += el + 1;
  *buf = nb;
  free(e);
  return 0;
}

static char *make_base(const vault_config *cfg, const char *kind) {
  size_t len = strlen(cfg->addr) + 4;
  char *b = malloc(len + 1);
  if (!b) return NULL;
  snprintf(b, len + 1, "%s/v1/", cfg->addr);
  if (append_seg(&b, &len, cfg->secret_namespace) || append_seg(&b, &len, cfg->mount) ||
      append_seg(&b, &len, kind) || append_seg(&b, &len, cfg->prefix)) {
    free(b);
    return NULL;
  }
  return b;
}

kms_status kv2_layout_init(kv2_layout *l, const vault_config *cfg, kms_error *err) {
  memset(l, 0, sizeof *l);
  l->data_base = make_base(cfg, "data");
  l->meta_base = make_base(cfg, "metadata");
  if (!l->data_base || !l->meta_base) {
    kv2_layout_free(l);
    return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  }
  return KMS_OK;
}

void kv2_layout_free(kv2_layout *l) {
  free(l->data_base);
  free(l->meta_base);
  memset(l, 0, sizeof *l);
}

kms_status kv2_encode_name(const char *name, char *buf, size_t *len, kms_error *err) {
  *len = 0;
  int valid = 0;
  /* the length first: buf holds the encoding of VAULT_NAME_MAX bytes */
  if (name && strlen(name) <= VAULT_NAME_MAX) *len = vault_encode_check(name, buf, &valid);
  if (valid) return KMS_OK;
  *len = 0;
  kms_status st = kv2_validate_name(name, err); /* says why */
  if (st != KMS_OK) return st;
  return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "secret name is not valid");
}

kms_status kv2_url(const kv2_layout *l, kv2_kind kind, const char *name, char **url,
                   kms_error *err) {
  *url = NULL;
  char enc[KV2_ENC_MAX];
  size_t el;
  kms_status st = kv2_encode_name(name, enc, &el, err);
  if (st != KMS_OK) return st;
  const char *base = kind == KV2_DATA ? l->data_base : l->meta_base;
  size_t bl = strlen(base);
  char *u = malloc(bl + el + 1);
  if (!u) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  memcpy(u, base, bl);
  memcpy(u + bl, enc, el + 1);
  *url = u;
  return KMS_OK;
}

/* ---- bodies ------------------------------------------------------------ */

kms_status kv2_write_body(const char *value, size_t len, int cas, uint64_t cas_version,
                          char **body, size_t *body_len, kms_error *err) {
  return kv2_write_body_desc(value, len, NULL, cas, cas_version, body, body_len, err);
}

/* Checks of a description (the same wherever it is stored). */
static kms_status check_description(const char *description, kms_error *err) {
  size_t len = strlen(description);
  if (!kpc_utf8_valid((const unsigned char *)description, len))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "description is not valid UTF-8");
  if (len > KV2_DESCRIPTION_MAX)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "description is %zu bytes; at most %d",
                         len, KV2_DESCRIPTION_MAX);
  return KMS_OK;
}

kms_status kv2_write_body_desc(const char *value, size_t len, const char *description, int cas,
                               uint64_t cas_version, char **body, size_t *body_len,
                               kms_error *err) {
  *body = NULL;
  *body_len = 0;
  kms_status dst;
  if (description && (dst = check_description(description, err)) != KMS_OK) return dst;
  if (memchr(value, '\0', len))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "secret value contains a NUL byte; Vault KV stores text (encode binary "
                         "values, e.g. base64)");
  if (!kpc_utf8_valid((const unsigned char *)value, len))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "secret value is not valid UTF-8; Vault KV stores text (encode binary "
                         "values, e.g. base64)");
  if (len > (size_t)64 * 1024 * 1024)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "secret value is larger than 64 MiB");
  char *copy = malloc(len + 1);
  if (!copy) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  memcpy(copy, value, len);
  copy[len] = '\0';
  kms_status st = KMS_OK;
  cJSON *root = cJSON_CreateObject(), *data = cJSON_CreateObject();
  cJSON *str = cJSON_CreateString(copy);
  OPENSSL_cleanse(copy, len);
  free(copy);
  if (!root || !data || !str) {
    st = kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
    kpc_json_wipe_delete(str);
    kpc_json_wipe_delete(data);
    kpc_json_wipe_delete(root);
    return st;
  }
  cJSON_AddItemToObject(data, "key", str);
  cJSON_AddItemToObject(root, "data", data);
  /* LiteLLM's layout: the description next to the value, inside the data */
  if (description && !cJSON_AddStringToObject(data, "description", description))
    st = kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  if (cas) {
    cJSON *opts = cJSON_AddObjectToObject(root, "options");
    if (!opts || !cJSON_AddNumberToObject(opts, "cas", (double)cas_version))
      st = kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  }
  if (st == KMS_OK)
    st = kpc_json_print_wiped(root, len + (description ? strlen(description) : 0), body, body_len, err);
  kpc_json_wipe_delete(root);
  return st;
}

kms_status kv2_metadata_body(const char *description, char **body, size_t *body_len,
                             kms_error *err) {
  *body = NULL;
  *body_len = 0;
  size_t len = strlen(description);
  kms_status dst = check_description(description, err);
  if (dst != KMS_OK) return dst;
  cJSON *root = cJSON_CreateObject();
  cJSON *md = root ? cJSON_AddObjectToObject(root, "custom_metadata") : NULL;
  if (!md || !cJSON_AddStringToObject(md, "description", description)) {
    cJSON_Delete(root);
    return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  }
  kms_status st = kpc_json_print_wiped(root, len, body, body_len, err);
  cJSON_Delete(root);
  return st;
}

void kv2_free_body(char *body, size_t len) {
  if (!body) return;
  OPENSSL_cleanse(body, len);
  free(body);
}

/* ---- responses --------------------------------------------------------- */

/* A JSON version number as int64: 0 unless it is a finite number in
 * [0, 2^63) (a cast of anything else, e.g. 1e300 or -1e19, is undefined). */
static int64_t json_version(const cJSON *ver) {
  if (!cJSON_IsNumber(ver)) return 0;
  double d = ver->valuedouble;
  if (!(d >= 0 && d < 9223372036854775808.0)) return 0; /* also false for NaN */
  return (int64_t)d;
}

/* cJSON decodes "\u0000" into a NUL byte but keeps no length, so the value
 * would silently end there. Rare, so checked only when the body contains
 * that escape: parse a copy with every "\u0000" turned into "\u0001" (same
 * length; an escaped backslash before "u0000" only changes literal text of the
 * same length) and see whether data.data.key grows. */
static int key_lost_nul(const char *body, size_t len, const char *field, size_t decoded_len) {
  static const char esc[] = "\\u0000";
  if (len < 6 || !memmem(body, len, esc, 6)) return 0;
  char *copy = malloc(len);
  if (!copy) return 1; /* cannot prove the value intact: refuse it */
  memcpy(copy, body, len);
  for (char *p = copy; (p = memmem(p, len - (size_t)(p - copy), esc, 6)) != NULL; p += 6) p[5] = '1';
  cJSON *root = cJSON_ParseWithLength(copy, len);
  OPENSSL_cleanse(copy, len);
  free(copy);
  cJSON *data = root ? cJSON_GetObjectItemCaseSensitive(root, "data") : NULL;
  cJSON *inner = cJSON_IsObject(data) ? cJSON_GetObjectItemCaseSensitive(data, "data") : NULL;
  cJSON *key = cJSON_IsObject(inner) ? cJSON_GetObjectItemCaseSensitive(inner, field) : NULL;
  int lost = !cJSON_IsString(key) || !key->valuestring || strlen(key->valuestring) != decoded_len;
  kpc_json_wipe_delete(root);
  return lost;
}

kms_status kv2_parse_read(const char *body, size_t len, const char *name, char **value,
                          size_t *value_len, int64_t *version, kms_error *err) {
  return kv2_parse_read_field(body, len, name, "key", value, value_len, version, err);
}

kms_status kv2_parse_read_field(const char *body, size_t len, const char *name,
                                const char *field, char **value, size_t *value_len,
                                int64_t *version, kms_error *err) {
  *value = NULL;
  *value_len = 0;
  *version = 0;
  if (body && memchr(body, '\0', len))
    return kms_error_set(err, KMS_INTERNAL, 200,
                         "read '%.100s': the response holds a raw NUL byte, which JSON never "
                         "does; refused rather than cut short (is HCP_VAULT_ADDR a Vault "
                         "server?)", name);
  cJSON *root = kpc_json_parse(body, len);
  if (!root)
    return kms_error_set(err, KMS_INTERNAL, 200,
                         "read '%.100s': Vault answered HTTP 200 with a body that is not JSON "
                         "(is HCP_VAULT_ADDR a Vault server?)", name);
  kms_status st = KMS_OK;
  cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
  cJSON *inner = cJSON_IsObject(data) ? cJSON_GetObjectItemCaseSensitive(data, "data") : NULL;
  cJSON *md = cJSON_IsObject(data) ? cJSON_GetObjectItemCaseSensitive(data, "metadata") : NULL;
  if (!cJSON_IsObject(data)) {
    st = kms_error_set(err, KMS_INTERNAL, 200,
                       "read '%.100s': response has no 'data' object (is HCP_VAULT_MOUNT_NAME "
                       "a KV version 2 mount?)", name);
    goto out;
  }
  if (cJSON_IsNull(inner) || (!inner && md)) {
    st = kms_error_set(err, KMS_NOT_FOUND, 200,
                       "read '%.100s': the current version has been deleted", name);
    goto out;
  }
  if (!cJSON_IsObject(inner)) {
    st = kms_error_set(err, KMS_INTERNAL, 200,
                       "read '%.100s': response has no 'data.data' object (is "
                       "HCP_VAULT_MOUNT_NAME a KV version 2 mount?)", name);
    goto out;
  }
  cJSON *key = cJSON_GetObjectItemCaseSensitive(inner, field);
  if (!key) {
    st = kms_error_set(err, KMS_INTERNAL, 200,
                       "read '%.100s': the secret has no field \"%.60s\"; store it as "
                       "{\"%.60s\": \"<value>\"}", name, field, field);
    goto out;
  }
  if (!cJSON_IsString(key) || !key->valuestring) {
    st = kms_error_set(err, KMS_INTERNAL, 200,
                       "read '%.100s': field \"%.60s\" is a %s, not a string; store it as "
                       "{\"%.60s\": \"<value>\"}", name, field,
                       cJSON_IsNumber(key) ? "number" : cJSON_IsBool(key) ? "boolean"
                       : cJSON_IsNull(key) ? "null" : cJSON_IsArray(key) ? "array" : "object",
                       field);
    goto out;
  }
  size_t n = strlen(key->valuestring);
  if (key_lost_nul(body, len, field, n)) {
    st = kms_error_set(err, KMS_UNSUPPORTED, 200,
                       "read '%.100s': the value contains a NUL character (\\u0000), which "
                       "cannot be returned intact; store binary secrets base64-encoded", name);
    goto out;
  }
  if (!kpc_utf8_valid((const unsigned char *)key->valuestring, n)) {
    st = kms_error_set(err, KMS_UNSUPPORTED, 200,
                       "read '%.100s': the value is not valid UTF-8 (as a write would refuse); "
                       "store binary secrets base64-encoded", name);
    goto out;
  }
  char *v = malloc(n + 1);
  if (!v) {
    st = kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
    goto out;
  }
  memcpy(v, key->valuestring, n + 1);
  *value = v;
  *value_len = n;
  *version = json_version(cJSON_IsObject(md) ? cJSON_GetObjectItemCaseSensitive(md, "version")
                                             : NULL);
out:
  kpc_json_wipe_delete(root);
  return st;
}

int64_t kv2_parse_write_version(const char *body, size_t len) {
  int64_t v = 0;
  cJSON *root = kpc_json_parse(body, len);
  cJSON *data = root ? cJSON_GetObjectItemCaseSensitive(root, "data") : NULL;
  v = json_version(cJSON_IsObject(data) ? cJSON_GetObjectItemCaseSensitive(data, "version")
                                        : NULL);
  kpc_json_wipe_delete(root);
  return v;
}

/* For a 404: is the body a KV v2 envelope of a deleted or destroyed version? */
static const char *deleted_state(const char *body, size_t len, int64_t *version) {
  const char *r = NULL;
  cJSON *root = kpc_json_parse(body, len);
  cJSON *data = root ? cJSON_GetObjectItemCaseSensitive(root, "data") : NULL;
  cJSON *md = cJSON_IsObject(data) ? cJSON_GetObjectItemCaseSensitive(data, "metadata") : NULL;
  if (cJSON_IsObject(md)) {
    cJSON *destroyed = cJSON_GetObjectItemCaseSensitive(md, "destroyed");
    cJSON *dt = cJSON_GetObjectItemCaseSensitive(md, "deletion_time");
    *version = json_version(cJSON_GetObjectItemCaseSensitive(md, "version"));
    if (cJSON_IsTrue(destroyed)) r = "destroyed";
    else if (cJSON_IsString(dt) && dt->valuestring && *dt->valuestring) r = "deleted";
  }
  kpc_json_wipe_delete(root);
  return r;
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

kms_status kv2_parse_list(const char *body, size_t len, const char *path,
                          int (*fn)(void *ctx, const char *key), void *ctx, kms_error *err) {
  cJSON *root = kpc_json_parse(body, len);
  cJSON *data = root ? cJSON_GetObjectItemCaseSensitive(root, "data") : NULL;
  cJSON *keys = cJSON_IsObject(data) ? cJSON_GetObjectItemCaseSensitive(data, "keys") : NULL;
  if (!cJSON_IsArray(keys)) {
    cJSON_Delete(root);
    return kms_error_set(err, KMS_INTERNAL, 200,
                         "list '%.100s': Vault answered HTTP 200 without a data.keys array (is "
                         "the mount a KV version 2 mount?)", path);
  }
  cJSON *k;
  cJSON_ArrayForEach(k, keys) {
    if (cJSON_IsString(k) && k->valuestring && fn(ctx, k->valuestring)) break;
  }
  cJSON_Delete(root);
  return KMS_OK;
}

kms_status kv2_map_status(const char *op, const char *path, long http, const char *body,
                          size_t len, int attempts, int have_token, kms_error *err) {
  char etext[160];
  vault_errors_text(body, len, etext, sizeof etext);
  char tries[32] = "";
  if (attempts > 1) snprintf(tries, sizeof tries, " after %d attempts", attempts);
  const char *sep = etext[0] ? ": " : "";
  int32_t b = (int32_t)http;

  if (http == 404) {
    int64_t ver = 0;
    const char *state = deleted_state(body, len, &ver);
    if (state)
      return kms_error_set(err, KMS_NOT_FOUND, b,
                           "%s %.90s: HTTP 404: version %lld was %s (undelete it in Vault or "
                           "write a new value)", op, path, (long long)ver, state);
    return kms_error_set(err, KMS_NOT_FOUND, b, "%s %.90s: HTTP 404: no such secret%s%s", op,
                         path, sep, etext);
  }
  if (http == 400) {
    if (contains(etext, "check-and-set parameter did not match"))
      return kms_error_set(err, KMS_CONFLICT, b,
                           "%s %.90s: HTTP 400: %s (re-read the secret and retry with its "
                           "current version)", op, path, etext);
    return kms_error_set(err, KMS_INVALID_ARGUMENT, b, "%s %.90s: HTTP 400%s%s", op, path, sep,
                         etext);
  }
  if (http == 401)
    return kms_error_set(err, KMS_UNAUTHENTICATED, b,
                         "%s %.90s: HTTP 401%s%s (check the credentials: HCP_VAULT_TOKEN, or the "
                         "AppRole/certificate login)", op, path, sep, etext);
  if (http == 403) {
    if (!have_token || contains(etext, "missing client token") ||
        contains(etext, "invalid token") || contains(etext, "token expired") ||
        contains(etext, "bad token"))
      return kms_error_set(err, KMS_UNAUTHENTICATED, b,
                           "%s %.90s: HTTP 403%s%s (the token is missing, expired or revoked: "
                           "check HCP_VAULT_TOKEN, or the AppRole/certificate login)", op, path, sep, etext);
    return kms_error_set(err, KMS_PERMISSION_DENIED, b,
                         "%s %.90s: HTTP 403%s%s (the token's policy does not allow this path, "
                         "or the token is invalid)", op, path, sep, etext);
  }
  if (http == 501)
    return kms_error_set(err, KMS_UNAVAILABLE, b,
                         "%s %.90s: HTTP 501%s%s (Vault is not initialised)", op, path, sep,
                         etext);
  if (http == 412 || http == 429 || (http >= 500 && http <= 599))
    return kms_error_set(err, KMS_UNAVAILABLE, b, "%s %.90s: HTTP %ld%s%s%s (retry later)", op,
                         path, http, tries, sep, etext);
  if (http == 405)
    return kms_error_set(err, KMS_UNSUPPORTED, b,
                         "%s %.90s: HTTP 405%s%s (is HCP_VAULT_MOUNT_NAME a KV version 2 "
                         "mount?)", op, path, sep, etext);
  if (http == 413)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, b, "%s %.90s: HTTP 413: request too large",
                         op, path);
  return kms_error_set(err, KMS_INTERNAL, b, "%s %.90s: unexpected HTTP %ld%s%s", op, path, http,
                       sep, etext);
}
