// The combination loop: how the handlers of one event run and how their results combine.
//
// A line-by-line port of ext_sdk/combine.py (the one loop the host's dispatcher and the Python FakeHost
// run), used by the JS FakeHost. The event's rules — mode, stop rule, chained fields, default policy — are
// not copied here: they come from `x-kithost.events` of the protocol schema (specFor). A parity test
// (tests/test_js_sdk.py) runs the same scenarios through this loop and through combine.py and compares.
//
// Order (orderKey, the only ordering rule): priority (lower first), then load order of the extension, then
// registration order inside it.
//
// Per handler, in that order:
//   1. deadline — a bounded handler (deadlineMs set) waits at most min(its deadline, what is left of the
//      event budget); when nothing is left it fails with `budget` without being called, and a timeout cut
//      short by the budget is reported as `budget`. In-process handlers (deadlineMs null) are unbounded.
//   2. result check — a result must match the event's result schema; notify events take no result. A bad
//      result is a `bad_result` failure.
//   3. failure policy — a failed handler (HandlerFailure) is reported to onFailure; policy `open` skips it,
//      `closed` stops the event with a synthesised stop result whose reason names the handler.
//   4. chain — the event's chained fields of the result replace those of the payload the next handler sees.
//   5. stop — a result matching the event's stop rule ends the loop (first block/cancel/handled wins).
//
// Nothing a handler does rejects out of combine(); the Outcome carries the final payload, the stop (if
// any) and every failure.

import { checkResult } from "./handling.mjs";
import { SchemaError, STOP_REASON_FIELD } from "./schema.mjs";

/** Why one handler call failed (the values of ext_sdk.combine.FailureKind). */
export const FailureKind = Object.freeze({
  TIMEOUT: "timeout",
  BUDGET: "budget",
  ERROR: "error",
  BAD_RESULT: "bad_result",
  BAD_FRAME: "bad_frame",
  DISCONNECTED: "disconnected",
  NOT_RUNNING: "not_running",
  BUSY: "busy",
  CANCELLED: "cancelled",
});

/** A handler call failed; a transport throws it, combine() applies the policy. */
export class HandlerFailure extends Error {
  constructor(kind, detail) {
    super(detail);
    this.name = "HandlerFailure";
    this.kind = kind;
    this.detail = detail;
  }
}

/** The ordering rule: priority, then load order, then registration order. */
export function orderKey(priority, loadOrder, index) {
  return [priority, loadOrder, index];
}

function compareKeys(a, b) {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/**
 * `handlers` sorted by orderKey. A handler is
 * `{decl: {index, event, priority, deadlineMs, policy}, loadOrder, label, transport, owner?}` where
 * `transport(payload, timeoutMs|null)` resolves to the result map or null, or rejects with HandlerFailure.
 */
export function inOrder(handlers) {
  const key = (h) => orderKey(h.decl.priority, h.loadOrder, h.decl.index);
  return [...handlers].sort((a, b) => compareKeys(key(a), key(b)));
}

/** What one event produced. */
export class Outcome {
  constructor(event, payload, stop = null, failures = [], handlers = 0) {
    this.event = event;
    /** The payload after every chained result was applied (notify: as emitted). */
    this.payload = payload;
    /** Set when a gate stopped: `{by, result, reason, failed}`. */
    this.stop = stop;
    /** Every handler failure: `{handler, kind, detail, policy}`. */
    this.failures = failures;
    /** How many handlers were asked. */
    this.handlers = handlers;
  }

  /** Whether the event was blocked/cancelled/handled. */
  get stopped() {
    return this.stop !== null;
  }

  /** The stop reason, or "". */
  get reason() {
    return this.stop !== null ? this.stop.reason : "";
  }
}

function stopMatches(stop, result) {
  return result[stop.field] === stop.equals;
}

function applyChain(chain, payload, result) {
  if (chain.when !== null && chain.when !== undefined && result[chain.when.field] !== chain.when.equals) return;
  for (const name of chain.fields) {
    const value = result[name];
    if (value !== null && value !== undefined) payload[name] = value;
  }
}

function withTimeout(promise, timeoutMs) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new HandlerFailure(FailureKind.TIMEOUT, `no reply within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Run `handlers` (already inOrder) for `event` (whose spec is `spec`, from specFor) on `payload`.
 * `payload` is not mutated: chained fields go into a shallow copy. Resolves to an Outcome.
 * @param {{budgetMs?: number, onFailure?: (handler: object, failure: object) => void}} [options]
 */
export async function combine(event, spec, handlers, payload, { budgetMs = 0, onFailure = () => {} } = {}) {
  const current = { ...payload };
  const failures = [];
  let stop = null;
  const budgetEnd = performance.now() + budgetMs;
  const chain = spec.chain;
  const stopRule = spec.stop;
  for (const handler of handlers) {
    const deadline = handler.decl.deadlineMs ?? null;
    const owner = handler.owner ?? null;
    const started = performance.now();
    let result;
    try {
      if (deadline === null) {
        result = await handler.transport(current, null);
      } else {
        const left = budgetEnd - started;
        if (left <= 0) {
          throw new HandlerFailure(FailureKind.BUDGET, `event budget of ${budgetMs.toFixed(0)} ms was used up before it ran`);
        }
        const timeout = Math.min(deadline, left);
        try {
          result = await withTimeout(Promise.resolve().then(() => handler.transport(current, timeout)), timeout);
        } catch (err) {
          if (err instanceof HandlerFailure && (err.kind === FailureKind.TIMEOUT || err.kind === FailureKind.BUSY) && timeout < deadline) {
            throw new HandlerFailure(FailureKind.BUDGET, `stopped when the event budget ran out (${err.detail})`);
          }
          throw err;
        }
      }
      result = result ?? null;
      if (result !== null) {
        try {
          checkResult(spec, result);
        } catch (err) {
          if (err instanceof SchemaError) throw new HandlerFailure(FailureKind.BAD_RESULT, `bad result for ${event}: ${err.message}`);
          throw err;
        }
      }
    } catch (err) {
      const failure = err instanceof HandlerFailure ? err : new HandlerFailure(FailureKind.ERROR, String(err?.message ?? err));
      const policy = handler.decl.policy;
      const record = Object.freeze({ handler: handler.label, kind: failure.kind, detail: failure.detail, policy });
      owner?.recordFailure?.(failure.kind, policy);
      onFailure(handler, record);
      failures.push(record);
      if (policy === "closed") {
        stop = closedStop(spec, handler, record);
        break;
      }
      continue;
    }
    owner?.recordOk?.(performance.now() - started);
    if (result === null) continue;
    if (chain !== null && chain !== undefined) applyChain(chain, current, result);
    if (stopRule !== null && stopRule !== undefined && stopMatches(stopRule, result)) {
      const reason = String(result[STOP_REASON_FIELD] || "");
      stop = Object.freeze({ by: handler.label, result, reason: reason || `${event} stopped by ${handler.label}`, failed: false });
      owner?.recordStop?.();
      break;
    }
  }
  return new Outcome(event, current, stop, failures, handlers.length);
}

function closedStop(spec, handler, failure) {
  const reason = `${handler.label} failed (${failure.kind}: ${failure.detail}); failing closed`;
  const result = {};
  if (spec.stop !== null && spec.stop !== undefined) {
    result[spec.stop.field] = spec.stop.equals;
    result[STOP_REASON_FIELD] = reason;
  }
  return Object.freeze({ by: handler.label, result, reason, failed: true });
}
