/**
 * The wiring in src/extension.ts, with small fakes of the `vscode` API and of vscode-languageclient's
 * LanguageClient (installed in front of node's module loader): what is started with which options,
 * what the inline provider sends and returns, the status bar, the toggle, and which settings changes
 * restart the server. The real client and server are exercised by tests/test_vscode.py.
 */

import * as assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { SERVER_KEYS } from "../src/settings";

const pkg = JSON.parse(readFileSync(join(__dirname, "..", "..", "package.json"), "utf8"));
const defaults: Record<string, unknown> = {};
for (const [key, spec] of Object.entries<{ default: unknown }>(pkg.contributes.configuration.properties)) {
  defaults[key.replace(/^livekv\./, "")] = spec.default;
}

// -- fake vscode ---------------------------------------------------------------------------------------------

const user: Record<string, unknown> = {}; // the user's livekv.* settings
const configListeners: ((e: { affectsConfiguration(s: string): boolean }) => void)[] = [];
const providers: { selector: unknown; provider: any }[] = [];
const commands = new Map<string, (...args: unknown[]) => unknown>();
const executed: string[] = [];
const statusItem = { text: "", tooltip: "", shown: false, show() { this.shown = true; }, dispose() {} };
const disposable = { dispose() {} };

class Range {
  start: { line: number; character: number };
  end: { line: number; character: number };
  constructor(l1: number, c1: number, l2: number, c2: number) {
    this.start = { line: l1, character: c1 };
    this.end = { line: l2, character: c2 };
  }
}

const fakeVscode = {
  workspace: {
    workspaceFolders: undefined,
    getConfiguration: (section: string) => {
      assert.equal(section, "livekv");
      return { get: (key: string) => (key in user ? user[key] : defaults[key]) };
    },
    onDidChangeConfiguration: (listener: (typeof configListeners)[number]) => {
      configListeners.push(listener);
      return disposable;
    },
  },
  window: {
    createOutputChannel: () => ({ appendLine() {}, dispose() {} }),
    createStatusBarItem: () => statusItem,
  },
  languages: {
    registerInlineCompletionItemProvider: (selector: unknown, provider: unknown) => {
      providers.push({ selector, provider });
      return disposable;
    },
  },
  commands: {
    registerCommand: (name: string, fn: (...args: unknown[]) => unknown) => {
      commands.set(name, fn);
      return disposable;
    },
    executeCommand: async (name: string) => {
      executed.push(name);
    },
  },
  StatusBarAlignment: { Left: 1, Right: 2 },
  Range,
  SnippetString: class {
    constructor(readonly value: string) {}
  },
  InlineCompletionItem: class {
    filterText: string | undefined;
    constructor(
      readonly insertText: unknown,
      readonly range?: Range,
      readonly command?: unknown,
    ) {}
  },
  InlineCompletionList: class {
    constructor(readonly items: unknown[]) {}
  },
};

// -- fake vscode-languageclient/node ---------------------------------------------------------------------

const State = { Stopped: 1, Running: 2, Starting: 3 };

class FakeClient {
  static all: FakeClient[] = [];
  running = false;
  stopped = false;
  requests: { method: string; params: any; token: unknown }[] = [];
  notifications: { method: string; params: any }[] = [];
  handlers = new Map<string, (params: any) => void>();
  answer: unknown = null;
  code2ProtocolConverter = { asUri: (uri: { toString(): string }) => uri.toString() };

  constructor(
    readonly id: string,
    readonly name: string,
    readonly serverOptions: any,
    readonly clientOptions: any,
  ) {
    FakeClient.all.push(this);
  }
  onNotification(method: string, handler: (params: any) => void) {
    this.handlers.set(method, handler);
    return disposable;
  }
  onDidChangeState() {
    return disposable;
  }
  async start() {
    this.running = true;
  }
  async stop() {
    this.running = false;
    this.stopped = true;
  }
  needsStop() {
    return this.running;
  }
  isRunning() {
    return this.running;
  }
  async sendRequest(type: { method: string }, params: unknown, token: unknown) {
    this.requests.push({ method: type.method, params, token });
    return this.answer;
  }
  async sendNotification(type: { method: string }, params: unknown) {
    this.notifications.push({ method: type.method, params });
  }
}

const fakeClientLib = {
  LanguageClient: FakeClient,
  State,
  RequestType: class {
    constructor(readonly method: string) {}
  },
  DidChangeConfigurationNotification: { type: { method: "workspace/didChangeConfiguration" } },
};

// Installed before the extension is loaded: it then gets the fakes for `vscode` and the client library.
const Module = require("node:module");
const load = Module._load;
Module._load = function (request: string, ...rest: unknown[]) {
  if (request === "vscode") {
    return fakeVscode;
  }
  if (request === "vscode-languageclient/node") {
    return fakeClientLib;
  }
  return load.call(this, request, ...rest);
};
const extension: typeof import("../src/extension") = require("../src/extension");

const state = new Map<string, unknown>();
const context = {
  subscriptions: [] as unknown[],
  globalState: {
    get: (key: string, fallback: unknown) => (state.has(key) ? state.get(key) : fallback),
    update: async (key: string, value: unknown) => void state.set(key, value),
  },
};

const latest = () => FakeClient.all[FakeClient.all.length - 1];
const uri = { toString: () => "file:///w/app.py" };
const token = { isCancellationRequested: false };

async function provide(triggerKind = 1) {
  return providers[0].provider.provideInlineCompletionItems({ uri }, { line: 9, character: 7 }, { triggerKind }, token);
}

function fireChange() {
  for (const listener of configListeners) {
    listener({ affectsConfiguration: (s: string) => s === "livekv" });
  }
}

async function changeSetting(key: string, value: unknown) {
  user[key] = value;
  fireChange();
  await new Promise((resolve) => setImmediate(resolve)); // the listener does not await the restart
}

test("activation starts `livekv serve` with every server setting as initializationOptions", async () => {
  await extension.activate(context as any);
  assert.equal(FakeClient.all.length, 1);
  const client = latest();
  assert.equal(client.running, true);
  assert.equal(client.id, "livekv"); // so vscode-languageclient reads livekv.trace.server
  assert.deepEqual(client.serverOptions.command, "livekv");
  assert.deepEqual(client.serverOptions.args, ["serve"]);
  assert.equal(client.serverOptions.transport, undefined); // the client would append --stdio
  const options = client.clientOptions.initializationOptions();
  assert.deepEqual(Object.keys(options), [...SERVER_KEYS]);
  assert.equal(options.threads, 2);
  assert.deepEqual(
    client.clientOptions.documentSelector.map((f: { language: string }) => f.language),
    ["python", "python"],
  );
  assert.equal(providers.length, 1);
  assert.deepEqual([...commands.keys()].sort(), ["livekv.restart", "livekv.toggle"]);
  assert.equal(statusItem.shown, true);
  assert.match(statusItem.text, /loading/);
});

test("the inline provider sends the LSP request with the token and returns every item", async () => {
  const client = latest();
  const range = { start: { line: 9, character: 4 }, end: { line: 9, character: 7 } };
  client.answer = { items: [{ insertText: "total = 0", range }, { insertText: { kind: "snippet", value: "tot(${1})" } }] };
  const list = await provide(1); // VS Code's Automatic
  const sent = client.requests.at(-1)!;
  assert.equal(sent.method, "textDocument/inlineCompletion");
  assert.deepEqual(sent.params, {
    textDocument: { uri: "file:///w/app.py" },
    position: { line: 9, character: 7 },
    context: { triggerKind: 2 },
  });
  assert.equal(sent.token, token);
  assert.equal(list.items.length, 2);
  assert.equal(list.items[0].insertText, "total = 0");
  assert.deepEqual(list.items[0].range, new Range(9, 4, 9, 7));
  assert.equal(list.items[1].insertText.value, "tot(${1})");
  assert.equal(list.items[1].range, undefined);
});

test("progress and livekv/status reach the status bar; progress still goes on to the client", async () => {
  const client = latest();
  const forwarded: unknown[] = [];
  const progress = client.clientOptions.middleware.handleWorkDoneProgress;
  progress("t", { kind: "begin", title: "livekv: loading model" }, (_t: unknown, p: unknown) => forwarded.push(p));
  progress("t", { kind: "end", message: "Model-1B fp32" }, (_t: unknown, p: unknown) => forwarded.push(p));
  assert.equal(forwarded.length, 2);
  client.handlers.get("livekv/status")!({ latencyMs: 321, firstTokenMs: 40, model: "Model-1B fp32" });
  assert.equal(statusItem.text, "$(check) livekv Model-1B 321 ms");
});

test("the toggle turns suggestions off (nothing is sent) and on again, and is remembered", async () => {
  const client = latest();
  const before = client.requests.length;
  await commands.get("livekv.toggle")!();
  assert.equal(await provide(), undefined);
  assert.equal(client.requests.length, before);
  assert.equal(statusItem.text, "$(circle-slash) livekv off");
  assert.deepEqual(executed, ["editor.action.inlineSuggest.hide"]);
  assert.equal(state.get("livekv.enabled"), false);
  await commands.get("livekv.toggle")!();
  assert.ok(await provide());
  assert.equal(state.get("livekv.enabled"), true);
});

test("a server setting is sent again under `livekv`, without a restart", async () => {
  const client = latest();
  await changeSetting("maxTokens", 16);
  assert.equal(FakeClient.all.length, 1);
  const sent = client.notifications.at(-1)!;
  assert.equal(sent.method, "workspace/didChangeConfiguration");
  assert.equal(sent.params.settings.livekv.maxTokens, 16);
  assert.deepEqual(Object.keys(sent.params.settings.livekv), [...SERVER_KEYS]);
});

test("a model setting or the server command restarts the server with the new settings", async () => {
  const first = latest();
  await changeSetting("threads", 4);
  assert.equal(first.stopped, true);
  assert.equal(FakeClient.all.length, 2);
  assert.equal(latest().clientOptions.initializationOptions().threads, 4);
  assert.equal(latest().clientOptions.initializationOptions().maxTokens, 16);
  await changeSetting("serverCommand", "/opt/venv/bin/python");
  await changeSetting("serverArgs", ["-m", "lsp_server.cli", "serve"]);
  assert.equal(FakeClient.all.length, 4);
  assert.equal(latest().serverOptions.command, "/opt/venv/bin/python");
  assert.deepEqual(latest().serverOptions.args, ["-m", "lsp_server.cli", "serve"]);
  assert.equal(FakeClient.all.filter((c) => c.running).length, 1);
});

test("changes in quick succession leave exactly one server running, with the last settings", async () => {
  const before = FakeClient.all.length;
  user.weights = "int8";
  fireChange(); // the second change arrives while the first restart is still stopping the old server
  user.device = "cuda";
  fireChange();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(FakeClient.all.filter((c) => c.running).length, 1);
  assert.equal(latest().running, true);
  assert.equal(latest().clientOptions.initializationOptions().device, "cuda");
  assert.ok(FakeClient.all.length - before <= 2);
});

test("livekv.restart and deactivate stop the running server", async () => {
  const before = latest();
  await commands.get("livekv.restart")!();
  assert.equal(before.stopped, true);
  assert.equal(latest().running, true);
  await extension.deactivate();
  assert.equal(FakeClient.all.filter((c) => c.running).length, 0);
});
