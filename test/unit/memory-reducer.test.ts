/**
 * The idle heap shrinks back within seconds once a burst of garbage is over,
 * as V8's memory reducer is meant to do (Node 24 left it to a 100 s
 * watchdog: src/daemon/memory-reducer.ts). Run in a child Node, the one
 * running the tests (the executable's Node under npm scripts).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const MODULE = pathToFileURL(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/daemon/memory-reducer.js')).href;

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
  it('lets an idle process give its garbage back within seconds', () => {
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD], {
      env: { ...process.env, NUDGE: process.env.XS_TEST_NO_NUDGE ? '0' : '1' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(run.status, 0, `heap did not shrink: ${run.stdout}${run.stderr}`);
  });
});
