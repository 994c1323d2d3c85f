/*
 * config.c -- LiteLLM-shaped config.yaml -> struct host_config, with libyaml.
 *
 * What is read (everything else is accepted and ignored, as LiteLLM does):
 *   general_settings.key_management_system      scalar: plugin name (LiteLLM's
 *       `local`, its environment backend, loads `env`)
 *   general_settings.key_management_settings    mapping: every value is
 *       passed to the plugin as a string (mappings and lists as JSON text,
 *       hosted_keys comma-joined); the host also interprets
 *       store_virtual_keys (bool, default false),
 *       prefix_for_stored_virtual_keys (default "litellm/", '/' appended),
 *       access_mode (read_only | write_only | read_and_write),
 *       hosted_keys (sequence of names)
 *   general_settings.plugin_dir / kms_db_path / kms_env_fallback (kms-host's)
 *   environment_variables                        mapping: exported before
 *       anything reads the environment (host_config_load)
 *   every string value of every mapping          os.environ/NAME references
 *       (LiteLLM's ProxyConfig._check_for_os_environ_vars walks the whole
 *       config: dicts, and dicts inside lists; strings inside lists are not
 *       references there, so they are not here either)
 * YAML merge keys (`<<: *base`, `<<: [*a, *b]`) are applied with PyYAML's
 * semantics (the mapping's own keys win, then earlier merged mappings).
 * Bounds: nesting deeper than HOST_MAX_DEPTH is refused before libyaml builds
 * the document (its scanner is quadratic in depth), aliases and merges count
 * against HOST_MAX_WORK, a NUL inside a scalar is refused (never truncated).
 * Relative paths resolve against the config file's directory.
 * Errors name the file, the line and the dotted key. Wrong types are errors;
 * duplicate keys in the mappings the host reads are errors (PyYAML would
 * silently keep the last one, which hides typos in a security setting).
 * Errors travel in a host_result (HOST_CONFIG): the parser's internal steps
 * return 0 or the status of fail()/oom(), which filled parse_ctx.r.
 */
#include "host.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Limits that keep a hostile or runaway config (YAML aliases can repeat a
 * mapping thousands of times: "billion laughs") from hanging the host. */
#define HOST_MAX_WORK 4000000u /* mapping entries visited, aliases expanded */
#define HOST_MAX_REFS 100000u  /* os.environ/ references */
#define HOST_MAX_DEPTH 100     /* nested collections (LiteLLM's DEFAULT_MAX_RECURSE_DEPTH) */
#define HOST_MAX_JSON (1u << 20) /* a structured setting as JSON text */
#define PATH_MAX_LEN 384

typedef struct parse_ctx {
  yaml_document_t *doc;
  const char *name;
  const char *base_dir;
  host_result *r;         /* the first error (HOST_CONFIG) */
  size_t work;            /* entries visited so far (see HOST_MAX_WORK) */
  size_t refs_cap;        /* capacity of cfg->refs */
} parse_ctx;

/* One key/value of a mapping after merge keys are applied. */
typedef struct kv {
  yaml_node_t *k, *v;
  const char *key; /* the key's text */
  size_t pos;      /* order of first appearance (PyYAML dict order) */
  int own;         /* written in the mapping itself, not merged into it */
} kv;

typedef struct kv_list {
  kv *items;
  size_t n, cap;
} kv_list;

static host_status fail(parse_ctx *p, const yaml_node_t *n, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static host_status fail(parse_ctx *p, const yaml_node_t *n, const char *key, const char *fmt, ...) {
  char msg[HOST_ERR_SIZE];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n)
    return host_fail(p->r, HOST_CONFIG, "%s:%d: %s: %s", p->name, (int)n->start_mark.line + 1,
                     key, msg);
  return host_fail(p->r, HOST_CONFIG, "%s: %s: %s", p->name, key, msg);
}

static host_status oom(parse_ctx *p) {
  return host_fail(p->r, HOST_CONFIG, "%s: out of memory", p->name);
}

/* host_env_ref_name with its out-of-memory reported as the parser's. */
static host_status ref_name(parse_ctx *p, const char *value, char **name) {
  host_result e = {HOST_OK, ""};
  return host_env_ref_name(value, name, &e) == HOST_OK ? HOST_OK : oom(p);
}

static const char *type_name(const yaml_node_t *n) {
  switch (n->type) {
  case YAML_SCALAR_NODE: return "a scalar";
  case YAML_SEQUENCE_NODE: return "a list";
  case YAML_MAPPING_NODE: return "a mapping";
  default: return "nothing";
  }
}

/* A plain scalar spelling YAML null (`key:` with no value, ~, null). */
static int is_null(const yaml_node_t *n) {
  if (!n) return 1;
  if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
  const char *v = (const char *)n->data.scalar.value;
  return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

static const char *sval(const yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int line_of(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }

static void join_path(char *out, size_t size, const char *base, const char *key) {
  snprintf(out, size, "%s%s%s", base, *base ? "." : "", key);
}

/* Count `units` of parsing work; fails once the config, with its aliases
 * expanded, is larger than any real gateway config. */
static int spend(parse_ctx *p, const yaml_node_t *n, size_t units) {
  p->work += units;
  if (p->work <= HOST_MAX_WORK) return 0;
  return fail(p, n, "(config)",
              "too large once YAML aliases are expanded (and merge keys applied: more than %u "
              "entries visited); write the entries out or split the config", HOST_MAX_WORK);
}

/* ------------------------------------------------------------ merge keys */

static int kv_push(parse_ctx *p, kv_list *l, yaml_node_t *k, yaml_node_t *v, int own) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    kv *n = realloc(l->items, cap * sizeof *n);
    if (!n) return oom(p);
    l->items = n;
    l->cap = cap;
  }
  l->items[l->n] = (kv){k, v, sval(k), l->n, own};
  l->n++;
  return 0;
}

/* `<<` as PyYAML resolves it: a plain scalar (or one tagged !!merge). */
static int is_merge_key(const yaml_node_t *k) {
  if (!k || k->type != YAML_SCALAR_NODE) return 0;
  const char *tag = (const char *)k->tag;
  if (tag && !strcmp(tag, "tag:yaml.org,2002:merge")) return 1;
  return k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
         !strcmp((const char *)k->data.scalar.value, "<<");
}

static int collect(parse_ctx *p, yaml_node_t *map, const char *path, int depth, kv_list *out);

/* The pairs one `<<` value contributes, in PyYAML's order: a mapping's own
 * (flattened) pairs; for a list, each mapping flattened, last one first. */
static int collect_merge(parse_ctx *p, yaml_node_t *v, const char *path, int depth, kv_list *out) {
  if (v->type == YAML_MAPPING_NODE) return collect(p, v, path, depth + 1, out);
  if (v->type != YAML_SEQUENCE_NODE)
    return fail(p, v, path, "'<<' (merge key) expects a mapping or a list of mappings, got %s",
                type_name(v));
  yaml_node_item_t *s = v->data.sequence.items.start, *t = v->data.sequence.items.top;
  for (yaml_node_item_t *it = t; it > s; it--) {
    yaml_node_t *m = yaml_document_get_node(p->doc, it[-1]);
    if (!m || m->type != YAML_MAPPING_NODE)
      return fail(p, m ? m : v, path, "'<<' (merge key) list items must be mappings, got %s",
                  m ? type_name(m) : "nothing");
    if (collect(p, m, path, depth + 1, out) != 0) return -1;
  }
  return 0;
}

/* Every pair of `map` with merges applied, earliest-wins order not yet
 * resolved: merged pairs first, then the mapping's own (so later = wins). */
static int collect(parse_ctx *p, yaml_node_t *map, const char *path, int depth, kv_list *out) {
  if (depth > HOST_MAX_DEPTH)
    return fail(p, map, path, "merge keys nest deeper than %d levels (or merge a mapping into "
                "itself)", HOST_MAX_DEPTH);
  size_t n = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
  if (spend(p, map, n) != 0) return -1;
  for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
    yaml_node_t *k = yaml_document_get_node(p->doc, pr->key);
    yaml_node_t *v = yaml_document_get_node(p->doc, pr->value);
    if (is_merge_key(k) && collect_merge(p, v, path, depth, out) != 0) return -1;
  }
  for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
    yaml_node_t *k = yaml_document_get_node(p->doc, pr->key);
    yaml_node_t *v = yaml_document_get_node(p->doc, pr->value);
    if (is_merge_key(k)) continue;
    if (!sval(k)) return fail(p, k, path, "mapping keys must be scalars, got %s", type_name(k));
    if (kv_push(p, out, k, v, depth == 0) != 0) return -1;
  }
  return 0;
}

static int kv_by_key(const void *a, const void *b) {
  const kv *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

static int kv_by_pos(const void *a, const void *b) {
  const kv *x = a, *y = b;
  return (x->pos > y->pos) - (x->pos < y->pos);
}

/* The mapping as PyYAML's dict sees it: merges applied, each key once, in
 * order of first appearance, with the last value. With `strict`, a key
 * written twice in the mapping itself is an error (merged keys are not
 * duplicates: overriding them is what merge keys are for). */
static int map_items(parse_ctx *p, yaml_node_t *map, const char *path, int strict, kv_list *out) {
  memset(out, 0, sizeof *out);
  if (collect(p, map, path, 0, out) != 0) goto bad;
  if (out->n < 2) return 0;
  qsort(out->items, out->n, sizeof *out->items, kv_by_key);
  for (size_t i = 1; strict && i < out->n; i++) {
    kv *a = &out->items[i - 1], *b = &out->items[i];
    /* sorted by key then position, and own pairs come after merged ones */
    if (a->own && b->own && !strcmp(a->key, b->key)) {
      char full[PATH_MAX_LEN];
      join_path(full, sizeof full, path, b->key);
      fail(p, b->k, full, "duplicate key (first at line %d)", line_of(a->k));
      goto bad;
    }
  }
  /* keep one per key: first position, last value */
  size_t w = 0;
  for (size_t i = 0; i < out->n;) {
    size_t j = i;
    while (j + 1 < out->n && !strcmp(out->items[j + 1].key, out->items[i].key)) j++;
    kv keep = out->items[j];
    keep.pos = out->items[i].pos;
    out->items[w++] = keep;
    i = j + 1;
  }
  out->n = w;
  qsort(out->items, out->n, sizeof *out->items, kv_by_pos);
  return 0;
bad:
  free(out->items);
  memset(out, 0, sizeof *out);
  return -1;
}

static yaml_node_t *kv_get(const kv_list *l, const char *key) {
  for (size_t i = 0; i < l->n; i++)
    if (!strcmp(l->items[i].key, key)) return l->items[i].v;
  return NULL;
}

/* ------------------------------------------------------------ helpers */

/* Resolve a path from the config against its directory. */
static char *resolve_path(parse_ctx *p, const char *v) {
  if (v[0] == '/' || !p->base_dir || !*p->base_dir) return strdup(v);
  size_t n = strlen(p->base_dir) + 1 + strlen(v) + 1;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%s/%s", p->base_dir, v);
  return s;
}

int host_parse_bool(const char *s, int *out) {
  static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "1"};
  static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "0"};
  for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
    if (!strcmp(s, yes[i])) return *out = 1, 1;
    if (!strcmp(s, no[i])) return *out = 0, 1;
  }
  return 0;
}

host_status host_prefix_normalise(const char *prefix, char **out_prefix, host_result *r) {
  *out_prefix = NULL;
  size_t n = strlen(prefix);
  if (n == 0 || n > 200)
    return host_fail(r, HOST_CONFIG, "must be 1 to 200 characters");
  if (prefix[0] == '/')
    return host_fail(r, HOST_CONFIG, "must not start with '/'");
  for (const char *c = prefix; *c; c++) {
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
          *c == '_' || *c == '-' || *c == '.' || *c == '/')) {
      return host_fail(r, HOST_CONFIG, "may only contain letters, digits, '_', '-', '.' and '/'");
    }
  }
  /* No empty, "." or ".." segments: they would escape or alias paths. */
  const char *seg = prefix;
  for (;;) {
    const char *end = strchr(seg, '/');
    size_t len = end ? (size_t)(end - seg) : strlen(seg);
    if ((len == 0 && end) || (len == 1 && seg[0] == '.') ||
        (len == 2 && seg[0] == '.' && seg[1] == '.')) {
      return host_fail(r, HOST_CONFIG, "has an empty, '.' or '..' path segment");
    }
    if (!end) break;
    seg = end + 1;
    if (!*seg) break;
  }
  char *out = malloc(n + 2);
  if (!out)
    return host_fail(r, HOST_CONFIG, "out of memory");
  memcpy(out, prefix, n + 1);
  if (out[n - 1] != '/') {
    out[n] = '/';
    out[n + 1] = '\0';
  }
  *out_prefix = out;
  return HOST_OK;
}

/* Setting and environment values may be secrets (a token in
 * key_management_settings): wiped before they are freed. explicit_bzero,
 * not OPENSSL_cleanse: the config parser links without OpenSSL (fuzzing). */
static void free_secret_str(char *s) {
  if (!s) return;
  explicit_bzero(s, strlen(s));
  free(s);
}

static int add_setting(parse_ctx *p, host_config *cfg, const char *key, const char *value,
                       int line) {
  host_setting *s = realloc(cfg->settings, (cfg->n_settings + 1) * sizeof *s);
  if (!s) return oom(p);
  cfg->settings = s;
  s = &cfg->settings[cfg->n_settings];
  s->key = strdup(key);
  s->value = strdup(value);
  s->line = line;
  if (!s->key || !s->value) {
    free(s->key);
    free_secret_str(s->value);
    return oom(p);
  }
  cfg->n_settings++;
  return 0;
}

static int add_ref(parse_ctx *p, host_config *cfg, size_t idx, const char *model_name,
                   const char *param, const char *path, const yaml_node_t *v, char *env_name,
                   int at_load) {
  if (cfg->n_refs >= HOST_MAX_REFS) {
    free(env_name);
    return fail(p, v, path, "more than %u os.environ/ references in the config", HOST_MAX_REFS);
  }
  host_ref *r = cfg->refs;
  if (cfg->n_refs == p->refs_cap) {
    size_t cap = p->refs_cap ? p->refs_cap * 2 : 16;
    if (!(r = realloc(cfg->refs, cap * sizeof *r))) {
      free(env_name);
      return oom(p);
    }
    cfg->refs = r;
    p->refs_cap = cap;
  }
  r = &cfg->refs[cfg->n_refs];
  memset(r, 0, sizeof *r);
  r->model_index = idx;
  r->model_name = strdup(model_name);
  r->param = strdup(param);
  r->value = strdup(sval(v));
  r->path = strdup(path);
  r->env_name = env_name;
  r->line = line_of(v);
  r->at_load = at_load;
  cfg->n_refs++;
  if (!r->model_name || !r->param || !r->value || !r->path) return oom(p);
  return 0;
}

/* ------------------------------------------------ os.environ/ everywhere */

typedef struct walk_ctx {
  size_t model_index;     /* HOST_REF_NO_MODEL outside model_list */
  const char *model_name;
  int at_load;
} walk_ctx;

static int walk(parse_ctx *p, host_config *cfg, yaml_node_t *n, const char *path, int depth,
                const walk_ctx *w);

/* A string value under `key`: record it when it is a reference. */
static int walk_value(parse_ctx *p, host_config *cfg, const char *key, yaml_node_t *v,
                      const char *path, int depth, const walk_ctx *w) {
  if (v->type != YAML_SCALAR_NODE) return walk(p, cfg, v, path, depth + 1, w);
  if (is_null(v)) return 0;
  char *name = NULL;
  if (ref_name(p, sval(v), &name) != HOST_OK) return p->r->status;
  if (!name) return 0;
  return add_ref(p, cfg, w->model_index, w->model_name, key, path, v, name, w->at_load);
}

/* LiteLLM's _check_for_os_environ_vars: every string value of a mapping,
 * recursing into mappings and into mappings inside lists. */
static int walk(parse_ctx *p, host_config *cfg, yaml_node_t *n, const char *path, int depth,
                const walk_ctx *w) {
  if (depth > HOST_MAX_DEPTH)
    return fail(p, n, path, "nested deeper than %d levels", HOST_MAX_DEPTH);
  if (n->type == YAML_SEQUENCE_NODE) {
    size_t i = 0;
    if (spend(p, n, (size_t)(n->data.sequence.items.top - n->data.sequence.items.start)) != 0)
      return -1;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++, i++) {
      yaml_node_t *m = yaml_document_get_node(p->doc, *it);
      if (!m || m->type != YAML_MAPPING_NODE) continue; /* LiteLLM: only dicts in lists */
      char sub[PATH_MAX_LEN];
      snprintf(sub, sizeof sub, "%s[%zu]", path, i);
      walk_ctx inner = *w;
      if (!strcmp(path, "model_list")) {
        kv_list l;
        if (map_items(p, m, sub, 0, &l) != 0) return -1;
        yaml_node_t *mn = kv_get(&l, "model_name");
        free(l.items);
        inner.model_index = i;
        inner.model_name = mn && !is_null(mn) && sval(mn) ? sval(mn) : "";
      }
      if (walk(p, cfg, m, sub, depth + 1, &inner) != 0) return -1;
    }
    return 0;
  }
  if (n->type != YAML_MAPPING_NODE) return 0;
  kv_list l;
  if (map_items(p, n, path, 0, &l) != 0) return -1;
  int rc = 0;
  for (size_t i = 0; i < l.n && rc == 0; i++) {
    char sub[PATH_MAX_LEN];
    join_path(sub, sizeof sub, path, l.items[i].key);
    walk_ctx inner = *w;
    /* These configure the plugin (or the environment the plugin reads), so
     * they are resolved from the environment while the config loads. */
    if (!strcmp(sub, "environment_variables") ||
        !strcmp(sub, "general_settings.key_management_settings") ||
        !strcmp(sub, "general_settings.key_management_system"))
      inner.at_load = 1;
    rc = walk_value(p, cfg, l.items[i].key, l.items[i].v, sub, depth, &inner);
  }
  free(l.items);
  return rc;
}

/* ------------------------------------------------ structured settings */

typedef struct sbuf {
  char *s;
  size_t n, cap;
  int bad;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->bad) return;
  if (b->n + n + 1 > HOST_MAX_JSON) {
    b->bad = 2;
    return;
  }
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *ns = realloc(b->s, cap);
    if (!ns) {
      b->bad = 1;
      return;
    }
    b->s = ns;
    b->cap = cap;
  }
  memcpy(b->s + b->n, s, n);
  b->n += n;
  b->s[b->n] = '\0';
}

static void sb_json_str(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    char esc[8];
    if (*c == '"' || *c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)*c;
      sb_put(b, esc, 2);
    } else if (*c < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", *c);
      sb_put(b, esc, 6);
    } else {
      sb_put(b, (const char *)c, 1);
    }
  }
  sb_put(b, "\"", 1);
}

/* A value under key_management_settings as JSON: mappings -> objects,
 * lists -> arrays, null -> null, every other scalar -> a JSON string of its
 * text (plugins decide what a value means). os.environ/ references inside
 * are resolved first, like LiteLLM does. */
static int to_json(parse_ctx *p, const host_config *cfg, yaml_node_t *n, const char *path,
                   int depth, sbuf *b) {
  if (depth > HOST_MAX_DEPTH) return fail(p, n, path, "nested deeper than %d levels", HOST_MAX_DEPTH);
  if (n->type == YAML_SCALAR_NODE) {
    if (is_null(n)) {
      sb_put(b, "null", 4);
      return 0;
    }
    char *name = NULL;
    if (ref_name(p, sval(n), &name) != HOST_OK) return p->r->status;
    if (!name) {
      sb_json_str(b, sval(n));
      return 0;
    }
    const char *v = name[0] ? host_env_lookup(cfg, name) : NULL;
    if (!v || !*v) {
      fail(p, n, path, "%s: environment variable '%s' is %s", sval(n), name, v ? "empty" : "not set");
      free(name);
      return -1;
    }
    free(name);
    sb_json_str(b, v);
    return 0;
  }
  if (n->type == YAML_SEQUENCE_NODE) {
    sb_put(b, "[", 1);
    size_t i = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++, i++) {
      if (spend(p, n, 1) != 0) return -1;
      if (i) sb_put(b, ",", 1);
      if (to_json(p, cfg, yaml_document_get_node(p->doc, *it), path, depth + 1, b) != 0) return -1;
    }
    sb_put(b, "]", 1);
    return 0;
  }
  kv_list l;
  if (map_items(p, n, path, 1, &l) != 0) return -1;
  sb_put(b, "{", 1);
  int rc = 0;
  for (size_t i = 0; i < l.n && rc == 0; i++) {
    if (i) sb_put(b, ",", 1);
    sb_json_str(b, l.items[i].key);
    sb_put(b, ":", 1);
    char sub[PATH_MAX_LEN];
    join_path(sub, sizeof sub, path, l.items[i].key);
    rc = to_json(p, cfg, l.items[i].v, sub, depth + 1, b);
  }
  free(l.items);
  sb_put(b, "}", 1);
  return rc;
}

/* ------------------------------------------------ typed sections */

static int parse_hosted_keys(parse_ctx *p, host_config *cfg, yaml_node_t *v, const char *path) {
  if (v->type != YAML_SEQUENCE_NODE)
    return fail(p, v, path, "expected a list of secret names, got %s", type_name(v));
  size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
  cfg->hosted_keys = calloc(n ? n : 1, sizeof *cfg->hosted_keys);
  if (!cfg->hosted_keys) return oom(p);
  cfg->hosted_keys_set = 1;
  size_t joined_len = 1;
  for (size_t i = 0; i < n; i++) {
    yaml_node_t *it = yaml_document_get_node(p->doc, v->data.sequence.items.start[i]);
    if (!it || it->type != YAML_SCALAR_NODE || is_null(it))
      return fail(p, it ? it : v, path, "item %zu: expected a secret name, got %s", i,
                  it ? (is_null(it) ? "null" : type_name(it)) : "nothing");
    cfg->hosted_keys[i] = strdup(sval(it));
    if (!cfg->hosted_keys[i]) return oom(p);
    cfg->n_hosted_keys = i + 1;
    joined_len += strlen(sval(it)) + 1;
  }
  /* Plugins see the list comma-joined (settings are strings). */
  char *joined = calloc(1, joined_len);
  if (!joined) return oom(p);
  for (size_t i = 0; i < n; i++) {
    if (i) strcat(joined, ",");
    strcat(joined, cfg->hosted_keys[i]);
  }
  int rc = add_setting(p, cfg, "hosted_keys", joined, line_of(v));
  free(joined);
  return rc;
}

/* A scalar setting's value: references resolved from the environment. */
static int setting_value(parse_ctx *p, const host_config *cfg, yaml_node_t *v, const char *path,
                         char **out) {
  char *name = NULL;
  *out = NULL;
  if (ref_name(p, sval(v), &name) != HOST_OK) return p->r->status;
  if (!name) {
    if (!(*out = strdup(sval(v)))) return oom(p);
    return 0;
  }
  const char *e = name[0] ? host_env_lookup(cfg, name) : NULL;
  if (!e || !*e) {
    fail(p, v, path, "%s: environment variable '%s' is %s (references in key_management_settings "
         "are read from the environment, before the plugin starts)", sval(v),
         name, !name[0] ? "missing after os.environ/" : e ? "empty" : "not set");
    free(name);
    return -1;
  }
  free(name);
  if (!(*out = strdup(e))) return oom(p);
  return 0;
}

static int apply_typed_setting(parse_ctx *p, host_config *cfg, const char *ks, const char *vs,
                               yaml_node_t *v, const char *path) {
  if (!strcmp(ks, "store_virtual_keys")) {
    if (!host_parse_bool(vs, &cfg->store_virtual_keys))
      return fail(p, v, path, "expected true or false, got '%s'", vs);
  } else if (!strcmp(ks, "prefix_for_stored_virtual_keys")) {
    char *norm = NULL;
    host_result e = {HOST_OK, ""};
    if (host_prefix_normalise(vs, &norm, &e) != HOST_OK)
      return fail(p, v, path, "'%s' %s", vs, e.msg);
    free(cfg->prefix);
    cfg->prefix = norm;
  } else if (!strcmp(ks, "access_mode")) {
    if (!strcmp(vs, "read_only")) cfg->access_mode = HOST_ACCESS_READ_ONLY;
    else if (!strcmp(vs, "write_only")) cfg->access_mode = HOST_ACCESS_WRITE_ONLY;
    else if (!strcmp(vs, "read_and_write")) cfg->access_mode = HOST_ACCESS_READ_AND_WRITE;
    else return fail(p, v, path, "expected read_only, write_only or read_and_write, got '%s'", vs);
  }
  return 0;
}

static int parse_kms_settings(parse_ctx *p, host_config *cfg, yaml_node_t *m) {
  const char *base = "general_settings.key_management_settings";
  if (is_null(m)) return 0;
  if (m->type != YAML_MAPPING_NODE)
    return fail(p, m, base, "expected a mapping, got %s", type_name(m));
  kv_list l;
  if (map_items(p, m, base, 1, &l) != 0) return -1;
  int rc = 0;
  for (size_t i = 0; i < l.n && rc == 0; i++) {
    const char *ks = l.items[i].key;
    yaml_node_t *v = l.items[i].v;
    char path[PATH_MAX_LEN];
    join_path(path, sizeof path, base, ks);
    if (is_null(v)) continue; /* `key:` with no value: unset */
    if (!strcmp(ks, "hosted_keys")) {
      rc = parse_hosted_keys(p, cfg, v, path);
      continue;
    }
    if (v->type != YAML_SCALAR_NODE) {
      /* LiteLLM's tags ({Environment: Prod}) and other structured settings:
       * the ABI's settings are strings, so they travel as JSON text. */
      sbuf b = {0};
      rc = to_json(p, cfg, v, path, 1, &b);
      if (rc == 0 && b.bad)
        rc = b.bad == 1 ? oom(p) : fail(p, v, path, "larger than %u bytes as JSON", HOST_MAX_JSON);
      if (rc == 0) rc = add_setting(p, cfg, ks, b.s, line_of(v));
      free_secret_str(b.s);
      continue;
    }
    char *vs = NULL;
    rc = setting_value(p, cfg, v, path, &vs);
    if (rc == 0) rc = apply_typed_setting(p, cfg, ks, vs, v, path);
    if (rc == 0) rc = add_setting(p, cfg, ks, vs, line_of(v));
    free_secret_str(vs);
  }
  free(l.items);
  if (rc == 0 && cfg->store_virtual_keys && cfg->access_mode == HOST_ACCESS_UNSET) {
    /* LiteLLM's key hooks look only at store_virtual_keys, so its writes
     * happen whatever access_mode says; the plugins enforce access_mode, so
     * the host hands them the mode LiteLLM effectively runs with. */
    cfg->access_mode = HOST_ACCESS_READ_AND_WRITE;
    cfg->access_mode_implied = 1;
    rc = add_setting(p, cfg, "access_mode", "read_and_write", line_of(m));
  }
  return rc;
}

/* LiteLLM names for backends kms-host ships under another name. */
static const char *plugin_for(const char *litellm_name) {
  if (!strcmp(litellm_name, "local")) return "env"; /* KeyManagementSystem.LOCAL */
  return litellm_name;
}

static int scalar_setting(parse_ctx *p, const kv_list *g, const char *key, const char *what,
                          yaml_node_t **out) {
  yaml_node_t *v = kv_get(g, key);
  *out = NULL;
  if (!v || is_null(v)) return 0;
  if (v->type != YAML_SCALAR_NODE) {
    char path[PATH_MAX_LEN];
    join_path(path, sizeof path, "general_settings", key);
    return fail(p, v, path, "expected %s, got %s", what, type_name(v));
  }
  *out = v;
  return 0;
}

static int parse_general(parse_ctx *p, host_config *cfg, yaml_node_t *g) {
  if (is_null(g)) return 0;
  if (g->type != YAML_MAPPING_NODE)
    return fail(p, g, "general_settings", "expected a mapping, got %s", type_name(g));
  kv_list l;
  if (map_items(p, g, "general_settings", 1, &l) != 0) return -1;
  yaml_node_t *v;
  int rc = scalar_setting(p, &l, "key_management_system", "a plugin name", &v);
  if (rc == 0 && v) {
    char *written = NULL;
    rc = setting_value(p, cfg, v, "general_settings.key_management_system", &written);
    if (rc == 0 && !kms_plugin_name_valid(written))
      rc = fail(p, v, "general_settings.key_management_system",
                "'%s' is not a plugin name (lower-case letters, digits and '_', at most %d)",
                written, KMS_PLUGIN_NAME_MAX);
    if (rc == 0) {
      cfg->kms_written = written;
      written = NULL;
      if (!(cfg->kms = strdup(plugin_for(cfg->kms_written)))) rc = oom(p);
      cfg->kms_line = line_of(v);
    }
    free(written);
  }
  if (rc == 0) rc = scalar_setting(p, &l, "plugin_dir", "a directory", &v);
  if (rc == 0 && v && !(cfg->plugin_dir = resolve_path(p, sval(v)))) rc = oom(p);
  if (rc == 0) rc = scalar_setting(p, &l, "kms_db_path", "a file path", &v);
  if (rc == 0 && v && !(cfg->db_path = resolve_path(p, sval(v)))) rc = oom(p);
  if (rc == 0) rc = scalar_setting(p, &l, "master_key", "a key", &v);
  if (rc == 0 && v && !(cfg->master_key = strdup(sval(v)))) rc = oom(p);
  if (rc == 0) rc = scalar_setting(p, &l, "database_url", "a PostgreSQL URL", &v);
  /* Kept as written: an os.environ/ reference is resolved when the store is
   * opened (main.c), so commands that never open it (resolve) need no URL. */
  if (rc == 0 && v && !(cfg->database_url = strdup(sval(v)))) rc = oom(p);
  if (rc == 0) rc = scalar_setting(p, &l, "kms_env_fallback", "any, not_found or off", &v);
  if (rc == 0 && v) {
    const char *s = sval(v);
    if (!strcmp(s, "any")) cfg->fallback = HOST_FALLBACK_ANY;
    else if (!strcmp(s, "not_found")) cfg->fallback = HOST_FALLBACK_NOT_FOUND;
    else if (!strcmp(s, "off")) cfg->fallback = HOST_FALLBACK_OFF;
    else rc = fail(p, v, "general_settings.kms_env_fallback",
                   "expected any (LiteLLM's behaviour), not_found or off, got '%s'", s);
  }
  if (rc == 0 && (v = kv_get(&l, "key_management_settings")) != NULL)
    rc = parse_kms_settings(p, cfg, v);
  free(l.items);
  return rc;
}

/* model_list's shape (its references are found by walk()). */
static int check_model_list(parse_ctx *p, yaml_node_t *ml) {
  if (is_null(ml)) return 0;
  if (ml->type != YAML_SEQUENCE_NODE)
    return fail(p, ml, "model_list", "expected a list of models, got %s", type_name(ml));
  size_t n = (size_t)(ml->data.sequence.items.top - ml->data.sequence.items.start);
  for (size_t i = 0; i < n; i++) {
    yaml_node_t *m = yaml_document_get_node(p->doc, ml->data.sequence.items.start[i]);
    char path[128];
    snprintf(path, sizeof path, "model_list[%zu]", i);
    if (m->type != YAML_MAPPING_NODE)
      return fail(p, m, path, "expected a mapping with model_name and litellm_params, got %s",
                  type_name(m));
    kv_list l;
    if (map_items(p, m, path, 1, &l) != 0) return -1;
    yaml_node_t *mn = kv_get(&l, "model_name"), *lp = kv_get(&l, "litellm_params");
    free(l.items);
    if (mn && !is_null(mn) && mn->type != YAML_SCALAR_NODE)
      return fail(p, mn, path, "model_name: expected a string, got %s", type_name(mn));
    if (!lp || is_null(lp)) continue;
    char lpath[160];
    snprintf(lpath, sizeof lpath, "%s.litellm_params", path);
    if (lp->type != YAML_MAPPING_NODE)
      return fail(p, lp, lpath, "expected a mapping, got %s", type_name(lp));
    if (map_items(p, lp, lpath, 1, &l) != 0) return -1;
    free(l.items);
  }
  return 0;
}

/* environment_variables: NAME -> value (a reference is read from the
 * process environment). LiteLLM sets os.environ[NAME] = str(value). */
static int parse_env_vars(parse_ctx *p, host_config *cfg, yaml_node_t *m) {
  const char *base = "environment_variables";
  if (is_null(m)) return 0;
  if (m->type != YAML_MAPPING_NODE)
    return fail(p, m, base, "expected a mapping of NAME: value, got %s", type_name(m));
  kv_list l;
  if (map_items(p, m, base, 1, &l) != 0) return -1;
  int rc = 0;
  cfg->env_vars = calloc(l.n ? l.n : 1, sizeof *cfg->env_vars);
  if (!cfg->env_vars) rc = oom(p);
  for (size_t i = 0; i < l.n && rc == 0; i++) {
    const char *k = l.items[i].key;
    yaml_node_t *v = l.items[i].v;
    char path[PATH_MAX_LEN];
    join_path(path, sizeof path, base, k);
    if (!*k || strchr(k, '='))
      rc = fail(p, l.items[i].k, path, "not an environment variable name (empty or has '=')");
    else if (is_null(v))
      rc = fail(p, v, path, "has no value (LiteLLM would export the text 'None'); give it one "
                "or remove it");
    else if (v->type != YAML_SCALAR_NODE)
      rc = fail(p, v, path, "expected a scalar value, got %s", type_name(v));
    if (rc != 0) break;
    const char *s = sval(v);
    int b;
    /* PyYAML turns plain true/yes/on into True; str(True) is "True". */
    if (v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && strcmp(s, "1") && strcmp(s, "0") &&
        host_parse_bool(s, &b))
      s = b ? "True" : "False";
    char *value = NULL;
    if ((rc = ref_name(p, s, &value)) != HOST_OK) break;
    if (value) {
      /* against the process environment and the entries before this one */
      const char *e = value[0] ? host_env_lookup(cfg, value) : NULL;
      if (!e) rc = fail(p, v, path, "%s: environment variable '%s' is not set", s, value);
      free(value);
      value = rc == 0 ? strdup(e) : NULL;
    } else {
      value = strdup(s);
    }
    if (rc == 0 && (!value || !(cfg->env_vars[cfg->n_env_vars].name = strdup(k)))) {
      free_secret_str(value);
      rc = oom(p);
    }
    if (rc != 0) break;
    cfg->env_vars[cfg->n_env_vars].value = value;
    cfg->env_vars[cfg->n_env_vars].line = line_of(v);
    cfg->n_env_vars++;
  }
  free(l.items);
  return rc;
}

/* ------------------------------------------------ the document */

/* Before libyaml builds the document: refuse nesting deeper than the limit
 * (libyaml's scanner is quadratic in the depth: 200000 '[' took minutes). */
static host_status check_depth(const char *text, size_t len, const char *name, host_result *r) {
  yaml_parser_t parser;
  yaml_event_t ev;
  if (!yaml_parser_initialize(&parser))
    return host_fail(r, HOST_CONFIG, "%s: out of memory", name);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  int depth = 0;
  host_status rc = HOST_OK;
  for (;;) {
    if (!yaml_parser_parse(&parser, &ev)) break; /* the loader reports it */
    yaml_event_type_t t = ev.type;
    size_t line = ev.start_mark.line + 1;
    yaml_event_delete(&ev);
    if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) {
      if (++depth > HOST_MAX_DEPTH) {
        rc = host_fail(r, HOST_CONFIG, "%s:%zu: (config): nested deeper than %d levels; no "
                       "gateway config needs that", name, line, HOST_MAX_DEPTH);
        break;
      }
    } else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) {
      depth--;
    } else if (t == YAML_STREAM_END_EVENT) {
      break;
    }
  }
  yaml_parser_delete(&parser);
  return rc;
}

/* A scalar holding NUL (a "\0" escape) would be cut short as a C string. */
static int check_nul(parse_ctx *p) {
  for (yaml_node_t *n = p->doc->nodes.start; n < p->doc->nodes.top; n++) {
    if (n->type != YAML_SCALAR_NODE) continue;
    if (strlen((const char *)n->data.scalar.value) != n->data.scalar.length)
      return fail(p, n, "(config)", "a value or key contains a NUL character (\\0); remove it");
  }
  return 0;
}

/* litellm_settings.key_generation_settings set (not null): LiteLLM then
 * refuses /key/generate for a team_id it has no team for (serve does too).
 * Nothing else of litellm_settings is read; a litellm_settings that is not
 * a mapping stays ignored, as before. The last of duplicate keys counts,
 * as PyYAML. */
static int parse_litellm_settings(parse_ctx *p, host_config *cfg, yaml_node_t *ls) {
  if (ls->type != YAML_MAPPING_NODE) return 0;
  kv_list l;
  if (map_items(p, ls, "litellm_settings", 0, &l) != 0) return -1;
  yaml_node_t *kgs = NULL;
  for (size_t i = 0; i < l.n; i++)
    if (!strcmp(l.items[i].key, "key_generation_settings")) kgs = l.items[i].v;
  cfg->key_generation_settings = kgs && !is_null(kgs);
  free(l.items);
  return 0;
}

static int parse_document(parse_ctx *p, host_config *cfg, yaml_node_t *root) {
  if (check_nul(p) != 0) return -1;
  kv_list l;
  if (map_items(p, root, "", 1, &l) != 0) return -1;
  yaml_node_t *ev = kv_get(&l, "environment_variables"), *g = kv_get(&l, "general_settings"),
              *ml = kv_get(&l, "model_list"), *ls = kv_get(&l, "litellm_settings");
  free(l.items);
  if (ls && parse_litellm_settings(p, cfg, ls) != 0) return -1;
  /* environment_variables first: every reference after sees them. */
  if (ev && parse_env_vars(p, cfg, ev) != 0) return -1;
  if (g && parse_general(p, cfg, g) != 0) return -1;
  walk_ctx w = {HOST_REF_NO_MODEL, "", 0};
  if (walk(p, cfg, root, "", 0, &w) != 0) return -1;
  return ml ? check_model_list(p, ml) : 0;
}

host_status host_config_parse(const char *text, size_t len, const char *name,
                              const char *base_dir, host_config *cfg, host_result *r) {
  memset(cfg, 0, sizeof *cfg);
  parse_ctx p = {NULL, name, base_dir, r, 0, 0};
  if (!(cfg->prefix = strdup("litellm/"))) return oom(&p);
  if (check_depth(text, len, name, r) != HOST_OK) {
    host_config_free(cfg);
    return HOST_CONFIG;
  }
  yaml_parser_t parser;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&parser)) {
    host_config_free(cfg);
    return oom(&p);
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  if (!yaml_parser_load(&parser, &doc)) {
    host_fail(r, HOST_CONFIG, "%s:%d: YAML syntax error: %s%s%s", name,
              (int)(parser.problem_mark.line + 1), parser.problem ? parser.problem : "invalid",
              parser.context ? " " : "", parser.context ? parser.context : "");
    yaml_parser_delete(&parser);
    host_config_free(cfg);
    return HOST_CONFIG;
  }
  p.doc = &doc;
  host_status rc = HOST_OK;
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root || is_null(root)) {
    rc = host_fail(r, HOST_CONFIG, "%s: the config is empty", name);
  } else if (root->type != YAML_MAPPING_NODE) {
    rc = fail(&p, root, "(top level)", "expected a mapping, got %s", type_name(root));
  } else if (parse_document(&p, cfg, root) != 0) {
    rc = HOST_CONFIG; /* p.r holds the message */
  }
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  if (rc != HOST_OK) host_config_free(cfg);
  return rc;
}

static char *read_file(const char *path, size_t *len, host_result *r) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    host_fail(r, HOST_CONFIG, "cannot open config %s: %s", path, strerror(errno));
    return NULL;
  }
  char *buf = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (n + 4096 > cap) {
      cap = cap ? cap * 2 : 8192;
      char *nb = cap > (16u << 20) ? NULL : realloc(buf, cap);
      if (!nb) {
        host_fail(r, HOST_CONFIG, cap > (16u << 20) ? "config %s is larger than 16 MiB"
                                                    : "out of memory reading %s", path);
        free(buf);
        fclose(f);
        return NULL;
      }
      buf = nb;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    host_fail(r, HOST_CONFIG, "cannot read config %s", path);
    return NULL;
  }
  *len = n;
  return buf;
}

host_status host_config_load(const char *path, host_config *cfg, host_result *r) {
  memset(cfg, 0, sizeof *cfg);
  size_t len = 0;
  char *buf = read_file(path, &len, r);
  if (!buf) return HOST_CONFIG;
  char *dir = strdup(path);
  if (!dir) {
    free(buf);
    return host_fail(r, HOST_CONFIG, "out of memory");
  }
  char *slash = strrchr(dir, '/');
  if (slash == dir) slash[1] = '\0';
  else if (slash) *slash = '\0';
  else strcpy(dir, ".");
  host_status rc = host_config_parse(buf, len, path, dir, cfg, r);
  free(buf);
  if (rc != HOST_OK) {
    free(dir);
    return rc;
  }
  cfg->dir = dir;
  if (!(cfg->path = strdup(path))) {
    host_config_free(cfg);
    return host_fail(r, HOST_CONFIG, "out of memory");
  }
  /* LiteLLM: os.environ[key] = value, before the secret manager starts. */
  for (size_t i = 0; i < cfg->n_env_vars; i++) {
    if (setenv(cfg->env_vars[i].name, cfg->env_vars[i].value, 1) != 0) {
      host_fail(r, HOST_CONFIG, "%s:%d: environment_variables.%s: cannot set it: %s", path,
                cfg->env_vars[i].line, cfg->env_vars[i].name, strerror(errno));
      host_config_free(cfg);
      return HOST_CONFIG;
    }
  }
  return HOST_OK;
}

void host_config_free(host_config *cfg) {
  if (!cfg) return;
  free(cfg->path);
  free(cfg->dir);
  free(cfg->kms);
  free(cfg->kms_written);
  free(cfg->plugin_dir);
  free(cfg->db_path);
  free_secret_str(cfg->master_key);
  free_secret_str(cfg->database_url);
  for (size_t i = 0; i < cfg->n_settings; i++) {
    free(cfg->settings[i].key);
    free_secret_str(cfg->settings[i].value);
  }
  free(cfg->settings);
  free(cfg->prefix);
  for (size_t i = 0; i < cfg->n_hosted_keys; i++) free(cfg->hosted_keys[i]);
  free(cfg->hosted_keys);
  for (size_t i = 0; i < cfg->n_env_vars; i++) {
    free(cfg->env_vars[i].name);
    free_secret_str(cfg->env_vars[i].value);
  }
  free(cfg->env_vars);
  for (size_t i = 0; i < cfg->n_refs; i++) {
    free(cfg->refs[i].model_name);
    free(cfg->refs[i].param);
    free(cfg->refs[i].value);
    free(cfg->refs[i].env_name);
    free(cfg->refs[i].path);
  }
  free(cfg->refs);
  memset(cfg, 0, sizeof *cfg);
}
