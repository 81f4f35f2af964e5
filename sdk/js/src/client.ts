// createRvencClient: end-to-end encrypted chat completions through an rvenc gateway, in Node (>= 18)
// and browsers, with the interface of the reference TypeScript SDK and the rules of the C++ SDK
// (src/client/client.cpp).
//
// Design: a client holds its options and the encryption keys in use (an X-Wing encapsulation to
// an enclave key whose attestation verified against the policy and a fresh challenge). Keys are made
// on first use by one call at a time (concurrent calls share that attempt's result) and replaced
// from 60 s before their notAfter. Each request gets a fresh nonce and is sealed with the protocol
// version chosen (3 by default; never downgraded by the client). The answer is always an event
// stream, decoded as it arrives (ResponseDecoder): a streaming call yields each authenticated chunk,
// a non-streaming call assembles them; success only after the authenticated done. On
// unknown_key_id, enclave_busy or enclave_unavailable before any event the client re-attests and
// sends the request once more, sealed anew. requestTimeoutMs bounds the wait for the head and for
// each next authenticated event (comments and unknown events do not count); an AbortSignal cancels
// the call and closes the connection, so the enclave stops generating.
import { CompletionAssembler } from './assemble.js';
import { AttestationDocument, AttestationPolicy, CHALLENGE_BYTES, parseAttestation, verifyAttestation } from './attestation.js';
import {
  fromHex, NONCE_BYTES, randomBytes, ready, toHex, utf8, xwingEncapsulate, KEY_ID_BYTES,
  SHARED_SECRET_BYTES, XWING_CIPHERTEXT_BYTES,
} from './crypto.js';
import { ConnectionError, errorFromHttp, RvencError, StreamError } from './errors.js';
import { ProtocolVersion, ResponseDecoder, sealRequest } from './protocol.js';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionCreateParams } from './types.js';

export const DEFAULT_BASE_URL = 'http://127.0.0.1:8400';
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_BUFFER_SIZE = 10 * 1024 * 1024;
const KEY_EXPIRY_MARGIN_S = 60;
const MAX_API_KEY = 256;
const MAX_JSON_RESPONSE = 1024 * 1024;
const RETRY_ONCE: readonly string[] = ['unknown_key_id', 'enclave_busy', 'enclave_unavailable'];
const PASSTHROUGH = /^(retry-after|x-request-id|x-ratelimit-.*)$/i;

/** The SDK's "encryption keys" (hex): an X-Wing encapsulation to the enclave key `keyId`. Secret. */
export interface EncryptionKeys {
  sharedSecret: string;
  cipherText: string;
  keyId: string;
  /** The enclave key's notAfter (epoch seconds) from the verified attestation, when known. */
  notAfter?: number;
}

export interface RvencClientOptions {
  apiKey: string;
  /** The gateway (default http://127.0.0.1:8400). */
  baseUrl?: string;
  /** Pre-generated keys; made from a verified attestation on first use otherwise. */
  encryptionKeys?: EncryptionKeys;
  requestTimeoutMs?: number;
  /** Largest single event of the answer stream accepted (event_too_large beyond). */
  maxBufferSize?: number;
  /** Hex Ed25519 key of the simulated provider's platform (`rvenc up` prints it); never trusted otherwise. */
  platformPublicKey?: string;
  attestationPolicy?: AttestationPolicy;
  /** 3 by default; 2 while enclaves are upgraded (--allow-v2); 1 only for legacy servers. */
  protocolVersion?: ProtocolVersion;
  /** A fetch implementation (default globalThis.fetch). */
  fetch?: typeof fetch;
}

export interface ResponseMeta {
  status: number;
  /** Retry-After, x-ratelimit-*, x-request-id (lower-case names). */
  headers: Record<string, string>;
}

export interface RequestOptions {
  signal?: AbortSignal;
  /** Called with the head of the answer the call acts on, before any chunk. */
  onResponse?: (meta: ResponseMeta) => void;
}

/** The verified attestation, as a page shows it. */
export interface VerifiedAttestation {
  keyId: string;
  provider: string;
  measurement: string;
  notAfter: number;
  publicKey: string;
}

interface Keys {
  sharedSecret: Uint8Array;
  cipherText: Uint8Array;
  keyId: Uint8Array;
  notAfter?: number;
}

const now = () => Math.floor(Date.now() / 1000);
const invalid = (message: string) => new RvencError('invalid_request', message);

function keysFromHex(k: EncryptionKeys): Keys {
  const sharedSecret = fromHex(k?.sharedSecret, SHARED_SECRET_BYTES);
  const cipherText = fromHex(k?.cipherText, XWING_CIPHERTEXT_BYTES);
  const keyId = fromHex(k?.keyId, KEY_ID_BYTES);
  if (!sharedSecret || !cipherText || !keyId) {
    throw invalid('encryptionKeys must hold hex sharedSecret (32 bytes), cipherText (1120 bytes) and keyId (8 bytes)');
  }
  if (k.notAfter !== undefined && (!Number.isSafeInteger(k.notAfter) || k.notAfter < 0)) {
    throw invalid('encryptionKeys.notAfter must be a non-negative integer');
  }
  return { sharedSecret, cipherText, keyId, notAfter: k.notAfter };
}

function keysToHex(k: Keys): EncryptionKeys {
  const out: EncryptionKeys = { sharedSecret: toHex(k.sharedSecret), cipherText: toHex(k.cipherText), keyId: toHex(k.keyId) };
  if (k.notAfter !== undefined) out.notAfter = k.notAfter;
  return out;
}

const summary = (doc: AttestationDocument): VerifiedAttestation => ({
  keyId: doc.keyId, provider: doc.provider, measurement: doc.measurement, notAfter: doc.notAfter, publicKey: toHex(doc.publicKey),
});

const usable = (k: Keys) => k.notAfter === undefined || now() < k.notAfter - KEY_EXPIRY_MARGIN_S;

interface Resolved {
  apiKey: string;
  base: string;
  requestTimeoutMs: number;
  maxBufferSize: number;
  platformPublicKey?: string;
  attestationPolicy: AttestationPolicy;
  protocolVersion: ProtocolVersion;
  fetch: typeof fetch;
}

function resolve(options: RvencClientOptions, needApiKey: boolean): Resolved {
  if (!options || typeof options !== 'object') throw invalid('createRvencClient needs an options object');
  const apiKey = options.apiKey ?? '';
  if (needApiKey) {
    if (typeof apiKey !== 'string' || apiKey.length === 0) throw invalid('apiKey is required');
    if (apiKey.length > MAX_API_KEY) throw invalid('apiKey is too long');
    if (!/^[\x21-\x7e]+$/.test(apiKey)) throw invalid('apiKey contains whitespace or control characters');
  }
  let url: URL;
  try {
    url = new URL(options.baseUrl ?? DEFAULT_BASE_URL);
  } catch {
    throw invalid('baseUrl is not a URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid('baseUrl must be an http:// or https:// URL');
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  if (!(Number.isFinite(requestTimeoutMs) && requestTimeoutMs > 0)) throw invalid('requestTimeoutMs must be positive');
  const maxBufferSize = options.maxBufferSize ?? DEFAULT_MAX_BUFFER_SIZE;
  if (!(Number.isSafeInteger(maxBufferSize) && maxBufferSize > 0)) throw invalid('maxBufferSize must be a positive integer');
  const protocolVersion = options.protocolVersion ?? 3;
  if (![1, 2, 3].includes(protocolVersion)) throw invalid('protocolVersion must be 1, 2 or 3');
  if (options.platformPublicKey !== undefined && !/^[0-9a-fA-F]{64}$/.test(options.platformPublicKey)) {
    throw invalid('platformPublicKey must be 32 bytes of hex (64 digits)');
  }
  const f = options.fetch ?? globalThis.fetch;
  if (typeof f !== 'function') throw invalid('no fetch implementation: Node >= 18 or a browser is needed');
  return {
    apiKey, base: url.href.replace(/\/+$/, ''), requestTimeoutMs, maxBufferSize,
    platformPublicKey: options.platformPublicKey, attestationPolicy: options.attestationPolicy ?? {},
    protocolVersion, fetch: f.bind(globalThis),
  };
}

function passthroughHeaders(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  headers.forEach((value, name) => {
    if (PASSTHROUGH.test(name)) out[name.toLowerCase()] = value;
  });
  return out;
}

/** Reads at most MAX_JSON_RESPONSE characters of a body (an error answer cut short still says what it can). */
async function boundedText(response: Response): Promise<string> {
  if (!response.body) return '';
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  try {
    while (text.length <= MAX_JSON_RESPONSE) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } catch {
    // what arrived is all there is
  } finally {
    reader.cancel().catch(() => undefined);
  }
  return text;
}

/** One call's cancellation: the caller's signal, and the silence timer (requestTimeoutMs). */
class CallControl {
  readonly controller = new AbortController();
  private timer: ReturnType<typeof setTimeout> | undefined;
  timedOut = false;

  private readonly onAbort = () => this.controller.abort();

  constructor(private readonly timeoutMs: number, private readonly signal?: AbortSignal) {
    if (signal?.aborted) this.controller.abort();
    signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /** The call is over: no timer, and the caller's signal no longer holds this call. */
  dispose(): void {
    this.disarm();
    this.signal?.removeEventListener('abort', this.onAbort);
  }

  arm(): void {
    this.disarm();
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort();
    }, this.timeoutMs);
  }

  disarm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The error a failed fetch or read means for this call. */
  failure(error: unknown, base: string, midStream: boolean): RvencError {
    if (error instanceof RvencError) return error;
    if (this.timedOut) return new ConnectionError('timeout', `no answer from the gateway ${base} for ${this.timeoutMs} ms (requestTimeoutMs)`);
    if (this.signal?.aborted) return new ConnectionError('transport_error', 'request cancelled');
    const reason = error instanceof Error ? error.message : String(error);
    if (midStream) return new StreamError('truncated_stream', `the response stream broke before its authenticated end: ${reason}`);
    return new ConnectionError('transport_error', `cannot talk to the gateway ${base}: ${reason}`);
  }
}

interface OpenedCall {
  response: Response;
  decoder: ResponseDecoder;
  control: CallControl;
}

/** The chunks of a streaming call, as they are authenticated. Iterate once. */
export class ChatCompletionStream implements AsyncIterable<ChatCompletionChunk> {
  /** Aborts the call (closes the connection; the enclave stops generating). */
  readonly controller: AbortController;
  private used = false;

  constructor(private readonly call: OpenedCall, private readonly base: string) {
    this.controller = call.control.controller;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ChatCompletionChunk> {
    if (this.used) throw new RvencError('invalid_request', 'a stream can be iterated only once');
    this.used = true;
    const { response, decoder, control } = this.call;
    const reader = response.body!.getReader();
    let finished = false;
    try {
      while (!decoder.done) {
        let read: ReadableStreamReadResult<Uint8Array>;
        try {
          read = await reader.read();
        } catch (error) {
          throw control.failure(error, this.base, true);
        }
        if (read.done) {
          decoder.finish();
          break;
        }
        const before = decoder.authenticatedEvents;
        const chunks = await decoder.feed(read.value);
        if (decoder.authenticatedEvents !== before) control.arm();
        for (const chunk of chunks) {
          control.disarm();  // the caller's time is not the gateway's silence
          yield chunk as unknown as ChatCompletionChunk;
          if (control.controller.signal.aborted) throw control.failure(new Error('aborted'), this.base, true);
          control.arm();
        }
      }
      finished = true;
    } finally {
      control.dispose();
      // After done only the body's end may follow; a stream left early or failed is cut here.
      if (!finished) control.controller.abort();
      reader.cancel().catch(() => undefined);
    }
  }
}

class Completions {
  constructor(private readonly client: RvencClient) {}

  create(params: ChatCompletionCreateParams & { stream: true }, options?: RequestOptions): Promise<ChatCompletionStream>;
  create(params: ChatCompletionCreateParams & { stream?: false | null }, options?: RequestOptions): Promise<ChatCompletion>;
  create(params: ChatCompletionCreateParams, options?: RequestOptions): Promise<ChatCompletion | ChatCompletionStream>;
  async create(params: ChatCompletionCreateParams, options: RequestOptions = {}): Promise<ChatCompletion | ChatCompletionStream> {
    if (!params || typeof params !== 'object' || Array.isArray(params)) throw invalid('create() needs the chat completion request object');
    const stream = await this.client.openChat(params, options);
    if (params.stream) return stream;
    const assembler = new CompletionAssembler();
    for await (const chunk of stream) assembler.add(chunk);
    return assembler.completion();
  }
}

export class RvencClient {
  readonly chat: { completions: Completions };
  private readonly o: Resolved;
  private keys: Keys | null;
  private making: Promise<Keys> | null = null;
  private verified: VerifiedAttestation | null = null;

  constructor(options: RvencClientOptions, needApiKey = true) {
    this.o = resolve(options, needApiKey);
    this.keys = options.encryptionKeys ? keysFromHex(options.encryptionKeys) : null;
    this.chat = { completions: new Completions(this) };
  }

  /** The keys in use now (null before any are made). Secret. */
  get encryptionKeys(): EncryptionKeys | null {
    return this.keys ? keysToHex(this.keys) : null;
  }

  /** The attestation behind the keys made last by this client (null before, or with keys given in the options). */
  get attestation(): VerifiedAttestation | null {
    return this.verified;
  }

  /** The gateway's model list ({object: "list", data: [{id}]}). */
  async models(options: RequestOptions = {}): Promise<{ object: string; data: Array<{ id: string; [k: string]: unknown }> }> {
    const body = await this.getJson('/rvenc/models', true, options.signal);
    const value = JSON.parse(body) as unknown;
    if (!value || typeof value !== 'object' || !Array.isArray((value as { data?: unknown }).data)) {
      throw new RvencError('upstream_error', 'the model list is not a JSON list object');
    }
    return value as { object: string; data: Array<{ id: string }> };
  }

  /** Fetches the attestation with a fresh challenge and verifies it (AttestationError otherwise). */
  async attest(options: RequestOptions = {}): Promise<VerifiedAttestation> {
    const { doc } = await this.verifiedDocument(options.signal);
    return summary(doc);
  }

  /** Verified attestation, then a fresh encapsulation; the new keys become the ones in use. */
  async generateEncryptionKeys(options: RequestOptions = {}): Promise<EncryptionKeys> {
    return keysToHex(await this.makeKeys(options.signal));
  }

  private async verifiedDocument(signal?: AbortSignal) {
    await ready();
    const challenge = randomBytes(CHALLENGE_BYTES);
    const body = await this.getJson(`/rvenc/attestation?challenge=${toHex(challenge)}`, this.o.apiKey !== '', signal);
    const doc = parseAttestation(body);
    await verifyAttestation(doc, challenge, { policy: this.o.attestationPolicy, platformPublicKey: this.o.platformPublicKey });
    return { doc };
  }

  private async makeKeys(signal?: AbortSignal): Promise<Keys> {
    const { doc } = await this.verifiedDocument(signal);
    const { cipherText, sharedSecret } = xwingEncapsulate(doc.publicKey);
    const keys: Keys = { sharedSecret, cipherText, keyId: fromHex(doc.keyId)!, notAfter: doc.notAfter };
    this.keys = keys;
    this.verified = summary(doc);
    return keys;
  }

  // The keys in use, made when there are none by one attempt that concurrent calls share: it runs
  // without any one caller's signal (a caller that gives up stops waiting, not the others' attempt).
  private async currentKeys(signal?: AbortSignal): Promise<Keys> {
    if (this.keys && usable(this.keys)) return this.keys;
    if (!this.making) this.making = this.makeKeys().finally(() => { this.making = null; });
    if (!signal) return this.making;
    if (signal.aborted) throw new ConnectionError('transport_error', 'request cancelled');
    return new Promise<Keys>((resolve, reject) => {
      const cancelled = () => reject(new ConnectionError('transport_error', 'request cancelled'));
      signal.addEventListener('abort', cancelled, { once: true });
      this.making!.then(resolve, reject).finally(() => signal.removeEventListener('abort', cancelled));
    });
  }

  private async getJson(path: string, withApiKey: boolean, signal?: AbortSignal): Promise<string> {
    const control = new CallControl(this.o.requestTimeoutMs, signal);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (withApiKey) headers.authorization = `Bearer ${this.o.apiKey}`;
    control.arm();
    try {
      let response: Response;
      try {
        response = await this.o.fetch(this.o.base + path, { headers, signal: control.controller.signal });
      } catch (error) {
        throw control.failure(error, this.o.base, false);
      }
      const text = await boundedText(response);
      if (response.status !== 200) throw errorFromHttp(response.status, text, passthroughHeaders(response.headers));
      return text;
    } finally {
      control.dispose();
    }
  }

  /** Seals and sends one chat request; the stream of its answer (after a retry on a changed key). */
  async openChat(params: ChatCompletionCreateParams, options: RequestOptions): Promise<ChatCompletionStream> {
    await ready();
    const plaintext = utf8(JSON.stringify(params));
    for (let attempt = 0; ; attempt += 1) {
      const keys = await this.currentKeys(options.signal);
      const nonce = randomBytes(NONCE_BYTES);
      // The request key and the answer's secret are independent derivations: made at once.
      const [body, decoder] = await Promise.all([
        sealRequest({ version: this.o.protocolVersion, ...keys, nonce, timestamp: now() }, plaintext),
        ResponseDecoder.create(this.o.protocolVersion, keys.sharedSecret, nonce, this.o.maxBufferSize),
      ]);
      const control = new CallControl(this.o.requestTimeoutMs, options.signal);
      control.arm();
      let response: Response;
      try {
        response = await this.o.fetch(`${this.o.base}/rvenc/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${this.o.apiKey}`, 'content-type': 'application/json', accept: 'text/event-stream' },
          body: JSON.stringify(body),
          signal: control.controller.signal,
        });
      } catch (error) {
        control.dispose();
        throw control.failure(error, this.o.base, false);
      }
      const meta: ResponseMeta = { status: response.status, headers: passthroughHeaders(response.headers) };
      if (response.status !== 200) {
        const error = errorFromHttp(response.status, await boundedText(response), meta.headers);
        control.dispose();
        if (RETRY_ONCE.includes(error.code) && attempt === 0) {
          if (this.keys && toHex(this.keys.keyId) === toHex(keys.keyId)) this.keys = null;
          continue;
        }
        options.onResponse?.(meta);
        throw error;
      }
      options.onResponse?.(meta);
      if (!(response.headers.get('content-type') ?? '').startsWith('text/event-stream') || !response.body) {
        control.dispose();
        control.controller.abort();
        throw new RvencError('upstream_error', 'the gateway answered 200 without an event stream');
      }
      return new ChatCompletionStream({ response, decoder, control }, this.o.base);
    }
  }
}

/** A client for `options.baseUrl` (validated: invalid_request naming the bad option). */
export function createRvencClient(options: RvencClientOptions): RvencClient {
  return new RvencClient(options, true);
}

/** Keys without a client (no API key needed): verified attestation, then a fresh encapsulation. */
export function generateEncryptionKeys(options: Omit<RvencClientOptions, 'apiKey'> & { apiKey?: string }): Promise<EncryptionKeys> {
  return new RvencClient({ ...options, apiKey: options.apiKey ?? '' }, false).generateEncryptionKeys();
}
