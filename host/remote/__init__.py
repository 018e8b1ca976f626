"""Remote extension workers over ZeroMQ TCP with CurveZMQ (issue 14). One concern per file:

* :mod:`.keys` — CURVE key pairs (``kithost keys new``), loading them safely, allow-lists of public keys;
* :mod:`.relay` — the worker's frame relay between one extension's local ``ipc://`` sockets and the host's
  CURVE-secured TCP sockets (frames pass unchanged: the per-frame HMAC and sequence numbers stay end to end).
"""
