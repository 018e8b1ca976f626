// The extension process: connect, handshake, serve events; answer the control channel on its own loop
// (the Node counterpart of ext_sdk/runtime.py).
//
// Order of work, and the exit status at each failure (the host never retries 2, 3 or 4):
//   1. Without the host's environment (KITHOST_EVENTS …) print how to run an extension, exit 2.
//   2. Read the per-launch secret (KITHOST_SECRET_FILE: 32 raw bytes; the host deletes the file after the
//      handshake); unreadable → exit 2. Load the npm packages (zeromq, a native addon; @msgpack/msgpack;
//      smol-toml); missing → exit 3 with how to install them.
//   3. Complete the extension's identity from its manifest (Extension.resolve: the extension.toml found from
//      the module given to main(import.meta, ext), else from the program's main module); no name, an
//      unreadable manifest or an unknown permission → the reason on stderr, exit 3.
//   4. Connect the three sockets (events: REP, calls: REQ relaxed+correlate, control: REP), send `hello` on
//      the calls channel; `reject`, no answer within 10 s or a bad answer → reason on stderr, exit 4.
//   5. Start the control loop: answers `ping` with `pong {busy, current, busy_ms}` and `shutdown` with `bye`,
//      then ends the process as soon as no handler runs (at the latest after SHUTDOWN_GRACE_MS), exit 0.
//   6. Serve the events channel until shutdown: one request at a time, strictly in order, each answered with
//      exactly one `reply` (`event`/`batch` items run one after the other; `invoke` runs a tool or command).
//
// Dying with the host: the host starts every extension through its sandbox boot, which sets
// PR_SET_PDEATHSIG = SIGKILL before it execs `node` (and bubblewrap's --die-with-parent kills the whole
// sandbox). Node has no prctl, so nothing more is done here; a process started some other way should be
// watched by whoever started it.
//
// HEARTBEATS AND NODE'S SINGLE THREAD. The control loop is its own async loop: it waits on the control
// socket concurrently with the events loop, so a handler that *awaits* (I/O, timers, ctx calls, child
// processes, fetch …) never delays a pong, however long it takes. But all JavaScript of the process runs on
// one thread: a handler that computes *synchronously* for a long time (a busy loop, a huge JSON.parse,
// readFileSync of a slow file, Atomics.wait …) blocks the pongs for as long as it runs, and once that exceeds
// the host's `supervision.hang_ms` (5 s by default) the host kills the process as hung and restarts it. Keep
// handlers async; split long computations with `await new Promise(setImmediate)` now and then, or move them
// to a worker_threads Worker or a child process and await the result.

import { readFileSync, realpathSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { HostCallError } from "./context.mjs";
import { HandlerRunner } from "./handling.mjs";
import { loadToml } from "./manifest.mjs";
import { check, def, PROTOCOL_VERSIONS, SchemaError } from "./schema.mjs";

/** SDK version (package.json's), sent in `hello` as `node/<version>`. */
export const SDK_VERSION = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version;
/** How long a handler may keep running after `shutdown` before the process exits anyway. */
export const SHUTDOWN_GRACE_MS = 2000;
/** How long the handshake may take. */
export const HELLO_TIMEOUT_MS = 10_000;

const NOT_UNDER_HOST = (file, dir) => `\
This is a kithost extension; it runs inside kithost, not on its own.
  try:  kithost ext check ${dir}
  or:   kithost run -e ${dir} "your prompt"
(${file} was started without the host's environment: KITHOST_EVENTS is not set.)
`;

function say(text) {
  process.stderr.write(`kithost-sdk: ${text}\n`);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Why a process must end now with `status` (thrown inside the runtime, caught by run()). */
class Exit extends Error {
  constructor(status, message = "") {
    super(message);
    this.status = status;
  }
}

// Under a host, an error while the extension module loads (a bad declaration such as an unknown event, a
// throw or a rejected top-level await in the author's module) ends the process with status 3 — "broken
// extension code", which the host does not retry — and a module that never calls main()/run() is reported
// the same way instead of exiting 0. (A *syntax* or import/export error of the author's own file stops node
// before any of this code runs: node exits 1, which the host treats as a crash.) Once serving, an uncaught
// exception is a crash (status 1; the restart policy applies) and a stray rejected promise is only reported.
let serving = false;
let started = false;
if (process.env.KITHOST_EVENTS) {
  process.on("uncaughtException", (err) => {
    const what = serving ? "uncaught exception" : "the extension failed to load";
    process.stderr.write(`kithost-sdk: ${what}: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(serving ? 1 : 3);
  });
  process.on("beforeExit", () => {
    if (started) return;
    process.stderr.write("kithost-sdk: the extension module never started serving: end it with " +
      "`main(import.meta, ext)` (or `run(ext)`)\n");
    process.exit(3);
  });
}

// How long a ctx call waits for the host's answer (the same 30 s as the Python SDK; PROTOCOL.md §7).
const CALL_TIMEOUT_MS = 30_000;

function isTimeout(err) {
  return err?.code === "EAGAIN";
}

/** The extension's three sockets, their codecs, and host calls. */
class Link {
  constructor(zmq, wire, secret, env) {
    this.wire = wire;
    this.secret = secret;
    this.events = new zmq.Reply({ linger: 0 });
    this.calls = new zmq.Request({ linger: 0, relaxed: true, correlate: true });
    this.control = new zmq.Reply({ linger: 0 });
    // Connect all three before `hello`: the host may ping or stop us right after the handshake.
    this.events.connect(env[wire.ENV_EVENTS]);
    this.calls.connect(env[wire.ENV_CALLS]);
    this.control.connect(env[wire.ENV_CONTROL]);
    this.eventsOut = new wire.Sealer(secret);
    this.eventsIn = new wire.Opener(secret, wire.ACCEPT.events);
    this.callsOut = new wire.Sealer(secret);
    this.callsIn = new wire.Opener(secret, wire.ACCEPT.calls);
    this.controlOut = new wire.Sealer(secret);
    this.controlIn = new wire.Opener(secret, wire.ACCEPT.control, { maxFrame: wire.CONTROL_MAX_FRAME });
    this.env = env;
    this.callTimeoutMs = CALL_TIMEOUT_MS;
    this._nextCallId = 1;
    // One REQ socket carries one request at a time: calls are queued (a handler may fire several ctx calls
    // without awaiting each; they go out one after the other).
    this._callQueue = Promise.resolve();
    /** Id of the events-channel request being handled (sent with every call); null between requests. */
    this.eventId = null;
  }

  /** One host call for the request being handled; rejects with HostCallError. */
  call(method, args) {
    const eventId = this.eventId;
    if (eventId === null) return Promise.reject(new HostCallError("ctx is only usable while a handler runs"));
    const run = () => this._call(eventId, method, args);
    const result = this._callQueue.then(run, run);
    this._callQueue = result.catch(() => {});
    return result;
  }

  async _call(eventId, method, args) {
    if (this.eventId !== eventId) {
      throw new HostCallError(`ctx.${method}: the request it belongs to is over (its handler returned or timed out)`);
    }
    try {
      check(def(`call.${method}.args`), this.wire.toWire(args, "args"), "args");
    } catch (err) {
      if (err instanceof SchemaError || err instanceof this.wire.WireValueError) {
        throw new HostCallError(`ctx.${method}: ${err.message}`);
      }
      throw err;
    }
    const id = this._nextCallId++;
    await this.calls.send(this.callsOut.seal("call", { id, event_id: eventId, method, args }));
    const deadline = performance.now() + this.callTimeoutMs;
    for (;;) {
      const left = Math.ceil(deadline - performance.now());
      if (left <= 0) throw new HostCallError(`host did not answer '${method}' within ${this.callTimeoutMs} ms`);
      this.calls.receiveTimeout = left;
      let frame;
      try {
        [frame] = await this.calls.receive();
      } catch (err) {
        if (isTimeout(err)) continue;
        throw new HostCallError(`host call '${method}' failed: ${err.message}`);
      }
      let msg;
      try {
        msg = this.callsIn.open(frame);
      } catch (err) {
        if (!(err instanceof this.wire.FrameError)) throw err;
        say(`dropped frame from host: ${err.message}`);
        continue;
      }
      if (msg.k !== "answer" || msg.id !== id) continue; // a stale answer (REQ_CORRELATE drops most)
      if (msg.ok) return msg.value ?? null;
      throw new HostCallError(String(msg.error || "host call failed"));
    }
  }

  async handshake(extension) {
    const offeredByHost = String(this.env[this.wire.ENV_VERSIONS] ?? "1")
      .split(",")
      .map((v) => v.trim())
      .filter((v) => /^\d+$/.test(v))
      .map(Number);
    const common = PROTOCOL_VERSIONS.filter((v) => offeredByHost.includes(v));
    const hello = { versions: common.length ? common : [...PROTOCOL_VERSIONS], sdk: `node/${SDK_VERSION}`, ...extension.helloFields() };
    await this.calls.send(this.callsOut.seal("hello", hello));
    this.calls.receiveTimeout = HELLO_TIMEOUT_MS;
    let frame;
    try {
      [frame] = await this.calls.receive();
    } catch (err) {
      if (isTimeout(err)) throw new Exit(4, `handshake failed: host did not answer within ${HELLO_TIMEOUT_MS} ms`);
      throw err;
    }
    try {
      return this.callsIn.open(frame);
    } catch (err) {
      if (err instanceof this.wire.FrameError) throw new Exit(4, `handshake failed: ${err.message}`);
      throw err;
    }
  }

  close() {
    for (const sock of [this.events, this.calls, this.control]) {
      try {
        sock.close();
      } catch {
        // already closed
      }
    }
  }
}

/** The serving state shared by the two loops. */
class Server {
  constructor(link, runner) {
    this.link = link;
    this.runner = runner;
    this.stopping = false;
  }

  /** The control channel: ping → pong, shutdown → bye then exit. Runs concurrently with the events loop. */
  async controlLoop() {
    const { control, controlIn, controlOut } = this.link;
    for (;;) {
      const parts = await control.receive();
      let msg;
      try {
        if (parts.length !== 1) throw new this.link.wire.FrameError("decode", `${parts.length} message parts, expected 1`);
        msg = controlIn.open(parts[0]);
      } catch (err) {
        if (!(err instanceof this.link.wire.FrameError)) throw err;
        say(`dropped control frame: ${err.message}`);
        // A REP socket must answer before it can receive again. The answer is an empty frame: the host
        // drops it as `short` (it cannot be taken for a pong, and it carries no seq).
        await control.send(Buffer.alloc(0));
        continue;
      }
      if (msg.k === "ping") {
        const current = this.runner.current;
        const busyMs = current === null ? 0 : Math.max(0, Math.round(performance.now() - this.runner.busySince));
        await control.send(controlOut.seal("pong", { id: msg.id, busy: current !== null, current, busy_ms: busyMs }));
        continue;
      }
      await control.send(controlOut.seal("bye", { id: msg.id }));
      this.stopping = true;
      await this._waitIdle(SHUTDOWN_GRACE_MS);
      await sleep(20); // let libzmq's I/O thread put `bye` on the wire
      throw new Exit(0);
    }
  }

  async _waitIdle(graceMs) {
    const end = performance.now() + graceMs;
    while (this.runner.current !== null && performance.now() < end) await sleep(10);
  }

  /** The events channel: one request at a time, each answered with exactly one reply. */
  async eventsLoop() {
    const { events, eventsIn, eventsOut } = this.link;
    for (;;) {
      const parts = await events.receive();
      let msg;
      try {
        if (parts.length !== 1) throw new this.link.wire.FrameError("decode", `${parts.length} message parts, expected 1`);
        msg = eventsIn.open(parts[0]);
      } catch (err) {
        if (!(err instanceof this.link.wire.FrameError)) throw err;
        say(`dropped frame from host: ${err.message}`);
        // A REP socket must answer before it can receive again. The answer is a signed `reply` with id 0 and
        // no results: no request has id 0, so the host drops it (wrong id) and the request it sent times out
        // under its own deadline and failure policy — as with the Python SDK.
        await events.send(eventsOut.seal("reply", { id: 0, results: [] }));
        continue;
      }
      this.link.eventId = msg.id;
      let results;
      try {
        results = await this.handle(msg);
      } finally {
        this.link.eventId = null;
      }
      let frame;
      try {
        frame = eventsOut.seal("reply", { id: msg.id, results });
      } catch (err) {
        // Cannot happen for results the runner checked; never leave the REP socket without an answer.
        say(`could not encode the reply: ${err.message}`);
        const failed = results.map(() => ({ ok: false, error: `the SDK could not encode the result: ${err.message}` }));
        frame = eventsOut.seal("reply", { id: msg.id, results: failed });
      }
      await events.send(frame);
      if (this.stopping) throw new Exit(0);
    }
  }

  async handle(msg) {
    const runner = this.runner;
    if (msg.k === "event") return [await runner.runItem(msg.event, msg.handler ?? null, msg.data)];
    if (msg.k === "batch") {
      if (msg.dropped) say(`host dropped ${msg.dropped} notify event(s) (queue full)`);
      const out = [];
      for (const item of msg.events) out.push(await runner.runItem(item.event, item.handler ?? null, item.data));
      return out;
    }
    return [await runner.invoke(msg.target, msg.name, msg.args)];
  }
}

function entryFile() {
  try {
    return process.argv[1] ? realpathSync(process.argv[1]) : "";
  } catch {
    return process.argv[1] ?? "";
  }
}

/**
 * Serve `extension` under the host until it says shutdown, then end the process with the protocol's exit
 * status (never returns). Started by hand (no KITHOST_EVENTS), prints a short explanation and exits 2.
 * @param {Extension} extension
 * @param {{module?: string|URL|null}} [options] `module`: the module that defines the extension (its
 *   import.meta.url), where its manifest is searched from; default: the program's main module
 */
export async function run(extension, { module = null } = {}) {
  let status;
  try {
    status = await serve(extension, process.env, module);
  } catch (err) {
    say(`fatal: ${err?.stack ?? err}`);
    status = 1;
  }
  process.exit(status);
}

/**
 * `main(import.meta, ext)`: serve `ext` when the calling module is the program node was started with (the
 * host runs `node <main>`); do nothing when it is imported (by FakeHost in a test, or by another module).
 * @param {ImportMeta} importMeta the calling module's `import.meta`
 * @param {Extension} extension
 */
export function main(importMeta, extension) {
  let self = "";
  try {
    self = realpathSync(fileURLToPath(importMeta.url));
  } catch {
    return false;
  }
  if (self !== entryFile()) return false;
  run(extension, { module: importMeta.url });
  return true;
}

/**
 * Serve `extension`; resolves to the exit status (does not exit). Exposed for tests and embedders.
 * `module` is where the extension's manifest is searched from (default: the program's main module).
 */
export async function serve(extension, env = process.env, module = null) {
  started = true;
  const file = entryFile() || "this file";
  if (!env.KITHOST_EVENTS) {
    const dir = file.includes("/") ? file.slice(0, file.lastIndexOf("/")) || "/" : ".";
    process.stderr.write(NOT_UNDER_HOST(file, dir));
    return 2;
  }
  if (typeof extension?.helloFields !== "function") {
    say(`run()/main() needs an Extension, got ${extension === null ? "null" : typeof extension}`);
    return 3;
  }
  let secret;
  try {
    secret = readFileSync(env.KITHOST_SECRET_FILE ?? "");
  } catch (err) {
    say(`cannot read the launch secret (KITHOST_SECRET_FILE): ${err.message}`);
    return 2;
  }
  let zmq, wire;
  try {
    wire = await import("./wire.mjs");
    zmq = await import("zeromq");
    zmq.context.blocky = false; // never hang at exit on a socket that still holds a message
    loadToml();
  } catch (err) {
    const sdkDir = fileURLToPath(new URL("..", import.meta.url));
    say(`cannot load the SDK's dependencies (${String(err.message).split("\n")[0]}); install them with: ` +
      `npm ci --prefix ${sdkDir} --ignore-scripts --no-audit --no-fund`);
    return 3;
  }
  if (typeof extension.resolve === "function") {
    try {
      extension.resolve(module ?? (file.startsWith("/") ? pathToFileURL(file) : null));
    } catch (err) {
      say(`cannot tell who the extension is: ${err.message}`);
      return 3;
    }
  }
  extension._sealed = true;
  const link = new Link(zmq, wire, secret, env);
  // A stray promise of the author's that rejects is reported, not fatal (the Python SDK likewise only prints
  // an exception of a thread it did not start).
  serving = true;
  process.on("unhandledRejection", (reason) => {
    say(`unhandled promise rejection (ignored): ${reason instanceof Error ? reason.stack : String(reason)}`);
  });
  try {
    const answer = await link.handshake(extension);
    if (answer.k === "reject") {
      say(`host refused '${extension.name}': ${answer.reason}`);
      return 4;
    }
    if (answer.k !== "welcome") throw new Exit(4, `handshake failed: expected welcome, got ${answer.k}`);
    const server = new Server(link, new HandlerRunner(extension, (method, args) => link.call(method, args)));
    // Both loops run on the one event loop; whichever ends first (shutdown → Exit(0), or a socket error)
    // decides the exit status.
    await Promise.race([server.controlLoop(), server.eventsLoop()]);
    return 0;
  } catch (err) {
    if (err instanceof Exit) {
      if (err.message) say(err.message);
      return err.status;
    }
    say(`fatal: ${err?.stack ?? err}`);
    return 1;
  } finally {
    link.close();
  }
}
