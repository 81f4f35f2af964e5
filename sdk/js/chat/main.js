// The chat page's script (bundled with the SDK by scripts/bundle.mjs into dist/chat/chat.js).
// Everything secret happens here, in the browser: the API key (sessionStorage, never in a URL),
// the attestation check, the encryption of each request and the decryption of the stream.
import createRvencClient from '../src/index.ts';

const KEY_STORAGE = 'rvenc.apiKey';
const $ = (id) => document.getElementById(id);

const state = { config: null, client: null, messages: [], running: null };

const HINTS = {
  invalid_api_key: 'The gateway refused the API key. Check it (sk_test_… / sk_live_…) and connect again.',
  key_revoked: 'This API key was revoked.',
  rate_limit_exceeded: 'Rate limited by the gateway.',
  replay_quota_exceeded: 'Too many requests in flight for this key; retry shortly.',
  attestation_failed: 'The enclave\'s attestation did not verify: nothing was sent.',
  tampered_stream: 'The answer was changed on the way (it did not authenticate): it was discarded.',
  truncated_stream: 'The answer was cut off before its authenticated end.',
  timeout: 'The gateway did not answer in time.',
  transport_error: 'Cannot reach the gateway.',
  model_not_found: 'No enclave serves this model.',
};

function showError(error) {
  const code = error?.code ?? 'internal_error';
  const retry = error?.headers?.['retry-after'];
  const hint = HINTS[code] ?? 'The request failed.';
  $('error').textContent = `${hint}${retry ? ` Retry after ${retry} s.` : ''} (${code}${error?.status ? `, HTTP ${error.status}` : ''}: ${error?.message ?? error})`;
  $('error').dataset.code = code;
  $('error').hidden = false;
}

function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
  delete $('error').dataset.code;
}

const status = (text) => { $('status').textContent = text; };

function addMessage(role, text) {
  const div = document.createElement('div');
  div.className = `message ${role}`;
  div.textContent = text;
  $('messages').appendChild(div);
  return div;
}

function showAttestation(att) {
  $('att-provider').textContent = att.provider;
  $('att-measurement').textContent = att.measurement;
  $('att-keyid').textContent = att.keyId;
  $('att-notafter').textContent = new Date(att.notAfter * 1000).toISOString();
  $('attestation').hidden = false;
}

async function connect(apiKey) {
  clearError();
  status('verifying the enclave…');
  const c = state.config;
  const client = createRvencClient({
    apiKey,
    baseUrl: c.gatewayUrl,
    platformPublicKey: c.platformPublicKey ?? undefined,
    attestationPolicy: c.measurement ? { expectedMeasurement: c.measurement } : undefined,
    protocolVersion: c.protocolVersion ?? 3,
  });
  await client.generateEncryptionKeys();
  showAttestation(client.attestation);
  status('loading models…');
  const models = await client.models();
  const select = $('model');
  select.replaceChildren(...models.data.map((m) => new Option(m.id, m.id)));
  state.client = client;
  $('chat').hidden = false;
  status('ready');
}

async function send(text) {
  clearError();
  state.messages.push({ role: 'user', content: text });
  addMessage('user', text);
  const bubble = addMessage('assistant', '');
  const thinking = document.createElement('div');
  thinking.className = 'reasoning';
  const content = document.createElement('div');
  content.className = 'content';
  bubble.append(thinking, content);
  const controller = new AbortController();
  state.running = controller;
  $('send').disabled = true;
  $('stop').disabled = false;
  status('answering…');
  let answer = '';
  try {
    const stream = await state.client.chat.completions.create(
      { model: $('model').value, messages: state.messages, stream: true }, { signal: controller.signal });
    for await (const chunk of stream) {
      const delta = chunk.choices?.[0]?.delta ?? {};
      if (delta.reasoning_content) thinking.textContent += delta.reasoning_content;
      if (delta.content) {
        answer += delta.content;
        content.textContent = answer;
      }
    }
    state.messages.push({ role: 'assistant', content: answer });
    bubble.dataset.done = 'true';
    status('done');
  } catch (error) {
    bubble.classList.add('failed');
    state.messages.pop();
    showError(error);
    status('failed');
  } finally {
    state.running = null;
    $('send').disabled = false;
    $('stop').disabled = true;
  }
}

async function main() {
  try {
    const response = await fetch('/chat/config.json', { headers: { accept: 'application/json' } });
    if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
    state.config = await response.json();
  } catch (error) {
    showError({ code: 'transport_error', message: `cannot load the page settings: ${error.message}` });
    return;
  }
  $('key-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = $('api-key').value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORAGE, key);
    $('api-key').value = '';
    try {
      await connect(key);
    } catch (error) {
      showError(error);
      status('not connected');
    }
  });
  $('forget-key').addEventListener('click', () => {
    sessionStorage.removeItem(KEY_STORAGE);
    state.client = null;
    $('chat').hidden = true;
    $('attestation').hidden = true;
    status('key forgotten');
  });
  $('prompt-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const text = $('prompt').value.trim();
    if (!text || !state.client || state.running) return;
    $('prompt').value = '';
    send(text);
  });
  $('prompt').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey) {
      event.preventDefault();
      $('prompt-form').requestSubmit();
    }
  });
  $('stop').addEventListener('click', () => state.running?.abort());
  $('reset').addEventListener('click', () => {
    state.messages = [];
    $('messages').replaceChildren();
    clearError();
  });
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) {
    try {
      await connect(saved);
    } catch (error) {
      showError(error);
      status('not connected');
    }
  } else {
    status('enter your API key');
  }
}

main();
