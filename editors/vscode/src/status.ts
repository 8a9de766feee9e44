/**
 * What the status bar item shows: the model, the server's state and how long the last suggestion took,
 * fed by the server's `$/progress` (model loading, workspace indexing), its `livekv/status`
 * notification and the extension's own clock on each answered request. Pure (no `vscode` import) so
 * that node's test runner can check it.
 *
 * The time shown is the one the user waited: from the request to its answer, as the client saw it. The
 * server's own figure (`latencyMs`) starts when its worker takes the request up, so it leaves out the
 * wait behind the document's first encode and earlier edits: in a real VS Code on 2 cores the status bar
 * said 701 ms where the answer took 10.6 s (tests/test_vscode_real.py). It stays in the tooltip.
 */

export type State = "loading" | "indexing" | "ready" | "error";

/** The server's `$/progress` titles (lsp_server/server.py `progress`). */
export const LOADING_TITLE = "livekv: loading model";
export const INDEXING_TITLE = "livekv: indexing workspace";
/** The end message of the loading progress when the model did not load. */
export const LOAD_FAILED = "failed";

/** A `$/progress` value (WorkDoneProgressBegin / Report / End). */
export interface ProgressValue {
  kind: string;
  title?: string;
  message?: string;
}

/** `livekv/status` params: sent before each suggestion's answer. */
export interface StatusParams {
  latencyMs?: number | null;
  firstTokenMs?: number | null;
  model?: string | null;
}

export interface View {
  text: string;
  tooltip: string;
}

export class Status {
  state: State = "loading";
  enabled: boolean;
  model: string | undefined;
  latencyMs: number | undefined; // the server's time for the last suggestion
  firstTokenMs: number | undefined;
  waitedMs: number | undefined; // request to answer, as the client saw it
  detail: string | undefined;
  // `end` carries no title: remember each token's from its `begin`.
  private titles = new Map<string | number, string>();

  constructor(enabled: boolean) {
    this.enabled = enabled;
  }

  /** A new server process: back to loading, latency of the old one forgotten. */
  starting(): void {
    this.state = "loading";
    this.latencyMs = this.firstTokenMs = this.waitedMs = this.detail = undefined;
    this.titles.clear();
  }

  progress(token: string | number, value: ProgressValue): void {
    if (value.kind === "begin") {
      const title = value.title ?? "";
      this.titles.set(token, title);
      if (title === LOADING_TITLE) {
        this.state = "loading";
      } else if (title === INDEXING_TITLE && this.state !== "error") {
        this.state = "indexing";
      }
      return;
    }
    if (value.kind !== "end") {
      return;
    }
    const title = this.titles.get(token);
    this.titles.delete(token);
    if (title === LOADING_TITLE) {
      if (value.message === LOAD_FAILED) {
        this.failed("the model did not load (see the livekv output)");
      } else {
        this.state = "ready";
        this.model = value.message ?? this.model;
      }
    } else if (title === INDEXING_TITLE && this.state === "indexing") {
      this.state = "ready";
      this.detail = value.message ? `indexed ${value.message}` : undefined;
    }
  }

  suggestion(params: StatusParams): void {
    // A suggestion proves the model is up, even if a progress notification was missed, and that
    // an earlier failed request is over.
    if (this.state === "error") {
      this.detail = undefined;
    }
    if (this.state !== "indexing") {
      this.state = "ready";
    }
    this.model = params.model ?? this.model;
    this.latencyMs = typeof params.latencyMs === "number" ? params.latencyMs : undefined;
    this.firstTokenMs = typeof params.firstTokenMs === "number" ? params.firstTokenMs : undefined;
    this.waitedMs = undefined; // the answer this notification precedes has not arrived yet
  }

  /** An answer with items arrived `ms` after its request was sent. */
  answered(ms: number): void {
    this.waitedMs = Math.round(ms);
  }

  /** The server stopped, the model did not load, or a request failed: `detail` says which. */
  failed(detail: string): void {
    this.state = "error";
    this.detail = detail;
  }

  view(): View {
    const model = this.model ?? "model not loaded yet";
    const lines = [`livekv: ${model}`];
    if (this.latencyMs !== undefined) {
      const first = this.firstTokenMs === undefined ? "" : `, first token ${this.firstTokenMs} ms`;
      const waited = this.waitedMs === undefined ? "" : `waited ${this.waitedMs} ms, `;
      lines.push(`last suggestion: ${waited}server ${this.latencyMs} ms${first}`);
    }
    if (this.detail) {
      lines.push(this.detail);
    }
    lines.push(this.enabled ? "click: turn inline suggestions off" : "click: turn inline suggestions on");
    const tooltip = lines.join("\n");
    if (!this.enabled) {
      return { text: "$(circle-slash) livekv off", tooltip };
    }
    // The model's first word keeps the item short; the tooltip has the full name.
    const short = this.model ? ` ${this.model.split(" ")[0]}` : "";
    switch (this.state) {
      case "loading":
        return { text: "$(sync~spin) livekv loading", tooltip };
      case "indexing":
        return { text: `$(sync~spin) livekv${short} indexing`, tooltip };
      case "error":
        return { text: "$(error) livekv error", tooltip };
      case "ready": {
        const ms = this.waitedMs ?? this.latencyMs;
        const latency = ms === undefined ? "" : ` ${ms} ms`;
        return { text: `$(check) livekv${short}${latency}`, tooltip };
      }
    }
  }
}
