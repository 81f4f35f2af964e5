// Per-request client crypto of the TypeScript SDK next to the C++ SDK's, in the same run on the same
// machine (a benchmark, not a test): an X-Wing encapsulation, the version 3 request (200-byte JSON)
// sealed, and a 50-chunk answer decoded from its SSE text (init, 50 chunk events, done) — the same
// work as bench/crypto_bench.cpp's BM_ClientRequest50_rvenc, which this script runs too when built
// (build/bench/rvenc_crypto_bench, or RVENC_CRYPTO_BENCH). Also prints the browser bundle's size.
//   node bench/crypto.mjs [iterations] [rounds]
// RVENC_JS_BASELINE=<an older sdk/js/dist> times that build too, in the same rounds (before/after).
// The rounds alternate TypeScript and C++; the ratios use each side's fastest round, the figure least
// disturbed by other load on a shared machine.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const iterations = Number(process.argv[2] ?? 300);
const rounds = Number(process.argv[3] ?? 3);
const CHUNKS = 50;
const CHUNK_JSON = '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1764004858,"model":"rvenc-demo",'
  + '"choices":[{"index":0,"delta":{"content":" word"},"finish_reason":null}]}';
const utf8 = (s) => new TextEncoder().encode(s);

/** The per-request work against one build of the SDK (`dist`): returns an async function. */
async function workload(dist) {
  const t = await import(pathToFileURL(join(dist, 'internal.js')).href);
  await t.ready();
  const { publicKey } = t.xwingSeedKeypair(t.randomBytes(32));
  const enc = t.xwingEncapsulate(publicKey);
  const keyId = await t.keyIdOf(publicKey);
  const nonce = t.randomBytes(24);
  const salt = t.randomBytes(32);
  // The enclave's side, made once: the answer to `nonce` under `salt`.
  const keys = await t.deriveV3ResponseKeys(await t.deriveResponseSecret(enc.sharedSecret, nonce), salt);
  const event = (kind, index, text) => `event: ${kind}\ndata: ${t.toHex(t.seal(keys.key, t.eventNonce(keys.prefix, index), utf8(`rvenc/3|${kind}`), t.pad(utf8(text))))}\n\n`;
  let sse = `event: init\ndata: ${t.toHex(salt)}\n\n`;
  for (let i = 0; i < CHUNKS; i += 1) sse += event('data', i, CHUNK_JSON);
  sse += event('done', CHUNKS, '[DONE]');
  const sseBytes = utf8(sse);
  const request = utf8('x'.repeat(200));
  const input = { version: 3, sharedSecret: enc.sharedSecret, cipherText: enc.cipherText, keyId, nonce, timestamp: 1764004858 };
  // As the client does it (client.ts openChat); builds before sealRequestWithDecoder made the two at once.
  const open = t.sealRequestWithDecoder
    ? async () => (await t.sealRequestWithDecoder(input, request, 10 * 1024 * 1024)).decoder
    : async () => (await Promise.all([t.sealRequest(input, request), t.ResponseDecoder.create(3, enc.sharedSecret, nonce, 10 * 1024 * 1024)]))[1];
  return async () => {
    t.xwingEncapsulate(publicKey);
    const decoder = await open();
    const chunks = await decoder.feed(sseBytes);
    decoder.finish();
    if (chunks.length !== CHUNKS) throw new Error('the stream did not decode');
  };
}

/** Wall and CPU (whole process: WebCrypto may use Node's thread pool) microseconds per request. */
async function time(once) {
  const started = process.hrtime.bigint();
  const cpuBefore = process.cpuUsage();
  for (let i = 0; i < iterations; i += 1) await once();
  const cpu = process.cpuUsage(cpuBefore);
  return { wall: Number(process.hrtime.bigint() - started) / 1e3 / iterations, cpu: (cpu.user + cpu.system) / iterations };
}

function timeCxx(binary) {
  const run = spawnSync(binary, ['--benchmark_filter=BM_ClientRequest50_rvenc', '--benchmark_format=json', '--benchmark_min_time=0.5'], { encoding: 'utf8' });
  const result = run.status === 0 ? JSON.parse(run.stdout).benchmarks?.[0] : undefined;
  if (!result) throw new Error(`the C++ benchmark gave no result: ${run.stderr.slice(0, 300)}`);
  const unit = { ns: 1e-3, us: 1, ms: 1e3 }[result.time_unit];
  return { wall: result.real_time * unit, cpu: result.cpu_time * unit };
}

const sides = [{ name: `TypeScript SDK (Node ${process.version})`, once: await workload(join(root, 'dist')) }];
if (process.env.RVENC_JS_BASELINE) {
  sides.push({ name: `TypeScript SDK baseline (${process.env.RVENC_JS_BASELINE})`, once: await workload(resolve(process.env.RVENC_JS_BASELINE)) });
}
for (const side of sides) for (let i = 0; i < 30; i += 1) await side.once();  // warm-up (JIT, WebAssembly tiers)
const cxxBench = process.env.RVENC_CRYPTO_BENCH ?? join(root, '..', '..', 'build', 'bench', 'rvenc_crypto_bench');
if (existsSync(cxxBench)) sides.push({ name: 'C++ SDK (BM_ClientRequest50_rvenc)', cxx: cxxBench });
else console.log(`C++ benchmark not built (${cxxBench}): cmake --build build --target rvenc_crypto_bench`);

const best = new Map();
for (let round = 1; round <= rounds; round += 1) {
  for (const side of sides) {
    const r = side.cxx ? timeCxx(side.cxx) : await time(side.once);
    console.log(`round ${round}: ${side.name}: ${r.wall.toFixed(1)} us wall, ${r.cpu.toFixed(1)} us CPU per request`);
    const b = best.get(side) ?? { wall: Infinity, cpu: Infinity };
    best.set(side, { wall: Math.min(b.wall, r.wall), cpu: Math.min(b.cpu, r.cpu) });
  }
}
const cxx = sides.find((s) => s.cxx);
for (const side of sides) {
  const b = best.get(side);
  const ratio = cxx && side !== cxx ? `; ratio to C++: ${(b.wall / best.get(cxx).wall).toFixed(2)} wall, ${(b.cpu / best.get(cxx).cpu).toFixed(2)} CPU (target: within 3x)` : '';
  console.log(`best: ${side.name}: ${b.wall.toFixed(1)} us wall, ${b.cpu.toFixed(1)} us CPU${ratio}`);
}

for (const file of ['dist/browser/rvenc.min.js', 'dist/browser/libsodium.wasm', 'dist/chat/chat.js']) {
  const path = join(root, file);
  if (!existsSync(path)) continue;
  const bytes = readFileSync(path);
  console.log(`${file}: ${(bytes.length / 1024).toFixed(1)} KiB, ${(gzipSync(bytes, { level: 9 }).length / 1024).toFixed(1)} KiB gzip`);
}
