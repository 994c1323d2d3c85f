/*
 * loader.c -- find, check and load plugin shared objects; list a plugin
 * directory. See kms_loader.h for the contract and DESIGN.md section 3.
 */
#include "kms_loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef KMS_DEFAULT_PLUGIN_DIR
#define KMS_DEFAULT_PLUGIN_DIR "/usr/local/lib/kmsplug/plugins"
#endif

struct kms_module {
  void *handle;
  const kms_plugin *plugin;
  char path[4096];
};

/* The part of kms_plugin every ABI 1.x plugin must have: the header fields
 * plus create and destroy. */
#define KMS_PLUGIN_MIN_SIZE (offsetof(kms_plugin, destroy) + sizeof(((kms_plugin *)0)->destroy))

const char *kms_plugin_dir(const char *explicit_dir) {
  if (explicit_dir && *explicit_dir) return explicit_dir;
  const char *env = getenv(KMS_PLUGIN_PATH_ENV);
  if (env && *env) return env;
  return KMS_DEFAULT_PLUGIN_DIR;
}

/* "a, b, c": the plugin names in `dir`, by file name only (nothing is
 * loaded), so a "not found" error can say what is there instead. */
static void names_in_dir(const char *dir, char *buf, size_t size) {
  buf[0] = '\0';
  DIR *d = opendir(dir);
  if (!d) return;
  size_t used = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (len < 4 || len - 3 > KMS_PLUGIN_NAME_MAX || strcmp(e->d_name + len - 3, ".so") != 0)
      continue;
    char name[KMS_PLUGIN_NAME_MAX + 1];
    memcpy(name, e->d_name, len - 3);
    name[len - 3] = '\0';
    if (!kms_plugin_name_valid(name)) continue;
    int n = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", name);
    if (n < 0 || (size_t)n >= size - used) {
      buf[used] = '\0';
      break;
    }
    used += (size_t)n;
  }
  closedir(d);
}

/* Refuse anything group- or world-writable: whoever can write the file (or
 * swap it in the directory) could run code inside the host. */
static kms_status check_permissions(const char *dir, const char *path, kms_error *err) {
  struct stat st;
  if (stat(dir, &st) != 0)
    return kms_error_set(err, KMS_NOT_FOUND, 0, "plugin directory %s: %s", dir, strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return kms_error_set(err, KMS_NOT_FOUND, 0, "plugin directory %s is not a directory", dir);
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return kms_error_set(err, KMS_PERMISSION_DENIED, 0,
                         "plugin directory %s is writable by group or others; refusing to load "
                         "from it (chmod go-w %s)", dir, dir);
  if (stat(path, &st) != 0) {
    int saved = errno;
    char names[160];
    names_in_dir(dir, names, sizeof names);
    return kms_error_set(err, KMS_NOT_FOUND, 0, "plugin %s: %s (plugins in %s: %s)", path,
                         strerror(saved), dir, names[0] ? names : "none");
  }
  if (!S_ISREG(st.st_mode))
    return kms_error_set(err, KMS_UNSUPPORTED, 0, "plugin %s is not a regular file", path);
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return kms_error_set(err, KMS_PERMISSION_DENIED, 0,
                         "plugin %s is writable by group or others; refusing to load it "
                         "(chmod go-w %s)", path, path);
  return KMS_OK;
}

/* Check the table the entry point returned. */
static kms_status check_table(const kms_plugin *p, const char *name, const char *path,
                              kms_error *err) {
  if (!p)
    return kms_error_set(err, KMS_UNSUPPORTED, 0,
                         "plugin %s refused this host (host ABI %d.%d): rebuild the plugin "
                         "against a matching kms_plugin.h", path, KMS_ABI_MAJOR, KMS_ABI_MINOR);
  if (p->struct_size < offsetof(kms_plugin, abi_minor) + sizeof p->abi_minor)
    return kms_error_set(err, KMS_UNSUPPORTED, 0,
                         "plugin %s has a malformed table (struct_size %zu)", path, p->struct_size);
  if (p->abi_major != KMS_ABI_MAJOR)
    return kms_error_set(err, KMS_UNSUPPORTED, 0,
                         "plugin %s was built for ABI %u.%u but this host speaks ABI %d.%d "
                         "(majors differ): rebuild the plugin against this host's kms_plugin.h",
                         path, p->abi_major, p->abi_minor, KMS_ABI_MAJOR, KMS_ABI_MINOR);
  if (p->struct_size < KMS_PLUGIN_MIN_SIZE)
    return kms_error_set(err, KMS_UNSUPPORTED, 0,
                         "plugin %s has a table of %zu bytes, too small for ABI %u.x "
                         "(needs at least %zu)", path, p->struct_size, p->abi_major,
                         (size_t)KMS_PLUGIN_MIN_SIZE);
  /* Within a major the minor is informational: struct_size alone says which
   * slots exist (kms_slot_available), so a table from an older minor is fine
   * and one from a newer minor is read only as far as this header knows. */
  if (!p->name || strcmp(p->name, name) != 0)
    return kms_error_set(err, KMS_UNSUPPORTED, 0,
                         "plugin %s calls itself '%s', not '%s': the file name must equal "
                         "the plugin's name", path, p->name ? p->name : "(null)", name);
  if (!KMS_SLOT_AVAILABLE(p, create) || !KMS_SLOT_AVAILABLE(p, destroy))
    return kms_error_set(err, KMS_UNSUPPORTED, 0, "plugin %s lacks create or destroy", path);
  return KMS_OK;
}

kms_status kms_module_load(const char *dir, const char *name, kms_module **out, kms_error *err) {
  kms_error_clear(err);
  if (!out) return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "kms_module_load: out is NULL");
  *out = NULL;
  if (!kms_plugin_name_valid(name))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "invalid plugin name '%.64s%s': names are 1-%d characters of "
                         "[a-z0-9_] (for example hashicorp_vault)",
                         name ? name : "(null)", name && strlen(name) > 64 ? "..." : "",
                         KMS_PLUGIN_NAME_MAX);
  dir = kms_plugin_dir(dir);

  kms_module *m = calloc(1, sizeof *m);
  if (!m) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory loading plugin %s", name);
  int n = snprintf(m->path, sizeof m->path, "%s/%s.so", dir, name);
  if (n < 0 || (size_t)n >= sizeof m->path) {
    free(m);
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "plugin directory path too long");
  }
  kms_status st = check_permissions(dir, m->path, err);
  if (st != KMS_OK) {
    free(m);
    return st;
  }
  dlerror();
  m->handle = dlopen(m->path, RTLD_NOW | RTLD_LOCAL);
  if (!m->handle) {
    const char *why = dlerror();
    st = kms_error_set(err, KMS_UNSUPPORTED, 0, "cannot load plugin %s: %s", m->path,
                       why ? why : "unknown dlopen error");
    free(m);
    return st;
  }
  kms_plugin_entry_fn entry;
  void *sym = dlsym(m->handle, KMS_PLUGIN_ENTRY_SYMBOL);
  memcpy(&entry, &sym, sizeof entry); /* object -> function pointer, as POSIX allows */
  if (!entry) {
    st = kms_error_set(err, KMS_UNSUPPORTED, 0,
                       "%s is not a kmsplug plugin: it does not export %s", m->path,
                       KMS_PLUGIN_ENTRY_SYMBOL);
  } else {
    m->plugin = entry(KMS_ABI_MAJOR, KMS_ABI_MINOR);
    st = check_table(m->plugin, name, m->path, err);
  }
  if (st != KMS_OK) {
    dlclose(m->handle);
    free(m);
    return st;
  }
  *out = m;
  return KMS_OK;
}

const kms_plugin *kms_module_plugin(const kms_module *m) { return m ? m->plugin : NULL; }
const char *kms_module_path(const kms_module *m) { return m ? m->path : NULL; }

void kms_module_unload(kms_module *m) {
  if (!m) return;
  if (m->handle) dlclose(m->handle);
  free(m);
}

static int info_cmp(const void *a, const void *b) {
  return strcmp(((const kms_plugin_info *)a)->name, ((const kms_plugin_info *)b)->name);
}

kms_status kms_plugin_list(const char *dir, kms_plugin_info **out, size_t *count, kms_error *err) {
  kms_error_clear(err);
  if (!out || !count)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "kms_plugin_list: out/count is NULL");
  *out = NULL;
  *count = 0;
  dir = kms_plugin_dir(dir);
  DIR *d = opendir(dir);
  if (!d)
    return kms_error_set(err, errno == ENOENT ? KMS_NOT_FOUND : KMS_PERMISSION_DENIED, 0,
                         "cannot open plugin directory %s: %s", dir, strerror(errno));
  kms_plugin_info *list = NULL;
  size_t n = 0, cap = 0;
  kms_status st = KMS_OK;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (len < 4 || strcmp(e->d_name + len - 3, ".so") != 0) continue;
    char name[KMS_PLUGIN_NAME_MAX + 1];
    if (len - 3 > KMS_PLUGIN_NAME_MAX) continue;
    memcpy(name, e->d_name, len - 3);
    name[len - 3] = '\0';
    if (!kms_plugin_name_valid(name)) continue;
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 8;
      kms_plugin_info *nl = realloc(list, ncap * sizeof *nl);
      if (!nl) {
        st = kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory listing %s", dir);
        break;
      }
      list = nl;
      cap = ncap;
    }
    kms_plugin_info *info = &list[n++];
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "%s", name);
    snprintf(info->path, sizeof info->path, "%s/%s", dir, e->d_name);
    kms_module *m = NULL;
    kms_error lerr;
    info->status = kms_module_load(dir, name, &m, &lerr);
    if (info->status != KMS_OK) {
      snprintf(info->error, sizeof info->error, "%s", lerr.message);
      continue;
    }
    const kms_plugin *p = m->plugin;
    snprintf(info->version, sizeof info->version, "%s", p->version ? p->version : "");
    info->abi_major = p->abi_major;
    info->abi_minor = p->abi_minor;
    info->capabilities = p->capabilities;
    kms_module_unload(m);
  }
  closedir(d);
  if (st != KMS_OK) {
    free(list);
    return st;
  }
  if (n) qsort(list, n, sizeof *list, info_cmp);
  *out = list;
  *count = n;
  return KMS_OK;
}

void kms_plugin_list_free(kms_plugin_info *list) { free(list); }
