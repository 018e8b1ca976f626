// `Extension`: what an extension module declares — handlers, tools, commands — and who it is
// (the authoring shape of ext_sdk/extension.py).
//
//   import { Block, Extension, main } from "../../ext_sdk/js/index.mjs";
//
//   export const ext = new Extension(); // name, version and permissions come from extension.toml
//
//   ext.on("tool_call", async (event, ctx) => {
//     if (event.input.includes("sudo")) return Block("no sudo");
//   }, { priority: 10, deadlineMs: 500, policy: "closed" });
//
//   main(import.meta, ext); // serve when the host runs this file; a no-op when a test imports it
//
// Identity: the manifest (`extension.toml`) is its one source. What the constructor is not given — `name`,
// `version`, `permissions` — is read from the manifest of the module that defines the extension: the first
// extension.toml in that module's folder or up to 4 folders above it, or the one given as `manifest`. The
// constructor does not know its module, so this happens when the module is known, before `hello` is built:
// `main(import.meta, ext)` (or `run(ext)`: the program's main module) under the host, `FakeHost.load(url)` in
// a test (see resolve()). Code may restate any of them (`new Extension("gate", { version: "1.0.0" })`); a
// restated value is sent as written and the host refuses the handshake when it differs from the manifest,
// saying which. Without a manifest the name must be given (version "0.0.0" and no permission are the
// defaults, as in a manifest).
//
// Ordering rule: the host runs handlers by priority (lower first), then by extension load order, then by
// registration order within the extension. Everything declared here is sent in the handshake (`hello`);
// nothing can be registered once the extension serves.

import { findManifest, givenManifest, MANIFEST_FILE, readIdentity, toPath } from "./manifest.mjs";
import { customEventName, DEFAULT_PRIORITY, isCustom, PERMISSIONS, specFor } from "./schema.mjs";

function checkPermissions(permissions, where) {
  const unknown = permissions.filter((p) => !PERMISSIONS.includes(p));
  if (unknown.length) {
    throw new Error(`${where}unknown permission(s) ${JSON.stringify(unknown)}; known: ${PERMISSIONS.join(", ")}`);
  }
}

/** The declaration of one extension. Create exactly one per extension module. */
export class Extension {
  /**
   * Every argument is optional: what is not given (left out, undefined or null) is the manifest's (see the
   * module comment). A given value is checked for its type here and sent as written.
   * @param {string} [name] the extension's name (the manifest's)
   * @param {{version?: string, permissions?: string[], manifest?: string|URL}} [options] `manifest`: the
   *   manifest to read instead of searching from the module — a path (relative: to the working directory),
   *   a file: URL (`new URL("./extension.toml", import.meta.url)`) or a folder to search from; read at once.
   */
  constructor(name, { version, permissions, manifest } = {}) {
    [name, version, permissions, manifest] = [name ?? undefined, version ?? undefined, permissions ?? undefined,
      manifest ?? undefined];
    if (name !== undefined && (typeof name !== "string" || name === "")) {
      throw new TypeError("Extension(name): name must be a non-empty string (or left out: the manifest's)");
    }
    if (version !== undefined && typeof version !== "string") throw new TypeError("Extension: version must be a string");
    if (permissions !== undefined) {
      if (!Array.isArray(permissions) || !permissions.every((p) => typeof p === "string")) {
        throw new TypeError("Extension: permissions must be an array of strings");
      }
      checkPermissions(permissions, "");
    }
    if (manifest !== undefined && !(manifest instanceof URL) && (typeof manifest !== "string" || manifest === "")) {
      throw new TypeError("Extension: manifest must be a path or a file: URL");
    }
    this._given = { name, version, permissions: permissions === undefined ? undefined : [...permissions] };
    this._manifestOption = manifest;
    /** The extension's name (the manifest's); null until resolve(). */
    this.name = name ?? null;
    /** Its version (the manifest's); null until resolve(). */
    this.version = version ?? null;
    /** Permissions it asks for (the manifest's); null until resolve(). */
    this.permissions = permissions === undefined ? null : [...permissions];
    /** The manifest the identity was read from (absolute path); null when none was read; undefined until resolve(). */
    this.manifest = undefined;
    /** @type {{event: string, fn: Function, priority: number, deadlineMs: number|null, policy: string|null}[]} */
    this.subscriptions = [];
    /** @type {{name: string, description: string, parameters: object, fn: Function}[]} */
    this.tools = [];
    /** @type {{name: string, description: string, fn: Function}[]} */
    this.commands = [];
    this._sealed = false;
    // Nothing is left to the module: complete now (an explicit manifest is read now, its errors thrown here).
    if (manifest !== undefined || (name !== undefined && version !== undefined && permissions !== undefined)) {
      this.resolve();
    }
  }

  /** Whether name, version and permissions are known (resolve() has run). */
  get resolved() {
    return this.manifest !== undefined;
  }

  /**
   * Complete the identity from the manifest, once: what the constructor was not given is read from the
   * `manifest` option or else the first extension.toml found from `module` (the defining module's
   * import.meta.url or path); nothing is read when everything was given. With no manifest found, the
   * defaults (version "0.0.0", no permission) apply and the name must have been given. Called by
   * main()/run() and FakeHost before the handshake; a later call does nothing.
   * @param {string|URL|null} [module] the module that defines the extension, null when unknown
   * @returns {this}
   * @throws {Error} naming the file: no manifest and no name, a manifest that cannot be read or says no name,
   *   an unknown permission
   */
  resolve(module = null) {
    if (this.resolved) return this;
    const given = this._given;
    let path = null;
    if (given.name === undefined || given.version === undefined || given.permissions === undefined) {
      if (this._manifestOption !== undefined) path = givenManifest(this._manifestOption);
      else if (module !== null) path = findManifest(module);
      if (path === null && given.name === undefined) {
        const where = module === null ? "the extension (its module is not known)" : toPath(module);
        throw new Error(`no ${MANIFEST_FILE} found beside ${where} to read its name from; ` +
          "give the name (new Extension(name)) or the manifest (new Extension(undefined, { manifest }))");
      }
    }
    // no manifest (code used on its own): the host's defaults, version 0.0.0 and no permission
    const fromFile = path === null ? { name: given.name, version: "0.0.0", permissions: [] } : readIdentity(path);
    const permissions = given.permissions ?? fromFile.permissions;
    checkPermissions(permissions, path === null ? "" : `${path}: `);
    this.name = given.name ?? fromFile.name;
    this.version = given.version ?? fromFile.version;
    this.permissions = [...permissions];
    this.manifest = path;
    return this;
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

  /** Everything this extension declares, as handshake fields (the identity must be resolved: resolve()). */
  helloFields() {
    if (!this.resolved) throw new Error("Extension: its identity is not resolved yet; call resolve(module) first");
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
