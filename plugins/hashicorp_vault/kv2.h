/*
 * kv2.h -- everything that knows the shape of Vault's KV version 2 API.
 *
 * What lives here:
 *   - secret-name validation (percent-encoding is vault_encode_path, common.h);
 *   - URL paths: {addr}/v1/[{namespace}/]{mount}/(data|metadata)/[{prefix}/]{name}
 *     (the namespace goes into the path, as LiteLLM's docs show);
 *   - request bodies ({"data":{"key":value}}, options.cas, custom_metadata),
 *     built with cJSON into buffers that are wiped after use;
 *   - response parsing (data.data.key, data.version) and the mapping of HTTP
 *     statuses to kms_status, with Vault's `errors` text in the message.
 *
 * Thread-safety: every function is pure (no shared state) and may be called
 * from any thread; a kv2_layout is immutable after kv2_layout_init.
 */
#ifndef VAULT_KV2_H
#define VAULT_KV2_H

#include "config.h"
#include "kms_plugin.h"

#include <stddef.h>
#include <stdint.h>

/* Encoded URL pieces computed once at create(). */
typedef struct kv2_layout {
  char *data_base;  /* "{addr}/v1/[{ns}/]{mount}/data/[{prefix}/]" */
  char *meta_base;  /* "{addr}/v1/[{ns}/]{mount}/metadata/[{prefix}/]" */
} kv2_layout;

typedef enum kv2_kind { KV2_DATA, KV2_METADATA } kv2_kind;

kms_status kv2_layout_init(kv2_layout *l, const vault_config *cfg, kms_error *err);
void kv2_layout_free(kv2_layout *l);

/* KMS_OK if `name` is acceptable: 1..VAULT_NAME_MAX bytes, '/'-separated
 * segments none of which is empty, "." or "..", no control characters
 * (0x00-0x1f, 0x7f). Otherwise KMS_INVALID_ARGUMENT with the reason. */
kms_status kv2_validate_name(const char *name, kms_error *err);


/* Full URL of `name` (validated first). *url is malloc'ed. */
kms_status kv2_url(const kv2_layout *l, kv2_kind kind, const char *name, char **url,
                   kms_error *err);

/* `name` validated (as kv2_validate_name, same messages) and
 * percent-encoded (vault_encode_path) into buf, which holds KV2_ENC_MAX
 * bytes; *len is the encoded length. Allocates nothing: the read path
 * builds its cache key with it on the stack. */
#define KV2_ENC_MAX (3 * VAULT_NAME_MAX + 1)
kms_status kv2_encode_name(const char *name, char *buf, size_t *len, kms_error *err);

/* Bodies. *body is malloc'ed, NUL-terminated, and must be released with
 * kv2_free_body (which wipes it). The value must be valid UTF-8 without
 * NUL bytes (else KMS_INVALID_ARGUMENT). */
kms_status kv2_write_body(const char *value, size_t len, int cas, uint64_t cas_version,
                          char **body, size_t *body_len, kms_error *err);
/* The same with a description stored as LiteLLM stores it, inside the data:
 * {"data":{"key":value,"description":description}}; NULL: none. A
 * description must be valid UTF-8 of at most KV2_DESCRIPTION_MAX bytes. */
#define KV2_DESCRIPTION_MAX 4096
kms_status kv2_write_body_desc(const char *value, size_t len, const char *description, int cas,
                               uint64_t cas_version, char **body, size_t *body_len,
                               kms_error *err);
/* {"custom_metadata":{"description":...}} (the description_metadata setting). */
kms_status kv2_metadata_body(const char *description, char **body, size_t *body_len,
                             kms_error *err);
void kv2_free_body(char *body, size_t len);

/* Parse a 200 read response. On KMS_OK *value (malloc'ed, NUL-terminated,
 * caller wipes) holds data.data.key and *version data.metadata.version. A
 * missing or non-string "key" is KMS_INTERNAL with a message saying how to
 * store the secret. `name` is used in messages only. */
kms_status kv2_parse_read(const char *body, size_t len, const char *name, char **value,
                          size_t *value_len, int64_t *version, kms_error *err);

/* kv2_parse_read reading data.data.<field> instead of data.data.key (the
 * per-call location override `field`). */
kms_status kv2_parse_read_field(const char *body, size_t len, const char *name,
                                const char *field, char **value, size_t *value_len,
                                int64_t *version, kms_error *err);

/* Parse a 200 LIST metadata/ answer: data.keys, each passed to fn(ctx, key)
 * (folders end with '/'); fn returns 0 to go on. KMS_INTERNAL when the
 * body is not such an answer. */
kms_status kv2_parse_list(const char *body, size_t len, const char *path,
                          int (*fn)(void *ctx, const char *key), void *ctx, kms_error *err);

/* Parse a 200 write response: data.version (0 if absent). */
int64_t kv2_parse_write_version(const char *body, size_t len);

/*
 * Map a non-2xx HTTP answer to a status and fill err:
 *   404 -> NOT_FOUND (soft-deleted / destroyed versions say so);
 *   400 "check-and-set" mismatch -> CONFLICT, other 400 -> INVALID_ARGUMENT;
 *   401 -> UNAUTHENTICATED; 403 -> PERMISSION_DENIED, or UNAUTHENTICATED when
 *   Vault says the token is missing/invalid/expired or `have_token` is 0;
 *   412, 429, 5xx except 501 (after the retries) -> UNAVAILABLE;
 *   501 -> UNAVAILABLE (not initialised); anything else -> INTERNAL.
 * `op` ("read", "write", ...) and `path` appear in the message, as do the
 * HTTP status and Vault's errors text. `attempts` > 1 is mentioned.
 */
kms_status kv2_map_status(const char *op, const char *path, long http_status, const char *body,
                          size_t len, int attempts, int have_token, kms_error *err);


#endif
