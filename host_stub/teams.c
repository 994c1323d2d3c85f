/*
 * teams.c -- teams and the locations of their keys.
 *
 * A team (LiteLLM's team_id, with metadata.secret_manager_settings) names
 * WHERE the keys generated for it are stored: a location, i.e. the plugin's
 * per-call location options (ABI 1.1 kms_call_options.location; Vault:
 * namespace, mount, path_prefix). The host keeps a location as one text
 * ("namespace=team-a;mount=kv", keys in a fixed order, "" = the instance's
 * own) in the teams table, in each key row and in each outbox row, so a
 * key's delete and regenerate -- and a queued operation -- go to the place
 * the key was written, even after the team's settings change.
 *
 * Here: the location text (building it from settings, validating, splitting
 * it back into kms_setting pairs, describing it) and whether the plugin can
 * store keys there. Generating a key for a team is keys.c's; the SQL is in
 * store_sqlite.c / store_pg.c; the name rules in names.c. Pure functions.
 */
#include "host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const host_location_keys[HOST_LOCATION_NKEYS] = {"namespace", "mount",
                                                              "path_prefix"};

static int key_index(const char *key) {
  for (int i = 0; i < HOST_LOCATION_NKEYS; i++)
    if (!strcmp(host_location_keys[i], key)) return i;
  return -1;
}

host_status host_location_from_pairs(const kms_setting *pairs, size_t n, const char *what,
                                     char **out, host_result *r) {
  const char *vals[HOST_LOCATION_NKEYS] = {NULL, NULL, NULL};
  int seen[HOST_LOCATION_NKEYS] = {0, 0, 0};
  *out = NULL;
  for (size_t i = 0; i < n; i++) {
    int k = key_index(pairs[i].key);
    if (k < 0)
      return host_fail(r, HOST_USAGE, "%s: unknown key '%s' (known: namespace, mount, "
                       "path_prefix)", what, pairs[i].key);
    if (seen[k]++) return host_fail(r, HOST_USAGE, "%s: '%s' is given twice", what, pairs[i].key);
    const char *v = pairs[i].value;
    if (v && *v && !host_alias_valid(v))
      return host_fail(r, HOST_USAGE, "%s: %s '%s' is not valid: 1 to %d characters, "
                       "'/'-separated segments of letters, digits, '.', '_' and '-', each "
                       "starting with a letter or digit", what, pairs[i].key, v, HOST_ALIAS_MAX);
    vals[k] = v && *v ? v : NULL;
  }
  char text[HOST_LOCATION_TEXT_MAX] = "";
  size_t len = 0;
  for (int k = 0; k < HOST_LOCATION_NKEYS; k++)
    if (vals[k]) /* fits: 3 x (11 + 128 + 1) < 512 */
      len += (size_t)snprintf(text + len, sizeof text - len, "%s%s=%s", len ? ";" : "",
                              host_location_keys[k], vals[k]);
  return (*out = strdup(text)) ? HOST_OK : host_fail(r, HOST_FAILED, "out of memory");
}

host_status host_location_settings(const char *text, char *buf,
                                   kms_setting set[HOST_LOCATION_NKEYS], size_t *n,
                                   host_result *r) {
  *n = 0;
  if (!text || !*text) return HOST_OK;
  if (strlen(text) >= HOST_LOCATION_TEXT_MAX)
    return host_fail(r, HOST_FAILED, "a stored location is too long (%zu characters): the "
                     "database was not written by this kms-host", strlen(text));
  snprintf(buf, HOST_LOCATION_TEXT_MAX, "%s", text);
  char *save = NULL;
  for (char *part = strtok_r(buf, ";", &save); part; part = strtok_r(NULL, ";", &save)) {
    char *eq = strchr(part, '=');
    if (eq) *eq = '\0';
    int k = eq ? key_index(part) : -1;
    if (k < 0 || *n >= HOST_LOCATION_NKEYS || !host_alias_valid(eq + 1))
      return host_fail(r, HOST_FAILED, "a stored location ('%s') is not one this kms-host "
                       "writes (key=value pairs of namespace, mount, path_prefix)", text);
    set[*n].key = host_location_keys[k];
    set[*n].value = eq + 1;
    (*n)++;
  }
  return HOST_OK;
}

const char *host_location_describe(const char *text, char buf[HOST_LOCATION_TEXT_MAX]) {
  if (!text || !*text) return "default";
  size_t o = 0;
  for (const char *c = text; *c && o + 2 < HOST_LOCATION_TEXT_MAX; c++) {
    if (*c == ';') {
      buf[o++] = ',';
      buf[o++] = ' ';
    } else {
      buf[o++] = *c;
    }
  }
  buf[o] = '\0';
  return buf;
}

void host_team_row_free(host_team_row *t) {
  free(t->team_id);
  free(t->team_alias);
  free(t->location);
  free(t->updated_at);
  memset(t, 0, sizeof *t);
}

/* A key stored in a location other than the instance's own needs the
 * plugin's 1.1 write and delete with options: without them the loader would
 * refuse every delivery (never writing to the default place instead), so
 * the key change is refused before anything is committed. */
host_status host_location_supported(const kms_plugin *p, const char *location,
                                    host_result *r) {
  if (!location || !*location) return HOST_OK;
  if (p && KMS_SLOT_AVAILABLE(p, write_secret_opt) && p->write_secret_opt &&
      KMS_SLOT_AVAILABLE(p, delete_secret_opt) && p->delete_secret_opt)
    return HOST_OK;
  return host_fail(r, HOST_CONFIG, "plugin '%s' cannot store keys in a team's location (it "
                   "lacks ABI 1.1 write/delete with per-call options); use a plugin that has "
                   "them (hashicorp_vault) or a team without secret_manager_settings",
                   p ? p->name : "(none)");
}
