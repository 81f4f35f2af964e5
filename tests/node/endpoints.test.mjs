// End-to-end, issue 26: the official `openai` npm client, unchanged, calls embeddings.create and
// completions.create on `rvenc proxy` in front of a real gateway and enclave (docs/endpoints.md):
// against the demo engine, and against a fake OpenAI-compatible upstream that serves each endpoint
// natively (it records the path and body the enclave forwarded). Bad inputs get OpenAI errors.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, describe, test } from 'node:test';

import OpenAI, { BadRequestError } from 'openai';

import { startStack, stopStack } from './stack.mjs';

const kDemo = 'rvenc-demo';
const kNative = 'native-model';
const kDemoDimensions = 256;

// Serves POST /v1/embeddings (one vector [index, 0.25, 0.5] per input) and /v1/completions (SSE
// text_completion chunks, then usage and [DONE]); remembers the last path and body.
function startNativeUpstream() {
  const seen = { path: '', body: null };
  const server = createServer((request, response) => {
    let text = '';
    request.on('data', (data) => { text += data; });
    request.on('end', () => {
      seen.path = request.url;
      seen.body = JSON.parse(text);
      if (request.url === '/v1/embeddings') {
        const inputs = Array.isArray(seen.body.input) && typeof seen.body.input[0] !== 'number' ? seen.body.input : [seen.body.input];
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify({
          object: 'list', model: seen.body.model,
          data: inputs.map((_, index) => ({ object: 'embedding', index, embedding: [index, 0.25, 0.5] })),
          usage: { prompt_tokens: 9, total_tokens: 9 },
        }));
        return;
      }
      if (request.url === '/v1/completions') {
        response.writeHead(200, { 'content-type': 'text/event-stream' });
        const chunk = (choices, usage = null) => `data: ${JSON.stringify({
          id: 'cmpl-native', object: 'text_completion', created: 1, model: seen.body.model, choices, usage })}\n\n`;
        response.write(chunk([{ index: 0, text: 'native ', logprobs: null, finish_reason: null }]));
        response.write(chunk([{ index: 0, text: 'answer', logprobs: null, finish_reason: 'stop' }]));
        response.write(chunk([], { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 }));
        response.end('data: [DONE]\n\n');
        return;
      }
      response.writeHead(404, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: { message: 'not found', type: 'invalid_request_error' } }));
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ server, seen, url: `http://127.0.0.1:${server.address().port}/v1` }));
  });
}

const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

describe('embeddings and completions through rvenc proxy with the official openai client', () => {
  let stack;
  let native;
  let client;

  before(async () => {
    native = await startNativeUpstream();
    stack = await startStack({
      enclaveArgs: ['--upstream', `${kNative}=${native.url}`],
      testModels: [kDemo, 'dying-model', kNative],
    });
    client = new OpenAI({ apiKey: stack.apiKey, baseURL: stack.baseURL, maxRetries: 0, timeout: 60_000 });
  });
  after(async () => {
    if (stack) await stopStack(stack);
    if (native) await new Promise((r) => { native.server.closeAllConnections?.(); native.server.close(r); });
  });

  test('embeddings.create: several inputs, float and base64 give the same unit vectors', async () => {
    const input = ['first text', 'second text', 'third text'];
    const floats = await client.embeddings.create({ model: kDemo, input, encoding_format: 'float' });
    assert.equal(floats.object, 'list');
    assert.equal(floats.data.length, 3);
    for (const [i, item] of floats.data.entries()) {
      assert.equal(item.index, i);
      assert.equal(item.embedding.length, kDemoDimensions);
      assert.ok(Math.abs(norm(item.embedding) - 1) < 1e-5);
    }
    assert.notDeepEqual(floats.data[0].embedding, floats.data[1].embedding);
    assert.ok(floats.usage.prompt_tokens > 0);

    // Without encoding_format the client asks for base64 and decodes it itself.
    const decoded = await client.embeddings.create({ model: kDemo, input });
    for (const [i, item] of decoded.data.entries()) {
      assert.equal(item.embedding.length, kDemoDimensions);
      item.embedding.forEach((x, j) => assert.ok(Math.abs(x - floats.data[i].embedding[j]) < 1e-6));
    }
    // Asked for explicitly, base64 comes back as the string.
    const raw = await client.embeddings.create({ model: kDemo, input: 'first text', encoding_format: 'base64', dimensions: 8 });
    const bytes = Buffer.from(raw.data[0].embedding, 'base64');
    assert.equal(bytes.length, 8 * 4);
  });

  test('embeddings.create: a ~6 MB answer (1100 inputs x 256 floats) comes back whole', async () => {
    // Sealed as one event, its hex passed the gateway's 10 MiB event limit (a 502 before the
    // answers went in records: docs/endpoints.md, "Large answers").
    const input = Array.from({ length: 1100 }, (_, i) => `text number ${i}`);
    const list = await client.embeddings.create({ model: kDemo, input, encoding_format: 'float' });
    assert.equal(list.data.length, 1100);
    assert.equal(list.data[1099].index, 1099);
    assert.equal(list.data[1099].embedding.length, kDemoDimensions);
    assert.ok(JSON.stringify(list).length > 5_000_000);
  });

  test('completions.create: plain and streaming', async () => {
    const plain = await client.completions.create({ model: kDemo, prompt: 'Write a haiku', max_tokens: 40 });
    assert.equal(plain.object, 'text_completion');
    assert.ok(plain.choices[0].text.length > 0);
    assert.equal(plain.choices[0].finish_reason, 'stop');
    assert.equal(plain.usage.total_tokens, plain.usage.prompt_tokens + plain.usage.completion_tokens);

    const stream = await client.completions.create({ model: kDemo, prompt: 'Write a haiku', max_tokens: 4, stream: true });
    let text = '';
    let chunks = 0;
    let finish = null;
    for await (const chunk of stream) {
      assert.equal(chunk.object, 'text_completion');
      chunks += 1;
      text += chunk.choices[0]?.text ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.ok(chunks >= 4, `chunks: ${chunks}`);
    assert.ok(plain.choices[0].text.startsWith(text), `${text} / ${plain.choices[0].text}`);
    assert.equal(finish, 'length');
  });

  test('a native upstream gets each endpoint on its own path, without the marker', async () => {
    const embedded = await client.embeddings.create({ model: kNative, input: ['a', 'b'], encoding_format: 'float' });
    assert.equal(native.seen.path, '/v1/embeddings');
    assert.deepEqual(native.seen.body, { model: kNative, input: ['a', 'b'], encoding_format: 'float' });
    assert.deepEqual(embedded.data.map((d) => d.embedding), [[0, 0.25, 0.5], [1, 0.25, 0.5]]);
    assert.equal(embedded.usage.prompt_tokens, 9);

    const completion = await client.completions.create({ model: kNative, prompt: 'p', max_tokens: 3 });
    assert.equal(native.seen.path, '/v1/completions');
    assert.equal(native.seen.body.prompt, 'p');
    assert.equal(native.seen.body.max_tokens, 3);
    assert.equal(native.seen.body.stream, true);
    assert.equal(native.seen.body.rvenc_endpoint, undefined);
    assert.equal(completion.choices[0].text, 'native answer');
    assert.equal(completion.usage.completion_tokens, 2);
  });

  test('bad inputs per endpoint: OpenAI error shape, status 400, the member named', async () => {
    const cases = [
      [() => client.embeddings.create({ model: kDemo, input: Array.from({ length: 2049 }, () => 'x') }), /more than 2048/],
      [() => client.embeddings.create({ model: kDemo, input: 42 }), /input must be/],
      [() => client.embeddings.create({ model: kDemo, input: 'x', encoding_format: 'int8' }), /encoding_format/],
      [() => client.embeddings.create({ model: kDemo, input: 'x', dimensions: 100000 }), /dimensions/],
      [() => client.completions.create({ model: kDemo, prompt: { text: 'x' } }), /prompt must be/],
      [() => client.completions.create({ model: kDemo, prompt: 'x', tools: [] }), /unknown member "tools"/],
      [() => client.completions.create({ model: kDemo, prompt: 'x', max_tokens: -1 }), /max_tokens/],
    ];
    for (const [call, message] of cases) {
      await assert.rejects(call, (error) => {
        assert.ok(error instanceof BadRequestError, `${error}`);
        assert.equal(error.status, 400);
        assert.equal(error.code, 'invalid_inference');
        assert.equal(error.type, 'invalid_request_error');
        assert.match(error.message, message);
        return true;
      });
    }
    // What the proxy itself can tell: no input at all, streaming embeddings.
    await assert.rejects(client.embeddings.create({ model: kDemo }), (e) => e.status === 400 && /input/.test(e.message));
  });
});
