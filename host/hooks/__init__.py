"""Other agents' hook scripts as kithost extensions (issue 13; ``docs/hooks.md``).

==============  ==============================================================================
module          concern
==============  ==============================================================================
``importer``    reading Claude Code / Gemini CLI / Codex settings into a hooks extension folder
``command``     ``kithost hooks import`` (argparse)
==============  ==============================================================================

The adapter that runs in the extension process, the format tables and the durations with units are
:mod:`ext_sdk.hooks` (standard library + the SDK only: the sandbox lets an extension import the SDK, not the
host).
"""
