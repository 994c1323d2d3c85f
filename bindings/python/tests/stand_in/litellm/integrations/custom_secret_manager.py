"""STAND-IN: litellm.integrations.custom_secret_manager.CustomSecretManager.

Read and sync-read stay abstract; write and delete raise NotImplementedError
unless overridden; validate_environment and async_health_check return True by
default -- all as LiteLLM documents them."""

from typing import Any, Dict, Optional, Union

from litellm.secret_managers.base_secret_manager import BaseSecretManager, Timeout


class CustomSecretManager(BaseSecretManager):
    def __init__(self, secret_manager_name: Optional[str] = None, **kwargs):
        super().__init__()
        self.secret_manager_name = secret_manager_name or "custom_secret_manager"

    async def async_write_secret(self, secret_name: str, secret_value: str,
                                 description: Optional[str] = None,
                                 optional_params: Optional[dict] = None, timeout: Timeout = None,
                                 tags: Optional[Union[dict, list]] = None) -> Dict[str, Any]:
        raise NotImplementedError(f"Write operations are not implemented for {self.secret_manager_name}")

    async def async_delete_secret(self, secret_name: str, recovery_window_in_days: Optional[int] = 7,
                                  optional_params: Optional[dict] = None,
                                  timeout: Timeout = None) -> dict:
        raise NotImplementedError(f"Delete operations are not implemented for {self.secret_manager_name}")

    def validate_environment(self) -> bool:
        return True

    async def async_health_check(self, timeout: Timeout = None) -> bool:
        return True
