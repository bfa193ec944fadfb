"""Message classes by type name, for code that gets the name at run time (bags, shared builders)."""

from __future__ import annotations

import functools
import importlib
from typing import Any

__all__ = ["rclpy_type"]


@functools.cache
def rclpy_type(name: str) -> Any:
    """``"pkg/msg/Name"`` -> the rclpy message class.

    Raises:
        ImportError, AttributeError: the package or the type is not installed here.
    """
    package, _, cls = name.partition("/msg/")
    return getattr(importlib.import_module(f"{package}.msg"), cls)
