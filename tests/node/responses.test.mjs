// End-to-end: the official `openai` npm package's Responses API (client.responses.*) through
// `rvenc proxy` -> gateway -> enclave (issue 26, docs/responses.md). Three engines: the demo
// engine and a fake upstream serving only chat completions (both translated in the enclave), and
// a fake upstream serving /v1/responses natively (forwarded with store: false).
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, describe, test } from 'node:test';

import OpenAI, { AuthenticationError, BadRequestError, NotFoundError } from 'openai';

import { startStack, stopStack } from './stack.mjs';

const kDemoModel = 'rvenc-demo';
const kChatModel = 'chat-only-model';
const kNativeModel = 'native-responses-model';
const kWeatherTool = {
  type: 'function', name: 'get_weather', description: 'Weather of a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};

function sse(response, data, event) {
  response.write(`${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`);
}

// A model server; `routes` maps a path ending to a handler(body, response). Records each body.
function startUpstream(routes) {
  const upstream = { bodies: [] };
  upstream.server = createServer((request, response) => {
    let text = '';
    request.on('data', (data) => { text += data; });
    request.on('end', () => {
      const route = Object.keys(routes).find((path) => request.url.endsWith(path));
      if (request.method !== 'POST' || !route) {
        response.writeHead(404, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ error: { message: 'not found', type: 'invalid_request_error' } }));
        return;
      }
      const body = JSON.parse(text);
      upstream.bodies.push(body);
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      routes[route](body, response);
    });
  });
  return new Promise((resolve) => {
    upstream.server.listen(0, '127.0.0.1', () => {
      upstream.url = `http://127.0.0.1:${upstream.server.address().port}/v1`;
      resolve(upstream);
    });
  });
}

// Chat completions only: a get_weather call when tools are offered and no tool answered yet,
// else a short text.
function chatOnly(body, response) {
  const chunk = (delta, finish = null, usage = null) => ({
    id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 1, model: body.model,
    choices: usage ? [] : [{ index: 0, delta, finish_reason: finish }], usage,
  });
  const answered = body.messages.some((m) => m.role === 'tool');
  if (body.tools && !answered) {
    sse(response, chunk({ role: 'assistant', tool_calls: [{ index: 0, id: 'call_fake1', type: 'function',
      function: { name: body.tools[0].function.name, arguments: '' } }] }));
    sse(response, chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }));
    sse(response, chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }, 'tool_calls'));
  } else {
    for (const word of ['It ', 'is ', 'sunny.']) sse(response, chunk({ content: word }));
    sse(response, chunk({}, 'stop'));
  }
  sse(response, chunk(null, null, { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 }));
  response.end('data: [DONE]\n\n');
}

// /v1/responses natively, in OpenAI's event form.
function nativeResponses(body, response) {
  let n = 0;
  const base = { id: 'resp_native1', object: 'response', created_at: 1, model: body.model, output: [], usage: null };
  const send = (type, fields) => sse(response, { type, sequence_number: n++, ...fields }, type);
  const item = { type: 'message', id: 'msg_native1', status: 'in_progress', role: 'assistant', content: [] };
  const part = { type: 'output_text', text: 'native hello', annotations: [] };
  send('response.created', { response: { ...base, status: 'in_progress' } });
  send('response.in_progress', { response: { ...base, status: 'in_progress' } });
  send('response.output_item.added', { output_index: 0, item });
  send('response.content_part.added', { item_id: item.id, output_index: 0, content_index: 0, part: { ...part, text: '' } });
  for (const delta of ['native ', 'hello'])
    send('response.output_text.delta', { item_id: item.id, output_index: 0, content_index: 0, delta, logprobs: [] });
  send('response.output_text.done', { item_id: item.id, output_index: 0, content_index: 0, text: part.text, logprobs: [] });
  send('response.content_part.done', { item_id: item.id, output_index: 0, content_index: 0, part });
  const done = { ...item, status: 'completed', content: [part] };
  send('response.output_item.done', { output_index: 0, item: done });
  send('response.completed', { response: { ...base, status: 'completed', output: [done],
    usage: { input_tokens: 5, output_tokens: 2, total_tokens: 7 } } });
  response.end();
}

describe('Responses API through rvenc proxy with the official openai client', () => {
  let stack;
  let client;
  let chatUpstream;
  let nativeUpstream;

  before(async () => {
    chatUpstream = await startUpstream({ '/chat/completions': chatOnly });
    nativeUpstream = await startUpstream({ '/responses': nativeResponses });
    stack = await startStack({
      enclaveArgs: ['--upstream', `${kChatModel}=${chatUpstream.url}`, '--upstream', `${kNativeModel}=${nativeUpstream.url}`,
        '--upstream-responses', kNativeModel],
      testModels: [kDemoModel, 'dying-model', kChatModel, kNativeModel],
    });
    client = new OpenAI({ apiKey: stack.apiKey, baseURL: stack.baseURL, maxRetries: 0, timeout: 60_000 });
  });
  after(async () => {
    if (stack) await stopStack(stack);
    for (const upstream of [chatUpstream, nativeUpstream])
      if (upstream) await new Promise((r) => { upstream.server.closeAllConnections?.(); upstream.server.close(r); });
  });

  test('plain: the demo engine answers through translation', async () => {
    const response = await client.responses.create({ model: kDemoModel, input: 'Say hello', instructions: 'Be brief.' });
    assert.equal(response.object, 'response');
    assert.match(response.id, /^resp_[0-9a-f]{32}$/);
    assert.equal(response.status, 'completed');
    assert.equal(response.instructions, 'Be brief.');
    // The demo engine reasons first: a reasoning item, then the message.
    assert.deepEqual(response.output.map((item) => item.type), ['reasoning', 'message']);
    assert.ok(response.output[0].content[0].text.length > 0);
    assert.ok(response.output_text.length > 0);
    assert.ok(response.usage.input_tokens > 0 && response.usage.output_tokens > 0);
    assert.equal(response.usage.total_tokens, response.usage.input_tokens + response.usage.output_tokens);
  });

  test('streaming: the documented event sequence, and the SDK accumulates it', async () => {
    const stream = await client.responses.create({ model: kDemoModel, input: 'Stream to me', stream: true });
    const types = [];
    let text = '';
    let sequence = 0;
    let completed;
    for await (const event of stream) {
      assert.equal(event.sequence_number, sequence++);
      types.push(event.type);
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed') completed = event.response;
    }
    assert.deepEqual(types.slice(0, 5), ['response.created', 'response.in_progress', 'response.output_item.added',
      'response.content_part.added', 'response.reasoning_text.delta']);
    assert.ok(types.includes('response.output_text.done'));
    assert.equal(types.at(-1), 'response.completed');
    assert.ok(text.length > 0);
    assert.equal(completed.output.at(-1).content[0].text, text);

    const helper = client.responses.stream({ model: kDemoModel, input: 'Stream again' });
    const final = await helper.finalResponse();
    assert.equal(final.status, 'completed');
    assert.ok(final.output_text.length > 0);
  });

  test('function call through a chat-only upstream, then previous_response_id from local state', async () => {
    const first = await client.responses.create({ model: kChatModel, input: 'Weather in Paris?', tools: [kWeatherTool] });
    const call = first.output.find((item) => item.type === 'function_call');
    assert.ok(call, JSON.stringify(first.output));
    assert.equal(call.name, 'get_weather');
    assert.equal(call.call_id, 'call_fake1');
    assert.equal(call.arguments, '{"city":"Paris"}');
    assert.equal(first.usage.input_tokens, 11);
    const sent = chatUpstream.bodies.at(-1);
    assert.deepEqual(sent.tools[0], { type: 'function', function: { name: 'get_weather', description: 'Weather of a city',
      parameters: kWeatherTool.parameters } });
    assert.equal(sent.messages[0].content, 'Weather in Paris?');

    const second = await client.responses.create({
      model: kChatModel, previous_response_id: first.id, tools: [kWeatherTool],
      input: [{ type: 'function_call_output', call_id: call.call_id, output: '18C and sunny' }],
    });
    assert.equal(second.output_text, 'It is sunny.');
    assert.equal(second.previous_response_id, first.id);
    const followUp = chatUpstream.bodies.at(-1);
    // The conversation, expanded by the proxy: nothing of it is kept by the operator or the engine.
    assert.deepEqual(followUp.messages.map((m) => m.role), ['user', 'assistant', 'tool']);
    assert.equal(followUp.messages[1].tool_calls[0].id, 'call_fake1');
    assert.equal(followUp.messages[2].content, '18C and sunny');
    assert.equal('previous_response_id' in followUp, false);
  });

  test('streaming function call events', async () => {
    const stream = await client.responses.create({ model: kChatModel, input: 'Weather?', tools: [kWeatherTool], stream: true });
    let args = '';
    let done;
    let added;
    for await (const event of stream) {
      if (event.type === 'response.output_item.added') added = event.item;
      if (event.type === 'response.function_call_arguments.delta') args += event.delta;
      if (event.type === 'response.function_call_arguments.done') done = event;
    }
    assert.equal(added.type, 'function_call');
    assert.equal(added.name, 'get_weather');
    assert.equal(args, '{"city":"Paris"}');
    assert.equal(done.arguments, args);
  });

  test('an upstream serving /v1/responses natively gets the request forwarded with store false', async () => {
    const response = await client.responses.create({ model: kNativeModel, input: 'hi', store: true });
    assert.equal(response.output_text, 'native hello');
    assert.equal(response.usage.output_tokens, 2);
    assert.equal(response.store, true);  // stored by the proxy, locally
    const sent = nativeUpstream.bodies.at(-1);
    assert.equal(sent.store, false);
    assert.equal(sent.stream, true);
    assert.equal('rvenc_endpoint' in sent, false);
    assert.equal(sent.input[0].content, 'hi');

    const stream = await client.responses.create({ model: kNativeModel, input: 'hi', stream: true });
    let text = '';
    for await (const event of stream) if (event.type === 'response.output_text.delta') text += event.delta;
    assert.equal(text, 'native hello');
  });

  test('retrieve and delete a stored response from the proxy', async () => {
    const response = await client.responses.create({ model: kDemoModel, input: 'Keep me' });
    const again = await client.responses.retrieve(response.id);
    assert.equal(again.id, response.id);
    assert.equal(again.output_text, response.output_text);
    await client.responses.delete(response.id);
    await assert.rejects(client.responses.retrieve(response.id), NotFoundError);
    const unstored = await client.responses.create({ model: kDemoModel, input: 'Forget me', store: false });
    assert.equal(unstored.store, false);
    await assert.rejects(client.responses.retrieve(unstored.id), NotFoundError);
    // Another key never sees this key's responses.
    const kept = await client.responses.create({ model: kDemoModel, input: 'Mine' });
    const other = new OpenAI({ apiKey: 'sk_test_someone_else_0000', baseURL: stack.baseURL, maxRetries: 0 });
    await assert.rejects(other.responses.retrieve(kept.id), NotFoundError);
  });

  test('bad inputs: the OpenAI error shape and status', async () => {
    const cases = [
      [{ model: kDemoModel, input: 'x', tools: [{ type: 'web_search' }] }, /tools\[0\]\.type "web_search"/],
      [{ model: kDemoModel, input: 42 }, /input must be/],
      [{ model: kDemoModel, input: 'x', background: true }, /background/],
      [{ model: kDemoModel, input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'f' }] }] }, /input\[0\]\.content\[0\]\.type/],
      [{ model: kDemoModel, input: 'x', previous_response_id: 'resp_unknown' }, /previous_response_id/],
      [{ model: kDemoModel, input: 'x', temperature: 'hot' }, /temperature/],
    ];
    for (const [body, message] of cases) {
      const error = await client.responses.create(body).then(() => null, (e) => e);
      assert.ok(error instanceof BadRequestError, `${JSON.stringify(body)}: ${error}`);
      assert.equal(error.status, 400);
      assert.match(error.message, message);
      assert.equal(typeof error.error?.message, 'string');
      assert.ok('type' in error.error && 'code' in error.error && 'param' in error.error, JSON.stringify(error.error));
    }
    const stranger = new OpenAI({ apiKey: 'sk_test_not_a_key_of_this_gateway', baseURL: stack.baseURL, maxRetries: 0 });
    await assert.rejects(stranger.responses.create({ model: kDemoModel, input: 'x' }), AuthenticationError);
  });
});
