/*
 * main.c -- kms-host: command-line parsing and the commands.
 *
 *   kms-host [--config FILE] [--plugin-dir DIR] [--db PATH] [-v] COMMAND ...
 *
 * Every command has --help. Exit statuses are the HOST_EXIT_* values in
 * host.h (0 ok, 1 failed, 2 usage, 3 config/plugin, 4 saved but queued).
 */
#include "host.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET_MAX (1u << 20)

typedef struct opts {
  const char *config;
  const char *plugin_dir;
  const char *db;
  int verbose;
} opts;

static const char usage_main[] =
    "usage: kms-host [--config FILE] [--plugin-dir DIR] [--db PATH] [-v] COMMAND [ARGS]\n"
    "\n"
    "A reference gateway host for kmsplug: reads a LiteLLM-shaped config.yaml, loads the\n"
    "secret-manager plugin named by general_settings.key_management_system, and runs the\n"
    "virtual-key hooks with a durable outbox.\n"
    "\n"
    "commands:\n"
    "  plugins                      list the plugins in the plugin directory\n"
    "  secret get NAME              print a secret read through the plugin\n"
    "  secret put NAME              store stdin (one trailing newline stripped) as NAME\n"
    "  secret delete NAME           delete NAME\n"
    "  resolve                      resolve every os.environ/ reference in the config\n"
    "  key generate [--alias A]     create a virtual key (printed once)\n"
    "  key delete (--alias A | --key sk-...)\n"
    "  key regenerate (--alias A | --key sk-...)\n"
    "  key list                     list virtual keys (never the keys) and queued work\n"
    "  sync                         deliver queued secret-manager operations\n"
    "  refresh                      ask the plugin to revalidate credentials and caches\n"
    "\n"
    "options:\n"
    "  --config FILE      the config (required by every command but `plugins`)\n"
    "  --plugin-dir DIR   plugin directory; else general_settings.plugin_dir, else\n"
    "                     $KMS_PLUGIN_PATH, else the installed default\n"
    "  --db PATH          virtual-key database; else general_settings.kms_db_path, else\n"
    "                     kms-host.db next to the config\n"
    "  -v, --verbose      show the plugin's debug log\n"
    "\n"
    "exit status: 0 ok; 1 failed; 2 bad command line; 3 bad config or plugin;\n"
    "4 the key change is saved but secret-manager work is still queued (run `sync`).\n"
    "Run `kms-host COMMAND --help` for a command's details.\n";

static const char usage_plugins[] =
    "usage: kms-host [--config FILE] [--plugin-dir DIR] plugins\n"
    "List every <name>.so in the plugin directory with its version, ABI version and\n"
    "capabilities. With --config, the configured plugin is marked with '*' and the\n"
    "command fails (exit 3) if it is not there.\n";
static const char usage_secret[] =
    "usage: kms-host --config FILE secret (get|put|delete) NAME\n"
    "  get NAME     print the value of NAME (read through the plugin) and a newline\n"
    "  put NAME     store standard input as NAME; one trailing newline is stripped;\n"
    "               an empty value is refused\n"
    "  delete NAME  delete NAME (deleting a missing secret succeeds)\n"
    "Names go to the plugin unchanged (no prefix is added).\n";
static const char usage_resolve[] =
    "usage: kms-host --config FILE resolve\n"
    "Resolve every string value in the config that starts with os.environ/ the way\n"
    "LiteLLM does: through the plugin when key_management_system is set, access_mode is\n"
    "not write_only and hosted_keys is unset or lists the name; from the environment\n"
    "otherwise (and, as LiteLLM, from the environment when the plugin has no value or\n"
    "fails, with a warning; general_settings.kms_env_fallback: not_found | off narrows\n"
    "that). Prints each reference with a redacted value or the error; exits 1 if any\n"
    "reference cannot be resolved.\n";
static const char usage_key[] =
    "usage: kms-host --config FILE key COMMAND\n"
    "  generate [--alias A]                   create a virtual key; it is printed once\n"
    "  delete (--alias A | --key sk-...)      delete a virtual key\n"
    "  regenerate (--alias A | --key sk-...)  replace a key's value (same id and alias)\n"
    "  list                                   list keys (id, alias, secret name) and queued work\n"
    "With store_virtual_keys: true the key is stored as prefix_for_stored_virtual_keys +\n"
    "(alias or virtual-key-<id>) through the plugin. The store operation is saved in the\n"
    "same transaction as the key change and delivered afterwards; if the store is down\n"
    "the change is kept, the work stays queued and the exit status is 4 (run `sync`).\n";
static const char usage_sync[] =
    "usage: kms-host --config FILE sync\n"
    "Deliver queued secret-manager operations in order. Exit 0 when none are left,\n"
    "4 when some are still queued.\n";
static const char usage_refresh[] =
    "usage: kms-host --config FILE refresh\n"
    "Ask the plugin to revalidate its credentials and re-read cached secrets now.\n";

static int is_help(const char *a) { return !strcmp(a, "--help") || !strcmp(a, "-h"); }

static int usage_error(const char *text, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int usage_error(const char *text, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "kms-host: ");
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n%s", text);
  return HOST_EXIT_USAGE;
}

/* ------------------------------------------------------------------------ */

typedef struct app {
  opts o;
  host_config cfg;
  int have_cfg;
  const char *dir; /* plugin directory */
  host_plugin hp;
  sqlite3 *db;
  char *db_path;
  int lock_fd;
} app;

static void app_close(app *a) {
  host_plugin_close(&a->hp);
  if (a->db) host_db_close(a->db);
  if (a->lock_fd >= 0) close(a->lock_fd);
  free(a->db_path);
  if (a->have_cfg) host_config_free(&a->cfg);
}

static char *db_path_for(const app *a) {
  if (a->o.db && *a->o.db) return strdup(a->o.db);
  if (a->cfg.db_path) return strdup(a->cfg.db_path);
  size_t n = strlen(a->cfg.dir) + 16;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/kms-host.db", a->cfg.dir);
  return p;
}

/* Open the database and take the delivery lock. */
static int open_db(app *a) {
  char err[HOST_ERR_SIZE];
  if (!(a->db_path = db_path_for(a))) {
    fprintf(stderr, "kms-host: error: out of memory\n");
    return HOST_EXIT_FAIL;
  }
  if ((a->lock_fd = host_db_lock(a->db_path, err, sizeof err)) < 0 ||
      host_db_open(a->db_path, &a->db, err, sizeof err) != 0) {
    fprintf(stderr, "kms-host: error: %s\n", err);
    return HOST_EXIT_FAIL;
  }
  return HOST_EXIT_OK;
}

/* Load the configured plugin. `tolerate_down`: an UNAVAILABLE backend at
 * create is not fatal (key changes are queued). */
static int open_plugin(app *a, int tolerate_down) {
  char err[HOST_ERR_SIZE];
  int rc = host_plugin_open(&a->cfg, a->dir, a->o.verbose, &a->hp, err, sizeof err);
  if (rc == 0) return HOST_EXIT_OK;
  if (rc == -2 && tolerate_down) {
    host_log(KMS_LOG_WARN, "%s; secret-manager work will be queued", err);
    return HOST_EXIT_OK;
  }
  fprintf(stderr, "kms-host: error: %s\n", err);
  return rc == -2 ? HOST_EXIT_FAIL : HOST_EXIT_CONFIG;
}

/* "every later command replays": when a database exists next to this
 * config and holds queued work, try to deliver it (warn if it stays). */
static void opportunistic_replay(app *a) {
  if (!a->hp.client) return;
  char *path = db_path_for(a);
  struct stat st;
  if (!path || stat(path, &st) != 0) {
    free(path);
    return;
  }
  free(path);
  if (open_db(a) != HOST_EXIT_OK) return;
  long pending = host_outbox_pending(a->db);
  if (pending <= 0) return;
  char err[HOST_ERR_SIZE];
  long left = host_outbox_replay(a->db, a->hp.client, err, sizeof err);
  if (left != 0)
    host_log(KMS_LOG_WARN, "%ld queued secret-manager operation(s) still pending (%s); run "
             "`kms-host sync`", left < 0 ? pending : left, err);
}

/* ------------------------------------------------------------------------ */

static int cmd_plugins(app *a) {
  kms_plugin_info *list = NULL;
  size_t n = 0;
  kms_error e;
  kms_status st = kms_plugin_list(a->dir, &list, &n, &e);
  if (st != KMS_OK) {
    fprintf(stderr, "kms-host: error: %s\n", e.message);
    return HOST_EXIT_FAIL;
  }
  printf("plugin directory: %s\n", a->dir);
  printf("  %-20s %-10s %-5s %-40s\n", "NAME", "VERSION", "ABI", "CAPABILITIES");
  int found = 0;
  for (size_t i = 0; i < n; i++) {
    int configured = a->have_cfg && a->cfg.kms && !strcmp(a->cfg.kms, list[i].name);
    found |= configured && list[i].status == KMS_OK;
    if (list[i].status != KMS_OK) {
      printf("%c %-20s unloadable: %s\n", configured ? '*' : ' ', list[i].name, list[i].error);
      continue;
    }
    char caps[128], abi[24];
    kms_capabilities_str(list[i].capabilities, caps, sizeof caps);
    snprintf(abi, sizeof abi, "%u.%u", list[i].abi_major, list[i].abi_minor);
    printf("%c %-20s %-10s %-5s %s\n", configured ? '*' : ' ', list[i].name, list[i].version,
           abi, caps);
  }
  if (n == 0) printf("  (no plugins)\n");
  kms_plugin_list_free(list);
  if (a->have_cfg && a->cfg.kms) {
    if (!found) {
      fprintf(stderr, "kms-host: error: %s:%d: key_management_system '%s' is not a loadable "
              "plugin in %s\n", a->cfg.path, a->cfg.kms_line, a->cfg.kms, a->dir);
      return HOST_EXIT_CONFIG;
    }
    printf("configured: %s (* above)\n", a->cfg.kms);
  }
  return HOST_EXIT_OK;
}

/* Read stdin (at most SECRET_MAX bytes) into a malloc'ed buffer. */
static char *read_stdin(size_t *len) {
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  if (!buf) return NULL;
  for (;;) {
    if (n == cap) {
      if (cap > SECRET_MAX) break;
      char *nb = malloc(cap * 2);
      if (!nb) break;
      memcpy(nb, buf, n);
      OPENSSL_cleanse(buf, cap);
      free(buf);
      buf = nb;
      cap *= 2;
    }
    size_t r = fread(buf + n, 1, cap - n, stdin);
    n += r;
    if (r == 0) {
      if (ferror(stdin)) break;
      *len = n;
      return buf;
    }
  }
  OPENSSL_cleanse(buf, cap);
  free(buf);
  return NULL;
}

static int cmd_secret(app *a, int argc, char **argv) {
  if (argc < 1 || is_help(argv[0])) {
    fputs(usage_secret, argc < 1 ? stderr : stdout);
    return argc < 1 ? HOST_EXIT_USAGE : HOST_EXIT_OK;
  }
  const char *sub = argv[0];
  if (strcmp(sub, "get") && strcmp(sub, "put") && strcmp(sub, "delete"))
    return usage_error(usage_secret, "unknown secret command '%s'", sub);
  if (argc >= 2 && is_help(argv[1])) {
    fputs(usage_secret, stdout);
    return HOST_EXIT_OK;
  }
  if (argc != 2) return usage_error(usage_secret, "secret %s takes exactly one NAME", sub);
  const char *name = argv[1];
  int rc = open_plugin(a, 0);
  if (rc != HOST_EXIT_OK) return rc;
  opportunistic_replay(a);
  kms_error e;
  kms_status st;
  if (!strcmp(sub, "get")) {
    kms_secret *s = NULL;
    st = kms_client_read(a->hp.client, name, &s, &e);
    if (st == KMS_OK) {
      if (KMS_SECRET_HAS(s, flags) && (s->flags & KMS_SECRET_STALE))
        host_log(KMS_LOG_WARN, "%s: served from cache after a backend failure (stale)", name);
      fwrite(s->value, 1, s->length, stdout);
      fputc('\n', stdout);
      fflush(stdout);
      kms_client_free_secret(a->hp.client, s);
    }
  } else if (!strcmp(sub, "put")) {
    size_t len = 0;
    char *v = read_stdin(&len);
    if (!v) {
      fprintf(stderr, "kms-host: error: cannot read the value from stdin (at most %u bytes)\n",
              SECRET_MAX);
      return HOST_EXIT_FAIL;
    }
    size_t vlen = len;
    if (vlen && v[vlen - 1] == '\n') {
      vlen--;
      if (vlen && v[vlen - 1] == '\r') vlen--;
    }
    if (vlen == 0) {
      OPENSSL_cleanse(v, len);
      free(v);
      fprintf(stderr, "kms-host: error: refusing to store an empty value for %s\n", name);
      return HOST_EXIT_FAIL;
    }
    st = kms_client_write(a->hp.client, name, v, vlen, NULL, &e);
    OPENSSL_cleanse(v, len);
    free(v);
    if (st == KMS_OK) printf("stored: %s\n", name);
  } else {
    st = kms_client_delete(a->hp.client, name, &e);
    if (st == KMS_OK) printf("deleted: %s\n", name);
  }
  if (st != KMS_OK) {
    fprintf(stderr, "kms-host: error: secret %s %s: %s (%s)\n", sub, name, e.message,
            kms_status_str(st));
    return HOST_EXIT_FAIL;
  }
  return HOST_EXIT_OK;
}

/* resolve.c reaches the plugin through these (it links without the loader). */
static kms_status resolve_read(void *ctx, const char *name, kms_secret **out, kms_error *err) {
  return kms_client_read((kms_client *)ctx, name, out, err);
}
static void resolve_release(void *ctx, kms_secret *s) { kms_client_free_secret((kms_client *)ctx, s); }
static void resolve_warn(const char *message) { host_log(KMS_LOG_WARN, "%s", message); }

static int cmd_resolve(app *a, int argc, char **argv) {
  if (argc >= 1 && is_help(argv[0])) {
    fputs(usage_resolve, stdout);
    return HOST_EXIT_OK;
  }
  if (argc) return usage_error(usage_resolve, "resolve takes no arguments (got '%s')", argv[0]);
  /* A configured plugin is always loaded, even with nothing to resolve: a
   * misspelt key_management_system must fail here, not at the first key. */
  int need_plugin = a->cfg.kms != NULL;
  for (size_t i = 0; i < a->cfg.n_refs; i++)
    need_plugin |= host_ref_uses_plugin(&a->cfg, a->cfg.refs[i].env_name);
  if (need_plugin) {
    int rc = open_plugin(a, 0);
    if (rc != HOST_EXIT_OK) return rc;
    opportunistic_replay(a);
  }
  host_reader rd = {a->hp.client, a->cfg.kms, resolve_read, resolve_release, resolve_warn};
  return host_resolve_print(&a->cfg, a->hp.client ? &rd : NULL, stdout);
}

static int cmd_key(app *a, int argc, char **argv) {
  if (argc < 1 || is_help(argv[0])) {
    fputs(usage_key, argc < 1 ? stderr : stdout);
    return argc < 1 ? HOST_EXIT_USAGE : HOST_EXIT_OK;
  }
  const char *sub = argv[0];
  const char *alias = NULL, *key = NULL;
  int is_gen = !strcmp(sub, "generate"), is_del = !strcmp(sub, "delete"),
      is_regen = !strcmp(sub, "regenerate"), is_list = !strcmp(sub, "list");
  if (!is_gen && !is_del && !is_regen && !is_list)
    return usage_error(usage_key, "unknown key command '%s'", sub);
  for (int i = 1; i < argc; i++) {
    if (is_help(argv[i])) {
      fputs(usage_key, stdout);
      return HOST_EXIT_OK;
    }
    if (!strcmp(argv[i], "--alias") && i + 1 < argc && !is_list) alias = argv[++i];
    else if (!strncmp(argv[i], "--alias=", 8) && !is_list) alias = argv[i] + 8;
    else if (!strcmp(argv[i], "--key") && i + 1 < argc && (is_del || is_regen)) key = argv[++i];
    else if (!strncmp(argv[i], "--key=", 6) && (is_del || is_regen)) key = argv[i] + 6;
    else return usage_error(usage_key, "unexpected argument '%s'", argv[i]);
  }
  if ((is_del || is_regen) && !!alias == !!key)
    return usage_error(usage_key, "key %s needs exactly one of --alias or --key", sub);
  int rc = open_db(a);
  if (rc != HOST_EXIT_OK) return rc;
  if (a->cfg.kms) {
    rc = open_plugin(a, 1);
    if (rc != HOST_EXIT_OK) return rc;
  } else if (a->cfg.store_virtual_keys) {
    fprintf(stderr, "kms-host: error: %s: store_virtual_keys is true but general_settings."
            "key_management_system is not set\n", a->cfg.path);
    return HOST_EXIT_CONFIG;
  }
  host_key_ctx k = {a->db, &a->cfg, a->hp.module ? kms_module_plugin(a->hp.module) : NULL,
                    a->hp.client};
  char err[HOST_ERR_SIZE] = "";
  if (is_gen) rc = host_key_generate(&k, alias, err, sizeof err);
  else if (is_del) rc = host_key_delete(&k, alias, key, err, sizeof err);
  else if (is_regen) rc = host_key_regenerate(&k, alias, key, err, sizeof err);
  else {
    if (a->hp.client && host_outbox_pending(a->db) > 0) {
      long left = host_outbox_replay(a->db, a->hp.client, err, sizeof err);
      if (left != 0) host_log(KMS_LOG_WARN, "queued work still pending: %s", err);
      err[0] = '\0';
    }
    rc = host_key_list(&k, err, sizeof err);
  }
  if (rc != HOST_EXIT_OK && rc != HOST_EXIT_QUEUED && err[0])
    fprintf(stderr, "kms-host: error: key %s: %s\n", sub, err);
  return rc;
}

static int cmd_sync(app *a, int argc, char **argv) {
  if (argc >= 1 && is_help(argv[0])) {
    fputs(usage_sync, stdout);
    return HOST_EXIT_OK;
  }
  if (argc) return usage_error(usage_sync, "sync takes no arguments (got '%s')", argv[0]);
  int rc = open_db(a);
  if (rc != HOST_EXIT_OK) return rc;
  if (a->cfg.kms) {
    rc = open_plugin(a, 1);
    if (rc != HOST_EXIT_OK) return rc;
  }
  long before = host_outbox_pending(a->db);
  char err[HOST_ERR_SIZE];
  long left = host_outbox_replay(a->db, a->hp.client, err, sizeof err);
  if (left < 0) {
    fprintf(stderr, "kms-host: error: %s\n", err);
    return HOST_EXIT_FAIL;
  }
  printf("delivered: %ld\nqueued: %ld\n", before - left, left);
  if (left > 0) {
    fprintf(stderr, "kms-host: warning: %ld operation(s) still queued: %s\n", left, err);
    return HOST_EXIT_QUEUED;
  }
  return HOST_EXIT_OK;
}

static int cmd_refresh(app *a, int argc, char **argv) {
  if (argc >= 1 && is_help(argv[0])) {
    fputs(usage_refresh, stdout);
    return HOST_EXIT_OK;
  }
  if (argc) return usage_error(usage_refresh, "refresh takes no arguments (got '%s')", argv[0]);
  int rc = open_plugin(a, 0);
  if (rc != HOST_EXIT_OK) return rc;
  opportunistic_replay(a);
  kms_error e;
  kms_status st = kms_client_refresh(a->hp.client, &e);
  if (st != KMS_OK) {
    fprintf(stderr, "kms-host: error: refresh: %s (%s)\n", e.message, kms_status_str(st));
    return HOST_EXIT_FAIL;
  }
  printf("refreshed: %s\n", a->cfg.kms);
  return HOST_EXIT_OK;
}

/* ------------------------------------------------------------------------ */

static int run(int argc, char **argv) {
  app a;
  memset(&a, 0, sizeof a);
  a.lock_fd = -1;
  int i = 1;
  for (; i < argc; i++) {
    const char *s = argv[i];
    const char **dst = NULL;
    if (!strcmp(s, "--config")) dst = &a.o.config;
    else if (!strcmp(s, "--plugin-dir")) dst = &a.o.plugin_dir;
    else if (!strcmp(s, "--db")) dst = &a.o.db;
    if (dst) {
      if (i + 1 >= argc) return usage_error(usage_main, "%s needs a value", s);
      *dst = argv[++i];
      continue;
    }
    if (!strncmp(s, "--config=", 9)) a.o.config = s + 9;
    else if (!strncmp(s, "--plugin-dir=", 13)) a.o.plugin_dir = s + 13;
    else if (!strncmp(s, "--db=", 5)) a.o.db = s + 5;
    else if (!strcmp(s, "-v") || !strcmp(s, "--verbose")) a.o.verbose = 1;
    else if (is_help(s) || !strcmp(s, "help")) {
      fputs(usage_main, stdout);
      return HOST_EXIT_OK;
    } else if (s[0] == '-') return usage_error(usage_main, "unknown option '%s'", s);
    else break;
  }
  if (i >= argc) {
    fputs(usage_main, stderr);
    return HOST_EXIT_USAGE;
  }
  const char *cmd = argv[i++];
  int sub_argc = argc - i;
  char **sub_argv = argv + i;
  static const char *const cmds[] = {"plugins", "secret", "resolve", "key", "sync", "refresh"};
  int known = 0;
  for (size_t c = 0; c < sizeof cmds / sizeof *cmds; c++) known |= !strcmp(cmd, cmds[c]);
  if (!known) return usage_error(usage_main, "unknown command '%s'", cmd);
  /* --help never needs a config. */
  int want_help = 0;
  for (int j = 0; j < sub_argc; j++) want_help |= is_help(sub_argv[j]);
  if (want_help) {
    const char *t = !strcmp(cmd, "plugins") ? usage_plugins
                  : !strcmp(cmd, "secret")  ? usage_secret
                  : !strcmp(cmd, "resolve") ? usage_resolve
                  : !strcmp(cmd, "key")     ? usage_key
                  : !strcmp(cmd, "sync")    ? usage_sync
                                            : usage_refresh;
    fputs(t, stdout);
    return HOST_EXIT_OK;
  }
  int is_plugins = !strcmp(cmd, "plugins");
  if (!a.o.config && !is_plugins)
    return usage_error(usage_main, "%s needs --config FILE", cmd);
  (void)host_services(a.o.verbose);
  if (a.o.config) {
    char err[HOST_ERR_SIZE];
    if (host_config_load(a.o.config, &a.cfg, err, sizeof err) != 0) {
      fprintf(stderr, "kms-host: error: %s\n", err);
      return HOST_EXIT_CONFIG;
    }
    a.have_cfg = 1;
  }
  a.dir = host_plugin_dir(a.o.plugin_dir, a.have_cfg ? &a.cfg : NULL);
  int rc;
  if (is_plugins) {
    if (sub_argc) rc = usage_error(usage_plugins, "plugins takes no arguments (got '%s')",
                                   sub_argv[0]);
    else rc = cmd_plugins(&a);
  } else if (!strcmp(cmd, "secret")) rc = cmd_secret(&a, sub_argc, sub_argv);
  else if (!strcmp(cmd, "resolve")) rc = cmd_resolve(&a, sub_argc, sub_argv);
  else if (!strcmp(cmd, "key")) rc = cmd_key(&a, sub_argc, sub_argv);
  else if (!strcmp(cmd, "sync")) rc = cmd_sync(&a, sub_argc, sub_argv);
  else rc = cmd_refresh(&a, sub_argc, sub_argv);
  app_close(&a);
  return rc;
}

int main(int argc, char **argv) {
  int rc = run(argc, argv);
  if (fflush(stdout) != 0 && rc == HOST_EXIT_OK) rc = HOST_EXIT_FAIL;
  return rc;
}
