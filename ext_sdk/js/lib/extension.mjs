// `Extension`: what an extension module declares — handlers, tools, commands, permissions
// (the authoring shape of ext_sdk/extension.py).
//
//   import { Block, Extension, main } from "../../ext_sdk/js/index.mjs";
//
//   export const ext = new Extension("tool-gate-js", { version: "1.0.0", permissions: ["conversation"] });
//
//   ext.on("tool_call", async (event, ctx) => {
//     if (event.input.includes("sudo")) return Block("no sudo");
//   }, { priority: 10, deadlineMs: 500, policy: "closed" });
//
//   main(import.meta, ext); // serve when the host runs this file; a no-op when a test imports it
//
// Ordering rule: the host runs handlers by priority (lower first), then by extension load order, then by
// registration order within the extension. Everything declared here is sent in the handshake (`hello`);
// nothing can be registered once the extension serves.

import { customEventName, DEFAULT_PRIORITY, isCustom, PERMISSIONS, specFor } from "./schema.mjs";

/** The declaration of one extension. Create exactly one per extension module. */
export class Extension {
  /**
   * @param {string} name the name the manifest gives
   * @param {{version?: string, permissions?: string[]}} [options]
   */
  constructor(name, { version = "0.0.0", permissions = [] } = {}) {
    if (typeof name !== "string" || name === "") throw new TypeError("Extension(name): name must be a non-empty string");
    if (typeof version !== "string") throw new TypeError("Extension: version must be a string");
    if (!Array.isArray(permissions)) throw new TypeError("Extension: permissions must be an array of strings");
    const unknown = permissions.filter((p) => !PERMISSIONS.includes(p));
    if (unknown.length) {
      throw new Error(`unknown permission(s) ${JSON.stringify(unknown)}; known: ${PERMISSIONS.join(", ")}`);
    }
    this.name = name;
    this.version = version;
    this.permissions = [...permissions];
    /** @type {{event: string, fn: Function, priority: number, deadlineMs: number|null, policy: string|null}[]} */
    this.subscriptions = [];
    /** @type {{name: string, description: string, parameters: object, fn: Function}[]} */
    this.tools = [];
    /** @type {{name: string, description: string, fn: Function}[]} */
    this.commands = [];
    this._sealed = false;
  }

  _open(what) {
    if (this._sealed) throw new Error(`${what}: ${this.name} is already serving; declare everything before main()/run()`);
  }

  /**
   * Register `fn(event, ctx)` for `event` (an agent event or `custom:<name>`). `fn` may be async; it returns
   * a typed result, a plain result object, or nothing.
   * @param {string} event
   * @param {(event: object, ctx: import("./context.mjs").Context) => any} fn
   * @param {{priority?: number, deadlineMs?: number, policy?: "open"|"closed"}} [options]
   *   `deadlineMs` asks for a deadline (the host clamps it to the operator's bounds); `policy` is "open"
   *   (skip this handler when it fails) or "closed" (block/cancel the event when it fails); the default
   *   depends on the event (closed for gate events, open otherwise).
   * @returns {Function} fn
   */
  on(event, fn, { priority = DEFAULT_PRIORITY, deadlineMs = null, policy = null } = {}) {
    this._open(`on(${JSON.stringify(event)})`);
    if (specFor(event) === null) {
      throw new Error(`unknown event ${JSON.stringify(event)}; see x-kithost.events in protocol.schema.json or use 'custom:<name>'`);
    }
    if (typeof fn !== "function") throw new TypeError(`on(${JSON.stringify(event)}): the handler must be a function`);
    if (!Number.isInteger(priority)) throw new TypeError(`priority must be an integer, not ${JSON.stringify(priority)}`);
    if (policy !== null && policy !== "open" && policy !== "closed") {
      throw new Error(`policy must be 'open' or 'closed', not ${JSON.stringify(policy)}`);
    }
    if (deadlineMs !== null && (!Number.isInteger(deadlineMs) || deadlineMs <= 0)) {
      throw new Error(`deadlineMs must be a positive integer, not ${JSON.stringify(deadlineMs)}`);
    }
    this.subscriptions.push({ event, fn, priority, deadlineMs, policy });
    return fn;
  }

  /** Register `fn` for custom event `name` (emitted by another extension's `ctx.emit`). */
  onCustom(name, fn, options = {}) {
    if (typeof name !== "string" || name === "" || name === "custom:") throw new Error("onCustom: name must be a non-empty string");
    const event = customEventName(name);
    if (!isCustom(event)) throw new Error(`onCustom: bad custom event name ${JSON.stringify(name)}`);
    return this.on(event, fn, options);
  }

  /**
   * Register a tool for the model: `fn(args, ctx)` returns a string (the tool's output), or
   * `{content, isError}`; a thrown error becomes an error result `Error: <message>`.
   * `parameters` (a JSON Schema of the arguments) may be left out.
   */
  tool(name, description, parameters, fn) {
    if (typeof parameters === "function" && fn === undefined) [parameters, fn] = [undefined, parameters];
    this._open(`tool(${JSON.stringify(name)})`);
    if (typeof name !== "string" || name === "") throw new TypeError("tool(name, ...): name must be a non-empty string");
    if (typeof fn !== "function") throw new TypeError(`tool(${JSON.stringify(name)}): fn must be a function`);
    if (this.tools.some((t) => t.name === name)) throw new Error(`tool ${JSON.stringify(name)} is declared twice`);
    const params = parameters ?? { type: "object", properties: {} };
    this.tools.push({ name, description: String(description ?? ""), parameters: params, fn });
    return fn;
  }

  /** Register a slash command: `fn(args: string, ctx)` returns its output (a string) or nothing. */
  command(name, description, fn) {
    if (typeof description === "function" && fn === undefined) [description, fn] = ["", description];
    this._open(`command(${JSON.stringify(name)})`);
    if (typeof name !== "string" || name.replace(/^\/+/, "") === "") throw new TypeError("command(name, ...): name must be a non-empty string");
    if (typeof fn !== "function") throw new TypeError(`command(${JSON.stringify(name)}): fn must be a function`);
    const bare = name.replace(/^\/+/, "");
    if (this.commands.some((c) => c.name === bare)) throw new Error(`command ${JSON.stringify(bare)} is declared twice`);
    this.commands.push({ name: bare, description: String(description ?? ""), fn });
    return fn;
  }

  /** Everything this extension declares, as handshake fields. */
  helloFields() {
    return {
      name: this.name,
      version: this.version,
      subscriptions: this.subscriptions.map((s) => {
        const out = { event: s.event, priority: s.priority };
        if (s.deadlineMs !== null) out.deadline_ms = s.deadlineMs;
        if (s.policy !== null) out.policy = s.policy;
        return out;
      }),
      tools: this.tools.map((t) => ({ name: t.name, description: t.description, parameters: t.parameters })),
      commands: this.commands.map((c) => ({ name: c.name, description: c.description })),
      permissions: [...this.permissions],
    };
  }
}
