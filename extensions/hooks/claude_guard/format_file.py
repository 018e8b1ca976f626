"""A Claude Code PostToolUse hook (matcher "Write|Edit"): tidy the file just written.

Reads the hook JSON on stdin, strips trailing whitespace from every line of
``tool_input.file_path`` and ends it with one newline, then tells Claude what
it changed through ``hookSpecificOutput.additionalContext`` (exit 0). A file it
cannot reach is left alone (exit 0, nothing said): a formatter never blocks.
"""

import json
import os
import sys


def main() -> int:
    data = json.load(sys.stdin)
    path = (data.get("tool_input") or {}).get("file_path")
    if not path:
        return 0
    if not os.path.isabs(path):
        path = os.path.join(data.get("cwd") or os.getcwd(), path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        print(f"format_file.py: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 0
    tidy = "\n".join(line.rstrip() for line in text.splitlines()).rstrip("\n") + "\n"
    if tidy == text:
        return 0
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(tidy)
    context = f"format_file.py tidied {os.path.basename(path)} (trailing whitespace, final newline)."
    print(json.dumps({"hookSpecificOutput": {"hookEventName": data.get("hook_event_name", "PostToolUse"),
                                             "additionalContext": context}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
