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
 * ABI 1.1: read_secret_opt / read_secret_into (allocation-free) with the
 * location key `prefix` (overrides the setting for one call; a version pin is
 * UNSUPPORTED, other keys INVALID_ARGUMENT), list_secrets (the process
 * environment only: a host's getenv cannot be enumerated) and health.
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

#define ENV_PLUGIN_VERSION "1.1.0"
#define ENV_PREFIX_MAX 128
#define ENV_NAME_MAX 1024

extern char **environ; /* POSIX: the process environment, for listing */

struct kms_instance {
  const kms_host *host; /* may be NULL */
  char prefix[ENV_PREFIX_MAX + 1];
  size_t prefix_len; /* strlen(prefix), once: a read need not count it */
  kms_stats *stats; /* for the health slot */
};

static int host_has_getenv(const kms_host *h) {
  return h && KMS_FIELD_PRESENT(h, kms_host, getenv) && h->getenv;
}

/* A variable name: [A-Za-z_][A-Za-z0-9_]* -- anything else cannot be set in
 * a POSIX shell and is most likely a typo in the config. Returns its length
 * (one pass: the read path checks and measures a name together), or
 * (size_t)-1 if it is not one. */
static size_t env_name_len(const char *name, int allow_empty) {
  const char *s = name;
  if (!*s) return allow_empty ? 0 : (size_t)-1;
  if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_')) return (size_t)-1;
  for (; *s; s++)
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
          *s == '_'))
      return (size_t)-1;
  return (size_t)(s - name);
}

static int env_name_valid(const char *s, int allow_empty) {
  return env_name_len(s, allow_empty) != (size_t)-1;
}

static kms_status env_create(const kms_host *host, const kms_setting *settings, size_t n,
                             kms_instance **out, kms_error *err) {
  *out = NULL;
  struct kms_instance *in = calloc(1, sizeof *in);
  if (!in) return kms_error_set(err, KMS_NO_MEMORY, 0, "env: out of memory");
  in->host = host;
  if (!(in->stats = kms_stats_new())) {
    free(in);
    return kms_error_set(err, KMS_NO_MEMORY, 0, "env: out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    const char *k = settings[i].key, *v = settings[i].value ? settings[i].value : "";
    if (k && strcmp(k, "prefix") == 0) {
      if (strlen(v) > ENV_PREFIX_MAX || !env_name_valid(v, 1)) {
        kms_stats_free(in->stats);
        free(in);
        return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                             "env: setting 'prefix' must be letters, digits and '_' (at most %d "
                             "characters, not starting with a digit)", ENV_PREFIX_MAX);
      }
      strcpy(in->prefix, v);
      in->prefix_len = strlen(v);
    }
    /* Other settings (access_mode, store_virtual_keys, ...) belong to the
     * host or to other backends; the env backend has nothing to do with them. */
  }
  *out = in;
  return KMS_OK;
}

static void env_destroy(kms_instance *in) {
  if (!in) return;
  kms_stats_free(in->stats);
  free(in);
}

/* The variable <prefix><name> for `name`, the prefix being the instance's or
 * the call's location override; its value (borrowed) in *value. Allocates
 * nothing. */
static kms_status env_lookup(kms_instance *in, const char *name, const kms_call_options *opt,
                             const char **value, kms_error *err) {
  static const char *const keys[] = {"prefix", NULL};
  *value = NULL;
  kms_status st = kms_options_check(opt, KMS_CALL_KIND_READ, keys, "env", err);
  if (st != KMS_OK) return st;
  if (opt && KMS_FIELD_PRESENT(opt, kms_call_options, version) && opt->version)
    return kms_error_set(err, KMS_UNSUPPORTED, 0,
                         "env: option 'version' cannot be honoured: the environment keeps no "
                         "versions (read without a version pin)");
  const char *prefix = kms_options_get(opt, "prefix");
  if (prefix && (strlen(prefix) > ENV_PREFIX_MAX || !env_name_valid(prefix, 1)))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "env: location 'prefix' must be letters, digits and '_' (at most %d "
                         "characters, not starting with a digit)", ENV_PREFIX_MAX);
  size_t plen = prefix ? strlen(prefix) : in->prefix_len;
  if (!prefix) prefix = in->prefix;
  size_t nlen = env_name_len(name, 0);
  if (nlen == (size_t)-1 || nlen > ENV_NAME_MAX)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "env: secret name must be an environment variable name "
                         "([A-Za-z_][A-Za-z0-9_]*, at most %d characters)", ENV_NAME_MAX);
  char var[ENV_PREFIX_MAX + ENV_NAME_MAX + 1];
  memcpy(var, prefix, plen);
  memcpy(var + plen, name, nlen + 1);
  kms_stats_add(in->stats, KMS_STAT_FETCHES, 1);
  *value = host_has_getenv(in->host) ? in->host->getenv(in->host->ctx, var) : getenv(var);
  if (!*value)
    return kms_error_set(err, KMS_NOT_FOUND, 0,
                         "env: environment variable %s is not set (export it before starting "
                         "the gateway)", var);
  return KMS_OK;
}

/* NONBLOCKING and BYPASS_CACHE need nothing here: the env backend has no
 * cache and a lookup never waits. */
static kms_status env_read_opt(kms_instance *in, const char *name, const kms_call_options *opt,
                               kms_secret **out, kms_error *err) {
  *out = NULL;
  const char *v;
  kms_status st = env_lookup(in, name, opt, &v, err);
  if (st == KMS_OK && (st = kms_secret_new_packed(v, strlen(v), out, err)) != KMS_OK)
    kms_error_set(err, st, 0, "env: out of memory reading %s", name);
  return kms_stats_result(in->stats, st, err);
}

static kms_status env_read(kms_instance *in, const char *name, kms_secret **out, kms_error *err) {
  return env_read_opt(in, name, NULL, out, err);
}

static kms_status env_read_into(kms_instance *in, const char *name, const kms_call_options *opt,
                                char *buf, size_t size, kms_secret_info *info, kms_error *err) {
  const char *v;
  kms_status st = env_lookup(in, name, opt, &v, err);
  if (st == KMS_OK) st = kms_secret_copy_into(v, strlen(v), 0, 0, buf, size, info, "env", err);
  return kms_stats_result(in->stats, st, err);
}

/* Names of the process environment under <instance prefix><prefix>. A host
 * with its own getenv has no environment this plugin could enumerate. */
static kms_status env_list(kms_instance *in, const char *prefix, const kms_call_options *opt,
                           kms_list_fn fn, void *ctx, kms_error *err) {
  static const char *const keys[] = {"prefix", NULL};
  kms_status st = kms_options_check(opt, KMS_CALL_KIND_LIST, keys, "env", err);
  if (st != KMS_OK) return kms_stats_result(in->stats, st, err);
  if (host_has_getenv(in->host))
    return kms_stats_result(in->stats, kms_error_set(err, KMS_UNSUPPORTED, 0,
                         "env: this host supplies its own getenv, which cannot be enumerated; "
                         "listing works on the process environment only"), err);
  const char *ip = kms_options_get(opt, "prefix");
  if (!ip) ip = in->prefix;
  size_t iplen = strlen(ip), plen = strlen(prefix);
  for (char **e = environ; e && *e; e++) {
    const char *eq = strchr(*e, '=');
    if (!eq || strncmp(*e, ip, iplen) != 0) continue;
    const char *name = *e + iplen;
    size_t nlen = (size_t)(eq - name);
    char copy[ENV_NAME_MAX + 1];
    if (nlen == 0 || nlen > ENV_NAME_MAX || nlen < plen || strncmp(name, prefix, plen) != 0)
      continue;
    memcpy(copy, name, nlen);
    copy[nlen] = '\0';
    if (env_name_valid(copy, 0) && fn(ctx, copy) != 0) break;
  }
  return KMS_OK;
}

static kms_status env_health(kms_instance *in, kms_health *out, kms_error *err) {
  (void)err;
  kms_stats_fill(in->stats, out);
  out->reachable = 1; /* the environment is always there; nothing to authenticate */
  return KMS_OK;
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

/* Options are checked first, so a bad key is named even here. */
static kms_status env_write_opt(kms_instance *in, const char *name, const char *value,
                                size_t len, const kms_write_options *wopt,
                                const kms_call_options *opt, kms_error *err) {
  static const char *const keys[] = {"prefix", NULL};
  kms_status st = kms_options_check(opt, KMS_CALL_KIND_WRITE, keys, "env", err);
  if (st == KMS_OK) st = env_write(in, name, value, len, wopt, err);
  return kms_stats_result(in->stats, st, err);
}

static kms_status env_delete_opt(kms_instance *in, const char *name, const kms_call_options *opt,
                                 kms_error *err) {
  static const char *const keys[] = {"prefix", NULL};
  kms_status st = kms_options_check(opt, KMS_CALL_KIND_DELETE, keys, "env", err);
  if (st == KMS_OK) st = env_delete(in, name, err);
  return kms_stats_result(in->stats, st, err);
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
  .capabilities = KMS_CAP_READ | KMS_CAP_REFRESH | KMS_CAP_THREAD_SAFE | KMS_CAP_LIST,
  .create = env_create,
  .destroy = env_destroy,
  .read_secret = env_read,
  .write_secret = env_write,
  .delete_secret = env_delete,
  .refresh = env_refresh,
  .free_secret = kms_secret_free_packed, /* wipes, then frees what kms_secret_new_packed made */
  /* ABI 1.1 */
  .read_secret_opt = env_read_opt,
  .write_secret_opt = env_write_opt,
  .delete_secret_opt = env_delete_opt,
  .read_secret_into = env_read_into,
  .list_secrets = env_list,
  .health = env_health,
};

KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t host_major, uint32_t host_minor);
KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t host_major, uint32_t host_minor) {
  (void)host_minor; /* any 1.x host can use a 1.0 table */
  return host_major == KMS_ABI_MAJOR ? &env_plugin : NULL;
}
