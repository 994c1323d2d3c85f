"""STAND-IN: how LiteLLM's proxy loads `custom_secret_manager: file.Class`."""

import importlib.util
import os

import litellm
from litellm.integrations.custom_secret_manager import CustomSecretManager


def load_custom_secret_manager(config_file_path):
    if not config_file_path:
        raise ValueError("CustomSecretManagerException - config_file_path is required")
    settings = litellm._key_management_settings
    path = getattr(settings, "custom_secret_manager", None) if settings is not None else None
    if not path:
        raise ValueError("CustomSecretManagerException - custom_secret_manager is required")
    file_name, class_name = path.split(".")  # exactly two parts, as in LiteLLM
    module_file = os.path.join(os.path.dirname(config_file_path), file_name) + ".py"
    spec = importlib.util.spec_from_file_location(class_name, module_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = getattr(module, class_name)
    if not issubclass(cls, CustomSecretManager):
        raise TypeError(f"CustomSecretManagerException - {class_name} must be a subclass of "
                        "CustomSecretManager")
    litellm.secret_manager_client = cls()  # no arguments
