/*
 * serve_auth.c -- who is calling `kms-host serve`: the master key
 * (general_settings.master_key, resolved like every os.environ/ reference)
 * or a virtual key.
 *
 * Only the master key's SHA-256 is kept in memory; a presented credential
 * is hashed too and compared with CRYPTO_memcmp, so the comparison takes
 * the same time whatever the credential's length or content.
 */
#include "serve.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* resolve.c reaches the plugin through a host_reader. */
static kms_status reader_read(void *ctx, const char *name, kms_secret **out, kms_error *err) {
  return kms_client_read((kms_client *)ctx, name, out, err);
}
static void reader_release(void *ctx, kms_secret *s) { kms_client_free_secret((kms_client *)ctx, s); }
static void reader_warn(const char *message) { host_log(KMS_LOG_WARN, "%s", message); }

static int sha256(const char *s, size_t n, unsigned char out[32]) {
  unsigned int len = 0;
  return EVP_Digest(s, n, out, &len, EVP_sha256(), NULL) == 1 && len == 32 ? 0 : -1;
}

/* The master key as a reference: resolve it (plugin or environment). */
static host_status resolve_master(const host_config *cfg, kms_client *client,
                                  unsigned char out[32], host_result *r) {
  const host_ref *ref = NULL;
  for (size_t i = 0; i < cfg->n_refs && !ref; i++)
    if (!strcmp(cfg->refs[i].path, "general_settings.master_key")) ref = &cfg->refs[i];
  if (!ref)
    return host_fail(r, HOST_CONFIG, "%s: general_settings.master_key is a reference the config "
                     "did not record", cfg->path);
  host_reader rd = {client, cfg->kms, reader_read, reader_release, reader_warn};
  host_resolved res;
  memset(&res, 0, sizeof res);
  host_status s = HOST_OK;
  host_result why = {HOST_OK, ""};
  if (host_resolve_ref(cfg, client ? &rd : NULL, ref, &res, &why) != HOST_OK)
    s = host_fail(r, HOST_CONFIG, "%s:%d: general_settings.master_key (%s) cannot be resolved: "
                  "%s; serve needs it to authenticate callers", cfg->path, ref->line, ref->value,
                  why.msg);
  else if (sha256(res.value, res.length, out) != 0)
    s = host_fail(r, HOST_FAILED, "cannot hash the master key (OpenSSL)");
  host_resolved_clear(&res);
  return s;
}

host_status serve_master_key(const host_config *cfg, kms_client *client, unsigned char out[32],
                             host_result *r) {
  if (!cfg->master_key || !cfg->master_key[0])
    return host_fail(r, HOST_CONFIG, "%s: general_settings.master_key is not set; serve needs it "
                     "to authenticate callers (LiteLLM's `master_key: sk-...`, or "
                     "os.environ/LITELLM_MASTER_KEY)", cfg->path);
  char *name = NULL;
  if (host_env_ref_name(cfg->master_key, &name, r) != HOST_OK) return r->status;
  int ref = name != NULL;
  free(name);
  if (ref) return resolve_master(cfg, client, out, r);
  if (sha256(cfg->master_key, strlen(cfg->master_key), out) != 0)
    return host_fail(r, HOST_FAILED, "cannot hash the master key (OpenSSL)");
  return HOST_OK;
}

const char *serve_credential(const char *authorization, const char *api_key_header) {
  const char *v = authorization && *authorization ? authorization : api_key_header;
  if (!v || !*v) return NULL;
  if (!strncasecmp(v, "Bearer ", 7)) v += 7;
  while (*v == ' ') v++;
  return *v ? v : NULL;
}

int serve_is_master(const unsigned char master_sha[32], const char *token) {
  unsigned char h[32];
  if (!token || sha256(token, strlen(token), h) != 0) return 0;
  int same = CRYPTO_memcmp(h, master_sha, 32) == 0;
  OPENSSL_cleanse(h, sizeof h);
  return same;
}
