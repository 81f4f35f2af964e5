/**
 * Stream shaping (docs/traffic-shaping.md): a client asks for it inside the encrypted request
 * ("rvenc_shaping") and reads shaped streams with ShapedReader, the C++ SDK's protocol::ShapedReader.
 * A data plaintext is a chunk JSON (unshaped), a filler ({"rvenc_filler":true} then spaces: dropped),
 * or a record: 0x1E, a 2-byte big-endian length, that many bytes of the chunk stream (each chunk's
 * JSON then "\n"), zero fill. Records are joined until a line completes.
 */
import { StreamError } from './errors.js';

export type ShapingMode = 'off' | 'pad' | 'cadence';
export const SHAPING_MODES: readonly ShapingMode[] = ['off', 'pad', 'cadence'];
export const SHAPING_MEMBER = 'rvenc_shaping';
const RECORD_MARKER = 0x1e;
const NEWLINE = 0x0a;
const FILLER = '{"rvenc_filler":true}';

const tampered = (message: string) => new StreamError('tampered_stream', message);

export class ShapedReader {
  private parts: Uint8Array[] = [];
  private lineBytes = 0;
  private readonly text = new TextDecoder();

  constructor(private readonly maxLineBytes: number) {}

  /** The chunk JSON texts one data plaintext completes (none for a filler); throws tampered_stream. */
  feed(plaintext: Uint8Array): string[] {
    if (plaintext.length === 0 || plaintext[0] !== RECORD_MARKER) {
      const text = this.text.decode(plaintext);
      if (text.replace(/ +$/, '') === FILLER) return [];
      if (this.lineBytes > 0) throw tampered('an unshaped chunk arrived inside a shaped chunk');
      return [text];
    }
    if (plaintext.length < 3) throw tampered("a shaped record is shorter than its header");
    const length = (plaintext[1] << 8) | plaintext[2];
    if (length === 0 || length > plaintext.length - 3) throw tampered("a shaped record's length does not fit the record");
    let slice = plaintext.subarray(3, 3 + length);
    const out: string[] = [];
    while (slice.length > 0) {
      const newline = slice.indexOf(NEWLINE);
      const piece = newline < 0 ? slice : slice.subarray(0, newline);
      if (this.lineBytes + piece.length > this.maxLineBytes) {
        throw tampered(`a shaped chunk is larger than maxBufferSize (${this.maxLineBytes} bytes)`);
      }
      this.parts.push(piece.slice());
      this.lineBytes += piece.length;
      if (newline < 0) break;
      out.push(this.takeLine());
      slice = slice.subarray(newline + 1);
    }
    return out;
  }

  /** At the authenticated done: throws tampered_stream while a chunk is unfinished. */
  finish(): void {
    if (this.lineBytes > 0) throw tampered('the stream ended inside a shaped chunk');
  }

  private takeLine(): string {
    const line = new Uint8Array(this.lineBytes);
    let at = 0;
    for (const part of this.parts) {
      line.set(part, at);
      at += part.length;
      part.fill(0);
    }
    this.parts = [];
    this.lineBytes = 0;
    const text = this.text.decode(line);
    line.fill(0);
    return text;
  }
}
