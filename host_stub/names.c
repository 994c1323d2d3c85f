/*
 * names.c -- the host's name rules, in one place: an alias (also a secret
 * name's tail and a location's namespace, mount or path prefix) and a team
 * id. Both are checked before a name reaches a store, a path or a URL.
 * Pure functions, any thread.
 */
#include "host.h"

#include <string.h>

int host_alias_valid(const char *a) {
  /* '/'-separated segments (LiteLLM stores tenant-a/gateway-key at
   * litellm/tenant-a/gateway-key), each [A-Za-z0-9][A-Za-z0-9._-]*: so no
   * empty, '.' or '..' segment and no control character. */
  size_t n = strlen(a);
  if (n == 0 || n > HOST_ALIAS_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = a[i];
    int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    int seg_start = i == 0 || a[i - 1] == '/';
    if (seg_start ? !alnum : !(alnum || c == '.' || c == '_' || c == '-' || c == '/')) return 0;
  }
  return a[n - 1] != '/';
}

int host_team_id_valid(const char *id) {
  size_t n = id ? strlen(id) : 0;
  if (n == 0 || n > HOST_TEAM_ID_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = id[i];
    int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (i == 0 ? !alnum : !(alnum || c == '.' || c == '_' || c == '-')) return 0;
  }
  return 1;
}
