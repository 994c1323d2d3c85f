/*
 * common.c -- the Vault plugin's path encoding and `errors` text (see
 * common.h).
 */
#include "common.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

size_t vault_encode_check(const char *s, char *out, int *valid) {
  static const char hex[] = "0123456789ABCDEF";
  char *o = out;
  size_t seg = 0; /* bytes of the current segment */
  int ok = 1;
  for (const unsigned char *p = (const unsigned char *)s;; p++) {
    unsigned char c = *p;
    if (c == '/' || c == 0) {
      if (seg == 0 || (seg == 1 && p[-1] == '.') || (seg == 2 && p[-1] == '.' && p[-2] == '.'))
        ok = 0;
      if (!c) break;
      *o++ = '/';
      seg = 0;
      continue;
    }
    seg++;
    if (unreserved(c)) {
      *o++ = (char)c;
    } else {
      if (c < 0x20 || c == 0x7f) ok = 0;
      *o++ = '%';
      *o++ = hex[c >> 4];
      *o++ = hex[c & 15];
    }
  }
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
