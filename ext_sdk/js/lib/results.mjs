// Typed handler results. Each turns into the plain result map of its event (mirrors ext_sdk/results.py).
//
// A handler may return (or resolve to) one of these, a plain object matching the event's result schema,
// or null/undefined ("no opinion"). The SDK checks the map against the event's result schema before
// sending, so a wrong result is reported at its source, with the event's name.
//
//   result                            map                                  events
//   Block(reason)                     {block: true, reason}                tool_call
//   Cancel(reason)                    {cancel: true, reason}               before_fork, before_session_switch,
//                                                                          before_compact
//   Summary(text)                     {summary}                            before_compact
//   Transform(text)                   {action: "transform", text}          input
//   Handled(reason)                   {action: "handled", reason}          input
//   Continue()                        {action: "continue"}                 input
//   PatchResult({content, isError})   {content?, is_error?}                tool_result
//   Inject({text, systemPrompt})      {inject_text?, system_prompt?}       before_agent_start
//   ReplaceMessages(messages)         {messages}                           context_prepare, prepare_step
//
// Each can be called with or without `new`: `return Block("no")` and `return new Block("no")` are the same.

/** Base of typed results. */
export class Result {
  /** Events this result is meant for. */
  static events = new Set();

  /** The plain result map. */
  toMap() {
    throw new Error("not implemented");
  }
}

/**
 * Define a result type `name` for `events`; `init(self, ...args)` stores the arguments, `toMap(self)` builds
 * the wire map. The returned function works both as a constructor and as a plain call.
 */
function defineResult(name, events, init, toMap) {
  const Type = {
    [name]: function (...args) {
      if (!new.target) return new Type(...args);
      init(this, ...args);
      Object.freeze(this);
    },
  }[name];
  Object.setPrototypeOf(Type.prototype, Result.prototype);
  Object.setPrototypeOf(Type, Result);
  Object.defineProperty(Type, "events", { value: Object.freeze(new Set(events)), enumerable: true });
  Type.prototype.toMap = function () {
    return toMap(this);
  };
  return Type;
}

function optionString(options, ...names) {
  if (typeof options === "string") return names[0] === "content" || names[0] === "text" ? options : undefined;
  for (const n of names) if (options?.[n] !== undefined && options[n] !== null) return options[n];
  return undefined;
}

/** Block a tool call; the model gets `Error: <reason>`. */
export const Block = defineResult(
  "Block",
  ["tool_call"],
  (self, reason = "blocked by extension") => {
    self.reason = reason;
  },
  (self) => ({ block: true, reason: self.reason }),
);

/** Cancel a fork, a session switch or a compaction. */
export const Cancel = defineResult(
  "Cancel",
  ["before_fork", "before_session_switch", "before_compact"],
  (self, reason = "cancelled by extension") => {
    self.reason = reason;
  },
  (self) => ({ cancel: true, reason: self.reason }),
);

/** Supply the compaction summary instead of the model's. */
export const Summary = defineResult(
  "Summary",
  ["before_compact"],
  (self, text) => {
    self.text = text;
  },
  (self) => ({ summary: self.text }),
);

/** Replace the prompt's text (later handlers and the model see the new text). */
export const Transform = defineResult(
  "Transform",
  ["input"],
  (self, text) => {
    self.text = text;
  },
  (self) => ({ action: "transform", text: self.text }),
);

/** The extension handled the prompt: the turn stops, the model is not called. */
export const Handled = defineResult(
  "Handled",
  ["input"],
  (self, reason = "handled by extension") => {
    self.reason = reason;
  },
  (self) => ({ action: "handled", reason: self.reason }),
);

/** Let the prompt through unchanged (same as returning nothing). */
export const Continue = defineResult(
  "Continue",
  ["input"],
  () => {},
  () => ({ action: "continue" }),
);

/** Replace a tool result's content and/or error flag: `PatchResult({content, isError})` (or `PatchResult(content)`); absent = unchanged. */
export const PatchResult = defineResult(
  "PatchResult",
  ["tool_result"],
  (self, options = {}) => {
    self.content = optionString(options, "content") ?? null;
    self.isError = optionString(options, "isError", "is_error") ?? null;
  },
  (self) => {
    const out = {};
    if (self.content !== null) out.content = self.content;
    if (self.isError !== null) out.is_error = self.isError;
    return out;
  },
);

/** Set the text injected before the prompt and/or this turn's system prompt: `Inject({text, systemPrompt})` (or `Inject(text)`). */
export const Inject = defineResult(
  "Inject",
  ["before_agent_start"],
  (self, options = {}) => {
    self.text = optionString(options, "text") ?? null;
    self.systemPrompt = optionString(options, "systemPrompt", "system_prompt") ?? null;
  },
  (self) => {
    const out = {};
    if (self.text !== null) out.inject_text = self.text;
    if (self.systemPrompt !== null) out.system_prompt = self.systemPrompt;
    return out;
  },
);

/**
 * Replace the context window (context_prepare) or the next step's window (prepare_step).
 * Each message is `{index, role, content}`: `index >= 0` keeps original message `index` (tool calls
 * included) and replaces only its text if `content` differs; `index === -1` (the default) adds a new text
 * message. `tool_calls` / `tool_call_id` are read-only and passed through when present.
 */
export const ReplaceMessages = defineResult(
  "ReplaceMessages",
  ["context_prepare", "prepare_step"],
  (self, messages) => {
    self.messages = messages;
  },
  (self) => ({ messages: Array.from(self.messages, messageMap) }),
);

function messageMap(message) {
  const out = { index: message.index ?? -1, role: message.role, content: message.content };
  for (const key of ["tool_calls", "tool_call_id"]) {
    if (message[key] !== undefined && message[key] !== null) out[key] = message[key];
  }
  return out;
}

function isPlainObject(value) {
  if (value === null || typeof value !== "object") return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * A handler's return value as a plain map, or null (ext_sdk.results.to_plain).
 * Throws TypeError for a typed result returned for an event it does not apply to, or for a value that is
 * neither a result, a plain object nor null/undefined.
 */
export function toPlain(event, value) {
  if (value === null || value === undefined) return null;
  if (value instanceof Result) {
    const Type = value.constructor;
    if (!Type.events.has(event)) {
      const allowed = [...Type.events].sort().join(", ");
      throw new TypeError(`${Type.name} is not a result for '${event}' (it is for: ${allowed})`);
    }
    return value.toMap();
  }
  if (isPlainObject(value)) return { ...value };
  const what = Array.isArray(value) ? "an array" : typeof value === "object" ? value.constructor?.name ?? "object" : typeof value;
  throw new TypeError(`handler for '${event}' returned ${what}; expected a result, a plain object, null or undefined`);
}
