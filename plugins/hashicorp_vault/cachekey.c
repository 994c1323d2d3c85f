/*
 * cachekey.c -- the hashicorp_vault plugin's cache keys, made and read
 * back. Cache keys are short, so that a hit hashes and compares a few bytes
 * (vault_key_make):
 *     [@<data base URL>]<percent-encoded name>[?version=N][#f=<field>]
 * The "@<data base URL>" part only for a location override whose data base
 * differs from the instance's (whose keys are the bare encoded name); an
 * encoded name never holds '@', '?' or '#' (vault_encode_path encodes
 * them), so the parts cannot be confused. "?version=N" pins a version (it
 * never changes, so it is cached like any other key); "#f=<field>" reads
 * another field than "key". vault_fetch_secret (ops.c) turns a key back
 * into the request's URL; vault_key_decode gives a name back for a change
 * notification (abi11.c).
 *
 * Thread-safety: pure functions of their arguments and the instance's
 * immutable layout; any thread.
 */
#include "instance.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kms_status vault_key_make(const kms_instance *in, const kv2_layout *l, const char *name,
                          int64_t version, const char *field, vault_key *k, kms_error *err) {
  k->s = k->stack;
  const char *base = NULL;
  size_t bl = 0, fl = field ? strlen(field) : 0;
  if (l != &in->layout && strcmp(l->data_base, in->layout.data_base) != 0) {
    base = l->data_base;
    bl = strlen(base);
  }
  size_t need = 1 + bl + KV2_ENC_MAX + 32 + (field ? fl + 3 : 0);
  if (need > sizeof k->stack && !(k->s = malloc(need))) {
    k->s = k->stack;
    return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  }
  char *p = k->s;
  if (base) {
    *p++ = '@';
    memcpy(p, base, bl);
    p += bl;
  }
  size_t el;
  kms_status st = kv2_encode_name(name, p, &el, err);
  if (st != KMS_OK) {
    vault_key_free(k);
    return st;
  }
  p += el;
  if (version) p += (size_t)snprintf(p, 32, "?version=%lld", (long long)version);
  if (field) {
    memcpy(p, "#f=", 3);
    memcpy(p + 3, field, fl + 1);
  }
  return KMS_OK;
}

void vault_key_free(vault_key *k) {
  if (k->s != k->stack) free(k->s);
  k->s = k->stack;
}

static int hexval(int c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                        : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

char *vault_key_decode(const char *s, size_t n) {
  char *d = malloc(n + 1), *o = d;
  if (!d) return NULL;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%' && i + 2 < n + 1 && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      *o++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    } else {
      *o++ = s[i];
    }
  }
  *o = '\0';
  return d;
}
