/*
 * fuzz_kv2_body.c -- request bodies the plugin builds from caller data:
 * kv2_write_body (secret values, any bytes, with and without check-and-set)
 * and kv2_metadata_body (descriptions).
 *
 * Input: byte 0 = flags (bit 0: cas, bit 1: also a metadata body), bytes
 * 1-8 = the cas version (mod 1e15), the rest = the value (may hold NUL bytes).
 *
 * Invariants: a value with a NUL byte or invalid UTF-8 (independent
 * validator: no overlong forms, no surrogates, <= U+10FFFF) is
 * INVALID_ARGUMENT with a message; an accepted one gives a body that parses
 * as JSON with data.key equal to the value byte for byte, options.cas present
 * exactly when asked, and body_len == strlen(body). Descriptions: accepted
 * iff valid UTF-8 of at most 4096 bytes; the body round-trips.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz_common.h"
#include "kv2.h"

static int utf8_ok(const unsigned char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    unsigned c = s[i], need, min;
    uint32_t cp;
    if (c < 0x80) { i++; continue; }
    if (c >= 0xc2 && c <= 0xdf) need = 1, min = 0x80, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef) need = 2, min = 0x800, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) need = 3, min = 0x10000, cp = c & 0x07;
    else return 0;
    if (n - i <= need) return 0;
    for (unsigned j = 1; j <= need; j++) {
      if ((s[i + j] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + j] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    i += need + 1;
  }
  return 1;
}

static void check_body(const char *body, size_t body_len, const char *value, size_t len, int cas,
                       uint64_t ver) {
  FUZZ_CHECK(body && strlen(body) == body_len, "body_len %zu != strlen", body_len);
  cJSON *root = cJSON_ParseWithLength(body, body_len);
  FUZZ_CHECK(root, "write body is not JSON");
  cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "data");
  cJSON *k = cJSON_GetObjectItemCaseSensitive(d, "key");
  FUZZ_CHECK(cJSON_IsString(k) && strlen(k->valuestring) == len &&
                 !memcmp(k->valuestring, value, len),
             "data.key does not round-trip");
  cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "options");
  cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "cas");
  FUZZ_CHECK(!!c == !!cas, "options.cas present %d, asked %d", !!c, cas);
  if (cas) FUZZ_CHECK(cJSON_IsNumber(c) && c->valuedouble == (double)ver, "options.cas value");
  cJSON_Delete(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 9 || size > 65536) return 0;
  int cas = data[0] & 1, meta = data[0] & 2;
  uint64_t ver;
  memcpy(&ver, data + 1, 8);
  /* cJSON prints numbers with 15 significant digits and accepts that as a
   * round trip, so only versions below 1e15 are exact in the body (KV
   * versions count writes: far below that). */
  ver %= 1000000000000000ull;
  const char *value = (const char *)data + 9;
  size_t len = size - 9;
  int good = !memchr(value, 0, len) && utf8_ok((const unsigned char *)value, len);

  char *body = (char *)0x1;
  size_t body_len = 7;
  kms_error err;
  memset(&err, 0, sizeof err);
  kms_status st = kv2_write_body(value, len, cas, ver, &body, &body_len, &err);
  FUZZ_CHECK((st == KMS_OK) == good, "kv2_write_body status %d, model says %s", (int)st,
             good ? "valid" : "invalid");
  if (st == KMS_OK) {
    check_body(body, body_len, value, len, cas, ver);
    kv2_free_body(body, body_len);
  } else {
    FUZZ_CHECK(st == KMS_INVALID_ARGUMENT, "status %d", (int)st);
    FUZZ_CHECK(body == NULL && body_len == 0, "outputs not reset");
    fuzz_check_error(&err, st);
  }

  if (meta && !memchr(value, 0, len)) {
    char *desc = malloc(len + 1);
    if (!desc) abort();
    memcpy(desc, value, len);
    desc[len] = '\0';
    st = kv2_metadata_body(desc, &body, &body_len, &err);
    FUZZ_CHECK((st == KMS_OK) == (good && len <= 4096), "kv2_metadata_body status %d", (int)st);
    if (st == KMS_OK) {
      FUZZ_CHECK(strlen(body) == body_len, "metadata body_len");
      cJSON *root = cJSON_ParseWithLength(body, body_len);
      cJSON *cm = cJSON_GetObjectItemCaseSensitive(root, "custom_metadata");
      cJSON *ds = cJSON_GetObjectItemCaseSensitive(cm, "description");
      FUZZ_CHECK(cJSON_IsString(ds) && !strcmp(ds->valuestring, desc), "description round-trip");
      cJSON_Delete(root);
      kv2_free_body(body, body_len);
    } else {
      fuzz_check_error(&err, st);
    }
    free(desc);
  }
  return 0;
}
