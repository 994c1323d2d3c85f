"""vaultsim -- the Vault half of tests/vault_server (the HTTP half is tests/testserver).

  protocol.py      VaultProtocol: the seam to testserver (API paths, errors,
                   log redaction, Go's path handling, sealed/standby gates)
  core.py          Vault: state, namespaces, token store, ACL check, routing
  api.py           Req, Route, JSON bodies as Vault parses them, the envelope
  base.py          constants, Vault's error strings, VaultError
  convert.py       field conversion (Go framework rules), Go formatting
  model.py         Token, KVSecret, Mount, AuthMount, Namespace
  policy.py        HCL/JSON policies, ACL path priority, capabilities
  kv.py            KV v2 (and a minimal v1)
  sysapi.py        sys/ endpoints
  auth_token.py    auth/token/ and login-token issuing
  auth_cert.py     cert auth (TLS client certificates)
  auth_approle.py  AppRole auth
  clock.py         the server's time (tests advance it instead of sleeping)
  controls.py      Vault's test controls: seal, standby, clock, tokens
"""
