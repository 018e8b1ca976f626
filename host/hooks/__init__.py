"""Other agents' hook scripts as kithost extensions (issue 13; ``docs/hooks.md``).

==============  ==============================================================================
module          concern
==============  ==============================================================================
``engine``      the adapter that runs in the extension process (stdlib + ``ext_sdk`` only, copied
                into each hooks extension folder), the format tables, durations with units
``importer``    reading Claude Code / Gemini CLI / Codex settings into a hooks extension folder
``command``     ``kithost hooks import`` (argparse)
==============  ==============================================================================

Nothing is imported here, so ``host.config`` can use the durations of
``engine`` without loading the rest.
"""
