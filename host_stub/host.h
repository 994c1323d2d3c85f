/*
 * host.h -- internal interfaces of the reference host kms-host (not installed).
 *
 * The host is split by job: config.c (YAML -> host_config), resolve.c
 * (os.environ/ references, redaction), keys.c (virtual keys in SQLite),
 * outbox.c (the durable secret-manager queue), db.c (the database file),
 * plugin.c (loading the configured plugin through libkmsloader) and main.c
 * (commands). Everything but main.c and plugin.c is pure enough to unit-test.
 */
#ifndef KMS_HOST_H
#define KMS_HOST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kms_loader.h"

typedef struct sqlite3 sqlite3;

/* Exit statuses of kms-host (documented in README.md and --help). */
#define HOST_EXIT_OK 0     /* the command did everything it was asked */
#define HOST_EXIT_FAIL 1   /* it failed; nothing was changed unless it says so */
#define HOST_EXIT_USAGE 2  /* bad command line */
#define HOST_EXIT_CONFIG 3 /* bad or unusable config file / plugin */
#define HOST_EXIT_QUEUED 4 /* the key change is saved, but secret-manager work is
                              still queued in the outbox: run `kms-host sync` */

/* Error text buffers throughout the host. */
#define HOST_ERR_SIZE 512

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
} host_config;

/* Parse YAML text. `name` names the file in messages, `base_dir` resolves
 * relative paths. Returns 0, or -1 with `err` naming file:line and the key.
 * References inside key_management_settings and environment_variables are
 * resolved here, from environment_variables first and then the process
 * environment (read only: nothing is set). Not thread-safe against setenv. */
int host_config_parse(const char *text, size_t len, const char *name, const char *base_dir,
                      host_config *cfg, char *err, size_t errsz);
/* Read and parse a file, then export its environment_variables into the
 * process environment (setenv, overriding, as LiteLLM does) so the plugin and
 * everything after see them. Call before any thread starts. */
int host_config_load(const char *path, host_config *cfg, char *err, size_t errsz);
void host_config_free(host_config *cfg);

/* prefix_for_stored_virtual_keys: validated and given a trailing '/'.
 * Returns a malloc'ed string or NULL with err set. */
char *host_prefix_normalise(const char *prefix, char *err, size_t errsz);

/* 1 if `s` spells a YAML 1.1 boolean (true/false/yes/no/on/off, any case
 * of those LiteLLM/PyYAML/pydantic accept, and 1/0); *out set. Else 0. */
int host_parse_bool(const char *s, int *out);

/* ----------------------------------------------------------------- resolve.c */

/* LiteLLM's rule: a string value that starts with "os.environ/" is a
 * reference, and the secret name is the value with every "os.environ/"
 * removed (Python's str.replace). Returns 1 and a malloc'ed name (possibly
 * empty: the caller reports that), 0 when not a reference, -1 on OOM. */
int host_env_ref_name(const char *value, char **name);

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
 * host_resolved_clear; NULL on failure, with `error` saying why. */
typedef struct host_resolved {
  char *value;
  size_t length;
  char source[96]; /* "environment", the plugin's name, "environment, fallback from ..." */
  int stale;
  char error[HOST_ERR_SIZE];
} host_resolved;

/* Resolve `r` as LiteLLM's get_secret does: through the plugin when
 * host_ref_uses_plugin says so, else from the environment; when the plugin
 * has no value or fails, fall back to the environment as cfg->fallback
 * allows, with a warning through reader->warn naming the reference and the
 * reason. An empty value is never a resolved secret. `reader` may be NULL
 * when no plugin is loaded. Returns 0 or -1. */
int host_resolve_ref(const host_config *cfg, const host_reader *reader, const host_ref *r,
                     host_resolved *out);
void host_resolved_clear(host_resolved *out);

/* The `resolve` command: every reference in the config with a redacted
 * value or the error, one line each. Returns HOST_EXIT_OK or HOST_EXIT_FAIL. */
int host_resolve_print(const host_config *cfg, const host_reader *reader, FILE *out);

/* ----------------------------------------------------------------- plugin.c */

typedef struct host_plugin {
  kms_module *module;
  kms_client *client;
} host_plugin;

/* The plugin directory: --plugin-dir, else the config's plugin_dir, else
 * KMS_PLUGIN_PATH, else the installed default. */
const char *host_plugin_dir(const char *cli_dir, const host_config *cfg);
/* Load cfg->kms from `dir` and create an instance with the settings.
 * An unknown name lists the plugins found. Returns 0, -1 with err (cannot
 * load or configure it), or -2 with err when create() said the backend is
 * UNAVAILABLE (the module stays loaded, hp->client is NULL: key changes can
 * still be committed and queued). */
int host_plugin_open(const host_config *cfg, const char *dir, int verbose, host_plugin *hp,
                     char *err, size_t errsz);
void host_plugin_close(host_plugin *hp);
/* The kms_host table (log to stderr, process environment). */
const kms_host *host_services(int verbose);
void host_log(kms_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* --------------------------------------------------------------------- db.c */

/* Open (creating, mode 0600) the host database and its schema. */
int host_db_open(const char *path, sqlite3 **db, char *err, size_t errsz);
void host_db_close(sqlite3 *db);
/* Exclusive advisory lock on <path>.lock, held across an outbox replay so
 * two kms-host processes never deliver the same queue concurrently.
 * Returns an fd (close it to unlock) or -1 with err. */
int host_db_lock(const char *path, char *err, size_t errsz);
/* Run SQL without results. */
int host_db_exec(sqlite3 *db, const char *sql, char *err, size_t errsz);

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
/* Aliases become secret names: '/'-separated segments of
 * [A-Za-z0-9][A-Za-z0-9._-]*, at most 128 characters in all. */
int host_alias_valid(const char *alias);
/* 1 if `key` looks like a virtual key this host issues. */
int host_key_format_valid(const char *key);
/* The secret name a key is stored under: prefix + alias, or prefix +
 * "virtual-key-" + key id. malloc'ed. */
char *host_key_secret_name(const char *prefix, const char *alias, const char *key_id);

typedef struct host_key_ctx {
  sqlite3 *db;
  const host_config *cfg;
  const kms_plugin *plugin; /* the configured plugin's table, or NULL */
  kms_client *client;       /* its instance; NULL when none is configured or when
                               create() found the backend UNAVAILABLE (work queues) */
} host_key_ctx;

/* Each returns a HOST_EXIT_* status and prints what happened. */
int host_key_generate(host_key_ctx *k, const char *alias, char *err, size_t errsz);
int host_key_delete(host_key_ctx *k, const char *alias, const char *key, char *err, size_t errsz);
int host_key_regenerate(host_key_ctx *k, const char *alias, const char *key, char *err,
                        size_t errsz);
int host_key_list(host_key_ctx *k, char *err, size_t errsz);

/* ----------------------------------------------------------------- outbox.c */

typedef enum host_outbox_op { HOST_OUTBOX_WRITE = 1, HOST_OUTBOX_DELETE = 2 } host_outbox_op;

/* Queue an operation. Must run inside the caller's transaction (the same one
 * as the key change). A queued write or delete supersedes earlier queued
 * writes of the same name (they would be overwritten anyway, and this drops
 * their values from the database sooner). */
int host_outbox_enqueue(sqlite3 *db, host_outbox_op op, const char *name, const char *value,
                        size_t len, char *err, size_t errsz);
/* Deliver queued operations in order, stopping at the first that fails
 * (later ones may depend on it). Returns the number still queued (0 = all
 * landed) or -1 on a database error. `err` gets the delivery error. */
long host_outbox_replay(sqlite3 *db, kms_client *client, char *err, size_t errsz);
/* Number of queued operations, or -1. */
long host_outbox_pending(sqlite3 *db);
/* Test hook: if KMS_HOST_CRASH_AFTER_COMMIT=1, _exit(99) now. */
void host_crash_point(void);

#endif /* KMS_HOST_H */
