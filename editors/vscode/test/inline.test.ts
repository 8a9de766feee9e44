/** The inline completion request and response mapping (src/inline.ts), without VS Code. */

import * as assert from "node:assert/strict";
import { test } from "node:test";

import { LSP_TRIGGER, VSCODE_TRIGGER, requestParams, responseItems } from "../src/inline";

const at = (line: number, character: number) => ({ line, character });

test("VS Code's 0-based trigger kinds become LSP's 1-based ones", () => {
  const automatic = requestParams("file:///a.py", at(3, 7), { triggerKind: VSCODE_TRIGGER.Automatic });
  assert.deepEqual(automatic, {
    textDocument: { uri: "file:///a.py" },
    position: { line: 3, character: 7 },
    context: { triggerKind: LSP_TRIGGER.Automatic },
  });
  const invoked = requestParams("file:///a.py", at(0, 0), { triggerKind: VSCODE_TRIGGER.Invoke });
  assert.equal(invoked.context.triggerKind, 1);
  assert.equal(LSP_TRIGGER.Automatic, 2);
});

test("selectedCompletionInfo is passed on as plain numbers, and only when VS Code gives one", () => {
  // vscode.Position objects carry methods; the wire must get line/character only
  class VsPosition {
    constructor(
      readonly line: number,
      readonly character: number,
    ) {}
    translate(): VsPosition {
      return this;
    }
  }
  const range = { start: new VsPosition(4, 15), end: new VsPosition(4, 17) };
  const params = requestParams("file:///a.py", new VsPosition(4, 17), {
    triggerKind: VSCODE_TRIGGER.Automatic,
    selectedCompletionInfo: { range, text: "items" },
  });
  assert.deepEqual(JSON.parse(JSON.stringify(params)), {
    textDocument: { uri: "file:///a.py" },
    position: { line: 4, character: 17 },
    context: {
      triggerKind: 2,
      selectedCompletionInfo: { range: { start: { line: 4, character: 15 }, end: { line: 4, character: 17 } }, text: "items" },
    },
  });
  assert.deepEqual(Object.keys(params.position), ["line", "character"]);
  const without = requestParams("file:///a.py", at(1, 1), { triggerKind: VSCODE_TRIGGER.Automatic });
  assert.equal("selectedCompletionInfo" in without.context, false);
});

test("every item of an InlineCompletionList is kept, in order, with its range", () => {
  const range = { start: at(9, 4), end: at(9, 7) };
  const items = responseItems({
    items: [
      { insertText: "total = 0", range },
      { insertText: "tot += 1", range, filterText: "tot" },
      { insertText: { kind: "snippet", value: "total(${1:cart})" } },
    ],
  });
  assert.deepEqual(items, [
    { text: "total = 0", snippet: false, range },
    { text: "tot += 1", snippet: false, range, filterText: "tot" },
    { text: "total(${1:cart})", snippet: true },
  ]);
});

test("a bare item array is accepted, null and empty lists give no items", () => {
  assert.deepEqual(responseItems([{ insertText: "x" }]), [{ text: "x", snippet: false }]);
  assert.deepEqual(responseItems(null), []);
  assert.deepEqual(responseItems(undefined), []);
  assert.deepEqual(responseItems({ items: [] }), []);
});

test("malformed items are dropped, the good ones kept", () => {
  const items = responseItems({
    items: [
      { insertText: 42 },
      { insertText: { kind: "plaintext", value: "x" } },
      null,
      { insertText: "ok", range: { start: at(0, 0) } }, // a broken range is left out, not guessed
    ],
  });
  assert.deepEqual(items, [{ text: "ok", snippet: false }]);
});

test("an item's command is kept", () => {
  const command = { title: "Log", command: "livekv.log", arguments: [1] };
  assert.deepEqual(responseItems({ items: [{ insertText: "a", command }] })[0].command, command);
});
