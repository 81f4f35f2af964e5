// createRvencClient: end-to-end encrypted chat completions through an rvenc gateway, in Node (>= 18)
// and browsers, with the interface of the reference TypeScript SDK and the rules of the C++ SDK
// (src/client/client.cpp).
//
// Design: a client holds its options and, per model, verified keys for every replica serving it
// (PROTOCOL.md section 7: `GET /rvenc/attestation?model=M&all=1`, each document verified against
// the policy and the one fresh challenge; an older gateway's single document is one replica). Keys
// are made on first use by one call per model at a time (concurrent calls share that attempt's
// result) and replaced at their refreshAt: notAfter − min(60 s, half the life left when verified),
// so keys to an enclave rotating every few seconds (--key-rotation-hours) move to its next key in time
// (docs/key-rotation.md). Each request takes the replica with the
// fewest of this client's own requests in flight (ties at random); a request that failed on a
// replica asks for a re-attestation (and drops that replica's keys) only while the replica set it
// picked from is still current, so many failing at once cause one, however late their answers
// come. Each request gets a fresh nonce and is sealed with the protocol version chosen (3 by
// default; never downgraded by the client). The answer is always an event stream, decoded as it
// arrives (ResponseDecoder): a streaming call yields each authenticated chunk, a non-streaming call
// assembles them; success only after the authenticated done. On
// unknown_key_id, enclave_busy, enclave_unavailable or a connection failure before any HTTP status
// the client re-attests the model and sends the request once more, sealed anew (new nonce), to
// another replica when there is one; nothing is re-sent once the answer has begun. requestTimeoutMs bounds the wait for the head and for
// each next authenticated event (comments and unknown events do not count); an AbortSignal cancels
// the call and closes the connection, so the enclave stops generating.
import { SHAPING_MEMBER, SHAPING_MODES, ShapingMode } from './shaping.js';
import { CompletionAssembler } from './assemble.js';
import { Embeddings, marked, TextCompletions } from './endpoints.js';
import { AttestationDocument, AttestationPolicy, CHALLENGE_BYTES, parseAttestation, verifyAttestation } from './attestation.js';
import {
  fromHex, NONCE_BYTES, randomBytes, ready, toHex, utf8, xwingEncapsulate, KEY_ID_BYTES,
  SHARED_SECRET_BYTES, XWING_CIPHERTEXT_BYTES,
} from './crypto.js';
import { AttestationError, ConnectionError, errorFromHttp, RvencError, StreamError } from './errors.js';
import { ProtocolVersion, ResponseDecoder, sealRequestWithDecoder } from './protocol.js';
import type {
  ChatCompletion, ChatCompletionChunk, ChatCompletionCreateParams, ResponseCreateParams, ResponseObject, ResponseStreamEvent,
} from './types.js';

export const DEFAULT_BASE_URL = 'http://127.0.0.1:8400';
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_BUFFER_SIZE = 10 * 1024 * 1024;
const KEY_EXPIRY_MARGIN_S = 60;
const MAX_API_KEY = 256;
const MAX_JSON_RESPONSE = 1024 * 1024;
/** Most replica documents one attestation answer may list (`all=1`), as the C++ SDK. */
const MAX_REPLICA_DOCUMENTS = 256;
const RETRY_ONCE: readonly string[] = ['unknown_key_id', 'enclave_busy', 'enclave_unavailable'];
const PASSTHROUGH = /^(retry-after|x-request-id|x-ratelimit-.*)$/i;

/** The SDK's "encryption keys" (hex): an X-Wing encapsulation to the enclave key `keyId`. Secret. */
export interface EncryptionKeys {
  sharedSecret: string;
  cipherText: string;
  keyId: string;
  /** The enclave key's notAfter (epoch seconds) from the verified attestation, when known. */
  notAfter?: number;
  /** When new keys are made (epoch seconds; see refreshTime); absent: 60 s before notAfter. */
  refreshAt?: number;
  /** The models these keys serve (set when they were made for a model); absent: any model. */
  models?: string[];
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
  /**
   * Stream shaping against traffic analysis, asked for inside the encrypted request
   * (docs/traffic-shaping.md); default: the enclave's. Fillers are dropped whoever chose.
   */
  shaping?: ShapingMode;
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

/** Options of attest() and generateEncryptionKeys(). */
export interface KeyRequestOptions extends RequestOptions {
  /** Attest an enclave serving this model (`&model=`); the gateway picks any healthy one without it. */
  model?: string;
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
  refreshAt?: number;
  models?: string[];
}

/** One replica's keys and this client's count of requests in flight on them. */
interface Replica {
  keys: Keys;
  keyId: string;
  inFlight: number;
}

/** A model's replicas; generation is bumped by every install. */
interface KeySet {
  replicas: Replica[];
  generation: number;
}

/** One request's hold on a replica: counts as in flight until released (once). */
interface Lease {
  replica: Replica;
  generation: number;
  release: () => void;
}

function lease(replica: Replica, generation: number): Lease {
  replica.inFlight += 1;
  let held = true;
  return {
    replica, generation, release: () => {
      if (held) replica.inFlight -= 1;
      held = false;
    },
  };
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
  if (k.refreshAt !== undefined && (!Number.isSafeInteger(k.refreshAt) || k.refreshAt < 0)) {
    throw invalid('encryptionKeys.refreshAt must be a non-negative integer');
  }
  if (k.models !== undefined && (!Array.isArray(k.models) || !k.models.every((m) => typeof m === 'string' && m.length > 0))) {
    throw invalid('encryptionKeys.models must be a list of model names');
  }
  return {
    sharedSecret, cipherText, keyId, notAfter: k.notAfter, refreshAt: k.refreshAt, models: k.models ? [...k.models] : undefined,
  };
}

function keysToHex(k: Keys): EncryptionKeys {
  const out: EncryptionKeys = { sharedSecret: toHex(k.sharedSecret), cipherText: toHex(k.cipherText), keyId: toHex(k.keyId) };
  if (k.notAfter !== undefined) out.notAfter = k.notAfter;
  if (k.refreshAt !== undefined) out.refreshAt = k.refreshAt;
  if (k.models !== undefined) out.models = [...k.models];
  return out;
}

const summary = (doc: AttestationDocument): VerifiedAttestation => ({
  keyId: doc.keyId, provider: doc.provider, measurement: doc.measurement, notAfter: doc.notAfter, publicKey: toHex(doc.publicKey),
});

/**
 * When keys to an enclave key with this notAfter, verified at `verifiedAt`, are replaced: notAfter −
 * min(60 s, half the life it had left), as the C++ SDK's client::refresh_time.
 */
export const refreshTime = (notAfter: number, verifiedAt: number): number =>
  notAfter - Math.min(KEY_EXPIRY_MARGIN_S, Math.floor(Math.max(0, notAfter - verifiedAt) / 2));

/** The end of a document's use: its notAfter, or earlier when its hardware evidence's certificates end first. */
const usableUntil = (doc: AttestationDocument): number => Math.min(doc.notAfter, doc.validUntil ?? doc.notAfter);

const usableAt = (k: Keys, at: number) => {
  if (k.refreshAt !== undefined) return at < k.refreshAt;
  return k.notAfter === undefined || at < k.notAfter - KEY_EXPIRY_MARGIN_S;
};
const serves = (k: Keys, model: string) => k.models === undefined || k.models.length === 0 || k.models.includes(model);
const cancelled = () => new ConnectionError('transport_error', 'request cancelled');

/** Waits for a shared attempt, or until `signal` aborts (the attempt goes on for the others). */
function awaitShared<T>(shared: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return shared;
  if (signal.aborted) return Promise.reject(cancelled());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(cancelled());
    signal.addEventListener('abort', onAbort, { once: true });
    shared.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** The "model" of a chat request ("" when it names none). */
const requestModel = (params: ChatCompletionCreateParams) => {
  const model = (params as { model?: unknown }).model;
  return typeof model === 'string' ? model : '';
};

interface Resolved {
  apiKey: string;
  base: string;
  requestTimeoutMs: number;
  maxBufferSize: number;
  platformPublicKey?: string;
  attestationPolicy: AttestationPolicy;
  protocolVersion: ProtocolVersion;
  shaping?: ShapingMode;
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
  if (options.shaping !== undefined && !SHAPING_MODES.includes(options.shaping)) {
    throw invalid("shaping must be 'off', 'pad' or 'cadence'");
  }
  const f = options.fetch ?? globalThis.fetch;
  if (typeof f !== 'function') throw invalid('no fetch implementation: Node >= 18 or a browser is needed');
  return {
    apiKey, base: url.href.replace(/\/+$/, ''), requestTimeoutMs, maxBufferSize,
    platformPublicKey: options.platformPublicKey, attestationPolicy: options.attestationPolicy ?? {},
    protocolVersion, shaping: options.shaping, fetch: f.bind(globalThis),
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
  /** Ends the call's hold on its replica (counted in flight until the stream is over). */
  release: () => void;
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
      this.call.release();
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

const kTerminalEvents = new Set(['response.completed', 'response.incomplete', 'response.failed']);

/**
 * client.responses: the OpenAI Responses API (docs/responses.md). Sealed like a chat request, with
 * "rvenc_endpoint": "responses" inside the ciphertext; the enclave answers with Responses events.
 * A non-streaming call returns the terminal event's response object. The enclave stores nothing:
 * previous_response_id needs `rvenc proxy`, which keeps conversations on the user's machine.
 */
class Responses {
  constructor(private readonly client: RvencClient) {}

  create(params: ResponseCreateParams & { stream: true }, options?: RequestOptions): Promise<AsyncIterable<ResponseStreamEvent>>;
  create(params: ResponseCreateParams & { stream?: false | null }, options?: RequestOptions): Promise<ResponseObject>;
  async create(params: ResponseCreateParams, options: RequestOptions = {}): Promise<ResponseObject | AsyncIterable<ResponseStreamEvent>> {
    const sealed = marked(params, 'responses') as unknown as ChatCompletionCreateParams;
    const events = (await this.client.openChat(sealed, options)) as unknown as AsyncIterable<ResponseStreamEvent>;
    if (params.stream) return events;
    let final: ResponseObject | undefined;
    for await (const event of events) if (kTerminalEvents.has(event.type) && event.response) final = event.response;
    if (!final) throw new RvencError('upstream_error', 'the Responses stream ended without a final response event');
    return final;
  }
}

export class RvencClient {
  readonly chat: { completions: Completions };
  /** Legacy completions and embeddings (docs/endpoints.md). */
  readonly completions: TextCompletions;
  readonly embeddings: Embeddings;
  readonly responses: Responses;
  private readonly o: Resolved;
  /** The keys made last (or given in the options): what `encryptionKeys` shows. */
  private keys: Keys | null;
  /** Verified keys per model ("" holds keys for any model: given ones naming none, made without one). */
  private readonly sets = new Map<string, KeySet>();
  /** The re-attestation of a model under way, shared by the calls that need it meanwhile. */
  private readonly making = new Map<string, Promise<void>>();
  private verified: VerifiedAttestation | null = null;

  constructor(options: RvencClientOptions, needApiKey = true) {
    this.o = resolve(options, needApiKey);
    this.keys = options.encryptionKeys ? keysFromHex(options.encryptionKeys) : null;
    if (this.keys) this.addKeys(this.keys);
    this.chat = { completions: new Completions(this) };
    this.completions = new TextCompletions(this);
    this.embeddings = new Embeddings(this);
    this.responses = new Responses(this);
  }

  /** The keys in use now (null before any are made): the ones made last. Secret. */
  get encryptionKeys(): EncryptionKeys | null {
    return this.keys ? keysToHex(this.keys) : null;
  }

  /** The attestation behind the keys made last by this client (null before, or with keys given in the options). */
  get attestation(): VerifiedAttestation | null {
    return this.verified;
  }

  /** The verified keys this client holds for `model`'s replicas ("" for keys made without a model). Secret. */
  replicaKeys(model = ''): EncryptionKeys[] {
    return (this.sets.get(model)?.replicas ?? []).map((r) => keysToHex(r.keys));
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

  /** Fetches the attestation (of an enclave serving `options.model` when given) with a fresh challenge and verifies it (AttestationError otherwise). */
  async attest(options: KeyRequestOptions = {}): Promise<VerifiedAttestation> {
    const doc = await this.attestOne(options.model ?? '', options.signal);
    return summary(doc);
  }

  /**
   * Verified attestation of one enclave (serving `options.model` when given: the gateway picks it),
   * then a fresh encapsulation; the new keys become the ones in use, and that model's only keys.
   */
  async generateEncryptionKeys(options: KeyRequestOptions = {}): Promise<EncryptionKeys> {
    const model = options.model ?? '';
    const doc = await this.attestOne(model, options.signal);
    const keys = this.encapsulate(doc, model === '' ? undefined : [model]);
    this.install(model, [{ keys, keyId: doc.keyId, inFlight: 0 }]);
    this.keys = keys;
    this.verified = summary(doc);
    return keysToHex(keys);
  }

  // GET /rvenc/attestation with a fresh challenge, `&model=` when given, `&all=1` for every replica.
  private async fetchAttestation(model: string, all: boolean, signal?: AbortSignal) {
    await ready();
    const challenge = randomBytes(CHALLENGE_BYTES);
    let path = `/rvenc/attestation?challenge=${toHex(challenge)}`;
    if (model !== '') path += `&model=${encodeURIComponent(model)}`;
    if (all) path += '&all=1';
    // With the API key when there is one: the gateway limits attestation per address only for
    // callers without a valid key.
    const body = await this.getJson(path, this.o.apiKey !== '', signal);
    return { body, challenge };
  }

  // One document checked against the policy and our challenge; one naming models without `model` is refused.
  private async verifiedDocument(value: unknown, challenge: Uint8Array, model: string): Promise<AttestationDocument> {
    const doc = parseAttestation(typeof value === 'string' ? value : JSON.stringify(value));
    await verifyAttestation(doc, challenge, { policy: this.o.attestationPolicy, platformPublicKey: this.o.platformPublicKey });
    if (model !== '' && doc.models && doc.models.length > 0 && !doc.models.includes(model)) {
      throw new AttestationError('attestation_failed', 'the gateway sent the attestation of an enclave that does not serve the model');
    }
    return doc;
  }

  private async attestOne(model: string, signal?: AbortSignal): Promise<AttestationDocument> {
    const { body, challenge } = await this.fetchAttestation(model, false, signal);
    return this.verifiedDocument(body, challenge, model);
  }

  // The verified documents of every replica serving `model` (an older gateway sends one document:
  // then that one). Documents that do not verify or name other models are left out;
  // attestation_failed (the first failure) when none is left.
  private async attestAll(model: string): Promise<AttestationDocument[]> {
    const { body, challenge } = await this.fetchAttestation(model, true);
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch {
      throw new AttestationError('attestation_failed', 'the attestation answer is malformed: not JSON');
    }
    if (!value || typeof value !== 'object' || Array.isArray(value)) {
      throw new AttestationError('attestation_failed', 'the attestation answer is not a JSON object');
    }
    let documents: unknown[] = [value];
    if ('enclaves' in value) {
      const list = (value as { enclaves: unknown }).enclaves;
      if (!Array.isArray(list) || list.length > MAX_REPLICA_DOCUMENTS) {
        throw new AttestationError('attestation_failed', `the attestation answer's "enclaves" is not a list of at most ${MAX_REPLICA_DOCUMENTS} documents`);
      }
      documents = list;
    }
    const verified: AttestationDocument[] = [];
    let firstFailure: unknown;
    for (const document of documents) {
      try {
        verified.push(await this.verifiedDocument(document, challenge, model));
      } catch (error) {
        firstFailure ??= error;
      }
    }
    if (verified.length === 0) throw firstFailure ?? new AttestationError('attestation_failed', 'the gateway listed no enclave');
    return verified;
  }

  private encapsulate(doc: AttestationDocument, models?: string[]): Keys {
    const { cipherText, sharedSecret } = xwingEncapsulate(doc.publicKey);
    return {
      sharedSecret, cipherText, keyId: fromHex(doc.keyId)!, notAfter: doc.notAfter, refreshAt: refreshTime(usableUntil(doc), now()), models,
    };
  }

  private install(model: string, replicas: Replica[]): void {
    const set = this.sets.get(model);
    this.sets.set(model, { replicas, generation: (set?.generation ?? 0) + 1 });
  }

  // Given keys go to the sets of the models they name ("" when they name none).
  private addKeys(keys: Keys): void {
    const keyId = toHex(keys.keyId);
    for (const model of keys.models && keys.models.length > 0 ? keys.models : ['']) {
      const set = this.sets.get(model) ?? { replicas: [], generation: 0 };
      set.replicas = set.replicas.filter((r) => r.keyId !== keyId);
      set.replicas.push({ keys, keyId, inFlight: 0 });
      this.sets.set(model, set);
    }
  }

  // Drops `keyId` from every set (its enclave is gone or no longer knows it).
  private forget(keyId: string): void {
    for (const set of this.sets.values()) set.replicas = set.replicas.filter((r) => r.keyId !== keyId);
    if (this.keys && toHex(this.keys.keyId) === keyId) this.keys = null;
  }

  private usable(model: string, at: number): Replica[] {
    return (this.sets.get(model)?.replicas ?? []).filter((r) => usableAt(r.keys, at));
  }

  // The replica for a request to `model` with the fewest requests in flight among the usable ones
  // at `at` (ties at random), avoiding `avoid` while another is usable; null when none is.
  private pick(model: string, avoid: string | undefined, at: number): Lease | null {
    let candidates = this.usable(model, at);
    if (candidates.length === 0 && model !== '') candidates = this.usable('', at).filter((r) => serves(r.keys, model));
    if (candidates.length === 0) return null;
    if (avoid !== undefined && candidates.length > 1) {
      const others = candidates.filter((r) => r.keyId !== avoid);
      if (others.length > 0) candidates = others;
    }
    const fewest = Math.min(...candidates.map((r) => r.inFlight));
    candidates = candidates.filter((r) => r.inFlight === fewest);
    const chosen = candidates[Math.floor(Math.random() * candidates.length)]!;
    return lease(chosen, this.sets.get(model)?.generation ?? 0);
  }

  // Keys for every replica serving `model`: those already trusted (same keyId, still usable) are
  // kept with their in-flight counts, the others made from their verified documents.
  private async refreshReplicas(model: string): Promise<void> {
    const documents = await this.attestAll(model);
    const known = this.usable(model, now());
    const replicas = documents.map((doc) => known.find((r) => r.keyId === doc.keyId)
      ?? { keys: this.encapsulate(doc, doc.models && doc.models.length > 0 ? doc.models : (model === '' ? undefined : [model])), keyId: doc.keyId, inFlight: 0 });
    this.install(model, replicas);
    this.keys = replicas[0]!.keys;
    this.verified = summary(documents[0]!);
  }

  // A lease on the replica for a request to `model`; keys made first when there are none (or when
  // `stale` is the set's current generation: a request failed on it), by one attempt per model at a
  // time that the calls coming meanwhile share (it runs without any one caller's signal).
  private async currentKeys(model: string, stale: number | undefined, avoid: string | undefined, signal?: AbortSignal): Promise<Lease> {
    for (;;) {
      if (signal?.aborted) throw cancelled();
      if (stale === undefined || stale !== (this.sets.get(model)?.generation ?? 0)) {
        const picked = this.pick(model, avoid, now());
        if (picked) return picked;
      }
      const shared = this.making.get(model);
      if (shared) {
        await awaitShared(shared, signal);
        stale = undefined;  // refreshed meanwhile
        continue;
      }
      const attempt = this.refreshReplicas(model).finally(() => this.making.delete(model));
      this.making.set(model, attempt);
      await awaitShared(attempt, signal);
      const picked = this.pick(model, avoid, now())
        // Keys just attested but within the margin of their notAfter serve this one request.
        ?? this.pick(model, avoid, 0);
      if (picked) return picked;
      throw new AttestationError('attestation_failed', 'the attestation gave no keys for the model');
    }
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

  /**
   * Seals and sends one chat request to the least busy replica of its model; the stream of its
   * answer. A failure a replica explains (unknown_key_id, enclave_busy, enclave_unavailable, or no
   * HTTP status at all) re-attests the model and sends the request once more, sealed anew, to
   * another replica when there is one. Once the answer has begun nothing is re-sent.
   */
  async openChat(params: ChatCompletionCreateParams, options: RequestOptions): Promise<ChatCompletionStream> {
    await ready();
    const asked = this.o.shaping && !(SHAPING_MEMBER in params) ? { ...params, [SHAPING_MEMBER]: { mode: this.o.shaping } } : params;
    const plaintext = utf8(JSON.stringify(asked));
    const model = requestModel(params);
    let stale: number | undefined;
    let avoid: string | undefined;
    for (let attempt = 0; ; attempt += 1) {
      const held = await this.currentKeys(model, stale, avoid, options.signal);
      const keys = held.replica.keys;
      stale = held.generation;
      avoid = held.replica.keyId;
      // After a failure before any answer: true when the request may go once more (first attempt,
      // call not cancelled); the replica's keys are dropped unless it was only busy, or unless an
      // attestation replaced the set they were picked from meanwhile (it is the newer word on them:
      // a failure answered after it must not drop the keys it made and cause another).
      const mayResend = (code: string) => {
        if (attempt !== 0 || options.signal?.aborted) return false;
        if (code !== 'enclave_busy' && held.generation === (this.sets.get(model)?.generation ?? 0)) this.forget(held.replica.keyId);
        return true;
      };
      // Set once the stream holds the lease (it releases it when it is over); released here otherwise.
      // (A flag shared with the stream's release made that release a no-op: every streamed answer
      // stayed counted in flight and the replica choice drifted.)
      let handedOver = false;
      try {
        const nonce = randomBytes(NONCE_BYTES);
        // The request key and the answer's secret: expansions of one HKDF key.
        const { body, decoder } = await sealRequestWithDecoder(
          { version: this.o.protocolVersion, ...keys, nonce, timestamp: now() }, plaintext, this.o.maxBufferSize);
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
          const failure = control.failure(error, this.o.base, false);
          // No HTTP status at all (not a timeout, not a cancellation): another replica may answer.
          if (failure.code === 'transport_error' && mayResend(failure.code)) {
            held.release();
            continue;
          }
          throw failure;
        }
        const meta: ResponseMeta = { status: response.status, headers: passthroughHeaders(response.headers) };
        if (response.status !== 200) {
          const error = errorFromHttp(response.status, await boundedText(response), meta.headers);
          control.dispose();
          if (RETRY_ONCE.includes(error.code) && mayResend(error.code)) {
            held.release();
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
        // The stream holds the replica (in flight) until it is over; released there.
        const stream = new ChatCompletionStream({ response, decoder, control, release: held.release }, this.o.base);
        handedOver = true;
        return stream;
      } finally {
        if (!handedOver) held.release();
      }
    }
  }
}

/** A client for `options.baseUrl` (validated: invalid_request naming the bad option). */
export function createRvencClient(options: RvencClientOptions): RvencClient {
  return new RvencClient(options, true);
}

/** Keys without a client (no API key needed): verified attestation, then a fresh encapsulation. */
export function generateEncryptionKeys(options: Omit<RvencClientOptions, 'apiKey'> & { apiKey?: string; model?: string }): Promise<EncryptionKeys> {
  return new RvencClient({ ...options, apiKey: options.apiKey ?? '' }, false).generateEncryptionKeys({ model: options.model });
}
