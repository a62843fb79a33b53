/**
 * The operator-chaos simulation's CI budget: a fixed list of seeds, each a
 * short sequence of operator and environment steps against the real CLI,
 * daemon and sshd, every invariant judged after every step. A failure prints
 * the seed, the failing prefix and the command that replays it. Longer and
 * random runs: `npm run chaos -- --seed N --steps M --sequences K`.
 *
 * KNOWN_UNFIXED names the step kinds and checks left out here, each with the
 * defect that trips it; an entry goes when its fix is merged. CHAOS_DISABLE
 * (same "name=reason;…" form) replaces the list, e.g. CHAOS_DISABLE= runs all.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sshdAvailable, suiteMaster, type TestMaster } from '../helpers/sshd.js';
import { formatFailure, generateSequence, parseDisabled, runSequence, type SimOptions } from './simulation.js';

// Every defect the simulation has found is fixed: nothing is left out. A new finding that cannot be
// fixed at once goes here as 'step-or-check=reason', never silently.
const KNOWN_UNFIXED = '';

/** Fixed for determinism of what is tried; the processes' timing still varies, as in production. */
const SEEDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
const STEPS = 5;

const disabled = parseDisabled(process.env.CHAOS_DISABLE ?? KNOWN_UNFIXED);
const OPTS: SimOptions = { convergeMs: 10_000, fullScanMs: 0, disabled };
const T = { timeout: 180_000, skip: !sshdAvailable() && 'needs /usr/sbin/sshd' };

describe('operator-chaos simulation (CI budget)', () => {
  let master: TestMaster;
  suiteMaster((m) => (master = m));

  test(`${SEEDS.length} seeded sequences of ${STEPS} steps keep I1-I6`, T, async (t) => {
    for (const [name, why] of disabled) t.diagnostic(`disabled ${name}: ${why}`);
    const failures: string[] = [];
    let totalMs = 0;
    for (const seed of SEEDS) {
      const result = await runSequence(master, generateSequence(seed, STEPS, disabled), OPTS);
      totalMs += result.elapsedMs;
      const setAside = [...new Set(result.suppressed.map((x) => x.check))];
      t.diagnostic(
        `seed ${seed}: ${result.failedAt === undefined ? 'ok' : `FAILED at step ${result.failedAt}`} in ${(result.elapsedMs / 1000).toFixed(1)} s${setAside.length ? `; disabled checks that fired: ${setAside.join(', ')}` : ''}`,
      );
      if (result.failedAt !== undefined) failures.push(formatFailure(seed, result.steps.slice(0, result.failedAt + 1), result));
    }
    t.diagnostic(`${SEEDS.length} sequences in ${(totalMs / 1000).toFixed(1)} s`);
    assert.equal(failures.length, 0, failures.join('\n\n'));
  });
});
