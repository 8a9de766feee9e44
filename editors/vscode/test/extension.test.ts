/**
 * The wiring in src/extension.ts, with small fakes of the `vscode` API and of vscode-languageclient's
 * LanguageClient (installed in front of node's module loader): what is started with which options,
 * what the inline completions send and return, the status bar, the toggle, and which settings changes
 * restart the server. The inline completions are vscode-languageclient 9.0.1's own code: its
 * InlineCompletionItemFeature (the one feature `registerProposedFeatures()` adds in that version) and
 * its converters run on the fake client, so the JSON checked here is what that version would send
 * through the extension's middleware. The real server is exercised by tests/test_vscode.py.
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
const providers: { selector: unknown; provider: any; disposed: boolean }[] = [];
const commands = new Map<string, (...args: unknown[]) => unknown>();
const executed: string[] = [];
const statusItem = { text: "", tooltip: "", shown: false, show() { this.shown = true; }, dispose() {} };
const disposable = { dispose() {} };

class Position {
  constructor(
    readonly line: number,
    readonly character: number,
  ) {}
}

class Range {
  start: Position;
  end: Position;
  constructor(l1: number, c1: number, l2: number, c2: number) {
    this.start = new Position(l1, c1);
    this.end = new Position(l2, c2);
  }
  toJSON(): unknown {
    return [this.start, this.end]; // as vscode.Range serializes: not an LSP range
  }
}

class CancellationError extends Error {}

const fakeVscodeApi = {
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
      const entry = { selector, provider, disposed: false };
      providers.push(entry);
      return { dispose: () => void (entry.disposed = true) };
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
  Position,
  Range,
  CancellationError,
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
// The client library's modules subclass a few more vscode classes when they load; any will do.
const fakeVscode = new Proxy(fakeVscodeApi as Record<string | symbol, unknown>, {
  get: (target, name) => (name in target ? target[name] : class {}),
});

// -- fake vscode-languageclient/node, around the library's own inline completion feature -------------------

const State = { Stopped: 1, Running: 2, Starting: 3 };
const RevealOutputChannelOn = { Debug: 0, Info: 1, Warn: 2, Error: 3, Never: 4 };

// Loaded (with the fake `vscode` below installed) once the module loader is patched.
let library: { InlineCompletionItemFeature: any; code: any; protocol: any };

class FakeClient {
  static all: FakeClient[] = [];
  running = false;
  stopped = false;
  requests: { method: string; params: any; token: unknown }[] = [];
  notifications: { method: string; params: any }[] = [];
  handlers = new Map<string, (params: any) => void>();
  answer: unknown = null;
  failWith: Error | undefined; // the next inline request fails with this
  failed: unknown[] = []; // what reached handleFailedRequest
  features: any[] = [];
  proposedFeatures = 0;
  capabilities: any = {};
  code2ProtocolConverter = library.code.createConverter((uri: { toString(): string }) => uri.toString());
  protocol2CodeConverter = library.protocol.createConverter(undefined, true, true);

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
  get middleware() {
    return this.clientOptions.middleware;
  }
  /** vscode-languageclient 9.0.1's ProposedFeatures.createAll: the inline completion feature alone. */
  registerProposedFeatures() {
    this.proposedFeatures++;
    this.features.push(new library.InlineCompletionItemFeature(this));
  }
  /** As the real client: capabilities filled in, then features initialized with the server's. */
  async start() {
    for (const feature of this.features) {
      feature.fillClientCapabilities(this.capabilities);
      feature.initialize({ inlineCompletionProvider: true }, this.clientOptions.documentSelector);
    }
    this.running = true;
  }
  async stop() {
    for (const feature of this.features) {
      feature.clear(); // the real client disposes every feature's registrations when it stops
    }
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
    // What goes on the wire is the JSON: the library's params as JSON.stringify writes them.
    this.requests.push({ method: type.method, params: JSON.parse(JSON.stringify(params)), token });
    if (this.failWith) {
      const err = this.failWith;
      this.failWith = undefined;
      throw err;
    }
    return this.answer;
  }
  /** The real one logs the failure, then throws it again (cancellations aside). */
  handleFailedRequest(_type: unknown, _token: unknown, error: unknown) {
    this.failed.push(error);
    throw error;
  }
  async sendNotification(type: { method: string }, params: unknown) {
    this.notifications.push({ method: type.method, params });
  }
}

const fakeClientLib = {
  LanguageClient: FakeClient,
  State,
  RevealOutputChannelOn,
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
require("vscode-languageserver-protocol/node"); // installs the node runtime the converters time with
library = {
  InlineCompletionItemFeature: require("vscode-languageclient/lib/common/inlineCompletion").InlineCompletionItemFeature,
  code: require("vscode-languageclient/lib/common/codeConverter"),
  protocol: require("vscode-languageclient/lib/common/protocolConverter"),
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

/** The inline completion providers registered now (the client's feature registers one while it runs). */
const active = () => providers.filter((p) => !p.disposed);

async function provide(triggerKind = 1, selectedCompletionInfo?: { range: Range; text: string }) {
  const context = { triggerKind, selectedCompletionInfo };
  return active()[0].provider.provideInlineCompletionItems({ uri }, new Position(9, 7), context, token);
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
  // The client's own inline completion feature, registered before the start, provides the ghost
  // text for the client's documents; the extension registers no provider of its own.
  assert.equal(client.proposedFeatures, 1);
  assert.equal(client.capabilities.textDocument.inlineCompletion.dynamicRegistration, true);
  assert.equal(providers.length, 1);
  assert.deepEqual(
    (providers[0].selector as { language: string; scheme: string }[]).map((f) => [f.language, f.scheme]),
    [
      ["python", "file"],
      ["python", "untitled"],
    ],
  );
  assert.equal(client.clientOptions.revealOutputChannelOn, RevealOutputChannelOn.Never); // no pop-up per keystroke
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
    context: { triggerKind: 2 }, // LSP 3.18's Automatic, not VS Code's 1 as 9.0.1 alone would send
  });
  assert.equal(sent.token, token);
  assert.equal(list.items.length, 2);
  assert.equal(list.items[0].insertText, "total = 0");
  assert.deepEqual(list.items[0].range, new Range(9, 4, 9, 7));
  assert.equal(list.items[1].insertText.value, "tot(${1})");
  assert.equal(list.items[1].range, undefined);
  await provide(0); // VS Code's Invoke
  assert.deepEqual(client.requests.at(-1)!.params.context, { triggerKind: 1 });
});

test("a selected popup item goes out as LSP's selectedCompletionInfo, its range plain", async () => {
  const client = latest();
  await provide(1, { range: new Range(9, 5, 9, 7), text: "items" });
  assert.deepEqual(client.requests.at(-1)!.params.context, {
    triggerKind: 2,
    selectedCompletionInfo: {
      range: { start: { line: 9, character: 5 }, end: { line: 9, character: 7 } },
      text: "items",
    },
  });
});

test("a failed inline request shows in the status bar until the next suggestion", async () => {
  const client = latest();
  client.failWith = new Error("decoding blew up");
  assert.equal(await provide(), undefined);
  assert.equal(client.failed.length, 1); // the client's own failure handling saw it (and logged it)
  assert.equal(statusItem.text, "$(error) livekv error");
  assert.match(statusItem.tooltip, /inline completion failed: decoding blew up/);
  client.handlers.get("livekv/status")!({ latencyMs: 200, firstTokenMs: 30, model: "Model-1B fp32" });
  assert.equal(statusItem.text, "$(check) livekv Model-1B 200 ms");
  assert.doesNotMatch(statusItem.tooltip, /failed/);
});

test("an answered request puts the time the client waited in the status bar", async () => {
  const client = latest();
  client.handlers.get("livekv/status")!({ latencyMs: 1, firstTokenMs: 1, model: "Model-1B fp32" });
  client.answer = { items: [{ insertText: "total = 0" }] };
  const sendRequest = client.sendRequest.bind(client);
  client.sendRequest = async (type: { method: string }, params: unknown, t: unknown) => {
    await new Promise((resolve) => setTimeout(resolve, 60)); // the server's queue
    return sendRequest(type, params, t);
  };
  await provide();
  client.sendRequest = sendRequest;
  const shown = Number(/ (\d+) ms$/.exec(statusItem.text)![1]);
  assert.ok(shown >= 55, statusItem.text); // the wait, not the server's 1 ms
  assert.match(statusItem.tooltip, /server 1 ms/);
  client.answer = { items: [] }; // an empty answer leaves the last figure alone
  await provide();
  assert.equal(statusItem.text, `$(check) livekv Model-1B ${shown} ms`);
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
  // each stopped client took its inline provider with it; the running one has one, asking itself
  assert.equal(active().length, 1);
  assert.equal(FakeClient.all.every((c) => c.proposedFeatures === 1), true);
  await provide();
  assert.equal(latest().requests.length, 1);
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
  assert.equal(active().length, 0);
});
