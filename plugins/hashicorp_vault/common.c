/*
 * common.c -- the Vault plugin's path encoding and `errors` text (see
 * common.h).
 */
#include "common.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the encoder does with each byte: copy it (RFC 3986 unreserved),
 * end a segment ('/'), encode it, or encode it and mark the name invalid (a
 * control character). One table lookup per byte on the read path. */
enum { ENC_PCT = 0, ENC_COPY, ENC_SLASH, ENC_CTRL };
static const unsigned char ENC_CLASS[256] = {
  [0x01 ... 0x1f] = ENC_CTRL, [0x7f] = ENC_CTRL,
  ['A' ... 'Z'] = ENC_COPY,   ['a' ... 'z'] = ENC_COPY, ['0' ... '9'] = ENC_COPY,
  ['-'] = ENC_COPY,           ['.'] = ENC_COPY,         ['_'] = ENC_COPY,
  ['~'] = ENC_COPY,           ['/'] = ENC_SLASH,
};

/* A segment of `len` bytes ending before `end` is a valid name segment. */
static int segment_ok(const unsigned char *end, size_t len) {
  return len && !(len == 1 && end[-1] == '.') && !(len == 2 && end[-1] == '.' && end[-2] == '.');
}

size_t vault_encode_check(const char *s, char *out, int *valid) {
  static const char hex[] = "0123456789ABCDEF";
  char *o = out;
  const unsigned char *p = (const unsigned char *)s, *seg = p;
  int ok = 1;
  for (; *p; p++) {
    unsigned char c = *p, k = ENC_CLASS[c];
    if (k == ENC_COPY) {
      *o++ = (char)c;
      continue;
    }
    if (k == ENC_SLASH) {
      ok &= segment_ok(p, (size_t)(p - seg));
      seg = p + 1;
      *o++ = '/';
      continue;
    }
    if (k == ENC_CTRL) ok = 0;
    *o++ = '%';
    *o++ = hex[c >> 4];
    *o++ = hex[c & 15];
  }
  ok &= segment_ok(p, (size_t)(p - seg));
  *o = '\0';
  if (valid) *valid = ok;
  return (size_t)(o - out);
}

size_t vault_encode_path_to(const char *s, char *out) { return vault_encode_check(s, out, NULL); }

char *vault_encode_path(const char *s) {
  char *out = malloc(3 * strlen(s) + 1);
  if (out) vault_encode_path_to(s, out);
  return out;
}

void vault_errors_text(const char *body, size_t len, char *buf, size_t size) {
  if (!size) return;
  buf[0] = '\0';
  cJSON *root = kpc_json_parse(body, len);
  cJSON *errs = root ? cJSON_GetObjectItemCaseSensitive(root, "errors") : NULL;
  size_t used = 0;
  cJSON *e;
  cJSON_ArrayForEach(e, errs) {
    if (!cJSON_IsString(e) || !e->valuestring || !*e->valuestring) continue;
    int n = snprintf(buf + used, size - used, "%s%s", used ? "; " : "", e->valuestring);
    if (n < 0 || (size_t)n >= size - used) {
      used = size - 1;
      break;
    }
    used += (size_t)n;
  }
  /* One line, printable. */
  for (char *p = buf; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
  cJSON_Delete(root);
}

int vault_errors_has(const char *body, size_t len, const char *text) {
  cJSON *root = kpc_json_parse(body, len);
  cJSON *errs = root ? cJSON_GetObjectItemCaseSensitive(root, "errors") : NULL;
  int found = 0;
  cJSON *e;
  cJSON_ArrayForEach(e, errs) {
    if (cJSON_IsString(e) && e->valuestring && strstr(e->valuestring, text)) found = 1;
  }
  cJSON_Delete(root);
  return found;
}
