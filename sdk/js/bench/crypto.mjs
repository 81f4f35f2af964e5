// Per-request client crypto of the TypeScript SDK next to the C++ SDK's, in the same run on the same
// machine (a benchmark, not a test): an X-Wing encapsulation, the version 3 request (200-byte JSON)
// sealed, and a 50-chunk answer decoded from its SSE text (init, 50 chunk events, done) — the same
// work as bench/crypto_bench.cpp's BM_ClientRequest50_rvenc, which this script runs too when built
// (build/bench/rvenc_crypto_bench, or RVENC_CRYPTO_BENCH). Also prints the browser bundle's size.
//   node bench/crypto.mjs [iterations]
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as t from '../dist/internal.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const iterations = Number(process.argv[2] ?? 300);
const CHUNKS = 50;
const CHUNK_JSON = '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1764004858,"model":"rvenc-demo",'
  + '"choices":[{"index":0,"delta":{"content":" word"},"finish_reason":null}]}';
const utf8 = (s) => new TextEncoder().encode(s);

await t.ready();
const { publicKey } = t.xwingSeedKeypair(t.sodium().randombytes_buf(32));
const enc = t.xwingEncapsulate(publicKey);
const keyId = await t.keyIdOf(publicKey);
const nonce = t.sodium().randombytes_buf(24);
const salt = t.sodium().randombytes_buf(32);
// The enclave's side, made once: the answer to `nonce` under `salt`.
const keys = await t.deriveV3ResponseKeys(await t.deriveResponseSecret(enc.sharedSecret, nonce), salt);
const event = (kind, index, text) => `event: ${kind}\ndata: ${t.toHex(t.seal(keys.key, t.eventNonce(keys.prefix, index), utf8(`rvenc/3|${kind}`), t.pad(utf8(text))))}\n\n`;
let sse = `event: init\ndata: ${t.toHex(salt)}\n\n`;
for (let i = 0; i < CHUNKS; i += 1) sse += event('data', i, CHUNK_JSON);
sse += event('done', CHUNKS, '[DONE]');
const sseBytes = utf8(sse);
const request = utf8('x'.repeat(200));

async function once() {
  t.xwingEncapsulate(publicKey);
  // As the client does it (client.ts openChat): the request key and the answer's secret at once.
  const [, decoder] = await Promise.all([
    t.sealRequest({ version: 3, sharedSecret: enc.sharedSecret, cipherText: enc.cipherText, keyId, nonce, timestamp: 1764004858 }, request),
    t.ResponseDecoder.create(3, enc.sharedSecret, nonce, 10 * 1024 * 1024),
  ]);
  const chunks = await decoder.feed(sseBytes);
  decoder.finish();
  if (chunks.length !== CHUNKS) throw new Error('the stream did not decode');
}

for (let i = 0; i < 30; i += 1) await once();  // warm-up (JIT, WebAssembly tiers)
// Wall time, and CPU time of the whole process (WebCrypto runs on Node's thread pool): on a shared,
// loaded machine the CPU times are the fairer comparison.
const started = process.hrtime.bigint();
const cpuBefore = process.cpuUsage();
for (let i = 0; i < iterations; i += 1) await once();
const cpu = process.cpuUsage(cpuBefore);
const jsUs = Number(process.hrtime.bigint() - started) / 1e3 / iterations;
const jsCpuUs = (cpu.user + cpu.system) / iterations;
console.log(`TypeScript SDK (Node ${process.version}): ${jsUs.toFixed(1)} us wall, ${jsCpuUs.toFixed(1)} us CPU per request (${iterations} requests)`);

const cxxBench = process.env.RVENC_CRYPTO_BENCH ?? join(root, '..', '..', 'build', 'bench', 'rvenc_crypto_bench');
if (existsSync(cxxBench)) {
  const run = spawnSync(cxxBench, ['--benchmark_filter=BM_ClientRequest50_rvenc', '--benchmark_format=json', '--benchmark_min_time=1'], { encoding: 'utf8' });
  const result = JSON.parse(run.stdout).benchmarks?.[0];
  if (result) {
    const unit = { ns: 1e-3, us: 1, ms: 1e3 }[result.time_unit];
    const cxxUs = result.real_time * unit;
    const cxxCpuUs = result.cpu_time * unit;
    console.log(`C++ SDK (BM_ClientRequest50_rvenc): ${cxxUs.toFixed(1)} us wall, ${cxxCpuUs.toFixed(1)} us CPU per request`);
    console.log(`ratio TypeScript / C++: ${(jsUs / cxxUs).toFixed(2)} wall, ${(jsCpuUs / cxxCpuUs).toFixed(2)} CPU (target: within 3x)`);
  } else {
    console.log(`C++ benchmark gave no result: ${run.stderr.slice(0, 300)}`);
  }
} else {
  console.log(`C++ benchmark not built (${cxxBench}): cmake --build build --target rvenc_crypto_bench`);
}

const bundle = join(root, 'dist', 'browser', 'rvenc.min.js');
if (existsSync(bundle)) {
  const bytes = readFileSync(bundle);
  console.log(`browser bundle dist/browser/rvenc.min.js: ${(bytes.length / 1024).toFixed(1)} KiB minified, ${(gzipSync(bytes, { level: 9 }).length / 1024).toFixed(1)} KiB gzip (target: <= 300 KiB minified)`);
}
