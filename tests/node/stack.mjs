// Starts real rvenc processes (enclave, gateway, proxy) on 127.0.0.1 port 0 for the end-to-end
// tests, and a tiny OpenAI-compatible upstream that dies mid-stream.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const rvencBinary = process.env.RVENC_BINARY ?? resolve(import.meta.dirname ?? '.', '../../build/rvenc');
const kStartTimeoutMs = 30_000;

// Spawns `rvenc args...` and resolves once it printed "listening on http://HOST:PORT".
export function startServer(name, args) {
  const child = spawn(rvencBinary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (data) => { output += data.toString(); };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not start within ${kStartTimeoutMs} ms:\n${output}`));
    }, kStartTimeoutMs);
    const check = () => {
      const match = output.match(/listening on (http:\/\/[^\s]+)/);
      if (match) {
        clearTimeout(timer);
        child.stdout.off('data', check);
        resolvePromise({ child, url: match[1], output: () => output });
      }
    };
    child.stdout.on('data', check);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? signal}) before listening:\n${output}`));
    });
  });
}

export function stopServer(server) {
  if (!server || server.child.exitCode !== null) return Promise.resolve();
  return new Promise((resolvePromise) => {
    const kill = setTimeout(() => server.child.kill('SIGKILL'), 10_000);
    server.child.once('exit', () => { clearTimeout(kill); resolvePromise(); });
    server.child.kill('SIGTERM');
  });
}

// An OpenAI-compatible model server whose stream sends two chunks, then destroys the socket.
export function startDyingUpstream() {
  const server = createServer((request, response) => {
    let body = '';
    request.on('data', (data) => { body += data; });
    request.on('end', () => {
      if (request.method !== 'POST' || !request.url.endsWith('/chat/completions')) {
        response.writeHead(404, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ error: { message: 'not found', type: 'invalid_request_error' } }));
        return;
      }
      response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const chunk = (content) => JSON.stringify({
        id: 'chatcmpl-dying', object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000),
        model: 'dying-model', choices: [{ index: 0, delta: { role: 'assistant', content }, finish_reason: null }],
      });
      response.write(`data: ${chunk('Hello')}\n\n`);
      response.write(`data: ${chunk(' there')}\n\n`, () => {
        // Let the two chunks leave, then cut the connection without [DONE].
        setTimeout(() => request.socket.destroy(), 50);
      });
    });
  });
  return new Promise((resolvePromise) => {
    server.listen(0, '127.0.0.1', () => resolvePromise({ server, url: `http://127.0.0.1:${server.address().port}/v1` }));
  });
}

// enclave (simulated attestation, demo engine + dying upstream) -> gateway -> proxy, and a test key.
// enclaveArgs: more flags of the enclave (e.g. --key-rotation-hours); testModels: the models the
// test key may use (more --upstream models of enclaveArgs go here).
export async function startStack({ proxyArgs = [], enclaveArgs = [], testModels = ['rvenc-demo', 'dying-model'] } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'rvenc-node-'));
  const stack = { dir, servers: [] };
  try {
    stack.upstream = await startDyingUpstream();
    stack.enclave = await startServer('enclave', [
      'enclave', '--listen', '127.0.0.1:0', '--attestation', 'simulated',
      '--key-file', join(dir, 'enclave.key'), '--platform-key', join(dir, 'platform.key'),
      '--demo-model', 'rvenc-demo', '--upstream', `dying-model=${stack.upstream.url}`,
      '--test-models', testModels.join(','), ...enclaveArgs,
    ]);
    stack.servers.push(stack.enclave);
    const platform = stack.enclave.output().match(/platform public key ([0-9a-f]{64})/);
    if (!platform) throw new Error(`the enclave did not print its platform public key:\n${stack.enclave.output()}`);
    stack.platformPublicKey = platform[1];

    stack.db = join(dir, 'rvenc.db');
    const db = stack.db;
    stack.apiKey = createKey(stack, 'node-e2e');
    stack.gateway = await startServer('gateway', [
      'gateway', '--listen', '127.0.0.1:0', '--enclave', stack.enclave.url, '--db', db,
    ]);
    stack.servers.push(stack.gateway);

    stack.dekStore = join(dir, 'deks.json');
    await startProxy(stack, proxyArgs);
    return stack;
  } catch (error) {
    await stopStack(stack);
    throw error;
  }
}

// A new test API key in the gateway's database (`rvenc keys create`); prints it alone on stdout.
export function createKey(stack, name, extraArgs = []) {
  return execFileSync(rvencBinary, ['keys', 'create', '--db', stack.db, '--name', name, '--test', ...extraArgs],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n').pop();
}

// (Re)starts the proxy of the stack with the same DEK store.
export async function startProxy(stack, proxyArgs = []) {
  if (stack.proxy) {
    await stopServer(stack.proxy);
    stack.servers = stack.servers.filter((s) => s !== stack.proxy);
  }
  stack.proxy = await startServer('proxy', [
    'proxy', '--listen', '127.0.0.1:0', '--gateway', stack.gateway.url,
    '--platform-public-key', stack.platformPublicKey, '--dek-store', stack.dekStore, ...proxyArgs,
  ]);
  stack.servers.push(stack.proxy);
  stack.baseURL = `${stack.proxy.url}/v1`;
}

export async function stopStack(stack) {
  for (const server of [...stack.servers].reverse()) await stopServer(server);
  if (stack.upstream) await new Promise((r) => { stack.upstream.server.closeAllConnections?.(); stack.upstream.server.close(r); });
  rmSync(stack.dir, { recursive: true, force: true });
}
