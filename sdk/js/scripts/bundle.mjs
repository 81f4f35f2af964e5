// Builds the browser artifacts with esbuild (after tsc built dist/*.js):
//   dist/browser/rvenc.min.js  the SDK as one minified ES module (libsodium included)
//   dist/chat/                 the chat page rvenc proxy serves at /chat (index.html, chat.js, chat.css)
// and prints their sizes (minified, gzip).
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const common = { bundle: true, minify: true, format: 'esm', platform: 'browser', target: ['es2022'], legalComments: 'none', logLevel: 'warning' };

await build({ ...common, entryPoints: [join(root, 'src/index.ts')], outfile: join(root, 'dist/browser/rvenc.min.js') });
mkdirSync(join(root, 'dist/chat'), { recursive: true });
await build({ ...common, entryPoints: [join(root, 'chat/main.js')], outfile: join(root, 'dist/chat/chat.js') });
for (const file of ['index.html', 'chat.css']) copyFileSync(join(root, 'chat', file), join(root, 'dist/chat', file));

for (const file of ['dist/browser/rvenc.min.js', 'dist/chat/chat.js']) {
  const bytes = readFileSync(join(root, file));
  console.log(`${file}: ${(bytes.length / 1024).toFixed(1)} KiB minified, ${(gzipSync(bytes, { level: 9 }).length / 1024).toFixed(1)} KiB gzip`);
}
