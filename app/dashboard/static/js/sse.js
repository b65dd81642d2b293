// Server-Sent Events over fetch(): EventSource cannot send an Authorization header, and the API
// key must never travel in a URL. So the stream is read from response.body and its frames are
// parsed here, following the HTML standard's event-stream rules.

import { authHeaders, errorFrom } from "./api.js";

/**
 * Turns chunks of event-stream text into events {id, type, data}. Lines end in \n, \r\n or \r
 * (a chunk may end between \r and \n); a blank line dispatches; lines starting with ":" are
 * comments (the server's keep-alives).
 */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.lastEventId = null;
    this.skipNewline = false;
    this.reset();
  }

  reset() {
    this.type = "";
    this.data = [];
    this.id = null;
  }

  push(text) {
    this.buffer += text;
    const lines = this.buffer.split(/\r\n|\n|\r/);
    this.buffer = lines.pop();
    // A trailing "\r" may be the first half of "\r\n": keep it until the next chunk says.
    if (this.buffer === "" && text.endsWith("\r")) this.skipNewline = true;
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (this.skipNewline) {
      this.skipNewline = false;
      if (line === "") return;
    }
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.id = value;
  }

  dispatch() {
    if (this.id !== null) this.lastEventId = this.id;
    if (this.data.length) {
      this.onEvent({ id: this.lastEventId, type: this.type || "message", data: this.data.join("\n") });
    }
    this.reset();
  }
}

const RETRY_SECONDS = [1, 2, 4, 8, 15];

/**
 * Follows an event stream until `stop()`: reconnects after a drop with Last-Event-ID, so no
 * event is missed or repeated. `onEvent(type, data)` gets parsed JSON data. `onGap()` is called
 * when events may have been missed (a failed request, not a clean resume) so the page can
 * reload its snapshot. `onUnavailable(error)`: the stream answered 401 or 404 and is not
 * retried (signed out, the job is gone, or a server without streams: the page may poll).
 * `closesAfterEnd`: a job's stream ends after its `end` event.
 */
export function followStream(path, options) {
  const { onEvent, onGap = () => {}, onUnavailable = () => {}, closesAfterEnd = false } = options;
  const controller = new AbortController();
  let lastEventId = null;
  let ended = false;
  let failures = 0;

  async function connectOnce() {
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (lastEventId !== null) headers["Last-Event-ID"] = lastEventId;
    const response = await fetch(path, { headers, signal: controller.signal, cache: "no-store" });
    if (!response.ok) throw await errorFrom(response);
    failures = 0;
    const parser = new SseParser((event) => {
      lastEventId = event.id;
      if (event.type === "end") ended = true;
      deliver(event);
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      parser.push(value);
    }
  }

  function deliver(event) {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return; // not ours to understand; the contract sends one-line JSON
    }
    onEvent(event.type, data);
  }

  async function run() {
    while (!controller.signal.aborted && !(closesAfterEnd && ended)) {
      try {
        await connectOnce();
      } catch (error) {
        if (controller.signal.aborted) return;
        if (error.status === 401 || error.status === 404) return onUnavailable(error);
        failures += 1;
        onGap(error);
      }
      if (closesAfterEnd && ended) return;
      await sleep(RETRY_SECONDS[Math.min(failures, RETRY_SECONDS.length - 1)], controller.signal);
    }
  }

  run();
  return { stop: () => controller.abort() };
}

function sleep(seconds, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, seconds * 1000);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}
