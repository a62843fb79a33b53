/**
 * One writer per target: a pass or daemon with another state dir on the same
 * target is refused, naming the target and the writer that holds it; a daemon
 * whose state dir is removed under it notices and keeps its place. The
 * compiled CLI as child processes against a real OpenSSH master on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { type CliRun, passArgs, type RunningCli, runCli, startCli, waitFor } from '../helpers/cli.js';
import { deferrer, type SlaveDirs, slaveDirs } from '../helpers/slave.js';
import { readTree, sshdAvailable, startMaster, type TestMaster } from '../helpers/sshd.js';

const T = { timeout: 120_000, skip: !sshdAvailable() && 'needs /usr/sbin/sshd' };
const show = (r: CliRun) => `exit ${r.status ?? r.signal}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
const output = (d: RunningCli) => () => `--- stdout\n${d.stdout()}--- stderr\n${d.stderr()}`;

interface Setup extends SlaveDirs {
  master: TestMaster;
  /** The same target, master and flag file, with a state dir (and log) of its own. */
  argsWithStateDir(stateDir: string): string[];
  defer(step: () => Promise<unknown>): void;
}

async function setup(t: TestContext): Promise<Setup> {
  const defer = deferrer(t);
  const dirs = await slaveDirs(defer, 'xroad-sync-writer-', {
    'conf.d/local.ini': '[signer]\n',
    'serverconf.xml': '<conf/>\n',
    'conf.d/big.ini': 'a'.repeat(4096),
    'signer/keyconf.xml': '<keys/>\n',
  });
  const master = await startMaster();
  defer(() => master.stop());
  const argsWithStateDir = (stateDir: string) => passArgs(master, { ...dirs, stateDir, logFile: path.join(stateDir, '..', `${path.basename(stateDir)}.log`) });
  return { ...dirs, master, defer, argsWithStateDir };
}

function start(s: Setup, args: string[], env?: NodeJS.ProcessEnv): RunningCli {
  const run = startCli(args, { env });
  s.defer(() => run.stop(2_000));
  return run;
}

test(
  'a pass with another state dir on a target mid-pass is refused (naming the target, the holder and its state dir); the first pass commits whole',
  T,
  async (t) => {
    const s = await setup(t);
    const otherStateDir = path.join(s.base, 'other-state');
    // The first pass stops after staging (its temp files are in the target) for 4 s.
    const first = start(s, ['sync', ...s.argsWithStateDir(s.stateDir)], { XROAD_SYNC_TEST_HOOK: 'pause@staged', XROAD_SYNC_TEST_PAUSE_MS: '4000' });
    await waitFor(() => first.stderr().includes('test hook paused at staged'), 15_000, 'the first pass to reach the hook', output(first));

    const second = await runCli(['sync', ...s.argsWithStateDir(otherStateDir)]);
    const firstRun = await first.done;
    assert.equal(firstRun.status, 0, `the first pass must commit whole\n${show(firstRun)}\n--- second pass\n${show(second)}`);
    assert.equal(second.status, 75, show(second));
    assert.ok(second.stderr.includes(s.target), `the refusal names the target\n${show(second)}`);
    assert.match(second.stderr, new RegExp(`pid ${first.child.pid}\\b`), show(second));
    assert.ok(second.stderr.includes(s.stateDir), `the refusal names the holder's state dir\n${show(second)}`);
    assert.deepEqual([...(await readTree(s.target)).keys()].sort(), [...(await readTree(s.source)).keys()].sort(), 'the target mirrors the master');
  },
);

test("a daemon holds its target: a pass or a daemon with another state dir is refused at once; a pass with the daemon's state dir still runs", T, async (t) => {
  const s = await setup(t);
  const daemon = start(s, ['daemon', ...s.argsWithStateDir(s.stateDir), '--interval', '1']);
  await waitFor(() => daemon.records().some((r) => r.msg === 'pass' && r.result === 'ok'), 15_000, 'the first pass', output(daemon));

  const otherStateDir = path.join(s.base, 'other-state');
  const pass = await runCli(['sync', ...s.argsWithStateDir(otherStateDir)]);
  assert.equal(pass.status, 75, show(pass));
  assert.match(pass.stderr, new RegExp(`pid ${daemon.child.pid}\\b`), show(pass));
  const second = await runCli(['daemon', ...s.argsWithStateDir(otherStateDir), '--interval', '1'], { timeoutMs: 15_000 });
  assert.equal(second.status, 75, `the second daemon must be refused\n${show(second)}`);
  assert.ok(second.stderr.includes(s.target), show(second));

  const own = await runCli(['sync', ...s.argsWithStateDir(s.stateDir)]);
  assert.equal(own.status, 0, `a by-hand pass with the daemon's state dir waits its turn as before\n${show(own)}`);
});

test('the state dir removed under a running daemon: the daemon recreates its lock, status sees it, a second daemon is refused', T, async (t) => {
  const s = await setup(t);
  const daemon = start(s, ['daemon', ...s.argsWithStateDir(s.stateDir), '--interval', '1']);
  await waitFor(() => daemon.records().some((r) => r.msg === 'pass' && r.result === 'ok'), 15_000, 'the first pass', output(daemon));

  // The daemon may recreate it while rm runs (ENOTEMPTY): rm -rf again, as an operator would.
  await fs.rm(s.stateDir, { recursive: true, force: true, maxRetries: 5 });
  await waitFor(() => existsSync(path.join(s.stateDir, 'daemon.lock')), 15_000, 'the daemon to recreate its lock', output(daemon));
  const status = await runCli(['status', '--state-dir', s.stateDir, '--flag-file', s.flagFile]);
  assert.match(status.stdout, new RegExp(`daemon: .*${daemon.child.pid}`), show(status));

  const second = await runCli(['daemon', ...s.argsWithStateDir(s.stateDir), '--interval', '1'], { timeoutMs: 15_000 });
  assert.equal(second.status, 75, `the second daemon must be refused\n${show(second)}`);
  assert.match(second.stderr, new RegExp(`pid ${daemon.child.pid}\\b`), show(second));
  assert.equal(daemon.child.exitCode, null, `the first daemon still runs\n${output(daemon)()}`);
  assert.ok(
    daemon.records().some((r) => /daemon\.lock was gone .*recreated it/.test(String(r.msg))),
    `the daemon says so\n${output(daemon)()}`,
  );
});

test(
  'the target replaced under a running daemon (restored from a copy): the daemon locks the new directory; a pass with another state dir is still refused',
  T,
  async (t) => {
    const s = await setup(t);
    const daemon = start(s, ['daemon', ...s.argsWithStateDir(s.stateDir), '--interval', '1']);
    await waitFor(() => daemon.records().some((r) => r.msg === 'pass' && r.result === 'ok'), 15_000, 'the first pass', output(daemon));

    await fs.rename(s.target, `${s.target}.old`);
    await fs.cp(`${s.target}.old`, s.target, { recursive: true, preserveTimestamps: true });
    const passesBefore = daemon.records().filter((r) => r.msg === 'pass').length;
    await waitFor(
      () => daemon.records().filter((r) => r.msg === 'pass').length > passesBefore + 1,
      15_000,
      'two daemon passes on the new target',
      output(daemon),
    );

    const pass = await runCli(['sync', ...s.argsWithStateDir(path.join(s.base, 'other-state'))]);
    assert.equal(pass.status, 75, `a pass with another state dir must be refused\n${show(pass)}\n${output(daemon)()}`);
    assert.match(pass.stderr, new RegExp(`pid ${daemon.child.pid}\\b`), show(pass));
    assert.ok(
      daemon.records().some((r) => /is another directory than at start .*locked it again/.test(String(r.msg))),
      `the daemon says so\n${output(daemon)()}`,
    );
  },
);

test('a PATH without /usr/bin (a cron job, a stripped environment) still takes the target lock: flock is found where util-linux installs it', T, async (t) => {
  const s = await setup(t);
  const run = await runCli(['sync', ...s.argsWithStateDir(s.stateDir)], { env: { PATH: path.join(s.base, 'no-such-bin') } });
  assert.equal(run.status, 0, show(run));
  assert.ok([...(await readTree(s.target)).keys()].length > 0, 'the pass synced the target');
});

test(
  'the state dir restored from a copy made while the daemon ran (its own lock in it, another inode): the daemon keeps running and retakes its lock',
  T,
  async (t) => {
    const s = await setup(t);
    const daemon = start(s, ['daemon', ...s.argsWithStateDir(s.stateDir), '--interval', '1']);
    await waitFor(() => daemon.records().some((r) => r.msg === 'pass' && r.result === 'ok'), 15_000, 'the first pass', output(daemon));

    const backup = path.join(s.base, 'state-backup');
    await fs.cp(s.stateDir, backup, { recursive: true });
    await fs.rm(s.stateDir, { recursive: true, force: true, maxRetries: 5 });
    await fs.cp(backup, s.stateDir, { recursive: true });
    await waitFor(
      () => daemon.records().some((r) => /daemon\.lock was gone .*recreated it/.test(String(r.msg))) || daemon.child.exitCode !== null,
      15_000,
      'the daemon to retake its lock',
      output(daemon),
    );
    assert.equal(daemon.child.exitCode, null, `the daemon still runs\n${output(daemon)()}`);
    const status = await runCli(['status', '--state-dir', s.stateDir, '--flag-file', s.flagFile]);
    assert.match(status.stdout, new RegExp(`daemon: .*${daemon.child.pid}`), show(status));
  },
);
