/** The status bar text (src/status.ts) fed with the server's `$/progress` and `livekv/status`. */

import * as assert from "node:assert/strict";
import { test } from "node:test";

import { INDEXING_TITLE, LOADING_TITLE, Status } from "../src/status";

const MODEL = "SmolLM2-135M-Instruct (embedded) fp32";

/** The server's sequence after `initialized` (lsp_server/server.py): load, then index. */
function loaded(status: Status): Status {
  status.progress("t1", { kind: "begin", title: LOADING_TITLE });
  status.progress("t1", { kind: "end", message: MODEL });
  return status;
}

test("loading, indexing, ready with the model and the last latency", () => {
  const status = new Status(true);
  assert.equal(status.state, "loading");
  assert.match(status.view().text, /loading/);
  loaded(status);
  assert.equal(status.state, "ready");
  assert.equal(status.model, MODEL);
  status.progress("t2", { kind: "begin", title: INDEXING_TITLE });
  assert.equal(status.state, "indexing");
  assert.equal(status.view().text, "$(sync~spin) livekv SmolLM2-135M-Instruct indexing");
  status.progress("t2", { kind: "end", message: "12 files" });
  assert.equal(status.state, "ready");
  status.suggestion({ latencyMs: 412, firstTokenMs: 57, model: MODEL });
  assert.equal(status.view().text, "$(check) livekv SmolLM2-135M-Instruct 412 ms");
  assert.match(status.view().tooltip, /SmolLM2-135M-Instruct \(embedded\) fp32/);
  assert.match(status.view().tooltip, /last suggestion: server 412 ms, first token 57 ms/);
});

test("the time shown is the one the client waited, the server's own in the tooltip", () => {
  const status = loaded(new Status(true));
  status.suggestion({ latencyMs: 701, firstTokenMs: 669, model: MODEL });
  status.answered(10651.4); // queued behind the document's first encode
  assert.equal(status.view().text, "$(check) livekv SmolLM2-135M-Instruct 10651 ms");
  assert.match(status.view().tooltip, /last suggestion: waited 10651 ms, server 701 ms, first token 669 ms/);
  status.suggestion({ latencyMs: 90, firstTokenMs: 20, model: MODEL }); // the next one: its answer not yet in
  assert.equal(status.view().text, "$(check) livekv SmolLM2-135M-Instruct 90 ms");
  status.starting();
  assert.equal(status.waitedMs, undefined);
});

test("a model that does not load is an error, and indexing does not hide it", () => {
  const status = new Status(true);
  status.progress("t1", { kind: "begin", title: LOADING_TITLE });
  status.progress("t1", { kind: "end", message: "failed" });
  assert.equal(status.state, "error");
  status.progress("t2", { kind: "begin", title: INDEXING_TITLE });
  status.progress("t2", { kind: "end", message: "0 files" });
  assert.equal(status.state, "error");
  assert.equal(status.view().text, "$(error) livekv error");
});

test("off shows off whatever the state; a restart forgets the old latency", () => {
  const status = loaded(new Status(false));
  status.suggestion({ latencyMs: 100, firstTokenMs: null, model: MODEL });
  assert.equal(status.view().text, "$(circle-slash) livekv off");
  assert.match(status.view().tooltip, /turn inline suggestions on/);
  status.enabled = true;
  assert.equal(status.view().text, "$(check) livekv SmolLM2-135M-Instruct 100 ms");
  assert.doesNotMatch(status.view().tooltip, /first token/); // firstTokenMs null: not shown
  status.starting();
  assert.equal(status.state, "loading");
  assert.equal(status.latencyMs, undefined);
});

test("progress of other titles and reports leave the state alone", () => {
  const status = loaded(new Status(true));
  status.progress("t9", { kind: "begin", title: "something else" });
  status.progress("t9", { kind: "report", message: "50%" });
  status.progress("t9", { kind: "end" });
  status.progress("unknown", { kind: "end", message: "failed" }); // an end without a begin
  assert.equal(status.state, "ready");
});
