// CTest entry of the end-to-end suite (proxy.node_openai): runs `node --test` here, or exits 77
// (CTest SKIP_RETURN_CODE) when the pinned npm packages are not installed (`npm ci` in tests/node).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const here = import.meta.dirname;
if (!existsSync(join(here, 'node_modules', 'openai', 'package.json'))) {
  console.log('SKIP: tests/node/node_modules is missing; run `npm ci` in tests/node (scripts/setup.sh does)');
  process.exit(77);
}
const result = spawnSync(process.execPath, ['--test', '--test-reporter=spec', 'proxy.test.mjs', 'replicas.test.mjs',
  'tls.test.mjs', 'rotation.test.mjs', 'endpoints.test.mjs', 'responses.test.mjs'],
  { cwd: here, stdio: 'inherit' });
process.exit(result.status ?? 1);
