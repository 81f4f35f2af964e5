// Builds the browser artifacts with esbuild (after tsc built dist/*.js):
//   dist/browser/rvenc.min.js      the SDK as one minified ES module
//   dist/browser/libsodium.wasm    libsodium's WebAssembly, next to it
//   dist/browser/hardware.js       the hardware attestation verifier (PKI.js), imported by the SDK
//                                  only when a document names sev-snp or tdx
//   dist/chat/                     the chat page rvenc proxy serves at /chat (index.html, chat.js,
//                                  chat.css, libsodium.wasm, hardware.js)
// and prints their sizes (minified, gzip).
//
// Design: libsodium's npm build carries its 217 KiB of WebAssembly as a 289 KiB base64 string inside
// its JavaScript, two thirds of the bundle. The `libsodium` plugin below takes that string out at
// build time into a binary libsodium.wasm (the same bytes, checked to be WebAssembly of the size the
// module's own decoder expects) and lets the module take the binary from its `wasmBinary` option,
// which a small wrapper fills by fetching libsodium.wasm next to the bundle and checking its SHA-256
// against the one recorded at build time (a swapped file is refused: it would be swapped crypto).
// The build fails loudly when the module's shape is not the expected one (a new libsodium release).
//
// libsodium.wasm is then trimmed (`trimWasm`): the exports of the crypto_* functions src/ does not
// call (crypto_box, pwhash, secretstream, …) are dropped and Binaryen's `wasm-opt
// --remove-unused-module-elements` (Debian's binaryen) removes the code only they reached. That pass
// removes and never rewrites: no optimisation pass runs over the kept (constant-time) code, whose
// instructions stay libsodium's. The SDK calls the module's raw exports (src/crypto.ts; no
// libsodium-wrappers in the bundle), and the build fails if one it calls is not exported. No
// wasm-opt on the machine: the untrimmed module, with a warning. Measured (libsodium 0.8.4, binaryen
// 108): 221 811 → 190 648 bytes, 97.7 → 85.2 KiB gzip (`-Oz` over the whole module would save
// another 1.2 KiB only, and it rewrites code: not done).
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const WASM_NAME = 'libsodium.wasm';

/** libsodium.mjs without its base64 WebAssembly, and those bytes. */
function splitLibsodium() {
  const path = createRequire(join(root, 'node_modules', 'libsodium-wrappers', 'package.json')).resolve('libsodium')
    .replace(/dist\/modules\/libsodium\.js$/, 'dist/modules-esm/libsodium.mjs');
  const source = readFileSync(path, 'utf8');
  const fail = (what) => { throw new Error(`scripts/bundle.mjs: ${path}: ${what}; the libsodium plugin needs updating for this release`); };
  const moduleVar = /(\w+)\.wasmBinary&&\(\w+=\1\.wasmBinary\)/.exec(source)?.[1] ?? fail('no wasmBinary option');
  // `??=(decoder)("AGFzbQ…")`: the embedded module, decoded by an inline base64 decoder.
  const embedded = /\?\?=\((\w+)=>\{for\(var [^{}]{0,200}?new Uint8Array\((\d+)-[^{}]{0,400}?return \w+\}\)\("(AGFzbQ[A-Za-z0-9+/]+={0,2})"\)/g;
  const matches = [...source.matchAll(embedded)];
  if (matches.length !== 1) fail(`${matches.length} embedded WebAssembly modules, expected 1`);
  const [whole, , decodedBytes, base64] = matches[0];
  const wasm = Buffer.from(base64, 'base64');
  if (wasm.length !== Number(decodedBytes) - (base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0)) fail('decoded size differs');
  if (!WebAssembly.validate(wasm)) fail('the embedded bytes are not valid WebAssembly');
  return { path, contents: source.replace(whole, `??=${moduleVar}.wasmBinary`), wasm };
}

const LEB_MAX = 5;
function leb(bytes, at) {
  let value = 0;
  for (let shift = 0, i = 0; i < LEB_MAX; i += 1, shift += 7) {
    const byte = bytes[at++];
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return [value, at];
  }
  throw new Error('scripts/bundle.mjs: libsodium.wasm: a LEB128 number is too long');
}
function toLeb(value) {
  const out = [];
  do {
    const byte = value & 0x7f;
    value = Math.floor(value / 128);
    out.push(value > 0 ? byte | 0x80 : byte);
  } while (value > 0);
  return out;
}

/** The libsodium functions src/ calls: the module's raw exports (`m._crypto_…(`, `m._sodium_…(`). */
function functionsTheSdkCalls() {
  const names = new Set();
  for (const file of readdirSync(join(root, 'src')).filter((f) => f.endsWith('.ts'))) {
    const source = readFileSync(join(root, 'src', file), 'utf8');
    for (const m of source.matchAll(/\._((?:crypto|sodium|randombytes)_\w+)\(/g)) names.add(m[1]);
  }
  if (names.size < 10) throw new Error(`scripts/bundle.mjs: found only ${names.size} libsodium calls in src/: has crypto.ts changed shape?`);
  return names;
}

// Dropped: every crypto_* function src/ does not call. Kept: those it calls, the runtime (malloc,
// free, the stack, …), every libsodium utility (sodium_*) and the CSPRNG (randombytes_*: sodium_init
// stirs it). With no libsodium-wrappers in the bundle, no size constants or start-up self-test
// (crypto_secretbox_*) need keeping any more.
/** `wasm` without the exports of libsodium functions not kept, dead code removed by wasm-opt; the same bytes without wasm-opt. */
function trimWasm(wasm, glue) {
  const fail = (what) => { throw new Error(`scripts/bundle.mjs: trimming libsodium.wasm: ${what}`); };
  const byExport = new Map([...glue.matchAll(/\b\w+\._(\w+)=\w+\.(\w+)\b/g)].map((m) => [m[2], m[1]]));
  if (byExport.size < 200) fail(`the module maps ${byExport.size} exports to names, expected the whole library`);
  const keep = functionsTheSdkCalls();
  const parts = [wasm.subarray(0, 8)];
  const keptNames = new Set();
  for (let at = 8; at < wasm.length;) {
    const id = wasm[at];
    const [size, start] = leb(wasm, at + 1);
    let body = wasm.subarray(start, start + size);
    if (id === 7) {  // the export section: count, then (name, kind, index) entries
      const entries = [];
      let [count, i] = leb(wasm, start);
      for (; count > 0; count -= 1) {
        const [length, nameAt] = leb(wasm, i);
        const name = byExport.get(new TextDecoder().decode(wasm.subarray(nameAt, nameAt + length)));
        const [, end] = leb(wasm, nameAt + length + 1);
        if (wasm[nameAt + length] !== 0 || !name?.startsWith('crypto_') || keep.has(name)) {  // kind 0: a function
          entries.push(wasm.subarray(i, end));
          if (name) keptNames.add(name);
        }
        i = end;
      }
      body = Buffer.concat([Uint8Array.from(toLeb(entries.length)), ...entries]);
    }
    parts.push(Uint8Array.from([id, ...toLeb(body.length)]), body);
    at = start + size;
  }
  const out = Buffer.concat(parts);
  const missing = [...keep].filter((name) => !keptNames.has(name));
  if (missing.length > 0) fail(`src/ calls ${missing.join(', ')}, which the module does not export`);
  const dir = mkdtempSync(join(tmpdir(), 'rvenc-wasm-'));
  try {
    writeFileSync(join(dir, 'in.wasm'), out);
    const run = spawnSync('wasm-opt', ['--all-features', '--remove-unused-module-elements', join(dir, 'in.wasm'), '-o', join(dir, 'out.wasm')], { encoding: 'utf8' });
    if (run.error?.code === 'ENOENT') {
      console.warn('scripts/bundle.mjs: wasm-opt (Debian package binaryen) is not installed: libsodium.wasm is not trimmed');
      return wasm;
    }
    if (run.status !== 0) fail(`wasm-opt failed: ${run.stderr.slice(0, 400)}`);
    const trimmed = readFileSync(join(dir, 'out.wasm'));
    if (!WebAssembly.validate(trimmed)) fail('the result is not valid WebAssembly');
    console.log(`libsodium.wasm: kept ${keptNames.size} of ${byExport.size} libsodium exports, ${wasm.length} → ${trimmed.length} bytes`);
    return trimmed;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const libsodium = splitLibsodium();
libsodium.wasm = trimWasm(libsodium.wasm, libsodium.contents);
const wasmSha256 = createHash('sha256').update(libsodium.wasm).digest('hex');

// The `libsodium` import (src/crypto.ts) → a factory that fetches and checks the binary first.
const loader = `
import factory from 'libsodium-without-wasm';
const SHA256 = '${wasmSha256}';
async function wasmBinary() {
  const url = new URL('./${WASM_NAME}', import.meta.url);
  const response = await fetch(url);
  if (!response.ok) throw new Error('libsodium: ' + url + ' answered HTTP ' + response.status);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
  if (hex !== SHA256) throw new Error('libsodium: ' + url + ' is not the WebAssembly this bundle was built with (SHA-256 ' + hex + ')');
  return bytes;
}
export default async function (options) {
  return factory({ ...options, wasmBinary: await wasmBinary() });
}`;

const libsodiumPlugin = {
  name: 'libsodium',
  setup(b) {
    b.onResolve({ filter: /^libsodium$/ }, () => ({ path: 'loader', namespace: 'libsodium' }));
    b.onResolve({ filter: /^libsodium-without-wasm$/ }, () => ({ path: 'module', namespace: 'libsodium' }));
    b.onLoad({ filter: /^loader$/, namespace: 'libsodium' }, () => ({ contents: loader, loader: 'js' }));
    b.onLoad({ filter: /^module$/, namespace: 'libsodium' }, () => ({ contents: libsodium.contents, loader: 'js' }));
  },
};

// `import('./hardware.js')` of attestation.ts stays an import of the file next to the bundle.
const hardwarePlugin = {
  name: 'hardware',
  setup(b) {
    b.onResolve({ filter: /^\.\/hardware\.js$/ }, (args) => (args.importer.endsWith('attestation.ts') ? { path: './hardware.js', external: true } : undefined));
  },
};

const common = {
  bundle: true, minify: true, format: 'esm', platform: 'browser', target: ['es2022'], legalComments: 'none',
  logLevel: 'warning', plugins: [libsodiumPlugin, hardwarePlugin], metafile: true,
};

const outputs = [];
async function bundle(entry, outfile) {
  const result = await build({ ...common, entryPoints: [join(root, entry)], outfile: join(root, outfile) });
  const hardware = join(dirname(outfile), 'hardware.js');
  await build({ ...common, entryPoints: [join(root, 'src/hardware.ts')], outfile: join(root, hardware) });
  writeFileSync(join(root, dirname(outfile), WASM_NAME), libsodium.wasm);
  outputs.push(hardware);
  // What is in it, for esbuild's analyzer (https://esbuild.github.io/analyze/); not part of the package.
  mkdirSync(join(root, 'dist/meta'), { recursive: true });
  writeFileSync(join(root, 'dist/meta', `${outfile.split('/').pop()}.json`), JSON.stringify(result.metafile));
  outputs.push(outfile, join(dirname(outfile), WASM_NAME));
}

mkdirSync(join(root, 'dist/chat'), { recursive: true });
await bundle('src/index.ts', 'dist/browser/rvenc.min.js');
await bundle('chat/main.js', 'dist/chat/chat.js');
for (const file of ['index.html', 'chat.css']) copyFileSync(join(root, 'chat', file), join(root, 'dist/chat', file));

for (const file of outputs) {
  const bytes = readFileSync(join(root, file));
  console.log(`${file}: ${(bytes.length / 1024).toFixed(1)} KiB${file.endsWith('.js') ? ' minified' : ''}, ${(gzipSync(bytes, { level: 9 }).length / 1024).toFixed(1)} KiB gzip`);
}
