// A server-sent events parser (WHATWG rules) for the gateway's answer stream, the same rules as the
// C++ SDK's protocol::SseParser: "\n", "\r\n" and "\r" line ends, comment lines (": keep-alive"),
// multi-line data, unknown fields ignored, and a bound on any single event (event_too_large).
//
// Design: text in (the caller decodes UTF-8 in streaming mode), events out; sizes are counted in
// UTF-16 code units of the decoded text, which equal bytes for the protocol's ASCII payloads.

export interface SseEvent {
  event: string;
  data: string;
}

const LINE_END = /[\r\n]/g;

export class SseParser {
  private line = '';
  private lastWasCr = false;
  private eventBytes = 0;
  private current: SseEvent = { event: 'message', data: '' };
  private haveData = false;
  private haveFields = false;
  private failed = false;

  constructor(readonly maxEventBytes: number) {}

  /** Appends complete events of `text` to `out`; false once an event exceeds maxEventBytes. */
  feed(text: string, out: SseEvent[]): boolean {
    if (this.failed) return false;
    let pos = 0;
    while (pos < text.length) {
      if (this.lastWasCr && text[pos] === '\n') {
        this.lastWasCr = false;
        pos += 1;
        continue;
      }
      this.lastWasCr = false;
      LINE_END.lastIndex = pos;
      const end = LINE_END.test(text) ? LINE_END.lastIndex - 1 : text.length;
      const chunk = text.slice(pos, end);
      if (this.eventBytes + this.line.length + chunk.length > this.maxEventBytes) {
        this.failed = true;
        this.line = '';
        return false;
      }
      this.line += chunk;
      if (end === text.length) break;
      this.lastWasCr = text[end] === '\r';
      pos = end + 1;
      this.eventBytes += this.line.length + 1;
      this.processLine(this.line, out);
      this.line = '';
    }
    return true;
  }

  /** True when bytes of an unfinished event were received. */
  hasPartialEvent(): boolean {
    return this.line.length > 0 || this.haveFields;
  }

  private processLine(line: string, out: SseEvent[]): void {
    if (line.length === 0) {
      if (this.haveData) {
        let data = this.current.data;
        if (data.endsWith('\n')) data = data.slice(0, -1);
        out.push({ event: this.current.event, data });
      }
      this.current = { event: 'message', data: '' };
      this.haveData = false;
      this.haveFields = false;
      this.eventBytes = 0;
      return;
    }
    this.haveFields = true;
    if (line[0] === ':') return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') {
      this.current.event = value === '' ? 'message' : value;
    } else if (field === 'data') {
      this.current.data += value + '\n';
      this.haveData = true;
    }
  }
}
