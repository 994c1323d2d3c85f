/*
 * docker.c -- the `docker` backend: read-only secrets from files, as Docker
 * (`docker run --secret`, Swarm) and Kubernetes secret volumes mount them.
 *
 * LiteLLM's `key_management_system: docker` (DockerSecretManager) reads
 * <secrets_path>/<name>, secrets_path defaulting to /run/secrets; when no
 * file has the exact name it tries the lower-case name (OPENAI_API_KEY ->
 * openai_api_key); the content is returned with surrounding whitespace (the
 * newline `echo` adds) stripped; names with a path separator, and files that
 * resolve outside the directory, are refused. This plugin does the same.
 * Kubernetes mounts each key as a symlink into a `..data` directory inside
 * the volume, so symlinks are followed as long as the final file stays inside
 * secrets_path. Writes and deletes are UNSUPPORTED (the daemon owns them).
 *
 * Settings: `secrets_path` (an absolute directory; default /run/secrets).
 * A missing directory is a warning at create (no secret mounted yet), and
 * reads then say NOT_FOUND naming it, as LiteLLM warns and returns None.
 *
 * ABI 1.1: read_secret_opt, read_secret_into, list_secrets (regular files,
 * dot-files skipped), health (reachable = the directory exists) and the
 * option checks: docker takes no location keys (a per-call directory would
 * let a caller read any directory) and refuses a version pin (UNSUPPORTED).
 *
 * Thread safety: every slot but create/destroy may run concurrently; the
 * instance is immutable after create (its counters are atomic) and reads
 * share nothing.
 */
#include "kms_loader.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DOCKER_PLUGIN_VERSION "1.1.0"
#define DOCKER_DEFAULT_PATH "/run/secrets"
#define DOCKER_NAME_MAX 255          /* a file name (NAME_MAX) */
#define DOCKER_VALUE_MAX (1u << 20)  /* 1 MiB: Docker's own limit is 500 KiB */

struct kms_instance {
  const kms_host *host; /* may be NULL */
  char dir[PATH_MAX];   /* realpath of secrets_path, or as given when it is missing */
  kms_stats *stats;     /* for the health slot */
};

static void plog(const kms_host *h, kms_log_level level, const char *msg) {
  if (h && KMS_FIELD_PRESENT(h, kms_host, log) && h->log) h->log(h->ctx, level, msg);
}

/* A file name in the secrets directory: not empty, not . or .., no '/', no
 * control character (they would reach a path or a log line). */
static int name_valid(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > DOCKER_NAME_MAX || !strcmp(s, ".") || !strcmp(s, "..")) return 0;
  for (const unsigned char *c = (const unsigned char *)s; *c; c++)
    if (*c == '/' || *c < 0x20 || *c == 0x7f) return 0;
  return 1;
}

static kms_status docker_create(const kms_host *host, const kms_setting *settings, size_t n,
                                kms_instance **out, kms_error *err) {
  *out = NULL;
  const char *path = DOCKER_DEFAULT_PATH;
  for (size_t i = 0; i < n; i++)
    if (settings[i].key && !strcmp(settings[i].key, "secrets_path") && settings[i].value)
      path = settings[i].value;
  if (path[0] != '/' || strlen(path) >= PATH_MAX)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "docker: setting 'secrets_path' must be an absolute directory (such as "
                         "/run/secrets)");
  struct kms_instance *in = calloc(1, sizeof *in);
  if (!in) return kms_error_set(err, KMS_NO_MEMORY, 0, "docker: out of memory");
  in->host = host;
  if (!(in->stats = kms_stats_new())) {
    free(in);
    return kms_error_set(err, KMS_NO_MEMORY, 0, "docker: out of memory");
  }
  struct stat st;
  if (realpath(path, in->dir) && stat(in->dir, &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      kms_stats_free(in->stats);
      free(in);
      return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                           "docker: secrets_path %.200s is not a directory", path);
    }
  } else {
    snprintf(in->dir, sizeof in->dir, "%s", path);
    char msg[PATH_MAX + 128];
    snprintf(msg, sizeof msg, "docker: secrets directory %s does not exist (%s); no secret can "
             "be read until one is mounted there", path, strerror(errno));
    plog(host, KMS_LOG_WARN, msg);
  }
  *out = in;
  return KMS_OK;
}

static void docker_destroy(kms_instance *in) {
  if (!in) return;
  kms_stats_free(in->stats);
  free(in);
}

/* 1 if the resolved path `real` lies inside the resolved directory `dir`. */
static int inside(const char *dir, const char *real) {
  size_t dl = strlen(dir);
  if (dl == 1 && dir[0] == '/') return real[0] == '/' && real[1] != '\0';
  return strncmp(real, dir, dl) == 0 && real[dl] == '/' && real[dl + 1] != '\0';
}

/* Read <dir>/<name> if it resolves inside dir. KMS_NOT_FOUND when absent. */
static kms_status read_one(const kms_instance *in, const char *name, char **buf, size_t *len,
                           kms_error *err) {
  char path[PATH_MAX], real[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/%s", in->dir, name) >= (int)sizeof path)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "docker: secret path too long");
  if (!realpath(path, real)) {
    if (errno == ENOENT || errno == ENOTDIR)
      return kms_error_set(err, KMS_NOT_FOUND, 0, "docker: no file %s in %s", name, in->dir);
    return kms_error_set(err, errno == EACCES ? KMS_PERMISSION_DENIED : KMS_UNAVAILABLE, 0,
                         "docker: cannot reach %s/%s: %s", in->dir, name, strerror(errno));
  }
  if (!inside(in->dir, real))
    return kms_error_set(err, KMS_PERMISSION_DENIED, 0,
                         "docker: %s resolves outside %s (a symlink out of the secrets "
                         "directory); refusing to read it", name, in->dir);
  int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
  if (fd < 0)
    return kms_error_set(err, errno == EACCES ? KMS_PERMISSION_DENIED : KMS_UNAVAILABLE, 0,
                         "docker: cannot open %s/%s: %s", in->dir, name, strerror(errno));
  /* A directory swapped for a symlink between realpath and open would land
   * elsewhere: check the file actually opened (when /proc is there). */
  char fdpath[64], opened[PATH_MAX];
  snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", fd);
  ssize_t ol = readlink(fdpath, opened, sizeof opened - 1);
  if (ol > 0) {
    opened[ol] = '\0';
    if (!inside(in->dir, opened)) {
      close(fd);
      return kms_error_set(err, KMS_PERMISSION_DENIED, 0,
                           "docker: %s changed to a path outside %s while it was opened; "
                           "refusing to read it", name, in->dir);
    }
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)DOCKER_VALUE_MAX) {
    int reg = S_ISREG(st.st_mode);
    close(fd);
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "docker: %s/%s is %s", in->dir, name,
                         reg ? "larger than 1 MiB" : "not a regular file");
  }
  char *b = malloc((size_t)st.st_size + 1);
  if (!b) {
    close(fd);
    return kms_error_set(err, KMS_NO_MEMORY, 0, "docker: out of memory");
  }
  size_t n = 0;
  for (;;) {
    ssize_t r = read(fd, b + n, (size_t)st.st_size - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      close(fd);
      OPENSSL_cleanse(b, (size_t)st.st_size + 1);
      free(b);
      return kms_error_set(err, KMS_UNAVAILABLE, 0, "docker: reading %s/%s: %s", in->dir, name,
                           strerror(e));
    }
    if (r == 0 || (n += (size_t)r) == (size_t)st.st_size) break;
  }
  close(fd);
  b[n] = '\0';
  *buf = b;
  *len = n;
  return KMS_OK;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* The value of `name`: the file (or its lower-case twin) with surrounding
 * whitespace stripped, in a malloc'ed NUL-terminated buffer (*buf, *len)
 * the caller wipes and frees. */
static kms_status docker_fetch(kms_instance *in, const char *name, char **out, size_t *out_len,
                               kms_error *err) {
  *out = NULL;
  if (!name_valid(name))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "docker: secret name must be a file name (1 to %d characters, no '/', "
                         "not . or .., no control characters)", DOCKER_NAME_MAX);
  kms_stats_add(in->stats, KMS_STAT_FETCHES, 1);
  char *buf = NULL;
  size_t len = 0;
  kms_status st = read_one(in, name, &buf, &len, err);
  if (st == KMS_NOT_FOUND) {
    /* LiteLLM's second candidate: the lower-case name */
    char lower[DOCKER_NAME_MAX + 1];
    size_t i = 0;
    for (; name[i]; i++) lower[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] + 32) : name[i];
    lower[i] = '\0';
    if (strcmp(lower, name) != 0) {
      kms_error e2;
      st = read_one(in, lower, &buf, &len, &e2);
      if (st != KMS_NOT_FOUND) *err = e2;
      else
        kms_error_set(err, KMS_NOT_FOUND, 0, "docker: no file %s (or %s) in %s", name, lower,
                      in->dir);
    }
  }
  if (st != KMS_OK) return st;
  size_t a = 0, b = len;
  while (a < b && is_space(buf[a])) a++;
  while (b > a && is_space(buf[b - 1])) b--;
  if (a == b || memchr(buf + a, '\0', b - a)) {
    OPENSSL_cleanse(buf, len);
    free(buf);
    return kms_error_set(err, a == b ? KMS_NOT_FOUND : KMS_INVALID_ARGUMENT, 0,
                         "docker: the file for %s in %s is %s", name, in->dir,
                         a == b ? "empty" : "binary (it holds a NUL byte)");
  }
  memmove(buf, buf + a, b - a);
  OPENSSL_cleanse(buf + (b - a), len - (b - a));
  buf[b - a] = '\0';
  *out = buf;
  *out_len = b - a;
  return KMS_OK;
}

/* The options a docker read takes: no location keys (a per-call directory
 * would let a caller read any directory), no version pin (files have none);
 * NONBLOCKING and BYPASS_CACHE need nothing (no cache, local files). */
static kms_status check_read_options(const kms_call_options *opt, kms_error *err) {
  static const char *const keys[] = {NULL};
  kms_status st = kms_options_check(opt, KMS_CALL_KIND_READ, keys, "docker", err);
  if (st == KMS_OK && opt && KMS_FIELD_PRESENT(opt, kms_call_options, version) && opt->version)
    st = kms_error_set(err, KMS_UNSUPPORTED, 0,
                       "docker: option 'version' cannot be honoured: secret files keep no "
                       "versions (read without a version pin)");
  return st;
}

static kms_status docker_read_opt(kms_instance *in, const char *name,
                                  const kms_call_options *opt, kms_secret **out, kms_error *err) {
  *out = NULL;
  char *buf = NULL;
  size_t len = 0;
  kms_status st = check_read_options(opt, err);
  if (st == KMS_OK) st = docker_fetch(in, name, &buf, &len, err);
  if (st == KMS_OK) {
    kms_secret *s = calloc(1, sizeof *s);
    if (!s) {
      OPENSSL_cleanse(buf, len);
      free(buf);
      st = kms_error_set(err, KMS_NO_MEMORY, 0, "docker: out of memory");
    } else {
      s->struct_size = sizeof *s;
      s->value = buf;
      s->length = len;
      *out = s;
    }
  }
  return kms_stats_result(in->stats, st, err);
}

static kms_status docker_read(kms_instance *in, const char *name, kms_secret **out,
                              kms_error *err) {
  return docker_read_opt(in, name, NULL, out, err);
}

/* Reading a file needs a buffer of the file's size anyway; the copy into the
 * caller's buffer is wiped and freed at once. */
static kms_status docker_read_into(kms_instance *in, const char *name,
                                   const kms_call_options *opt, char *out, size_t size,
                                   kms_secret_info *info, kms_error *err) {
  char *buf = NULL;
  size_t len = 0;
  kms_status st = check_read_options(opt, err);
  if (st == KMS_OK) st = docker_fetch(in, name, &buf, &len, err);
  if (st == KMS_OK) {
    st = kms_secret_copy_into(buf, len, 0, 0, out, size, info, "docker", err);
    OPENSSL_cleanse(buf, len);
    free(buf);
  }
  return kms_stats_result(in->stats, st, err);
}

/* Every regular file in the directory (through symlinks that stay inside it,
 * as reads do) whose name starts with `prefix`. Dot-files are skipped:
 * Kubernetes keeps its ..data bookkeeping there. */
static kms_status docker_list(kms_instance *in, const char *prefix, const kms_call_options *opt,
                              kms_list_fn fn, void *ctx, kms_error *err) {
  static const char *const keys[] = {NULL};
  kms_status st = kms_options_check(opt, KMS_CALL_KIND_LIST, keys, "docker", err);
  if (st != KMS_OK) return kms_stats_result(in->stats, st, err);
  DIR *d = opendir(in->dir);
  if (!d)
    return kms_stats_result(in->stats, kms_error_set(err, errno == ENOENT ? KMS_NOT_FOUND
                                       : errno == EACCES ? KMS_PERMISSION_DENIED : KMS_UNAVAILABLE,
                                       0, "docker: cannot list %s: %s", in->dir,
                                       strerror(errno)), err);
  size_t plen = strlen(prefix);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || !name_valid(e->d_name) || strncmp(e->d_name, prefix, plen) != 0)
      continue;
    char path[PATH_MAX], real[PATH_MAX];
    struct stat st2;
    size_t dl = strlen(in->dir);
    if (snprintf(path, sizeof path, "%s/%s", in->dir, e->d_name) >= (int)sizeof path ||
        !realpath(path, real) || strncmp(real, in->dir, dl) != 0 || real[dl] != '/' ||
        stat(real, &st2) != 0 || !S_ISREG(st2.st_mode))
      continue;
    if (fn(ctx, e->d_name) != 0) break;
  }
  closedir(d);
  return KMS_OK;
}

static kms_status docker_health(kms_instance *in, kms_health *out, kms_error *err) {
  (void)err;
  kms_stats_fill(in->stats, out);
  struct stat st;
  out->reachable = stat(in->dir, &st) == 0 && S_ISDIR(st.st_mode); /* mounted yet? */
  return KMS_OK;
}

static kms_status docker_write(kms_instance *in, const char *name, const char *value, size_t len,
                               const kms_write_options *opt, kms_error *err) {
  (void)in, (void)name, (void)value, (void)len, (void)opt;
  return kms_error_set(err, KMS_UNSUPPORTED, 0,
                       "docker: the docker backend is read-only (Docker or Kubernetes mounts "
                       "the files); use a store such as hashicorp_vault for store_virtual_keys");
}

static kms_status docker_delete(kms_instance *in, const char *name, kms_error *err) {
  (void)in, (void)name;
  return kms_error_set(err, KMS_UNSUPPORTED, 0,
                       "docker: the docker backend is read-only and cannot delete secrets");
}

/* Options are checked first, so a bad key is named even here. */
static kms_status docker_write_opt(kms_instance *in, const char *name, const char *value,
                                   size_t len, const kms_write_options *wopt,
                                   const kms_call_options *opt, kms_error *err) {
  static const char *const keys[] = {NULL};
  kms_status st = kms_options_check(opt, KMS_CALL_KIND_WRITE, keys, "docker", err);
  if (st == KMS_OK) st = docker_write(in, name, value, len, wopt, err);
  return kms_stats_result(in->stats, st, err);
}

static kms_status docker_delete_opt(kms_instance *in, const char *name,
                                    const kms_call_options *opt, kms_error *err) {
  static const char *const keys[] = {NULL};
  kms_status st = kms_options_check(opt, KMS_CALL_KIND_DELETE, keys, "docker", err);
  if (st == KMS_OK) st = docker_delete(in, name, err);
  return kms_stats_result(in->stats, st, err);
}

static kms_status docker_refresh(kms_instance *in, kms_error *err) {
  (void)in, (void)err;
  return KMS_OK; /* nothing is cached: every read opens the file */
}

static void docker_free_secret(kms_secret *s) {
  if (!s) return;
  if (s->value) {
    OPENSSL_cleanse((void *)s->value, s->length);
    free((void *)s->value);
  }
  OPENSSL_cleanse(s, sizeof *s);
  free(s);
}

static const kms_plugin docker_plugin = {
  .struct_size = sizeof(kms_plugin),
  .abi_major = KMS_ABI_MAJOR,
  .abi_minor = KMS_ABI_MINOR,
  .name = "docker",
  .version = DOCKER_PLUGIN_VERSION,
  .capabilities = KMS_CAP_READ | KMS_CAP_REFRESH | KMS_CAP_THREAD_SAFE | KMS_CAP_LIST,
  .create = docker_create,
  .destroy = docker_destroy,
  .read_secret = docker_read,
  .write_secret = docker_write,
  .delete_secret = docker_delete,
  .refresh = docker_refresh,
  .free_secret = docker_free_secret,
  /* ABI 1.1 */
  .read_secret_opt = docker_read_opt,
  .write_secret_opt = docker_write_opt,
  .delete_secret_opt = docker_delete_opt,
  .read_secret_into = docker_read_into,
  .list_secrets = docker_list,
  .health = docker_health,
};

KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t host_major, uint32_t host_minor);
KMS_PLUGIN_EXPORT const kms_plugin *kms_plugin_entry(uint32_t host_major, uint32_t host_minor) {
  (void)host_minor;
  return host_major == KMS_ABI_MAJOR ? &docker_plugin : NULL;
}
