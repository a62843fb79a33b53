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

const KNOWN_UNFIXED = [
  'daemon-start-namespaced=the daemon keeps a deleted flag directory under PrivateTmp+BindPaths, so pause returns 0 and changes keep landing',
  'I5.journal=status --check says OK while a crash journal is pending (kill -9 mid-commit), paused or not',
  'sync-cmdline-exclude=a command-line --exclude replaces the settings file excludes instead of adding to them',
  'daemon-start-opts-exclude=XROAD_SYNC_DAEMON_OPTS --exclude replaces the settings file excludes',
  'second-writer=the lock lives in the state dir, not on the target: two state dirs, two writers at once',
  'I6.claim=a local edit that keeps size and mtime is logged as "a corrective pass follows" and never corrected',
  'I6.not-corrected=a local in-place edit that keeps size and mtime is never corrected by the daemon (no event, quick check blind)',
  'I3.quick-check-blind=a one-shot sync exits 0 leaving a local in-place edit that kept size and mtime (quick check)',
  'master-odd-name=a master name with a newline reaches status --check unescaped',
  'I5.daemon-pid=after the state dir is removed under a running daemon, status says no daemon runs',
  'I4.one-daemon=after the state dir is removed under a running daemon, a second daemon starts',
  'STOP.after-state-dir-loss=NEW: SIGTERM to a daemon whose state dir was removed exits 11 with a bare ENOENT on status.json',
  'I5.unreadable=status --check that cannot read the state dir says CRITICAL, not UNKNOWN',
].join(';');

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
      t.diagnostic(`seed ${seed}: ${result.failedAt === undefined ? 'ok' : `FAILED at step ${result.failedAt}`} in ${(result.elapsedMs / 1000).toFixed(1)} s${setAside.length ? `; disabled checks that fired: ${setAside.join(', ')}` : ''}`);
      if (result.failedAt !== undefined) failures.push(formatFailure(seed, result.steps.slice(0, result.failedAt + 1), result));
    }
    t.diagnostic(`${SEEDS.length} sequences in ${(totalMs / 1000).toFixed(1)} s`);
    assert.equal(failures.length, 0, failures.join('\n\n'));
  });
});
