// The browser build in Debian's headless chromium, without a stack: a small static server serves
// dist/browser/ (rvenc.min.js, libsodium.wasm, hardware.js) and a fake gateway whose attestation
// document carries the real SEV-SNP fixture (shared/attestation/sev-snp/milan-virtee) bound to the
// page's challenge. The page's client must load libsodium from libsodium.wasm (checked against its
// SHA-256), import hardware.js only then, verify the VCEK chain to the pinned ARK and the report's
// P-384 signature with the browser's WebCrypto, and fail at report_data (the fixture's REPORT_DATA
// is not this key's binding) — after every other hardware check passed. A swapped libsodium.wasm
// is refused.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';
import * as t from '../dist/internal.js';

const here = dirname(fileURLToPath(import.meta.url));
const browserDir = join(here, '..', 'dist', 'browser');
const CHROMIUM = process.env.RVENC_CHROMIUM ?? '/usr/bin/chromium';
const fixtures = [process.env.RVENC_VECTORS_DIR && join(process.env.RVENC_VECTORS_DIR, '..', 'attestation', 'sev-snp', 'milan-virtee'),
  join(here, '..', '..', '..', '..', 'shared', 'attestation', 'sev-snp', 'milan-virtee')].filter(Boolean).find((d) => existsSync(d));
const TYPES = { '.js': 'text/javascript', '.wasm': 'application/wasm', '.html': 'text/html' };
const PAGE = `<!doctype html><meta charset="utf-8"><script type="module">
import createRvencClient from './rvenc.min.js';
const client = createRvencClient({ apiKey: 'sk_test_browser', baseUrl: location.origin });
try {
  await client.chat.completions.create({ model: 'rvenc-demo', messages: [{ role: 'user', content: 'hi' }] });
  window.outcome = 'accepted';
} catch (e) {
  window.outcome = (e.code ?? e.name) + ': ' + e.message;
}
</script>`;

let server;
let browser;
let profile;
let swapWasm = false;

async function attestation(challengeHex) {
  await t.ready();
  const { publicKey } = t.xwingSeedKeypair(new Uint8Array(32).fill(5));
  const notAfter = Math.floor(Date.now() / 1000) + 3600;
  const file = (name) => readFileSync(join(fixtures, name));
  return {
    keyId: t.toHex(await t.keyIdOf(publicKey)), kem: 'X-Wing', publicKey: t.toHex(publicKey), notAfter, provider: 'sev-snp', binding: 2,
    reportData: t.toHex(await t.reportDataV2For(publicKey, notAfter, t.fromHex(challengeHex))),
    evidence: file('report.bin').toString('base64'), measurement: t.toHex(file('report.bin').subarray(0x90, 0x90 + 48)),
    collateral: { 'vcek.der': file('vcek.der').toString('base64'), 'ask_ark.pem': file('ask_ark.pem').toString('base64') },
  };
}

before(async () => {
  server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/rvenc/attestation') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(await attestation(url.searchParams.get('challenge'))));
      return;
    }
    const name = url.pathname === '/' ? null : url.pathname.slice(1);
    if (name === null) {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(PAGE);
    } else if (/^[a-z.]+$/.test(name) && existsSync(join(browserDir, name))) {
      const bytes = readFileSync(join(browserDir, name));
      if (swapWasm && name.endsWith('.wasm')) bytes[bytes.length - 1] ^= 1;
      res.writeHead(200, { 'content-type': TYPES[name.slice(name.lastIndexOf('.'))] ?? 'application/octet-stream' });
      res.end(bytes);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  profile = mkdtempSync(join(tmpdir(), 'rvenc-chromium-'));
  browser = await puppeteer.launch({
    executablePath: CHROMIUM, headless: true, userDataDir: profile,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--disable-dev-shm-usage'],
  });
});

after(async () => {
  await browser?.close();
  server?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

async function outcome() {
  const page = await browser.newPage();
  try {
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    await page.waitForFunction(() => window.outcome !== undefined, { timeout: 60_000 });
    return await page.evaluate(() => window.outcome);
  } finally {
    await page.close();
  }
}

test('browser: SEV-SNP evidence is verified in the page (chain, signature) up to report_data', { skip: !fixtures }, async () => {
  assert.match(await outcome(), /^attestation_failed: sev-snp evidence: report_data: /);
});

test('browser: a libsodium.wasm that is not the one the bundle was built with is refused', { skip: !fixtures }, async () => {
  swapWasm = true;
  try {
    assert.match(await outcome(), /libsodium\.wasm is not the WebAssembly this bundle was built with/);
  } finally {
    swapWasm = false;
  }
});
