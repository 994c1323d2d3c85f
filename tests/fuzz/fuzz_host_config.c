/*
 * fuzz_host_config.c -- arbitrary bytes as kms-host's config.yaml, through
 * host_config_parse (the in-memory entry point host_config_load uses after
 * reading the file), then the pure helpers that consume the result
 * (host_ref_uses_plugin, host_redact).
 *
 * Invariants:
 *   - failure: -1, a NUL-terminated message that names the file, *cfg zeroed;
 *   - success: key_management_system is a valid plugin name; the prefix is
 *     non-empty, ends with '/', has no empty/./.. segment or other byte than
 *     [A-Za-z0-9_.-/]; plugin_dir and kms_db_path are absolute (resolved
 *     against the config's directory); access_mode in range; every setting
 *     has a key and a value; hosted_keys is consistent with its count and
 *     with the comma-joined "hosted_keys" setting; every reference's value
 *     starts with "os.environ/" and env_name is the value with every marker
 *     removed (LiteLLM's str.replace), and names its location; an implied
 *     access_mode only comes with store_virtual_keys; environment_variables
 *     entries have a name without '=' and a value.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "host.h"

#define NAME "config.yaml"
#define BASE "/etc/gw"

static void check_ok(const host_config *c) {
  FUZZ_CHECK(!c->kms || kms_plugin_name_valid(c->kms), "kms '%s' is not a plugin name", c->kms);
  FUZZ_CHECK(c->prefix && *c->prefix, "no prefix");
  size_t pl = strlen(c->prefix);
  FUZZ_CHECK(c->prefix[pl - 1] == '/' && c->prefix[0] != '/', "prefix '%s'", c->prefix);
  for (const char *p = c->prefix; *p; p++)
    FUZZ_CHECK((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                   *p == '_' || *p == '-' || *p == '.' || *p == '/',
               "prefix byte 0x%02x", (unsigned char)*p);
  FUZZ_CHECK(!strstr(c->prefix, "//") && strncmp(c->prefix, "./", 2) && strncmp(c->prefix, "../", 3) &&
                 !strstr(c->prefix, "/./") && !strstr(c->prefix, "/../"),
             "prefix '%s' has an empty, '.' or '..' segment", c->prefix);
  FUZZ_CHECK(!c->plugin_dir || c->plugin_dir[0] == '/', "plugin_dir '%s' not absolute", c->plugin_dir);
  FUZZ_CHECK(!c->db_path || c->db_path[0] == '/', "kms_db_path '%s' not absolute", c->db_path);
  FUZZ_CHECK(c->access_mode <= HOST_ACCESS_READ_AND_WRITE, "access_mode %d", (int)c->access_mode);
  FUZZ_CHECK(c->store_virtual_keys == 0 || c->store_virtual_keys == 1, "store_virtual_keys");
  for (size_t i = 0; i < c->n_settings; i++)
    FUZZ_CHECK(c->settings[i].key && c->settings[i].value && c->settings[i].line > 0,
               "setting %zu incomplete", i);
  FUZZ_CHECK(c->hosted_keys_set || (!c->hosted_keys && !c->n_hosted_keys), "hosted_keys unset");
  if (c->hosted_keys_set) {
    size_t joined = 0;
    for (size_t i = 0; i < c->n_hosted_keys; i++) {
      FUZZ_CHECK(c->hosted_keys[i] != NULL, "hosted_keys[%zu] NULL", i);
      joined += strlen(c->hosted_keys[i]) + (i ? 1 : 0);
    }
    const char *setting = NULL;
    for (size_t i = 0; i < c->n_settings; i++)
      if (!strcmp(c->settings[i].key, "hosted_keys")) setting = c->settings[i].value;
    FUZZ_CHECK(setting && strlen(setting) == joined, "hosted_keys setting does not join the list");
  }
  FUZZ_CHECK(!c->access_mode_implied ||
                 (c->store_virtual_keys && c->access_mode == HOST_ACCESS_READ_AND_WRITE),
             "access_mode implied without store_virtual_keys");
  FUZZ_CHECK(c->fallback <= HOST_FALLBACK_OFF, "fallback %d", (int)c->fallback);
  FUZZ_CHECK(!c->kms == !c->kms_written, "kms and kms_written disagree");
  for (size_t i = 0; i < c->n_env_vars; i++)
    FUZZ_CHECK(c->env_vars[i].name && *c->env_vars[i].name && !strchr(c->env_vars[i].name, '=') &&
                   c->env_vars[i].value,
               "environment_variables entry %zu", i);
  for (size_t i = 0; i < c->n_refs; i++) {
    const host_ref *r = &c->refs[i];
    FUZZ_CHECK(r->model_name && r->param && r->value && r->env_name && r->path && r->line > 0,
               "ref %zu incomplete", i);
    FUZZ_CHECK(r->at_load == 0 || r->at_load == 1, "ref %zu at_load %d", i, r->at_load);
    FUZZ_CHECK(!strncmp(r->value, "os.environ/", 11), "ref value '%s' is not a reference", r->value);
    /* env_name == value with every "os.environ/" removed */
    const char *v = r->value, *n = r->env_name;
    while (*v) {
      if (!strncmp(v, "os.environ/", 11)) {
        v += 11;
        continue;
      }
      FUZZ_CHECK(*n == *v, "ref %zu: env_name '%s' from value '%s'", i, r->env_name, r->value);
      n++, v++;
    }
    FUZZ_CHECK(!*n, "ref %zu: env_name '%s' longer than expected", i, r->env_name);
    (void)host_ref_uses_plugin(c, r->env_name);
    char red[64];
    host_redact(r->value, strlen(r->value), red, sizeof red);
    FUZZ_CHECK(strlen(r->value) < 12 || !strstr(red, r->value + 3),
               "redaction shows more than 3 characters");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  host_result res;
  memset(&res, 'X', sizeof res);
  const char *err = res.msg;
  host_config cfg;
  host_status rc = host_config_parse((const char *)data, size, NAME, BASE, &cfg, &res);
  if (rc == HOST_OK) {
    check_ok(&cfg);
    host_config_free(&cfg);
  } else {
    FUZZ_CHECK(rc == HOST_CONFIG && res.status == HOST_CONFIG, "rc %d status %d", (int)rc,
               (int)res.status);
    FUZZ_CHECK(strnlen(err, sizeof res.msg) < sizeof res.msg, "error not NUL-terminated");
    FUZZ_CHECK(!strncmp(err, NAME, strlen(NAME)) && strlen(err) > strlen(NAME) + 2,
               "error '%s' does not name the file", err);
    static const host_config zero;
    FUZZ_CHECK(!memcmp(&cfg, &zero, sizeof cfg), "config not freed after an error");
  }
  return 0;
}
