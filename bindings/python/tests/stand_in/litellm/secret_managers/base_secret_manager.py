"""STAND-IN: litellm.secret_managers.base_secret_manager.BaseSecretManager.

Signatures as LiteLLM declares them (timeout is Optional[Union[float,
httpx.Timeout]] there; httpx is not needed here). The rotate/update defaults
only say that a subclass must provide them: kmsplug overrides both."""

from abc import ABC, abstractmethod
from typing import Any, Dict, Optional, Union

Timeout = Optional[Union[float, Any]]


class BaseSecretManager(ABC):
    @abstractmethod
    async def async_read_secret(self, secret_name: str, optional_params: Optional[dict] = None,
                                timeout: Timeout = None) -> Optional[str]:
        ...

    @abstractmethod
    def sync_read_secret(self, secret_name: str, optional_params: Optional[dict] = None,
                         timeout: Timeout = None) -> Optional[str]:
        ...

    @abstractmethod
    async def async_write_secret(self, secret_name: str, secret_value: str,
                                 description: Optional[str] = None,
                                 optional_params: Optional[dict] = None, timeout: Timeout = None,
                                 tags: Optional[Union[dict, list]] = None) -> Dict[str, Any]:
        ...

    @abstractmethod
    async def async_delete_secret(self, secret_name: str, recovery_window_in_days: Optional[int] = 7,
                                  optional_params: Optional[dict] = None,
                                  timeout: Timeout = None) -> dict:
        ...

    async def async_rotate_secret(self, current_secret_name: str, new_secret_name: str,
                                  new_secret_value: str, optional_params: Optional[dict] = None,
                                  timeout: Timeout = None) -> dict:
        raise NotImplementedError("stand-in: the subclass must provide async_rotate_secret")

    async def async_update_secret_value(self, secret_name: str, secret_value: str,
                                        optional_params: Optional[dict] = None,
                                        timeout: Timeout = None) -> dict:
        raise NotImplementedError("stand-in: the subclass must provide async_update_secret_value")
