/**
 * What an operator does by hand over months, against a daemon that runs as
 * the service user: commands run as root instead of `sudo -u xroad` (files
 * they create in the state dir are root's), a restore of the state dir or
 * the target from a backup. The compiled CLI against a real OpenSSH master
 * on 127.0.0.1; the daemon runs as an unprivileged OS user (runuser).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { type CliRun, passArgs, type RunningCli, runCli, startCli, waitFor } from '../helpers/cli.js';
import { ensureOsUser } from '../helpers/postgres.js';
import { deferrer, type SlaveDirs, slaveDirs } from '../helpers/slave.js';
import { sshdAvailable, startMaster, type TestMaster } from '../helpers/sshd.js';

const SERVICE_USER = 'xroad-sync-svc';
const asRoot = process.getuid?.() === 0;
const T = { timeout: 150_000, skip: (!sshdAvailable() && 'needs /usr/sbin/sshd') || (!asRoot && 'needs root (runuser to the service user)') };
const show = (r: CliRun) => `exit ${r.status ?? r.signal}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
const output = (d: RunningCli) => () => `--- daemon stdout\n${d.stdout()}--- daemon stderr\n${d.stderr()}`;

interface Setup extends SlaveDirs {
  master: TestMaster;
  args: string[];
  uid: number;
  gid: number;
  defer(step: () => Promise<unknown>): void;
}

/** A slave whose target, state dir, flag dir, log and ssh credentials belong to the service user, as the packages install them. */
async function setup(t: TestContext): Promise<Setup> {
  ensureOsUser(SERVICE_USER);
  const { uid, gid } = await idsOf(SERVICE_USER);
  const defer = deferrer(t);
  const dirs = await slaveDirs(defer, 'xroad-sync-operator-');
  await fs.chmod(dirs.base, 0o755);
  const master = await startMaster();
  defer(() => master.stop());
  const creds = path.join(dirs.base, 'ssh');
  await fs.mkdir(creds);
  const identity = path.join(creds, 'id');
  const knownHosts = path.join(creds, 'known_hosts');
  await fs.copyFile(master.identity, identity);
  await fs.copyFile(master.knownHosts, knownHosts);
  await fs.mkdir(dirs.stateDir);
  // The master's /etc/xroad belongs to xroad: a pass run as root gives the slave's copy to the same user (by name).
  await chownTree(dirs.source, uid, gid);
  for (const p of [dirs.target, dirs.stateDir, path.dirname(dirs.flagFile), creds, identity, knownHosts]) await fs.chown(p, uid, gid);
  await fs.chmod(dirs.stateDir, 0o750);
  const logDir = path.join(dirs.base, 'log');
  await fs.mkdir(logDir);
  await fs.chown(logDir, uid, gid);
  const s = { ...dirs, logFile: path.join(logDir, 'slave-sync.log'), master, uid, gid, defer };
  return { ...s, args: passArgs(master, { ...s, identity, knownHosts }) };
}

async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await fs.chown(dir, uid, gid);
  for (const e of await fs.readdir(dir, { withFileTypes: true, recursive: true })) await fs.lchown(path.join(e.parentPath, e.name), uid, gid);
}

async function idsOf(user: string): Promise<{ uid: number; gid: number }> {
  const line = (await fs.readFile('/etc/passwd', 'utf8')).split('\n').find((l) => l.startsWith(`${user}:`));
  assert.ok(line, `${user} in /etc/passwd`);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

function startServiceDaemon(s: Setup): RunningCli {
  const d = startCli(['daemon', ...s.args, '--interval', '1'], { under: ['runuser', '-u', SERVICE_USER, '--'] });
  s.defer(() => d.stop(3_000));
  return d;
}

/** A pass (as root) SIGKILLed at its commit's 2nd rename: returns the crash journal it left. */
async function killedMidCommit(s: Setup): Promise<string> {
  const killed = await runCli(['sync', ...s.args], { env: { XROAD_SYNC_TEST_HOOK: 'kill@rename:2' } });
  assert.equal(killed.signal, 'SIGKILL', show(killed));
  return path.join(s.stateDir, 'commit-journal.json');
}

async function writeOnMaster(s: Setup, rel: string, text: string): Promise<void> {
  await fs.writeFile(path.join(s.source, rel), text);
  await fs.chown(path.join(s.source, rel), s.uid, s.gid);
}

const okPasses = (d: RunningCli) => d.records().filter((r) => r.msg === 'pass' && r.result === 'ok');
const failedPasses = (d: RunningCli) => d.records().filter((r) => r.msg === 'pass' && r.result === 'failed');
const stateArgs = (s: Setup) => ['--flag-file', s.flagFile, '--state-dir', s.stateDir];

async function rootOwned(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of await fs.readdir(dir)) if ((await fs.lstat(path.join(dir, name))).uid === 0) out.push(name);
  return out;
}

test(
  'sudo xroad-sync pause / resume --now / sync as root beside a daemon run as the service user: the daemon goes on syncing and monitoring stays true',
  T,
  async (t) => {
    const s = await setup(t);
    const d = startServiceDaemon(s);
    await waitFor(() => okPasses(d).length >= 1, 30_000, "the daemon's first pass", output(d));

    const p = await runCli(['pause', ...stateArgs(s)]);
    assert.equal(p.status, 0, show(p));
    assert.match(p.stdout, /the daemon \(pid \d+\) sees the flag/, show(p));
    const r = await runCli(['resume', '--now', ...s.args]);
    assert.equal(r.status, 0, show(r));
    await writeOnMaster(s, 'after-root-sync.ini', 'x=1\n');
    const sync = await runCli(['sync', ...s.args]);
    assert.equal(sync.status, 0, show(sync));
    t.diagnostic(`root-owned in the state dir: ${(await rootOwned(s.stateDir)).join(', ')}`);

    await writeOnMaster(s, 'after-root.ini', 'y=1\n');
    await waitFor(() => existsSync(path.join(s.target, 'after-root.ini')), 30_000, "the service user's daemon to sync after root's commands", output(d));
    const before = okPasses(d).length;
    await waitFor(() => okPasses(d).length >= before + 2, 30_000, 'two more passes', output(d));
    assert.deepEqual(
      failedPasses(d).map((r) => r.error),
      [],
      'no failed pass of the daemon',
    );
    const check = await runCli(['status', '--check', '--max-age', '30s', ...stateArgs(s)]);
    assert.equal(check.status, 0, show(check));
  },
);

test(
  "a pass run as root and killed mid-commit: the service user's daemon, started while paused, rolls its journal forward, and monitoring does not say OK before",
  T,
  async (t) => {
    const s = await setup(t);
    const first = await runCli(['sync', ...s.args]);
    assert.equal(first.status, 0, show(first));
    for (const rel of ['a.ini', 'b.ini', 'c.ini']) await writeOnMaster(s, rel, `${rel}=1\n`);
    const journal = await killedMidCommit(s);
    assert.ok(existsSync(journal), 'a journal after a kill mid-commit');
    await fs.writeFile(s.flagFile, 'paused by hand\n');

    const check = await runCli(['status', '--check', ...stateArgs(s)], { under: ['runuser', '-u', SERVICE_USER, '--'] });
    t.diagnostic(check.stdout.trim());
    assert.notEqual(check.status, 0, `status --check as the service user must not say OK with a half-applied target\n${show(check)}`);

    const d = startServiceDaemon(s);
    await waitFor(() => !existsSync(journal), 30_000, "the paused daemon to roll root's journal forward", output(d));
    for (const rel of ['a.ini', 'b.ini', 'c.ini']) assert.ok(existsSync(path.join(s.target, rel)), `${rel} live after the roll-forward`);
  },
);

test(
  'a crash journal the service user cannot read (restored from a backup as root, 0600) is UNKNOWN to status --check and named by pause, never taken for none',
  T,
  async (t) => {
    const s = await setup(t);
    const first = await runCli(['sync', ...s.args]);
    assert.equal(first.status, 0, show(first));
    for (const rel of ['a.ini', 'b.ini', 'c.ini']) await writeOnMaster(s, rel, `${rel}=1\n`);
    const journal = await killedMidCommit(s);
    await fs.chown(journal, 0, 0);
    await fs.chmod(journal, 0o600);
    await fs.writeFile(s.flagFile, 'paused by hand\n');
    await fs.chown(s.flagFile, s.uid, s.gid);

    const asService = { under: ['runuser', '-u', SERVICE_USER, '--'] };
    const check = await runCli(['status', '--check', ...stateArgs(s)], asService);
    t.diagnostic(check.stdout.trim());
    assert.equal(check.status, 3, `UNKNOWN, naming the journal\n${show(check)}`);
    assert.match(check.stdout, /commit-journal\.json/, show(check));
    const p = await runCli(['pause', ...stateArgs(s)], asService);
    assert.equal(p.status, 0, show(p));
    assert.match(p.stdout, /cannot read .*commit-journal\.json/, show(p));
    assert.ok(existsSync(journal), 'the unreadable journal is left for someone who can read it');
  },
);

test(
  'a crash journal restored from a backup after its commit completed deletes nothing the master has since brought back (paused: nothing changes)',
  T,
  async (t) => {
    const s = await setup(t);
    await writeOnMaster(s, 'comeback.ini', 'old=1\n');
    const first = await runCli(['sync', ...s.args]);
    assert.equal(first.status, 0, show(first));
    // A commit that deletes comeback.ini and adds three files, killed part-way: its journal is backed up.
    await fs.rm(path.join(s.source, 'comeback.ini'));
    for (const rel of ['a.ini', 'b.ini', 'c.ini']) await writeOnMaster(s, rel, `${rel}=1\n`);
    const journal = await killedMidCommit(s);
    const backup = await fs.readFile(journal);
    const completing = await runCli(['sync', ...s.args]);
    assert.equal(completing.status, 0, show(completing));
    // Weeks later the master has comeback.ini again; the slave mirrors it.
    await writeOnMaster(s, 'comeback.ini', 'new=2\n');
    const later = await runCli(['sync', ...s.args]);
    assert.equal(later.status, 0, show(later));
    assert.equal(await fs.readFile(path.join(s.target, 'comeback.ini'), 'utf8'), 'new=2\n');

    // Paused for an upgrade, the state dir is restored from that backup.
    const p = await runCli(['pause', ...stateArgs(s)]);
    assert.equal(p.status, 0, show(p));
    await fs.writeFile(journal, backup);
    const paused = await runCli(['sync', ...s.args]);
    t.diagnostic(show(paused).replaceAll('\n', ' | '));
    assert.equal(
      await fs.readFile(path.join(s.target, 'comeback.ini'), 'utf8').catch(() => 'deleted'),
      'new=2\n',
      `the stale journal's delete must not run on today's file\n${show(paused)}`,
    );
  },
);

test(
  "the service user's daemon killed -9 mid-commit, then sudo xroad-sync pause as root while the restarted daemon starts: the journal is rolled forward once, pause is confirmed, nothing else lands, the daemon keeps working",
  T,
  async (t) => {
    const s = await setup(t);
    const first = await runCli(['sync', ...s.args], { under: ['runuser', '-u', SERVICE_USER, '--'] });
    assert.equal(first.status, 0, show(first));
    for (const rel of ['a.ini', 'b.ini', 'c.ini']) await writeOnMaster(s, rel, `${rel}=1\n`);
    const killed = startCli(['daemon', ...s.args, '--interval', '1'], {
      under: ['runuser', '-u', SERVICE_USER, '--'],
      env: { XROAD_SYNC_TEST_HOOK: 'kill@rename:2' },
    });
    const end = await killed.done;
    assert.ok(end.signal === 'SIGKILL' || end.status === 128 + 9, `the daemon killed itself mid-commit (runuser reports it as 137)\n${end.stderr}`);
    const journal = path.join(s.stateDir, 'commit-journal.json');
    assert.ok(existsSync(journal), "a journal after the daemon's kill mid-commit");

    const d = startServiceDaemon(s); // systemd's restart
    const p = await runCli(['pause', ...stateArgs(s)]);
    assert.equal(p.status, 0, show(p));
    await waitFor(() => !existsSync(journal), 30_000, 'the journal rolled forward (by pause or the daemon)', output(d));
    for (const rel of ['a.ini', 'b.ini', 'c.ini']) assert.ok(existsSync(path.join(s.target, rel)), `${rel} live`);
    const p2 = await runCli(['pause', ...stateArgs(s)]);
    assert.equal(p2.status, 0, show(p2));
    assert.match(p2.stdout, /the daemon \(pid \d+\) sees the flag/, show(p2));
    await writeOnMaster(s, 'while-paused.ini', 'no=1\n');
    const skipsBefore = d.records().filter((r) => r.msg === 'pass skipped: sync paused').length;
    await waitFor(() => d.records().filter((r) => r.msg === 'pass skipped: sync paused').length >= skipsBefore + 2, 30_000, 'two paused passes', output(d));
    assert.equal(existsSync(path.join(s.target, 'while-paused.ini')), false, 'nothing lands while paused');
    t.diagnostic(
      `root-owned in the state dir: ${(await rootOwned(s.stateDir)).join(', ') || 'none'}; in the target: ${(await rootOwned(s.target)).join(', ') || 'none'}`,
    );

    const r = await runCli(['resume', ...stateArgs(s)]);
    assert.equal(r.status, 0, show(r));
    await waitFor(() => existsSync(path.join(s.target, 'while-paused.ini')), 30_000, 'the daemon to sync after resume', output(d));
    assert.deepEqual(
      failedPasses(d).map((x) => x.error),
      [],
      'no failed pass of the daemon',
    );
  },
);

const LIBFAKETIME = [
  '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
  '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1',
  '/usr/lib64/faketime/libfaketime.so.1',
].find((p) => existsSync(p));

test('paused for an upgrade, the wall clock steps back: status --check stays OK (the age of the last sync does not matter while paused), as it does for a step forward', {
  ...T,
  skip: T.skip || (!LIBFAKETIME && 'needs libfaketime'),
}, async (t) => {
  const s = await setup(t);
  const first = await runCli(['sync', ...s.args]);
  assert.equal(first.status, 0, show(first));
  const p = await runCli(['pause', ...stateArgs(s)]);
  assert.equal(p.status, 0, show(p));
  for (const offset of ['-600', '+7200']) {
    const check = await runCli(['status', '--check', '--max-age', '5m', ...stateArgs(s)], {
      env: { LD_PRELOAD: LIBFAKETIME, FAKETIME: `${offset}s`, FAKETIME_DONT_FAKE_MONOTONIC: '1' },
    });
    t.diagnostic(`${offset}: ${check.stdout.trim()}`);
    assert.equal(check.status, 0, `clock stepped ${offset} s while paused\n${show(check)}`);
    assert.match(check.stdout, /paused since/, show(check));
  }
  const r = await runCli(['resume', ...stateArgs(s)]);
  assert.equal(r.status, 0, show(r));
  const stepped = await runCli(['status', '--check', '--max-age', '5m', ...stateArgs(s)], {
    env: { LD_PRELOAD: LIBFAKETIME, FAKETIME: '-600s', FAKETIME_DONT_FAKE_MONOTONIC: '1' },
  });
  assert.equal(stepped.status, 2, `not paused, a last success in the future is still CRITICAL\n${show(stepped)}`);
});

test("the state dir's filesystem full: a master change is not committed half (no journal, nothing changed), the daemon says why and keeps running, and catches up once space is freed", {
  ...T,
  skip: T.skip || (spawnSync('mount', ['--version']).status !== 0 && 'needs mount'),
}, async (t) => {
  const s = await setup(t);
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=256k,mode=0750,uid=${s.uid},gid=${s.gid}`, 'xroad-sync-full', s.stateDir], {
    encoding: 'utf8',
  });
  if (mounted.status !== 0) return t.skip(`cannot mount a tmpfs: ${mounted.stderr}`);
  s.defer(async () => spawnSync('umount', ['-l', s.stateDir]));
  const d = startServiceDaemon(s);
  await waitFor(() => okPasses(d).length >= 1, 30_000, "the daemon's first pass", output(d));
  const filler = path.join(s.stateDir, 'filler');
  spawnSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=4k', 'count=1000'], { encoding: 'utf8' });
  for (const rel of ['a.ini', 'b.ini']) await writeOnMaster(s, rel, `${rel}=${'x'.repeat(2000)}\n`);
  await waitFor(() => failedPasses(d).length >= 1 || d.child.exitCode !== null, 30_000, 'a pass to fail on the full state dir', output(d));
  t.diagnostic(`failed: ${String(failedPasses(d)[0]?.error)}`);
  assert.equal(d.child.exitCode, null, `the daemon keeps running\n${output(d)()}`);
  assert.match(String(failedPasses(d)[0]?.error), /ENOSPC/, output(d)());
  assert.equal(existsSync(path.join(s.target, 'a.ini')) && !existsSync(path.join(s.target, 'b.ini')), false, 'not half-committed');
  const check = await runCli(['status', '--check', ...stateArgs(s)]);
  t.diagnostic(check.stdout.trim());
  assert.notEqual(check.status, 0, `status --check must not say OK while every pass fails\n${show(check)}`);
  await fs.rm(filler);
  await waitFor(
    () => existsSync(path.join(s.target, 'b.ini')) && existsSync(path.join(s.target, 'a.ini')),
    60_000,
    'the daemon to catch up after space is freed',
    output(d),
  );
  const after = await runCli(['status', '--check', ...stateArgs(s)]);
  assert.equal(after.status, 0, show(after));
});

test("after a log rotation (nocreate), a sync run as root re-creates slave-sync.log: the service user's daemon still writes its lines there", T, async (t) => {
  const s = await setup(t);
  const d = startServiceDaemon(s);
  await writeOnMaster(s, 'before-rotation.ini', 'x=1\n');
  await waitFor(() => existsSync(path.join(s.target, 'before-rotation.ini')), 30_000, "the daemon's pass", output(d));
  await waitFor(async () => (await fs.readFile(s.logFile, 'utf8').catch(() => '')).includes('before-rotation.ini'), 10_000, 'its log line', output(d));
  await fs.rename(s.logFile, `${s.logFile}.1`); // logrotate, su xroad xroad, nocreate
  await writeOnMaster(s, 'by-root.ini', 'y=1\n');
  const sync = await runCli(['sync', ...s.args]);
  assert.equal(sync.status, 0, show(sync));
  await writeOnMaster(s, 'after-root.ini', 'z=1\n');
  await waitFor(() => existsSync(path.join(s.target, 'after-root.ini')), 30_000, "the daemon's pass after root's", output(d));
  const owner = (await fs.stat(s.logFile)).uid;
  await waitFor(
    async () => (await fs.readFile(s.logFile, 'utf8')).includes('after-root.ini'),
    10_000,
    `the daemon's line for after-root.ini in ${s.logFile} (owned by uid ${owner})`,
    output(d),
  );
});

test("the daemon's own --state-dir and --flag-file in XROAD_SYNC_DAEMON_OPTS: a plain `pause` (settings file only) pauses that daemon and is confirmed by it", {
  ...T,
  skip: !sshdAvailable() && 'needs /usr/sbin/sshd',
}, async (t) => {
  const defer = deferrer(t);
  const dirs = await slaveDirs(defer, 'xroad-sync-daemon-opts-');
  const master = await startMaster();
  defer(() => master.stop());
  const daemonState = path.join(dirs.base, 'daemon-state');
  const daemonFlag = path.join(dirs.base, 'daemon-flag', 'sync-disabled');
  await fs.mkdir(path.dirname(daemonFlag));
  const settings = path.join(dirs.base, 'xroad-sync.default');
  // XROAD_SYNC_OPTS as the timer's: another state dir and flag than the daemon's own.
  const common = passArgs(master, dirs).join(' ');
  await fs.writeFile(settings, [`XROAD_SYNC_OPTS="${common}"`, `XROAD_SYNC_DAEMON_OPTS="--state-dir ${daemonState} --flag-file ${daemonFlag}"`, ''].join('\n'));
  const env = { XROAD_SYNC_SETTINGS: settings };
  const d = startCli(['daemon', '--interval', '1'], { env });
  defer(() => d.stop(3_000));
  await waitFor(() => okPasses(d).length >= 1, 30_000, "the daemon's first pass", output(d));
  const p = await runCli(['pause'], { env });
  t.diagnostic(p.stdout.trim().replaceAll('\n', ' | '));
  assert.equal(p.status, 0, show(p));
  assert.match(p.stdout, /the daemon \(pid \d+\) sees the flag/, `pause must reach the running daemon\n${show(p)}`);
  await fs.writeFile(path.join(dirs.source, 'while-paused.ini'), 'no=1\n');
  const skips = () => d.records().filter((r) => r.msg === 'pass skipped: sync paused').length;
  await waitFor(() => skips() >= 2, 30_000, 'two paused passes', output(d));
  assert.equal(existsSync(path.join(dirs.target, 'while-paused.ini')), false, 'nothing lands after pause returned 0');
  const r = await runCli(['resume'], { env });
  assert.equal(r.status, 0, show(r));
  await waitFor(() => existsSync(path.join(dirs.target, 'while-paused.ini')), 30_000, 'the daemon to sync after resume', output(d));
});

test(
  'a pass run as root that gives files to root, killed mid-commit: sudo xroad-sync pause rolls it forward as root (its journal belongs to the service user now)',
  T,
  async (t) => {
    const s = await setup(t);
    const first = await runCli(['sync', ...s.args]);
    assert.equal(first.status, 0, show(first));
    // Root's on the master: a new directory and files.
    await fs.mkdir(path.join(s.source, 'rootdir'));
    for (const rel of ['a.ini', 'b.ini', 'rootdir/c.ini']) await fs.writeFile(path.join(s.source, rel), `${rel}=1\n`);
    const killed = await runCli(['sync', ...s.args], { env: { XROAD_SYNC_TEST_HOOK: 'kill@mkdir' } });
    assert.equal(killed.signal, 'SIGKILL', show(killed));
    const journal = path.join(s.stateDir, 'commit-journal.json');
    assert.equal((await fs.stat(journal)).uid, s.uid, "the journal of a root pass belongs to the state dir's owner");
    const p = await runCli(['pause', ...stateArgs(s)]);
    t.diagnostic(p.stdout.trim().replaceAll('\n', ' | '));
    assert.equal(p.status, 0, show(p));
    assert.match(p.stdout, /completed the commit interrupted/, show(p));
    for (const rel of ['a.ini', 'b.ini', 'rootdir', 'rootdir/c.ini'])
      assert.equal((await fs.stat(path.join(s.target, rel))).uid, 0, `${rel} live and root's, as on the master`);
    assert.equal(existsSync(journal), false, 'no journal left');
  },
);

test(
  "a root pass's journal the service user's paused daemon cannot replay (chown to root) is left in place, reported by status --check, and rolled forward by sudo xroad-sync pause",
  T,
  async (t) => {
    const s = await setup(t);
    const first = await runCli(['sync', ...s.args]);
    assert.equal(first.status, 0, show(first));
    await fs.mkdir(path.join(s.source, 'rootdir'));
    for (const rel of ['a.ini', 'rootdir/c.ini']) await fs.writeFile(path.join(s.source, rel), `${rel}=1\n`);
    const killed = await runCli(['sync', ...s.args], { env: { XROAD_SYNC_TEST_HOOK: 'kill@mkdir' } });
    assert.equal(killed.signal, 'SIGKILL', show(killed));
    const journal = path.join(s.stateDir, 'commit-journal.json');
    await fs.writeFile(s.flagFile, 'paused by hand\n');
    await fs.chown(s.flagFile, s.uid, s.gid);
    const d = startServiceDaemon(s);
    await waitFor(() => d.stderr().includes('could not roll forward'), 30_000, 'the paused daemon to try the journal', output(d));
    assert.ok(existsSync(journal), `the journal is left for root\n${output(d)()}`);
    const check = await runCli(['status', '--check', ...stateArgs(s)]);
    assert.equal(check.status, 2, `still reported as an interrupted commit\n${show(check)}`);
    const p = await runCli(['pause', ...stateArgs(s)]);
    assert.equal(p.status, 0, show(p));
    assert.match(p.stdout, /completed the commit interrupted/, show(p));
    assert.equal((await fs.stat(path.join(s.target, 'rootdir'))).uid, 0, "rootdir live and root's");
  },
);
