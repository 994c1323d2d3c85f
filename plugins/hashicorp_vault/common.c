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

size_t vault_encode_path_to(const char *s, char *out) {
  static const char hex[] = "0123456789ABCDEF";
  char *o = out;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (unreserved(*p) || *p == '/') {
      *o++ = (char)*p;
    } else {
      *o++ = '%';
      *o++ = hex[*p >> 4];
      *o++ = hex[*p & 15];
    }
  }
  *o = '\0';
  return (size_t)(o - out);
}

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
