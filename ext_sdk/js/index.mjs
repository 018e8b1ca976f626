// kithost extension SDK for Node.js (20+). The authoring shape of the Python SDK (ext_sdk):
//
//   import { Block, Extension, main } from "../../ext_sdk/js/index.mjs";
//
//   export const ext = new Extension(); // name, version, permissions: the manifest's (extension.toml)
//   ext.on("tool_call", async (event, ctx) => { ... return Block("why"); }, { priority: 10, policy: "closed" });
//   ext.tool("name", "description", { type: "object", properties: {} }, async (args, ctx) => "output");
//   ext.command("name", "description", async (args, ctx) => "output");
//   main(import.meta, ext);
//
// See README.md next to this file, docs/PROTOCOL.md, and ./testing.mjs (FakeHost) for unit tests.

export { Context, HostCallError } from "./lib/context.mjs";
export { Extension } from "./lib/extension.mjs";
export { findManifest, MANIFEST_FILE, ManifestError, readIdentity } from "./lib/manifest.mjs";
export {
  Block,
  Cancel,
  Continue,
  Handled,
  Inject,
  PatchResult,
  ReplaceMessages,
  Result,
  Summary,
  Transform,
  toPlain,
} from "./lib/results.mjs";
export { main, run, SDK_VERSION } from "./lib/runtime.mjs";
export {
  ALWAYS_GRANTED,
  CALLS,
  customEventName,
  DEFAULT_PRIORITY,
  EVENTS,
  isCustom,
  PERMISSIONS,
  PROTOCOL_VERSIONS,
  specFor,
} from "./lib/schema.mjs";
