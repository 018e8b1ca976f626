"""The version-mismatch scenario, on a launch of its own: a host that speaks no version the extension speaks.

Contract of :func:`check_version_mismatch`: the extension is started with
``KITHOST_PROTOCOL_VERSIONS`` naming only the version after the newest this
host speaks. If it sends ``hello``, the kit answers ``reject`` with the
reason the host gives for no common version. Then:

* ``version-mismatch.exit`` — the process exits with status 4 within
  ``deadlines.shutdown_ms``. Exiting 4 without sending ``hello`` at all (it
  saw there is no common version itself) passes too;
* ``version-mismatch.stderr`` (advisory) — it wrote something to stderr
  after the reject (or, without a hello, at all), so that ``kithost ext
  logs`` says why it stopped.

The launch is always ended and cleaned up before returning.
"""

from __future__ import annotations

from ext_sdk.wire import ENV_VERSIONS, PROTOCOL_VERSIONS

from ..config import HostConfig
from ..exthost.manifest import Manifest
from ..exthost.process import describe_exit
from .catalog import CheckResult, fail, passed, skipped
from .launcher import KitRuntime
from .session import wait_hello

__all__ = ["FOREIGN_VERSION", "check_version_mismatch"]

#: The only version the kit's pretend host speaks in this scenario.
FOREIGN_VERSION = max(PROTOCOL_VERSIONS) + 1


def check_version_mismatch(runtime: KitRuntime, manifest: Manifest, config: HostConfig) -> list[CheckResult]:
    """``version-mismatch.exit`` and ``version-mismatch.stderr`` (see the module doc)."""
    launched = runtime.start(manifest, {ENV_VERSIONS: str(FOREIGN_VERSION)})
    try:
        wait = wait_hello(launched, config.deadlines.start_ms / 1000)
        grace = config.deadlines.shutdown_ms / 1000
        before = launched.log.total
        status: int | None
        if wait.incoming is None:
            if wait.exit_status is None:
                return [fail("version-mismatch.exit", f"no hello within {config.deadlines.start_ms} ms of the start "
                                                      f"(KITHOST_PROTOCOL_VERSIONS={FOREIGN_VERSION})"),
                        skipped("version-mismatch.stderr", "it neither sent hello nor exited")]
            status = wait.exit_status
            before = 0
            when = "without sending hello"
        else:
            offered = wait.incoming.msg.get("versions") if wait.incoming.msg is not None else "?"
            reason = f"no common protocol version (extension speaks {offered}, host speaks [{FOREIGN_VERSION}])"
            launched.peer.answer("reject", {"reason": reason})
            status = launched.wait_exit(grace)
            when = "after reject"
        launched.end_process()  # reaps it and joins the log readers: every line it wrote is in the log
        if status is None:
            exit_result = fail("version-mismatch.exit", f"still running {grace * 1000:.0f} ms after reject: when the "
                                                        "host rejects the handshake, exit with status 4")
        elif status == 4:
            exit_result = passed("version-mismatch.exit", f"exited with status 4 {when}")
        else:
            exit_result = fail("version-mismatch.exit", f"the process {describe_exit(status)} {when}: exit with "
                                                        "status 4 when the host rejects the handshake (the host "
                                                        "never retries 4)")
        lines = [text for _, _, stream, text in launched.log.since(before) if stream == "stderr" and text.strip()]
        if lines:
            stderr_result = passed("version-mismatch.stderr", f"stderr: {lines[-1][:160]}")
        else:
            stderr_result = fail("version-mismatch.stderr", f"wrote nothing to stderr {when}: print the reason "
                                                            "(reject.reason) before exiting, so the operator sees "
                                                            "why it stopped")
        return [exit_result, stderr_result]
    finally:
        launched.close()
