"""Resolving each handler's deadline and failure policy from the operator's config.

See :mod:`host.config` for the precedence rules; this module is their only
implementation. Keys in the override maps are ``"<extension>:<event>"``
(most specific) or ``"<extension>"``.
"""

from __future__ import annotations

from ext_sdk.events import EventSpec, Mode, Policy

from ..config import HostConfig

__all__ = ["default_deadline_ms", "effective_deadline_ms", "effective_policy"]


def default_deadline_ms(config: HostConfig, spec: EventSpec) -> int:
    """The deadline a handler gets when it asks for none."""
    d = config.deadlines
    if spec.hot:
        return d.hot_ms
    return {Mode.GATE: d.gate_ms, Mode.CHAIN: d.chain_ms, Mode.NOTIFY: d.notify_ms}[spec.mode]


def effective_deadline_ms(config: HostConfig, extension: str, spec: EventSpec, event: str,
                          requested: int | None) -> int:
    """Operator override, else the request (or default) clamped to ``[min_ms, max_ms]``."""
    overrides = config.deadline_overrides
    for key in (f"{extension}:{event}", extension):
        if key in overrides:
            return overrides[key]
    d = config.deadlines
    wanted = requested if requested is not None else default_deadline_ms(config, spec)
    return max(d.min_ms, min(d.max_ms, wanted))


def effective_policy(config: HostConfig, extension: str, spec: EventSpec, event: str,
                     declared: str | None) -> Policy:
    """Operator override > declared > the event's default."""
    for key in (f"{extension}:{event}", extension):
        if key in config.policy:
            return Policy(config.policy[key])
    return Policy(declared) if declared else spec.default_policy
