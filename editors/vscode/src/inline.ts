/**
 * `textDocument/inlineCompletion` (LSP 3.18) in both directions: VS Code's provider arguments to
 * the request params, and the server's answer to plain item descriptions that the extension turns
 * into `vscode.InlineCompletionItem`s. Pure (no `vscode` import) so that node's test runner can check it.
 */

export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

/** LSP's InlineCompletionTriggerKind. VS Code's own enum is 0-based (Invoke 0, Automatic 1). */
export const LSP_TRIGGER = { Invoked: 1, Automatic: 2 } as const;
export const VSCODE_TRIGGER = { Invoke: 0, Automatic: 1 } as const;

/** What the provider gets from VS Code, reduced to the fields the request needs. */
export interface EditorContext {
  triggerKind: number; // vscode.InlineCompletionTriggerKind
  selectedCompletionInfo?: { range: Range; text: string };
}

export interface InlineCompletionParams {
  textDocument: { uri: string };
  position: Position;
  context: {
    triggerKind: number;
    selectedCompletionInfo?: { range: Range; text: string };
  };
}

/** One item for VS Code: `snippet` says whether `text` is snippet syntax (a `SnippetString`). */
export interface Item {
  text: string;
  snippet: boolean;
  range?: Range;
  filterText?: string;
  command?: { title: string; command: string; arguments?: unknown[] };
}

// vscode.Position/Range carry methods and getters; the wire wants plain numbers only.
function position(p: Position): Position {
  return { line: p.line, character: p.character };
}

function range(r: Range): Range {
  return { start: position(r.start), end: position(r.end) };
}

export function requestParams(uri: string, at: Position, context: EditorContext): InlineCompletionParams {
  const triggerKind = context.triggerKind === VSCODE_TRIGGER.Invoke ? LSP_TRIGGER.Invoked : LSP_TRIGGER.Automatic;
  const params: InlineCompletionParams = { textDocument: { uri }, position: position(at), context: { triggerKind } };
  const selected = context.selectedCompletionInfo;
  if (selected) {
    params.context.selectedCompletionInfo = { range: range(selected.range), text: selected.text };
  }
  return params;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

function isPosition(value: unknown): value is Position {
  return isObject(value) && Number.isInteger(value.line) && Number.isInteger(value.character);
}

function isRange(value: unknown): value is Range {
  return isObject(value) && isPosition(value.start) && isPosition(value.end);
}

/** One wire item; null for a malformed one (dropped, not guessed at). */
function item(value: unknown): Item | null {
  if (!isObject(value)) {
    return null;
  }
  const insert = value.insertText;
  let out: Item;
  if (typeof insert === "string") {
    out = { text: insert, snippet: false };
  } else if (isObject(insert) && insert.kind === "snippet" && typeof insert.value === "string") {
    out = { text: insert.value, snippet: true };
  } else {
    return null;
  }
  if (isRange(value.range)) {
    out.range = range(value.range);
  }
  if (typeof value.filterText === "string") {
    out.filterText = value.filterText;
  }
  const command = value.command;
  if (isObject(command) && typeof command.title === "string" && typeof command.command === "string") {
    out.command = { title: command.title, command: command.command };
    if (Array.isArray(command.arguments)) {
      out.command.arguments = command.arguments;
    }
  }
  return out;
}

/** All items of an `InlineCompletionList`, an item array, or null, in the server's order
 * (VS Code shows the first and cycles through the rest with Alt+] / Alt+[). */
export function responseItems(result: unknown): Item[] {
  const raw = Array.isArray(result) ? result : isObject(result) && Array.isArray(result.items) ? result.items : [];
  return raw.map(item).filter((i): i is Item => i !== null);
}
