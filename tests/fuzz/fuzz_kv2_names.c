/*
 * fuzz_kv2_names.c -- secret names, namespace, mount and path prefix through
 * vault_config_load (the real normalisation of HCP_VAULT_SECRET_NAMESPACE,
 * HCP_VAULT_MOUNT_NAME, HCP_VAULT_PATH_PREFIX, served by a kms_host getenv)
 * and the KV v2 URL builder (kv2_layout_init, kv2_url, kpc_url_path).
 *
 * Input: NUL-separated fields "namespace\0mount\0prefix\0name\0name\0...".
 * A missing or empty field leaves the variable unset. A config the loader
 * refuses must be INVALID_ARGUMENT with a message; the names are then tried
 * on the default layout.
 *
 * Invariants:
 *   - kv2_validate_name accepts exactly the names of an independent model:
 *     1..VAULT_NAME_MAX bytes, no byte < 0x20 or 0x7f, no empty, "." or ".."
 *     '/'-segment; a refusal is INVALID_ARGUMENT with a message, and kv2_url
 *     then returns no URL;
 *   - an accepted name gives data and metadata URLs that start with the
 *     configured address, whose path is "/v1/" followed by non-empty segments
 *     none of which is "." or "..", made only of RFC 3986 unreserved
 *     characters and %XX escapes (so no control byte, space, '?', '#', '%'
 *     or other reserved character unencoded); the name part decodes back to
 *     the name exactly, and the namespace/mount/prefix decode back to the
 *     loader's normalised values.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_common.h"
#include "common.h"
#include "kv2.h"

#define ADDR "https://vault.example.com:8200"

static int unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1; /* lower-case hex is not what kv2 emits */
}

/* The independent model of an acceptable name. */
static int name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > VAULT_NAME_MAX) return 0;
  const char *seg = s;
  for (const char *p = s;; p++) {
    unsigned char c = (unsigned char)*p;
    if ((c && c < 0x20) || c == 0x7f) return 0;
    if (c == '/' || !c) {
      size_t l = (size_t)(p - seg);
      if (l == 0 || (l == 1 && seg[0] == '.') || (l == 2 && seg[0] == '.' && seg[1] == '.'))
        return 0;
      if (!c) return 1;
      seg = p + 1;
    }
  }
}

/* Check the shape of a URL path and decode it (percent-decoding) into out. */
static void check_path(const char *path, char *out, size_t outsz) {
  FUZZ_CHECK(strncmp(path, "/v1/", 4) == 0, "path '%s' does not start with /v1/", path);
  size_t o = 0;
  out[o++] = '/';
  const char *seg = path + 1;
  for (const char *p = path + 1;; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '/' || !c) {
      size_t l = (size_t)(p - seg);
      FUZZ_CHECK(l > 0, "empty segment in '%s'", path);
      FUZZ_CHECK(!(l == 1 && seg[0] == '.') && !(l == 2 && seg[0] == '.' && seg[1] == '.'),
                 "dot segment in '%s'", path);
      if (!c) break;
      seg = p + 1;
      FUZZ_CHECK(o + 1 < outsz, "decode overflow");
      out[o++] = '/';
      continue;
    }
    if (c == '%') {
      int h = hexval(p[1]), l = h < 0 ? -1 : hexval(p[2]);
      FUZZ_CHECK(h >= 0 && l >= 0, "bad %%-escape at offset %zu of '%s'", (size_t)(p - path), path);
      FUZZ_CHECK(o + 1 < outsz, "decode overflow");
      out[o++] = (char)(h * 16 + l);
      p += 2;
      continue;
    }
    FUZZ_CHECK(unreserved(c), "raw byte 0x%02x at offset %zu of '%s'", c, (size_t)(p - path),
               path);
    FUZZ_CHECK(o + 1 < outsz, "decode overflow");
    out[o++] = (char)c;
  }
  out[o] = '\0';
}

/* "/v1/" [ns "/"] mount "/" kind "/" [prefix "/"] name, decoded. */
static void check_url(const kv2_layout *l, const vault_config *cfg, kv2_kind kind,
                      const char *name, const char *url) {
  FUZZ_CHECK(strncmp(url, ADDR, strlen(ADDR)) == 0, "URL '%s' does not start with the address",
             url);
  const char *path = kpc_url_path(cfg->addr, url);
  FUZZ_CHECK(path == url + strlen(ADDR), "kpc_url_path does not skip the address");
  size_t cap = strlen(path) + 1;
  char *dec = malloc(cap), *want = malloc(cap + 64);
  if (!dec || !want) abort();
  check_path(path, dec, cap);
  snprintf(want, cap + 64, "/v1/%s%s%s/%s/%s%s%s", cfg->secret_namespace ? cfg->secret_namespace : "",
           cfg->secret_namespace ? "/" : "", cfg->mount, kind == KV2_DATA ? "data" : "metadata",
           cfg->prefix ? cfg->prefix : "", cfg->prefix ? "/" : "", name);
  FUZZ_CHECK(strcmp(dec, want) == 0, "URL path decodes to '%s', want '%s'", dec, want);
  free(dec);
  free(want);
}

static void try_name(const kv2_layout *l, const vault_config *cfg, const char *name) {
  kms_error err;
  memset(&err, 0, sizeof err);
  int model = name_ok(name);
  kms_status st = kv2_validate_name(name, &err);
  FUZZ_CHECK((st == KMS_OK) == model, "kv2_validate_name says %d, the model says %d", (int)st,
             model);
  if (st != KMS_OK) {
    FUZZ_CHECK(st == KMS_INVALID_ARGUMENT, "refused name with status %d", (int)st);
    fuzz_check_error(&err, st);
  }
  for (int k = 0; k < 2; k++) {
    kv2_kind kind = k ? KV2_METADATA : KV2_DATA;
    char *url = (char *)0x1;
    kms_error e2;
    kms_status s2 = kv2_url(l, kind, name, &url, &e2);
    FUZZ_CHECK(s2 == st, "kv2_url status %d, kv2_validate_name %d", (int)s2, (int)st);
    if (s2 != KMS_OK) {
      FUZZ_CHECK(url == NULL, "URL left set on error");
      continue;
    }
    check_url(l, cfg, kind, name, url);
    free(url);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = malloc(size + 1);
  if (!buf) abort();
  memcpy(buf, data, size);
  buf[size] = '\0';
  /* Fields: the first three configure the layout, the rest are names. */
  const char *field[64];
  size_t nf = 0;
  for (size_t i = 0; i <= size && nf < 64; ) {
    field[nf++] = buf + i;
    i += strlen(buf + i) + 1;
  }
  fuzz_env env = {{0}, {0}, 0};
  fuzz_env_set(&env, "HCP_VAULT_ADDR", ADDR);
  fuzz_env_set(&env, "HCP_VAULT_TOKEN", "hvs.fuzz");
  static const char *const vars[] = {"HCP_VAULT_SECRET_NAMESPACE", "HCP_VAULT_MOUNT_NAME",
                                     "HCP_VAULT_PATH_PREFIX"};
  for (size_t i = 0; i < 3 && i < nf; i++)
    if (*field[i]) fuzz_env_set(&env, vars[i], field[i]);
  kms_host host = {sizeof host, KMS_ABI_MAJOR, KMS_ABI_MINOR, &env, NULL, fuzz_env_get, NULL};

  vault_config cfg;
  kms_error err;
  memset(&err, 0, sizeof err);
  kms_status st = vault_config_load(&cfg, &host, NULL, 0, NULL, &err);
  if (st != KMS_OK) {
    FUZZ_CHECK(st == KMS_INVALID_ARGUMENT, "layout variables refused with status %d", (int)st);
    fuzz_check_error(&err, st);
    fuzz_env clean = {{0}, {0}, 0};
    fuzz_env_set(&clean, "HCP_VAULT_ADDR", ADDR);
    fuzz_env_set(&clean, "HCP_VAULT_TOKEN", "hvs.fuzz");
    host.ctx = &clean;
    st = vault_config_load(&cfg, &host, NULL, 0, NULL, &err);
    FUZZ_CHECK(st == KMS_OK, "the default layout failed: %s", err.message);
  }
  kv2_layout l;
  FUZZ_CHECK(kv2_layout_init(&l, &cfg, &err) == KMS_OK, "kv2_layout_init: %s", err.message);
  for (size_t i = 3; i < nf; i++) try_name(&l, &cfg, field[i]);
  if (nf <= 3) try_name(&l, &cfg, "OPENAI_API_KEY");
  kv2_layout_free(&l);
  vault_config_free(&cfg);
  free(buf);
  return 0;
}
