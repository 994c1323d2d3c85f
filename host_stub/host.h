/*
 * host.h -- internal interfaces of the reference host kms-host (not installed).
 *
 * The host is split by job: config.c (YAML -> host_config), resolve.c
 * (os.environ/ references, redaction), keys.c (virtual keys), teams.c (teams
 * and the locations of their keys), store.c (the
 * storage interface; store.h) over store_sqlite.c + db.c (the SQLite file:
 * privacy checks, journal wiping, migrations) and store_pg.c + db_pg.c
 * (PostgreSQL for many replicas), outbox.c (delivering the durable
 * secret-manager queue),
 * lock.c (the delivery lock), harden.c (core dumps, ptrace), io.c (stdin,
 * terminal-safe output), plugin.c (loading the configured plugin through
 * libkmsloader), result.c (the result type and the clock) and main.c (the
 * command table; the only file that prints or chooses an exit status).
 *
 * Threads: the CLI calls everything here from its main thread; only
 * host_log (and the kms_host table's log and notify) may be called from
 * plugin threads. The ABI 1.1 commands health, watch and reconcile live in
 * cmd_health.c, watch.c and reconcile.c (hostcmds.h).
 * `serve` (serve.h) calls host_key_* and host_store_* from its request
 * threads on one connection under one mutex, and delivers on its worker's
 * own connection: a connection is never used by two threads at once.
 */
#ifndef KMS_HOST_H
#define KMS_HOST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "kms_loader.h"

typedef struct sqlite3 sqlite3;
/* A connection to the host's store: SQLite or PostgreSQL (store.h). */
typedef struct host_db host_db;

/* ------------------------------------------------------------------ result.c */

/* The host's one error convention, in every layer (config.c and resolve.c
 * included): a function that can fail returns a host_status and, when it is
 * not HOST_OK, fills a host_result with the same status and a message naming
 * what went wrong and what to do. Library code never prints and never exits; main.c alone maps a
 * status to an exit code (README.md's table) and prints the message. */
typedef enum host_status {
  HOST_OK = 0,     /* done */
  HOST_FAILED,     /* failed; nothing was changed unless the message says so */
  HOST_USAGE,      /* bad command line */
  HOST_CONFIG,     /* bad or unusable config, plugin or database */
  HOST_QUEUED,     /* the key change is saved, secret-manager work is still
                      queued in the outbox: run `kms-host sync` */
  HOST_UNSUPPORTED, /* the plugin lacks the (ABI 1.1) slot the command needs */
  HOST_BACKEND     /* the secret manager failed a call the command cannot do
                      without (reconcile's listing): nothing was compared */
} host_status;

/* Error text buffers throughout the host. */
#define HOST_ERR_SIZE 512

typedef struct host_result {
  host_status status;
  char msg[HOST_ERR_SIZE];
} host_result;

/* Set `r` (status and printf-style message) and return `status`. */
host_status host_fail(host_result *r, host_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* An injectable clock (milliseconds), so waits are testable without
 * sleeping. host_clock_system() is the real monotonic clock. */
typedef struct host_clock {
  uint64_t (*now_ms)(void *ctx);
  void (*sleep_ms)(void *ctx, unsigned ms);
  void *ctx;
} host_clock;
const host_clock *host_clock_system(void);

/* ------------------------------------------------------------------ config.c */

/* One setting under general_settings.key_management_settings, as a string. */
typedef struct host_setting {
  char *key;
  char *value;
  int line;
} host_setting;

/* One `os.environ/NAME` reference. LiteLLM resolves every string value of
 * every mapping in the config (mappings inside lists included, strings that
 * are list items not), so references live anywhere: model_list,
 * general_settings (master_key, database_url, ...), litellm_settings,
 * router_settings, credential_list, environment_variables, ... */
typedef struct host_ref {
  size_t model_index; /* position in model_list, or HOST_REF_NO_MODEL */
  char *model_name;   /* model_list[i].model_name, or "" */
  char *param;        /* the key holding the value, e.g. api_key */
  char *value;        /* the raw value, e.g. os.environ/OPENAI_API_KEY */
  char *env_name;     /* the secret name LiteLLM would look up: OPENAI_API_KEY */
  char *path;         /* dotted location, e.g. general_settings.master_key */
  int line;
  int at_load;        /* resolved from the environment while the config loads
                         (key_management_settings, environment_variables: they
                         configure the plugin, so they cannot come from it) */
} host_ref;

#define HOST_REF_NO_MODEL ((size_t)-1)

/* One entry of the top-level environment_variables mapping. */
typedef struct host_env_var {
  char *name;
  char *value; /* resolved; wiped on free */
  int line;
} host_env_var;

/* general_settings.kms_env_fallback: what happens when the plugin has no
 * value for a reference (or fails). LiteLLM falls back to the environment
 * on any failure; kms-host does the same by default, with a warning each
 * time, and can narrow or turn it off. */
typedef enum host_fallback {
  HOST_FALLBACK_ANY = 0,   /* any failure (LiteLLM's get_secret) */
  HOST_FALLBACK_NOT_FOUND, /* only when the store says NOT_FOUND or the value is empty */
  HOST_FALLBACK_OFF        /* never: the plugin's answer is final */
} host_fallback;

typedef enum host_access_mode {
  HOST_ACCESS_UNSET = 0, /* not in the config: LiteLLM's default, read_only */
  HOST_ACCESS_READ_ONLY,
  HOST_ACCESS_WRITE_ONLY,
  HOST_ACCESS_READ_AND_WRITE
} host_access_mode;

typedef struct host_config {
  char *path;           /* the file as given */
  char *dir;            /* its directory: relative paths in it resolve here */
  char *kms;            /* the plugin to load for general_settings.key_management_system
                           (LiteLLM's `local` maps to `env`), or NULL */
  char *kms_written;    /* key_management_system as written in the file, or NULL */
  int kms_line;
  char *plugin_dir;     /* general_settings.plugin_dir (resolved), or NULL */
  char *db_path;        /* general_settings.kms_db_path (resolved), or NULL */
  char *master_key;     /* general_settings.master_key as written (a literal or an
                           os.environ/ reference; `serve` resolves it), or NULL */
  char *database_url;   /* general_settings.database_url as written (an os.environ/
                           reference is resolved when the store opens; may hold a
                           password: wiped on free), or NULL */
  host_setting *settings; /* every scalar of key_management_settings */
  size_t n_settings;
  int store_virtual_keys;        /* default 0 */
  char *prefix;                  /* prefix_for_stored_virtual_keys, ends with '/' */
  host_access_mode access_mode;
  char **hosted_keys;            /* NULL when unset (then every key is hosted) */
  size_t n_hosted_keys;
  int hosted_keys_set;
  int access_mode_implied;       /* store_virtual_keys without access_mode: the
                                    host passes read_and_write (LiteLLM's hooks
                                    write whatever access_mode says) */
  host_fallback fallback;        /* general_settings.kms_env_fallback */
  host_env_var *env_vars;        /* top-level environment_variables, in order */
  size_t n_env_vars;
  host_ref *refs;
  size_t n_refs;
  int key_generation_settings;   /* litellm_settings.key_generation_settings is set:
                                    serve's /key/generate refuses an unknown team_id
                                    (400), as LiteLLM does then */
} host_config;

/* Parse YAML text. `name` names the file in messages, `base_dir` resolves
 * relative paths. HOST_OK, or HOST_CONFIG with `r` naming file:line and the
 * key (cfg is then zeroed).
 * References inside key_management_settings and environment_variables are
 * resolved here, from environment_variables first and then the process
 * environment (read only: nothing is set). Not thread-safe against setenv. */
host_status host_config_parse(const char *text, size_t len, const char *name,
                              const char *base_dir, host_config *cfg, host_result *r);
/* Read and parse a file, then export its environment_variables into the
 * process environment (setenv, overriding, as LiteLLM does) so the plugin and
 * everything after see them. Call before any thread starts. HOST_OK or
 * HOST_CONFIG (with `r`). */
host_status host_config_load(const char *path, host_config *cfg, host_result *r);
void host_config_free(host_config *cfg);

/* prefix_for_stored_virtual_keys: validated and given a trailing '/'.
 * HOST_OK with *out a malloc'ed string, or HOST_CONFIG (*out NULL) with `r`
 * saying what is wrong with it (without the value: the caller adds it). */
host_status host_prefix_normalise(const char *prefix, char **out, host_result *r);

/* 1 if `s` spells a YAML 1.1 boolean (true/false/yes/no/on/off, any case
 * of those LiteLLM/PyYAML/pydantic accept, and 1/0); *out set. Else 0. */
int host_parse_bool(const char *s, int *out);

/* ----------------------------------------------------------------- resolve.c */

/* LiteLLM's rule: a string value that starts with "os.environ/" is a
 * reference, and the secret name is the value with every "os.environ/"
 * removed (Python's str.replace). HOST_OK with *name a malloc'ed name
 * (possibly empty: the caller reports that) when `value` is a reference,
 * HOST_OK with *name NULL when it is not; HOST_FAILED (out of memory). */
host_status host_env_ref_name(const char *value, char **name, host_result *r);

/* Whether a reference named `name` is read through the plugin (1) or from
 * the process environment (0): LiteLLM reads through the secret manager only
 * when one is configured, access_mode is not write_only, and hosted_keys is
 * unset or contains the name. */
int host_ref_uses_plugin(const host_config *cfg, const char *name);

/* A redacted rendering of a secret: never the whole value. Short values are
 * fully masked; longer ones show their first 3 characters. */
void host_redact(const char *value, size_t len, char *buf, size_t size);

/* An environment variable as the config's references see it: the config's
 * environment_variables first (LiteLLM exports them before the secret
 * manager starts), then the process environment. NULL when unset. */
const char *host_env_lookup(const host_config *cfg, const char *name);

/* How resolve.c reaches the plugin without linking the loader (the config
 * fuzzer links resolve.c alone): kms-host fills it from its kms_client. */
typedef struct host_reader {
  void *ctx;
  const char *name; /* the plugin's name, for messages */
  kms_status (*read)(void *ctx, const char *secret, kms_secret **out, kms_error *err);
  void (*release)(void *ctx, kms_secret *s);
  void (*warn)(const char *message); /* one whole line, no secret in it */
} host_reader;

/* One reference resolved. `value` is malloc'ed and wiped by
 * host_resolved_clear; NULL on failure. */
typedef struct host_resolved {
  char *value;
  size_t length;
  char source[96]; /* "environment", the plugin's name, "environment, fallback from ..." */
  int stale;
} host_resolved;

/* Resolve `r` as LiteLLM's get_secret does: through the plugin when
 * host_ref_uses_plugin says so, else from the environment; when the plugin
 * has no value or fails, fall back to the environment as cfg->fallback
 * allows, with a warning through reader->warn naming the reference and the
 * reason. An empty value is never a resolved secret. `reader` may be NULL
 * when no plugin is loaded. HOST_OK, or HOST_FAILED with `r` saying why
 * (the reference's location is the caller's to add). */
host_status host_resolve_ref(const host_config *cfg, const host_reader *reader,
                             const host_ref *ref, host_resolved *out, host_result *r);
void host_resolved_clear(host_resolved *out);

/* The `resolve` command: every reference in the config with a redacted
 * value or the error, one line each, to `out`. HOST_OK, or HOST_FAILED
 * (with `r`) when any failed. */
host_status host_resolve_print(const host_config *cfg, const host_reader *reader, FILE *out,
                               host_result *r);

/* ----------------------------------------------------------------- plugin.c */

typedef struct host_plugin {
  kms_module *module;
  kms_client *client;
  int backend_down; /* create() said UNAVAILABLE: module loaded, client NULL */
} host_plugin;

/* The plugin directory: --plugin-dir, else the config's plugin_dir, else
 * KMS_PLUGIN_PATH, else the installed default. */
const char *host_plugin_dir(const char *cli_dir, const host_config *cfg);
/* Load cfg->kms from `dir` and create an instance with the settings.
 * HOST_OK; HOST_CONFIG when it cannot be loaded or refused its settings (an
 * unknown name lists the plugins found); HOST_FAILED with hp->backend_down
 * set when create() said the backend is UNAVAILABLE (the module stays
 * loaded, hp->client is NULL: key changes can still be committed and
 * queued). */
host_status host_plugin_open(const host_config *cfg, const char *dir, int verbose,
                             host_plugin *hp, host_result *r);
/* The same with `extra` settings appended to key_management_settings (a
 * command's own, e.g. watch turning on background_refresh). */
host_status host_plugin_open_with(const host_config *cfg, const char *dir,
                                  const kms_setting *extra, size_t n_extra, int verbose,
                                  host_plugin *hp, host_result *r);
void host_plugin_close(host_plugin *hp);
/* Where the kms_host table's notify sends a plugin's change (kms_change):
 * `fn(ctx, change)` runs on plugin threads, never under a plugin lock, and
 * must be thread-safe and quick (watch.c queues). Set it before
 * host_plugin_open and clear it (NULL) after host_plugin_close; without a
 * sink changes are dropped. Thread-safe. */
typedef void (*host_notify_fn)(void *ctx, const kms_change *change);
void host_notify_set(host_notify_fn fn, void *ctx);
/* The kms_host table (log to stderr, process environment). */
const kms_host *host_services(int verbose);
/* The host's log line (stderr, one whole line, thread-safe). For warnings
 * that do not end a command; errors travel in a host_result. */
void host_log(kms_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ----------------------------------------------------------------- harden.c */

/* Process hardening, first thing in main: umask 077 (every file the host
 * or SQLite creates -- database, journal, lock -- is private), and unless
 * `allow_debugging`: no core dumps (RLIMIT_CORE 0) and no ptrace attach or
 * /proc/<pid>/mem reads by other processes of the same user
 * (PR_SET_DUMPABLE 0). Not thread-safe: call before any thread starts. */
host_status host_harden(int allow_debugging, host_result *r);

/* --------------------------------------------------------------------- io.c */

/* Read `f` to its end into a malloc'ed buffer of at most `max` bytes (one
 * more is an error naming the limit and `what`), with at least one spare
 * byte after the data. Old buffers are wiped when it grows; the caller
 * wipes and frees the result. */
host_status host_read_all(FILE *f, size_t max, const char *what, char **buf, size_t *len,
                          host_result *r);
/* The length of `s` without one trailing "\n" or "\r\n". */
size_t host_strip_newline(const char *s, size_t len);
/* 1 if writing `s` raw to a terminal could be read by it as a command:
 * C0 controls other than \n and \t (ESC, CR, ...), DEL, C1 controls and
 * bytes that are not UTF-8. */
int host_text_unsafe_for_terminal(const char *s, size_t len);
/* A malloc'ed, NUL-terminated copy of `s` safe for a terminal: what
 * host_text_unsafe_for_terminal flags becomes \xHH and '\' becomes "\\". */
char *host_text_escape(const char *s, size_t len);

/* --------------------------------------------------------------------- db.c */

/* The schema version this binary writes (PRAGMA user_version). */
#define HOST_SCHEMA_VERSION 2 /* 2: teams, locations of keys and outbox rows */

/* One step of the schema's history: the SQL that takes a database from
 * version-1 to `version`. Steps are applied in order, each in its own
 * transaction together with the new user_version. */
typedef struct host_migration {
  int version;
  const char *sql;
} host_migration;

/* Refuse a file that others could read or change: `st` (of the file as
 * opened) must be a regular file owned by this user, with no group/other
 * permission. `what` names it in the message ("database", ...). HOST_OK or
 * HOST_CONFIG naming the path and the fix. */
host_status host_file_private(const char *what, const char *path, const struct stat *st,
                              host_result *r);
/* Open (creating, mode 0600) the SQLite host database after checking it, its
 * directory and any journal beside it are private (HOST_CONFIG otherwise),
 * with secure_delete, a journal that is zeroed before it is deleted, and
 * the schema migrated to HOST_SCHEMA_VERSION (a newer schema: HOST_CONFIG).
 * The connection is used by one thread at a time. */
host_status host_db_open(const char *path, host_db **db, host_result *r);
/* 1 if `target` is a PostgreSQL URL (postgres:// or postgresql://). */
int host_db_is_url(const char *target);
/* Open the store `target` names: a PostgreSQL URL (host_db_open_pg) or a
 * SQLite path (host_db_open). */
host_status host_store_open(const char *target, host_db **db, host_result *r);
/* Connect to PostgreSQL (libpq: the URL's sslmode and other parameters pass
 * through; the password comes from the URL, PGPASSWORD or ~/.pgpass and is
 * never put in a message), set the statement timeout and migrate the schema
 * under an advisory lock (a newer schema: HOST_CONFIG). One thread at a
 * time per connection. */
host_status host_db_open_pg(const char *url, host_db **db, host_result *r);
void host_db_close(host_db *db);
/* "sqlite" or "postgresql". */
const char *host_db_kind(const host_db *db);
/* The SQLite connection behind `db`, or NULL on PostgreSQL (tests). */
sqlite3 *host_db_sqlite(host_db *db);
/* The delivery lock for commands that change keys or deliver: on SQLite
 * the flock on <target>.lock (lock.c, *fd set); on PostgreSQL an advisory
 * lock of this session (*fd stays -1; released when the connection closes),
 * since a file lock cannot span machines. Same bounded wait and messages. */
host_status host_db_lock(host_db *db, const char *target, unsigned timeout_ms,
                         const host_clock *clock, int *fd, host_result *r);
/* A small pool of connections to one store, for a multi-threaded host
 * (pool.c): the first is opened here (errors surface at start), the others
 * on demand up to `size`; take blocks while all are busy. take/give are
 * thread-safe; open/close are not. Close only when every one is given back. */
typedef struct host_db_pool host_db_pool;
host_status host_db_pool_open(const char *target, unsigned size, host_db_pool **pool,
                              host_result *r);
host_status host_db_pool_take(host_db_pool *pool, host_db **db, host_result *r);
void host_db_pool_give(host_db_pool *pool, host_db *db);
void host_db_pool_close(host_db_pool *pool);
/* SQLite only (db.c, store_sqlite.c, tests). Run SQL without results. */
host_status host_db_exec(sqlite3 *db, const char *sql, host_result *r);
/* Bring `db` from its user_version to steps[n-1].version by running the
 * steps above it in order; refuse a database newer than that. `path`
 * names it in messages. Exposed for tests (host_db_open uses the real
 * history). */
host_status host_db_migrate(sqlite3 *db, const char *path, const host_migration *steps, size_t n,
                            host_result *r);
/* PRAGMA user_version, or -1. */
int host_db_schema_version(sqlite3 *db);

/* ------------------------------------------------------------------- lock.c */

/* The delivery lock: an exclusive flock on <db>.lock, held by commands that
 * change keys or deliver the outbox so two processes never deliver the same
 * queue at once. Read-only commands never take it. Waits at most
 * `timeout_ms` (0: one try), polling on `clock`; when it stays held,
 * HOST_FAILED names the lock file and the holder's pid (written into the
 * file by whoever holds it). *fd is the lock (host_lock_release frees it). */
host_status host_lock_acquire(const char *db_path, unsigned timeout_ms, const host_clock *clock,
                              int *fd, host_result *r);
void host_lock_release(int fd);

/* ------------------------------------------------------------------- keys.c */

#define HOST_KEY_RANDOM_BYTES 24 /* 192 bits */
#define HOST_KEY_MAX 80
#define HOST_ALIAS_MAX 128
#define HOST_KEY_ID_HEX 16

/* "sk-" + base64url(24 random bytes from RAND_bytes). 0 or -1. */
int host_key_new(char out[HOST_KEY_MAX]);
/* A random public key id (16 hex digits). */
int host_key_id_new(char out[HOST_KEY_ID_HEX + 1]);
/* Lower-case hex SHA-256 of a key (65 bytes with NUL). */
int host_key_hash(const char *key, char out[65]);
/* base64url without padding; out must hold 4*ceil(n/3)+1. */
void host_base64url(const unsigned char *in, size_t n, char *out);
/* (names.c) Aliases become secret names: '/'-separated segments of
 * [A-Za-z0-9][A-Za-z0-9._-]*, at most 128 characters in all. */
int host_alias_valid(const char *alias);
/* 1 if `key` looks like a virtual key this host issues. */
int host_key_format_valid(const char *key);
/* The secret name a key is stored under: prefix + alias, or prefix +
 * "virtual-key-" + key id. malloc'ed. */
char *host_key_secret_name(const char *prefix, const char *alias, const char *key_id);

typedef struct host_key_ctx {
  host_db *db;
  const host_config *cfg;
  const kms_plugin *plugin; /* the configured plugin's table, or NULL */
  kms_client *client;       /* its instance; NULL when none is configured or when
                               create() found the backend UNAVAILABLE (work queues) */
} host_key_ctx;

/* What a key change did, for the caller to show. `key` is the new key
 * (generate/regenerate; empty for delete): host_key_change_clear wipes it. */
typedef struct host_key_change {
  char key[HOST_KEY_MAX];
  char key_id[HOST_KEY_ID_HEX + 1];
  char *alias;          /* or NULL */
  char *secret_name;    /* where it is (or was) stored, or NULL */
  char *removed_secret; /* regenerate: the old name, deleted, or NULL */
  int queued;           /* store work was committed with the change */
  char *team_id;        /* the key's team, or NULL */
  char *location;       /* where its secret lives (location text, teams.c), or NULL
                           for the instance's own */
} host_key_change;
void host_key_change_clear(host_key_change *c);

/* Each commits the key change and its store work in one transaction and
 * fills `out`; delivering it is the caller's next step
 * (host_outbox_deliver_after_commit). Statuses: HOST_OK, HOST_USAGE (bad
 * alias), HOST_CONFIG (the store cannot take the work), HOST_FAILED. */
host_status host_key_generate(host_key_ctx *k, const char *alias, host_key_change *out,
                              host_result *r);
/* generate with a caller-chosen key (`given`, checked by
 * host_key_format_valid; NULL: a fresh random one), as LiteLLM's
 * /key/generate {"key": "sk-..."}. A key already in use: HOST_FAILED. */
host_status host_key_generate_given(host_key_ctx *k, const char *alias, const char *given,
                                    host_key_change *out, host_result *r);
/* generate_given for a team: the row keeps `team_id` (or NULL) and
 * `location` (a location text, teams.c; "" or NULL the instance's own),
 * where the key's secret is written now and deleted later. */
host_status host_key_generate_at(host_key_ctx *k, const char *alias, const char *given,
                                 const char *team_id, const char *location,
                                 host_key_change *out, host_result *r);
/* delete, regenerate and update_alias act at the key's remembered location
 * (host_key_row.location), never its team's current one. */
host_status host_key_delete(host_key_ctx *k, const char *alias, const char *key,
                            host_key_change *out, host_result *r);
host_status host_key_regenerate(host_key_ctx *k, const char *alias, const char *key,
                                host_key_change *out, host_result *r);

/* Give the key `key` the alias `alias` (NULL: none), as LiteLLM's
 * /key/update does: with store_virtual_keys (or a secret stored earlier)
 * the secret moves -- `key` is written under the new name and the old name
 * deleted, in the same transaction as the change. The caller knows the key,
 * so no value is read back from the store. */
host_status host_key_update_alias(host_key_ctx *k, const char *key, const char *alias,
                                  host_key_change *out, host_result *r);

/* ------------------------------------------------------------------ store.c */

/* The storage interface: one function per transaction, so a key change and
 * its outbox rows read as one unit. store.c forwards each to the store's
 * implementation (store_sqlite.c, store_pg.c; see store.h). Connections are
 * used by one thread at a time. On PostgreSQL, host_store_next claims the
 * oldest operation of a secret name with no earlier queued one and no live
 * claim (FOR UPDATE SKIP LOCKED, a lease of KMS_HOST_OUTBOX_LEASE seconds,
 * default 120), so replicas deliver concurrently, never two operations of
 * one name at once or out of order; a claim of a killed process is taken
 * over when its lease ends. */

typedef enum host_outbox_op { HOST_OUTBOX_WRITE = 1, HOST_OUTBOX_DELETE = 2 } host_outbox_op;

typedef struct host_key_row {
  char key_id[HOST_KEY_ID_HEX + 1];
  char *alias;       /* or NULL */
  char *secret_name; /* or NULL */
  char *team_id;     /* the team it was generated for, or NULL (teams.c) */
  char *location;    /* where its secret lives: a location text (teams.c), "" the
                        instance's own; set by host_store_find, never NULL there */
} host_key_row;
void host_key_row_free(host_key_row *row);

/* Find a key by alias, or by the hash of its value. HOST_FAILED (not
 * found: the message says so) or HOST_OK. */
host_status host_store_find(host_db *db, const char *alias, const char *token_hash,
                            host_key_row *row, host_result *r);
/* generate: the key row and, when `name` is set, the write of `key` to it. */
host_status host_store_generate(host_db *db, const char *key_id, const char *token_hash,
                                const char *alias, const char *name, const char *key,
                                host_result *r);
/* delete: the key row goes and, when it was stored, the delete of its name. */
host_status host_store_delete(host_db *db, const host_key_row *row, host_result *r);
/* regenerate: the new hash and name, the write of `key` to `name` (if any)
 * and the delete of the old name when `drop_old`. */
host_status host_store_regenerate(host_db *db, const host_key_row *row, const char *token_hash,
                                  const char *name, const char *key, int drop_old,
                                  host_result *r);
/* rename (an alias change): the new alias and name, the write of `key` to
 * `name` (if any) and the delete of the old name when it differs. */
host_status host_store_rename(host_db *db, const host_key_row *row, const char *alias,
                              const char *name, const char *key, host_result *r);
/* Queue an operation in the caller's transaction (or alone). A queued write
 * or delete supersedes earlier queued writes of the same name (they would
 * be overwritten anyway, and this drops their values sooner). The
 * operation goes to the instance's own location. */
host_status host_store_enqueue(host_db *db, host_outbox_op op, const char *name,
                               const char *value, size_t len, host_result *r);
/* The same for the location `location` (a location text, teams.c; "" the
 * instance's own): delivered there; supersedes only writes of the same name
 * in the same location. */
host_status host_store_enqueue_at(host_db *db, host_outbox_op op, const char *name,
                                  const char *location, const char *value, size_t len,
                                  host_result *r);
/* reconcile --delete-orphans: queue the delete of `name` at `location` (a
 * location text, "" the instance's own) UNLESS a key owns that name there
 * now -- checked in the same transaction as the enqueue, against every key
 * change committed before it (SQLite: under BEGIN IMMEDIATE; PostgreSQL:
 * the key table locked in SHARE mode, so a key change in flight commits
 * first and one that starts later commits after the delete is queued, its
 * write then landing after the delete). So a key generated, regenerated or
 * renamed to that name concurrently is never deleted. HOST_OK with *owned 1
 * (nothing queued) or 0 (the delete is queued), else HOST_FAILED. */
host_status host_store_enqueue_orphan_delete(host_db *db, const char *name,
                                             const char *location, int *owned,
                                             host_result *r);
/* generate for a team: as host_store_generate, and the row remembers
 * `team_id` (or NULL) and `location` (its write goes there; every later
 * delete/regenerate/rename of the key too, whatever the team becomes). */
host_status host_store_generate_at(host_db *db, const char *key_id, const char *token_hash,
                                   const char *alias, const char *team_id, const char *location,
                                   const char *name, const char *key, host_result *r);

typedef struct host_outbox_item {
  long long seq;
  host_outbox_op op;
  char *name;
  char *value; /* the value to write (wiped by host_outbox_item_free), or NULL */
  size_t len;
  char *location; /* the location text it was made for ("" the instance's own) */
} host_outbox_item;
void host_outbox_item_free(host_outbox_item *it);
/* The oldest queued operation: HOST_OK with *found 0 or 1. */
host_status host_store_next(host_db *db, host_outbox_item *it, int *found, host_result *r);
/* It landed: remove it (secure_delete overwrites the value). */
host_status host_store_landed(host_db *db, long long seq, host_result *r);
/* It failed: count the attempt, keep the reason (best effort). */
void host_store_failed(host_db *db, long long seq, const char *why);
/* The number of queued operations. */
host_status host_store_pending(host_db *db, long *n, host_result *r);

/* key list: each key, then each queued operation, in order. `team_id` may
 * be NULL; `location` is a location text (teams.c), "" the instance's own. */
typedef struct host_list_sink {
  void (*key)(void *ctx, const char *key_id, const char *alias, const char *secret_name,
              const char *team_id, const char *location, const char *updated_at);
  void (*queued)(void *ctx, long long seq, const char *op, const char *secret_name,
                 const char *location, int attempts, const char *last_error);
  void *ctx;
} host_list_sink;
host_status host_store_list(host_db *db, const host_list_sink *sink, host_result *r);

/* ------------------------------------------------------------------ teams.c */

/* Teams (LiteLLM's team_id) and their secret-manager settings: where the
 * keys generated for a team are stored. A location is kept as one text,
 * "key=value;key=value" with the keys in host_location_keys order and only
 * those keys; "" is the instance's own location (every row from before
 * teams existed). Values follow host_alias_valid, so they hold no '=' or
 * ';' and reach the plugin (kms_call_options.location) well-formed. The
 * plugin interprets them (Vault: namespace, mount, path_prefix). */
#define HOST_LOCATION_NKEYS 3
#define HOST_LOCATION_TEXT_MAX 512
#define HOST_TEAM_ID_MAX 64
extern const char *const host_location_keys[HOST_LOCATION_NKEYS]; /* namespace, mount, path_prefix */

/* (names.c) 1 if `id` is a team id this host accepts: 1..64 of [A-Za-z0-9._-],
 * starting with a letter or digit (it appears in messages and URLs). */
int host_team_id_valid(const char *id);
/* Build a location text from key/value pairs (a team's secret-manager
 * settings): an unknown key, a repeated key or a bad value is HOST_USAGE
 * naming it (`what` starts the message, e.g. "secret_manager_settings").
 * A NULL or empty value leaves its key out. *out is malloc'ed ("" for no
 * pairs). */
host_status host_location_from_pairs(const kms_setting *pairs, size_t n, const char *what,
                                     char **out, host_result *r);
/* Split a stored location text into `set` (*n entries, values pointing into
 * `buf`, which must hold HOST_LOCATION_TEXT_MAX bytes). "" or NULL: *n = 0.
 * A text this host did not write: HOST_FAILED naming it. */
host_status host_location_settings(const char *text, char *buf, kms_setting set[HOST_LOCATION_NKEYS],
                                   size_t *n, host_result *r);
/* One line for people: "namespace=a, mount=kv" or "default". Static
 * storage is not used: `buf` of HOST_LOCATION_TEXT_MAX bytes. */
const char *host_location_describe(const char *text, char buf[HOST_LOCATION_TEXT_MAX]);

typedef struct host_team_row {
  char *team_id;
  char *team_alias; /* or NULL */
  char *location;   /* location text */
  long keys;        /* keys generated for it (host_store_team_get/list only) */
  char *updated_at;
} host_team_row;
void host_team_row_free(host_team_row *t);

/* Create (`create` 1: an existing id is HOST_FAILED "already exists") or
 * replace (`create` 0: settings and alias replaced; an unknown id is
 * HOST_FAILED "no team") a team. Changing a team never moves its keys:
 * each key keeps the location it was stored at. */
host_status host_store_team_put(host_db *db, const char *team_id, const char *team_alias,
                                const char *location, int create, host_result *r);
/* One team; an unknown id is HOST_FAILED "no team 'T'". */
host_status host_store_team_get(host_db *db, const char *team_id, host_team_row *t,
                                host_result *r);
/* Every team, by id; `fn` borrows the row for the call. */
host_status host_store_team_list(host_db *db, void (*fn)(void *ctx, const host_team_row *t),
                                 void *ctx, host_result *r);
/* Remove a team. Refused (HOST_FAILED naming the count) while keys were
 * generated for it: delete or keep them first -- a team's keys must stay
 * attributable. An unknown id is HOST_FAILED "no team". */
host_status host_store_team_remove(host_db *db, const char *team_id, host_result *r);
/* Every distinct location text of the keys that have a stored secret, ""
 * (the instance's own) included when such a key has it; sorted. For
 * reconcile: read each with host_location_settings into kms_call_options. */
host_status host_store_locations(host_db *db, void (*fn)(void *ctx, const char *location),
                                 void *ctx, host_result *r);
/* Every key with a stored secret: its id, secret name, team (or NULL) and
 * location text, by location then name. `fn` borrows the strings. */
typedef void (*host_key_location_fn)(void *ctx, const char *key_id, const char *secret_name,
                                     const char *team_id, const char *location);
host_status host_store_key_locations(host_db *db, host_key_location_fn fn, void *ctx,
                                     host_result *r);

/* A location other than the instance's own ("" / NULL) needs the plugin's
 * ABI 1.1 write and delete with options: HOST_CONFIG naming the plugin
 * otherwise (the loader would refuse every delivery; it never writes to the
 * default place instead). */
host_status host_location_supported(const kms_plugin *p, const char *location,
                                    host_result *r);
/* (keys.c) Generate a key for team `team_id` (NULL: none, as host_key_generate_given):
 * its secret goes to the team's location as it is now, and the key keeps
 * that location. An unknown team is HOST_FAILED; a team location with a
 * plugin without ABI 1.1 write/delete options is HOST_CONFIG. */
host_status host_key_generate_team(host_key_ctx *k, const char *alias, const char *given,
                                   const char *team_id, host_key_change *out, host_result *r);

/* ----------------------------------------------------------------- outbox.c */

/* Deliver queued operations in order, stopping at the first that fails
 * (later ones may depend on it). HOST_OK when none is left; HOST_QUEUED
 * with the delivery error when some are (*left says how many); HOST_FAILED
 * on a database error. `client` may be NULL (nothing can land). The caller
 * holds the delivery lock. */
host_status host_outbox_deliver(host_db *db, kms_client *client, long *left, host_result *r);
/* After a key change committed: the crash test hook, then delivery, with
 * messages that say the change itself is saved. */
host_status host_outbox_deliver_after_commit(host_db *db, kms_client *client, host_result *r);
/* Test hook: if KMS_HOST_CRASH_AFTER_COMMIT=1, _exit(99) now. */
void host_crash_point(void);

#endif /* KMS_HOST_H */
