// tool-gate-js: block dangerous shell commands before they run (the JavaScript twin of permission-gate).
//
// A gate on `tool_call` for the `bash` tool. Fail-closed: if this extension crashes, hangs or misses its
// deadline, the host blocks the call rather than let an unchecked command through. Each block is counted in
// state (`blocked`) and shown to the user.
//
// It imports the SDK from this repository by a relative path, so it needs no `npm install` of its own
// (the SDK's dependencies are installed once, in ext_sdk/js, by `make`).

import { Block, Extension, main } from "../../ext_sdk/js/index.mjs";

export const ext = new Extension(); // name, version and permissions: read from extension.toml, their one source

/** [pattern, why] — matched against the whole command line. */
export const DANGEROUS = [
  [/\b(curl|wget)\b[^|]*\|\s*(sudo\s+)?(env\s+)?(ba|z|da|k)?sh\b/, "pipes a download into a shell"],
  [/(^|[;&|(`]|\$\()\s*sudo\b/, "runs a command as root (sudo)"],
  [/\brm\s+(-[a-zA-Z]*[rf][a-zA-Z]*\s+)+(\/|~|\$HOME|\*)(\s|$)/, "recursive delete of / , ~ or *"],
  [/\bmkfs(\.\w+)?\b/, "formats a filesystem"],
  [/\bdd\b.*\bof=\/dev\//, "writes raw to a device"],
  [/>\s*\/dev\/(sd|nvme|hd|vd)\w*/, "overwrites a disk device"],
  [/:\(\)\s*\{\s*:\s*\|\s*:\s*&\s*\}\s*;\s*:/, "fork bomb"],
  [/\bchmod\s+(-R\s+)?[0-7]*777\s+\/(\s|$)/, "makes / world-writable"],
  [/\b(shutdown|reboot|halt|poweroff)\b/, "stops the machine"],
];

/** Why `command` is dangerous, or null. */
export function whyDangerous(command) {
  for (const [pattern, why] of DANGEROUS) if (pattern.test(command)) return why;
  return null;
}

ext.on(
  "tool_call",
  async function gate(event, ctx) {
    if (event.tool_name !== "bash") return null;
    const args = event.parsed_args;
    const command = args !== null && typeof args === "object" && !Array.isArray(args) ? String(args.command ?? "") : "";
    const why = whyDangerous(command);
    if (why === null) return null;
    await ctx.setState("blocked", Number(await ctx.getState("blocked", 0)) + 1);
    await ctx.error(`blocked: ${JSON.stringify(command)} (${why})`);
    return Block(`tool-gate-js blocked this command: ${why}`);
  },
  { priority: 10, deadlineMs: 500, policy: "closed" },
);

main(import.meta, ext);
