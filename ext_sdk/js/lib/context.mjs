// `Context` (`ctx`): a handler's way to call the host (mirrors ext_sdk/context.py and ext_sdk/hostcalls.py).
//
// Every method is one host call of `x-kithost.calls` (a test keeps the two in step) and returns a Promise:
// `await ctx.setState("n", 1)`. Each call carries the `event_id` of the request being handled; the host
// refuses a call for any other id (that event already passed its deadline), so a ctx call made after the
// handler returned, or after its deadline, fails with HostCallError instead of having a late side effect.
// A refused call (e.g. a permission that was not granted) rejects with HostCallError and the host's reason.

/** The host refused or failed a ctx call; the message is the host's reason. */
export class HostCallError extends Error {
  constructor(message) {
    super(message);
    this.name = "HostCallError";
  }
}

/** Host API for handlers, tools and commands. Valid only while the handler runs. */
export class Context {
  #call;

  /**
   * @param {(method: string, args: object) => Promise<any>} call the caller (the real socket, or FakeHost)
   * @param {string} event the event being handled (`tool:<name>` / `command:<name>` for invocations)
   */
  constructor(call, event = "") {
    this.#call = call;
    /** Name of the event being handled. */
    this.event = event;
  }

  // ui
  /** Show plain text to the user. */
  async print(text) {
    await this.#call("print", { text: String(text), level: "plain" });
  }

  /** Show an informational message. */
  async info(text) {
    await this.#call("print", { text: String(text), level: "info" });
  }

  /** Show an error message. */
  async error(text) {
    await this.#call("print", { text: String(text), level: "error" });
  }

  /** `{session_id, session_path, cwd, model}`. */
  async getInfo() {
    return this.#call("get_info", {});
  }

  // state
  /** The value stored under `key`, or `defaultValue`. */
  async getState(key, defaultValue = null) {
    const value = await this.#call("get_state", { key });
    return value === null || value === undefined ? defaultValue : value;
  }

  /** Store a safe value; it is on disk when the promise resolves and survives crashes. */
  async setState(key, value) {
    await this.#call("set_state", { key, value: value === undefined ? null : value });
  }

  /** Remove `key` (no error if absent). */
  async deleteState(key) {
    await this.#call("delete_state", { key });
  }

  /** All keys of this extension, sorted. */
  async listState() {
    return this.#call("list_state", {});
  }

  // session
  /** Append an entry to the session tree; resolves to its id. */
  async appendEntry(type, data) {
    return this.#call("append_entry", { type, data: data === undefined ? null : data });
  }

  /** This extension's entries of `type`, oldest first: `[{id, type, data, timestamp}]`. */
  async getEntries(type) {
    return this.#call("get_entries", { type });
  }

  // events
  /** Emit custom event `name`; resolves to how many extensions it was queued for. */
  async emit(name, data = null) {
    return this.#call("emit", { name, data: data === undefined ? null : data });
  }

  // conversation / agent
  /** The current context window as `{index, role, content, tool_calls?, tool_call_id?}` maps. */
  async getMessages() {
    return this.#call("get_messages", {});
  }

  /** Queue a user message (steers a running turn, or starts the next one). */
  async sendMessage(text) {
    await this.#call("send_message", { text });
  }

  /** Switch the model. */
  async setModel(model) {
    await this.#call("set_model", { model });
  }
}

/** Host call method → Context method name (a test checks that every call of the schema has one). */
export const CONTEXT_METHODS = Object.freeze({
  print: ["print", "info", "error"],
  get_info: ["getInfo"],
  get_state: ["getState"],
  set_state: ["setState"],
  delete_state: ["deleteState"],
  list_state: ["listState"],
  append_entry: ["appendEntry"],
  get_entries: ["getEntries"],
  emit: ["emit"],
  get_messages: ["getMessages"],
  send_message: ["sendMessage"],
  set_model: ["setModel"],
});
