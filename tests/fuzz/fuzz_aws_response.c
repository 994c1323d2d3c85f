/*
 * fuzz_aws_response.c -- arbitrary bytes as an AWS Secrets Manager answer,
 * dispatched as the aws_secret_manager plugin does: HTTP 200 goes to
 * sm_parse_value (SecretString / SecretBinary) and, as a primary_secret_name
 * document, to sm_field_get and sm_field_set; anything else to sm_map_error,
 * sm_retryable and sm_is_scheduled_for_deletion. A 200 is also read as a
 * ListSecrets answer (sm_parse_list) and its document's keys listed.
 *
 * Input: byte 0 picks the HTTP status (200 400 403 404 429 500 503), byte 1
 * the attempts (1-8), then the body. Every "$K" in the body is replaced by a
 * canary secret, so seeds can put it where a value goes; the write under
 * test is the canary too (sm_map_error's `secret`).
 *
 * Invariants:
 *   - sm_parse_value: KMS_OK only with a string SecretString (the value is
 *     exactly it) or SecretBinary (then value_len <= 3/4 of its length);
 *     the value is NUL-terminated; errors are KMS_INTERNAL and well formed;
 *   - sm_field_get: KMS_OK gives a NUL-terminated string; errors are
 *     NOT_FOUND or INTERNAL, well formed, never quoting the canary;
 *   - sm_field_set of a field, then sm_field_get of it, gives the value back;
 *   - sm_map_error: a well-formed error whose status is not KMS_OK, with
 *     backend_status = the HTTP status, that never contains the canary;
 *   - sm_retryable(200) is 0;
 *   - sm_parse_list (a ListSecrets answer): KMS_OK or a well-formed
 *     KMS_INTERNAL; every name delivered starts with the prefix; a callback
 *     that stops is not called again and leaves no NextToken; a NextToken
 *     given back is a non-empty string; sm_field_names likewise;
 *   - primary_watch (a 200 as a new version of a fixed primary document):
 *     every change names a field of the old document, once, as UPDATED or
 *     DELETED; the same document again reports nothing.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz_common.h"
#include "kms_plugin_util.h"
#include "primary_watch.h"
#include "sm.h"

#define CANARY "kmsfuzz-S3CRET-c4n4ry"

static const long statuses[] = {200, 400, 403, 404, 429, 500, 503};

/* Body with every "$K" replaced by CANARY, NUL-terminated like kpc_http's
 * response buffer (the length excludes the NUL). */
static char *substitute(const uint8_t *p, size_t n, size_t *out_len) {
  size_t cl = strlen(CANARY);
  char *b = malloc(n * cl + 1), *o = b;
  if (!b) abort();
  for (size_t i = 0; i < n; i++) {
    if (i + 1 < n && p[i] == '$' && p[i + 1] == 'K') {
      memcpy(o, CANARY, cl);
      o += cl;
      i++;
    } else {
      *o++ = (char)p[i];
    }
  }
  *o = '\0';
  *out_len = (size_t)(o - b);
  return b;
}

/* SecretString as our own cJSON reading sees it (NULL if not a string). */
static char *expected_string(const char *body, size_t len) {
  if (memchr(body, '\0', len)) return NULL;
  cJSON *root = cJSON_ParseWithLength(body, len);
  cJSON *s = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "SecretString") : NULL;
  char *v = cJSON_IsString(s) && s->valuestring ? strdup(s->valuestring) : NULL;
  cJSON_Delete(root);
  return v;
}

static void check_value(const char *body, size_t len) {
  char *v = NULL;
  size_t n = 0;
  kms_error err;
  kms_error_clear(&err);
  kms_status st = sm_parse_value(body, len, &v, &n, &err);
  char *want = expected_string(body, len);
  if (st == KMS_OK) {
    FUZZ_CHECK(v && v[n] == '\0', "value not NUL-terminated");
    if (want) FUZZ_CHECK(n == strlen(want) && !memcmp(v, want, n), "SecretString differs");
  } else {
    FUZZ_CHECK(st == KMS_INTERNAL && !v, "parse: status %d", (int)st);
    FUZZ_CHECK(!want, "a string SecretString was refused: %s", err.message);
    fuzz_check_error(&err, st);
  }
  free(v);
  free(want);
}

static void check_document(const char *body, size_t len) {
  char *v = NULL, *doc = NULL, *back = NULL;
  size_t n = 0, dn = 0, bn = 0;
  int changed = 0;
  kms_error err;
  kms_error_clear(&err);
  kms_status st = sm_field_get(body, len, "OPENAI_API_KEY", &v, &n, &err);
  if (st == KMS_OK) {
    FUZZ_CHECK(v && v[n] == '\0', "field not NUL-terminated");
  } else {
    FUZZ_CHECK(st == KMS_NOT_FOUND || st == KMS_INTERNAL, "field: status %d", (int)st);
    fuzz_check_error(&err, st);
    FUZZ_CHECK(!fuzz_contains(err.message, CANARY), "canary in message: %s", err.message);
  }
  free(v);
  st = sm_field_set(body, len, "K", "new-value", 9, &doc, &dn, &changed, &err);
  if (st == KMS_OK) {
    FUZZ_CHECK(sm_field_get(doc, dn, "K", &back, &bn, &err) == KMS_OK, "set, then get: %s",
               err.message);
    FUZZ_CHECK(bn == 9 && !memcmp(back, "new-value", 9), "set, then get: another value");
    free(back);
  } else {
    fuzz_check_error(&err, st);
  }
  sm_free_body(doc, dn);
}

static void check_watch(const char *body, size_t len) {
  static const char *const fields[] = {"OPENAI_API_KEY", "K", ""};
  static const char base[] = "{\"OPENAI_API_KEY\":\"a\",\"K\":\"b\",\"\":\"c\"}";
  primary_watch *w = pw_new();
  FUZZ_CHECK(w != NULL, "pw_new failed");
  pw_changes ch = {0};
  pw_update(w, base, strlen(base), PW_SEED, NULL);
  pw_update(w, body, len, PW_DIFF, &ch);
  FUZZ_CHECK(ch.n <= 3, "%zu changes of a 3-field document", ch.n);
  for (size_t i = 0; i < ch.n; i++) {
    int known = 0;
    for (size_t f = 0; f < 3; f++) known |= !strcmp(ch.v[i].name, fields[f]);
    FUZZ_CHECK(known, "a change of a field the old document did not hold");
    FUZZ_CHECK(ch.v[i].kind == KMS_CHANGE_UPDATED || ch.v[i].kind == KMS_CHANGE_DELETED,
               "change kind %u", (unsigned)ch.v[i].kind);
    for (size_t j = 0; j < i; j++)
      FUZZ_CHECK(strcmp(ch.v[i].name, ch.v[j].name) != 0, "a field reported twice");
  }
  pw_changes_free(&ch);
  pw_update(w, body, len, PW_DIFF, &ch);
  FUZZ_CHECK(ch.n == 0, "the same document again reported %zu changes", ch.n);
  pw_changes_free(&ch);
  pw_free(w);
}

typedef struct list_seen {
  const char *prefix;
  int calls, stop_at, after_stop;
} list_seen;

static int on_name(void *ctx, const char *name) {
  list_seen *l = ctx;
  if (l->stop_at && l->calls >= l->stop_at) l->after_stop = 1;
  l->calls++;
  FUZZ_CHECK(name && !strncmp(name, l->prefix, strlen(l->prefix)), "a name without the prefix");
  return l->stop_at && l->calls >= l->stop_at;
}

static void check_list(const char *body, size_t len) {
  for (int stop = 0; stop < 2; stop++) {
    list_seen l = {.prefix = stop ? "" : "vk/", .stop_at = stop};
    char *next = NULL;
    int stopped = 0;
    kms_error err;
    kms_error_clear(&err);
    kms_status st = sm_parse_list(body, len, l.prefix, on_name, &l, &stopped, &next, &err);
    if (st != KMS_OK) {
      FUZZ_CHECK(st == KMS_INTERNAL && !next && !l.calls, "list: status %d", (int)st);
      fuzz_check_error(&err, st);
    }
    FUZZ_CHECK(!l.after_stop, "list: called after the callback stopped");
    FUZZ_CHECK(!stopped || !next, "list: a NextToken after a stop");
    FUZZ_CHECK(!next || *next, "list: an empty NextToken");
    free(next);
    l = (list_seen){.prefix = "K", .stop_at = stop};
    st = sm_field_names(body, len, l.prefix, on_name, &l, &err);
    FUZZ_CHECK(st == KMS_OK || st == KMS_INTERNAL, "field names: status %d", (int)st);
    FUZZ_CHECK(!l.after_stop, "field names: called after the callback stopped");
  }
}

static void check_error(long status, int attempts, const char *body, size_t len) {
  kms_error err;
  kms_error_clear(&err);
  kms_status st = sm_map_error("write (PutSecretValue)", status, body, len, attempts, CANARY,
                               strlen(CANARY), &err);
  FUZZ_CHECK(st != KMS_OK, "an error answer mapped to OK");
  fuzz_check_error(&err, st);
  FUZZ_CHECK(err.backend_status == status, "backend_status %d", (int)err.backend_status);
  FUZZ_CHECK(!fuzz_contains(err.message, CANARY), "canary in message: %s", err.message);
  (void)sm_retryable(status, body, len);
  (void)sm_is_scheduled_for_deletion(status, body, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  long status = statuses[data[0] % (sizeof statuses / sizeof *statuses)];
  int attempts = 1 + (data[1] & 7);
  size_t len;
  char *body = substitute(data + 2, size - 2, &len);
  if (status == 200) {
    check_value(body, len);
    check_document(body, len);
    check_watch(body, len);
    check_list(body, len);
    FUZZ_CHECK(!sm_retryable(200, body, len), "a 200 is retryable");
  } else {
    check_error(status, attempts, body, len);
  }
  free(body);
  return 0;
}
