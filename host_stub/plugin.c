/*
 * plugin.c -- the host's side of the ABI: the kms_host services table (a
 * thread-safe stderr logger, the process environment, change notifications
 * forwarded to the one sink a command registers) and loading the configured
 * plugin through libkmsloader (kms_module_load + kms_client_*).
 */
#include "host.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_verbose;

static const char *level_name(kms_log_level level) {
  switch (level) {
  case KMS_LOG_ERROR: return "error";
  case KMS_LOG_WARN: return "warning";
  case KMS_LOG_INFO: return "info";
  case KMS_LOG_DEBUG: return "debug";
  }
  return "log";
}

/* kms_host.log: one whole line per message, never interleaved. Debug lines
 * only with --verbose. The plugin promises no secrets in messages. */
static void log_cb(void *ctx, kms_log_level level, const char *message) {
  (void)ctx;
  if (level == KMS_LOG_DEBUG && !log_verbose) return;
  pthread_mutex_lock(&log_lock);
  fprintf(stderr, "kms-host: %s: %s\n", level_name(level), message ? message : "");
  fflush(stderr);
  pthread_mutex_unlock(&log_lock);
}

void host_log(kms_log_level level, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  log_cb(NULL, level, msg);
}

/* The notify sink (host_notify_set). Set and cleared only while no instance
 * lives, read by plugin threads: the mutex makes that ordering visible. */
static pthread_mutex_t notify_lock = PTHREAD_MUTEX_INITIALIZER;
static host_notify_fn notify_fn;
static void *notify_ctx;

/* kms_host.notify: hand the change to the registered sink, if any. Without
 * one (every command but `watch`) a change is dropped: those commands read
 * afresh anyway. */
static void notify_cb(void *ctx, const kms_change *change) {
  (void)ctx;
  pthread_mutex_lock(&notify_lock);
  host_notify_fn fn = notify_fn;
  void *fctx = notify_ctx;
  pthread_mutex_unlock(&notify_lock);
  if (fn && change) fn(fctx, change);
}

void host_notify_set(host_notify_fn fn, void *ctx) {
  pthread_mutex_lock(&notify_lock);
  notify_fn = fn;
  notify_ctx = ctx;
  pthread_mutex_unlock(&notify_lock);
}

static const kms_host host_table = {
  .struct_size = sizeof(kms_host),
  .abi_major = KMS_ABI_MAJOR,
  .abi_minor = KMS_ABI_MINOR,
  .ctx = NULL,
  .log = log_cb,
  .getenv = NULL, /* the process environment */
  .notify = notify_cb,
};

const kms_host *host_services(int verbose) {
  log_verbose = verbose;
  return &host_table;
}

const char *host_plugin_dir(const char *cli_dir, const host_config *cfg) {
  if (cli_dir && *cli_dir) return cli_dir;
  if (cfg && cfg->plugin_dir && *cfg->plugin_dir) return cfg->plugin_dir;
  return kms_plugin_dir(NULL);
}

/* "env, hashicorp_vault" or "(none)" */
static void list_names(const char *dir, char *buf, size_t size) {
  kms_plugin_info *list = NULL;
  size_t n = 0;
  kms_error e;
  buf[0] = '\0';
  if (kms_plugin_list(dir, &list, &n, &e) != KMS_OK) {
    snprintf(buf, size, "(cannot list: %s)", e.message);
    return;
  }
  size_t used = 0;
  for (size_t i = 0; i < n && used < size; i++) {
    int w = snprintf(buf + used, size - used, "%s%s%s", i ? ", " : "", list[i].name,
                     list[i].status == KMS_OK ? "" : " (unloadable)");
    if (w < 0) break;
    used += (size_t)w;
  }
  if (n == 0) snprintf(buf, size, "(none)");
  kms_plugin_list_free(list);
}

/* The create() settings: every scalar of key_management_settings, then
 * `extra` (a command's own additions, e.g. watch's background_refresh). */
static kms_status create_client(const host_config *cfg, const kms_setting *extra, size_t n_extra,
                                int verbose, host_plugin *hp, kms_error *e) {
  size_t n = cfg->n_settings + n_extra;
  kms_setting *settings = calloc(n ? n : 1, sizeof *settings);
  if (!settings) return kms_error_set(e, KMS_NO_MEMORY, 0, "out of memory");
  for (size_t i = 0; i < cfg->n_settings; i++) {
    settings[i].key = cfg->settings[i].key;
    settings[i].value = cfg->settings[i].value;
  }
  for (size_t i = 0; i < n_extra; i++) settings[cfg->n_settings + i] = extra[i];
  kms_status st = kms_client_create(hp->module, host_services(verbose), settings, n, &hp->client,
                                    e);
  free(settings);
  return st;
}

host_status host_plugin_open(const host_config *cfg, const char *dir, int verbose,
                             host_plugin *hp, host_result *r) {
  return host_plugin_open_with(cfg, dir, NULL, 0, verbose, hp, r);
}

host_status host_plugin_open_with(const host_config *cfg, const char *dir,
                                  const kms_setting *extra, size_t n_extra, int verbose,
                                  host_plugin *hp, host_result *r) {
  memset(hp, 0, sizeof *hp);
  const char *file = cfg->path ? cfg->path : "config";
  if (!cfg->kms)
    return host_fail(r, HOST_CONFIG, "%s: general_settings.key_management_system is not set; "
                     "this command needs a secret manager plugin", file);
  kms_error e;
  kms_status st = kms_module_load(dir, cfg->kms, &hp->module, &e);
  if (st != KMS_OK) {
    char names[1024];
    list_names(dir, names, sizeof names);
    if (st == KMS_NOT_FOUND)
      return host_fail(r, HOST_CONFIG, "%s:%d: general_settings.key_management_system: unknown "
                       "plugin '%s' (no %s/%s.so); plugins found in %s: %s", file, cfg->kms_line,
                       cfg->kms, dir, cfg->kms, dir, names);
    return host_fail(r, HOST_CONFIG, "cannot load plugin '%s': %s (%s); plugins found in %s: %s",
                     cfg->kms, e.message, kms_status_str(st), dir, names);
  }
  st = create_client(cfg, extra, n_extra, verbose, hp, &e);
  if (st == KMS_UNAVAILABLE) {
    hp->backend_down = 1;
    return host_fail(r, HOST_FAILED, "plugin '%s' cannot reach its backend: %s (%s)", cfg->kms,
                     e.message, kms_status_str(st));
  }
  if (st != KMS_OK) {
    host_fail(r, HOST_CONFIG, "plugin '%s' (%s) refused the configuration: %s (%s)", cfg->kms,
              kms_module_path(hp->module), e.message, kms_status_str(st));
    kms_module_unload(hp->module);
    hp->module = NULL;
    return HOST_CONFIG;
  }
  return HOST_OK;
}

void host_plugin_close(host_plugin *hp) {
  if (!hp) return;
  kms_client_destroy(hp->client);
  kms_module_unload(hp->module);
  hp->client = NULL;
  hp->module = NULL;
}
