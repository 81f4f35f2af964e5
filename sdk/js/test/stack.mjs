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
const START_ATTEMPTS = 3;

/**
 * `rvenc up` on free ports; resolves once the stack is in service: stack.json says running AND the
 * gateway's admin /healthz counts every enclave up. `up` reports running as soon as the gateway
 * answers /healthz 200, which it does with one enclave of several up ("degraded"): on a loaded
 * machine the second enclave of `--enclaves 2` could still be out of service then, and a test
 * attesting every replica saw one. A start lost to a port taken meanwhile (up picks the proxy's
 * free port before the gateway starts, then the proxy binds it) is tried again, on new ports.
 * (stack.test.mjs checks this helper against a fake rvenc.)
 */
export async function startUp(extraArgs = []) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await startOnce(extraArgs);
    } catch (error) {
      if (!(error instanceof PortTaken) || attempt >= START_ATTEMPTS) throw error;
    }
  }
}

/** `up` exited because a part could not bind the port it was given (taken since it was picked). */
class PortTaken extends Error {}

async function startOnce(extraArgs) {
  const dir = mkdtempSync(join(tmpdir(), 'rvenc-js-'));
  const child = spawn(rvencBinary, ['up', '--data', dir, '--gateway-port', '0', '--enclave-port', '0', '--proxy-port', '0', ...extraArgs],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const exited = new Promise((r) => child.once('close', r));  // exited, its output all read
  const fail = async (error) => {
    await stopUp({ child, dir });
    throw error;
  };
  const stackFile = join(dir, 'stack.json');
  const deadline = Date.now() + START_TIMEOUT_MS;
  let stack;
  let health = 'no answer yet';
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await exited;
      const Failure = /Address already in use/.test(output) ? PortTaken : Error;
      return fail(new Failure(`rvenc up exited (${child.exitCode ?? child.signalCode}):\n${output}`));
    }
    if (!stack && existsSync(stackFile)) {
      try {
        const parsed = JSON.parse(readFileSync(stackFile, 'utf8'));
        if (parsed.running) stack = { ...parsed, dir, child, output: () => output };
      } catch {
        // being written
      }
    }
    if (stack) {
      health = await adminHealth(stack);
      if (health.enclavesTotal > 0 && health.enclavesUp === health.enclavesTotal) return stack;
    }
    if (Date.now() > deadline) {
      return fail(new Error(`rvenc up did not run with every enclave up within ${START_TIMEOUT_MS} ms `
        + `(gateway /healthz: ${JSON.stringify(health)}):\n${output}`));
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The gateway's /healthz details (admin token), or {error} while it does not answer them. */
async function adminHealth(stack) {
  try {
    const r = await fetch(`${stack.gatewayUrl}/healthz`,
      { headers: { authorization: `Bearer ${stack.adminToken}` }, signal: AbortSignal.timeout(10_000) });
    return await r.json();
  } catch (error) {
    return { error: String(error?.message ?? error) };
  }
}

export async function stopUp(stack) {
  if (!stack) return;
  if (stack.child.exitCode === null && stack.child.signalCode === null) {
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
