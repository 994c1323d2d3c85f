/*
 * io.c -- reading secrets from standard input, and showing text on a
 * terminal without letting it drive the terminal.
 *
 * A secret's value is whatever its owner stored, so `secret get` must not
 * pass ESC sequences, CR or C1 controls straight to a terminal (they can
 * retitle windows, rewrite what was printed or, on some terminals, answer
 * back as typed input). Pipes and files still get the raw bytes.
 */
#include "host.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

host_status host_read_all(FILE *f, size_t max, const char *what, char **out, size_t *len,
                          host_result *r) {
  size_t cap = max < 4096 ? max + 1 : 4096, n = 0;
  char *buf = malloc(cap);
  if (!buf) return host_fail(r, HOST_FAILED, "out of memory reading %s", what);
  for (;;) {
    if (n == cap) {
      if (n > max) break;
      size_t ncap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
      char *nb = malloc(ncap); /* not realloc: the old copy must be wiped */
      if (!nb) {
        OPENSSL_cleanse(buf, cap);
        free(buf);
        return host_fail(r, HOST_FAILED, "out of memory reading %s", what);
      }
      memcpy(nb, buf, n);
      OPENSSL_cleanse(buf, cap);
      free(buf);
      buf = nb;
      cap = ncap;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) {
      if (ferror(f)) {
        OPENSSL_cleanse(buf, cap);
        free(buf);
        return host_fail(r, HOST_FAILED, "cannot read %s", what);
      }
      *out = buf;
      *len = n;
      return HOST_OK;
    }
  }
  OPENSSL_cleanse(buf, cap);
  free(buf);
  return host_fail(r, HOST_FAILED, "%s is longer than %zu bytes", what, max);
}

size_t host_strip_newline(const char *s, size_t len) {
  if (len && s[len - 1] == '\n') {
    len--;
    if (len && s[len - 1] == '\r') len--;
  }
  return len;
}

/* Length of the well-formed UTF-8 sequence at s (1..4) that is not a C1
 * control, or 0. */
static size_t utf8_char(const unsigned char *s, size_t len) {
  size_t n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
  if (s[0] >= 0xf5 || n == 0 || n > len) return 0;
  for (size_t i = 1; i < n; i++)
    if ((s[i] & 0xc0) != 0x80) return 0;
  if (n == 2 && s[0] == 0xc2 && s[1] < 0xa0) return 0;         /* C1: U+0080..U+009F */
  if (n == 3 && s[0] == 0xe0 && s[1] < 0xa0) return 0;         /* overlong */
  if (n == 3 && s[0] == 0xed && s[1] >= 0xa0) return 0;        /* surrogates */
  if (n == 4 && s[0] == 0xf0 && s[1] < 0x90) return 0;         /* overlong */
  if (n == 4 && s[0] == 0xf4 && s[1] >= 0x90) return 0;        /* > U+10FFFF */
  return n;
}

/* Bytes of the next character that may go to a terminal raw, or 0. */
static size_t safe_char(const unsigned char *s, size_t len) {
  if (s[0] == '\n' || s[0] == '\t' || (s[0] >= 0x20 && s[0] < 0x7f)) return 1;
  if (s[0] < 0x80) return 0;
  return utf8_char(s, len);
}

int host_text_unsafe_for_terminal(const char *s, size_t len) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < len;) {
    size_t n = safe_char(u + i, len - i);
    if (!n) return 1;
    i += n;
  }
  return 0;
}

char *host_text_escape(const char *s, size_t len) {
  const unsigned char *u = (const unsigned char *)s;
  if (len > (SIZE_MAX - 1) / 4) return NULL;
  char *out = malloc(4 * len + 1), *o = out;
  if (!out) return NULL;
  for (size_t i = 0; i < len;) {
    size_t n = safe_char(u + i, len - i);
    if (n == 1 && u[i] == '\\') {
      *o++ = '\\';
      *o++ = '\\';
    } else if (n) {
      memcpy(o, u + i, n);
      o += n;
    } else {
      static const char hex[] = "0123456789abcdef";
      *o++ = '\\';
      *o++ = 'x';
      *o++ = hex[u[i] >> 4];
      *o++ = hex[u[i] & 15];
      n = 1;
    }
    i += n;
  }
  *o = '\0';
  return out;
}
