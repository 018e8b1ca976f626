#!/usr/bin/env bash
# A Gemini CLI BeforeTool hook (matcher "run_shell_command"), as the hooks reference describes it:
# JSON on stdin; only the final JSON on stdout; {"decision": "deny", "reason": ...} blocks the tool.
set -u
input=$(cat)
if printf '%s' "$input" | grep -Eq '"command"[[:space:]]*:[[:space:]]*"[^"]*\brm[[:space:]]+(-[a-zA-Z]*r[a-zA-Z]*f|-[a-zA-Z]*f[a-zA-Z]*r)'; then
  echo "deny_rm.sh: denying a recursive forced delete" >&2
  printf '{"decision": "deny", "reason": "Denied by deny_rm.sh: rm -rf is not allowed in this project."}\n'
  exit 0
fi
printf '{"decision": "allow"}\n'
exit 0
