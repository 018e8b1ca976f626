// Unit-test an extension in-process, without a host (the JS counterpart of ext_sdk/testing.py).
//
// FakeHost runs an extension's handlers directly — no process, no socket — through the same combination
// loop the host uses (lib/combine.mjs, a port of ext_sdk/combine.py: order by priority then registration,
// the stop rule of gate events, chained fields, the result check, failure policy open/closed), with every
// event's rules read from the protocol schema (`x-kithost.events`), not hand-copied. What differs from a
// real host is only what a process adds:
//   * the payload you pass is checked against the event's payload schema, then copied through the real
//     msgpack codec, as if it crossed the wire (so 64-bit integers behave as in production);
//   * handlers are awaited in-process with no deadline (a handler that never settles hangs your test);
//   * ctx calls are answered from in-memory state, recorded for assertions, checked against their argument
//     schema, and refused (HostCallError) when the extension did not ask for the permission they need;
//   * a handler's stack goes to `host.logs` (not stderr); its failure detail is in `outcome.failures`.
//
//   import { FakeHost } from "../../ext_sdk/js/testing.mjs";
//   const host = await FakeHost.load(new URL("../index.mjs", import.meta.url));
//   const out = await host.emit("tool_call", FakeHost.toolCall("bash", { command: "sudo rm -rf /" }));
//   assert.ok(out.stopped && out.reason.includes("blocked"));

import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { combine, FailureKind, HandlerFailure, inOrder, Outcome } from "./lib/combine.mjs";
import { HostCallError } from "./lib/context.mjs";
import { Extension } from "./lib/extension.mjs";
import { HandlerRunner } from "./lib/handling.mjs";
import { ALWAYS_GRANTED, CALLS, check, customEventName, def, SchemaError, specFor } from "./lib/schema.mjs";
import { decode, encode, toWire, WireValueError } from "./lib/wire.mjs";

export { combine, FailureKind, HandlerFailure, inOrder, Outcome };

/** `value` as it arrives after a trip over the wire (msgpack, with the SDK's integer rules). */
export function overTheWire(value) {
  return decode(encode(value));
}

/**
 * A handler transport backed by a plain function `fn(payload) → result | null` (may be async); throwing a
 * HandlerFailure simulates a timeout, crash or bad reply. Every call's payload (a copy) and timeout are kept
 * in `calls`. Use it to drive combine() in tests of the combination rules themselves.
 */
export class FakeTransport {
  constructor(fn) {
    this._fn = fn;
    /** `[payload copy, timeoutMs]` of every call, in order. */
    this.calls = [];
    this.call = this.call.bind(this);
  }

  async call(payload, timeoutMs) {
    this.calls.push([{ ...payload }, timeoutMs]);
    return this._fn(payload);
  }
}

function isExtension(value) {
  return value instanceof Extension || (value !== null && typeof value === "object" && typeof value.helloFields === "function" && Array.isArray(value.subscriptions));
}

/** An in-memory host for one extension. */
export class FakeHost {
  /**
   * A fake host for `extension`. Its identity is completed first, as under a real host (Extension.resolve):
   * what the constructor was not given is read from the manifest found from `module` (the module that
   * defines the extension, e.g. its import.meta.url; FakeHost.load passes it) or given as `manifest`.
   * @param {Extension} extension
   * @param {{module?: string|URL|null}} [options]
   */
  constructor(extension, { module = null } = {}) {
    if (!isExtension(extension)) throw new TypeError("FakeHost(extension): not an Extension");
    if (typeof extension.resolve === "function") extension.resolve(module);
    this.extension = extension;
    /** Permissions in force: the always-granted ones plus those the extension asks for. */
    this.granted = new Set([...ALWAYS_GRANTED, ...extension.permissions]);
    /** `[level, text]` of every ctx.print/info/error. */
    this.printed = [];
    /** The extension's state namespace (key → value). */
    this.state = {};
    /** Session entries appended by the extension: `{id, type, data, timestamp}`. */
    this.entries = [];
    /** `[name, data]` of every ctx.emit. */
    this.emitted = [];
    /** Messages queued with ctx.sendMessage. */
    this.sent = [];
    /** What ctx.getMessages returns. */
    this.messages = [];
    /** Model reported by ctx.getInfo; changed by ctx.setModel. */
    this.model = "scripted/test";
    /** `[method, args]` of every ctx call, in order (refused ones included). */
    this.calls = [];
    /** Stacks of handlers, tools and commands that threw. */
    this.logs = [];
    this._ids = 0;
    this._runner = new HandlerRunner(extension, (method, args) => this._call(method, args), {
      log: (text) => this.logs.push(text),
    });
    this._handlers = new Map();
    extension.subscriptions.forEach((sub, index) => {
      const spec = specFor(sub.event);
      if (spec === null) throw new Error(`unknown event ${JSON.stringify(sub.event)}`);
      const policy = sub.policy ?? spec.default_policy;
      const decl = Object.freeze({ index, event: sub.event, priority: sub.priority, deadlineMs: null, policy });
      const handler = { decl, loadOrder: 0, label: extension.name, transport: this._transport(sub.event, index) };
      this._handlers.set(sub.event, inOrder([...(this._handlers.get(sub.event) ?? []), handler]));
    });
  }

  /**
   * A fake host for the extension module at `path` (a path or a file: URL). The module must export its
   * Extension (`export const ext = …` or `export default ext`); importing it does not start serving as long
   * as it ends with `main(import.meta, ext)`. The extension's identity is completed from the manifest found
   * from `path` (the first extension.toml in its folder or above), as the runtime does under the host.
   */
  static async load(path) {
    const url = path instanceof URL ? path.href : pathToFileURL(isAbsolute(String(path)) ? String(path) : resolve(String(path))).href;
    const mod = await import(url);
    const found = [...new Set(Object.values(mod).filter(isExtension))];
    if (found.length !== 1) {
      throw new Error(`${url}: expected exactly one exported Extension, found ${found.length} (export it: \`export const ext = new Extension()\`)`);
    }
    return new FakeHost(found[0], { module: url });
  }

  /** Everything printed, one line per call. */
  printedText() {
    return this.printed.map(([, text]) => text).join("\n");
  }

  /** Deliver `event` to the extension's handlers with the host's combination rules; resolves to an Outcome. */
  async emit(event, payload) {
    const spec = specFor(event);
    if (spec === null) throw new Error(`unknown event ${JSON.stringify(event)}`);
    check(spec.payload, toWire(payload, "payload"), "payload");
    const current = overTheWire(payload);
    return combine(event, spec, this._handlers.get(event) ?? [], current, { budgetMs: 0 });
  }

  /** Deliver custom event `name` with `data`, as emitted by `source`. */
  async emitCustom(name, data = null, source = "test") {
    return this.emit(customEventName(name), { name: name.replace(/^custom:/, ""), data, source });
  }

  _transport(event, index) {
    return async (payload) => {
      const item = await this._runner.runItem(event, index, payload);
      if (!item.ok) throw new HandlerFailure(FailureKind.ERROR, String(item.error));
      return item.result ?? null;
    };
  }

  /** A `tool_call` payload for `tool` with `args`. */
  static toolCall(tool, args, callId = "call_1") {
    return { tool_call_id: callId, tool_name: tool, tool_kind: "execute", input: JSON.stringify(args), parsed_args: args, source: "llm" };
  }

  /** A `tool_result` payload. */
  static toolResult(tool, content, { args = {}, isError = false, callId = "call_1" } = {}) {
    return {
      tool_call_id: callId,
      tool_name: tool,
      tool_kind: "execute",
      input: JSON.stringify(args),
      content,
      is_error: isError,
      metadata: "{}",
    };
  }

  /** Run one of the extension's tools; resolves to `{content, is_error}`. */
  async invokeTool(name, args = {}) {
    return this._invoke("tool", name, args);
  }

  /** Run one of the extension's slash commands; resolves to `{content, is_error}`. */
  async runCommand(name, args = "") {
    return this._invoke("command", name, args);
  }

  async _invoke(target, name, args) {
    const out = await this._runner.invoke(target, name, overTheWire(args));
    if (!out.ok) throw new Error(out.error);
    return out.result;
  }

  // ---------------------------------------------------------------- host calls

  async _call(method, args) {
    this.calls.push([method, args]);
    const spec = Object.hasOwn(CALLS, method) ? CALLS[method] : undefined;
    if (spec === undefined) throw new HostCallError(`unknown host call '${method}'`);
    if (!this.granted.has(spec.permission)) throw new HostCallError(`permission denied: ${method} needs '${spec.permission}'`);
    let plain;
    try {
      plain = decode(encode(toWire(args, "args")));
      check(def(`call.${method}.args`), plain, "args");
    } catch (err) {
      if (err instanceof SchemaError || err instanceof WireValueError) throw new HostCallError(`${method}: ${err.message}`);
      throw err;
    }
    switch (method) {
      case "print":
        this.printed.push([plain.level, plain.text]);
        return null;
      case "get_state":
        return Object.hasOwn(this.state, plain.key) ? overTheWire(this.state[plain.key]) : null;
      case "set_state":
        this.state[plain.key] = plain.value;
        return null;
      case "delete_state":
        delete this.state[plain.key];
        return null;
      case "list_state":
        return Object.keys(this.state).sort();
      case "append_entry": {
        this._ids += 1;
        const id = `e${this._ids}`;
        this.entries.push({ id, type: plain.type, data: plain.data, timestamp: new Date().toISOString() });
        return id;
      }
      case "get_entries":
        return overTheWire(this.entries.filter((e) => e.type === plain.type));
      case "emit":
        this.emitted.push([plain.name, plain.data]);
        return 0;
      case "get_messages":
        return overTheWire(this.messages);
      case "send_message":
        this.sent.push(plain.text);
        return null;
      case "set_model":
        this.model = plain.model;
        return null;
      case "get_info":
        return { session_id: "test", session_path: "", cwd: process.cwd(), model: this.model };
      default:
        throw new HostCallError(`FakeHost does not implement '${method}'`);
    }
  }
}
