"""Runs the [hooks] of this folder's extension.toml with the hook adapter (see docs/hooks.md)."""

from ext_sdk.hooks import build_extension

ext = build_extension(__file__)
