/**
 * Sequences the simulation found, replayed as they were printed: each one
 * failed before the fix its name describes. A new finding joins this list
 * with the fix, so the budget's random seeds need not meet it again.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sshdAvailable, suiteMaster, type TestMaster } from '../helpers/sshd.js';
import { formatFailure, runSequence, type SimOptions } from './simulation.js';
import type { Step } from './steps.js';

const FOUND: ReadonlyArray<{ readonly name: string; readonly steps: readonly Step[] }> = [
  {
    name: 'a daemon whose state dir was removed stops cleanly on SIGTERM (it exited 11 on a bare ENOENT writing status.json)',
    steps: [
      { kind: 'daemon-start', arg: 1 },
      { kind: 'state-dir-loss', arg: 1 },
      { kind: 'daemon-stop', arg: 1 },
    ],
  },
  {
    name: 'a one-shot sync corrects a local edit that kept size and mtime (it exited 0 and left the edit in place)',
    steps: [
      { kind: 'status-check', arg: 1979160405 },
      { kind: 'local-edit', arg: 1740707929 },
      { kind: 'sync', arg: 1277063237 },
    ],
  },
  {
    name: "a pass with another state dir completes a killed pass's commit instead of removing its staged files (it removed them as strays, leaving a journal naming files that were gone)",
    steps: [
      { kind: 'local-edit', arg: 9491739 },
      { kind: 'sync-killed-mid-commit', arg: 994786988 },
      { kind: 'second-writer', arg: 221548311 },
    ],
  },
];

const OPTS: SimOptions = { convergeMs: 10_000, fullScanMs: 0, disabled: new Map() };
const T = { timeout: 120_000, skip: !sshdAvailable() && 'needs /usr/sbin/sshd' };

describe('operator-chaos findings, replayed', () => {
  let master: TestMaster;
  suiteMaster((m) => (master = m));
  for (const found of FOUND) {
    test(found.name, T, async () => {
      const result = await runSequence(master, found.steps, OPTS);
      assert.equal(result.failedAt, undefined, result.failedAt === undefined ? '' : formatFailure(undefined, found.steps, result));
    });
  }
});
