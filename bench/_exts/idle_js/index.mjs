// bench-idle-js: an idle JavaScript extension with one no-op gate (the footprint of the Node SDK).
import { Extension, main } from "../../../ext_sdk/js/index.mjs";

export const ext = new Extension("bench-idle-js", { version: "0.1.0", permissions: ["conversation"] });

ext.on("tool_call", async function allow() {
  return null;
});

main(import.meta, ext);
