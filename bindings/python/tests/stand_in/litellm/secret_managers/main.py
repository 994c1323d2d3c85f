"""STAND-IN: litellm.secret_managers.main.get_secret, the custom-manager path.

Facts kept: the manager is asked only when access_mode is read_only or
read_and_write; hosted_keys limits which names go to it; a custom manager gets
sync_read_secret(name, optional_params=<settings>.model_dump()); None becomes
"No secret found"; any exception is logged and os.environ is used instead."""

import os

import litellm
from litellm._logging import verbose_logger
from litellm.integrations.custom_secret_manager import CustomSecretManager
from litellm.types.secret_managers.main import KeyManagementSystem


def _manager_reads():
    s = litellm._key_management_settings
    return (litellm.secret_manager_client is not None and s is not None
            and s.access_mode in ("read_only", "read_and_write"))


def get_secret(secret_name, default_value=None):
    if secret_name.startswith("os.environ/"):
        secret_name = secret_name[len("os.environ/"):]
    if not _manager_reads():
        value = os.environ.get(secret_name)
        return default_value if value is None else value
    settings = litellm._key_management_settings
    client = litellm.secret_manager_client
    try:
        if settings.hosted_keys is not None and secret_name not in settings.hosted_keys:
            return os.getenv(secret_name)
        if litellm._key_management_system != KeyManagementSystem.CUSTOM or \
                not isinstance(client, CustomSecretManager):
            raise ValueError("stand-in: only the custom secret manager path is reproduced")
        value = client.sync_read_secret(secret_name=secret_name, optional_params=settings.model_dump())
        if value is None:
            raise ValueError(f"No secret found in Custom Secret Manager for {secret_name}")
        return value
    except Exception as e:  # LiteLLM's fallback: log, then the environment
        verbose_logger.error(f"Defaulting to os.environ value for key={secret_name}. "
                             f"An exception occurred - {e}")
        return os.getenv(secret_name)
