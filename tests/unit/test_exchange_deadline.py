"""Exchange.call with a deadline already spent (a wait before it used it up): a handler failure, never a crash."""

from __future__ import annotations

from typing import NoReturn

import pytest

from ext_sdk.combine import FailureKind, HandlerFailure
from host.config import HostConfig
from host.exthost.exchange import Exchange
from host.exthost.stats import ExtensionStats


def not_running() -> NoReturn:
    raise HandlerFailure(FailureKind.NOT_RUNNING, "x is restarting")


def exchange() -> Exchange:
    return Exchange("x", HostConfig(), ExtensionStats(), lambda method, args, event_id: None, not_running,
                    lambda failure: "", lambda: None)


@pytest.mark.parametrize("spent", [0.0, -0.155, -5.0])
def test_a_spent_deadline_with_the_lock_free_goes_on_to_the_readiness_check(spent: float) -> None:
    with pytest.raises(HandlerFailure) as info:
        exchange().call("tool_call", 0, {}, spent)
    assert info.value.kind is FailureKind.NOT_RUNNING


def test_a_spent_deadline_with_the_lock_held_is_busy() -> None:
    ex = exchange()
    with ex.lock:
        with pytest.raises(HandlerFailure) as info:
            ex.call("tool_call", 0, {}, -0.2)
    assert info.value.kind is FailureKind.BUSY and "0 ms" in str(info.value)
