"""The offline ``scripted`` provider: model turns played from a script file, through real litellm streaming.

Modules (user documentation: ``docs/scripted-provider.md``):

* :mod:`.script` — a script in memory: steps, ``expect`` conditions, usage, pricing;
* :mod:`.script_file` — the JSON file format: reading and validating it, errors that say where;
* :mod:`.player` — which step answers each model call (one cursor per script file);
* :mod:`.provider` — the litellm custom provider that streams the steps.

Importing this package registers the provider with the llm layer
(:mod:`host.agent.llm.providers`), so ``scripted/<name>`` models work
everywhere the agent calls a model; the llm layer never imports it.
"""

from __future__ import annotations

from .provider import LIBRARY, PROVIDER, SCRIPT_ENV, SCRIPTED, ensure_registered, is_scripted, reset
from .script import Script
from .script_file import load_script, parse_script

__all__ = [
    "LIBRARY",
    "PROVIDER",
    "SCRIPTED",
    "SCRIPT_ENV",
    "Script",
    "ensure_registered",
    "is_scripted",
    "load_script",
    "parse_script",
    "reset",
]
