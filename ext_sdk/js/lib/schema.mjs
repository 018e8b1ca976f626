// The protocol's vocabulary and shapes, read from the generated JSON Schema — never hand-copied.
//
// `protocol.schema.json` next to this package is the same document as `docs/protocol.schema.json`
// (`kithost schema --write ext_sdk/js/protocol.schema.json`; a test fails when the two differ). It is
// bundled because an extension runs sandboxed with only `ext_sdk/` and its own directory visible.
//
// From it this module derives:
//   * EVENTS: every agent event → {mode, stop, chain, default_policy, exposes_content, hot, doc}
//     (`x-kithost.events`), plus the rule for `custom:<name>` events (notify, policy open);
//   * CALLS, PERMISSIONS, ALWAYS_GRANTED, PROTOCOL_VERSIONS;
//   * check(schema, value, path): a checker for the subset of JSON Schema the generator emits, with the
//     same rules and messages as ext_sdk/schema.py (unknown fields rejected; an optional field may be
//     absent or null; `integer` rejects non-integral numbers; `{}` = any safe value nested at most
//     MAX_DEPTH levels).

import { readFileSync } from "node:fs";

/** The protocol document (`docs/protocol.schema.json`, bundled). */
export const PROTOCOL_SCHEMA = JSON.parse(readFileSync(new URL("../protocol.schema.json", import.meta.url), "utf8"));

const X = PROTOCOL_SCHEMA["x-kithost"];
const DEFS = PROTOCOL_SCHEMA.$defs;

/** Protocol versions this SDK speaks (those of the schema it was built against). */
export const PROTOCOL_VERSIONS = Object.freeze([...X.protocol_versions]);
/** Every permission an extension can ask for. */
export const PERMISSIONS = Object.freeze([...X.permissions]);
/** Permissions granted without asking. */
export const ALWAYS_GRANTED = Object.freeze([...X.always_granted]);
/** Every host call: method → {permission, doc}. */
export const CALLS = Object.freeze({ ...X.calls });
/** Every agent event: name → {mode, stop, chain, default_policy, exposes_content, hot, doc}. */
export const EVENTS = Object.freeze({ ...X.events });

/** Prefix of custom inter-extension event names. */
export const CUSTOM_PREFIX = "custom:";
/** Deepest nesting of lists/maps in any free-form value (ext_sdk/schema.py MAX_DEPTH; PROTOCOL §3). */
export const MAX_DEPTH = 32;
/** Default handler priority (ext_sdk/extension.py DEFAULT_PRIORITY; lower runs first). */
export const DEFAULT_PRIORITY = 50;
/** Result field that carries a stop's human reason (ext_sdk/events.py Stop.reason_field; not in the schema). */
export const STOP_REASON_FIELD = "reason";

/** Whether `name` is a custom event name (`custom:<name>`). */
export function isCustom(name) {
  return typeof name === "string" && name.startsWith(CUSTOM_PREFIX) && name.length > CUSTOM_PREFIX.length;
}

/** The wire event name for custom event `name`. */
export function customEventName(name) {
  return name.startsWith(CUSTOM_PREFIX) ? name : CUSTOM_PREFIX + name;
}

const CUSTOM_SPEC = Object.freeze({
  name: "custom",
  mode: "notify", // a custom event has no result (no $defs/event.custom.result) → notify
  default_policy: "open", // "gate events default to closed; all others default to open"
  stop: null,
  chain: null,
  exposes_content: false,
  hot: false,
  doc: DEFS["event.custom.payload"].description ?? "",
  payload: DEFS["event.custom.payload"],
  result: null,
});

const SPECS = new Map(
  Object.entries(EVENTS).map(([name, e]) => [
    name,
    Object.freeze({ name, ...e, payload: DEFS[`event.${name}.payload`], result: DEFS[`event.${name}.result`] ?? null }),
  ]),
);

/** The spec of an agent event or a `custom:<name>` event, with its payload/result schemas; null if unknown. */
export function specFor(name) {
  return SPECS.get(name) ?? (isCustom(name) ? CUSTOM_SPEC : null);
}

/** `$defs/<name>` of the protocol schema (e.g. `message.event`, `call.get_state.args`). */
export function def(name) {
  const out = DEFS[name];
  if (out === undefined) throw new Error(`no $defs/${name} in the protocol schema`);
  return out;
}

// --------------------------------------------------------------------------- checking

/** A value does not match its schema; `path` names the offending value (as ext_sdk.schema.SchemaError). */
export class SchemaError extends Error {
  constructor(path, problem) {
    super(`${path || "<root>"}: ${problem}`);
    this.name = "SchemaError";
    this.path = path;
    this.problem = problem;
  }
}

function isPlainObject(value) {
  if (value === null || typeof value !== "object") return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** A short type name in the Python SDK's words (null, bool, int, float, string, list, map). */
export function typeName(value) {
  if (value === null) return "null";
  if (value === undefined) return "undefined";
  switch (typeof value) {
    case "boolean":
      return "bool";
    case "bigint":
      return "int";
    case "number":
      return Number.isInteger(value) ? "int" : "float";
    case "string":
      return "string";
    default:
      if (Array.isArray(value)) return "list";
      if (isPlainObject(value)) return "map";
      return value?.constructor?.name ?? typeof value;
  }
}

function join(path, key) {
  return path ? `${path}.${key}` : key;
}

/** Raise SchemaError unless `value` is safe data nested at most MAX_DEPTH levels (ext_sdk.schema.check_safe). */
export function checkSafe(value, path = "", depth = 0) {
  if (value === null) return;
  const t = typeof value;
  if (t === "string" || t === "number" || t === "boolean" || t === "bigint") return;
  if (depth >= MAX_DEPTH) throw new SchemaError(path, `nested deeper than ${MAX_DEPTH} levels`);
  if (Array.isArray(value)) {
    value.forEach((item, i) => checkSafe(item, `${path}[${i}]`, depth + 1));
    return;
  }
  if (isPlainObject(value)) {
    for (const [key, item] of Object.entries(value)) checkSafe(item, join(path, key), depth + 1);
    return;
  }
  throw new SchemaError(path, `${typeName(value)} is not a safe type`);
}

function isNullSchema(s) {
  return s && s.type === "null" && Object.keys(s).length === 1;
}

/** Whether `schema` is `anyOf: [X, {type: null}]`, the generator's form of an optional field. */
function optionalInner(schema) {
  const any = schema.anyOf;
  if (Array.isArray(any) && any.length === 2 && isNullSchema(any[1])) return any[0];
  return null;
}

/**
 * Raise SchemaError unless `value` matches `schema` (the subset of JSON Schema that
 * ext_sdk/jsonschema.py emits: type, properties/required/additionalProperties, items/maxItems, enum,
 * anyOf, and `{}` for any safe value).
 */
export function check(schema, value, path = "") {
  const inner = optionalInner(schema);
  if (inner !== null) {
    if (value === null) return;
    check(inner, value, path);
    return;
  }
  if (Array.isArray(schema.anyOf)) {
    let first = null;
    for (const option of schema.anyOf) {
      try {
        check(option, value, path);
        return;
      } catch (err) {
        if (!(err instanceof SchemaError)) throw err;
        first ??= err;
      }
    }
    throw first ?? new SchemaError(path, "matches no allowed shape");
  }
  if (schema.enum !== undefined) {
    if (typeof value !== "string" || !schema.enum.includes(value)) {
      throw new SchemaError(path, `expected one of ${schema.enum.join(", ")}; got ${repr(value)}`);
    }
    return;
  }
  switch (schema.type) {
    case undefined:
      checkSafe(value, path);
      return;
    case "string":
      if (typeof value !== "string") throw new SchemaError(path, `expected string, got ${typeName(value)}`);
      return;
    case "integer":
      if (!(typeof value === "bigint" || (typeof value === "number" && Number.isInteger(value)))) {
        throw new SchemaError(path, `expected int, got ${typeName(value)}`);
      }
      return;
    case "number":
      if (typeof value !== "number" && typeof value !== "bigint") {
        throw new SchemaError(path, `expected float, got ${typeName(value)}`);
      }
      return;
    case "boolean":
      if (typeof value !== "boolean") throw new SchemaError(path, `expected bool, got ${typeName(value)}`);
      return;
    case "null":
      if (value !== null) throw new SchemaError(path, `expected null, got ${typeName(value)}`);
      return;
    case "array":
      if (!Array.isArray(value)) throw new SchemaError(path, `expected list, got ${typeName(value)}`);
      if (schema.maxItems !== undefined && value.length > schema.maxItems) {
        throw new SchemaError(path, `more than ${schema.maxItems} items`);
      }
      value.forEach((item, i) => check(schema.items ?? {}, item, `${path}[${i}]`));
      return;
    case "object":
      checkObject(schema, value, path);
      return;
    default:
      throw new Error(`unsupported schema type ${JSON.stringify(schema.type)} at ${path || "<root>"}`);
  }
}

function checkObject(schema, value, path) {
  if (!isPlainObject(value)) throw new SchemaError(path, `expected map, got ${typeName(value)}`);
  const props = schema.properties;
  if (props === undefined) {
    const each = schema.additionalProperties ?? {};
    for (const [key, item] of Object.entries(value)) check(each === true ? {} : each, item, join(path, key));
    return;
  }
  for (const [key, item] of Object.entries(value)) {
    const sub = Object.hasOwn(props, key) ? props[key] : undefined;
    if (sub === undefined) {
      if (schema.additionalProperties === false) {
        const known = Object.keys(props).sort().join(", ") || "none";
        throw new SchemaError(path, `unknown field ${repr(key)} (known: ${known})`);
      }
      continue;
    }
    check(sub, item, join(path, key));
  }
  const missing = (schema.required ?? []).filter((name) => !Object.hasOwn(value, name)).sort();
  if (missing.length > 0) throw new SchemaError(path, `missing field ${repr(missing[0])}`);
}

/** A Python-like repr for messages ('text', 12, None, True). */
export function repr(value) {
  if (typeof value === "string") return `'${value}'`;
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "bigint") return value.toString();
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}
