// client.completions, client.embeddings and client.responses (issue 26, docs/endpoints.md, docs/responses.md) against a live `rvenc up`
// stack through the man-in-the-middle: OpenAI shapes back, the endpoint and the input never on the
// wire in the clear, and the enclave's refusals as APIError with the member named.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import createRvencClient, { APIError } from '../dist/index.js';
import { startMitm, startUp, stopUp } from './stack.mjs';

let stack;
let mitm;
const SECRET = 'embed-this-secret-4471';

before(async () => {
  stack = await startUp();
  mitm = await startMitm(stack.gatewayUrl);
});

after(async () => {
  await mitm?.close();
  await stopUp(stack);
});

const client = () => createRvencClient({ apiKey: stack.apiKey, baseUrl: mitm.url, platformPublicKey: stack.platformPublicKey });

test('embeddings.create: one list of unit vectors, deterministic; nothing readable on the wire', async () => {
  mitm.mode = 'pass';
  mitm.bodies.length = 0;
  const c = client();
  const list = await c.embeddings.create({ model: 'rvenc-demo', input: [SECRET, 'other'], dimensions: 16 });
  assert.equal(list.object, 'list');
  assert.equal(list.data.length, 2);
  const v = list.data[0].embedding;
  assert.equal(v.length, 16);
  assert.ok(Math.abs(Math.sqrt(v.reduce((s, x) => s + x * x, 0)) - 1) < 1e-5);
  const again = await c.embeddings.create({ model: 'rvenc-demo', input: SECRET, dimensions: 16, encoding_format: 'base64' });
  const bytes = Buffer.from(again.data[0].embedding, 'base64');
  const floats = new Float32Array(bytes.buffer, bytes.byteOffset, 16);
  floats.forEach((x, i) => assert.ok(Math.abs(x - v[i]) < 1e-6));
  for (const body of mitm.bodies) {
    assert.ok(!body.includes('embed-this-secret'), 'no plaintext input on the wire');
    assert.ok(!body.includes('embeddings'), 'the endpoint is not on the wire');
  }
});

test('embeddings.create: a ~6 MB answer arrives in records and joins into the list', async () => {
  // Sealed as one event its hex would pass the gateway's 10 MiB event limit; in 32 KiB records it
  // does not (docs/endpoints.md, "Large answers").
  mitm.mode = 'pass';
  const input = Array.from({ length: 1100 }, (_, i) => `text number ${i}`);
  const list = await client().embeddings.create({ model: 'rvenc-demo', input, dimensions: 256 });
  assert.equal(list.data.length, 1100);
  assert.equal(list.data[1099].index, 1099);
  assert.equal(list.data[1099].embedding.length, 256);
  assert.ok(JSON.stringify(list).length > 5_000_000);
});

test('completions.create: assembled text_completion and a stream of chunks', async () => {
  mitm.mode = 'pass';
  const c = client();
  const completion = await c.completions.create({ model: 'rvenc-demo', prompt: 'Once upon', max_tokens: 5 });
  assert.equal(completion.object, 'text_completion');
  assert.ok(completion.choices[0].text.length > 0);
  assert.equal(completion.choices[0].finish_reason, 'length');
  assert.equal(completion.usage.completion_tokens, 5);
  const stream = await c.completions.create({ model: 'rvenc-demo', prompt: 'Once upon', max_tokens: 5, stream: true });
  let text = '';
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'text_completion');
    text += chunk.choices[0]?.text ?? '';
  }
  assert.equal(text, completion.choices[0].text);
});

test('bad input: APIError 400 invalid_inference naming the member', async () => {
  mitm.mode = 'pass';
  await assert.rejects(client().embeddings.create({ model: 'rvenc-demo', input: 'x', encoding_format: 'int8' }), (e) => {
    assert.ok(e instanceof APIError);
    assert.equal(e.status, 400);
    assert.equal(e.code, 'invalid_inference');
    assert.match(e.message, /encoding_format/);
    return true;
  });
});

test('responses.create: the final response object, and the event stream (rvenc_endpoint "responses")', async () => {
  mitm.mode = 'pass';
  mitm.bodies.length = 0;
  const c = client();
  const response = await c.responses.create({ model: 'rvenc-demo', input: SECRET, max_output_tokens: 2000 });
  assert.equal(response.object, 'response');
  assert.equal(response.status, 'completed');
  assert.ok(response.usage.input_tokens > 0 && response.usage.output_tokens > 0);
  const events = [];
  for await (const event of await c.responses.create({ model: 'rvenc-demo', input: 'hi', stream: true })) events.push(event.type);
  assert.equal(events[0], 'response.created');
  assert.ok(['response.completed', 'response.incomplete'].includes(events.at(-1)));
  for (const body of mitm.bodies) assert.ok(!body.includes('embed-this-secret'), 'no plaintext input on the wire');
  await assert.rejects(c.responses.create({ model: 'rvenc-demo', input: 'x', background: true }),
    (e) => e instanceof APIError && e.status === 400 && /background/.test(e.message));
});
