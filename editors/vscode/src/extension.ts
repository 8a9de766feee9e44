/**
 * The livekv VS Code extension: starts `livekv serve` over stdio through vscode-languageclient,
 * shows the server's inline completions as ghost text, and keeps a status bar item.
 *
 * Thin on purpose: the request/response mapping (inline.ts), the settings (settings.ts) and the
 * status text (status.ts) are pure modules with their own unit tests; this file only wires them
 * to VS Code. vscode-languageclient 9 is used because its own inline completion feature is a
 * proposed one that stays off unless registered, so ours is the only provider (from 10 on the
 * client registers one by itself whenever the server advertises `inlineCompletionProvider`).
 */

import * as vscode from "vscode";
import {
  DidChangeConfigurationNotification,
  LanguageClient,
  LanguageClientOptions,
  RequestType,
  ServerOptions,
  State,
} from "vscode-languageclient/node";

import { Item, InlineCompletionParams, requestParams, responseItems } from "./inline";
import { Lookup, configurationParams, launch, restartKey, serverSettings } from "./settings";
import { Status, StatusParams } from "./status";

const SECTION = "livekv";
const ENABLED = "livekv.enabled"; // globalState key of the toggle
const SELECTOR = [
  { scheme: "file", language: "python" },
  { scheme: "untitled", language: "python" },
];
const INLINE = new RequestType<InlineCompletionParams, unknown, void>("textDocument/inlineCompletion");

function lookup(): Lookup {
  const config = vscode.workspace.getConfiguration(SECTION);
  return (key) => config.get(key);
}

function workspaceFolder(): string | undefined {
  return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
}

/** One server process at a time; `restart` replaces it with one built from the current settings. */
class Server {
  client: LanguageClient | undefined;
  private key = ""; // restartKey of the running process
  private stopping = false;
  // Starts, stops and settings changes run one after another: a second change that arrives while a
  // restart is stopping the old process must not start a process of its own next to the new one.
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly output: vscode.OutputChannel,
    private readonly status: Status,
    private readonly refresh: () => void,
  ) {}

  private async start(): Promise<void> {
    const get = lookup();
    const folder = workspaceFolder();
    const { command, args } = launch(get, folder);
    this.key = restartKey(get, folder);
    // No `transport`: the client would append `--stdio`; `livekv serve` talks stdio by default.
    const serverOptions: ServerOptions = { command, args, options: { cwd: folder } };
    const clientOptions: LanguageClientOptions = {
      documentSelector: SELECTOR,
      outputChannel: this.output,
      // A function: the client's own restart after a crash sends the settings of that moment.
      initializationOptions: () => serverSettings(lookup()),
      middleware: {
        handleWorkDoneProgress: (token, params, next) => {
          this.status.progress(token, params);
          this.refresh();
          next(token, params);
        },
      },
    };
    const client = new LanguageClient("livekv", "livekv", serverOptions, clientOptions);
    client.onNotification("livekv/status", (params: StatusParams) => {
      this.status.suggestion(params);
      this.refresh();
    });
    client.onDidChangeState((event) => {
      if (event.newState === State.Starting) {
        this.status.starting();
      } else if (event.newState === State.Stopped && !this.stopping) {
        this.status.failed("the server stopped (see the livekv output)");
      }
      this.refresh();
    });
    this.client = client;
    this.status.starting();
    this.refresh();
    try {
      await client.start();
    } catch (err) {
      this.status.failed(`could not start \`${[command, ...args].join(" ")}\`: ${err}`);
      this.refresh();
      this.output.appendLine(`livekv: could not start the server: ${err}`);
    }
  }

  private async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (!client) {
      return;
    }
    this.stopping = true;
    try {
      if (client.needsStop()) {
        await client.stop();
      }
    } catch (err) {
      this.output.appendLine(`livekv: stopping the server failed: ${err}`);
    } finally {
      this.stopping = false;
    }
  }

  shutdown(): Promise<void> {
    return this.serial(() => this.stop());
  }

  private serial(work: () => Promise<void>): Promise<void> {
    const done = this.queue.then(work);
    this.queue = done.catch((err) => this.output.appendLine(`livekv: ${err}`));
    return done;
  }

  restart(): Promise<void> {
    return this.serial(async () => {
      await this.stop();
      await this.start();
    });
  }

  /** A settings change: a new process when the launch or a model setting changed, else a notification. */
  configurationChanged(): Promise<void> {
    return this.serial(async () => {
      const get = lookup();
      if (restartKey(get, workspaceFolder()) !== this.key) {
        await this.stop();
        await this.start();
      } else if (this.client?.isRunning()) {
        await this.client.sendNotification(DidChangeConfigurationNotification.type, configurationParams(get));
      }
    });
  }
}

function toVscode(item: Item): vscode.InlineCompletionItem {
  const insert = item.snippet ? new vscode.SnippetString(item.text) : item.text;
  const r = item.range;
  const range = r && new vscode.Range(r.start.line, r.start.character, r.end.line, r.end.character);
  const out = new vscode.InlineCompletionItem(insert, range, item.command);
  if (item.filterText !== undefined) {
    out.filterText = item.filterText;
  }
  return out;
}

function inlineProvider(server: Server, status: Status, output: vscode.OutputChannel) {
  return {
    async provideInlineCompletionItems(
      document: vscode.TextDocument,
      position: vscode.Position,
      context: vscode.InlineCompletionContext,
      token: vscode.CancellationToken,
    ): Promise<vscode.InlineCompletionList | undefined> {
      const client = server.client;
      if (!status.enabled || !client?.isRunning()) {
        return undefined;
      }
      const uri = client.code2ProtocolConverter.asUri(document.uri);
      let result: unknown;
      try {
        // The token forwards VS Code's cancellation as `$/cancelRequest`; the server stops decoding.
        result = await client.sendRequest(INLINE, requestParams(uri, position, context), token);
      } catch (err) {
        if (token.isCancellationRequested) {
          return undefined;
        }
        output.appendLine(`livekv: inline completion failed: ${err}`);
        return client.handleFailedRequest(INLINE, token, err, undefined, false);
      }
      // Every item: VS Code shows the first and cycles through the others (Alt+] / Alt+[).
      return new vscode.InlineCompletionList(responseItems(result).map(toVscode));
    },
  };
}

let server: Server | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const output = vscode.window.createOutputChannel("livekv");
  const status = new Status(context.globalState.get<boolean>(ENABLED, true));
  const item = vscode.window.createStatusBarItem("livekv.status", vscode.StatusBarAlignment.Right, 100);
  item.name = "livekv";
  item.command = "livekv.toggle";
  const refresh = () => {
    const view = status.view();
    item.text = view.text;
    item.tooltip = view.tooltip;
    item.show();
  };
  const current = new Server(output, status, refresh);
  server = current;
  context.subscriptions.push(
    output,
    item,
    vscode.languages.registerInlineCompletionItemProvider(SELECTOR, inlineProvider(current, status, output)),
    vscode.commands.registerCommand("livekv.toggle", async () => {
      status.enabled = !status.enabled;
      await context.globalState.update(ENABLED, status.enabled);
      refresh();
      if (!status.enabled) {
        await vscode.commands.executeCommand("editor.action.inlineSuggest.hide");
      }
    }),
    vscode.commands.registerCommand("livekv.restart", () => current.restart()),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration(SECTION)) {
        void current.configurationChanged();
      }
    }),
  );
  await current.restart(); // the first start (nothing to stop yet), in the same queue as later restarts
}

export async function deactivate(): Promise<void> {
  await server?.shutdown();
  server = undefined;
}
