// Server-sent events read with fetch() and a stream reader, so the bearer token travels in the Authorization header
// (EventSource cannot send one, and a token in a URL ends up in logs). A LiveStream reconnects by itself and resumes
// after the last id it saw, so nothing is missed across a dropped connection.

import { ApiError, Code, SignInNeeded, errorOf } from "./api";

export interface ServerEvent {
  id: string;
  event: string;
  data: string;
}

/** Splits a text/event-stream body into events (the WHATWG parsing rules for id, event and data fields). */
export class EventStreamParser {
  private buffer = "";
  private id = "";
  private event = "";
  private data: string[] = [];

  /** Feeds a chunk of text; returns the events it completes. */
  push(chunk: string): ServerEvent[] {
    this.buffer += chunk;
    const events: ServerEvent[] = [];
    for (;;) {
      const end = this.buffer.search(/\r\n|\r|\n/);
      if (end < 0) break;
      const line = this.buffer.slice(0, end);
      const width = this.buffer.startsWith("\r\n", end) ? 2 : 1;
      // A lone \r at the end of a chunk may be the first half of \r\n: wait for the next chunk.
      if (this.buffer[end] === "\r" && width === 1 && end === this.buffer.length - 1) break;
      this.buffer = this.buffer.slice(end + width);
      const event = this.line(line);
      if (event) events.push(event);
    }
    return events;
  }

  private line(line: string): ServerEvent | null {
    if (line === "") {
      if (this.data.length === 0 && !this.event) return null;
      const event = { id: this.id, event: this.event || "message", data: this.data.join("\n") };
      this.event = "";
      this.data = [];
      return event;
    }
    if (line.startsWith(":")) return null; // a comment, used as a keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.id = value;
    return null;
  }
}

export interface StreamHandlers {
  /** A notification, change or heartbeat event, its data parsed as JSON. */
  onMessage(event: string, data: unknown, id: string): void;
  /** The first message of a stream that did not resume: reload the list it keeps live. */
  onFresh(): void;
  /** The token was refused: the stream stops. */
  onSignInNeeded(error: SignInNeeded): void;
  /** Whether the stream is connected, for the page's status line. */
  onConnected?(connected: boolean): void;
}

const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 10_000;
/** A stream silent this long is taken for dead (a sleeping laptop, a proxy that dropped it) and reopened; the
 * services send a heartbeat every 15 s by default, and reopening with resume_after loses nothing. */
const SILENCE_MS = 90_000;

/** One live stream of the gateway (`/v1/notifications:stream`, `/v1/tasks:stream`) kept open until stop(). */
export class LiveStream {
  lastId = "";
  private stopped = false;
  private controller: AbortController | null = null;
  private retryMs = RETRY_FIRST_MS;

  constructor(
    private readonly path: string,
    private readonly token: string,
    private readonly handlers: StreamHandlers,
  ) {}

  start(): void {
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.controller?.abort();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.connectOnce();
      } catch (error) {
        if (this.stopped) return;
        if (error instanceof SignInNeeded) {
          this.stopped = true;
          this.handlers.onSignInNeeded(error);
          return;
        }
        const badResumePoint =
          error instanceof ApiError && (error.code === Code.OUT_OF_RANGE || error.code === Code.NOT_FOUND);
        if (badResumePoint && this.lastId) {
          // The resume point is older than the kept history (or unknown): start afresh, which reloads the list.
          this.lastId = "";
          continue;
        }
      }
      this.handlers.onConnected?.(false);
      if (this.stopped) return;
      await new Promise((resolve) => setTimeout(resolve, this.retryMs));
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    }
  }

  private async connectOnce(): Promise<void> {
    const controller = new AbortController();
    this.controller = controller;
    let watchdog = setTimeout(() => controller.abort(), SILENCE_MS);
    const alive = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => controller.abort(), SILENCE_MS);
    };
    try {
      await this.readStream(controller.signal, alive);
    } finally {
      clearTimeout(watchdog);
    }
  }

  private async readStream(signal: AbortSignal, alive: () => void): Promise<void> {
    const resume = this.lastId;
    const url = resume ? `${this.path}?resume_after=${encodeURIComponent(resume)}` : this.path;
    const response = await fetch(url, {
      headers: { Authorization: `Bearer ${this.token}`, Accept: "text/event-stream" },
      signal,
      cache: "no-store",
    });
    if (!response.ok) throw await errorOf(response);
    if (!response.body) throw new ApiError(response.status, 2, "the stream has no body");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new EventStreamParser();
    let first = true;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      alive();
      for (const event of parser.push(value)) {
        if (event.event === "error") throw streamError(event.data);
        if (first) {
          first = false;
          this.retryMs = RETRY_FIRST_MS;
          this.handlers.onConnected?.(true);
          if (!resume) this.handlers.onFresh();
        }
        if (event.id) this.lastId = event.id;
        let data: unknown = null;
        try {
          data = JSON.parse(event.data);
        } catch {
          continue; // not ours to understand; the id still counts for resuming
        }
        this.handlers.onMessage(event.event, data, event.id);
      }
    }
  }
}

function streamError(data: string): ApiError {
  let code = 2;
  let message = "the stream failed";
  try {
    const body = JSON.parse(data) as { code?: number; message?: string };
    if (typeof body.code === "number") code = body.code;
    if (typeof body.message === "string") message = body.message;
  } catch {
    // keep the defaults
  }
  return code === Code.UNAUTHENTICATED ? new SignInNeeded(401, code, message) : new ApiError(200, code, message);
}
