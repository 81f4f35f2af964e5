// The SDK against a live stack with two enclaves (`rvenc up --enclaves 2`, see stack.mjs): the
// client attests both replicas of the model, and two requests in flight at once land one on each
// enclave (their keyIds, read from each enclave's /healthz), both answered. Skipped only when the
// rvenc binary predates `up --enclaves`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import createRvencClient from '../dist/index.js';
import { rvencBinary, startMitm, startUp, stopUp } from './stack.mjs';

const help = spawnSync(rvencBinary, ['up', '--help'], { encoding: 'utf8' });
const supported = `${help.stdout}${help.stderr}`.includes('--enclaves');
let stack;
let mitm;

before(async () => {
  if (!supported) return;
  stack = await startUp(['--enclaves', '2']);
  mitm = await startMitm(stack.gatewayUrl);
});

after(async () => {
  await mitm?.close();
  await stopUp(stack);
});

test('two enclaves: two requests in flight land one on each, both answered', { skip: !supported && `${rvencBinary} has no \`up --enclaves\`` }, async () => {
  assert.equal(stack.enclaveUrls.length, 2);
  const enclaveKeyIds = await Promise.all(stack.enclaveUrls.map(async (url) => (await (await fetch(`${url}/healthz`)).json()).keyId));
  assert.equal(new Set(enclaveKeyIds).size, 2);
  const c = createRvencClient({ apiKey: stack.apiKey, baseUrl: mitm.url, platformPublicKey: stack.platformPublicKey });
  const { data } = await c.models();
  const model = data[0].id;
  mitm.mode = 'pass';
  mitm.bodies.length = 0;
  const messages = [{ role: 'user', content: 'hello' }];
  // Both heads first: the second request sees the first in flight and takes the other replica.
  const first = await c.chat.completions.create({ model, messages, max_tokens: 20, stream: true });
  const second = await c.chat.completions.create({ model, messages, max_tokens: 20, stream: true });
  assert.deepEqual(c.replicaKeys(model).map((k) => k.keyId).sort(), [...enclaveKeyIds].sort());
  for (const stream of [first, second]) {
    let text = '';
    let finish = null;
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta ?? {};
      text += (delta.content ?? '') + (delta.reasoning_content ?? '');
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.ok(text.length > 0);
    assert.equal(finish, 'length');
  }
  const used = mitm.bodies.map((b) => JSON.parse(b)).filter((b) => b.encryptedInference).map((b) => b.keyId);
  assert.equal(used.length, 2);
  assert.deepEqual([...used].sort(), [...enclaveKeyIds].sort());
});
