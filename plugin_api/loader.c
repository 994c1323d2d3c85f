/*
 * loader.c -- find, check and load plugin shared objects; list a plugin
 * directory. See kms_loader.h for the contract and docs/design.md ("The
 * loader").
 */
#include "kms_loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef KMS_DEFAULT_PLUGIN_DIR
#define KMS_DEFAULT_PLUGIN_DIR "/usr/local/lib/kmsplug/plugins"
#endif

struct kms_module {
  void *handle;
  const kms_plugin *plugin;
  int fd; /* the checked file, open while its object may be loaded */
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

/* ---------------------------------------------------------------------- */
/* Trust: OpenSSH's StrictModes for plugin files (see kms_loader.h).        */

/* "uid 65534 (nobody)": who owns an untrusted path, for the error. */
static void owner_text(uid_t uid, char *buf, size_t size) {
  struct passwd pw, *found = NULL;
  char scratch[1024];
  if (getpwuid_r(uid, &pw, scratch, sizeof scratch, &found) == 0 && found)
    snprintf(buf, size, "uid %u (%s)", (unsigned)uid, found->pw_name);
  else
    snprintf(buf, size, "uid %u", (unsigned)uid);
}

/* `path` (described by `st`) may be trusted only if root or this process's
 * effective user owns it and neither group nor others can write it: anyone
 * else who can change it, or swap it within its directory, could run code in
 * the host. A sticky directory (/tmp) is refused too: its owner rule stops
 * deleting others' files, not creating new names. */
static kms_status check_trusted(const char *what, const char *path, const struct stat *st,
                                kms_error *err) {
  uid_t euid = geteuid();
  int foreign = st->st_uid != 0 && st->st_uid != euid;
  if (!foreign && !(st->st_mode & (S_IWGRP | S_IWOTH))) return KMS_OK;
  char owner[96]; /* looked up only for the error: NSS can be slow */
  owner_text(st->st_uid, owner, sizeof owner);
  if (foreign)
    return kms_error_set(err, KMS_PERMISSION_DENIED, 0,
                         "%s %s is owned by %s, not by root or this process's user (uid %u); "
                         "refusing to load from it (chown root %s)", what, path, owner,
                         (unsigned)euid, path);
  if (S_ISDIR(st->st_mode) && (st->st_mode & S_ISVTX))
    return kms_error_set(err, KMS_PERMISSION_DENIED, 0,
                         "%s %s (owner %s, mode %04o) is writable by group or others (sticky "
                         "directories such as /tmp are not trusted either); refusing to load "
                         "from it: keep plugins where only root can write", what, path, owner,
                         (unsigned)(st->st_mode & 07777));
  return kms_error_set(err, KMS_PERMISSION_DENIED, 0,
                       "%s %s (owner %s, mode %04o) is writable by group or others; refusing "
                       "to load from it (chmod go-w %s)", what, path, owner,
                       (unsigned)(st->st_mode & 07777), path);
}

/* Every directory from `dir` up to "/" must be trusted. `dir` is absolute
 * and resolved (realpath), so each prefix is the directory it names; for
 * any symlink on a path as written see check_symlink_parents. */
static kms_status check_dir_chain(const char *dir, kms_error *err) {
  char buf[PATH_MAX];
  size_t len = strlen(dir);
  if (len == 0 || len >= sizeof buf || dir[0] != '/')
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "plugin directory path unusable: %.200s",
                         dir);
  memcpy(buf, dir, len + 1);
  for (int first = 1;; first = 0) {
    while (len > 1 && buf[len - 1] == '/') buf[--len] = '\0';
    struct stat st;
    if (stat(buf, &st) != 0)
      return kms_error_set(err, KMS_NOT_FOUND, 0, "plugin directory %s: %s", buf,
                           strerror(errno));
    if (!S_ISDIR(st.st_mode))
      return kms_error_set(err, KMS_NOT_FOUND, 0, "plugin directory %s is not a directory", buf);
    kms_status s = check_trusted(first ? "plugin directory" : "directory", buf, &st, err);
    if (s != KMS_OK || len == 1) return s;
    char *slash = strrchr(buf, '/');
    len = slash == buf ? 1 : (size_t)(slash - buf);
    buf[len] = '\0';
  }
}

/* Each symlink met along `path` (absolute, as written) must sit in a
 * trusted directory: whoever can write that directory chooses where the
 * symlink points. (Plain directories met on the way, e.g. through "..", only
 * matter as resolved, and the resolved path is checked in full.) */
static kms_status check_symlink_parents(const char *path, kms_error *err) {
  char buf[PATH_MAX];
  size_t len = strlen(path);
  if (len >= sizeof buf) return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "path too long");
  memcpy(buf, path, len + 1);
  for (size_t i = 1; i <= len; i++) {
    if ((buf[i] != '/' && buf[i] != '\0') || buf[i - 1] == '/') continue;
    char saved = buf[i];
    buf[i] = '\0';
    struct stat st;
    if (lstat(buf, &st) == 0 && S_ISLNK(st.st_mode)) {
      char *slash = strrchr(buf, '/');
      char keep = slash[1];
      slash[slash == buf ? 1 : 0] = '\0';
      kms_status s = stat(buf, &st) != 0
                         ? kms_error_set(err, KMS_NOT_FOUND, 0, "directory %s: %s", buf,
                                         strerror(errno))
                         : check_trusted("directory", buf, &st, err);
      if (s != KMS_OK) return s;
      slash[0] = '/';
      slash[1] = keep;
    }
    buf[i] = saved;
  }
  return KMS_OK;
}

/* The plugin directory as resolved through symlinks, and the symlinks on the
 * way to it as written (made absolute). */
static kms_status check_plugin_dir(const char *dir, kms_error *err) {
  char abs[PATH_MAX];
  if (dir[0] == '/') {
    if (snprintf(abs, sizeof abs, "%s", dir) >= (int)sizeof abs)
      return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "plugin directory path too long");
  } else {
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
      return kms_error_set(err, KMS_NOT_FOUND, 0, "plugin directory %s: cannot resolve the "
                           "current directory: %s", dir, strerror(errno));
    if (snprintf(abs, sizeof abs, "%s/%s", cwd, dir) >= (int)sizeof abs)
      return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "plugin directory path too long");
  }
  char real[PATH_MAX];
  if (!realpath(abs, real))
    return kms_error_set(err, KMS_NOT_FOUND, 0, "plugin directory %s: %s", dir, strerror(errno));
  kms_status st = check_dir_chain(real, err);
  return st != KMS_OK || strcmp(real, abs) == 0 ? st : check_symlink_parents(abs, err);
}

/* Open the plugin file for loading: `path` is <dir>/<name>.so in a trusted
 * directory. The directories of the file it resolves to must be trusted too
 * (they differ when it is a symlink). The descriptor is what gets loaded, so
 * the checks made on it with fstat are the checks of the code that runs. */
static kms_status open_plugin_file(const char *dir, const char *path, int *fd_out,
                                   kms_error *err) {
  *fd_out = -1;
  struct stat st;
  if (lstat(path, &st) != 0) {
    int saved = errno;
    char names[160];
    names_in_dir(dir, names, sizeof names);
    return kms_error_set(err, KMS_NOT_FOUND, 0, "plugin %s: %s (plugins in %s: %s)", path,
                         strerror(saved), dir, names[0] ? names : "none");
  }
  char real[PATH_MAX];
  if (!realpath(path, real))
    return kms_error_set(err, KMS_NOT_FOUND, 0, "plugin %s: %s", path, strerror(errno));
  /* The directories of the file as resolved: for a symlinked plugin those of
   * its target; otherwise the plugin directory again, which costs a few
   * stat calls and leaves no window between the two resolutions. */
  char parent[PATH_MAX];
  memcpy(parent, real, sizeof parent);
  char *slash = strrchr(parent, '/');
  slash[slash == parent ? 1 : 0] = '\0';
  kms_status cs = check_dir_chain(parent, err);
  if (cs != KMS_OK) return cs;
  /* O_NONBLOCK: a FIFO named like a plugin must not hang the host. */
  int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
  if (fd < 0)
    return kms_error_set(err, errno == ENOENT ? KMS_NOT_FOUND : KMS_PERMISSION_DENIED, 0,
                         "cannot open plugin %s: %s", real, strerror(errno));
  kms_status s = KMS_OK;
  if (fstat(fd, &st) != 0)
    s = kms_error_set(err, KMS_INTERNAL, 0, "plugin %s: fstat: %s", real, strerror(errno));
  else if (!S_ISREG(st.st_mode))
    s = kms_error_set(err, KMS_UNSUPPORTED, 0, "plugin %s is not a regular file", path);
  else
    s = check_trusted("plugin", real, &st, err);
  if (s != KMS_OK) {
    close(fd);
    return s;
  }
  *fd_out = fd;
  return KMS_OK;
}

/* ---------------------------------------------------------------------- */
/* Loading by descriptor.                                                  */

/*
 * The checked file is loaded as /proc/self/fd/N, so a file swapped in after
 * the checks is never what runs. glibc knows a loaded object by the name it
 * was opened with and answers a later dlopen of an equal name with that
 * object without opening anything; so a descriptor is closed only once no
 * object opened through it remains loaded. Until then (dlclose left the
 * object in memory: another module of the same file holds it, or the plugin
 * cannot be unloaded) it waits in this list, swept on every unload.
 */
static pthread_mutex_t parked_lock = PTHREAD_MUTEX_INITIALIZER;
static int *parked;
static size_t n_parked, cap_parked;

static void fd_path(int fd, char *buf, size_t size) {
  snprintf(buf, size, "/proc/self/fd/%d", fd);
}

/* 1 if an object opened through descriptor `fd` (that is, its file) is still
 * loaded. RTLD_NOLOAD maps nothing and runs no code. */
static int fd_object_loaded(int fd) {
  char name[64];
  fd_path(fd, name, sizeof name);
  void *h = dlopen(name, RTLD_LAZY | RTLD_LOCAL | RTLD_NOLOAD);
  if (!h) return 0;
  dlclose(h);
  return 1;
}

/* Done with `fd` after dlclose: close it now if nothing loaded through it
 * remains, else park it; then close parked descriptors that are free. */
static void release_plugin_fd(int fd) {
  pthread_mutex_lock(&parked_lock);
  if (fd >= 0 && fd_object_loaded(fd)) {
    if (n_parked == cap_parked) {
      size_t ncap = cap_parked ? cap_parked * 2 : 4;
      int *np = realloc(parked, ncap * sizeof *np);
      if (np) {
        parked = np;
        cap_parked = ncap;
      }
    }
    /* Out of memory: keep the descriptor open for good rather than let its
     * name point at another file later. */
    if (n_parked < cap_parked) parked[n_parked++] = fd;
    fd = -1;
  }
  if (fd >= 0) close(fd);
  for (size_t i = 0; i < n_parked;) {
    if (fd_object_loaded(parked[i])) {
      i++;
      continue;
    }
    close(parked[i]);
    parked[i] = parked[--n_parked];
  }
  if (n_parked == 0) {
    free(parked);
    parked = NULL;
    cap_parked = 0;
  }
  pthread_mutex_unlock(&parked_lock);
}

#ifdef KMS_LOADER_TEST_HOOKS
/* Test builds only: runs after the file's checks, before it is loaded, so a
 * test can swap the file in that window. */
extern void (*kms_loader_test_before_dlopen)(const char *path);
void (*kms_loader_test_before_dlopen)(const char *path);
#endif

/* dlopen the descriptor `fd` (checked file `path`) into *out. */
static kms_status dlopen_fd(int fd, const char *path, void **out, kms_error *err) {
  *out = NULL;
  char name[64];
  fd_path(fd, name, sizeof name);
  struct stat byfd, byname;
  if (fstat(fd, &byfd) != 0 || stat(name, &byname) != 0 || byfd.st_dev != byname.st_dev ||
      byfd.st_ino != byname.st_ino)
    return kms_error_set(err, KMS_UNSUPPORTED, 0,
                         "cannot load plugin %s: %s does not name the checked file (the "
                         "loader needs /proc mounted)", path, name);
#ifdef KMS_LOADER_TEST_HOOKS
  if (kms_loader_test_before_dlopen) kms_loader_test_before_dlopen(path);
#endif
  dlerror();
  *out = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (*out) return KMS_OK;
  const char *why = dlerror();
  size_t n = strlen(name);
  /* "/proc/self/fd/N: invalid ELF header" -> "invalid ELF header" */
  if (why && strncmp(why, name, n) == 0 && why[n] == ':') why += n + 1 + (why[n + 1] == ' ');
  return kms_error_set(err, KMS_UNSUPPORTED, 0, "cannot load plugin %s: %s", path,
                       why ? why : "unknown dlopen error");
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

/* Free a module that failed or is being unloaded. */
static void module_free(kms_module *m) {
  if (m->handle) dlclose(m->handle);
  if (m->fd >= 0) release_plugin_fd(m->fd);
  free(m);
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
  m->fd = -1;
  int n = snprintf(m->path, sizeof m->path, "%s/%s.so", dir, name);
  kms_status st = KMS_OK;
  if (n < 0 || (size_t)n >= sizeof m->path)
    st = kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "plugin directory path too long");
  if (st == KMS_OK) st = check_plugin_dir(dir, err);
  if (st == KMS_OK) st = open_plugin_file(dir, m->path, &m->fd, err);
  if (st == KMS_OK) st = dlopen_fd(m->fd, m->path, &m->handle, err);
  if (st == KMS_OK) {
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
  }
  if (st != KMS_OK) {
    module_free(m);
    return st;
  }
  *out = m;
  return KMS_OK;
}

const kms_plugin *kms_module_plugin(const kms_module *m) { return m ? m->plugin : NULL; }
const char *kms_module_path(const kms_module *m) { return m ? m->path : NULL; }

void kms_module_unload(kms_module *m) {
  if (m) module_free(m);
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
