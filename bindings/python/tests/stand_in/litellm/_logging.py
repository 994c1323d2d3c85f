"""STAND-IN: LiteLLM's two loggers (names as LiteLLM uses them)."""

import logging

verbose_logger = logging.getLogger("LiteLLM")
verbose_proxy_logger = logging.getLogger("LiteLLM Proxy")
