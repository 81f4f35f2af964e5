// Issue 21 item 5 end to end: the official `openai` client streams through `rvenc proxy` while the
// enclave rotates its key about every 2 s (`--key-rotation-hours 0.0005`): no stream fails, and the
// proxy's DEKs (encapsulations to one enclave key) are re-made for the new keys, in its DEK store too.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import OpenAI from 'openai';

import { startStack, stopStack } from './stack.mjs';

const kRotationsToSee = 4;

async function rotations(enclaveUrl) {
  const health = await fetch(`${enclaveUrl}/healthz`);
  return (await health.json()).keyRotations;
}

// The enclave keyIds the DEK store holds keys for now.
function storedKeyIds(file) {
  try {
    return [...readFileSync(file, 'utf8').matchAll(/"keyId":"([0-9a-f]{16})"/g)].map((m) => m[1]);
  } catch {
    return [];
  }
}

describe('rvenc proxy across enclave key rotations', () => {
  let stack;
  let client;

  before(async () => {
    // About 85 tokens at 30 ms: every stream outlives a rotation period.
    stack = await startStack({ enclaveArgs: ['--key-rotation-hours', '0.0005', '--demo-delay-ms', '30'] });
    client = new OpenAI({ apiKey: stack.apiKey, baseURL: stack.baseURL, maxRetries: 0, timeout: 60_000 });
  });
  after(async () => {
    if (stack) await stopStack(stack);
  });

  test('streams keep working and the DEKs follow the new keys', async () => {
    const seen = new Set();
    let streams = 0;
    // Bounded generously for a loaded machine; the assertions are on outcomes.
    const guard = Date.now() + 120_000;
    while (await rotations(stack.enclave.url) < kRotationsToSee && Date.now() < guard) {
      const stream = await client.chat.completions.create({
        model: 'rvenc-demo', messages: [{ role: 'user', content: 'rotate' }], stream: true,
      });
      let finish = null;
      for await (const chunk of stream) finish = chunk.choices[0]?.finish_reason ?? finish;
      assert.equal(finish, 'stop', `stream ${streams}`);
      streams += 1;
      for (const keyId of storedKeyIds(stack.dekStore)) seen.add(keyId);
    }
    assert.ok(await rotations(stack.enclave.url) >= kRotationsToSee, 'the enclave did not rotate in time');
    assert.ok(seen.size >= 2, `the DEK store followed the rotations (${streams} streams, keyIds ${[...seen]})`);
    assert.match(stack.enclave.output(), /enclave key rotated/);
  });
});
