/*
 * fuzz_kv2_response.c -- arbitrary bytes as a Vault HTTP answer to a KV v2
 * read, dispatched exactly as plugin.c's fetch_secret does: HTTP 200 goes to
 * kv2_parse_read, anything else to kv2_map_status. Also runs
 * kv2_parse_write_version and kv2_errors_text (every small buffer size).
 *
 * Input: byte 0 picks the HTTP status (200 204 400 403 404 412 429 500 503),
 * byte 1 the flags (bit 0: the caller had a token; bits 1-3: attempts - 1),
 * then "<secret name>\n<body>" (no '\n': the name is OPENAI_API_KEY and
 * everything is the body). Every "$K" in the body is replaced by a canary
 * secret before the call, so the seeds can put it where a value goes.
 *
 * Invariants:
 *   - KMS_OK only for HTTP 200 with data.data.key a string; the value is
 *     exactly that string (checked against an independent cJSON parse),
 *     NUL-terminated, value_len == strlen(value);
 *   - every error: err.status == returned status, a non-empty one-line
 *     printable message, and the status HTTP mapping documented in kv2.h;
 *   - the canary never appears in an error message unless Vault's own
 *     `errors` text (which the message quotes by design) carries it or the
 *     input spells it outside a "$K";
 *   - kv2_errors_text always NUL-terminates inside the buffer.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz_common.h"
#include "common.h"
#include "kv2.h"

#define CANARY "kmsfuzz-S3CRET-c4n4ry"

static const long statuses[] = {200, 204, 400, 403, 404, 412, 429, 500, 503};

/* Body with every "$K" replaced by CANARY; NUL-terminated like http.c's
 * response buffer (the length excludes the NUL). */
static char *substitute(const uint8_t *p, size_t n, size_t *out_len) {
  size_t count = 0;
  for (size_t i = 0; i + 1 < n; i++)
    if (p[i] == '$' && p[i + 1] == 'K') count++, i++;
  size_t cl = strlen(CANARY), len = n + count * (cl - 2);
  char *b = malloc(len + 1), *o = b;
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
  *out_len = len;
  return b;
}

/* data.data.key as a string, by our own reading of the body (NULL if none). */
/* Any byte outside ASCII: the only way a string can fail UTF-8 validation. */
static int has_high_byte(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s >= 0x80) return 1;
  return 0;
}

static char *expected_value(const char *body, size_t len) {
  cJSON *root = cJSON_ParseWithLength(body, len);
  cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "data");
  cJSON *dd = cJSON_IsObject(d) ? cJSON_GetObjectItemCaseSensitive(d, "data") : NULL;
  cJSON *k = cJSON_IsObject(dd) ? cJSON_GetObjectItemCaseSensitive(dd, "key") : NULL;
  char *v = cJSON_IsString(k) && k->valuestring ? strdup(k->valuestring) : NULL;
  cJSON_Delete(root);
  return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  const uint8_t *raw = data;
  size_t raw_size = size;
  long http = statuses[data[0] % (sizeof statuses / sizeof *statuses)];
  int have_token = data[1] & 1, attempts = 1 + ((data[1] >> 1) & 7);
  data += 2;
  size -= 2;

  /* The name: only names kv2_url would accept reach the parser in the plugin. */
  char name[VAULT_NAME_MAX + 1] = "OPENAI_API_KEY";
  const uint8_t *nl = memchr(data, '\n', size < 300 ? size : 300);
  if (nl) {
    size_t nn = (size_t)(nl - data);
    char cand[301];
    memcpy(cand, data, nn);
    cand[nn] = '\0';
    kms_error e;
    if (strlen(cand) == nn && kv2_validate_name(cand, &e) == KMS_OK) memcpy(name, cand, nn + 1);
    size -= nn + 1;
    data = nl + 1;
  }
  char *enc = vault_encode_path(name);
  if (!enc) abort();
  char path[3 * VAULT_NAME_MAX + 32];
  snprintf(path, sizeof path, "/v1/secret/data/%s", enc);
  free(enc);

  size_t len;
  char *body = substitute(data, size, &len);
  char etext_full[4096];
  vault_errors_text(body, len, etext_full, sizeof etext_full);

  kms_error err;
  memset(&err, 0, sizeof err);
  kms_status st;
  if (http == 200) {
    char *value = (char *)0x1;
    size_t value_len = 99;
    int64_t version = -1;
    st = kv2_parse_read(body, len, path, &value, &value_len, &version, &err);
    char *want = expected_value(body, len);
    if (st == KMS_OK) {
      FUZZ_CHECK(want != NULL, "OK but the body has no string data.data.key");
      FUZZ_CHECK(value != NULL, "OK without a value");
      FUZZ_CHECK(value[value_len] == '\0' && strlen(value) == value_len,
                 "value not NUL-terminated at value_len %zu", value_len);
      FUZZ_CHECK(strcmp(value, want) == 0, "value differs from data.data.key");
      free(value);
    } else {
      FUZZ_CHECK(value == NULL && value_len == 0 && version == 0,
                 "outputs not reset on error (status %d)", (int)st);
      FUZZ_CHECK(st == KMS_NOT_FOUND || st == KMS_INTERNAL || st == KMS_NO_MEMORY ||
                     st == KMS_UNSUPPORTED,
                 "HTTP 200 mapped to status %d", (int)st);
      /* A string data.data.key may still be refused: UNSUPPORTED when it holds
       * a NUL (\u0000) a C string would cut short, or bytes that are not UTF-8
       * (only possible with a byte >= 0x80); INTERNAL when the body holds a
       * raw NUL byte, which JSON never does. */
      FUZZ_CHECK(want == NULL || st == KMS_NO_MEMORY ||
                     (st == KMS_UNSUPPORTED && (memmem(body, len, "\\u0000", 6) != NULL ||
                                                has_high_byte(want))) ||
                     (st == KMS_INTERNAL && memchr(body, '\0', len) != NULL),
                 "data.data.key is a string but the read failed: %s", err.message);
      fuzz_check_error(&err, st);
    }
    free(want);
    (void)kv2_parse_write_version(body, len);
  } else {
    st = kv2_map_status("read", path, http, body, len, attempts, have_token, &err);
    FUZZ_CHECK(st != KMS_OK, "HTTP %ld mapped to OK", http);
    fuzz_check_error(&err, st);
    FUZZ_CHECK(err.backend_status == (int32_t)http, "backend_status %d for HTTP %ld",
               (int)err.backend_status, http);
    kms_status want;
    switch (http) {
    case 404: want = KMS_NOT_FOUND; break;
    case 400:
      want = strstr(etext_full, "check-and-set parameter did not match") ? KMS_CONFLICT
                                                                           : KMS_INVALID_ARGUMENT;
      break;
    case 403: want = st == KMS_UNAUTHENTICATED ? st : KMS_PERMISSION_DENIED; break;
    case 412: case 429: case 500: case 503: want = KMS_UNAVAILABLE; break;
    default: want = KMS_INTERNAL; break;
    }
    /* 400 CAS: the 160-byte etext inside kv2 may cut the phrase only if an
     * earlier error is long; accept INVALID_ARGUMENT then. */
    if (http == 400 && want == KMS_CONFLICT && st == KMS_INVALID_ARGUMENT) want = st;
    FUZZ_CHECK(st == want, "HTTP %ld mapped to %d, want %d", http, (int)st, (int)want);
    if (http == 403 && !have_token)
      FUZZ_CHECK(st == KMS_UNAUTHENTICATED, "403 without a token must be UNAUTHENTICATED");
  }
  /* (Skipped when the input spells the canary itself, e.g. in the name.) */
  if (st != KMS_OK && strstr(err.message, CANARY) && !memmem(raw, raw_size, "c4n4ry", 6))
    FUZZ_CHECK(strstr(etext_full, CANARY) != NULL,
               "the secret value leaked into the error message: %s", err.message);

  /* kv2_errors_text with every small buffer size. */
  for (size_t sz = 0; sz <= 8; sz++) {
    char small[9];
    memset(small, 'X', sizeof small);
    vault_errors_text(body, len, small, sz);
    if (sz) FUZZ_CHECK(strnlen(small, sz) < sz, "errors text not NUL-terminated in %zu bytes", sz);
    FUZZ_CHECK(small[sz] == 'X', "errors text wrote past %zu bytes", sz);
  }
  free(body);
  return 0;
}
