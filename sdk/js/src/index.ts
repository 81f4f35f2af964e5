// rvenc: end-to-end encrypted chat completions through an rvenc gateway (Node >= 18 and browsers).
//
//   import createRvencClient from 'rvenc';
//   const client = createRvencClient({ apiKey, baseUrl, platformPublicKey });
//   const answer = await client.chat.completions.create({ model, messages });
//
// Design: the public surface only; the deterministic seams the tests use (fixed nonces, seeds,
// clocks) live in ./internal.js, which the package does not export.
import { createRvencClient } from './client.js';

export { createRvencClient, generateEncryptionKeys, RvencClient, ChatCompletionStream } from './client.js';
export { CompletionStream, Embeddings, TextCompletions } from './endpoints.js';
export type { EncryptionKeys, KeyRequestOptions, RvencClientOptions, RequestOptions, ResponseMeta, VerifiedAttestation } from './client.js';
export type { AttestationPolicy } from './attestation.js';
export type { ProtocolVersion } from './protocol.js';
export {
  RvencError, APIError, AttestationError, StreamError, EnclaveError, ConnectionError, ERROR_CODES,
} from './errors.js';
export type { ErrorCode } from './errors.js';
export type * from './types.js';
export default createRvencClient;
