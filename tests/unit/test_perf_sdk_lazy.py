"""``ext_sdk``'s public names are imported on first use (PEP 562), from one derived table."""

from __future__ import annotations

import importlib

import pytest

import ext_sdk


def test_the_lazy_table_is_the_public_surface() -> None:
    assert sorted(ext_sdk._LAZY) == sorted(n for n in ext_sdk.__all__ if n != "__version__")


@pytest.mark.parametrize("name", sorted(ext_sdk._LAZY))
def test_each_public_name_is_its_module_object(name: str) -> None:
    module = importlib.import_module(f"ext_sdk.{ext_sdk._LAZY[name]}")
    assert getattr(ext_sdk, name) is getattr(module, name)
    assert name in dir(ext_sdk)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        ext_sdk.Nope  # noqa: B018
