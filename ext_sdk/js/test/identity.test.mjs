// An extension's identity (name, version, permissions) comes from its manifest extension.toml when the code
// does not restate it: read by Extension.resolve (in the runtime and in FakeHost), a restated value is kept as
// written (the host checks it), and a manifest that cannot say who the extension is fails naming the file.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { after, describe, it } from "node:test";
import { Extension } from "../index.mjs";
import { FakeHost } from "../testing.mjs";
import { findManifest, MANIFEST_DEPTH, ManifestError, readIdentity } from "../lib/manifest.mjs";
import { MiniHost } from "../testdata/harness.mjs";

const SDK = new URL("../index.mjs", import.meta.url).href;
const ROOT = mkdtempSync(join(tmpdir(), "kithost-js-identity-"));
after(() => rmSync(ROOT, { recursive: true, force: true }));

let folders = 0;
/** A fresh folder under ROOT with `files` ({relative path: text}); resolves to its path. */
function folder(files) {
  folders += 1;
  const dir = join(ROOT, `f${folders}`);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, ".."), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  mkdirSync(dir, { recursive: true });
  return dir;
}

const MANIFEST = 'name = "ident"\nversion = "2.3.4"\nruntime = "node"\nmain = "index.mjs"\nevents = ["tool_call"]\n' +
  'permissions = ["conversation", "state"]\n';
/** An extension module: imports the SDK, declares `ext` with `declaration` and ends with main(). */
const MODULE = (declaration) => `import { Extension, main } from ${JSON.stringify(SDK)};
export const ext = ${declaration};
ext.on("tool_call", async () => null);
main(import.meta, ext);
`;

describe("the manifest is found", () => {
  it("in the module's folder, or up to MANIFEST_DEPTH folders above it, not further", () => {
    const dir = folder({ "extension.toml": MANIFEST, "a/b/c/d/e/m.mjs": "" });
    assert.equal(findManifest(join(dir, "index.mjs")), join(dir, "extension.toml"));
    assert.equal(MANIFEST_DEPTH, 4);
    assert.equal(findManifest(pathToFileURL(join(dir, "a/b/c/d/m.mjs"))), join(dir, "extension.toml"));
    assert.equal(findManifest(pathToFileURL(join(dir, "a/b/c/d/e/m.mjs")).href), null);
    assert.equal(findManifest(join(dir, "a")), join(dir, "extension.toml")); // a folder: searched from itself
  });

  it("the nearest one wins", () => {
    const dir = folder({ "extension.toml": MANIFEST, "inner/extension.toml": 'name = "inner"\n' });
    assert.equal(findManifest(join(dir, "inner", "index.mjs")), join(dir, "inner", "extension.toml"));
  });
});

describe("Extension() takes what it is not given from the manifest", () => {
  it("is unresolved until its module is known, then reads name, version and permissions", () => {
    const dir = folder({ "extension.toml": MANIFEST });
    const ext = new Extension();
    assert.equal(ext.resolved, false);
    assert.equal(ext.name, null);
    assert.throws(() => ext.helloFields(), /identity is not resolved yet/);
    ext.resolve(pathToFileURL(join(dir, "index.mjs")).href);
    assert.deepEqual([ext.name, ext.version, ext.permissions, ext.manifest],
      ["ident", "2.3.4", ["conversation", "state"], join(dir, "extension.toml")]);
    const hello = ext.helloFields();
    assert.deepEqual([hello.name, hello.version, hello.permissions], ["ident", "2.3.4", ["conversation", "state"]]);
    ext.resolve(join(ROOT, "elsewhere.mjs")); // once resolved, a later call changes nothing
    assert.equal(ext.name, "ident");
  });

  it("defaults to version 0.0.0 and no permission, as the host does", () => {
    const dir = folder({ "extension.toml": 'name = "bare"\nruntime = "node"\n' });
    const ext = new Extension().resolve(join(dir, "index.mjs"));
    assert.deepEqual([ext.name, ext.version, ext.permissions], ["bare", "0.0.0", []]);
  });

  it("keeps a restated value as written, even one that differs from the manifest (the host checks it)", () => {
    const dir = folder({ "extension.toml": MANIFEST });
    const ext = new Extension("other", { version: "9.9.9" }).resolve(join(dir, "index.mjs"));
    assert.deepEqual([ext.name, ext.version, ext.permissions], ["other", "9.9.9", ["conversation", "state"]]);
    const perms = new Extension(null, { permissions: [] }).resolve(join(dir, "index.mjs")); // null: not given
    assert.deepEqual([perms.name, perms.version, perms.permissions], ["ident", "2.3.4", []]);
  });

  it("reads nothing when everything is given", () => {
    const dir = folder({ "extension.toml": "this is [not toml" });
    const ext = new Extension("full", { version: "1.0.0", permissions: ["conversation"] });
    assert.equal(ext.resolved, true);
    assert.equal(ext.resolve(join(dir, "index.mjs")).manifest, null);
    assert.deepEqual([ext.name, ext.version, ext.permissions], ["full", "1.0.0", ["conversation"]]);
  });

  it("without a manifest: the given name and the defaults; no name is an error naming the module", () => {
    const dir = folder({ "a/b/c/d/e/index.mjs": "" });
    const named = new Extension("alone").resolve(join(dir, "a/b/c/d/e/index.mjs"));
    assert.deepEqual([named.name, named.version, named.permissions, named.manifest], ["alone", "0.0.0", [], null]);
    const where = join(dir, "a/b/c/d/e/index.mjs");
    assert.throws(() => new Extension().resolve(pathToFileURL(where)),
      (err) => err.message.startsWith(`no extension.toml found beside ${where} to read its name from;`));
    assert.throws(() => new Extension().resolve(), /beside the extension \(its module is not known\)/);
  });

  it("reads the manifest it is given (path, file: URL or folder) at once", () => {
    const dir = folder({ "extension.toml": MANIFEST, "custom.toml": 'name = "custom"\nversion = "5.0.0"\n' });
    const byPath = new Extension(undefined, { manifest: join(dir, "custom.toml") });
    assert.deepEqual([byPath.resolved, byPath.name, byPath.version], [true, "custom", "5.0.0"]);
    const byUrl = new Extension(undefined, { manifest: pathToFileURL(join(dir, "extension.toml")) });
    assert.equal(byUrl.version, "2.3.4");
    const byFolder = new Extension(undefined, { manifest: dir });
    assert.equal(byFolder.name, "ident");
    assert.throws(() => new Extension(undefined, { manifest: join(dir, "missing.toml") }),
      (err) => err instanceof ManifestError && err.message === `manifest: no ${join(dir, "missing.toml")}`);
  });

  it("checks what it is given and what it reads", () => {
    assert.throws(() => new Extension(""), /name must be a non-empty string/);
    assert.throws(() => new Extension("x", { version: 1 }), /version must be a string/);
    assert.throws(() => new Extension("x", { permissions: "conversation" }), /permissions must be an array/);
    assert.throws(() => new Extension("x", { permissions: ["root"] }), /unknown permission\(s\) \["root"\]/);
    const cases = [
      ['name = "x"\nversion = [\n', /: cannot read the manifest: Invalid TOML document: .* \(line \d+, column \d+\)$/],
      ['version = "1.0.0"\n', /: the manifest has no name$/],
      ['name = "x"\nversion = 2\n', /: version must be a string$/],
      ['name = "x"\npermissions = "conversation"\n', /: permissions must be a list of strings$/],
    ];
    for (const [text, pattern] of cases) {
      const dir = folder({ "extension.toml": text });
      const file = join(dir, "extension.toml");
      assert.throws(() => readIdentity(file), (err) => err instanceof ManifestError && err.message.startsWith(file) &&
        pattern.test(err.message) && !err.message.includes("\n"), text);
    }
    const dir = folder({ "extension.toml": 'name = "x"\npermissions = ["root"]\n' });
    assert.throws(() => new Extension().resolve(join(dir, "index.mjs")),
      (err) => err.message.startsWith(`${join(dir, "extension.toml")}: unknown permission(s) ["root"]`));
  });
});

describe("FakeHost", () => {
  it("load(url) completes the identity from the module's manifest, and grants its permissions", async () => {
    const dir = folder({ "extension.toml": MANIFEST, "index.mjs": MODULE("new Extension()") });
    const host = await FakeHost.load(pathToFileURL(join(dir, "index.mjs")));
    assert.deepEqual([host.extension.name, host.extension.version], ["ident", "2.3.4"]);
    assert.ok(host.granted.has("state") && host.granted.has("conversation"));
  });

  it("a bare Extension() whose module it does not know: an error that says what to give", () => {
    assert.throws(() => new FakeHost(new Extension()), /no extension\.toml found beside the extension/);
    const dir = folder({ "extension.toml": MANIFEST });
    const host = new FakeHost(new Extension(), { module: join(dir, "index.mjs") });
    assert.equal(host.extension.name, "ident");
  });
});

describe("under a host (the runtime)", () => {
  const start = async (files, answer) => {
    const dir = folder(files);
    const host = new MiniHost();
    try {
      await host.bind();
      host.spawn(join(dir, "index.mjs"));
      return await answer(host, dir);
    } finally {
      await host.close();
    }
  };

  it("main(import.meta, ext) sends the manifest's identity in hello", async () => {
    const hello = await start({ "extension.toml": MANIFEST, "index.mjs": MODULE("new Extension()") }, async (host) => {
      const got = await host.hello();
      await host.reject("test over");
      assert.equal(await host.exitStatus(), 4);
      return got;
    });
    assert.deepEqual([hello.name, hello.version, hello.permissions], ["ident", "2.3.4", ["conversation", "state"]]);
  });

  it("a restated value is sent as written", async () => {
    const files = { "extension.toml": MANIFEST, "index.mjs": MODULE('new Extension(undefined, { version: "0.0.1" })') };
    const hello = await start(files, async (host) => {
      const got = await host.hello();
      await host.reject("its code says version '0.0.1' but its manifest says '2.3.4'");
      assert.equal(await host.exitStatus(), 4);
      assert.match(host.stderr, /host refused 'ident': its code says version '0\.0\.1'/);
      return got;
    });
    assert.deepEqual([hello.name, hello.version], ["ident", "0.0.1"]);
  });

  it("a manifest that cannot say who the extension is: the reason naming the file, exit 3, no hello", async () => {
    await start({ "extension.toml": 'version = "1.0.0"\n', "index.mjs": MODULE("new Extension()") }, async (host, dir) => {
      assert.equal(await host.exitStatus(), 3);
      assert.ok(host.stderr.includes(`cannot tell who the extension is: ${join(dir, "extension.toml")}: the manifest has no name`),
        host.stderr);
    });
  });
});
