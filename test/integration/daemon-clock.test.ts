/**
 * The daemon's wall clock stepped back (libfaketime preloaded into the daemon
 * only, its offset changed while it runs) against a real OpenSSH master:
 * status.json is rewritten at once with the new wall time and keeps being
 * refreshed, `status --check` on the same clock says OK, and the periodic
 * full scan still finds a change inotify never reported.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { passArgs, type RunningCli, runCli, sleep, startCli, waitFor } from '../helpers/cli.js';
import { skipUnlessCI } from '../helpers/components.js';
import { deferrer, slaveDirs } from '../helpers/slave.js';
import { sshdAvailable, startMaster } from '../helpers/sshd.js';

const LIBFAKETIME = [
  '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
  '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1',
  '/usr/lib64/faketime/libfaketime.so.1',
].find((p) => existsSync(p));
const T = {
  timeout: 120_000,
  skip: (!sshdAvailable() && 'needs /usr/sbin/sshd') || skipUnlessCI(!LIBFAKETIME && 'needs libfaketime (Debian package faketime)'),
};
const ORIGINAL = '[signer]\nport=5558\n';
const STEP_BACK_S = 600;
const FULL_SCAN_MS = 2_000;

const output = (d: RunningCli) => () => `--- daemon stdout\n${d.stdout()}--- daemon stderr\n${d.stderr()}`;

test('after the wall clock steps back, status.json is rewritten at once and kept fresh, and the full scan still runs', T, async (t) => {
  const defer = deferrer(t);
  const s = await slaveDirs(defer, 'xroad-sync-clock-', { 'conf.d/local.ini': ORIGINAL, 'serverconf.xml': '<conf/>\n' });
  const master = await startMaster();
  defer(() => master.stop());
  const offsetFile = path.join(s.base, 'faketime-offset');
  await fs.writeFile(offsetFile, '+0\n');
  // Only CLOCK_REALTIME moves: the monotonic clock is what a step must not disturb.
  const clock = { LD_PRELOAD: LIBFAKETIME, FAKETIME_TIMESTAMP_FILE: offsetFile, FAKETIME_NO_CACHE: '1', FAKETIME_DONT_FAKE_MONOTONIC: '1' };
  const d = startCli(['daemon', ...passArgs(master, s), '--interval', '1'], { env: { ...clock, XROAD_SYNC_TEST_FULL_SCAN_MS: String(FULL_SCAN_MS) } });
  defer(() => d.stop(2_000));
  await waitFor(() => d.records().some((r) => r.msg === 'pass' && r.result === 'ok'), 30_000, 'the first pass', output(d));
  await sleep(2_300); // the watcher ignores the first pass's own writes for 2 s

  const statusFile = path.join(s.stateDir, 'status.json');
  const finishedAt = async () => Date.parse((JSON.parse(await fs.readFile(statusFile, 'utf8')) as { lastPass: { finishedAt: string } }).lastPass.finishedAt);
  await fs.writeFile(offsetFile, `-${STEP_BACK_S}\n`);
  const steppedAt = Date.now();
  // Written after the step: its wall time is behind the real one by about the step.
  const afterStep = async () => (await finishedAt()) < Date.now() - (STEP_BACK_S - 60) * 1000;
  const ms = await waitFor(afterStep, 20_000, 'status.json rewritten with the stepped-back time', output(d));
  t.diagnostic(`status.json rewritten ${ms} ms after the step`);
  const check = await runCli(['status', '--check', '--state-dir', s.stateDir, '--flag-file', s.flagFile], { env: clock });
  assert.equal(check.status, 0, `status --check on the daemon's clock: ${check.stdout}${check.stderr}`);

  // The full scan: a write inotify does not report, corrected within its period.
  const file = path.join(s.target, 'conf.d', 'local.ini');
  execFileSync('python3', [
    '-c',
    'import mmap,sys\nwith open(sys.argv[1], "r+b") as f:\n m = mmap.mmap(f.fileno(), 0)\n m[9:18] = b"port=7777"\n m.close()',
    file,
  ]);
  await waitFor(async () => (await fs.readFile(file, 'utf8')) === ORIGINAL, 3 * FULL_SCAN_MS + 30_000, 'the mmap write corrected by the full scan', output(d));

  // And the 30 s refresh of status.json goes on, on the daemon's monotonic clock.
  const first = await finishedAt();
  await waitFor(async () => (await finishedAt()) > first, 45_000, 'status.json refreshed again', output(d));
  t.diagnostic(`refreshed again ${Date.now() - steppedAt} ms after the step`);
});
