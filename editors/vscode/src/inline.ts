/**
 * The `textDocument/inlineCompletion` context on the wire. vscode-languageclient's own inline
 * completion feature sends the requests and converts the answers; only the context is fixed here,
 * in the extension's middleware, because 9.0.1's code2ProtocolConverter.asInlineCompletionParams
 * copies VS Code's context as it is: VS Code's trigger kinds count from 0 (Invoke 0, Automatic 1)
 * and so do the proposed 3.17.5 types that version was built on, while LSP 3.18 counts from 1
 * (Invoked 1, Automatic 2); and a `vscode.Range` serializes as an array `[start, end]` (its
 * `toJSON`), not as `{start, end}`. Pure (no `vscode` import) so that node's test runner can check it.
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

/** What the provider gets from VS Code (vscode.InlineCompletionContext), reduced to the fields sent. */
export interface EditorContext {
  triggerKind: number; // vscode.InlineCompletionTriggerKind
  selectedCompletionInfo?: { range: Range; text: string };
}

/** LSP 3.18's InlineCompletionContext. */
export interface InlineCompletionContext {
  triggerKind: number;
  selectedCompletionInfo?: { range: Range; text: string };
}

// vscode.Position/Range carry methods, getters and toJSON; the wire wants plain numbers only.
function position(p: Position): Position {
  return { line: p.line, character: p.character };
}

function range(r: Range): Range {
  return { start: position(r.start), end: position(r.end) };
}

/** VS Code's context as LSP 3.18 has it: the trigger kind renumbered, the selected item's range plain. */
export function lspContext(context: EditorContext): InlineCompletionContext {
  const triggerKind = context.triggerKind === VSCODE_TRIGGER.Invoke ? LSP_TRIGGER.Invoked : LSP_TRIGGER.Automatic;
  const out: InlineCompletionContext = { triggerKind };
  const selected = context.selectedCompletionInfo;
  if (selected) {
    out.selectedCompletionInfo = { range: range(selected.range), text: selected.text };
  }
  return out;
}
