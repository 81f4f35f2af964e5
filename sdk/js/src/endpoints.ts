// client.completions and client.embeddings: OpenAI's legacy completions and embeddings over the
// same encrypted path as chat (docs/endpoints.md). The request names its endpoint inside the
// ciphertext ("rvenc_endpoint"); the answer is text_completion chunks (assembled here for a
// non-streaming call, as the C++ SDK's TextCompletionAssembler) or one embeddings `list` object.
import type { ChatCompletionStream, RequestOptions, RvencClient } from './client.js';
import { RvencError } from './errors.js';
import type { Completion, CompletionChoice, CompletionCreateParams, CreateEmbeddingResponse, EmbeddingCreateParams } from './types.js';

const MAX_CHOICES = 128;

/** Something that opens an encrypted call for a request body (RvencClient.openChat). */
type Opener = Pick<RvencClient, 'openChat'>;

/** The request as sealed: its endpoint named inside the ciphertext (also client.responses). */
export function marked(params: object, endpoint: 'completions' | 'embeddings' | 'responses'): Record<string, unknown> {
  if (!params || typeof params !== 'object' || Array.isArray(params)) {
    throw new RvencError('invalid_request', `create() needs the ${endpoint} request object`);
  }
  return { ...(params as Record<string, unknown>), rvenc_endpoint: endpoint };
}

/** The text_completion chunks of a streaming call, as they are authenticated. Iterate once. */
export class CompletionStream implements AsyncIterable<Completion> {
  /** Aborts the call (closes the connection; the enclave stops generating). */
  readonly controller: AbortController;

  constructor(private readonly inner: ChatCompletionStream) {
    this.controller = inner.controller;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Completion> {
    for await (const chunk of this.inner) yield chunk as unknown as Completion;
  }
}

/** Text concatenated per choice index; the last finish_reason and usage kept. */
export class TextCompletionAssembler {
  private id = '';
  private model = '';
  private created = 0;
  private fingerprint = '';
  private usage: Completion['usage'] = null;
  private readonly choices = new Map<number, CompletionChoice>();

  add(chunk: Completion | Record<string, unknown>): void {
    const c = chunk as Record<string, unknown>;
    if (!this.id && typeof c.id === 'string') this.id = c.id;
    if (!this.model && typeof c.model === 'string') this.model = c.model;
    if (typeof c.system_fingerprint === 'string' && c.system_fingerprint) this.fingerprint = c.system_fingerprint;
    if (this.created === 0 && Number.isInteger(c.created)) this.created = c.created as number;
    if (c.usage && typeof c.usage === 'object') this.usage = c.usage as Completion['usage'];
    if (!Array.isArray(c.choices)) return;
    for (const raw of c.choices) {
      if (!raw || typeof raw !== 'object') continue;
      const o = raw as Record<string, unknown>;
      const index = Number.isInteger(o.index) ? (o.index as number) : 0;
      if (index < 0 || index >= MAX_CHOICES) continue;
      let choice = this.choices.get(index);
      if (!choice) {
        choice = { index, text: '', logprobs: null, finish_reason: null };
        this.choices.set(index, choice);
      }
      if (typeof o.text === 'string') choice.text += o.text;
      if (o.finish_reason !== null && o.finish_reason !== undefined) choice.finish_reason = o.finish_reason as string;
      if (o.logprobs !== null && o.logprobs !== undefined) choice.logprobs = o.logprobs;
    }
  }

  completion(): Completion {
    const out: Completion = {
      id: this.id, object: 'text_completion', created: this.created, model: this.model,
      choices: [...this.choices.keys()].sort((a, b) => a - b).map((i) => this.choices.get(i)!),
      usage: this.usage,
    };
    if (this.fingerprint) out.system_fingerprint = this.fingerprint;
    return out;
  }
}

/** client.completions */
export class TextCompletions {
  constructor(private readonly client: Opener) {}

  create(params: CompletionCreateParams & { stream: true }, options?: RequestOptions): Promise<CompletionStream>;
  create(params: CompletionCreateParams & { stream?: false | null }, options?: RequestOptions): Promise<Completion>;
  create(params: CompletionCreateParams, options?: RequestOptions): Promise<Completion | CompletionStream>;
  async create(params: CompletionCreateParams, options: RequestOptions = {}): Promise<Completion | CompletionStream> {
    const body = marked(params, 'completions');
    const stream = new CompletionStream(await this.client.openChat(body as never, options));
    if (params.stream) return stream;
    const assembler = new TextCompletionAssembler();
    for await (const chunk of stream) assembler.add(chunk);
    return assembler.completion();
  }
}

/** client.embeddings */
export class Embeddings {
  constructor(private readonly client: Opener) {}

  /** The OpenAI `list` object: the enclave's one chunk (one event, or records joined: docs/endpoints.md). */
  async create(params: EmbeddingCreateParams, options: RequestOptions = {}): Promise<CreateEmbeddingResponse> {
    const body = marked(params, 'embeddings');
    const stream = await this.client.openChat(body as never, options);
    let list: CreateEmbeddingResponse | null = null;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks += 1;
      list = chunk as unknown as CreateEmbeddingResponse;
    }
    if (chunks !== 1 || !list) throw new RvencError('upstream_error', "the enclave's embeddings answer must be exactly one chunk");
    return list;
  }
}
