/*
 * sm.c -- Secrets Manager JSON 1.1 bodies, answers and primary-secret
 * documents (see sm.h). Every buffer that may hold a secret is wiped before
 * it is freed; cJSON trees holding one go through kpc_json_wipe_delete.
 */
#include "sm.h"

#include "kms_plugin_util.h"
#include "kpc_common.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static kms_status oom(kms_error *err) {
  return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
}

kms_status sm_check_name(const char *name, kms_error *err) {
  size_t n = name ? strlen(name) : 0;
  if (n == 0) return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "secret name is empty");
  if (n > SM_NAME_MAX)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "secret name is %zu characters; AWS Secrets Manager allows at most %d",
                         n, SM_NAME_MAX);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)name[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        strchr("/_+=.@-", c))
      continue;
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "secret name has a character AWS Secrets Manager does not allow (byte "
                         "0x%02x at offset %zu); names use A-Z a-z 0-9 / _ + = . @ -", c, i);
  }
  return KMS_OK;
}

kms_status sm_check_field(const char *field, kms_error *err) {
  size_t n = field ? strlen(field) : 0;
  if (n == 0) return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "secret name is empty");
  if (n > SM_FIELD_MAX)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "secret name is %zu bytes; a key of primary_secret_name allows at most "
                         "%d", n, SM_FIELD_MAX);
  if (!kpc_utf8_valid((const unsigned char *)field, n))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "secret name is not valid UTF-8");
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)field[i] < 0x20 || field[i] == 0x7f)
      return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                           "secret name has a control character at offset %zu", i);
  return KMS_OK;
}

void sm_free_body(char *body, size_t len) {
  if (!body) return;
  kms_wipe(body, len);
  free(body);
}

/* 1 if the value can travel as SecretString (JSON text). */
static int is_text(const char *v, size_t n) {
  return !memchr(v, '\0', n) && kpc_utf8_valid((const unsigned char *)v, n);
}

/* Base64 of v[0..n) (malloc'ed, wiped by the caller), or NULL. */
static char *b64_encode(const char *v, size_t n) {
  size_t cap = 4 * ((n + 2) / 3) + 1;
  char *out = malloc(cap);
  if (out) EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)v, (int)n);
  return out;
}

/* Add the value as SecretString or SecretBinary. The temporary copies are
 * wiped; the tree itself is wiped by the caller. */
static int add_value(cJSON *root, const char *value, size_t n) {
  char *s;
  const char *key = "SecretString";
  if (is_text(value, n)) {
    if (!(s = malloc(n + 1))) return 0;
    memcpy(s, value, n);
    s[n] = '\0';
  } else {
    key = "SecretBinary";
    if (!(s = b64_encode(value, n))) return 0;
  }
  cJSON *item = cJSON_CreateString(s);
  kpc_wipe_free(s);
  if (!item) return 0;
  cJSON_AddItemToObject(root, key, item);
  return 1;
}

/* Print and delete (wiping) `root`; `payload` bounds its string bytes. */
static kms_status finish(cJSON *root, int ok, size_t payload, char **body, size_t *len,
                         kms_error *err) {
  kms_status st = ok ? kpc_json_print_wiped(root, payload, body, len, err) : oom(err);
  kpc_json_wipe_delete(root);
  return st;
}

static kms_status check_value(const char *value, size_t n, kms_error *err) {
  if (n == 0)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "secret value is empty; AWS Secrets Manager stores 1 to %d bytes",
                         SM_VALUE_MAX);
  size_t wire = is_text(value, n) ? n : 4 * ((n + 2) / 3);
  if (wire > SM_VALUE_MAX)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "secret value is %zu bytes%s; AWS Secrets Manager stores at most %d",
                         n, wire != n ? " (binary, base64-encoded)" : "", SM_VALUE_MAX);
  return KMS_OK;
}

kms_status sm_body_get(const char *name, const char *version_stage, const char *version_id,
                       char **body, size_t *len, kms_error *err) {
  cJSON *root = cJSON_CreateObject();
  int ok = root && cJSON_AddStringToObject(root, "SecretId", name) &&
           (!version_stage || cJSON_AddStringToObject(root, "VersionStage", version_stage)) &&
           (!version_id || cJSON_AddStringToObject(root, "VersionId", version_id));
  size_t extra = (version_stage ? strlen(version_stage) : 0) + (version_id ? strlen(version_id) : 0);
  return finish(root, ok, strlen(name) + extra + 64, body, len, err);
}

kms_status sm_check_version_id(const char *id, kms_error *err) {
  size_t n = strlen(id);
  if (n < 32 || n > 64 || strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                     "0123456789-") != n)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "location 'version_id' must be 32-64 characters of A-Z a-z 0-9 - (a "
                         "Secrets Manager VersionId)");
  return KMS_OK;
}

kms_status sm_check_version_stage(const char *stage, kms_error *err) {
  size_t n = strlen(stage);
  for (size_t i = 0; i < n; i++)
    if (stage[i] < 0x21 || stage[i] > 0x7e || stage[i] == '?') n = 0;
  if (n == 0 || n > 256)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "location 'version_stage' must be 1-256 printable characters, e.g. "
                         "AWSPREVIOUS");
  return KMS_OK;
}

kms_status sm_body_create(const char *name, const char *value, size_t value_len,
                          const char *description, const sm_tag *tags, size_t n_tags,
                          const char *token, char **body, size_t *len, kms_error *err) {
  kms_status st = check_value(value, value_len, err);
  if (st != KMS_OK) return st;
  cJSON *root = cJSON_CreateObject();
  int ok = root && cJSON_AddStringToObject(root, "Name", name) &&
           cJSON_AddStringToObject(root, "ClientRequestToken", token) &&
           add_value(root, value, value_len) &&
           (!description || cJSON_AddStringToObject(root, "Description", description));
  size_t payload = strlen(name) + 2 * value_len + 128 + (description ? strlen(description) : 0);
  if (ok && n_tags) {
    cJSON *arr = cJSON_AddArrayToObject(root, "Tags");
    for (size_t i = 0; ok && arr && i < n_tags; i++) {
      cJSON *t = cJSON_CreateObject();
      ok = t && cJSON_AddStringToObject(t, "Key", tags[i].key) &&
           cJSON_AddStringToObject(t, "Value", tags[i].value);
      if (t) cJSON_AddItemToArray(arr, t);
      payload += strlen(tags[i].key) + strlen(tags[i].value) + 32;
    }
    ok = ok && arr;
  }
  return finish(root, ok, payload, body, len, err);
}

kms_status sm_body_put(const char *name, const char *value, size_t value_len, const char *token,
                       char **body, size_t *len, kms_error *err) {
  kms_status st = check_value(value, value_len, err);
  if (st != KMS_OK) return st;
  cJSON *root = cJSON_CreateObject();
  int ok = root && cJSON_AddStringToObject(root, "SecretId", name) &&
           cJSON_AddStringToObject(root, "ClientRequestToken", token) &&
           add_value(root, value, value_len);
  return finish(root, ok, strlen(name) + 2 * value_len + 128, body, len, err);
}

kms_status sm_body_delete(const char *name, int recovery_days, int force, char **body,
                          size_t *len, kms_error *err) {
  cJSON *root = cJSON_CreateObject();
  int ok = root && cJSON_AddStringToObject(root, "SecretId", name) &&
           (force ? cJSON_AddTrueToObject(root, "ForceDeleteWithoutRecovery") != NULL
                  : cJSON_AddNumberToObject(root, "RecoveryWindowInDays", recovery_days) != NULL);
  return finish(root, ok, strlen(name) + 64, body, len, err);
}

kms_status sm_body_id(const char *name, char **body, size_t *len, kms_error *err) {
  return sm_body_get(name, NULL, NULL, body, len, err);
}

kms_status sm_body_list(const char *prefix, const char *next_token, char **body, size_t *len,
                        kms_error *err) {
  cJSON *root = cJSON_CreateObject();
  int ok = root && cJSON_AddNumberToObject(root, "MaxResults", SM_LIST_PAGE) &&
           cJSON_AddFalseToObject(root, "IncludePlannedDeletion");
  if (ok && prefix && *prefix) {
    /* AWS's name filter is a prefix match; sm_parse_list re-checks it */
    cJSON *filters = cJSON_AddArrayToObject(root, "Filters");
    cJSON *f = cJSON_CreateObject();
    if (f && filters) cJSON_AddItemToArray(filters, f);
    else cJSON_Delete(f);
    cJSON *values = f && filters && cJSON_AddStringToObject(f, "Key", "name")
                        ? cJSON_AddArrayToObject(f, "Values") : NULL;
    cJSON *v = cJSON_CreateString(prefix);
    if (v && values) cJSON_AddItemToArray(values, v);
    else cJSON_Delete(v);
    ok = values && v;
  }
  ok = ok && (!next_token || cJSON_AddStringToObject(root, "NextToken", next_token));
  size_t payload = (prefix ? strlen(prefix) : 0) + (next_token ? strlen(next_token) : 0) + 160;
  return finish(root, ok, payload, body, len, err);
}

kms_status sm_request_token(char out[37], kms_error *err) {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1)
    return kms_error_set(err, KMS_INTERNAL, 0, "no random bytes for a ClientRequestToken");
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  snprintf(out, 37,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
           b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
           b[15]);
  return KMS_OK;
}

/* ---- responses ---------------------------------------------------------- */

/* Decode standard base64 (padding required, no whitespace). Returns 0 on
 * success with *out malloc'ed (NUL-terminated). */
static int b64_decode(const char *in, char **out, size_t *out_len) {
  size_t n = strlen(in);
  if (n % 4) return -1;
  unsigned char *buf = malloc(n / 4 * 3 + 1);
  if (!buf) return -1;
  int m = n ? EVP_DecodeBlock(buf, (const unsigned char *)in, (int)n) : 0;
  if (m < 0) {
    kms_wipe(buf, n / 4 * 3 + 1);
    free(buf);
    return -1;
  }
  size_t pad = (n && in[n - 1] == '=') + (n > 1 && in[n - 2] == '=');
  *out_len = (size_t)m - pad;
  buf[*out_len] = '\0';
  *out = (char *)buf;
  return 0;
}

static kms_status copy_string(const char *s, char **out, size_t *out_len, kms_error *err) {
  size_t n = strlen(s);
  if (!(*out = malloc(n + 1))) return oom(err);
  memcpy(*out, s, n + 1);
  *out_len = n;
  return KMS_OK;
}

kms_status sm_parse_value(const char *body, size_t len, char **value, size_t *value_len,
                          kms_error *err) {
  *value = NULL;
  *value_len = 0;
  cJSON *root = kpc_json_parse(body, len);
  if (!cJSON_IsObject(root)) {
    kpc_json_wipe_delete(root);
    return kms_error_set(err, KMS_INTERNAL, 0,
                         "GetSecretValue: the answer is not a JSON object (is the endpoint AWS "
                         "Secrets Manager?)");
  }
  cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "SecretString");
  cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "SecretBinary");
  kms_status st;
  if (cJSON_IsString(s) && s->valuestring) {
    st = copy_string(s->valuestring, value, value_len, err);
  } else if (cJSON_IsString(b) && b->valuestring) {
    st = b64_decode(b->valuestring, value, value_len) == 0
             ? KMS_OK
             : kms_error_set(err, KMS_INTERNAL, 0, "GetSecretValue: SecretBinary is not base64");
  } else {
    st = kms_error_set(err, KMS_INTERNAL, 0,
                       "GetSecretValue: the answer has neither SecretString nor SecretBinary");
  }
  kpc_json_wipe_delete(root);
  return st;
}

int64_t sm_version_tag(const char *body, size_t len) {
  cJSON *root = kpc_json_parse(body, len);
  cJSON *id = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "VersionId") : NULL;
  uint64_t h = 0;
  if (cJSON_IsString(id) && id->valuestring) {
    h = 14695981039346656037ull; /* FNV-1a 64 */
    for (const unsigned char *p = (const unsigned char *)id->valuestring; *p; p++)
      h = (h ^ *p) * 1099511628211ull;
    h &= 0x7fffffffffffffffull;
    if (!h) h = 1;
  }
  kpc_json_wipe_delete(root);
  return (int64_t)h;
}

kms_status sm_field_get(const char *doc, size_t doc_len, const char *field, char **out,
                        size_t *out_len, kms_error *err) {
  *out = NULL;
  *out_len = 0;
  cJSON *root = kpc_json_parse(doc, doc_len);
  kms_status st;
  /* the last copy of a key written twice, as Python's json (LiteLLM) reads it */
  cJSON *f = NULL, *it;
  if (cJSON_IsObject(root)) {
    cJSON_ArrayForEach(it, root) {
      if (it->string && strcmp(it->string, field) == 0) f = it;
    }
  }
  if (!cJSON_IsObject(root))
    st = kms_error_set(err, KMS_INTERNAL, 0,
                       "primary_secret_name: the secret is not a JSON object of keys");
  else if (!f)
    st = kms_error_set(err, KMS_NOT_FOUND, 0, "no such key in primary_secret_name");
  else if (!cJSON_IsString(f) || !f->valuestring)
    st = kms_error_set(err, KMS_INTERNAL, 0,
                       "the key's value in primary_secret_name is not a string");
  else
    st = copy_string(f->valuestring, out, out_len, err);
  kpc_json_wipe_delete(root);
  return st;
}

kms_status sm_field_set(const char *doc, size_t doc_len, const char *field, const char *value,
                        size_t value_len, char **out, size_t *out_len, int *changed,
                        kms_error *err) {
  *out = NULL;
  *out_len = 0;
  *changed = 0;
  if (value && !is_text(value, value_len))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "secret value is not UTF-8 text; a key of primary_secret_name holds "
                         "text (encode binary values, e.g. base64)");
  cJSON *root = doc && doc_len ? kpc_json_parse(doc, doc_len) : cJSON_CreateObject();
  if (!cJSON_IsObject(root)) {
    kpc_json_wipe_delete(root);
    return doc && doc_len ? kms_error_set(err, KMS_INTERNAL, 0,
                                          "primary_secret_name: the secret is not a JSON object "
                                          "of keys; not overwriting it")
                          : oom(err);
  }
  /* Every copy of the key goes: a document with the key twice (JSON allows
   * it; Python's json keeps the last) must not keep an old value that a
   * later read, here or in LiteLLM, would find after a set or delete. */
  cJSON *old;
  *changed = value != NULL;
  while ((old = cJSON_DetachItemFromObjectCaseSensitive(root, field)) != NULL) {
    *changed = 1;
    kpc_json_wipe_delete(old);
  }
  int ok = 1;
  if (value) {
    char *copy = malloc(value_len + 1);
    cJSON *item = NULL;
    if (copy) {
      memcpy(copy, value, value_len);
      copy[value_len] = '\0';
      item = cJSON_CreateString(copy);
      kpc_wipe_free(copy);
    }
    ok = item && cJSON_AddItemToObject(root, field, item);
  }
  return finish(root, ok, doc_len + value_len + strlen(field) + 64, out, out_len, err);
}

kms_status sm_parse_list(const char *body, size_t len, const char *prefix, kms_list_fn fn,
                         void *ctx, int *stopped, char **next_token, kms_error *err) {
  *stopped = 0;
  *next_token = NULL;
  size_t pl = prefix ? strlen(prefix) : 0;
  cJSON *root = kpc_json_parse(body, len);
  cJSON *list = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "SecretList") : NULL;
  if (!cJSON_IsArray(list)) {
    cJSON_Delete(root);
    return kms_error_set(err, KMS_INTERNAL, 0,
                         "ListSecrets: the answer is not a JSON object with a SecretList array "
                         "(is the endpoint AWS Secrets Manager?)");
  }
  cJSON *e;
  cJSON_ArrayForEach(e, list) {
    cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "Name");
    cJSON *deleted = cJSON_GetObjectItemCaseSensitive(e, "DeletedDate");
    if (!cJSON_IsString(name) || !name->valuestring || (deleted && !cJSON_IsNull(deleted)) ||
        strncmp(name->valuestring, prefix ? prefix : "", pl) != 0)
      continue;
    if (fn(ctx, name->valuestring)) {
      *stopped = 1;
      break;
    }
  }
  cJSON *tok = cJSON_GetObjectItemCaseSensitive(root, "NextToken");
  kms_status st = KMS_OK;
  if (!*stopped && cJSON_IsString(tok) && tok->valuestring && *tok->valuestring &&
      !(*next_token = strdup(tok->valuestring)))
    st = oom(err);
  cJSON_Delete(root);
  return st;
}

kms_status sm_field_names(const char *doc, size_t doc_len, const char *prefix, kms_list_fn fn,
                          void *ctx, kms_error *err) {
  cJSON *root = kpc_json_parse(doc, doc_len);
  if (!cJSON_IsObject(root)) {
    kpc_json_wipe_delete(root);
    return kms_error_set(err, KMS_INTERNAL, 0,
                         "primary_secret_name: the secret is not a JSON object of keys");
  }
  size_t pl = strlen(prefix);
  cJSON *e;
  cJSON_ArrayForEach(e, root) {
    if (e->string && strncmp(e->string, prefix, pl) == 0 && fn(ctx, e->string)) break;
  }
  kpc_json_wipe_delete(root);
  return KMS_OK;
}

kms_status sm_field_each(const char *doc, size_t doc_len, sm_field_fn fn, void *ctx,
                         kms_error *err) {
  cJSON *root = kpc_json_parse(doc, doc_len);
  if (!cJSON_IsObject(root)) {
    kpc_json_wipe_delete(root);
    return kms_error_set(err, KMS_INTERNAL, 0,
                         "primary_secret_name: the secret is not a JSON object of keys");
  }
  cJSON *e;
  kms_status st = KMS_OK;
  cJSON_ArrayForEach(e, root) {
    if (!e->string) continue;
    const char *v = cJSON_IsString(e) ? e->valuestring : NULL;
    if ((st = fn(ctx, e->string, v, v ? strlen(v) : 0, err)) != KMS_OK) break;
  }
  kpc_json_wipe_delete(root);
  return st;
}
