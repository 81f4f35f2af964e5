// The browser build in Debian's headless chromium, without a stack: a small static server serves
// dist/browser/ (rvenc.min.js, libsodium.wasm, hardware.js) and a fake gateway whose attestation
// document carries the real SEV-SNP fixture (shared/attestation/sev-snp/milan-virtee) bound to the
// page's challenge. The page's client must load libsodium from libsodium.wasm (checked against its
// SHA-256), import hardware.js only then, verify the VCEK chain to the pinned ARK and the report's
// P-384 signature with the browser's WebCrypto, and fail at report_data (the fixture's REPORT_DATA
// is not this key's binding) — after every other hardware check passed. A swapped libsodium.wasm
// is refused. TDX: the real quote of shared/attestation/tdx/spr-e4-v4 with its collateral, verified
// by hardware.js in the page at the collateral's time (2023-07-01): the PCK chain to the pinned
// Intel root with both CRLs, the QE report, the quote's P-256 signature and the TCB Info and QE
// Identity signatures over their raw bytes, all with the browser's WebCrypto, then no TCB level
// matches (tcb_status, as the C++ verifier says); through the client at today's time, the same
// document fails at expired (Intel's 2023 CRLs), never accepted.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
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
const tdxFixtures = fixtures && join(fixtures, '..', '..', 'tdx', 'spr-e4-v4');
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
const TDX_PAGE = `<!doctype html><meta charset="utf-8"><script type="module">
import { verifyEvidence, parseHardwarePolicy } from './hardware.js';
const files = await (await fetch('/tdx-fixture')).json();
const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const collateral = Object.fromEntries(Object.entries(files).map(([k, v]) => [k, bytes(v)]));
try {
  await verifyEvidence({ provider: 'tdx', evidence: collateral['quote.dat'], collateral, policy: parseHardwarePolicy({}), at: 1688169600 });
  window.outcome = 'accepted';
} catch (e) {
  window.outcome = e.name + ': ' + e.message;
}
</script>`;

let server;
let browser;
let profile;
let swapWasm = false;

let provider = 'sev-snp';

function tdxFiles() {
  return Object.fromEntries(readdirSync(tdxFixtures).map((name) => [name, readFileSync(join(tdxFixtures, name)).toString('base64')]));
}

async function attestation(challengeHex) {
  await t.ready();
  const { publicKey } = t.xwingSeedKeypair(new Uint8Array(32).fill(5));
  const notAfter = Math.floor(Date.now() / 1000) + 3600;
  const file = (name) => readFileSync(join(fixtures, name));
  if (provider === 'tdx') {
    const { 'quote.dat': evidence, ...collateral } = tdxFiles();
    return {
      keyId: t.toHex(await t.keyIdOf(publicKey)), kem: 'X-Wing', publicKey: t.toHex(publicKey), notAfter, provider, binding: 2,
      reportData: t.toHex(await t.reportDataV2For(publicKey, notAfter, t.fromHex(challengeHex))), evidence,
      measurement: t.toHex(Buffer.from(evidence, 'base64').subarray(48 + 136, 48 + 136 + 48)), collateral,
    };
  }
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
    if (url.pathname === '/tdx-fixture' || url.pathname === '/tdx') {
      res.writeHead(200, { 'content-type': url.pathname === '/tdx' ? 'text/html' : 'application/json' });
      res.end(url.pathname === '/tdx' ? TDX_PAGE : JSON.stringify(tdxFiles()));
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

async function outcome(path = '/') {
  const page = await browser.newPage();
  try {
    await page.goto(`http://127.0.0.1:${server.address().port}${path}`);
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

test('browser: a real TDX quote is verified in the page (PCK chain, CRLs, QE report, quote, TCB Info, QE Identity) up to tcb_status', { skip: !fixtures }, async () => {
  assert.match(await outcome('/tdx'), /^HardwareFailure: tcb_status: no TCB level of the TCB Info matches .* TEE_TCB_SVN 03000400000000000000000000000000$/);
});

test('browser: the client refuses the same TDX evidence today (its 2023 collateral has expired)', { skip: !fixtures }, async () => {
  provider = 'tdx';
  try {
    assert.match(await outcome(), /^attestation_failed: tdx evidence: expired: /);
  } finally {
    provider = 'sev-snp';
  }
});
