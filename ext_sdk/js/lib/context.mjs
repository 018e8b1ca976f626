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

  // kit's ctx API (ext_sdk/hostcalls.py has each call's contract)
  /** Steer: cancel the running turn and queue `text` as the next prompt. */
  async cancelAndSend(text) {
    await this.#call("cancel_and_send", { text });
  }

  /** Cancel the running turn (no-op when idle). */
  async abort() {
    await this.#call("abort", {});
  }

  /** Reload extension `name` (default: this one) from its files in the background, with no downtime. */
  async reload(name = "") {
    await this.#call("reload", { name });
  }

  /** Whether no turn is running. */
  async isIdle() {
    return Boolean(await this.#call("is_idle", {}));
  }

  /** Compact now: `{compacted, reason, summary}`; refused while a turn runs. */
  async compact() {
    return this.#call("compact", {});
  }

  /** Start a new session (optionally with a first prompt): `{switched, reason, session_path}`. */
  async newSession(prompt = "") {
    return this.#call("new_session", { prompt });
  }

  /** Tokens, cost and provider calls since the agent started. */
  async getSessionUsage() {
    return this.#call("get_session_usage", {});
  }

  /** `{estimated_tokens, context_limit, usage_percent, message_count}` of the next model call. */
  async getContextStats() {
    return this.#call("get_context_stats", {});
  }

  /** One model call through the host: `{text, model, input_tokens, output_tokens, cost}`. */
  async complete(prompt, { system = "", messages = [], model = "", maxTokens = null } = {}) {
    const args = { prompt, system, messages, model };
    if (maxTokens !== null && maxTokens !== undefined) args.max_tokens = maxTokens;
    return this.#call("complete", args);
  }

  /** Models that can be called now (the current one first). */
  async getModels() {
    return this.#call("get_models", {});
  }

  /** What `model` ('' = the current one) can do and costs. */
  async getModelCapabilities(model = "") {
    return this.#call("get_model_capabilities", { model });
  }

  /** Run a subagent: `{id, status, response, error_msg}` (status `running` when not blocking). */
  async spawnSubagent(task, { blocking = true, systemPrompt = "" } = {}) {
    return this.#call("spawn_subagent", { task, blocking, system_prompt: systemPrompt });
  }

  /** A subagent this extension spawned: running, or its result. */
  async subagentStatus(id) {
    return this.#call("subagent_status", { id });
  }

  /** Cancel a running subagent; false if it already ended. */
  async killSubagent(id) {
    return Boolean(await this.#call("kill_subagent", { id }));
  }

  /** `{name, description, source, enabled}` of every tool. */
  async getTools() {
    return this.#call("get_tools", {});
  }

  /** Offer only `names` to the model (empty: all). */
  async setActiveTools(names) {
    await this.#call("set_active_tools", { names: [...names] });
  }

  /** One entry of the session tree, or null. */
  async getTreeNode(id) {
    return this.#call("get_tree_node", { id });
  }

  /** The path root → leaf. */
  async getCurrentBranch() {
    return this.#call("get_current_branch", {});
  }

  /** Ids of an entry's children ('' = the roots). */
  async getChildren(id = "") {
    return this.#call("get_children", { id });
  }

  /** Move the leaf to an entry: `{success, error}`. */
  async navigateTo(id) {
    return this.#call("navigate_to", { id });
  }

  /** A model-written summary of the branch from `fromId` to `toId` ('' = first / leaf). */
  async summarizeBranch(fromId = "", toId = "") {
    return this.#call("summarize_branch", { from_id: fromId, to_id: toId });
  }

  /** Declare an option with a default; resolves to its current value. */
  async registerOption(name, defaultValue, description = "") {
    return this.#call("register_option", { name, default: String(defaultValue), description });
  }

  /** Runtime value, else KITHOST_OPT_<NAME>, else the config's [options], else the default (null if none). */
  async getOption(name) {
    return this.#call("get_option", { name });
  }

  /** Set an option for the life of the host. */
  async setOption(name, value) {
    await this.#call("set_option", { name, value: String(value) });
  }

  /** Ask the user to pick one: `{value, index, cancelled}` (cancelled when headless). */
  async promptSelect(message, options) {
    return this.#call("prompt_select", { message, options: [...options] });
  }

  /** Ask yes or no: `{value, cancelled}`. */
  async promptConfirm(message, defaultValue = false) {
    return this.#call("prompt_confirm", { message, default: Boolean(defaultValue) });
  }

  /** Ask for a line of text: `{value, cancelled}`. */
  async promptInput(message, { placeholder = "", defaultValue = "" } = {}) {
    return this.#call("prompt_input", { message, placeholder, default: defaultValue });
  }

  /** Show `text` in the status line under `key`; '' removes it. */
  async setStatus(key, text, priority = 0) {
    await this.#call("set_status", { key, text, priority });
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
  cancel_and_send: ["cancelAndSend"],
  abort: ["abort"],
  reload: ["reload"],
  is_idle: ["isIdle"],
  compact: ["compact"],
  new_session: ["newSession"],
  get_session_usage: ["getSessionUsage"],
  get_context_stats: ["getContextStats"],
  complete: ["complete"],
  get_models: ["getModels"],
  get_model_capabilities: ["getModelCapabilities"],
  spawn_subagent: ["spawnSubagent"],
  subagent_status: ["subagentStatus"],
  kill_subagent: ["killSubagent"],
  get_tools: ["getTools"],
  set_active_tools: ["setActiveTools"],
  get_tree_node: ["getTreeNode"],
  get_current_branch: ["getCurrentBranch"],
  get_children: ["getChildren"],
  navigate_to: ["navigateTo"],
  summarize_branch: ["summarizeBranch"],
  register_option: ["registerOption"],
  get_option: ["getOption"],
  set_option: ["setOption"],
  prompt_select: ["promptSelect"],
  prompt_confirm: ["promptConfirm"],
  prompt_input: ["promptInput"],
  set_status: ["setStatus"],
});
