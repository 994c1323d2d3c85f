/*
 * main.c -- kms-host: the command table, option parsing, and the only place
 * that prints results or chooses an exit status.
 *
 *   kms-host [--config FILE] [--plugin-dir DIR] [--db PATH] [-v]
 *            [--lock-timeout SECONDS] [--allow-debugging] COMMAND ...
 *
 * Every command is one row of `commands` (name, summary, usage, handler).
 * Handlers return a host_status and fill a host_result; exit_status() maps
 * it to README.md's exit codes (0 ok, 1 failed, 2 usage, 3 config/plugin/
 * database, 4 saved but queued, 5 the plugin lacks an ABI 1.1 slot, 6 the
 * secret manager failed a call reconcile needs).
 */
#include "host.h"
#include "hostcmds.h"
#include "serve.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET_MAX (1u << 20)      /* secret put: the value, after one newline is stripped */
#define KEY_INPUT_MAX 256          /* --key -: one line from stdin */
#define LOCK_TIMEOUT_DEFAULT 30    /* seconds */
#define LOCK_TIMEOUT_MAX 86400     /* seconds */

typedef struct opts {
  const char *config;
  const char *plugin_dir;
  const char *db;
  const char *lock_timeout; /* --lock-timeout, else $KMS_HOST_LOCK_TIMEOUT */
  int verbose;
  int allow_debugging;
} opts;

/* Per-run state: what the command opened, closed by app_close. */
typedef struct app {
  opts o;
  host_config cfg;
  int have_cfg;
  const char *dir; /* plugin directory */
  unsigned lock_timeout_ms;
  host_plugin hp;
  host_db *db;
  char *db_path; /* the store: a SQLite path or a PostgreSQL URL (wiped) */
  int lock_fd;
} app;

typedef struct command {
  const char *name;
  const char *summary; /* its lines in the main usage */
  const char *usage;   /* its --help */
  int needs_config;
  host_status (*run)(app *a, int argc, char **argv, host_result *r);
} command;

static int is_help(const char *a) { return !strcmp(a, "--help") || !strcmp(a, "-h"); }

static void app_close(app *a) {
  host_plugin_close(&a->hp);
  if (a->db) host_db_close(a->db);
  host_lock_release(a->lock_fd);
  if (a->db_path) OPENSSL_cleanse(a->db_path, strlen(a->db_path)); /* a URL may hold a password */
  free(a->db_path);
  if (a->have_cfg) host_config_free(&a->cfg);
}

/* general_settings.database_url, an os.environ/ reference resolved from the
 * environment (environment_variables, then the process). */
static host_status database_url_of(const app *a, char **out, host_result *r) {
  char *name = NULL;
  if (host_env_ref_name(a->cfg.database_url, &name, r) != HOST_OK) return r->status;
  const char *v = name ? (name[0] ? host_env_lookup(&a->cfg, name) : NULL) : a->cfg.database_url;
  host_status s = HOST_OK;
  if (!v || !*v)
    s = host_fail(r, HOST_CONFIG, "%s: general_settings.database_url: %s: environment variable "
                  "'%s' is not set or empty; set it, or remove database_url to use SQLite",
                  a->cfg.path, a->cfg.database_url, name);
  else if (!(*out = strdup(v)))
    s = host_fail(r, HOST_FAILED, "out of memory");
  free(name);
  return s;
}

/* The store: --db (a path or a PostgreSQL URL), else general_settings.
 * kms_db_path, else general_settings.database_url, else $DATABASE_URL
 * (LiteLLM's names: PostgreSQL), else kms-host.db beside the config.
 * kms-host's own settings come before LiteLLM's shared ones. */
static host_status db_path_for(const app *a, char **out, host_result *r) {
  *out = NULL;
  const char *env = getenv("DATABASE_URL");
  const char *own = a->o.db && *a->o.db ? a->o.db : a->cfg.db_path;
  if (own) return (*out = strdup(own)) ? HOST_OK : host_fail(r, HOST_FAILED, "out of memory");
  size_t n = strlen(a->cfg.dir) + 16;
  char *file = malloc(n);
  if (!file) return host_fail(r, HOST_FAILED, "out of memory");
  snprintf(file, n, "%s/kms-host.db", a->cfg.dir);
  if (!a->cfg.database_url && !(env && *env)) {
    *out = file;
    return HOST_OK;
  }
  host_status s = a->cfg.database_url ? database_url_of(a, out, r)
                  : (*out = strdup(env)) ? HOST_OK : host_fail(r, HOST_FAILED, "out of memory");
  struct stat st;
  if (s == HOST_OK && stat(file, &st) == 0) /* its keys would seem to vanish */
    host_log(KMS_LOG_WARN, "%s is not used: %s selects PostgreSQL; set general_settings."
             "kms_db_path to it to keep using that file", file,
             a->cfg.database_url ? "general_settings.database_url" : "DATABASE_URL");
  free(file);
  return s;
}

/* Open the database; with `lock`, also take the delivery lock (commands
 * that change keys or deliver). Read-only commands pass 0. */
static host_status open_db(app *a, int lock, host_result *r) {
  if (db_path_for(a, &a->db_path, r) != HOST_OK) return r->status;
  if (host_store_open(a->db_path, &a->db, r) != HOST_OK) return r->status;
  if (lock && host_db_lock(a->db, a->db_path, a->lock_timeout_ms, host_clock_system(),
                           &a->lock_fd, r) != HOST_OK)
    return r->status;
  return HOST_OK;
}

/* Load the configured plugin. `tolerate_down`: an UNAVAILABLE backend at
 * create is not fatal (key changes are queued). */
static host_status open_plugin(app *a, int tolerate_down, host_result *r) {
  host_status s = host_plugin_open(&a->cfg, a->dir, a->o.verbose, &a->hp, r);
  if (s == HOST_FAILED && a->hp.backend_down && tolerate_down) {
    fprintf(stderr, "kms-host: warning: %s; secret-manager work will be queued\n", r->msg);
    return HOST_OK;
  }
  return s;
}

/* ------------------------------------------------------------------ plugins */

static host_status cmd_plugins(app *a, int argc, char **argv, host_result *r) {
  if (argc) return host_fail(r, HOST_USAGE, "plugins takes no arguments (got '%s')", argv[0]);
  kms_plugin_info *list = NULL;
  size_t n = 0;
  kms_error e;
  if (kms_plugin_list(a->dir, &list, &n, &e) != KMS_OK)
    return host_fail(r, HOST_FAILED, "%s", e.message);
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
  if (!a->have_cfg || !a->cfg.kms) return HOST_OK;
  if (!found)
    return host_fail(r, HOST_CONFIG, "%s:%d: key_management_system '%s' is not a loadable "
                     "plugin in %s", a->cfg.path, a->cfg.kms_line, a->cfg.kms, a->dir);
  printf("configured: %s (* above)\n", a->cfg.kms);
  return HOST_OK;
}

/* ------------------------------------------------------------------- secret */

/* Print a value: raw to a pipe or file; to a terminal, control characters
 * and non-UTF-8 bytes escaped (a stored value must not drive the terminal). */
static host_status print_value(const char *name, const char *v, size_t len, host_result *r) {
  if (isatty(STDOUT_FILENO) && host_text_unsafe_for_terminal(v, len)) {
    char *esc = host_text_escape(v, len);
    if (!esc) return host_fail(r, HOST_FAILED, "out of memory");
    fprintf(stderr, "kms-host: warning: %s: the value holds control characters or bytes that "
            "are not UTF-8; shown escaped (\\xHH, \\\\) because standard output is a terminal: "
            "redirect or pipe it to get the raw bytes\n", name);
    fputs(esc, stdout);
    OPENSSL_cleanse(esc, strlen(esc));
    free(esc);
  } else {
    fwrite(v, 1, len, stdout);
  }
  fputc('\n', stdout);
  fflush(stdout);
  return HOST_OK;
}

static host_status secret_get(app *a, const char *name, kms_error *e, kms_status *st,
                              host_result *r) {
  kms_secret *s = NULL;
  if ((*st = kms_client_read(a->hp.client, name, &s, e)) != KMS_OK) return HOST_OK;
  if (KMS_SECRET_HAS(s, flags) && (s->flags & KMS_SECRET_STALE))
    fprintf(stderr, "kms-host: warning: %s: served from cache after a backend failure (stale)\n",
            name);
  host_status hs = print_value(name, s->value, s->length, r);
  kms_client_free_secret(a->hp.client, s);
  return hs;
}

static host_status secret_put(app *a, const char *name, kms_error *e, kms_status *st,
                              host_result *r) {
  char *v = NULL;
  size_t len = 0;
  /* One trailing newline may follow a value of SECRET_MAX bytes. */
  host_result rr = {HOST_OK, ""};
  if (host_read_all(stdin, SECRET_MAX + 2, "standard input", &v, &len, &rr) != HOST_OK)
    return host_fail(r, rr.status, "secret put %s: %s; a value is at most %u bytes (1 MiB)", name,
                     rr.msg, SECRET_MAX);
  size_t vlen = host_strip_newline(v, len);
  host_status hs = HOST_OK;
  if (vlen == 0)
    hs = host_fail(r, HOST_FAILED, "refusing to store an empty value for %s", name);
  else if (vlen > SECRET_MAX)
    hs = host_fail(r, HOST_FAILED, "the value for %s is %zu bytes; secret put stores at most %u "
                   "bytes (1 MiB)", name, vlen, SECRET_MAX);
  else if ((*st = kms_client_write(a->hp.client, name, v, vlen, NULL, e)) == KMS_OK)
    printf("stored: %s\n", name);
  OPENSSL_cleanse(v, len);
  free(v);
  return hs;
}

static host_status cmd_secret(app *a, int argc, char **argv, host_result *r) {
  if (argc < 1) return host_fail(r, HOST_USAGE, "secret needs get, put or delete");
  const char *sub = argv[0];
  int get = !strcmp(sub, "get"), put = !strcmp(sub, "put"), del = !strcmp(sub, "delete");
  if (!get && !put && !del) return host_fail(r, HOST_USAGE, "unknown secret command '%s'", sub);
  if (argc != 2) return host_fail(r, HOST_USAGE, "secret %s takes exactly one NAME", sub);
  const char *name = argv[1];
  if (open_plugin(a, 0, r) != HOST_OK) return r->status;
  kms_error e;
  kms_status st = KMS_OK;
  host_status hs = HOST_OK;
  if (get) hs = secret_get(a, name, &e, &st, r);
  else if (put) hs = secret_put(a, name, &e, &st, r);
  else if ((st = kms_client_delete(a->hp.client, name, &e)) == KMS_OK)
    printf("deleted: %s\n", name);
  if (hs != HOST_OK) return hs; /* the host's own error; else the plugin's status decides */
  if (st != KMS_OK)
    return host_fail(r, HOST_FAILED, "secret %s %s: %s (%s)", sub, name, e.message,
                     kms_status_str(st));
  return HOST_OK;
}

/* ------------------------------------------------------------------ resolve */

/* resolve.c reaches the plugin through these (it links without the loader). */
static kms_status resolve_read(void *ctx, const char *name, kms_secret **out, kms_error *err) {
  return kms_client_read((kms_client *)ctx, name, out, err);
}
static void resolve_release(void *ctx, kms_secret *s) { kms_client_free_secret((kms_client *)ctx, s); }
static void resolve_warn(const char *message) { host_log(KMS_LOG_WARN, "%s", message); }

static host_status cmd_resolve(app *a, int argc, char **argv, host_result *r) {
  if (argc) return host_fail(r, HOST_USAGE, "resolve takes no arguments (got '%s')", argv[0]);
  /* A configured plugin is always loaded, even with nothing to resolve: a
   * misspelt key_management_system must fail here, not at the first key. */
  int need_plugin = a->cfg.kms != NULL;
  for (size_t i = 0; i < a->cfg.n_refs; i++)
    need_plugin |= host_ref_uses_plugin(&a->cfg, a->cfg.refs[i].env_name);
  if (need_plugin && open_plugin(a, 0, r) != HOST_OK) return r->status;
  host_reader rd = {a->hp.client, a->cfg.kms, resolve_read, resolve_release, resolve_warn};
  return host_resolve_print(&a->cfg, a->hp.client ? &rd : NULL, stdout, r);
}

/* ---------------------------------------------------------------------- key */

typedef struct key_args {
  const char *sub;
  const char *alias;
  const char *key; /* "-": read from standard input */
  const char *team; /* generate --team T */
} key_args;

static host_status parse_key_args(int argc, char **argv, key_args *k, host_result *r) {
  memset(k, 0, sizeof *k);
  if (argc < 1) return host_fail(r, HOST_USAGE, "key needs a command");
  k->sub = argv[0];
  int gen = !strcmp(k->sub, "generate"), list = !strcmp(k->sub, "list");
  int by_key = !strcmp(k->sub, "delete") || !strcmp(k->sub, "regenerate");
  if (!gen && !list && !by_key) return host_fail(r, HOST_USAGE, "unknown key command '%s'", k->sub);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--alias") && i + 1 < argc && !list) k->alias = argv[++i];
    else if (!strncmp(argv[i], "--alias=", 8) && !list) k->alias = argv[i] + 8;
    else if (!strcmp(argv[i], "--key") && i + 1 < argc && by_key) k->key = argv[++i];
    else if (!strncmp(argv[i], "--key=", 6) && by_key) k->key = argv[i] + 6;
    else if (!strcmp(argv[i], "--team") && i + 1 < argc && gen) k->team = argv[++i];
    else if (!strncmp(argv[i], "--team=", 7) && gen) k->team = argv[i] + 7;
    else return host_fail(r, HOST_USAGE, "unexpected argument '%s'", argv[i]);
  }
  if (by_key && !!k->alias == !!k->key)
    return host_fail(r, HOST_USAGE, "key %s needs exactly one of --alias or --key", k->sub);
  return HOST_OK;
}

/* `--key -`: the key from one line of standard input, so it never shows in
 * ps or the shell's history. *buf is wiped and freed by the caller. */
static host_status key_from_stdin(char **buf, host_result *r) {
  size_t len = 0;
  if (host_read_all(stdin, KEY_INPUT_MAX, "the key on standard input (--key -)", buf, &len, r) !=
      HOST_OK)
    return r->status;
  len = host_strip_newline(*buf, len);
  (*buf)[len] = '\0'; /* host_read_all leaves a spare byte after the data */
  if (memchr(*buf, '\0', len) || !len)
    return host_fail(r, HOST_FAILED, "--key -: standard input holds no virtual key (expected "
                     "one line: sk-...)");
  return HOST_OK;
}

static void print_change(const host_key_change *c) {
  if (c->key[0]) printf("key: %s\nkey_id: %s\n", c->key, c->key_id);
  else printf("deleted: %s\n", c->key_id);
  printf("alias: %s\n", c->alias ? c->alias : "-");
  printf("secret_name: %s\n", c->secret_name ? c->secret_name
                              : c->key[0] ? "- (store_virtual_keys is off)" : "-");
  if (c->removed_secret) printf("removed_secret: %s\n", c->removed_secret);
  if (c->team_id) printf("team: %s\n", c->team_id);
  char loc[HOST_LOCATION_TEXT_MAX];
  if (c->location) printf("location: %s\n", host_location_describe(c->location, loc));
  fflush(stdout);
}

/* generate / delete / regenerate: commit, show, then deliver. */
static host_status key_change(app *a, const key_args *k, const char *key, host_result *r) {
  if (a->cfg.kms) {
    if (open_plugin(a, 1, r) != HOST_OK) return r->status;
  } else if (a->cfg.store_virtual_keys) {
    return host_fail(r, HOST_CONFIG, "%s: store_virtual_keys is true but general_settings."
                     "key_management_system is not set", a->cfg.path);
  }
  host_key_ctx ctx = {a->db, &a->cfg, a->hp.module ? kms_module_plugin(a->hp.module) : NULL,
                      a->hp.client};
  host_key_change c;
  host_status s = !strcmp(k->sub, "generate")
                      ? host_key_generate_team(&ctx, k->alias, NULL, k->team, &c, r)
                  : !strcmp(k->sub, "delete") ? host_key_delete(&ctx, k->alias, key, &c, r)
                                              : host_key_regenerate(&ctx, k->alias, key, &c, r);
  if (s != HOST_OK) return s;
  print_change(&c); /* before delivery: the key is the caller's even if delivery stalls */
  host_key_change_clear(&c);
  return host_outbox_deliver_after_commit(a->db, a->hp.client, r);
}

/* LOCATION is where the key's secret lives (teams.c: "default" or
 * "namespace=..., mount=..."), which may differ from its team's settings
 * today: a team's change never moves its keys. "-": no secret stored. */
static void list_key(void *ctx, const char *key_id, const char *alias, const char *name,
                     const char *team, const char *location, const char *updated) {
  (void)ctx;
  char buf[HOST_LOCATION_TEXT_MAX];
  printf("%-16s  %-20s  %-40s  %-16s  %-24s  %s\n", key_id, alias ? alias : "-",
         name ? name : "-", team ? team : "-", name ? host_location_describe(location, buf) : "-",
         updated);
}

static void list_queued(void *ctx, long long seq, const char *op, const char *name,
                        const char *location, int attempts, const char *last_error) {
  int *n = ctx;
  char buf[HOST_LOCATION_TEXT_MAX];
  if (!(*n)++) printf("\nqueued secret-manager operations (run `kms-host sync`):\n");
  printf("  #%lld %s %s at %s (attempts: %d%s%s)\n", seq, op, name,
         host_location_describe(location, buf), attempts, last_error ? "; last error: " : "",
         last_error ? last_error : "");
}

static host_status key_list(app *a, host_result *r) {
  int queued = 0;
  host_list_sink sink = {list_key, list_queued, &queued};
  printf("%-16s  %-20s  %-40s  %-16s  %-24s  %s\n", "KEY_ID", "ALIAS", "SECRET_NAME", "TEAM",
         "LOCATION", "UPDATED");
  return host_store_list(a->db, &sink, r);
}

static host_status cmd_key(app *a, int argc, char **argv, host_result *r) {
  key_args k;
  if (parse_key_args(argc, argv, &k, r) != HOST_OK) return r->status;
  if (!strcmp(k.sub, "list")) /* read-only: no delivery lock */
    return open_db(a, 0, r) == HOST_OK ? key_list(a, r) : r->status;
  /* --key -: read before taking the lock, so a slow writer does not hold it */
  char *stdin_key = NULL;
  const char *key = k.key;
  host_result kr = {HOST_OK, ""};
  host_status s = HOST_OK;
  if (key && !strcmp(key, "-") && (s = key_from_stdin(&stdin_key, &kr)) == HOST_OK)
    key = stdin_key;
  if (s == HOST_OK && (s = open_db(a, 1, &kr)) == HOST_OK) s = key_change(a, &k, key, &kr);
  if (stdin_key) {
    OPENSSL_cleanse(stdin_key, strlen(stdin_key));
    free(stdin_key);
  }
  if (s == HOST_OK) return HOST_OK;
  if (s == HOST_QUEUED || s == HOST_USAGE || s == HOST_CONFIG)
    return host_fail(r, s, "%s", kr.msg);
  return host_fail(r, s, "key %s: %s", k.sub, kr.msg);
}

/* --------------------------------------------------------------------- team */

/* team add|update T [--alias A] [--namespace N] [--mount M] [--path-prefix P]:
 * the flags become the team's secret-manager settings (teams.c checks the
 * values); update replaces them all. */
static host_status team_put(app *a, int argc, char **argv, int create, host_result *r) {
  if (argc < 2 || argv[1][0] == '-')
    return host_fail(r, HOST_USAGE, "team %s needs a team id", argv[0]);
  if (!host_team_id_valid(argv[1]))
    return host_fail(r, HOST_USAGE, "team id '%s' is not valid: 1 to %d letters, digits, '.', "
                     "'_' or '-', starting with a letter or digit", argv[1], HOST_TEAM_ID_MAX);
  static const char *const flags[] = {"--namespace", "--mount", "--path-prefix"};
  kms_setting pairs[8];
  size_t n = 0;
  const char *alias = NULL;
  for (int i = 2; i < argc; i++) {
    int f = -1;
    for (int j = 0; j < HOST_LOCATION_NKEYS; j++)
      if (!strcmp(argv[i], flags[j])) f = j;
    if (i + 1 >= argc || (f < 0 && strcmp(argv[i], "--alias")) || n >= 8)
      return host_fail(r, HOST_USAGE, "unexpected argument '%s'", argv[i]);
    if (f < 0) alias = argv[++i];
    else pairs[n++] = (kms_setting){host_location_keys[f], argv[++i]};
  }
  char *loc = NULL;
  if (host_location_from_pairs(pairs, n, "team settings", &loc, r) != HOST_OK) return r->status;
  host_status s = open_db(a, 0, r);
  if (s == HOST_OK) s = host_store_team_put(a->db, argv[1], alias, loc, create, r);
  char buf[HOST_LOCATION_TEXT_MAX];
  if (s == HOST_OK)
    printf("team: %s\nlocation: %s\n", argv[1], host_location_describe(loc, buf));
  free(loc);
  return s;
}

static void list_team(void *ctx, const host_team_row *t) {
  (void)ctx;
  char buf[HOST_LOCATION_TEXT_MAX];
  printf("%-24s  %-20s  %5ld  %s\n", t->team_id, t->team_alias ? t->team_alias : "-", t->keys,
         host_location_describe(t->location, buf));
}

static host_status cmd_team(app *a, int argc, char **argv, host_result *r) {
  if (argc < 1) return host_fail(r, HOST_USAGE, "team needs a command");
  if (!strcmp(argv[0], "add") || !strcmp(argv[0], "update"))
    return team_put(a, argc, argv, !strcmp(argv[0], "add"), r);
  if (!strcmp(argv[0], "list")) {
    if (argc > 1) return host_fail(r, HOST_USAGE, "unexpected argument '%s'", argv[1]);
    if (open_db(a, 0, r) != HOST_OK) return r->status;
    printf("%-24s  %-20s  %5s  %s\n", "TEAM_ID", "ALIAS", "KEYS", "LOCATION");
    return host_store_team_list(a->db, list_team, NULL, r);
  }
  if (!strcmp(argv[0], "remove")) {
    if (argc != 2) return host_fail(r, HOST_USAGE, "team remove takes one team id");
    if (open_db(a, 0, r) != HOST_OK ||
        host_store_team_remove(a->db, argv[1], r) != HOST_OK)
      return r->status;
    printf("removed: %s\n", argv[1]);
    return HOST_OK;
  }
  return host_fail(r, HOST_USAGE, "unknown team command '%s'", argv[0]);
}

/* --------------------------------------------------------- sync, refresh */

static host_status cmd_sync(app *a, int argc, char **argv, host_result *r) {
  if (argc) return host_fail(r, HOST_USAGE, "sync takes no arguments (got '%s')", argv[0]);
  if (open_db(a, 1, r) != HOST_OK) return r->status;
  if (a->cfg.kms && open_plugin(a, 1, r) != HOST_OK) return r->status;
  long before, left;
  if (host_store_pending(a->db, &before, r) != HOST_OK) return r->status;
  host_result d = {HOST_OK, ""};
  host_status s = host_outbox_deliver(a->db, a->hp.client, &left, &d);
  if (s == HOST_FAILED) return host_fail(r, HOST_FAILED, "%s", d.msg);
  printf("delivered: %ld\nqueued: %ld\n", before - left, left);
  if (s == HOST_QUEUED)
    return host_fail(r, HOST_QUEUED, "%ld operation(s) still queued: %s", left, d.msg);
  return HOST_OK;
}

static host_status cmd_refresh(app *a, int argc, char **argv, host_result *r) {
  if (argc) return host_fail(r, HOST_USAGE, "refresh takes no arguments (got '%s')", argv[0]);
  if (open_plugin(a, 0, r) != HOST_OK) return r->status;
  kms_error e;
  kms_status st = kms_client_refresh(a->hp.client, &e);
  if (st != KMS_OK)
    return host_fail(r, HOST_FAILED, "refresh: %s (%s)", e.message, kms_status_str(st));
  printf("refreshed: %s\n", a->cfg.kms);
  return HOST_OK;
}

/* -------------------------------------------------------------------- serve */

/* The HTTP API (serve*.c): the database without the delivery lock (the
 * server's worker takes it per delivery round) and a plugin that started. */
static host_status cmd_serve(app *a, int argc, char **argv, host_result *r) {
  if (open_db(a, 0, r) != HOST_OK) return r->status;
  if (a->cfg.kms && open_plugin(a, 0, r) != HOST_OK) return r->status;
  return host_serve(&a->cfg, &a->hp, a->db, a->db_path, argc, argv, r);
}

/* ------------------------------------------ health, watch, reconcile (1.1) */

/* cmd_health.c: an unreachable backend at create() is a report, not an error. */
static host_status cmd_health(app *a, int argc, char **argv, host_result *r) {
  int json;
  if (host_health_parse(argc, argv, &json, r) != HOST_OK) return r->status;
  host_status s = host_plugin_open(&a->cfg, a->dir, a->o.verbose, &a->hp, r);
  if (s != HOST_OK && !a->hp.backend_down) return s;
  char down[HOST_ERR_SIZE];
  snprintf(down, sizeof down, "%s", s == HOST_OK ? "" : r->msg);
  host_health_report rep;
  if (host_health_check(a->hp.client, a->cfg.kms, down, &rep, r) != HOST_OK ||
      host_health_print(&rep, json, stdout, r) != HOST_OK)
    return r->status;
  return rep.healthy ? HOST_OK : host_fail(r, HOST_FAILED, "%s is unhealthy: %s", a->cfg.kms,
                                           rep.reason);
}

/* watch.c: the notify sink lives until the instance (and its threads) is gone. */
static host_status cmd_watch(app *a, int argc, char **argv, host_result *r) {
  host_watch_args wa;
  kms_setting extra[1];
  size_t n_extra = 0;
  host_watch *w = NULL;
  if (host_watch_parse(argc, argv, &wa, r) != HOST_OK ||
      host_watch_settings(&a->cfg, extra, &n_extra, r) != HOST_OK ||
      host_watch_new(&w, r) != HOST_OK)
    return r->status;
  host_notify_set(host_watch_notify, w);
  host_status s = host_plugin_open_with(&a->cfg, a->dir, extra, n_extra, a->o.verbose, &a->hp, r);
  if (s == HOST_OK) s = host_watch_run(w, a->hp.client, &a->cfg, &wa, stdout, r);
  host_plugin_close(&a->hp);
  host_notify_set(NULL, NULL);
  host_watch_free(w);
  return s;
}

/* reconcile.c: repairs go through the outbox, so it holds the delivery lock. */
static host_status cmd_reconcile(app *a, int argc, char **argv, host_result *r) {
  host_reconcile_args ra;
  if (host_reconcile_parse(argc, argv, &ra, r) != HOST_OK) return r->status;
  if (open_db(a, 1, r) != HOST_OK) return r->status;
  host_status s = host_plugin_open(&a->cfg, a->dir, a->o.verbose, &a->hp, r);
  if (s == HOST_FAILED && a->hp.backend_down) return host_fail(r, HOST_BACKEND, "%s", r->msg);
  if (s != HOST_OK) return s;
  return host_reconcile_run(a->db, &a->cfg, a->hp.client, &ra, stdout, r);
}

/* ------------------------------------------------------------ the table */

static const char usage_plugins[] =
    "usage: kms-host [--config FILE] [--plugin-dir DIR] plugins\n"
    "List every <name>.so in the plugin directory with its version, ABI version and\n"
    "capabilities. With --config, the configured plugin is marked with '*' and the\n"
    "command fails (exit 3) if it is not there.\n";
static const char usage_secret[] =
    "usage: kms-host --config FILE secret (get|put|delete) NAME\n"
    "  get NAME     print the value of NAME (read through the plugin) and a newline;\n"
    "               to a terminal, control characters are shown escaped (\\xHH)\n"
    "  put NAME     store standard input as NAME; one trailing newline is stripped;\n"
    "               an empty value is refused; at most 1 MiB (1048576 bytes)\n"
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
    "  generate [--alias A] [--team T]        create a virtual key; it is printed once\n"
    "  delete (--alias A | --key sk-...)      delete a virtual key\n"
    "  regenerate (--alias A | --key sk-...)  replace a key's value (same id and alias)\n"
    "  list                                   list keys (id, alias, secret name) and queued work\n"
    "--key - reads the key from one line of standard input (it then never shows in ps).\n"
    "With store_virtual_keys: true the key is stored as prefix_for_stored_virtual_keys +\n"
    "(alias or virtual-key-<id>) through the plugin. The store operation is saved in the\n"
    "same transaction as the key change and delivered afterwards; if the store is down\n"
    "the change is kept, the work stays queued and the exit status is 4 (run `sync`).\n"
    "generate, delete and regenerate take the delivery lock (see --lock-timeout).\n";
static const char usage_team[] =
    "usage: kms-host --config FILE team COMMAND\n"
    "  add T [--alias A] [--namespace N] [--mount M] [--path-prefix P]\n"
    "                     create team T with these secret-manager settings (where its\n"
    "                     keys are stored; the plugin's location options, e.g. a Vault\n"
    "                     namespace, KV mount and path prefix; none: the default place)\n"
    "  update T [...]     replace T's alias and settings with the ones given; keys made\n"
    "                     before keep their location (delete/regenerate go there)\n"
    "  list               teams, their key counts and settings\n"
    "  remove T           remove T; refused while keys generated for it exist\n"
    "`key generate --team T` stores the key in T's location (LiteLLM's team_id and\n"
    "metadata.secret_manager_settings).\n";
static const char usage_sync[] =
    "usage: kms-host --config FILE sync\n"
    "Deliver queued secret-manager operations in order. Exit 0 when none are left,\n"
    "4 when some are still queued.\n";
static const char usage_refresh[] =
    "usage: kms-host --config FILE refresh\n"
    "Ask the plugin to revalidate its credentials and re-read cached secrets now.\n";

static const char usage_health[] =
    "usage: kms-host --config FILE health [--json]\n"
    "Probe the secret manager through the plugin's refresh (credentials checked now), then\n"
    "print the plugin's health: reachable, authenticated, token time left, cache entries,\n"
    "hits, misses, negative hits, stale serves, fetches, logins, renewals, errors by status\n"
    "and the last error (never a secret). --json prints one JSON object instead.\n"
    "Exit 0 healthy; 1 unhealthy (unreachable, sealed, credential refused: the reason is\n"
    "printed); 5 the plugin has no health slot (built against ABI 1.0).\n";
static const char usage_watch[] =
    "usage: kms-host --config FILE watch [--count N] [--timeout S] [NAME...]\n"
    "Print the plugin's change notifications as they come, one line each:\n"
    "  updated NAME version=V   a new version (a rotation)\n"
    "  deleted NAME             the secret is gone\n"
    "never a value. Watches the NAMEs given, else every os.environ/ reference of the config\n"
    "read through the plugin; each is read once at the start (a 'watching' line) so the\n"
    "plugin holds it. Changes are seen when the plugin re-reads: watch turns on\n"
    "key_management_settings.background_refresh for its own instance unless the config\n"
    "sets it (false is refused); hashicorp_vault re-reads at 75-90% of\n"
    "HCP_VAULT_REFRESH_INTERVAL, aws_secret_manager of its refresh_interval setting\n"
    "(seconds; 0 = no cache, refused here).\n"
    "  --count N     exit 0 after N changes (exit 1 if --timeout ends first)\n"
    "  --timeout S   stop after S seconds\n"
    "SIGINT or SIGTERM stop it cleanly (exit 0). Exit 5: the plugin does not notify.\n";
static const char usage_reconcile[] =
    "usage: kms-host --config FILE reconcile [--delete-orphans] [--json]\n"
    "List the secrets under prefix_for_stored_virtual_keys through the plugin in every\n"
    "location a key can live in (the default one, each team's current one, each location\n"
    "stored on a key or a queued operation) and compare them with the keys stored there:\n"
    "orphans (no key owns the name in that location), keys whose secret is missing from\n"
    "their location, and queued outbox operations; each finding names its location. A\n"
    "missing secret whose write is still queued, and an orphan whose delete is queued, are\n"
    "delivered now. --delete-orphans queues a delete for each orphan at its location in the\n"
    "outbox, unless a key owns the name there by then (checked in the same transaction),\n"
    "and delivers it (never a direct delete). A missing secret with no queued write\n"
    "cannot be recreated (only the key's hash is stored): it is reported with the fix,\n"
    "`kms-host key regenerate`. Takes the delivery lock.\n"
    "Exit 0 consistent (or repaired now); 1 differences remain; 3 config, plugin or\n"
    "database; 4 repairs queued (run `sync`); 5 the plugin cannot list (ABI 1.0);\n"
    "6 the secret manager could not be listed or read (nothing was changed).\n";


static const char usage_serve[] =
    "usage: kms-host --config FILE serve [--listen ADDR:PORT] [--threads N]\n"
    "                                    [--deliver-wait-ms MS] [--client-timeout S]\n"
    "                                    [--tls-cert PEM --tls-key PEM]\n"
    "Answer LiteLLM's virtual-key API over HTTP: POST /key/generate, /key/delete,\n"
    "/key/update, /key/regenerate, /key/{key}/regenerate; GET /key/info, /key/list,\n"
    "/health/liveliness, /health/readiness; teams: POST /team/new, /team/update,\n"
    "/team/delete, GET /team/info, /team/list. Callers send general_settings.master_key as\n"
    "'Authorization: Bearer KEY' or 'x-litellm-api-key: KEY'. Key changes are committed\n"
    "with their outbox rows, then delivered by a background worker; a reply waits at most\n"
    "--deliver-wait-ms (default 5000) and says whether the store side landed or is queued.\n"
    "  --listen ADDR:PORT   IPv4 address and port (default 127.0.0.1:4000; port 0 picks one)\n"
    "  --threads N          request threads (default 4)\n"
    "  --client-timeout S   close a connection idle or stalled for S seconds (default 30)\n"
    "  --tls-cert, --tls-key  serve HTTPS with this PEM certificate (chain) and key\n"
    "Prints 'listening: http://ADDR:PORT' once ready; SIGTERM or SIGINT finish in-flight\n"
    "requests, stop the worker and exit 0. An access line per request goes to stderr.\n";

static const command commands[] = {
  {"plugins", "  plugins                      list the plugins in the plugin directory\n",
   usage_plugins, 0, cmd_plugins},
  {"secret", "  secret get NAME              print a secret read through the plugin\n"
             "  secret put NAME              store stdin (one trailing newline stripped) as NAME\n"
             "  secret delete NAME           delete NAME\n",
   usage_secret, 1, cmd_secret},
  {"resolve",
   "  resolve                      resolve every os.environ/ reference in the config\n",
   usage_resolve, 1, cmd_resolve},
  {"key", "  key generate [--alias A] [--team T]  create a virtual key (printed once)\n"
          "  key delete (--alias A | --key sk-... | --key -)\n"
          "  key regenerate (--alias A | --key sk-... | --key -)\n"
          "  key list                     list virtual keys (never the keys), their team and\n"
          "                               location, and queued work\n",
   usage_key, 1, cmd_key},
  {"team", "  team add|update T [--namespace N] [--mount M] [--path-prefix P]\n"
           "  team list | team remove T    teams and where their keys are stored\n",
   usage_team, 1, cmd_team},
  {"sync", "  sync                         deliver queued secret-manager operations\n",
   usage_sync, 1, cmd_sync},
  {"refresh",
   "  refresh                      ask the plugin to revalidate credentials and caches\n",
   usage_refresh, 1, cmd_refresh},
  {"serve", "  serve [--listen ADDR:PORT]   answer LiteLLM's /key/* HTTP API\n", usage_serve, 1,
   cmd_serve},
  {"health", "  health [--json]              probe the secret manager, print the plugin's health\n",
   usage_health, 1, cmd_health},
  {"watch", "  watch [--count N] [--timeout S] [NAME...]\n"
            "                               print secret changes (rotations) as they come\n",
   usage_watch, 1, cmd_watch},
  {"reconcile",
   "  reconcile [--delete-orphans] [--json]\n"
   "                               compare the secret manager with the key table\n",
   usage_reconcile, 1, cmd_reconcile},
};

static const command *find_command(const char *name) {
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    if (!strcmp(commands[i].name, name)) return &commands[i];
  return NULL;
}

static void print_main_usage(FILE *f) {
  fputs("usage: kms-host [--config FILE] [--plugin-dir DIR] [--db PATH] [-v]\n"
        "                [--lock-timeout SECONDS] [--allow-debugging] COMMAND [ARGS]\n"
        "\n"
        "A reference gateway host for kmsplug: reads a LiteLLM-shaped config.yaml, loads the\n"
        "secret-manager plugin named by general_settings.key_management_system, and runs the\n"
        "virtual-key hooks with a durable outbox.\n\ncommands:\n", f);
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) fputs(commands[i].summary, f);
  fputs("\noptions:\n"
        "  --config FILE      the config (required by every command but `plugins`)\n"
        "  --plugin-dir DIR   plugin directory; else general_settings.plugin_dir, else\n"
        "                     $KMS_PLUGIN_PATH, else the installed default\n"
        "  --db PATH          virtual-key database; else general_settings.kms_db_path, else\n"
        "                     kms-host.db next to the config\n"
        "  -v, --verbose      show the plugin's debug log\n"
        "  --lock-timeout S   how long key changes and sync wait for the delivery lock\n"
        "                     (seconds, 0-86400; else $KMS_HOST_LOCK_TIMEOUT, else 30)\n"
        "  --allow-debugging  keep core dumps and debugger attach enabled (they are off\n"
        "                     because memory holds secrets); for debugging kms-host only\n"
        "\n"
        "exit status: 0 ok; 1 failed; 2 bad command line; 3 bad config, plugin or database;\n"
        "4 the key change is saved but secret-manager work is still queued (run `sync`);\n"
        "5 the plugin lacks the ABI 1.1 slot the command needs; 6 the secret manager failed a\n"
        "call reconcile needs.\n"
        "Run `kms-host COMMAND --help` for a command's details.\n", f);
}

/* ------------------------------------------------------------ main */

static int exit_status(host_status s) {
  switch (s) {
  case HOST_OK: return 0;
  case HOST_FAILED: return 1;
  case HOST_USAGE: return 2;
  case HOST_CONFIG: return 3;
  case HOST_QUEUED: return 4;
  case HOST_UNSUPPORTED: return 5;
  case HOST_BACKEND: return 6;
  }
  return 1;
}

/* The global options before COMMAND; returns the index of COMMAND. */
static host_status parse_globals(int argc, char **argv, opts *o, int *next, host_result *r) {
  int i = 1;
  for (; i < argc; i++) {
    const char *s = argv[i];
    static const struct { const char *name; size_t off; } valued[] = {
      {"--config", offsetof(opts, config)}, {"--plugin-dir", offsetof(opts, plugin_dir)},
      {"--db", offsetof(opts, db)}, {"--lock-timeout", offsetof(opts, lock_timeout)}};
    int matched = 0;
    for (size_t v = 0; v < sizeof valued / sizeof *valued && !matched; v++) {
      size_t n = strlen(valued[v].name);
      const char **dst = (const char **)((char *)o + valued[v].off);
      if (!strcmp(s, valued[v].name)) {
        if (i + 1 >= argc) return host_fail(r, HOST_USAGE, "%s needs a value", s);
        *dst = argv[++i];
        matched = 1;
      } else if (!strncmp(s, valued[v].name, n) && s[n] == '=') {
        *dst = s + n + 1;
        matched = 1;
      }
    }
    if (matched) continue;
    if (!strcmp(s, "-v") || !strcmp(s, "--verbose")) o->verbose = 1;
    else if (!strcmp(s, "--allow-debugging")) o->allow_debugging = 1;
    else if (s[0] == '-' && !is_help(s)) return host_fail(r, HOST_USAGE, "unknown option '%s'", s);
    else break;
  }
  *next = i;
  return HOST_OK;
}

/* Seconds (a decimal integer, 0..LOCK_TIMEOUT_MAX) to milliseconds. */
static host_status parse_lock_timeout(const char *s, const char *origin, host_status bad,
                                      unsigned *ms, host_result *r) {
  if (!s) {
    *ms = LOCK_TIMEOUT_DEFAULT * 1000u;
    return HOST_OK;
  }
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (!*s || *s < '0' || *s > '9' || *end || errno || v > LOCK_TIMEOUT_MAX)
    return host_fail(r, bad, "%s: '%s' is not a number of seconds from 0 to %d", origin,
                     s, LOCK_TIMEOUT_MAX);
  *ms = (unsigned)v * 1000u;
  return HOST_OK;
}

/* Load what the command needs, then run it. */
static host_status dispatch(app *a, const command *c, int argc, char **argv, host_result *r) {
  if (!a->o.config && c->needs_config)
    return host_fail(r, HOST_USAGE, "%s needs --config FILE", c->name);
  (void)host_services(a->o.verbose);
  if (a->o.config) {
    if (host_config_load(a->o.config, &a->cfg, r) != HOST_OK) return r->status;
    a->have_cfg = 1;
  }
  a->dir = host_plugin_dir(a->o.plugin_dir, a->have_cfg ? &a->cfg : NULL);
  return c->run(a, argc, argv, r);
}

/* Print the outcome: errors and warnings on stderr, a usage error with the
 * usage text it concerns. */
static void report(const host_result *r, const command *c) {
  if (r->status == HOST_OK || !r->msg[0]) return;
  if (r->status == HOST_USAGE) {
    fprintf(stderr, "kms-host: %s\n", r->msg);
    if (c) fputs(c->usage, stderr);
    else print_main_usage(stderr);
    return;
  }
  fprintf(stderr, "kms-host: %s: %s\n", r->status == HOST_QUEUED ? "warning" : "error", r->msg);
}

static host_status run(int argc, char **argv, app *a, host_result *r, const command **cmd) {
  int i = 1;
  if (parse_globals(argc, argv, &a->o, &i, r) != HOST_OK) return r->status;
  if (host_harden(a->o.allow_debugging, r) != HOST_OK) return r->status;
  if (i < argc && (is_help(argv[i]) || !strcmp(argv[i], "help"))) {
    print_main_usage(stdout);
    return HOST_OK;
  }
  if (i >= argc) return host_fail(r, HOST_USAGE, "a COMMAND is needed");
  const command *c = find_command(argv[i]);
  if (!c) return host_fail(r, HOST_USAGE, "unknown command '%s'", argv[i]);
  for (int j = i + 1; j < argc; j++)
    if (is_help(argv[j])) { /* --help never needs a config */
      fputs(c->usage, stdout);
      return HOST_OK;
    }
  host_status s = a->o.lock_timeout
      ? parse_lock_timeout(a->o.lock_timeout, "--lock-timeout", HOST_USAGE, &a->lock_timeout_ms, r)
      : parse_lock_timeout(getenv("KMS_HOST_LOCK_TIMEOUT"), "KMS_HOST_LOCK_TIMEOUT", HOST_CONFIG,
                           &a->lock_timeout_ms, r);
  if (s != HOST_OK) return s;
  *cmd = c; /* from here a usage error shows the command's usage */
  return dispatch(a, c, argc - i - 1, argv + i + 1, r);
}

int main(int argc, char **argv) {
  app a;
  memset(&a, 0, sizeof a);
  a.lock_fd = -1;
  host_result r = {HOST_OK, ""};
  const command *c = NULL;
  r.status = run(argc, argv, &a, &r, &c);
  app_close(&a);
  int rc = exit_status(r.status);
  if (fflush(stdout) != 0 && rc == 0) {
    r.status = HOST_FAILED;
    snprintf(r.msg, sizeof r.msg, "cannot write standard output");
    rc = 1;
  }
  report(&r, c);
  return rc;
}
