// CTest entry of the SDK's suites: `node run.mjs node` (vectors, unit, SEV-SNP and TDX fixtures, several enclaves against a
// fake gateway, the live stack helper against a fake rvenc, live stack, live stack with two enclaves, gateway CORS and proxy /chat) or
// `node run.mjs browser` (the chat page in headless chromium). Exits 77 (CTest
// SKIP_RETURN_CODE) only when what the suite needs is not installed: sdk/js/node_modules and the
// build (`npm ci && npm run build` in sdk/js; scripts/setup.sh does both), or /usr/bin/chromium.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const suite = process.argv[2];
const skip = (why) => {
  console.log(`SKIP: ${why}`);
  process.exit(77);
};
if (!['libsodium', 'libsodium-wrappers'].every((p) => existsSync(join(root, 'node_modules', p, 'package.json')))) skip('sdk/js/node_modules is missing; run `npm ci` in sdk/js (scripts/setup.sh does)');
if (!existsSync(join(root, 'dist', 'index.js')) || !existsSync(join(root, 'dist', 'chat', 'chat.js'))) skip('sdk/js is not built; run `npm run build` in sdk/js (scripts/setup.sh does)');
const files = {
  node: ['vectors.test.mjs', 'unit.test.mjs', 'raw.test.mjs', 'hardware.test.mjs', 'tdx.test.mjs', 'replicas.test.mjs', 'stack.test.mjs', 'live.test.mjs', 'live-replicas.test.mjs',
    'server.test.mjs', 'endpoints.test.mjs'],
  browser: ['browser-hardware.test.mjs', 'browser.test.mjs'],
}[suite];
if (!files) {
  console.error('usage: node run.mjs node|browser');
  process.exit(2);
}
if (suite === 'browser' && !existsSync(process.env.RVENC_CHROMIUM ?? '/usr/bin/chromium')) skip('chromium is not installed (apt-get install chromium; scripts/setup.sh does)');
const result = spawnSync(process.execPath, ['--test', '--test-reporter=spec', '--test-concurrency=1', ...files],
  { cwd: here, stdio: 'inherit' });
process.exit(result.status ?? 1);
