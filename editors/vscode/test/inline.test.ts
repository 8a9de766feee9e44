/** The inline completion context on the wire (src/inline.ts), without VS Code. */

import * as assert from "node:assert/strict";
import { test } from "node:test";

import { LSP_TRIGGER, VSCODE_TRIGGER, lspContext } from "../src/inline";

test("VS Code's 0-based trigger kinds become LSP's 1-based ones", () => {
  assert.deepEqual(lspContext({ triggerKind: VSCODE_TRIGGER.Automatic }), { triggerKind: LSP_TRIGGER.Automatic });
  assert.equal(lspContext({ triggerKind: VSCODE_TRIGGER.Invoke }).triggerKind, 1);
  assert.equal(LSP_TRIGGER.Automatic, 2);
});

test("selectedCompletionInfo is passed on as plain numbers, and only when VS Code gives one", () => {
  // vscode.Position objects carry methods, and vscode.Range's toJSON gives [start, end]:
  // the wire must get { start: { line, character }, end: ... } only
  class VsPosition {
    constructor(
      readonly line: number,
      readonly character: number,
    ) {}
    translate(): VsPosition {
      return this;
    }
  }
  class VsRange {
    constructor(
      readonly start: VsPosition,
      readonly end: VsPosition,
    ) {}
    toJSON(): unknown {
      return [this.start, this.end];
    }
  }
  const range = new VsRange(new VsPosition(4, 15), new VsPosition(4, 17));
  const selectedCompletionInfo = { range, text: "items" };
  const context = lspContext({ triggerKind: VSCODE_TRIGGER.Automatic, selectedCompletionInfo });
  assert.deepEqual(JSON.parse(JSON.stringify(context)), {
    triggerKind: 2,
    selectedCompletionInfo: {
      range: { start: { line: 4, character: 15 }, end: { line: 4, character: 17 } },
      text: "items",
    },
  });
  assert.deepEqual(Object.keys(context.selectedCompletionInfo!.range.start), ["line", "character"]);
  const without = lspContext({ triggerKind: VSCODE_TRIGGER.Automatic });
  assert.equal("selectedCompletionInfo" in without, false);
});
