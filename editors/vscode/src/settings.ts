/**
 * The server's settings as VS Code settings: which `livekv.*` keys go to the server, and which
 * changes need a restart. Pure (no `vscode` import) so that node's test runner can check it.
 *
 * The keys are the server's own camelCase names (lsp_server/settings.py, README "Settings");
 * their defaults live once, in package.json's `contributes.configuration`, which VS Code
 * returns for any key the user has not set.
 */

/** Keys sent to the server, in the README's order. */
export const SERVER_KEYS = [
  "modelPath",
  "threads",
  "weights",
  "device",
  "maxTokens",
  "multiline",
  "drafts",
  "draftMethod",
  "popupItems",
  "contextTokens",
  "crossFileChars",
  "indexWorkspace",
  "drafting",
  "memoryBudgetMb",
  "maxFileBytes",
  "timeBudgetMs",
  "debounceMs",
  "idleRefreshMs",
  "updatePolicy",
  "monitorMembers",
  "monitorImports",
  "monitorKeywords",
  "monitorSyntax",
  "monitorWholeNames",
  "syntaxTree",
  "jediTimeoutMs",
  "environmentPath",
  "ngramWeight",
] as const;

/** The server reads these once, when the model loads: a change restarts it. */
export const MODEL_KEYS = ["modelPath", "threads", "weights", "device"] as const;

/** The extension's own keys: never sent to the server (it would report them as unknown). */
export const EXTENSION_KEYS = ["serverCommand", "serverArgs", "trace.server"] as const;

export type Settings = Record<string, unknown>;
/** `(key) => value` of the `livekv` configuration section (VS Code fills in the defaults). */
export type Lookup = (key: string) => unknown;

/** The object sent as `initializationOptions` and under `livekv` in `workspace/didChangeConfiguration`. */
export function serverSettings(get: Lookup): Settings {
  const out: Settings = {};
  for (const key of SERVER_KEYS) {
    const value = get(key);
    // `undefined` only when a key is missing from package.json; the server then keeps its default.
    if (value !== undefined) {
      out[key] = value;
    }
  }
  return out;
}

/** The `workspace/didChangeConfiguration` params: the section, as VS Code's own clients send it. */
export function configurationParams(get: Lookup): { settings: { livekv: Settings } } {
  return { settings: { livekv: serverSettings(get) } };
}

/** How the server process is started: `serverCommand serverArgs...` over stdio. */
export interface Launch {
  command: string;
  args: string[];
}

/** The command and arguments, `${workspaceFolder}` replaced by the first folder's path (when one is open). */
export function launch(get: Lookup, folder?: string): Launch {
  const expand = (s: string) => (folder === undefined ? s : s.split("${workspaceFolder}").join(folder));
  const command = get("serverCommand");
  const args = get("serverArgs");
  return {
    command: expand(typeof command === "string" && command.trim() !== "" ? command : "livekv"),
    args: (Array.isArray(args) && args.every((a) => typeof a === "string") ? args : ["serve"]).map(expand),
  };
}

/** Everything that needs a new server process when it changes: the launch and the model settings. */
export function restartKey(get: Lookup, folder?: string): string {
  const model: Settings = {};
  for (const key of MODEL_KEYS) {
    model[key] = get(key);
  }
  return JSON.stringify({ launch: launch(get, folder), model });
}
