"""A Codex PreToolUse hook (matcher "Bash"): deny recursive forced deletes.

Codex sends the tool call as JSON on stdin (``tool_name`` "Bash",
``tool_input.command``); printing ``hookSpecificOutput.permissionDecision =
"deny"`` with a reason blocks the call and shows the reason to the model.
"""

import json
import re
import sys

RM_RF = re.compile(r"\brm\s+(-[a-zA-Z]*r[a-zA-Z]*f|-[a-zA-Z]*f[a-zA-Z]*r|-r\s+-f|-f\s+-r)")


def main() -> int:
    data = json.load(sys.stdin)
    command = str((data.get("tool_input") or {}).get("command", ""))
    if data.get("tool_name") == "Bash" and RM_RF.search(command):
        print(json.dumps({"hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": "Denied by deny_rm.py: rm -rf is not allowed here.",
        }}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
