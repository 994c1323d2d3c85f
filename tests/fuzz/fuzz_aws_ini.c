/*
 * fuzz_aws_ini.c -- the aws_secret_manager plugin's readers of outside
 * input about credentials: the shared credentials/config file parser
 * (aws_ini_parse, plugins/aws_secret_manager/ini.c) and the answers of STS
 * (XML), the ECS endpoint and IMDS (JSON) (aws_creds_parse_sts_xml,
 * aws_creds_parse_json in creds.c).
 *
 * Input: the first byte picks the reader (0: INI, 1: STS XML, 2: JSON; the
 * rest modulo 3), the remaining bytes are the file or answer.
 *
 * Invariants:
 *   - INI: returns 0 or -1 (the callback never stops it); -1 names a line
 *     between 1 and the input's line count; every reported entry has a
 *     non-empty section and key with no surrounding whitespace, the key
 *     lower-case without '=' or ':' and no more entries than lines;
 *   - parsers: KMS_OK gives an AccessKeyId of 16-128 [A-Z0-9], a secret and
 *     token with no whitespace or control byte and an expiry after now;
 *     anything else is a well-formed error with the credentials left empty.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "creds.h"
#include "fuzz_common.h"
#include "ini.h"

typedef struct seen {
  size_t entries;
} seen;

static int ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

static void check_trimmed(const char *what, const char *s, int may_be_empty) {
  size_t n = strlen(s);
  FUZZ_CHECK(may_be_empty || n > 0, "empty %s", what);
  FUZZ_CHECK(n == 0 || (!ws(s[0]) && !ws(s[n - 1])), "%s '%s' not trimmed", what, s);
}

static int on_entry(void *ctx, const char *section, const char *key, const char *value) {
  seen *s = ctx;
  s->entries++;
  check_trimmed("section", section, 0);
  check_trimmed("key", key, 0);
  check_trimmed("value", value, 1);
  FUZZ_CHECK(!strchr(section, '\n'), "newline in a section");
  for (const char *p = key; *p; p++) {
    FUZZ_CHECK(!(*p >= 'A' && *p <= 'Z'), "key '%s' not lower-case", key);
    FUZZ_CHECK(*p != '=' && *p != ':' && *p != '\n', "separator in key '%s'", key);
  }
  return 0;
}

static void fuzz_ini(const char *d, size_t n) {
  size_t lines = 1, bad = 0;
  for (size_t i = 0; i < n; i++) lines += d[i] == '\n';
  seen s = {0};
  int r = aws_ini_parse(d, n, on_entry, &s, &bad);
  FUZZ_CHECK(r == 0 || r == -1, "aws_ini_parse returned %d", r);
  if (r == -1) FUZZ_CHECK(bad >= 1 && bad <= lines, "bad line %zu of %zu", bad, lines);
  FUZZ_CHECK(s.entries <= lines, "%zu entries from %zu lines", s.entries, lines);
}

static void fuzz_creds(int xml, const char *d, size_t n) {
  aws_credentials c = {0};
  kms_error err = {0};
  const int64_t now_s = 1764806400, now_ms = 5000; /* 2025-12-04 */
  kms_status st = xml ? aws_creds_parse_sts_xml(d, n, now_s, now_ms, &c, &err)
                      : aws_creds_parse_json(d, n, now_s, now_ms, &c, &err);
  if (st != KMS_OK) {
    fuzz_check_error(&err, st);
    FUZZ_CHECK(!c.access_key_id && !c.secret_access_key && !c.session_token,
               "credentials left after an error");
    return;
  }
  size_t kl = strlen(c.access_key_id);
  FUZZ_CHECK(kl >= 16 && kl <= 128, "key id length %zu", kl);
  for (const char *p = c.access_key_id; *p; p++)
    FUZZ_CHECK((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'), "key id byte 0x%02x", *p);
  const char *toks[] = {c.secret_access_key, c.session_token};
  for (size_t i = 0; i < 2; i++)
    for (const char *p = toks[i]; p && *p; p++)
      FUZZ_CHECK((unsigned char)*p > 0x20 && *p != 0x7f, "space or control byte in a token");
  FUZZ_CHECK(c.secret_access_key && *c.secret_access_key, "no secret");
  FUZZ_CHECK(c.expires_ms == 0 || c.expires_ms > now_ms, "expiry %lld not after now",
             (long long)c.expires_ms);
  FUZZ_CHECK(xml ? c.session_token && c.expires_ms : 1, "STS credentials without token/expiry");
  aws_credentials_clear(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const char *d = (const char *)data + 1;
  size_t n = size - 1;
  /* a copy: the parsers must not read past n (ASan sees the exact size) */
  char *copy = malloc(n ? n : 1);
  if (!copy) return 0;
  memcpy(copy, d, n);
  switch (data[0] % 3) {
  case 0: fuzz_ini(copy, n); break;
  case 1: fuzz_creds(1, copy, n); break;
  default: fuzz_creds(0, copy, n); break;
  }
  free(copy);
  return 0;
}
