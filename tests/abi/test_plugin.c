/*
 * test_plugin.c -- purpose-built plugins for the ABI tests. One source, many
 * variants chosen with -DVARIANT_*; each builds <TEST_PLUGIN_NAME>.so:
 *   good      a complete 1.0 table over a tiny in-memory store
 *   old       a shorter table (as if built before delete_secret existed);
 *             the slots past struct_size abort() if anyone ever calls them
 *   future    a longer table with one extra slot and abi_minor + 1
 *   major2    claims ABI major 2
 *   misnamed  its table says "other" but the file is misnamed.so
 *   nullslot  read_secret is NULL
 *   refuser   kms_plugin_entry returns NULL (refuses the host)
 *   noentry   exports no kms_plugin_entry at all
 */
#include "kms_plugin.h"

#include <stdlib.h>
#include <string.h>

#ifndef TEST_PLUGIN_NAME
#error "TEST_PLUGIN_NAME must be defined"
#endif

struct kms_instance {
  char name[64];
  char value[64];
  int has;
};

static void set_err(kms_error *err, kms_status st, const char *msg) {
  err->status = st;
  err->backend_status = 0;
  strncpy(err->message, msg, sizeof err->message - 1);
  err->message[sizeof err->message - 1] = '\0';
}

static kms_status t_create(const kms_host *host, const kms_setting *s, size_t n, kms_instance **out,
                           kms_error *err) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(s[i].key, "fail") == 0) {
      set_err(err, KMS_INVALID_ARGUMENT, "test plugin: setting 'fail' given");
      return KMS_INVALID_ARGUMENT;
    }
  *out = calloc(1, sizeof **out);
  return *out ? KMS_OK : KMS_NO_MEMORY;
}

static void t_destroy(kms_instance *in) { free(in); }

__attribute__((unused)) static kms_status t_read(kms_instance *in, const char *name, kms_secret **out, kms_error *err) {
  if (!in->has || strcmp(in->name, name) != 0) {
    set_err(err, KMS_NOT_FOUND, "test plugin: no such secret");
    return KMS_NOT_FOUND;
  }
  kms_secret *s = calloc(1, sizeof *s);
  char *v = strdup(in->value);
  if (!s || !v) {
    free(s);
    free(v);
    return KMS_NO_MEMORY;
  }
  s->struct_size = sizeof *s;
  s->value = v;
  s->length = strlen(v);
  s->version = 1;
  *out = s;
  return KMS_OK;
}

static kms_status t_write(kms_instance *in, const char *name, const char *value, size_t len,
                          const kms_write_options *o, kms_error *err) {
  if (strlen(name) >= sizeof in->name || len >= sizeof in->value) {
    set_err(err, KMS_INVALID_ARGUMENT, "test plugin: too long");
    return KMS_INVALID_ARGUMENT;
  }
  strcpy(in->name, name);
  memcpy(in->value, value, len);
  in->value[len] = '\0';
  in->has = 1;
  return KMS_OK;
}

__attribute__((unused)) static kms_status t_delete(kms_instance *in, const char *name, kms_error *err) {
  if (in->has && strcmp(in->name, name) == 0) in->has = 0;
  return KMS_OK;
}

/* Deliberately sets no message, so the loader must supply one. */
__attribute__((unused)) static kms_status t_refresh(kms_instance *in, kms_error *err) { return KMS_UNAVAILABLE; }

__attribute__((unused)) static void t_free(kms_secret *s) {
  if (!s) return;
  free((void *)s->value);
  free(s);
}

#ifdef VARIANT_OLD
/* Past struct_size: a correct host never calls these. */
static kms_status never_delete(kms_instance *in, const char *name, kms_error *err) { abort(); }
static kms_status never_refresh(kms_instance *in, kms_error *err) { abort(); }
static void never_free(kms_secret *s) { abort(); }
#endif

#ifdef VARIANT_FUTURE
/* What a 1.1 table might look like: 1.0 plus one appended slot. */
typedef struct {
  kms_plugin base;
  kms_status (*list_secrets)(kms_instance *, char ***, size_t *, kms_error *);
} kms_plugin_next;
static kms_status t_list(kms_instance *in, char ***names, size_t *n, kms_error *err) {
  return KMS_UNSUPPORTED;
}
#endif

#define TABLE_BODY(SIZE, MAJOR, MINOR, NAME, READ)                                   \
  .struct_size = (SIZE), .abi_major = (MAJOR), .abi_minor = (MINOR), .name = (NAME),  \
  .version = "0.0.1", .capabilities = KMS_CAP_READ | KMS_CAP_WRITE | KMS_CAP_DELETE, \
  .create = t_create, .destroy = t_destroy, .read_secret = (READ), .write_secret = t_write

#if defined(VARIANT_OLD)
static const kms_plugin table = {
    TABLE_BODY(offsetof(kms_plugin, delete_secret), KMS_ABI_MAJOR, 0, TEST_PLUGIN_NAME, t_read),
    .delete_secret = never_delete, .refresh = never_refresh, .free_secret = never_free};
#define TABLE (&table)
#elif defined(VARIANT_FUTURE)
static const kms_plugin_next table = {
    .base = {TABLE_BODY(sizeof(kms_plugin_next), KMS_ABI_MAJOR, KMS_ABI_MINOR + 1,
                        TEST_PLUGIN_NAME, t_read),
             .delete_secret = t_delete, .refresh = t_refresh, .free_secret = t_free},
    .list_secrets = t_list};
#define TABLE (&table.base)
#else
#if defined(VARIANT_MAJOR2)
#define T_MAJOR 2
#else
#define T_MAJOR KMS_ABI_MAJOR
#endif
#if defined(VARIANT_MISNAMED)
#define T_NAME "other"
#else
#define T_NAME TEST_PLUGIN_NAME
#endif
#if defined(VARIANT_NULLSLOT)
#define T_READ NULL
#else
#define T_READ t_read
#endif
static const kms_plugin table = {TABLE_BODY(sizeof(kms_plugin), T_MAJOR, KMS_ABI_MINOR, T_NAME, T_READ),
                                 .delete_secret = t_delete, .refresh = t_refresh,
                                 .free_secret = t_free};
#define TABLE (&table)
#endif

#if defined(VARIANT_NOENTRY)
KMS_PLUGIN_EXPORT const kms_plugin *not_the_entry(void);
KMS_PLUGIN_EXPORT const kms_plugin *not_the_entry(void) { return TABLE; }
#else
KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t major, uint32_t minor);
KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t major, uint32_t minor) {
#if defined(VARIANT_REFUSER)
  return major == 0xFFFFFFFFu ? TABLE : NULL; /* refuses every real host */
#else
  return TABLE;
#endif
}
#endif
