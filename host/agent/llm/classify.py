"""What a failed model call means: :func:`classify_error` (kind, status, retryable) and the error we raise.

A call is worth retrying only when the failure is transient — litellm's
``RateLimitError``, ``InternalServerError``, ``ServiceUnavailableError``,
``BadGatewayError``, ``Timeout``, ``APIConnectionError`` (subclasses
included), or a 408/409/429/5xx status — and not a configuration problem that
a 5xx merely wraps ("missing credentials": litellm reports a missing API key
as a 500). Authentication, permission and not-found errors never are, nor is
any other 4xx. Errors are told apart by class (``isinstance`` against
``litellm.exceptions``, loaded lazily with litellm), never by name; litellm's
mid-stream wrapper (``MidStreamFallbackError``) is unwrapped to the error it
carries. The reported ``kind`` is the error's class name. :func:`call_error` turns the verdict into
the :class:`host.agent.errors.LLMCallError` the agent sees: litellm's
exceptions never leave the llm layer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

from ..errors import LLMCallError
from .litellm_loader import litellm_module

__all__ = ["ErrorInfo", "call_error", "classify_error"]

_RETRYABLE_STATUS: Final = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
_NOT_TRANSIENT_HINTS: Final = ("missing credentials", "api key", "api_key", "authentication")


@dataclass(frozen=True, slots=True)
class _ErrorClasses:
    """The litellm exception classes the rules above name."""

    transient: tuple[type[BaseException], ...]
    permanent: tuple[type[BaseException], ...]
    mid_stream: type[BaseException]


@functools.cache
def _error_classes() -> _ErrorClasses:
    errors = litellm_module().exceptions
    return _ErrorClasses(
        transient=(errors.RateLimitError, errors.InternalServerError, errors.ServiceUnavailableError,
                   errors.BadGatewayError, errors.Timeout, errors.APIConnectionError),
        permanent=(errors.AuthenticationError, errors.PermissionDeniedError, errors.NotFoundError),
        mid_stream=errors.MidStreamFallbackError,
    )


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What an exception from a model call means for us."""

    #: The exception's class name (``RateLimitError``, ``Timeout``, ``ValueError``...).
    kind: str
    status_code: int | None
    retryable: bool
    message: str
    #: True when litellm says the error came before the first chunk reached us.
    pre_first_chunk: bool = False


def classify_error(exc: BaseException) -> ErrorInfo:
    """Classify ``exc`` (see the module doc)."""
    classes = _error_classes()
    pre_first = False
    if isinstance(exc, classes.mid_stream):
        pre_first = bool(getattr(exc, "is_pre_first_chunk", False))
        original = getattr(exc, "original_exception", None)
        if isinstance(original, BaseException):
            exc = original
    kind = type(exc).__name__
    raw_status = getattr(exc, "status_code", None)
    status = raw_status if isinstance(raw_status, int) else None
    message = str(getattr(exc, "message", "") or exc) or kind
    retryable = isinstance(exc, classes.transient) or status in _RETRYABLE_STATUS
    if isinstance(exc, classes.permanent) or (
        status is not None and 400 <= status < 500 and status not in _RETRYABLE_STATUS
    ):
        retryable = False
    if retryable and any(h in message.lower() for h in _NOT_TRANSIENT_HINTS):
        retryable = False
    return ErrorInfo(kind, status, retryable, message, pre_first)


def call_error(info: ErrorInfo, attempts: int, partial: bool) -> LLMCallError:
    """The error raised for a call that failed for good after ``attempts`` calls."""
    tail = f" (after {attempts} attempts)" if attempts > 1 else ""
    return LLMCallError(f"{info.message}{tail}", kind=info.kind, status_code=info.status_code,
                        retryable=info.retryable, attempts=attempts, partial=partial)
