/*
 * env.c -- the `env` backend: read-only secrets from the environment.
 *
 * `os.environ/NAME` in a gateway config resolves to the environment variable
 * <prefix>NAME, read through the host's getenv when the host supplies one
 * (so a host can hand over its own environment), else the process's.
 * Settings: `prefix` (optional, prepended to every name).
 * Write and delete are refused with KMS_UNSUPPORTED: the environment of a
 * running process is not a store.
 *
 * Thread safety: every slot but create/destroy may run concurrently; the
 * host's getenv is thread-safe by the ABI's contract and the process
 * environment is only read, never modified, here.
 *
 * Built only against the installed interface (kms_plugin.h and the helpers
 * of kms_plugin_util.h), so it builds out of tree as it stands: see README
 * "Writing a plugin" and tests/install.
 */
#include "kms_plugin_util.h"

#include <stdlib.h>
#include <string.h>

#define ENV_PLUGIN_VERSION "1.0.0"
#define ENV_PREFIX_MAX 128

struct kms_instance {
  const kms_host *host; /* may be NULL */
  char prefix[ENV_PREFIX_MAX + 1];
};

static int host_has_getenv(const kms_host *h) {
  return h && KMS_FIELD_PRESENT(h, kms_host, getenv) && h->getenv;
}

/* A variable name: [A-Za-z_][A-Za-z0-9_]* -- anything else cannot be set in
 * a POSIX shell and is most likely a typo in the config. */
static int env_name_valid(const char *s, int allow_empty) {
  if (!*s) return allow_empty;
  if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_')) return 0;
  for (; *s; s++)
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
          *s == '_'))
      return 0;
  return 1;
}

static kms_status env_create(const kms_host *host, const kms_setting *settings, size_t n,
                             kms_instance **out, kms_error *err) {
  *out = NULL;
  struct kms_instance *in = calloc(1, sizeof *in);
  if (!in) return kms_error_set(err, KMS_NO_MEMORY, 0, "env: out of memory");
  in->host = host;
  for (size_t i = 0; i < n; i++) {
    const char *k = settings[i].key, *v = settings[i].value ? settings[i].value : "";
    if (k && strcmp(k, "prefix") == 0) {
      if (strlen(v) > ENV_PREFIX_MAX || !env_name_valid(v, 1)) {
        free(in);
        return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                             "env: setting 'prefix' must be letters, digits and '_' (at most %d "
                             "characters, not starting with a digit)", ENV_PREFIX_MAX);
      }
      strcpy(in->prefix, v);
    }
    /* Other settings (access_mode, store_virtual_keys, ...) belong to the
     * host or to other backends; the env backend has nothing to do with them. */
  }
  *out = in;
  return KMS_OK;
}

static void env_destroy(kms_instance *in) {
  if (!in) return;
  free(in);
}

static kms_status env_read(kms_instance *in, const char *name, kms_secret **out, kms_error *err) {
  *out = NULL;
  if (!env_name_valid(name, 0) || strlen(name) > 1024)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "env: secret name must be an environment variable name "
                         "([A-Za-z_][A-Za-z0-9_]*, at most 1024 characters)");
  size_t plen = strlen(in->prefix), nlen = strlen(name);
  char *var = malloc(plen + nlen + 1);
  if (!var) return kms_error_set(err, KMS_NO_MEMORY, 0, "env: out of memory");
  memcpy(var, in->prefix, plen);
  memcpy(var + plen, name, nlen + 1);

  kms_status st;
  const char *v = host_has_getenv(in->host) ? in->host->getenv(in->host->ctx, var) : getenv(var);
  if (!v)
    st = kms_error_set(err, KMS_NOT_FOUND, 0,
                       "env: environment variable %s is not set (export it before starting "
                       "the gateway)", var);
  else if ((st = kms_secret_new(v, strlen(v), out, err)) != KMS_OK)
    kms_error_set(err, st, 0, "env: out of memory reading %s", var);
  free(var);
  return st;
}

static kms_status env_write(kms_instance *in, const char *name, const char *value, size_t len,
                            const kms_write_options *opt, kms_error *err) {
  (void)in, (void)name, (void)value, (void)len, (void)opt;
  return kms_error_set(err, KMS_UNSUPPORTED, 0,
                       "env: the env backend is read-only and cannot store secrets; use a "
                       "store such as hashicorp_vault for store_virtual_keys");
}

static kms_status env_delete(kms_instance *in, const char *name, kms_error *err) {
  (void)in, (void)name;
  return kms_error_set(err, KMS_UNSUPPORTED, 0,
                       "env: the env backend is read-only and cannot delete secrets");
}

static kms_status env_refresh(kms_instance *in, kms_error *err) {
  (void)in, (void)err;
  return KMS_OK; /* nothing is cached: every read looks at the environment */
}

static const kms_plugin env_plugin = {
  .struct_size = sizeof(kms_plugin),
  .abi_major = KMS_ABI_MAJOR,
  .abi_minor = KMS_ABI_MINOR,
  .name = "env",
  .version = ENV_PLUGIN_VERSION,
  .capabilities = KMS_CAP_READ | KMS_CAP_REFRESH | KMS_CAP_THREAD_SAFE,
  .create = env_create,
  .destroy = env_destroy,
  .read_secret = env_read,
  .write_secret = env_write,
  .delete_secret = env_delete,
  .refresh = env_refresh,
  .free_secret = kms_secret_free, /* wipes, then frees what kms_secret_new made */
};

KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t host_major, uint32_t host_minor);
KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t host_major, uint32_t host_minor) {
  (void)host_minor; /* any 1.x host can use a 1.0 table */
  return host_major == KMS_ABI_MAJOR ? &env_plugin : NULL;
}
