// An extension's identity (name, version, permissions), read from its manifest `extension.toml` — the one
// source of it (the counterpart of `find_manifest` / `read_identity` in ext_sdk/extension.py). Parsed with
// smol-toml (a TOML 1.0 parser, pinned in package-lock.json); only these three keys are read here, the host
// reads and checks the rest.
//
// smol-toml is loaded on first use, like the SDK's other npm packages (runtime.mjs): importing the SDK works
// without it, a test whose extension restates its whole identity never loads it, and under the host a missing
// package is reported with how to install it (exit 3) instead of stopping node at import.

import { readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

let toml = null;

/** The TOML parser (smol-toml), loaded once; throws when the package is not installed. */
export function loadToml() {
  toml ??= createRequire(import.meta.url)("smol-toml");
  return toml;
}

/** File name of the manifest beside an extension's code (host.exthost.manifest.MANIFEST_NAME). */
export const MANIFEST_FILE = "extension.toml";
/** How many directories above the defining module's folder are searched for the manifest. */
export const MANIFEST_DEPTH = 4;

/** A manifest that cannot say who the extension is (the message names the file and what is wrong). */
export class ManifestError extends Error {
  constructor(message) {
    super(message);
    this.name = "ManifestError";
  }
}

/** `where` (a path, a file: URL or its string) as a filesystem path. */
export function toPath(where) {
  if (where instanceof URL) return fileURLToPath(where);
  const text = String(where);
  return text.startsWith("file:") ? fileURLToPath(text) : resolve(text);
}

function kind(path) {
  try {
    const stat = statSync(path);
    return stat.isDirectory() ? "dir" : stat.isFile() ? "file" : "other";
  } catch {
    return "missing";
  }
}

/**
 * The manifest for `where`: `where` itself when it is a file named extension.toml, else the first
 * `extension.toml` in `where`'s folder (or `where`, a folder) and up to MANIFEST_DEPTH folders above it;
 * null when there is none.
 * @param {string|URL} where a module (its import.meta.url or path), a folder, or a manifest
 * @returns {string|null} the manifest's absolute path
 */
export function findManifest(where) {
  const start = toPath(where);
  const found = kind(start);
  if (found === "file" && basename(start) === MANIFEST_FILE) return start;
  let directory = found === "dir" ? start : dirname(start);
  for (let level = 0; level <= MANIFEST_DEPTH; level += 1) {
    const candidate = join(directory, MANIFEST_FILE);
    if (kind(candidate) === "file") return candidate;
    const parent = dirname(directory);
    if (parent === directory) break;
    directory = parent;
  }
  return null;
}

/**
 * The manifest an extension names itself (the `manifest` option): that file, or for a folder the first
 * extension.toml in it or above (as findManifest); throws ManifestError when there is none.
 * @param {string|URL} where a path (relative: to the working directory) or a file: URL
 * @returns {string} the manifest's absolute path
 */
export function givenManifest(where) {
  const path = toPath(where);
  const what = kind(path);
  const found = what === "file" ? path : what === "dir" ? findManifest(path) : null;
  if (found === null) throw new ManifestError(`manifest: no ${what === "dir" ? `${MANIFEST_FILE} in or above ` : ""}${path}`);
  return found;
}

/**
 * `{name, version, permissions}` of the manifest at `path`, with the host's defaults (version "0.0.0", no
 * permission); throws ManifestError naming the file when it cannot say.
 * @param {string} path
 * @returns {{name: string, version: string, permissions: string[]}}
 */
export function readIdentity(path) {
  let parse, TomlError;
  try {
    ({ parse, TomlError } = loadToml());
  } catch (err) {
    const sdk = fileURLToPath(new URL("..", import.meta.url));
    throw new ManifestError(`${path}: cannot read the manifest: the SDK's TOML parser is missing ` +
      `(${String(err.message).split("\n")[0]}); install the SDK's packages: npm ci --prefix ${sdk} --ignore-scripts`);
  }
  let raw;
  try {
    raw = parse(readFileSync(path, "utf8"));
  } catch (err) {
    // smol-toml's message carries an excerpt of the document on the following lines: keep the first line
    const why = err instanceof TomlError ? `${err.message.split("\n")[0]} (line ${err.line}, column ${err.column})` : err.message;
    throw new ManifestError(`${path}: cannot read the manifest: ${why}`);
  }
  const { name, version = "0.0.0", permissions = [] } = raw;
  if (typeof name !== "string" || name === "") throw new ManifestError(`${path}: the manifest has no name`);
  if (typeof version !== "string") throw new ManifestError(`${path}: version must be a string`);
  if (!Array.isArray(permissions) || !permissions.every((p) => typeof p === "string")) {
    throw new ManifestError(`${path}: permissions must be a list of strings`);
  }
  return { name, version, permissions: [...permissions] };
}
