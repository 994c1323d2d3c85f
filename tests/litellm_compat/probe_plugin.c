/*
 * probe_plugin.c -- a test-only plugin (`probe`) that shows what a host hands
 * a plugin: read_secret("__settings__") returns every setting given to
 * create, one `key=value` line each, in order. Any other name is NOT_FOUND.
 * tests/litellm_compat uses it to assert the exact settings kms-host passes
 * for LiteLLM configs (structured tags as JSON, merged keys, resolved
 * references, the implied access_mode). Not installed.
 *
 * Thread safety: the instance is immutable after create.
 */
#include "kms_loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kms_instance {
  char *settings; /* "k=v\n" lines */
  size_t len;
};

static kms_status probe_create(const kms_host *host, const kms_setting *s, size_t n,
                               kms_instance **out, kms_error *err) {
  (void)host;
  size_t len = 0;
  for (size_t i = 0; i < n; i++) len += strlen(s[i].key) + strlen(s[i].value) + 2;
  struct kms_instance *in = calloc(1, sizeof *in);
  char *b = malloc(len + 1);
  if (!in || !b) {
    free(in);
    free(b);
    return kms_error_set(err, KMS_NO_MEMORY, 0, "probe: out of memory");
  }
  size_t o = 0;
  for (size_t i = 0; i < n; i++)
    o += (size_t)sprintf(b + o, "%s=%s\n", s[i].key, s[i].value);
  b[o] = '\0';
  in->settings = b;
  in->len = o;
  *out = in;
  return KMS_OK;
}

static void probe_destroy(kms_instance *in) {
  if (!in) return;
  free(in->settings);
  free(in);
}

static kms_status probe_read(kms_instance *in, const char *name, kms_secret **out,
                             kms_error *err) {
  *out = NULL;
  if (strcmp(name, "__settings__") != 0)
    return kms_error_set(err, KMS_NOT_FOUND, 0, "probe: only __settings__ exists");
  kms_secret *s = calloc(1, sizeof *s);
  char *v = malloc(in->len + 1);
  if (!s || !v) {
    free(s);
    free(v);
    return kms_error_set(err, KMS_NO_MEMORY, 0, "probe: out of memory");
  }
  memcpy(v, in->settings, in->len + 1);
  s->struct_size = sizeof *s;
  s->value = v;
  s->length = in->len;
  *out = s;
  return KMS_OK;
}

static void probe_free_secret(kms_secret *s) {
  if (!s) return;
  free((void *)s->value);
  free(s);
}

static const kms_plugin probe_plugin = {
  .struct_size = sizeof(kms_plugin),
  .abi_major = KMS_ABI_MAJOR,
  .abi_minor = KMS_ABI_MINOR,
  .name = "probe",
  .version = "0.0.1",
  .capabilities = KMS_CAP_READ,
  .create = probe_create,
  .destroy = probe_destroy,
  .read_secret = probe_read,
  .free_secret = probe_free_secret,
};

KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t host_major, uint32_t host_minor);
KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t host_major, uint32_t host_minor) {
  (void)host_minor;
  return host_major == KMS_ABI_MAJOR ? &probe_plugin : NULL;
}
