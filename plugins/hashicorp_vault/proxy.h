/*
 * proxy.h -- which HTTP proxy, if any, a request to the Vault address goes
 * through. The plugin decides this itself (libcurl's own reading of the
 * proxy variables is switched off) so that the rules are Go's, which
 * Vault's client follows, plus one explicit variable:
 *
 *   - a loopback destination (localhost, *.localhost, 127.0.0.0/8, ::1) is
 *     never proxied: a local Vault or Vault Agent must not see its token go
 *     to a proxy;
 *   - NO_PROXY / no_proxy: "*" (no proxy at all), or a comma-separated list
 *     of host names ("example.com" matches it and its subdomains,
 *     ".example.com" only the subdomains, "*.example.com" likewise), IP
 *     addresses, CIDR ranges ("10.0.0.0/8", "fd00::/8"), each optionally
 *     with ":port";
 *   - the proxy: VAULT_PROXY_ADDR, VAULT_HTTP_PROXY or BAO_HTTP_PROXY when
 *     set (for every request, like Vault's client), else HTTPS_PROXY /
 *     https_proxy for https:// and HTTP_PROXY / http_proxy for http://.
 *     ALL_PROXY is not used (Go ignores it).
 * The loopback rule and NO_PROXY apply to the explicit proxy too.
 *
 * Thread-safety: pure function of immutable configuration.
 */
#ifndef VAULT_PROXY_H
#define VAULT_PROXY_H

#include "config.h"

/* The proxy URL for a request to scheme://host:port (host without
 * brackets, lower case), or NULL for a direct connection. */
const char *vault_proxy_for(const vault_config *cfg, const char *scheme, const char *host,
                            long port);

/* 1 if host is a loopback name or address. */
int vault_host_is_loopback(const char *host);

#endif
