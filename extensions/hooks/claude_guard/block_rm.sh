#!/usr/bin/env bash
# A Claude Code PreToolUse hook (matcher "Bash"), as the hooks reference describes it:
# the tool call arrives as JSON on stdin; exit 2 blocks it and stderr is the reason Claude is shown.
# No jq needed: the command is found in the raw JSON.
set -u
input=$(cat)
if printf '%s' "$input" | grep -Eq '"command"[[:space:]]*:[[:space:]]*"[^"]*\brm[[:space:]]+(-[a-zA-Z]*r[a-zA-Z]*f|-[a-zA-Z]*f[a-zA-Z]*r|-r[[:space:]]+-f|-f[[:space:]]+-r)'; then
  echo "Blocked by block_rm.sh: recursive forced delete (rm -rf) is not allowed; remove specific files instead." >&2
  exit 2
fi
exit 0
