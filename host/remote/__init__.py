"""Remote extension workers over ZeroMQ TCP with CurveZMQ (issue 14; ``docs/remote.md``). One concern per file:

* :mod:`.keys` — CURVE key pairs (``kithost keys new``), loading them safely, allow-lists of public keys;
* :mod:`.relay` — the worker's frame relay between one extension's local ``ipc://`` sockets and the host's
  CURVE-secured TCP sockets (frames pass unchanged: the per-frame HMAC and sequence numbers stay end to end);
* :mod:`.link` — the host↔worker link: msgpack requests (describe, launch, stop, status) over CURVE, and
  the host's client of it;
* :mod:`.worker` — ``kithost worker``: serves the link, launches extensions here with the host's own launch
  and confinement code, one relay per launch;
* :mod:`.handle` — the host's side: a remote extension's worker, its heartbeat, and the process handle the
  supervisor sees;
* :mod:`.commands` — the ``keys`` and ``worker`` subcommands (parsing only).
"""
