/*
 * config.c -- LiteLLM-shaped config.yaml -> struct host_config, with libyaml.
 *
 * What is read (everything else is accepted and ignored, as LiteLLM does):
 *   general_settings.key_management_system      scalar: plugin name
 *   general_settings.key_management_settings    mapping: every scalar is
 *       passed to the plugin as a string; the host also interprets
 *       store_virtual_keys (bool, default false),
 *       prefix_for_stored_virtual_keys (default "litellm/", '/' appended),
 *       access_mode (read_only | write_only | read_and_write),
 *       hosted_keys (sequence of names; passed to the plugin comma-joined)
 *   general_settings.plugin_dir                 scalar: plugin directory
 *   general_settings.kms_db_path                scalar: the host's database
 *   model_list[*].litellm_params.*              os.environ/NAME references
 * Relative paths resolve against the config file's directory.
 * Errors name the file, the line and the dotted key. Wrong types are errors;
 * duplicate keys in the mappings read here are errors (PyYAML would silently
 * keep the last one, which hides typos in a security setting).
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

typedef struct parse_ctx {
  yaml_document_t *doc;
  const char *name;
  const char *base_dir;
  char *err;
  size_t errsz;
  size_t work;            /* entries visited so far (see HOST_MAX_WORK) */
  unsigned char *checked; /* per node: its keys were checked for duplicates */
  size_t refs_cap;        /* capacity of cfg->refs */
} parse_ctx;

static int fail(parse_ctx *p, const yaml_node_t *n, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static int fail(parse_ctx *p, const yaml_node_t *n, const char *key, const char *fmt, ...) {
  char msg[HOST_ERR_SIZE];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n)
    snprintf(p->err, p->errsz, "%s:%d: %s: %s", p->name, (int)n->start_mark.line + 1, key, msg);
  else
    snprintf(p->err, p->errsz, "%s: %s: %s", p->name, key, msg);
  return -1;
}

static int oom(parse_ctx *p) {
  snprintf(p->err, p->errsz, "%s: out of memory", p->name);
  return -1;
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

static size_t map_size(const yaml_node_t *map) {
  return (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
}

/* Count `units` of parsing work; fails once the config, with its aliases
 * expanded, is larger than any real gateway config. */
static int spend(parse_ctx *p, const yaml_node_t *n, size_t units) {
  p->work += units;
  if (p->work <= HOST_MAX_WORK) return 0;
  return fail(p, n, "(config)",
              "too large once YAML aliases are expanded (more than %u entries visited); "
              "write the entries out or split the config", HOST_MAX_WORK);
}

typedef struct key_ref {
  const char *key;
  const yaml_node_t *node;
  size_t pos;
} key_ref;

static int key_ref_cmp(const void *a, const void *b) {
  const key_ref *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

/* Every scalar key of `map` at most once (duplicates are errors: PyYAML would
 * silently keep the last one, which hides typos in a security setting).
 * Sorted, so O(n log n), and done once per node however often aliases
 * repeat it. */
static int check_keys(parse_ctx *p, yaml_node_t *map, const char *path) {
  size_t idx = (size_t)(map - p->doc->nodes.start);
  if (p->checked[idx]) return 0;
  p->checked[idx] = 1;
  size_t n = map_size(map), m = 0;
  if (n < 2) return 0;
  key_ref *keys = malloc(n * sizeof *keys);
  if (!keys) return oom(p);
  for (size_t i = 0; i < n; i++) {
    const yaml_node_t *k = yaml_document_get_node(p->doc, map->data.mapping.pairs.start[i].key);
    const char *ks = sval(k);
    if (ks) keys[m++] = (key_ref){ks, k, i};
  }
  qsort(keys, m, sizeof *keys, key_ref_cmp);
  int rc = 0;
  for (size_t i = 1; i < m && rc == 0; i++)
    if (strcmp(keys[i - 1].key, keys[i].key) == 0) {
      char full[256];
      snprintf(full, sizeof full, "%s%s%s", path, *path ? "." : "", keys[i].key);
      rc = fail(p, keys[i].node, full, "duplicate key (first at line %d)",
                (int)keys[i - 1].node->start_mark.line + 1);
    }
  free(keys);
  return rc;
}

/* Look up `key` in a mapping; errors on a duplicate. Returns 0 and *out
 * (NULL if absent), or -1. */
static int map_get(parse_ctx *p, yaml_node_t *map, const char *path, const char *key,
                   yaml_node_t **out) {
  *out = NULL;
  if (spend(p, map, map_size(map)) != 0) return -1;
  yaml_node_t *first_key = NULL;
  for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top;
       pr++) {
    yaml_node_t *k = yaml_document_get_node(p->doc, pr->key);
    const char *ks = sval(k);
    if (!ks || strcmp(ks, key) != 0) continue;
    if (first_key) {
      char full[256];
      snprintf(full, sizeof full, "%s%s%s", path, *path ? "." : "", key);
      return fail(p, k, full, "duplicate key (first at line %d)",
                  (int)first_key->start_mark.line + 1);
    }
    first_key = k;
    *out = yaml_document_get_node(p->doc, pr->value);
  }
  return 0;
}

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

char *host_prefix_normalise(const char *prefix, char *err, size_t errsz) {
  size_t n = strlen(prefix);
  if (n == 0 || n > 200) {
    snprintf(err, errsz, "must be 1 to 200 characters");
    return NULL;
  }
  if (prefix[0] == '/') {
    snprintf(err, errsz, "must not start with '/'");
    return NULL;
  }
  for (const char *c = prefix; *c; c++) {
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
          *c == '_' || *c == '-' || *c == '.' || *c == '/')) {
      snprintf(err, errsz, "may only contain letters, digits, '_', '-', '.' and '/'");
      return NULL;
    }
  }
  /* No empty, "." or ".." segments: they would escape or alias paths. */
  const char *seg = prefix;
  for (;;) {
    const char *end = strchr(seg, '/');
    size_t len = end ? (size_t)(end - seg) : strlen(seg);
    if ((len == 0 && end) || (len == 1 && seg[0] == '.') ||
        (len == 2 && seg[0] == '.' && seg[1] == '.')) {
      snprintf(err, errsz, "has an empty, '.' or '..' path segment");
      return NULL;
    }
    if (!end) break;
    seg = end + 1;
    if (!*seg) break;
  }
  char *out = malloc(n + 2);
  if (!out) {
    snprintf(err, errsz, "out of memory");
    return NULL;
  }
  memcpy(out, prefix, n + 1);
  if (out[n - 1] != '/') {
    out[n] = '/';
    out[n + 1] = '\0';
  }
  return out;
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
    free(s->value);
    return oom(p);
  }
  cfg->n_settings++;
  return 0;
}

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
  int rc = add_setting(p, cfg, "hosted_keys", joined, (int)v->start_mark.line + 1);
  free(joined);
  return rc;
}

static int parse_kms_settings(parse_ctx *p, host_config *cfg, yaml_node_t *m) {
  const char *base = "general_settings.key_management_settings";
  if (is_null(m)) return 0;
  if (m->type != YAML_MAPPING_NODE)
    return fail(p, m, base, "expected a mapping, got %s", type_name(m));
  if (check_keys(p, m, base) != 0 || spend(p, m, map_size(m)) != 0) return -1;
  for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
    yaml_node_t *k = yaml_document_get_node(p->doc, pr->key);
    yaml_node_t *v = yaml_document_get_node(p->doc, pr->value);
    const char *ks = sval(k);
    if (!ks) return fail(p, k, base, "keys must be scalars");
    char path[256];
    snprintf(path, sizeof path, "%s.%s", base, ks);
    if (!strcmp(ks, "hosted_keys")) {
      if (is_null(v)) continue;
      if (parse_hosted_keys(p, cfg, v, path) != 0) return -1;
      continue;
    }
    if (is_null(v)) continue; /* `key:` with no value: unset */
    if (v->type != YAML_SCALAR_NODE)
      return fail(p, v, path, "expected a scalar (settings are passed to the plugin as strings), "
                  "got %s", type_name(v));
    const char *vs = sval(v);
    if (!strcmp(ks, "store_virtual_keys")) {
      if (!host_parse_bool(vs, &cfg->store_virtual_keys))
        return fail(p, v, path, "expected true or false, got '%s'", vs);
    } else if (!strcmp(ks, "prefix_for_stored_virtual_keys")) {
      char e[200];
      char *norm = host_prefix_normalise(vs, e, sizeof e);
      if (!norm) return fail(p, v, path, "'%s' %s", vs, e);
      free(cfg->prefix);
      cfg->prefix = norm;
    } else if (!strcmp(ks, "access_mode")) {
      if (!strcmp(vs, "read_only")) cfg->access_mode = HOST_ACCESS_READ_ONLY;
      else if (!strcmp(vs, "write_only")) cfg->access_mode = HOST_ACCESS_WRITE_ONLY;
      else if (!strcmp(vs, "read_and_write")) cfg->access_mode = HOST_ACCESS_READ_AND_WRITE;
      else
        return fail(p, v, path, "expected read_only, write_only or read_and_write, got '%s'", vs);
    }
    if (add_setting(p, cfg, ks, vs, (int)v->start_mark.line + 1) != 0) return -1;
  }
  return 0;
}

static int parse_general(parse_ctx *p, host_config *cfg, yaml_node_t *g) {
  if (is_null(g)) return 0;
  if (g->type != YAML_MAPPING_NODE)
    return fail(p, g, "general_settings", "expected a mapping, got %s", type_name(g));
  yaml_node_t *v;
  if (map_get(p, g, "general_settings", "key_management_system", &v) != 0) return -1;
  if (v && !is_null(v)) {
    if (v->type != YAML_SCALAR_NODE)
      return fail(p, v, "general_settings.key_management_system",
                  "expected a plugin name, got %s", type_name(v));
    if (!kms_plugin_name_valid(sval(v)))
      return fail(p, v, "general_settings.key_management_system",
                  "'%s' is not a plugin name (lower-case letters, digits and '_', at most %d)",
                  sval(v), KMS_PLUGIN_NAME_MAX);
    if (!(cfg->kms = strdup(sval(v)))) return oom(p);
    cfg->kms_line = (int)v->start_mark.line + 1;
  }
  if (map_get(p, g, "general_settings", "plugin_dir", &v) != 0) return -1;
  if (v && !is_null(v)) {
    if (v->type != YAML_SCALAR_NODE)
      return fail(p, v, "general_settings.plugin_dir", "expected a directory, got %s",
                  type_name(v));
    if (!(cfg->plugin_dir = resolve_path(p, sval(v)))) return oom(p);
  }
  if (map_get(p, g, "general_settings", "kms_db_path", &v) != 0) return -1;
  if (v && !is_null(v)) {
    if (v->type != YAML_SCALAR_NODE)
      return fail(p, v, "general_settings.kms_db_path", "expected a file path, got %s",
                  type_name(v));
    if (!(cfg->db_path = resolve_path(p, sval(v)))) return oom(p);
  }
  if (map_get(p, g, "general_settings", "key_management_settings", &v) != 0) return -1;
  if (v && parse_kms_settings(p, cfg, v) != 0) return -1;
  return 0;
}

static int add_ref(parse_ctx *p, host_config *cfg, size_t idx, const char *model_name,
                   const char *param, const char *value, char *env_name, int line) {
  if (cfg->n_refs >= HOST_MAX_REFS) {
    free(env_name);
    snprintf(p->err, p->errsz, "%s:%d: model_list: more than %u os.environ/ references", p->name,
             line, HOST_MAX_REFS);
    return -1;
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
  r->value = strdup(value);
  r->env_name = env_name;
  r->line = line;
  cfg->n_refs++;
  if (!r->model_name || !r->param || !r->value) return oom(p);
  return 0;
}

static int parse_model_list(parse_ctx *p, host_config *cfg, yaml_node_t *ml) {
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
    yaml_node_t *mn, *lp;
    if (map_get(p, m, path, "model_name", &mn) != 0) return -1;
    if (map_get(p, m, path, "litellm_params", &lp) != 0) return -1;
    const char *model_name = "";
    if (mn && !is_null(mn)) {
      if (mn->type != YAML_SCALAR_NODE)
        return fail(p, mn, path, "model_name: expected a string, got %s", type_name(mn));
      model_name = sval(mn);
    }
    if (!lp || is_null(lp)) continue;
    char lpath[160];
    snprintf(lpath, sizeof lpath, "%s.litellm_params", path);
    if (lp->type != YAML_MAPPING_NODE)
      return fail(p, lp, lpath, "expected a mapping, got %s", type_name(lp));
    if (check_keys(p, lp, lpath) != 0 || spend(p, lp, map_size(lp)) != 0) return -1;
    for (yaml_node_pair_t *pr = lp->data.mapping.pairs.start; pr < lp->data.mapping.pairs.top;
         pr++) {
      yaml_node_t *k = yaml_document_get_node(p->doc, pr->key);
      yaml_node_t *v = yaml_document_get_node(p->doc, pr->value);
      if (!sval(k)) return fail(p, k, lpath, "keys must be scalars");
      /* LiteLLM only looks at string values of litellm_params. */
      if (v->type != YAML_SCALAR_NODE || is_null(v)) continue;
      char *name = NULL;
      int r = host_env_ref_name(sval(v), &name);
      if (r < 0) return oom(p);
      if (r == 0) continue;
      if (add_ref(p, cfg, i, model_name, sval(k), sval(v), name,
                  (int)v->start_mark.line + 1) != 0)
        return -1;
    }
  }
  return 0;
}

int host_config_parse(const char *text, size_t len, const char *name, const char *base_dir,
                      host_config *cfg, char *err, size_t errsz) {
  memset(cfg, 0, sizeof *cfg);
  parse_ctx p = {NULL, name, base_dir, err, errsz, 0, NULL, 0};
  if (!(cfg->prefix = strdup("litellm/"))) return oom(&p);
  yaml_parser_t parser;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&parser)) return oom(&p);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  if (!yaml_parser_load(&parser, &doc)) {
    snprintf(err, errsz, "%s:%d: YAML syntax error: %s%s%s", name,
             (int)(parser.problem_mark.line + 1), parser.problem ? parser.problem : "invalid",
             parser.context ? " " : "", parser.context ? parser.context : "");
    yaml_parser_delete(&parser);
    host_config_free(cfg);
    return -1;
  }
  p.doc = &doc;
  p.checked = calloc((size_t)(doc.nodes.top - doc.nodes.start) + 1, 1);
  if (!p.checked) {
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    host_config_free(cfg);
    return oom(&p);
  }
  int rc = 0;
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root || is_null(root)) {
    snprintf(err, errsz, "%s: the config is empty", name);
    rc = -1;
  } else if (root->type != YAML_MAPPING_NODE) {
    rc = fail(&p, root, "(top level)", "expected a mapping, got %s", type_name(root));
  } else {
    yaml_node_t *g, *ml;
    rc = map_get(&p, root, "", "general_settings", &g);
    if (rc == 0 && g) rc = parse_general(&p, cfg, g);
    if (rc == 0) rc = map_get(&p, root, "", "model_list", &ml);
    if (rc == 0 && ml) rc = parse_model_list(&p, cfg, ml);
  }
  free(p.checked);
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  if (rc != 0) host_config_free(cfg);
  return rc;
}

int host_config_load(const char *path, host_config *cfg, char *err, size_t errsz) {
  memset(cfg, 0, sizeof *cfg);
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errsz, "cannot open config %s: %s", path, strerror(errno));
    return -1;
  }
  char *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len + 4096 > cap) {
      cap = cap ? cap * 2 : 8192;
      if (cap > (16u << 20)) {
        snprintf(err, errsz, "config %s is larger than 16 MiB", path);
        free(buf);
        fclose(f);
        return -1;
      }
      char *nb = realloc(buf, cap);
      if (!nb) {
        free(buf);
        fclose(f);
        snprintf(err, errsz, "out of memory reading %s", path);
        return -1;
      }
      buf = nb;
    }
    size_t r = fread(buf + len, 1, cap - len, f);
    len += r;
    if (r == 0) break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    snprintf(err, errsz, "cannot read config %s", path);
    return -1;
  }
  char *dir = strdup(path);
  if (!dir) {
    free(buf);
    snprintf(err, errsz, "out of memory");
    return -1;
  }
  char *slash = strrchr(dir, '/');
  if (slash == dir) slash[1] = '\0';
  else if (slash) *slash = '\0';
  else strcpy(dir, ".");
  int rc = host_config_parse(buf ? buf : "", len, path, dir, cfg, err, errsz);
  free(buf);
  if (rc != 0) {
    free(dir);
    return rc;
  }
  cfg->dir = dir;
  if (!(cfg->path = strdup(path))) {
    host_config_free(cfg);
    snprintf(err, errsz, "out of memory");
    return -1;
  }
  return 0;
}

void host_config_free(host_config *cfg) {
  if (!cfg) return;
  free(cfg->path);
  free(cfg->dir);
  free(cfg->kms);
  free(cfg->plugin_dir);
  free(cfg->db_path);
  for (size_t i = 0; i < cfg->n_settings; i++) {
    free(cfg->settings[i].key);
    free(cfg->settings[i].value);
  }
  free(cfg->settings);
  free(cfg->prefix);
  for (size_t i = 0; i < cfg->n_hosted_keys; i++) free(cfg->hosted_keys[i]);
  free(cfg->hosted_keys);
  for (size_t i = 0; i < cfg->n_refs; i++) {
    free(cfg->refs[i].model_name);
    free(cfg->refs[i].param);
    free(cfg->refs[i].value);
    free(cfg->refs[i].env_name);
  }
  free(cfg->refs);
  memset(cfg, 0, sizeof *cfg);
}
