"""STAND-IN for the `litellm` package, for kmsplug's tests only (see ../README.md).

Written from LiteLLM's documented interface; holds just the module globals the
secret-manager code reads and writes."""

secret_manager_client = None
_key_management_system = None
_key_management_settings = None
