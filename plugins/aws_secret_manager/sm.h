/*
 * sm.h -- everything that knows the shape of AWS Secrets Manager's JSON 1.1
 * API, without any I/O: secret-name checks, request bodies (GetSecretValue,
 * CreateSecret with Description and Tags, PutSecretValue, DeleteSecret with
 * RecoveryWindowInDays or ForceDeleteWithoutRecovery, RestoreSecret),
 * response parsing (SecretString, or SecretBinary base64-decoded), the
 * fields of a primary_secret_name document (one JSON object holding many
 * keys), and the mapping of AWS error answers to kms_status (errors.c).
 *
 * Bodies are malloc'ed, NUL-terminated and may hold a secret: release them
 * with sm_free_body (which wipes them). Values that are valid UTF-8 without
 * NUL bytes travel as SecretString, anything else as SecretBinary (base64),
 * so binary values round-trip.
 *
 * Thread-safety: every function is pure (no shared state) and may be called
 * from any thread.
 */
#ifndef AWS_SM_H
#define AWS_SM_H

#include "kms_plugin.h"

#include <stddef.h>
#include <stdint.h>

#define SM_NAME_MAX 512          /* Secrets Manager's limit on a secret name */
#define SM_FIELD_MAX 1024        /* longest field name in a primary secret */
#define SM_VALUE_MAX 65536       /* SecretString / SecretBinary limit (bytes) */
#define SM_CONTENT_TYPE "application/x-amz-json-1.1"

/* KMS_OK if `name` is a Secrets Manager secret name: 1..512 characters of
 * A-Z a-z 0-9 / _ + = . @ -. Otherwise KMS_INVALID_ARGUMENT naming the
 * problem (the name is not echoed: it may be a virtual key). */
kms_status sm_check_name(const char *name, kms_error *err);

/* KMS_OK if `field` can name a key of a primary_secret_name document:
 * 1..SM_FIELD_MAX bytes of UTF-8 without control characters. */
kms_status sm_check_field(const char *field, kms_error *err);

/* ---- request bodies (wipe with sm_free_body) -------------------------- */

/* {"SecretId": name[, "VersionStage": stage][, "VersionId": id]} */
kms_status sm_body_get(const char *name, const char *version_stage, const char *version_id,
                       char **body, size_t *len, kms_error *err);

/* KMS_OK if `id` can be a VersionId (32-64 characters of A-Z a-z 0-9 -) or
 * `stage` a VersionStage (1-256 printable ASCII characters without '?'). */
kms_status sm_check_version_id(const char *id, kms_error *err);
kms_status sm_check_version_stage(const char *stage, kms_error *err);

typedef struct sm_tag {
  const char *key, *value;
} sm_tag;

/* {"Name", "ClientRequestToken", "SecretString"|"SecretBinary",
 *  ["Description"], ["Tags": [{"Key","Value"}...]]}. token: the idempotency
 * token (sm_request_token), so a retried create is not a second version. */
kms_status sm_body_create(const char *name, const char *value, size_t value_len,
                          const char *description, const sm_tag *tags, size_t n_tags,
                          const char *token, char **body, size_t *len, kms_error *err);

/* {"SecretId", "ClientRequestToken", "SecretString"|"SecretBinary"} */
kms_status sm_body_put(const char *name, const char *value, size_t value_len, const char *token,
                       char **body, size_t *len, kms_error *err);

/* {"SecretId", "RecoveryWindowInDays": days} or
 * {"SecretId", "ForceDeleteWithoutRecovery": true} when force. */
kms_status sm_body_delete(const char *name, int recovery_days, int force, char **body,
                          size_t *len, kms_error *err);

/* {"SecretId": name} (RestoreSecret, DescribeSecret) */
kms_status sm_body_id(const char *name, char **body, size_t *len, kms_error *err);

void sm_free_body(char *body, size_t len);

/* A new ClientRequestToken (a random UUID v4, 36 characters + NUL). */
kms_status sm_request_token(char out[37], kms_error *err);

/* ListSecrets: {"MaxResults": SM_LIST_PAGE, "IncludePlannedDeletion": false,
 * ["Filters": [{"Key": "name", "Values": [prefix]}]], ["NextToken": token]}.
 * prefix "" or NULL: no filter (a name filter value cannot be empty). */
#define SM_LIST_PAGE 100
kms_status sm_body_list(const char *prefix, const char *next_token, char **body, size_t *len,
                        kms_error *err);

/* ---- responses ---------------------------------------------------------- */

/* One ListSecrets answer: fn(ctx, Name) for each listed secret whose name
 * starts with `prefix` (exactly, case-sensitive: AWS's filter may match
 * more, e.g. words of a name) and that has no DeletedDate (scheduled for
 * deletion). *stopped = 1 when fn returned nonzero (then no more calls).
 * *next_token: malloc'ed NextToken, or NULL on the last page. KMS_INTERNAL
 * when the answer is not a JSON object with a SecretList array. */
kms_status sm_parse_list(const char *body, size_t len, const char *prefix, kms_list_fn fn,
                         void *ctx, int *stopped, char **next_token, kms_error *err);

/* GetSecretValue's answer: SecretString, or SecretBinary decoded from
 * base64. *value is malloc'ed, NUL-terminated (the NUL not counted in
 * *value_len); wipe it before freeing. KMS_INTERNAL when the answer is not
 * JSON or holds neither (the message says which; never a value). */
kms_status sm_parse_value(const char *body, size_t len, char **value, size_t *value_len,
                          kms_error *err);

/* A number that stands for the answer's VersionId (GetSecretValue,
 * CreateSecret and PutSecretValue all carry one): a 63-bit FNV-1a hash,
 * never 0; 0 when the answer has no VersionId or is not JSON. The cache
 * compares it to tell a new version (a change to notify) from the same one;
 * Secrets Manager's versions are ids, not numbers, so it is never shown to
 * the host as a version. The body is wiped with the parse (it may hold the
 * secret). Thread-safe. */
int64_t sm_version_tag(const char *body, size_t len);

/* The text of a primary_secret_name document's `field`: KMS_NOT_FOUND when
 * absent, KMS_INTERNAL when the document is not a JSON object or the field
 * is not a string. *out as in sm_parse_value. */
kms_status sm_field_get(const char *doc, size_t doc_len, const char *field, char **out,
                        size_t *out_len, kms_error *err);

/* fn(ctx, key) for each key of a primary_secret_name document that starts
 * with `prefix`, until fn returns nonzero. KMS_INTERNAL when the document
 * is not a JSON object. The parsed tree is wiped (it holds the secrets). */
kms_status sm_field_names(const char *doc, size_t doc_len, const char *prefix, kms_list_fn fn,
                          void *ctx, kms_error *err);

/* fn(ctx, key, value, value_len, err) for every entry of a primary_secret_name
 * document in document order (a key written twice comes twice: the last
 * wins, as for sm_field_get); value NULL when the entry is not a string. A
 * status other than KMS_OK from fn stops the walk and is returned.
 * KMS_INTERNAL when the document is not a JSON object. The parsed tree is
 * wiped. */
typedef kms_status (*sm_field_fn)(void *ctx, const char *key, const char *value,
                                  size_t value_len, kms_error *err);
kms_status sm_field_each(const char *doc, size_t doc_len, sm_field_fn fn, void *ctx,
                         kms_error *err);

/* A new document: `doc` (NULL or empty: {}) with `field` set to the value
 * (which must be UTF-8 text without NUL: INVALID_ARGUMENT otherwise), or
 * removed when value is NULL (*changed says whether it was there). *out is
 * malloc'ed (wipe with sm_free_body). */
kms_status sm_field_set(const char *doc, size_t doc_len, const char *field, const char *value,
                        size_t value_len, char **out, size_t *out_len, int *changed,
                        kms_error *err);

/* ---- errors (errors.c) -------------------------------------------------- */

/* An AWS error answer: the error code (the part of "__type" after '#', or
 * the x-amzn-ErrorType header's first part) and the message ("Message" or
 * "message"), each truncated to fit and made one printable line; "" when
 * absent. */
typedef struct sm_error {
  char type[96];
  char message[300];
} sm_error;

void sm_parse_error(const char *body, size_t len, sm_error *out);

/* Map an answer that is not 200 to a kms_status and fill err: "<op>: AWS
 * Secrets Manager <Type> (HTTP <status>[, N attempts]): <AWS's message>;
 * <what to do>". AWS's text is kept, except that any quoted value after
 * "Value '" (a validation echo) is cut and `secret` (the value being written,
 * may be NULL) never appears. */
kms_status sm_map_error(const char *op, long http_status, const char *body, size_t len,
                        int attempts, const char *secret, size_t secret_len, kms_error *err);

/* 1 if the answer is worth retrying: 429, 5xx except 501, and 400 with a
 * throttling type (ThrottlingException, TooManyRequestsException,
 * RequestLimitExceeded, ...), as the AWS SDKs retry. */
int sm_retryable(long http_status, const char *body, size_t len);

/* The two InvalidRequestException answers about a secret scheduled for
 * deletion (CreateSecret: "already scheduled for deletion"; Put/Get/Delete:
 * "marked for deletion"): 1 if this answer is one. */
int sm_is_scheduled_for_deletion(long http_status, const char *body, size_t len);

/* 1 if the answer carries error type `type` (e.g. "ResourceNotFoundException"). */
int sm_error_is(long http_status, const char *body, size_t len, const char *type);

#endif
