"""Finding the bad extension: record what the host dispatched, replay it, bisect a symptom, call one handler.

One concern per file:

* :mod:`.record` — the recording file (JSON lines: a header naming the extensions, then one line per
  dispatched event with each handler's result and timing) and the recorder that writes it;
* :mod:`.symptom` — the ``--bad`` condition ("blocked:tool_call~rm", "failed", "changed:context_prepare")
  and where it shows in a list of event records;
* :mod:`.replay` — replay a recording against any set of extensions and report where results differ;
* :mod:`.bisect` — the search for the extension (or smallest set) that causes a symptom, over any
  ``reproduces(subset)`` test;
* :mod:`.call` — send one event to one freshly started extension: result, timing and its host calls;
* :mod:`.private` — the private host a replay or a call runs in (the operator's config, a scratch state
  file).
"""
