// OpenAI chat-completion shapes the SDK takes and returns (the subset rvenc carries; unknown fields
// pass through untouched inside the encrypted request and chunks).

export interface ChatCompletionMessageParam {
  role: 'system' | 'user' | 'assistant' | 'tool' | 'developer';
  content: string | null | Array<Record<string, unknown>>;
  name?: string;
  tool_call_id?: string;
  tool_calls?: ChatCompletionMessageToolCall[];
  [key: string]: unknown;
}

export interface ChatCompletionCreateParams {
  model: string;
  messages: ChatCompletionMessageParam[];
  stream?: boolean | null;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  stop?: string | string[] | null;
  tools?: Array<Record<string, unknown>>;
  tool_choice?: unknown;
  [key: string]: unknown;
}

export interface ChatCompletionMessageToolCall {
  index?: number;
  id: string;
  type: string;
  function: { name: string; arguments: string };
}

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  system_fingerprint?: string;
  choices: Array<{
    index: number;
    message: {
      role: string;
      content: string | null;
      reasoning_content?: string;
      tool_calls?: ChatCompletionMessageToolCall[];
    };
    finish_reason: string | null;
    logprobs: null;
  }>;
  usage: CompletionUsage | null;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  system_fingerprint?: string;
  choices: Array<{
    index: number;
    delta: {
      role?: string;
      content?: string | null;
      reasoning_content?: string | null;
      tool_calls?: Array<Partial<ChatCompletionMessageToolCall> & { index: number }> | null;
    };
    logprobs?: unknown;
    finish_reason: string | null;
  }>;
  usage?: CompletionUsage | null;
}

// Legacy completions and embeddings (docs/endpoints.md), OpenAI's shapes.

export interface CompletionCreateParams {
  model: string;
  prompt: string | string[] | number[] | number[][];
  stream?: boolean | null;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  stop?: string | string[] | null;
  echo?: boolean | null;
  logprobs?: number | null;
  [key: string]: unknown;
}

export interface CompletionChoice {
  index: number;
  text: string;
  logprobs: unknown;
  finish_reason: string | null;
}

/** A non-streaming answer, and (with `stream: true`) each chunk: object "text_completion". */
export interface Completion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  system_fingerprint?: string;
  choices: CompletionChoice[];
  usage?: CompletionUsage | null;
}

export interface EmbeddingCreateParams {
  model: string;
  input: string | string[] | number[] | number[][];
  encoding_format?: 'float' | 'base64';
  dimensions?: number;
  user?: string;
}

export interface Embedding {
  object: 'embedding';
  index: number;
  /** Floats, or with encoding_format "base64" the little-endian float32 bytes in base64. */
  embedding: number[] | string;
}

export interface CreateEmbeddingResponse {
  object: 'list';
  data: Embedding[];
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

// --- The Responses API (docs/responses.md): the OpenAI shapes, loosely typed ------------------

export interface ResponseCreateParams {
  model: string;
  input: string | Array<Record<string, unknown>>;
  stream?: boolean | null;
  [key: string]: unknown;
}

export interface ResponseUsage {
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
  [key: string]: unknown;
}

export interface ResponseObject {
  id: string;
  object: 'response';
  created_at: number;
  status: 'completed' | 'incomplete' | 'failed' | 'in_progress';
  model: string;
  output: Array<Record<string, unknown>>;
  usage: ResponseUsage | null;
  [key: string]: unknown;
}

export interface ResponseStreamEvent {
  type: string;
  sequence_number: number;
  response?: ResponseObject;
  [key: string]: unknown;
}
