"""secret-redactor: scrub secrets from tool results before they reach the model.

Chains on ``tool_result``: it sees the result as earlier handlers left it and
hands the redacted text to the next one. Fail-open by default (the event's
default); run with policy ``closed`` in the operator config if an unredacted
result must never reach the model.
"""

from __future__ import annotations

import re

from ext_sdk import Extension, PatchResult

ext = Extension()  # name, version and permissions: extension.toml

PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S)),
    ("aws access key", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("github token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    ("api key", re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}\b")),
    ("slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b")),
]
#: KEY=value / KEY: value where the key name says it is secret.
ASSIGNMENT = re.compile(
    r"(?im)^(\s*(?:export\s+)?[A-Z0-9_]*(?:SECRET|TOKEN|PASSWORD|PASSWD|API_KEY|PRIVATE_KEY)[A-Z0-9_]*\s*[:=]\s*)"
    r"(['\"]?)(?!\[REDACTED)([^\s'\"]{4,})\2"  # a value already redacted above is left alone
)


def redact(text: str) -> tuple[str, int]:
    """``text`` with secrets replaced by ``[REDACTED <kind>]``, and how many were found."""
    count = 0
    for kind, pattern in PATTERNS:
        text, n = pattern.subn(f"[REDACTED {kind}]", text)
        count += n
    text, n = ASSIGNMENT.subn(lambda m: f"{m.group(1)}{m.group(2)}[REDACTED]{m.group(2)}", text)
    return text, count + n


@ext.on("tool_result", priority=20, deadline_ms=500)
def scrub(event, ctx):  # type: ignore[no-untyped-def]
    clean, count = redact(event.content)
    if not count:
        return None
    ctx.info(f"redacted {count} secret(s) from {event.tool_name} output")
    return PatchResult(content=clean)
