// End-to-end: the official `openai` npm package drives `rvenc proxy` in front of a real gateway
// and enclave (simulated attestation), all started by stack.mjs on 127.0.0.1.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import OpenAI, { APIError, AuthenticationError, NotFoundError, RateLimitError } from 'openai';

import { createKey, startProxy, startStack, stopStack } from './stack.mjs';

const kDemoModel = 'rvenc-demo';
const kMessages = [{ role: 'user', content: 'Say hello to the proxy test' }];

describe('rvenc proxy with the official openai client', () => {
  let stack;
  let client;

  before(async () => {
    stack = await startStack();
    client = new OpenAI({ apiKey: stack.apiKey, baseURL: stack.baseURL, maxRetries: 0, timeout: 60_000 });
  });
  after(async () => {
    if (stack) await stopStack(stack);
  });

  test('lists the gateway models', async () => {
    const ids = [];
    for await (const model of client.models.list()) ids.push(model.id);
    assert.ok(ids.includes(kDemoModel), `models: ${ids}`);
    assert.ok(ids.includes('dying-model'), `models: ${ids}`);
  });

  test('streams a completion chunk by chunk, ending with finish_reason', async () => {
    const stream = await client.chat.completions.create({ model: kDemoModel, messages: kMessages, stream: true });
    let content = '';
    let chunks = 0;
    let finish = null;
    for await (const chunk of stream) {
      assert.equal(chunk.object, 'chat.completion.chunk');
      assert.equal(chunk.usage, undefined, 'no usage without stream_options.include_usage');
      chunks += 1;
      content += chunk.choices[0]?.delta?.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.ok(chunks > 1, `expected several chunks, got ${chunks}`);
    assert.ok(content.length > 0);
    assert.equal(finish, 'stop');
  });

  test('stream_options.include_usage adds a final usage chunk', async () => {
    const stream = await client.chat.completions.create({
      model: kDemoModel, messages: kMessages, stream: true, stream_options: { include_usage: true },
    });
    let last;
    for await (const chunk of stream) last = chunk;
    assert.deepEqual(last.choices, []);
    assert.ok(last.usage.completion_tokens > 0);
    assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + last.usage.completion_tokens);
  });

  test('answers a non-streaming request with a chat.completion', async () => {
    const completion = await client.chat.completions.create({ model: kDemoModel, messages: kMessages });
    assert.equal(completion.object, 'chat.completion');
    assert.equal(completion.choices[0].message.role, 'assistant');
    assert.ok(completion.choices[0].message.content.length > 0);
    assert.equal(completion.choices[0].finish_reason, 'stop');
    assert.ok(completion.usage.total_tokens > 0);
  });

  test('serves 8 parallel requests', async () => {
    const results = await Promise.all(Array.from({ length: 8 }, async (_, i) => {
      const messages = [{ role: 'user', content: `parallel request ${i}` }];
      if (i % 2 === 0) return (await client.chat.completions.create({ model: kDemoModel, messages })).choices[0].message.content;
      let content = '';
      const stream = await client.chat.completions.create({ model: kDemoModel, messages, stream: true });
      for await (const chunk of stream) content += chunk.choices[0]?.delta?.content ?? '';
      return content;
    }));
    assert.equal(results.length, 8);
    for (const content of results) assert.ok(content.length > 0);
  });

  test('a bad API key raises AuthenticationError', async () => {
    const bad = new OpenAI({ apiKey: 'sk_test_notarealkeynotarealkeynotareal', baseURL: stack.baseURL, maxRetries: 0 });
    await assert.rejects(bad.chat.completions.create({ model: kDemoModel, messages: kMessages }), (error) => {
      assert.ok(error instanceof AuthenticationError, `got ${error?.constructor?.name}: ${error?.message}`);
      assert.equal(error.status, 401);
      return true;
    });
    // No key at all: a plain 401 OpenAI error body.
    const response = await fetch(`${stack.baseURL}/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: kDemoModel, messages: kMessages }),
    });
    assert.equal(response.status, 401);
    const body = await response.json();
    assert.equal(body.error.type, 'authentication_error');
    assert.equal(body.error.code, 'invalid_api_key');
  });

  test('an unknown model raises NotFoundError', async () => {
    await assert.rejects(client.chat.completions.create({ model: 'no-such-model', messages: kMessages }), (error) => {
      assert.ok(error instanceof NotFoundError, `got ${error?.constructor?.name}: ${error?.message}`);
      assert.equal(error.status, 404);
      assert.equal(error.code, 'model_not_found');
      return true;
    });
  });

  test('an upstream that dies mid-stream raises instead of ending quietly', async () => {
    const stream = await client.chat.completions.create({ model: 'dying-model', messages: kMessages, stream: true });
    let content = '';
    await assert.rejects(async () => {
      for await (const chunk of stream) content += chunk.choices[0]?.delta?.content ?? '';
    }, (error) => {
      assert.ok(error instanceof APIError, `got ${error?.constructor?.name}: ${error?.message}`);
      return true;
    });
    assert.equal(content, 'Hello there', 'the chunks before the failure were relayed');

    await assert.rejects(client.chat.completions.create({ model: 'dying-model', messages: kMessages }), (error) => {
      assert.ok(error instanceof APIError, `got ${error?.constructor?.name}: ${error?.message}`);
      assert.equal(error.status, 502);
      return true;
    });
  });

  test('the gateway rate limit raises RateLimitError with its headers', async () => {
    const limitedKey = createKey(stack, 'node-e2e-limited', ['--rpm', '1']);
    const limited = new OpenAI({ apiKey: limitedKey, baseURL: stack.baseURL, maxRetries: 0 });
    await limited.chat.completions.create({ model: kDemoModel, messages: kMessages });
    await assert.rejects(limited.chat.completions.create({ model: kDemoModel, messages: kMessages, stream: true }),
      (error) => {
        assert.ok(error instanceof RateLimitError, `got ${error?.constructor?.name}: ${error?.message}`);
        assert.equal(error.status, 429);
        assert.ok(Number(error.headers.get('retry-after')) > 0);
        assert.equal(error.headers.get('x-ratelimit-limit-requests'), '1');
        assert.equal(error.headers.get('x-ratelimit-remaining-requests'), '0');
        return true;
      });
  });

  test('keeps encryption keys in a private DEK store: reused after a restart, rotated after N requests', async () => {
    const storeKeys = () => JSON.parse(readFileSync(stack.dekStore, 'utf8')).keys;
    // Entries are indexed "<SHA-256 of the API key>:<keyId>:<model>" (one per replica of a model).
    const entry = (digest) => Object.entries(storeKeys())
      .find(([index]) => index.startsWith(`${digest}:`) && index.endsWith(`:${kDemoModel}`))?.[1];
    const digest = createHash('sha256').update(stack.apiKey).digest('hex');
    assert.equal(statSync(stack.dekStore).mode & 0o777, 0o600);
    assert.ok(!readFileSync(stack.dekStore, 'utf8').includes(stack.apiKey), 'the API key is never stored');
    assert.ok(entry(digest), 'the keys are indexed by the SHA-256 of the API key, the keyId and the model');
    const badDigest = createHash('sha256').update('sk_test_notarealkeynotarealkeynotareal').digest('hex');
    assert.equal(entry(badDigest), undefined, 'a refused key gets no stored keys');

    // A fresh key: one request stores its keys; a restarted proxy reuses them until they have
    // served --dek-max-requests requests, then makes new ones.
    const key = createKey(stack, 'node-e2e-dek');
    const keyDigest = createHash('sha256').update(key).digest('hex');
    const ask = () => new OpenAI({ apiKey: key, baseURL: stack.baseURL, maxRetries: 0 })
      .chat.completions.create({ model: kDemoModel, messages: kMessages });
    await ask();
    const first = entry(keyDigest);
    assert.equal(first.requests, 1);

    await startProxy(stack, ['--dek-max-requests', '3']);
    await ask();
    await ask();
    await startProxy(stack, ['--dek-max-requests', '3']);  // flushes the request count on exit
    assert.equal(entry(keyDigest).keys.cipherText, first.keys.cipherText, 'stored keys reused after a restart');
    assert.equal(entry(keyDigest).requests, 3);
    await ask();
    const rotated = entry(keyDigest);
    assert.notEqual(rotated.keys.cipherText, first.keys.cipherText, 'keys rotated after 3 requests');
    assert.equal(rotated.requests, 1);
    assert.equal(statSync(stack.dekStore).mode & 0o777, 0o600);
  });
});
