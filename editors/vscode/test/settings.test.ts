/** The settings mapping (src/settings.ts) and package.json's contributed configuration. */

import * as assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import {
  EXTENSION_KEYS,
  MODEL_KEYS,
  SERVER_KEYS,
  Lookup,
  configurationParams,
  launch,
  restartKey,
  serverSettings,
} from "../src/settings";

// out/test/ -> the extension folder
const pkg = JSON.parse(readFileSync(join(__dirname, "..", "..", "package.json"), "utf8"));
const properties: Record<string, { default: unknown; description?: string; markdownDescription?: string }> =
  pkg.contributes.configuration.properties;

/** VS Code's `getConfiguration("livekv").get`: the user's values over package.json's defaults. */
function settings(user: Record<string, unknown> = {}): Lookup {
  return (key) => (key in user ? user[key] : properties[`livekv.${key}`]?.default);
}

test("package.json contributes exactly the server's keys and the extension's own", () => {
  const contributed = Object.keys(properties).map((k) => k.replace(/^livekv\./, ""));
  assert.deepEqual(contributed.sort(), [...SERVER_KEYS, ...EXTENSION_KEYS].sort());
  for (const [key, spec] of Object.entries(properties)) {
    assert.ok("default" in spec, `${key} has a default`);
    assert.ok(spec.description || spec.markdownDescription, `${key} has a description`);
  }
});

test("the model settings say they take effect after a restart, and only they", () => {
  for (const key of SERVER_KEYS) {
    const spec = properties[`livekv.${key}`];
    const text = spec.markdownDescription ?? spec.description ?? "";
    const says = text.includes("(takes effect after a restart");
    assert.equal(says, (MODEL_KEYS as readonly string[]).includes(key), key);
  }
});

test("the initialization options are every server key with its default, nothing else", () => {
  const options = serverSettings(settings());
  assert.deepEqual(Object.keys(options), [...SERVER_KEYS]);
  assert.equal(options.modelPath, null); // null (the embedded model) is sent, not dropped
  assert.equal(options.threads, 2);
  assert.equal(options.weights, "auto");
  assert.equal(options.updatePolicy, "pie");
  for (const key of EXTENSION_KEYS) {
    assert.equal(key in options, false, key);
  }
});

test("user values replace the defaults; didChangeConfiguration carries them under `livekv`", () => {
  const get = settings({ maxTokens: 16, multiline: true, serverCommand: "/opt/livekv" });
  const params = configurationParams(get);
  assert.deepEqual(Object.keys(params.settings), ["livekv"]);
  assert.equal(params.settings.livekv.maxTokens, 16);
  assert.equal(params.settings.livekv.multiline, true);
  assert.equal("serverCommand" in params.settings.livekv, false);
});

test("the launch: `livekv serve` by default, ${workspaceFolder} expanded", () => {
  assert.deepEqual(launch(settings()), { command: "livekv", args: ["serve"] });
  const python = settings({
    serverCommand: "${workspaceFolder}/.venv/bin/python",
    serverArgs: ["-m", "lsp_server.cli", "serve", "--log-file", "${workspaceFolder}/livekv.log"],
  });
  assert.deepEqual(launch(python, "/w"), {
    command: "/w/.venv/bin/python",
    args: ["-m", "lsp_server.cli", "serve", "--log-file", "/w/livekv.log"],
  });
  // an empty command or malformed args fall back to the defaults instead of spawning nothing
  assert.deepEqual(launch(settings({ serverCommand: " ", serverArgs: [1] })), { command: "livekv", args: ["serve"] });
});

test("model settings and the launch restart the server; the others do not", () => {
  const base = restartKey(settings());
  for (const key of MODEL_KEYS) {
    const changed = key === "modelPath" ? "/models/x.gguf" : key === "threads" ? 4 : key === "weights" ? "int8" : "cuda";
    assert.notEqual(restartKey(settings({ [key]: changed })), base, key);
  }
  assert.notEqual(restartKey(settings({ serverCommand: "/opt/livekv" })), base);
  assert.notEqual(restartKey(settings({ serverArgs: ["serve", "--log-file", "x"] })), base);
  for (const key of SERVER_KEYS.filter((k) => !(MODEL_KEYS as readonly string[]).includes(k))) {
    const value = properties[`livekv.${key}`].default;
    const changed = typeof value === "boolean" ? !value : typeof value === "number" ? value + 1 : "x";
    assert.equal(restartKey(settings({ [key]: changed })), base, key);
  }
});
