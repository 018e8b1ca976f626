// Running an extension's handlers for one request; shared by the process runtime and FakeHost
// (mirrors ext_sdk/handling.py).
//
// Contract of HandlerRunner.runItem (one event item of an `event` or `batch` request):
//   * `handler` set → run that subscription only; `handler` null/absent → run every subscription of the
//     extension for that event, by priority then registration order (notify items), and report the first
//     failure.
//   * Resolves to the wire result item `{ok: true, result}` or `{ok: false, error}`; it never rejects. A
//     handler's stack is written to stderr (the host keeps it in the extension's log).
//   * A result is normalised (toPlain, then toWire) and checked against the event's result schema here, so
//     a wrong result is reported with the handler's name.

import { Context } from "./context.mjs";
import { toPlain } from "./results.mjs";
import { check, SchemaError, specFor } from "./schema.mjs";
import { toWire, WireValueError } from "./values.mjs";

function describe(err) {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return `${typeof err}: ${String(err)}`;
}

function fnName(fn) {
  return fn.name || "<anonymous handler>";
}

function logStack(err, log) {
  log(err instanceof Error && err.stack ? err.stack : `thrown: ${String(err)}`);
}

/** Check `result` (already plain) against `spec`'s result schema; throws SchemaError. */
export function checkResult(spec, result) {
  if (spec.result === null) throw new SchemaError("result", `'${spec.name}' takes no result`);
  check(spec.result, result, "result");
}

/** Runs one extension's handlers, tools and commands. */
export class HandlerRunner {
  /**
   * @param {import("./extension.mjs").Extension} extension
   * @param {(method: string, args: object) => Promise<any>} caller how ctx calls reach the host
   * @param {{log?: (text: string) => void}} [options] where handler stacks go (default: stderr)
   */
  constructor(extension, caller, { log = (text) => process.stderr.write(`${text}\n`) } = {}) {
    this.extension = extension;
    this._caller = caller;
    this._log = log;
    this._byEvent = new Map();
    const subs = extension.subscriptions;
    const order = [...subs.keys()].sort((a, b) => subs[a].priority - subs[b].priority || a - b);
    for (const i of order) {
      const list = this._byEvent.get(subs[i].event) ?? [];
      list.push(subs[i]);
      this._byEvent.set(subs[i].event, list);
    }
    /** Name of the event being handled, or null (read by the control loop for `pong`). */
    this.current = null;
    /** When the current handler started (performance.now()). */
    this.busySince = 0;
  }

  /** Run one event item; never rejects. */
  async runItem(event, handler, data) {
    const subs = this.extension.subscriptions;
    if (handler !== null && handler !== undefined) {
      const index = Number(handler);
      if (!Number.isInteger(index) || index < 0 || index >= subs.length || subs[index].event !== event) {
        return { ok: false, error: `no handler #${handler} for '${event}'` };
      }
      return this._run(subs[index], data);
    }
    let firstError = null;
    for (const sub of this._byEvent.get(event) ?? []) {
      const out = await this._run(sub, data);
      if (!out.ok && firstError === null) firstError = out;
    }
    return firstError ?? { ok: true, result: null };
  }

  _begin(name) {
    this.current = name;
    this.busySince = performance.now();
  }

  _end() {
    this.current = null;
  }

  async _run(sub, data) {
    const spec = specFor(sub.event);
    this._begin(sub.event);
    try {
      const value = await sub.fn(data, new Context(this._caller, sub.event));
      const plain = toPlain(sub.event, value);
      if (plain === null) return { ok: true, result: null };
      const result = toWire(plain, "result");
      if (spec === null) return { ok: false, error: `'${sub.event}' takes no result (returned ${JSON.stringify(plain)})` };
      checkResult(spec, result);
      return { ok: true, result };
    } catch (err) {
      if (err instanceof SchemaError || err instanceof WireValueError) {
        return { ok: false, error: `${fnName(sub.fn)} returned a bad result for '${sub.event}': ${err.message}` };
      }
      logStack(err, this._log);
      return { ok: false, error: `${fnName(sub.fn)} raised ${describe(err)}` };
    } finally {
      this._end();
    }
  }

  /** Run a tool (`args`: an object) or a command (`args`: a string); never rejects. */
  async invoke(target, name, args) {
    this._begin(`${target}:${name}`);
    try {
      if (target === "tool") {
        const tool = this.extension.tools.find((t) => t.name === name);
        if (tool === undefined) return { ok: false, error: `no tool '${name}'` };
        const out = await tool.fn({ ...(args ?? {}) }, new Context(this._caller, `tool:${name}`));
        return { ok: true, result: toolOutput(out) };
      }
      if (target !== "command") return { ok: false, error: `unknown invoke target '${target}'` };
      const command = this.extension.commands.find((c) => c.name === name);
      if (command === undefined) return { ok: false, error: `no command '${name}'` };
      const out = await command.fn(String(args ?? ""), new Context(this._caller, `command:${name}`));
      return { ok: true, result: toolOutput(out) };
    } catch (err) {
      logStack(err, this._log);
      return { ok: true, result: { content: `Error: ${describe(err)}`, is_error: true } };
    } finally {
      this._end();
    }
  }
}

function toolOutput(out) {
  if (out === null || out === undefined) return { content: "", is_error: false };
  if (typeof out === "object" && !Array.isArray(out) && "content" in out) {
    return { content: String(out.content ?? ""), is_error: Boolean(out.isError ?? out.is_error ?? false) };
  }
  return { content: typeof out === "string" ? out : JSON.stringify(out), is_error: false };
}
