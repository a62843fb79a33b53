/**
 * Coordination: the daemon and the by-hand commands never trip over each other,
 * and monitoring cannot lie. Each case as an operator meets it: the compiled CLI as child processes (a real daemon and
 * by-hand commands beside it) against a real OpenSSH master on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { type CliRun, passArgs, type RunningCli, runCli, sleep, startCli, waitFor } from '../helpers/cli.js';
import { deferrer, type SlaveDirs, SMALL_TREE, slaveDirs } from '../helpers/slave.js';
import { makeTempDir, readTree, sshdAvailable, startMaster, type TestMaster, type TreeSpec, writeTree } from '../helpers/sshd.js';

const T = { timeout: 120_000, skip: !sshdAvailable() && 'needs /usr/sbin/sshd' };
const show = (r: CliRun) => `exit ${r.status ?? r.signal}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
const output = (d: RunningCli) => () => `--- daemon stdout\n${d.stdout()}--- daemon stderr\n${d.stderr()}`;

interface Setup extends SlaveDirs {
  master: TestMaster;
  args: string[];
  defer(step: () => Promise<unknown>): void;
}

async function setup(t: TestContext, tree: TreeSpec = SMALL_TREE): Promise<Setup> {
  const defer = deferrer(t);
  const dirs = await slaveDirs(defer, 'xroad-sync-coord-', tree);
  const master = await startMaster();
  defer(() => master.stop());
  return { ...dirs, master, defer, args: passArgs(master, dirs) };
}

function startDaemon(s: Setup, extra: string[] = [], env?: NodeJS.ProcessEnv): RunningCli {
  const d = startCli(['daemon', ...s.args, '--interval', '1', ...extra], { env });
  s.defer(() => d.stop(2_000));
  return d;
}

const okPasses = (d: RunningCli) => d.records().filter((r) => r.msg === 'pass' && r.result === 'ok');
const firstPass = (d: RunningCli) => waitFor(() => okPasses(d).length >= 1, 15_000, 'the first pass', output(d));
const logText = (s: Setup) => fs.readFile(s.logFile, 'utf8').catch(() => '');
const statusJson = async (s: Setup) => JSON.parse(await fs.readFile(path.join(s.stateDir, 'status.json'), 'utf8')) as Record<string, any>;

test('1. pause / resume --now beside a running daemon: 20 of 20 exit 0 with the change applied, no lock failure logged', T, async (t) => {
  const s = await setup(t);
  const d = startDaemon(s);
  await firstPass(d);
  const started = Date.now();
  for (let i = 0; i < 20; i++) {
    const p = await runCli(['pause', '--flag-file', s.flagFile, '--state-dir', s.stateDir]);
    assert.equal(p.status, 0, `round ${i}: pause\n${show(p)}`);
    // A different size each round: quick check compares size and whole-second mtime, as rsync does.
    const content = `round=${i}\n${'#'.repeat(i)}`;
    await fs.writeFile(path.join(s.source, 'conf.d', 'round.ini'), content);
    const r = await runCli(['resume', '--now', ...s.args]);
    assert.equal(r.status, 0, `round ${i}: resume --now\n${show(r)}\n${output(d)()}`);
    assert.equal(await fs.readFile(path.join(s.target, 'conf.d', 'round.ini'), 'utf8'), content, `round ${i}: the change is applied when resume --now returns`);
  }
  t.diagnostic(`20 rounds of pause / change / resume --now in ${Date.now() - started} ms`);
  const log = await logText(s);
  assert.doesNotMatch(log, /rsync error|code 75/, 'no lock collision is logged as a failed pass');
  assert.doesNotMatch(d.stdout(), /"result":"failed"/, 'the daemon recorded no failed pass');
  assert.notEqual((await statusJson(s)).lastPass?.result, 'failed');
});

test(
  '1b. sync beside a daemon mid-pass waits for it (message after a second) and succeeds; with a short --wait it exits 75 without logging a failed pass',
  T,
  async (t) => {
    const s = await setup(t);
    // Held at the hook until released (SIGUSR2) once the waiting sync has said so: however slow the machine.
    const d = startDaemon(s, [], { XROAD_SYNC_TEST_HOOK: 'pause@staged', XROAD_SYNC_TEST_PAUSE_MS: '90000' });
    await waitFor(() => d.stderr().includes('test hook paused at staged'), 15_000, 'the pass to reach the hook', output(d));
    const short = await runCli(['sync', ...s.args, '--wait', '1']);
    assert.equal(short.status, 75, show(short));
    assert.match(short.stderr, new RegExp(`pid ${d.child.pid}`), show(short));
    const waiting = startCli(['sync', '--now', ...s.args, '--wait', '60s']);
    const said = new RegExp(`waiting for the running pass \\(pid ${d.child.pid}\\)`);
    await waitFor(
      () => said.test(waiting.stderr()) || waiting.child.exitCode !== null,
      30_000,
      'the waiting message',
      () => waiting.stderr(),
    );
    d.child.kill('SIGUSR2');
    const sync = await waiting.done;
    assert.equal(sync.status, 0, show(sync));
    assert.match(sync.stderr, said, show(sync));
    assert.ok(existsSync(path.join(s.target, 'serverconf.xml')));
    assert.doesNotMatch(await logText(s), /rsync error|code 75/, 'the lock wait is not logged as a failed pass');
    assert.equal((await statusJson(s)).lastPass?.result, 'ok', 'no failed status record');
  },
);

test('2. pause during a pass in flight waits for it; the pass is abandoned before its commit and nothing changes for 10 s', T, async (t) => {
  const s = await setup(t);
  // The daemon's first pass stops after staging for 3 s: a pass in flight, not yet committing.
  const d = startDaemon(s, [], { XROAD_SYNC_TEST_HOOK: 'pause@staged', XROAD_SYNC_TEST_PAUSE_MS: '3000' });
  await waitFor(() => d.stderr().includes('test hook paused at staged'), 15_000, 'the pass to reach the hook', output(d));
  const p = await runCli(['pause', '--flag-file', s.flagFile, '--state-dir', s.stateDir]);
  assert.equal(p.status, 0, show(p));
  t.diagnostic(p.stdout.trim().replaceAll('\n', ' | '));
  assert.match(p.stdout, /Sync paused: false => true/);
  assert.match(p.stdout, /waited \d+(\.\d)? s for the running pass \(pid \d+\)/, show(p));
  const before = await readTree(s.target);
  await sleep(10_000);
  assert.deepEqual([...(await readTree(s.target)).keys()], [...before.keys()], 'nothing changed in the target after pause returned');
  assert.equal(existsSync(path.join(s.target, 'serverconf.xml')), false, 'the abandoned pass did not commit');
  assert.doesNotMatch(await logText(s), /rsync error/, 'an abandoned pass is not a failure');
});

test("3. a second daemon on the same state dir is refused, naming the first one's pid", T, async (t) => {
  const s = await setup(t);
  const d = startDaemon(s);
  await firstPass(d);
  const second = await runCli(['daemon', ...s.args, '--interval', '1'], { timeoutMs: 15_000 });
  assert.notEqual(second.status, 0, show(second));
  assert.notEqual(second.status, null, `the second daemon kept running\n${show(second)}`);
  assert.match(second.stderr, new RegExp(`pid ${d.child.pid}\\b`), show(second));
});

test('4. a lock naming a live unrelated pid (left by a pass that died before a reboot) is taken over at once', T, async (t) => {
  const s = await setup(t);
  const unrelated = spawn('sleep', ['60'], { stdio: 'ignore' });
  s.defer(async () => unrelated.kill('SIGKILL'));
  await fs.mkdir(s.stateDir, { recursive: true });
  // The format the previous version wrote: "pid\npurpose\n".
  await fs.writeFile(path.join(s.stateDir, 'sync.lock'), `${unrelated.pid}\nsync\n`);
  const r = await runCli(['sync', ...s.args]);
  assert.equal(r.status, 0, show(r));
  assert.match(r.stderr, /took over|stale/i, 'one notice about the takeover');
  assert.ok(existsSync(path.join(s.target, 'serverconf.xml')));
  assert.equal(existsSync(path.join(s.stateDir, 'sync.lock')), false, 'the lock is released after the pass');
});

test('5. SIGTERM right after a busy pass (thousands of stray temp files removed): exit within 5 s, no watcher left', T, async (t) => {
  const tree: Record<string, string> = { 'serverconf.xml': '<conf/>\n' };
  for (let dir = 0; dir < 40; dir++) tree[`d${dir}/keep.ini`] = 'k=1\n';
  const s = await setup(t, tree);
  await writeTree(s.target, tree);
  // New directories for the pass to create: the watcher is still adding them when the daemon is told to stop.
  const fresh: Record<string, string> = {};
  for (let dir = 0; dir < 100; dir++) fresh[`new${dir}/sub/file.ini`] = 'n=1\n';
  await writeTree(s.source, fresh);
  // 4000 temp files of a crashed pass, spread over the subdirectories.
  for (let dir = 0; dir < 40; dir++) {
    await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        fs.writeFile(path.join(s.target, `d${dir}`, `.xroad-sync.${(dir * 1000 + i).toString(16).padStart(12, '0')}.tmp`), 'x'),
      ),
    );
  }
  const d = startDaemon(s, ['--interval', '60']);
  await waitFor(() => okPasses(d).length >= 1, 60_000, 'the first pass', output(d));
  const termAt = Date.now();
  d.child.kill('SIGTERM');
  const run = await Promise.race([d.done, sleep(5_000).then(() => null)]);
  assert.ok(run, `no exit within 5 s of SIGTERM\n${output(d)()}`);
  t.diagnostic(`exited ${Date.now() - termAt} ms after SIGTERM`);
  assert.equal(run.status, 0, output(d)());
  const stopped = d.records().find((r) => r.msg === 'daemon stopped');
  assert.ok(stopped, output(d)());
  assert.deepEqual(stopped.openHandles, [], `watchers, timers or sockets left open at stop\n${output(d)()}`);
  const started = d.records().find((r) => r.msg === 'daemon started');
  assert.ok(Number(started?.inotifyWatches) > 40, `the count sees the watchers while running (${started?.inotifyWatches})`);
  assert.equal(stopped.inotifyWatches, 0, `inotify watches the kernel still holds for the daemon at stop\n${output(d)()}`);
});

test('5b. a second SIGTERM while stopping never leaves the daemon hanging', T, async (t) => {
  const s = await setup(t);
  const d = startDaemon(s, [], { XROAD_SYNC_TEST_HOOK: 'pause@staged', XROAD_SYNC_TEST_PAUSE_MS: '30000' });
  await waitFor(() => d.stderr().includes('test hook paused at staged'), 15_000, 'the pass to reach the hook', output(d));
  d.child.kill('SIGTERM');
  await sleep(100);
  d.child.kill('SIGTERM');
  const run = await Promise.race([d.done, sleep(5_000).then(() => null)]);
  assert.ok(run, `no exit within 5 s of two SIGTERMs\n${output(d)()}`);
  assert.equal(existsSync(path.join(s.target, 'serverconf.xml')), false, 'the pass stopped before its commit');
});

test('6. durations: --max-age with suffixes, garbage is a usage error, a last success in the future is not OK', T, async (t) => {
  const base = await makeTempDir('xroad-sync-dur-');
  t.after(() => fs.rm(base, { recursive: true, force: true }));
  const stateDir = path.join(base, 'state');
  await fs.mkdir(stateDir);
  const at = (msAgo: number) => new Date(Date.now() - msAgo).toISOString();
  const writeStatus = (lastSuccessAt: string) =>
    fs.writeFile(
      path.join(stateDir, 'status.json'),
      JSON.stringify({
        lastPass: { startedAt: lastSuccessAt, finishedAt: lastSuccessAt, result: 'ok', changed: 0, bytesReceived: 0, error: null, exitCode: 0 },
        lastSuccessAt,
        daemonPid: null,
      }),
    );
  const check = (maxAge: string) => runCli(['status', '--check', '--max-age', maxAge, '--state-dir', stateDir, '--flag-file', path.join(base, 'flag')]);

  await writeStatus(at(24 * 3600_000));
  for (const maxAge of ['5m', '300s', '1h', '300']) {
    const r = await check(maxAge);
    assert.equal(r.status, 2, `--max-age ${maxAge}, last success a day ago\n${show(r)}`);
    assert.match(r.stdout, /CRITICAL/);
  }
  await writeStatus(at(60_000));
  for (const [maxAge, code] of [
    ['5m', 0],
    ['30s', 2],
    ['2h', 0],
  ] as const) {
    const r = await check(maxAge);
    assert.equal(r.status, code, `--max-age ${maxAge}, last success a minute ago\n${show(r)}`);
  }
  for (const garbage of ['5x', 'abc', '', '-5', '5 m m', 'NaN']) {
    const r = await check(garbage);
    assert.equal(r.status, 1, `--max-age "${garbage}" must be a usage error\n${show(r)}`);
    assert.match(r.stderr, /--max-age/);
  }
  await writeStatus(at(-3600_000));
  const future = await check('5m');
  assert.notEqual(future.status, 0, show(future));
  assert.match(future.stdout, /future/, show(future));
  assert.doesNotMatch(future.stdout, /-\d+ s ago/);

  for (const [flag, value] of [
    ['--timeout', '5x'],
    ['--connect-timeout', 'soon'],
    ['--interval', '1d'],
    ['--poll-cpu', '0'],
    ['--poll-cpu', '150'],
    ['--poll-cpu', 'lots'],
  ] as const) {
    const cmd = flag === '--interval' || flag === '--poll-cpu' ? 'daemon' : 'sync';
    const r = await runCli([cmd, '--master', '127.0.0.1', '--state-dir', stateDir, flag, value], { timeoutMs: 10_000 });
    assert.equal(r.status, 1, `${cmd} ${flag} ${value}\n${show(r)}`);
    assert.match(r.stderr, new RegExp(flag));
  }
});

test('7. by-hand commands without flags read the settings file the units read (MASTER, XROAD_USER, XROAD_SYNC_OPTS)', T, async (t) => {
  const s = await setup(t);
  const settings = path.join(s.base, 'xroad-sync.default');
  const opts = s.args.filter((_, i, a) => !['--master', '--user'].includes(a[i]!) && !['--master', '--user'].includes(a[i - 1]!));
  await fs.writeFile(
    settings,
    [
      '# as an operator edits /etc/default/xroad-sync',
      `MASTER=${s.master.host}`,
      `XROAD_USER="${s.master.user}"`,
      `XROAD_SYNC_OPTS="${opts.join(' ')}"`,
      'XROAD_SYNC_DAEMON_OPTS=""',
      '',
    ].join('\n'),
  );
  const env = { XROAD_SYNC_SETTINGS: settings };
  const sync = await runCli(['sync', '--now'], { env });
  assert.equal(sync.status, 0, show(sync));
  assert.ok(existsSync(path.join(s.target, 'serverconf.xml')), 'sync --now used the settings file');

  const pause = await runCli(['pause'], { env });
  assert.equal(pause.status, 0, show(pause));
  assert.ok(existsSync(s.flagFile), 'pause used the flag file named in XROAD_SYNC_OPTS');
  await fs.writeFile(path.join(s.source, 'later.ini'), 'x=1\n');
  const resume = await runCli(['resume', '--now'], { env });
  assert.equal(resume.status, 0, show(resume));
  assert.ok(existsSync(path.join(s.target, 'later.ini')));

  const check = await runCli(['check'], { env });
  assert.equal(check.status, 0, show(check));
  assert.match(check.stdout, new RegExp(`master.*${s.master.host.replaceAll('.', '\\.')}.*${settings.replaceAll('.', '\\.')}`), show(check));

  // A flag beats the settings file.
  const other = await runCli(['sync', '--master', '127.0.0.2', '--connect-timeout', '1'], { env });
  assert.equal(other.status, 255, show(other));
  assert.match(other.stderr, /127\.0\.0\.2/);
});
