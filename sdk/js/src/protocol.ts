// The wire protocol (../shared/PROTOCOL.md sections 2 and 3) for the client: sealing a request in
// versions 1, 2 and 3, and opening the answer's event stream with every rule of the C++ SDK
// (protocol::ResponseOpener, client::ResponseDecoder): counter nonces, padding, version 3's init
// event and response salt, the authenticated done, the enclave's error held until that done,
// truncation, the gateway's plain error event, event size limits.
//
// Design: pure logic (bytes and text in, chunks or RvencError out), so every rule is tested against
// the shared vectors without sockets; the client only moves bytes into ResponseDecoder.
import {
  fromHex, hkdf, hkdfMany, open, openPaddedHex, pad, seal, toHex, utf8, wipe, NONCE_BYTES,
} from './crypto.js';
import { EnclaveError, ErrorCode, parseErrorJson, RvencError, StreamError } from './errors.js';
import { ShapedReader } from './shaping.js';
import { SseEvent, SseParser } from './sse.js';

export type ProtocolVersion = 1 | 2 | 3;
export type EventKind = 'init' | 'data' | 'error' | 'done';

const DONE = '[DONE]';
const RESPONSE_SALT_BYTES = 32;
const RESPONSE_PREFIX_BYTES = 16;
const MAX_QUOTED_GATEWAY_MESSAGE = 200;

export interface SealInput {
  version: ProtocolVersion;
  sharedSecret: Uint8Array;
  cipherText: Uint8Array;
  keyId: Uint8Array;
  nonce: Uint8Array;
  timestamp: number;
}

export interface RequestBody {
  version?: number;
  keyId?: string;
  timestamp?: number;
  encryptedInference: string;
  cipherText: string;
  nonce: string;
}

const label = (version: ProtocolVersion, what: string) => `rvenc/${version} ${what}`;
const adPrefix = (version: ProtocolVersion) => `rvenc/${version}|`;

export function requestAd(version: ProtocolVersion, keyId: Uint8Array, timestamp: number): Uint8Array {
  return utf8(`${adPrefix(version)}${toHex(keyId)}|${timestamp}`);
}

/** The request key of version 2 or 3: HKDF(salt = nonce, ikm = sharedSecret, "rvenc/N request"). */
export function deriveRequestKey(version: 2 | 3, sharedSecret: Uint8Array, nonce: Uint8Array): Uint8Array {
  return hkdf(nonce, sharedSecret, label(version, 'request'), 32);
}

/** The request envelope (section 2) for `plaintext` (the request JSON as UTF-8). */
export async function sealRequest(input: SealInput, plaintext: Uint8Array): Promise<RequestBody> {
  if (input.version === 1) return sealWithKey(input, null, plaintext);
  const key = deriveRequestKey(input.version, input.sharedSecret, input.nonce);
  try {
    return sealWithKey(input, key, plaintext);
  } finally {
    wipe(key);
  }
}

/** The envelope with the request key already derived (null for version 1, which has none). */
function sealWithKey(input: SealInput, key: Uint8Array | null, plaintext: Uint8Array): RequestBody {
  const { version, sharedSecret, cipherText, keyId, nonce, timestamp } = input;
  if (version === 1 || !key) {
    return {
      encryptedInference: toHex(seal(sharedSecret, nonce, new Uint8Array(0), plaintext)),
      cipherText: toHex(cipherText),
      nonce: toHex(nonce),
    };
  }
  const padded = pad(plaintext);
  try {
    const sealed = seal(key, nonce, requestAd(version, keyId, timestamp), padded);
    return {
      version, keyId: toHex(keyId), timestamp,
      encryptedInference: toHex(sealed), cipherText: toHex(cipherText), nonce: toHex(nonce),
    };
  } finally {
    wipe(padded);
  }
}

/**
 * One request's envelope and the decoder of its answer. Every derivation keyed by (nonce,
 * sharedSecret) comes from one WebCrypto key import: the request key and, in version 3, the
 * response secret (version 2: the response key and nonce prefix) are expansions of the same PRK.
 */
export async function sealRequestWithDecoder(input: SealInput, plaintext: Uint8Array, maxEventBytes: number):
    Promise<{ body: RequestBody; decoder: ResponseDecoder }> {
  const { version, sharedSecret, nonce } = input;
  if (version === 1) {
    const opener = await ResponseOpener.create(1, sharedSecret, nonce);
    return { body: sealWithKey(input, null, plaintext), decoder: new ResponseDecoder(opener, maxEventBytes) };
  }
  const outputs: [string, number][] = version === 3
    ? [[label(3, 'request'), 32], [label(3, 'response secret'), 32]]
    : [[label(2, 'request'), 32], [label(2, 'response'), 32], [label(2, 'response nonce'), RESPONSE_PREFIX_BYTES]];
  const [requestKey, ...response] = hkdfMany(nonce, sharedSecret, outputs);
  try {
    const opener = ResponseOpener.fromDerived(version, sharedSecret, nonce, response);
    return { body: sealWithKey(input, requestKey, plaintext), decoder: new ResponseDecoder(opener, maxEventBytes) };
  } finally {
    wipe(requestKey);
  }
}

interface ResponseKeys {
  key: Uint8Array;
  prefix: Uint8Array;
}

export function deriveV2ResponseKeys(sharedSecret: Uint8Array, nonce: Uint8Array): ResponseKeys {
  const [key, prefix] = hkdfMany(nonce, sharedSecret,
    [[label(2, 'response'), 32], [label(2, 'response nonce'), RESPONSE_PREFIX_BYTES]]);
  return { key, prefix };
}

export function deriveResponseSecret(sharedSecret: Uint8Array, nonce: Uint8Array): Uint8Array {
  return hkdf(nonce, sharedSecret, label(3, 'response secret'), 32);
}

export function deriveV3ResponseKeys(responseSecret: Uint8Array, salt: Uint8Array): ResponseKeys {
  const [key, prefix] = hkdfMany(salt, responseSecret,
    [[label(3, 'response'), 32], [label(3, 'response nonce'), RESPONSE_PREFIX_BYTES]]);
  return { key, prefix };
}

/** responsePrefix ‖ uint64_be(index) */
export function eventNonce(prefix: Uint8Array, index: number): Uint8Array {
  const nonce = new Uint8Array(NONCE_BYTES);
  nonce.set(prefix, 0);
  let rest = index;  // a safe integer: the high bytes by division, not 32-bit shifts
  for (let at = NONCE_BYTES - 1; at >= RESPONSE_PREFIX_BYTES; at -= 1) {
    nonce[at] = rest % 256;
    rest = Math.floor(rest / 256);
  }
  return nonce;
}

const tampered = (message: string) => new StreamError('tampered_stream', message);

function gatewayErrorMessage(payload: string): string {
  const parsed = parseErrorJson(payload);
  return parsed?.message ? parsed.message.slice(0, MAX_QUOTED_GATEWAY_MESSAGE) : 'no message';
}

/** Opens the events of one answer in order (ResponseOpener of the C++ SDK). */
export class ResponseOpener {
  private keys: ResponseKeys | null = null;
  private responseSecret: Uint8Array | null = null;
  private index = 0;
  private finished = false;
  private failed = false;

  private constructor(readonly version: ProtocolVersion, private readonly sharedSecret: Uint8Array,
                      private readonly requestNonce: Uint8Array) {}

  /** The opener from derivations already made (sealRequestWithDecoder): [responseSecret] or [key, prefix]. */
  static fromDerived(version: 2 | 3, sharedSecret: Uint8Array, requestNonce: Uint8Array, derived: Uint8Array[]): ResponseOpener {
    const opener = new ResponseOpener(version, sharedSecret, requestNonce);
    if (version === 3) opener.responseSecret = derived[0];
    else opener.keys = { key: derived[0], prefix: derived[1] };
    return opener;
  }

  static async create(version: ProtocolVersion, sharedSecret: Uint8Array, requestNonce: Uint8Array): Promise<ResponseOpener> {
    const opener = new ResponseOpener(version, sharedSecret, requestNonce);
    if (version === 3) opener.responseSecret = deriveResponseSecret(sharedSecret, requestNonce);
    else if (version === 2) opener.keys = deriveV2ResponseKeys(sharedSecret, requestNonce);
    return opener;
  }

  get done(): boolean {
    return this.finished;
  }

  /** The plaintext of one event; throws StreamError (tampered_stream, or upstream_error for the gateway's own error). */
  open(kind: EventKind, payload: string): Uint8Array | null {
    if (this.failed) throw tampered('the stream already failed');
    if (this.finished) return this.fail(tampered('an event after the end of the stream'));
    if (kind === 'init') return this.openInit(payload);
    if (this.version === 1) return this.openV1(kind, payload);
    if (kind === 'error' && payload.startsWith('{')) {
      return this.fail(new StreamError('upstream_error',
        `unauthenticated error event from the gateway: ${gatewayErrorMessage(payload)}`));
    }
    if (!this.keys) return this.fail(tampered("an encrypted event before the stream's init event"));
    const plaintext = openPaddedHex(this.keys.key, eventNonce(this.keys.prefix, this.index), this.eventAd(kind), payload);
    if (!plaintext) {
      return this.fail(tampered(`event ${this.index} (${kind}) does not authenticate (changed, reordered, replayed or dropped events)`));
    }
    if (kind === 'done') {
      if (textOf(plaintext) !== DONE) return this.fail(tampered('the done event does not carry [DONE]'));
      this.finished = true;
    }
    this.index += 1;
    return plaintext;
  }

  private readonly ads = new Map<EventKind, Uint8Array>();

  /** "rvenc/N|kind", encoded once per kind. */
  private eventAd(kind: EventKind): Uint8Array {
    let ad = this.ads.get(kind);
    if (!ad) this.ads.set(kind, ad = utf8(adPrefix(this.version) + kind));
    return ad;
  }

  private openInit(payload: string): null {
    if (this.version !== 3) return null;  // versions 1 and 2 know no init: an unknown kind there
    if (this.keys) return this.fail(tampered(this.index === 0 ? 'a second init event' : 'an init event after an encrypted event'));
    const salt = fromHex(payload, RESPONSE_SALT_BYTES);
    if (!salt) return this.fail(tampered('the init event does not carry a 32-byte response salt'));
    this.keys = deriveV3ResponseKeys(this.responseSecret!, salt);
    wipe(this.responseSecret);
    this.responseSecret = null;
    return null;
  }

  private openV1(kind: EventKind, payload: string): Uint8Array {
    if (kind === 'done') {
      if (payload !== DONE) return this.fail(tampered('the done event of a version 1 stream is not [DONE]'));
      this.finished = true;
      return utf8(DONE);
    }
    if (kind === 'error' && payload.startsWith('{')) {  // version 1 lets the server send a clear error
      this.index += 1;
      return utf8(payload);
    }
    const bytes = fromHex(payload);
    const opened = bytes ? open(this.sharedSecret, this.requestNonce, new Uint8Array(0), bytes) : null;
    if (!opened) return this.fail(tampered(`event ${this.index} (${kind}) does not decrypt`));
    this.index += 1;
    return opened;
  }

  private fail(error: RvencError): never {
    this.failed = true;
    throw error;
  }
}

const KINDS: ReadonlySet<string> = new Set(['init', 'data', 'error', 'done']);
const utf8Decoder = new TextDecoder();
const textOf = (bytes: Uint8Array): string => utf8Decoder.decode(bytes);

/** One decrypted chat.completion.chunk. */
export type ChunkObject = Record<string, unknown>;

/**
 * The answer's event stream → chunks, in order (ResponseDecoder of the C++ SDK). feed() throws the
 * stream's error (StreamError, or the enclave's EnclaveError once its done confirmed it); finish()
 * throws truncated_stream when the stream ended before its authenticated done.
 */
export class ResponseDecoder {
  private readonly parser: SseParser;
  private failure: RvencError | null = null;
  private enclaveError: EnclaveError | null = null;
  private readonly text = new TextDecoder();
  /** Drops fillers and joins chunks split across shaped records (docs/traffic-shaping.md). */
  private readonly shaped: ShapedReader;
  authenticatedEvents = 0;

  constructor(private readonly opener: ResponseOpener, maxEventBytes: number) {
    this.parser = new SseParser(maxEventBytes);
    this.shaped = new ShapedReader(maxEventBytes);
  }

  static async create(version: ProtocolVersion, sharedSecret: Uint8Array, requestNonce: Uint8Array,
                      maxEventBytes: number): Promise<ResponseDecoder> {
    return new ResponseDecoder(await ResponseOpener.create(version, sharedSecret, requestNonce), maxEventBytes);
  }

  get done(): boolean {
    return this.opener.done;
  }

  /** The chunks completed by `bytes` (or text); throws the stream's error. */
  async feed(bytes: Uint8Array | string): Promise<ChunkObject[]> {
    if (this.failure) throw this.failure;
    const out: ChunkObject[] = [];
    if (this.opener.done) return out;
    const events: SseEvent[] = [];
    const text = typeof bytes === 'string' ? bytes : this.text.decode(bytes, { stream: true });
    const parsed = this.parser.feed(text, events);
    try {
      for (const event of events) {
        if (this.opener.done) break;
        this.handle(event, out);
      }
      if (!parsed && !this.opener.done) {
        throw new StreamError('event_too_large',
          `an event of the response stream is larger than maxBufferSize (${this.parser.maxEventBytes} bytes)`);
      }
    } catch (error) {
      this.failure = error instanceof RvencError ? error : new StreamError('internal_error', String(error));
      throw this.failure;
    }
    return out;
  }

  /** At the end of the bytes: throws unless the authenticated done was seen. */
  finish(): void {
    if (this.failure) throw this.failure;
    if (!this.opener.done) {
      this.failure = new StreamError('truncated_stream', 'the response stream ended before its authenticated end (done event)');
      throw this.failure;
    }
  }

  private handle(event: SseEvent, out: ChunkObject[]): void {
    if (!KINDS.has(event.event)) return;  // unknown kinds (e.g. a stray "usage") are ignored
    const kind = event.event as EventKind;
    const plaintext = this.opener.open(kind, event.data);
    this.authenticatedEvents += 1;
    if (this.enclaveError && kind !== 'done') throw tampered("an event after the enclave's error event");
    if (kind === 'init' || plaintext === null) return;
    if (kind === 'done') {
      if (this.enclaveError) throw this.enclaveError;
      this.shaped.finish();
      return;
    }
    if (kind === 'data') {
      for (const line of this.shaped.feed(plaintext)) out.push(parseChunk(line));
      return;
    }
    const text = textOf(plaintext);
    if (kind === 'error') {
      const parsed = parseErrorJson(text);
      if (!parsed) throw new StreamError('upstream_error', 'the enclave sent an error event that is not an error object');
      const code: ErrorCode = parsed.code ?? 'upstream_error';
      this.enclaveError = new EnclaveError(code, parsed.message || 'the enclave reported an error');
    }
  }
}

function parseChunk(text: string): ChunkObject {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = null;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new StreamError('upstream_error', 'the enclave sent a chunk that is not a JSON object');
  }
  return value as ChunkObject;
}

