/*
 * kpc_proxy.h -- which HTTP proxy, if any, a request to a backend goes
 * through. The plugin decides this itself (libcurl's own reading of the
 * proxy variables is switched off) so that the rules are Go's (which
 * Vault's client follows; the AWS SDKs' are the same for these cases),
 * plus one explicit proxy the plugin may configure:
 *
 *   - a loopback destination (localhost, *.localhost, 127.0.0.0/8, ::1) is
 *     never proxied: a local Vault or Vault Agent must not see its token go
 *     to a proxy;
 *   - NO_PROXY / no_proxy: "*" (no proxy at all), or a comma-separated list
 *     of host names ("example.com" matches it and its subdomains,
 *     ".example.com" only the subdomains, "*.example.com" likewise), IP
 *     addresses, CIDR ranges ("10.0.0.0/8", "fd00::/8"), each optionally
 *     with ":port";
 *   - the proxy: the explicit one when set (Vault: VAULT_PROXY_ADDR,
 *     VAULT_HTTP_PROXY or BAO_HTTP_PROXY; for every request, like Vault's
 *     client), else HTTPS_PROXY /
 *     https_proxy for https:// and HTTP_PROXY / http_proxy for http://.
 *     ALL_PROXY is not used (Go ignores it).
 * The loopback rule and NO_PROXY apply to the explicit proxy too.
 *
 * Thread-safety: pure function of immutable configuration.
 */
#ifndef KPC_PROXY_H
#define KPC_PROXY_H

/* The proxy settings, read by the plugin's config code (normalised URLs
 * with a scheme; NULL when unset). Borrowed. */
typedef struct kpc_proxy_config {
  const char *proxy_explicit, *proxy_http, *proxy_https, *no_proxy;
} kpc_proxy_config;

/* The proxy URL for a request to scheme://host:port (host without
 * brackets, lower case), or NULL for a direct connection. */
const char *kpc_proxy_for(const kpc_proxy_config *cfg, const char *scheme, const char *host,
                          long port);

/* 1 if host is a loopback name or address. */
int kpc_host_is_loopback(const char *host);

#endif
