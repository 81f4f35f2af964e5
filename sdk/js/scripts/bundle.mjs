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
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
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

const libsodium = splitLibsodium();
const wasmSha256 = createHash('sha256').update(libsodium.wasm).digest('hex');

// The `libsodium` import of libsodium-wrappers → a factory that fetches and checks the binary first.
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
