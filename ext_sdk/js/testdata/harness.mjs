// A minimal host for the SDK's own process tests: binds the three channels in a private temp directory,
// writes the secret file, spawns an extension with the host's environment, and speaks the protocol from
// the host's side (REQ relaxed+correlate on events and control, REP on calls). Every wait is bounded.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as zmq from "zeromq";
import { FrameError, Opener, Sealer } from "../lib/wire.mjs";

export const HERE = new URL(".", import.meta.url);
export const FIXTURES = new URL("./fixtures/", import.meta.url);

const STEP_MS = 5000;

/** Resolve within `ms` or reject with `what`. */
export function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Run `node file` without a host; resolves to {status, stderr}. */
export function runBare(file, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file], { env: { PATH: process.env.PATH, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${file} did not exit within ${STEP_MS} ms`));
    }, STEP_MS);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stderr });
    });
  });
}

export class MiniHost {
  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), "kithost-js-test-"));
    this.secret = randomBytes(32);
    this.secretFile = join(this.dir, "secret");
    writeFileSync(this.secretFile, this.secret, { mode: 0o600 });
    this.endpoints = { events: `ipc://${this.dir}/e`, calls: `ipc://${this.dir}/c`, control: `ipc://${this.dir}/k` };
    this.events = new zmq.Request({ linger: 0, relaxed: true, correlate: true, receiveTimeout: STEP_MS, sendTimeout: STEP_MS });
    this.calls = new zmq.Reply({ linger: 0, sendTimeout: STEP_MS }); // receive: bounded by within()
    this.control = new zmq.Request({ linger: 0, relaxed: true, correlate: true, receiveTimeout: STEP_MS, sendTimeout: STEP_MS });
    this.eventsOut = new Sealer(this.secret);
    this.eventsIn = new Opener(this.secret, ["reply"]);
    this.callsOut = new Sealer(this.secret);
    this.callsIn = new Opener(this.secret, ["hello", "call"]);
    this.controlOut = new Sealer(this.secret);
    this.controlIn = new Opener(this.secret, ["pong", "bye"]);
    this.nextId = 1;
    this.stderr = "";
    this.child = null;
    this.exited = null;
  }

  async bind() {
    await this.events.bind(this.endpoints.events);
    await this.calls.bind(this.endpoints.calls);
    await this.control.bind(this.endpoints.control);
  }

  /** Start `node file` with the host's environment. */
  spawn(file, extraEnv = {}) {
    const env = {
      PATH: process.env.PATH,
      HOME: this.dir,
      KITHOST_EVENTS: this.endpoints.events,
      KITHOST_CALLS: this.endpoints.calls,
      KITHOST_CONTROL: this.endpoints.control,
      KITHOST_SECRET_FILE: this.secretFile,
      KITHOST_PROTOCOL_VERSIONS: "1",
      KITHOST_EXTENSION: "fixture",
      ...extraEnv,
    };
    this.child = spawn(process.execPath, [file], { env, stdio: ["ignore", "pipe", "pipe"] });
    this.child.stderr.on("data", (d) => (this.stderr += d));
    this.child.stdout.on("data", (d) => (this.stderr += d));
    // "close", not "exit": it comes after stderr ended, so the whole log is in this.stderr
    this.exited = new Promise((resolve) => this.child.on("close", (status, signal) => resolve(status ?? signal)));
  }

  /** The extension's `hello` (checked and decoded). */
  async hello() {
    return within(this._nextCall(), STEP_MS, "hello");
  }

  async welcome(hello) {
    await this.calls.send(this.callsOut.seal("welcome", { version: 1, granted: hello.permissions, deadlines_ms: hello.subscriptions.map(() => 1000) }));
  }

  async reject(reason) {
    await this.calls.send(this.callsOut.seal("reject", { reason }));
  }

  /** Handshake: receive hello, answer welcome; resolves to the hello. */
  async start(file, extraEnv = {}) {
    await this.bind();
    this.spawn(file, extraEnv);
    const hello = await this.hello();
    await this.welcome(hello);
    return hello;
  }

  /**
   * Send an events-channel request and wait for its reply, answering ctx calls meanwhile with `answer(call)`
   * (→ `{ok, value?, error?}`; default: ok, null). Resolves to the reply envelope.
   */
  async request(kind, fields, answer = () => ({ ok: true, value: null }), calls = []) {
    const id = this.nextId++;
    await this.events.send(this.eventsOut.seal(kind, { id, ...fields }));
    const reply = this.events.receive();
    let done = false;
    reply.finally(() => (done = true)).catch(() => {});
    while (!done) {
      const got = await Promise.race([reply.then(() => null), this._nextCall()]);
      if (got === null) break;
      calls.push(got);
      const out = answer(got);
      await this.calls.send(this.callsOut.seal("answer", { id: got.id, ...out }));
    }
    const [frame] = await within(reply, STEP_MS, `reply to ${kind}`);
    return this.eventsIn.open(frame);
  }

  _nextCall() {
    if (!this._pendingCall) {
      this._pendingCall = this.calls.receive().then(([frame]) => {
        this._pendingCall = null;
        return this.callsIn.open(frame);
      });
      this._pendingCall.catch(() => {}); // a receive still pending at close() rejects; nobody needs it then
    }
    return this._pendingCall;
  }

  async event(event, data, handler = null, answer, calls) {
    return this.request("event", { event, handler, data }, answer, calls);
  }

  async ping() {
    const id = this.nextId++;
    await this.control.send(this.controlOut.seal("ping", { id }));
    const [frame] = await within(this.control.receive(), STEP_MS, "pong");
    return this.controlIn.open(frame);
  }

  async shutdown(reason = "test over") {
    const id = this.nextId++;
    await this.control.send(this.controlOut.seal("shutdown", { id, reason }));
    const [frame] = await within(this.control.receive(), STEP_MS, "bye");
    return this.controlIn.open(frame);
  }

  /** Send raw bytes on a host socket and return the raw answer frame. */
  async raw(channel, bytes) {
    const sock = channel === "events" ? this.events : this.control;
    await sock.send(bytes);
    const [frame] = await within(sock.receive(), STEP_MS, `answer to a raw ${channel} frame`);
    return frame;
  }

  /** Wait (bounded) until the extension's stderr matches `pattern` (stderr arrives apart from the frames). */
  async stderrMatching(pattern) {
    const end = performance.now() + STEP_MS;
    while (!pattern.test(this.stderr)) {
      if (performance.now() > end) throw new Error(`stderr never matched ${pattern}: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.stderr;
  }

  async exitStatus() {
    return within(this.exited, STEP_MS, "extension exit");
  }

  async close() {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill("SIGKILL");
      await within(this.exited, STEP_MS, "kill").catch(() => {});
    }
    for (const sock of [this.events, this.calls, this.control]) sock.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export { FrameError };
