/**
 * A Server-Sent Events parser after the WHATWG HTML standard's "event stream interpretation". The
 * dashboard reads the stream with fetch() (EventSource cannot send the Authorization header), so it
 * parses the text itself. Pure: text in, messages out; the caller owns the connection.
 */
export interface SseMessage {
  /** The `event:` field, or "message". */
  event: string;
  /** The `data:` lines, joined by "\n". */
  data: string;
  /** The stream's last event ID when this message was dispatched (set by this or an earlier id:). */
  lastEventId: string;
  /** Whether this message carried an `id:` line itself. */
  hasId: boolean;
}

export class SseParser {
  /** The last event ID: what a reconnect sends as Last-Event-ID. Kept across messages, as the standard says. */
  lastEventId = '';
  /** The reconnection delay the server asked for (`retry:`), in milliseconds. */
  retryMs: number | undefined;

  private buffer = '';
  private started = false;
  /** The previous chunk ended in CR: an LF starting the next one belongs to the same line end. */
  private pendingCr = false;
  private data: string[] = [];
  private event = '';
  private sawId = false;

  /** Feeds decoded text; returns the messages it completes, in order. */
  push(chunk: string): SseMessage[] {
    let text = chunk;
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.pendingCr && text.startsWith('\n')) text = text.slice(1);
    this.pendingCr = false;
    this.buffer += text;

    const out: SseMessage[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      const line = this.buffer.slice(start, i);
      if (c === 13) {
        if (i + 1 < this.buffer.length) {
          if (this.buffer.charCodeAt(i + 1) === 10) i++;
        } else this.pendingCr = true;
      }
      start = i + 1;
      const m = this.line(line);
      if (m !== undefined) out.push(m);
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  /** The stream ended: an incomplete message is dropped, as the standard says. */
  end(): void {
    this.buffer = '';
    this.data = [];
    this.event = '';
    this.sawId = false;
    this.pendingCr = false;
  }

  private line(line: string): SseMessage | undefined {
    if (line === '') return this.dispatch();
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        this.data.push(value);
        break;
      case 'event':
        this.event = value;
        break;
      case 'id':
        if (!value.includes('\0')) {
          this.lastEventId = value;
          this.sawId = true;
        }
        break;
      case 'retry':
        if (/^[0-9]+$/.test(value)) this.retryMs = Number(value);
        break;
      default:
      // Unknown fields are ignored.
    }
    return undefined;
  }

  private dispatch(): SseMessage | undefined {
    const hasId = this.sawId;
    this.sawId = false;
    if (this.data.length === 0) {
      this.event = '';
      return undefined;
    }
    const m: SseMessage = {
      event: this.event === '' ? 'message' : this.event,
      data: this.data.join('\n'),
      lastEventId: this.lastEventId,
      hasId,
    };
    this.data = [];
    this.event = '';
    return m;
  }
}
