// A real rvenc stack for the SDK's live tests: `rvenc up --data <tmp>` on free ports (enclave with
// simulated attestation and the demo engine, gateway, proxy with the chat page), read from the
// stack.json it writes; and a man-in-the-middle HTTP proxy between the SDK and the gateway that can
// flip a byte of the answer stream or cut it before its end.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '../../..');
export const rvencBinary = process.env.RVENC_BINARY ?? join(repoRoot, 'build', 'rvenc');
const START_TIMEOUT_MS = 60_000;

export async function startUp(extraArgs = []) {
  const dir = mkdtempSync(join(tmpdir(), 'rvenc-js-'));
  const child = spawn(rvencBinary, ['up', '--data', dir, '--gateway-port', '0', '--enclave-port', '0', '--proxy-port', '0', ...extraArgs],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const stackFile = join(dir, 'stack.json');
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`rvenc up exited (${child.exitCode}):\n${output}`);
    if (existsSync(stackFile)) {
      try {
        const stack = JSON.parse(readFileSync(stackFile, 'utf8'));
        if (stack.running) return { ...stack, dir, child, output: () => output };
      } catch {
        // being written
      }
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`rvenc up did not write a running stack.json within ${START_TIMEOUT_MS} ms:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function stopUp(stack) {
  if (!stack) return;
  if (stack.child.exitCode === null) {
    await new Promise((r) => {
      const kill = setTimeout(() => stack.child.kill('SIGKILL'), 15_000);
      stack.child.once('exit', () => { clearTimeout(kill); r(); });
      stack.child.kill('SIGTERM');
    });
  }
  rmSync(stack.dir, { recursive: true, force: true });
}

/**
 * An HTTP proxy to `target` (the gateway). mode: 'pass'; 'flip' flips one hex digit of the first
 * data event of each chat answer; 'truncate' cuts the connection just before the done event.
 * `bodies` records every request body the gateway was sent.
 */
export function startMitm(target) {
  const mitm = { mode: 'pass', bodies: [], requests: [] };
  const upstream = new URL(target);
  const server = createServer((req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      if (body.length) mitm.bodies.push(body.toString('utf8'));
      mitm.requests.push(`${req.method} ${req.url.split('?')[0]}`);
      const forward = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url,
        headers: { ...req.headers, host: upstream.host } }, (up) => relay(mitm.mode, up, res));
      forward.on('error', () => res.destroy());
      forward.end(body);
    });
  });
  return new Promise((r) => server.listen(0, '127.0.0.1', () => {
    mitm.url = `http://127.0.0.1:${server.address().port}`;
    mitm.close = () => new Promise((c) => { server.closeAllConnections(); server.close(c); });
    r(mitm);
  }));
}

function relay(mode, up, res) {
  const headers = { ...up.headers };
  delete headers['content-length'];
  delete headers['transfer-encoding'];
  res.writeHead(up.statusCode, headers);
  const isStream = (up.headers['content-type'] ?? '').startsWith('text/event-stream');
  if (!isStream || mode === 'pass') {
    up.pipe(res);
    return;
  }
  let buffer = '';
  let flipped = false;
  up.setEncoding('utf8');
  up.on('data', (text) => {
    if (mode === 'cut') return;
    buffer += text;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      let event = buffer.slice(0, end + 2);
      buffer = buffer.slice(end + 2);
      if (mode === 'truncate' && event.startsWith('event: done')) {
        // No done, no final chunk: the connection just closes once what came before left.
        res.write(': cut here\n\n', () => res.socket.destroy());
        up.destroy();
        buffer = '';
        mode = 'cut';
        return;
      }
      if (mode === 'flip' && !flipped && event.startsWith('event: data\ndata: ')) {
        const at = 'event: data\ndata: '.length + 10;
        event = event.slice(0, at) + (event[at] === '0' ? '1' : '0') + event.slice(at + 1);
        flipped = true;
      }
      res.write(event);
    }
  });
  up.on('end', () => { if (mode !== 'cut') res.end(buffer); });
}
