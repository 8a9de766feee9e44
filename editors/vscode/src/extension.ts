/**
 * The livekv VS Code extension: starts `livekv serve` over stdio through vscode-languageclient,
 * shows the server's inline completions as ghost text, and keeps a status bar item.
 *
 * Thin on purpose: the ghost text is vscode-languageclient's own inline completion feature (in
 * 9.0.1 a proposed feature, turned on with `registerProposedFeatures()`: it registers the provider
 * while the server runs and advertises `inlineCompletionProvider`, sends the requests with VS
 * Code's cancellation token and converts the answers). Its middleware, `provideInlineCompletionItems`,
 * holds what is ours: the toggle, the request context LSP 3.18 wants (inline.ts), and the status
 * bar on a failed request. The settings (settings.ts) and the status text (status.ts) are pure
 * modules with their own unit tests; this file only wires them to VS Code.
 */

import * as vscode from "vscode";
import {
  DidChangeConfigurationNotification,
  LanguageClient,
  LanguageClientOptions,
  Middleware,
  RevealOutputChannelOn,
  ServerOptions,
  State,
} from "vscode-languageclient/node";

import { lspContext } from "./inline";
import { Lookup, configurationParams, launch, restartKey, serverSettings } from "./settings";
import { Status, StatusParams } from "./status";

const SECTION = "livekv";
const ENABLED = "livekv.enabled"; // globalState key of the toggle
const SELECTOR = [
  { scheme: "file", language: "python" },
  { scheme: "untitled", language: "python" },
];
type ProvideInlineCompletionItems = NonNullable<Middleware["provideInlineCompletionItems"]>;

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
      // A failed request is logged in the output and shown in the status bar, not as a pop-up on
      // every keystroke (the client's default for a failed request is an error notification).
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      // A function: the client's own restart after a crash sends the settings of that moment.
      initializationOptions: () => serverSettings(lookup()),
      middleware: {
        handleWorkDoneProgress: (token, params, next) => {
          this.status.progress(token, params);
          this.refresh();
          next(token, params);
        },
        provideInlineCompletionItems: inlineMiddleware(this.status, this.refresh, this.output),
      },
    };
    const client = new LanguageClient("livekv", "livekv", serverOptions, clientOptions);
    // vscode-languageclient 9.0.1's one proposed feature: InlineCompletionItemFeature (LSP 3.18).
    client.registerProposedFeatures();
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

/**
 * The middleware of the client's inline completion provider. While the toggle is off nothing is
 * asked. Else the client's own request (`next`) goes out with the context as LSP 3.18 has it
 * (9.0.1 would send VS Code's as it is, see inline.ts) and VS Code's token, so a superseded
 * request is cancelled with `$/cancelRequest`; the client converts every item (VS Code shows the
 * first and cycles through the others with Alt+] / Alt+[). An answer with items puts the time it took in
 * the status bar. A failed request puts the status bar
 * in error, with the reason in its tooltip, until the next suggestion, and goes to the output.
 */
function inlineMiddleware(
  status: Status,
  refresh: () => void,
  output: vscode.OutputChannel,
): ProvideInlineCompletionItems {
  return async (document, position, context, token, next) => {
    if (!status.enabled) {
      return undefined;
    }
    const wire = lspContext(context) as unknown as vscode.InlineCompletionContext;
    const sent = Date.now();
    try {
      const answer = await next(document, position, wire, token);
      const items = Array.isArray(answer) ? answer : answer?.items;
      if (items?.length && !token.isCancellationRequested) {
        status.answered(Date.now() - sent); // what the user waited, queue included (status.ts)
        refresh();
      }
      return answer;
    } catch (err) {
      if (token.isCancellationRequested || err instanceof vscode.CancellationError) {
        return undefined; // superseded, or cancelled by the server: nothing to report
      }
      const reason = `inline completion failed: ${err instanceof Error ? err.message : err}`;
      output.appendLine(`livekv: ${reason}`);
      status.failed(reason);
      refresh();
      return undefined;
    }
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
