"""STAND-IN: what LiteLLM's key hooks hand the secret manager.

Only with store_virtual_keys. Name: prefix_for_stored_virtual_keys + alias (a
"/" added when the prefix lacks one). Generate and regenerate catch any
exception and log a warning (the key change itself stands); delete does not
catch. optional_params is the team's secret_manager_settings, or None."""

import litellm
from litellm._logging import verbose_proxy_logger


def secret_name(alias):
    prefix = litellm._key_management_settings.prefix_for_stored_virtual_keys
    return f"{prefix}{alias}" if prefix.endswith("/") else f"{prefix}/{alias}"


def _storing():
    s = litellm._key_management_settings
    return s is not None and s.store_virtual_keys is True


async def key_generated(alias, key, team_settings=None):
    if not _storing():
        return
    s = litellm._key_management_settings
    try:
        await litellm.secret_manager_client.async_write_secret(
            secret_name=secret_name(alias), description=s.description, secret_value=key,
            tags=s.tags, optional_params=team_settings)
    except Exception as e:
        verbose_proxy_logger.warning("Failed to store virtual key in secret manager: %s", e)


async def key_rotated(old_alias, new_alias, new_key, team_settings=None):
    if not _storing():
        return
    try:
        await litellm.secret_manager_client.async_rotate_secret(
            current_secret_name=secret_name(old_alias), new_secret_name=secret_name(new_alias),
            new_secret_value=new_key, optional_params=team_settings)
    except Exception as e:
        verbose_proxy_logger.warning("Failed to rotate virtual key in secret manager: %s", e)


async def key_deleted(alias, team_settings=None):
    if _storing():
        await litellm.secret_manager_client.async_delete_secret(
            secret_name=secret_name(alias), optional_params=team_settings)
