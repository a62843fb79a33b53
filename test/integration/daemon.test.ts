/**
 * `xroad-sync daemon` as a child process against a real OpenSSH master on
 * 127.0.0.1: first pass at start, passes every interval over one SSH login,
 * live pause/resume on the flag file, corrective passes after local edits,
 * all-or-nothing stop on SIGTERM mid-transfer, reconnect after the master's
 * sshd restarts on the same port. Every wait is bounded (waitFor).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, watch } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { isTempName } from '../../src/local/temp-names.js';
import { passArgs, type RunningCli, runCli, sleep, startCli, waitFor } from '../helpers/cli.js';
import { deferrer, type SlaveDirs, slaveDirs } from '../helpers/slave.js';
import { descendantsOf, isAlive, makeTempDir, readTree, sshdAvailable, startMaster, type TestMaster } from '../helpers/sshd.js';

const T = { timeout: 60_000, skip: !sshdAvailable() && 'needs /usr/sbin/sshd (session counting reads its log)' };
const INITIAL = {
  'conf.d/local.ini': '[signer]\nport=5558\n',
  'signer/keyconf.xml': '<keyconf/>\n',
  'serverconf.xml': '<conf/>\n',
  current: { symlink: 'serverconf.xml' },
};

interface Setup extends SlaveDirs {
  master: TestMaster;
  /** Copies outside master.dir, which master.stop() deletes (the restart test stops the master mid-run). */
  identity: string;
  knownHosts: string;
  /** Cleanup, run last-in first-out after the test; every step runs even if an earlier one fails. */
  defer(step: () => Promise<unknown>): void;
}

async function setup(t: TestContext): Promise<Setup> {
  const defer = deferrer(t);
  const dirs = await slaveDirs(defer, 'xroad-sync-daemon-', INITIAL);
  const master = await startMaster();
  defer(() => master.stop());
  const s = { ...dirs, master, defer, identity: path.join(dirs.base, 'id_ed25519'), knownHosts: path.join(dirs.base, 'known_hosts') };
  await fs.copyFile(master.identity, s.identity);
  await fs.chmod(s.identity, 0o600);
  await fs.copyFile(master.knownHosts, s.knownHosts);
  await fs.mkdir(s.stateDir, { recursive: true });
  return s;
}

function startDaemon(s: Setup, interval = '1', env?: NodeJS.ProcessEnv): RunningCli {
  const d = startCli(['daemon', ...passArgs(s.master, s), '--interval', interval], { env });
  s.defer(() => d.stop(2_000));
  return d;
}

const passes = (d: RunningCli) => d.records().filter((r) => r.msg === 'pass');
const okPasses = (d: RunningCli) => passes(d).filter((r) => r.result === 'ok');
const output = (d: RunningCli) => () => `--- daemon stdout\n${d.stdout()}--- daemon stderr\n${d.stderr()}`;
const sameTree = async (a: string, b: string) => JSON.stringify([...(await readTree(a))]) === JSON.stringify([...(await readTree(b))]);
const readStatus = async (s: Setup) => JSON.parse(await fs.readFile(path.join(s.stateDir, 'status.json'), 'utf8')) as { daemonPid: number | null };

async function firstPass(d: RunningCli): Promise<void> {
  await waitFor(() => okPasses(d).length >= 1, 10_000, 'the first pass', output(d));
}

async function pause(d: RunningCli, s: Setup): Promise<void> {
  await fs.writeFile(s.flagFile, '');
  await waitFor(() => d.records().some((r) => r.msg === 'sync paused: flag file created'), 3_000, 'the pause record', output(d));
  await sleep(500); // a pass that started just before the flag (small tree: tens of ms) is over now
}

test('first pass at start, a master change after about one interval, daemonPid while running and null after stop', T, async (t) => {
  const s = await setup(t);
  const d = startDaemon(s);
  await firstPass(d);
  assert.ok(await sameTree(s.source, s.target), 'the target mirrors the master after the first pass');
  assert.equal((await readStatus(s)).daemonPid, d.child.pid);

  await fs.writeFile(path.join(s.source, 'conf.d', 'added.ini'), 'new=1\n');
  const ms = await waitFor(() => existsSync(path.join(s.target, 'conf.d', 'added.ini')), 5_000, 'the master change on the slave', output(d));
  t.diagnostic(`master change synced after ${ms} ms`);
  await waitFor(() => sameTree(s.source, s.target), 2_000, 'the target to mirror the master again');

  const run = await d.stop(5_000);
  assert.equal(run.status, 0, `exit ${run.status ?? run.signal} after SIGTERM\n${output(d)()}`);
  assert.equal((await readStatus(s)).daemonPid, null);
  assert.ok(d.records().some((r) => r.msg === 'daemon stopped'));
});

test('one SSH login serves every pass (warm session)', T, async (t) => {
  const s = await setup(t);
  const d = startDaemon(s);
  await waitFor(() => okPasses(d).length >= 4, 10_000, 'four passes', output(d));
  const log = await fs.readFile(s.master.logPath!, 'utf8');
  const logins = log.split('\n').filter((l) => l.includes('Accepted publickey')).length;
  assert.equal(logins, 1, `expected one login for ${okPasses(d).length} passes; sshd log:\n${log}`);
});

test('flag file: no pass while it exists, a pass within 2 s of its removal', T, async (t) => {
  const s = await setup(t);
  const d = startDaemon(s);
  await firstPass(d);
  await pause(d, s);
  const before = passes(d).length;
  await fs.writeFile(path.join(s.source, 'while-paused.ini'), 'x=1\n');
  await sleep(3_000);
  assert.equal(existsSync(path.join(s.target, 'while-paused.ini')), false, 'no pass may run while paused');
  assert.equal(passes(d).length, before, 'no pass record while paused');

  await fs.unlink(s.flagFile);
  const ms = await waitFor(() => existsSync(path.join(s.target, 'while-paused.ini')), 2_500, 'the pass after resume', output(d));
  t.diagnostic(`synced ${ms} ms after the flag was removed`);
  assert.ok(d.records().some((r) => r.msg === 'sync resumed: flag file removed'));
});

/**
 * A daemon past its first pass, with a long interval so that a restore can only come from the
 * corrective pass, not the schedule; and the synced file a test edits on the slave.
 */
async function daemonToEditUnder(t: TestContext): Promise<{ s: Setup; d: RunningCli; file: string }> {
  const s = await setup(t);
  const d = startDaemon(s, '5');
  await firstPass(d);
  await sleep(2_300); // the watcher ignores the first pass's own writes for 2 s
  return { s, d, file: path.join(s.target, 'conf.d', 'local.ini') };
}

test('a local edit of a synced file is logged as a warning and undone at once', T, async (t) => {
  const { s, d, file } = await daemonToEditUnder(t);
  const edited = Date.now();
  await fs.writeFile(file, 'edited on the slave, which is read-only\n');
  await waitFor(() => d.records().some((r) => r.level === 'warn' && r.path === 'conf.d/local.ini'), 3_000, 'a warn record naming conf.d/local.ini', output(d));
  await waitFor(async () => (await fs.readFile(file, 'utf8')) === INITIAL['conf.d/local.ini'], 3_000, 'the file to be restored', output(d));
  const ms = Date.now() - edited;
  t.diagnostic(`restored ${ms} ms after the edit`);
  assert.ok(ms < 4_000, 'restored by a corrective pass, before the next scheduled one');
  assert.ok(await sameTree(s.source, s.target));
});

test('a local edit that arrives in steps (truncate, a pause, the write) is undone by one corrective pass once it settles', T, async (t) => {
  // A pass that found the file half-written would leave it for the next scheduled pass, 5 s later.
  const { s, d, file } = await daemonToEditUnder(t);
  const edited = Date.now();
  await fs.truncate(file, 0);
  await sleep(100);
  await fs.writeFile(file, 'edited on the slave in two steps\n');
  await waitFor(async () => (await fs.readFile(file, 'utf8')) === INITIAL['conf.d/local.ini'], 3_000, 'the file to be restored', output(d));
  t.diagnostic(`restored ${Date.now() - edited} ms after the edit began`);
  assert.doesNotMatch(d.stderr(), /left for the next pass/, 'the corrective pass read the file before the edit had settled');
  assert.ok(await sameTree(s.source, s.target));
});

test('no-change passes: slave-sync.log and status.json untouched after the first quiet pass; a change is logged and recorded at once', T, async (t) => {
  const s = await setup(t);
  const d = startDaemon(s, '0.5');
  const statusFile = path.join(s.stateDir, 'status.json');
  // Pass 1 syncs, pass 2 is the first quiet one (logged: the pass before it changed something).
  await waitFor(() => okPasses(d).length >= 2, 10_000, 'two passes', output(d));
  const log = await fs.readFile(s.logFile, 'utf8');
  const status = await fs.stat(statusFile);
  assert.equal(log.split('\n').filter((l) => l.includes('total size')).length, 2, `two pass summaries so far:\n${log}`);
  await waitFor(() => okPasses(d).length >= 7, 15_000, 'five more passes', output(d));
  assert.equal(await fs.readFile(s.logFile, 'utf8'), log, 'quiet passes within a minute add nothing to slave-sync.log');
  const after = await fs.stat(statusFile);
  assert.deepEqual([after.ino, after.mtimeMs], [status.ino, status.mtimeMs], 'quiet passes within 30 s leave status.json alone');

  await fs.writeFile(path.join(s.source, 'conf.d', 'quiet-then-new.ini'), 'new=1\n');
  await waitFor(async () => (await fs.readFile(s.logFile, 'utf8')).includes('conf.d/quiet-then-new.ini'), 5_000, 'the change in slave-sync.log', output(d));
  await waitFor(async () => (await fs.stat(statusFile)).ino !== status.ino, 5_000, 'status.json rewritten after the change', output(d));
  const recorded = JSON.parse(await fs.readFile(statusFile, 'utf8')) as { lastPass: { changed: number } };
  assert.ok(recorded.lastPass.changed >= 1, `status.json records the changing pass: ${JSON.stringify(recorded)}`);
  assert.ok(existsSync(path.join(s.target, 'conf.d', 'quiet-then-new.ini')));
});

test('at the default log level a quiet pass writes no JSON record (journald), a changing pass does', T, async (t) => {
  const s = await setup(t);
  const d = startDaemon(s, '0.5', { XROAD_SYNC_LOG_LEVEL: 'info' });
  await firstPass(d);
  // Passes every 0.5 s: 2.5 s is several quiet passes; only the first of them is reported (the pass before it changed something).
  await sleep(2_500);
  const quiet = passes(d).length;
  assert.ok(quiet <= 2, `at most the first pass and the first quiet one, got ${quiet} records:\n${d.stdout()}`);
  await fs.writeFile(path.join(s.source, 'conf.d', 'journald.ini'), 'x=1\n');
  await waitFor(
    () =>
      passes(d)
        .slice(quiet)
        .some((r) => Number(r.changed) > 0),
    5_000,
    'the changing pass record',
    output(d),
  );
  await d.stop();
  const bad = await runCli(['daemon', ...passArgs(s.master, s)], { env: { XROAD_SYNC_LOG_LEVEL: 'loud' }, timeoutMs: 20_000 });
  assert.equal(bad.status, 1, `a bad level is a usage error\n${bad.stderr}`);
  assert.match(bad.stderr, /XROAD_SYNC_LOG_LEVEL=loud is not a log level/);
});

test('a chmod in the target between passes is undone although no-change passes reuse the last scan', T, async (t) => {
  const s = await setup(t);
  const d = startDaemon(s, '0.5');
  await waitFor(() => okPasses(d).length >= 3, 10_000, 'three passes', output(d));
  await sleep(2_300); // the watcher ignores the first pass's own writes for 2 s
  const file = path.join(s.target, 'signer', 'keyconf.xml');
  const mode = (await fs.stat(file)).mode & 0o7777;
  // chokidar reports no 'change' for a mode change: only the raw event drops the remembered scan.
  await fs.chmod(file, mode ^ 0o004);
  await waitFor(async () => ((await fs.stat(file)).mode & 0o7777) === mode, 5_000, 'the mode to be restored', output(d));
  assert.ok(await sameTree(s.source, s.target));
});

test('SIGTERM during a 64 MiB transfer: exit within 5 s, target entirely old or new, no temp files', T, async (t) => {
  const s = await setup(t);
  const d = startDaemon(s);
  await firstPass(d);
  const oldTree = await readTree(s.target);

  // Change the master while paused, so the next pass sees the whole new state at once.
  await pause(d, s);
  await fs.writeFile(path.join(s.source, 'big.bin'), randomBytes(64 * 1024 * 1024));
  await fs.writeFile(path.join(s.source, 'serverconf.xml'), '<conf version="2"/>\n');
  const newTree = await readTree(s.source);

  let killedAt = 0;
  let sawTemp = '';
  const kill = (name: string) => {
    if (killedAt || !isTempName(path.basename(name))) return;
    sawTemp = name;
    killedAt = Date.now();
    d.child.kill('SIGTERM');
  };
  const watcher = watch(s.target, { recursive: true }, (_event, name) => name && kill(String(name)));
  s.defer(async () => watcher.close());
  await fs.unlink(s.flagFile);
  await waitFor(
    async () => {
      if (!killedAt) for (const p of (await readTree(s.target).catch(() => new Map())).keys()) kill(p);
      return killedAt > 0;
    },
    10_000,
    'a temp file in the target',
    output(d),
  );
  const exited = await Promise.race([d.done, sleep(5_000).then(() => null)]);
  assert.ok(exited, `the daemon did not exit within 5 s of SIGTERM\n${output(d)()}`);
  t.diagnostic(`saw ${sawTemp}; exited ${Date.now() - killedAt} ms after SIGTERM with ${exited.status ?? exited.signal}`);
  assert.equal(exited.status, 0, output(d)());

  const after = await readTree(s.target);
  assert.deepEqual(
    [...after.keys()].filter((p) => isTempName(path.basename(p))),
    [],
    'no temp file remains',
  );
  const isOld = JSON.stringify([...after]) === JSON.stringify([...oldTree]);
  const isNew = JSON.stringify([...after]) === JSON.stringify([...newTree]);
  t.diagnostic(`target is ${isOld ? 'entirely old' : isNew ? 'entirely new' : 'MIXED'}`);
  assert.ok(isOld || isNew, `target is neither the old nor the new tree: ${[...after.keys()].join(' ')}`);
  assert.equal((await readStatus(s)).daemonPid, null);
});

test('SIGTERM while status.json is being written (slow disk) still stops the daemon cleanly', T, async (t) => {
  const s = await setup(t);
  // Every fsync takes 300 ms, as on a busy disk: recordPass's status.json write runs right after the pass record.
  const preload = path.join(s.base, 'slow-fsync.mjs');
  await fs.writeFile(preload, "import fs from 'node:fs';\nconst real = fs.fsync;\nfs.fsync = (fd, cb) => setTimeout(() => real(fd, cb), 300);\n");
  const d = startCli(['daemon', ...passArgs(s.master, s), '--interval', '5'], { env: { NODE_OPTIONS: `--import=${pathToFileURL(preload).href}` } });
  s.defer(() => d.stop(2_000));
  await firstPass(d);
  await sleep(100); // inside the 300 ms fsync of status.json (write-file-atomic has its signal-exit handler armed)
  d.child.kill('SIGTERM');
  const run = await Promise.race([d.done, sleep(5_000).then(() => null)]);
  assert.ok(run, `no exit within 5 s of SIGTERM\n${output(d)()}`);
  assert.equal(
    run.signal,
    null,
    `killed by ${run.signal}: signal-exit (write-file-atomic) re-raised it, so the daemon needs a process.on listener\n${output(d)()}`,
  );
  assert.equal(run.status, 0);
  assert.ok(d.records().some((r) => r.msg === 'daemon stopped'));
  assert.equal((await readStatus(s)).daemonPid, null);
});

test('master sshd restarted on the same port: failure logged, reconnect with backoff, converges', T, async (t) => {
  const s = await setup(t);
  const d = startDaemon(s);
  await firstPass(d);
  const restart = await prepareRestart(s);
  await s.master.stop();
  await waitFor(() => passes(d).some((r) => r.result === 'failed'), 5_000, 'a failed pass while the master is down', output(d));
  await fs.writeFile(path.join(s.source, 'after-restart.ini'), 'y=2\n');
  await sleep(1_500); // let the backoff run a round or two against the closed port
  const sshd = await restart.start();
  s.defer(() => sshd.stop());

  const ms = await waitFor(() => existsSync(path.join(s.target, 'after-restart.ini')), 6_000, 'convergence after the restart', output(d));
  t.diagnostic(`converged ${ms} ms after sshd came back`);
  await waitFor(() => sameTree(s.source, s.target), 2_000, 'the target to mirror the master');
  const failed = passes(d).filter((r) => r.result === 'failed');
  assert.match(String(failed[0]!.error), /127\.0\.0\.1:\d+/, 'the failure names the master');
  assert.ok(
    d.records().some((r) => r.level === 'warn' && /reconnect/.test(String(r.msg))),
    'the reconnect warning',
  );
  const times = failed.map((r) => Number(r.time));
  for (let i = 1; i < times.length; i++) assert.ok(times[i]! - times[i - 1]! >= 800, `failed passes ${times[i]! - times[i - 1]!} ms apart: no backoff`);
  // Logged after the pass's record, so possibly a moment after the file landed.
  await waitFor(() => d.records().some((r) => r.msg === 'connected' && Number(r.connections) >= 2), 2_000, 'the reconnect record', output(d));
  const logins = (await fs.readFile(sshd.logPath, 'utf8')).split('\n').filter((l) => l.includes('Accepted publickey')).length;
  assert.equal(logins, 1, 'one login to the restarted master');
});

// ---------------------------------------------------------------- restarting sshd on the same port

interface RestartedSshd {
  logPath: string;
  stop(): Promise<void>;
}

/**
 * startMaster() picks its own port and stop() deletes its directory, so to
 * bring "the same master" back the test copies its host key, authorized_keys
 * and sshd_config first, then runs sshd again on the same port from the copy.
 */
async function prepareRestart(s: Setup): Promise<{ start(): Promise<RestartedSshd> }> {
  const master = s.master;
  const dir = await makeTempDir('xroad-sync-restart-');
  s.defer(() => fs.rm(dir, { recursive: true, force: true }));
  for (const name of ['ssh_host_ed25519_key', 'authorized_keys']) {
    await fs.copyFile(path.join(master.dir, name), path.join(dir, name));
    await fs.chmod(path.join(dir, name), 0o600);
  }
  const config = path.join(dir, 'sshd_config');
  await fs.writeFile(config, (await fs.readFile(path.join(master.dir, 'sshd_config'), 'utf8')).replaceAll(master.dir, dir));
  const logPath = path.join(dir, 'sshd.log');
  return {
    async start() {
      const child = spawn('/usr/sbin/sshd', ['-D', '-E', logPath, '-f', config], { stdio: 'ignore' });
      const stop = () => stopTree(child);
      try {
        await waitFor(
          () => bannerOk(master.port),
          5_000,
          `sshd back on port ${master.port}`,
          () => String(child.exitCode),
        );
      } catch (err) {
        await stop();
        throw err;
      }
      return { logPath, stop };
    },
  };
}

function bannerOk(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => (sock.destroy(), resolve(ok));
    sock.setTimeout(500, () => done(false));
    sock.once('data', (b) => done(b.toString().startsWith('SSH-')));
    sock.once('error', () => done(false));
  });
}

/** sshd's per-connection children setsid(), so signal the whole descendant list, not a group. */
async function stopTree(child: ChildProcess): Promise<void> {
  if (child.pid === undefined) return;
  const pids = [child.pid, ...descendantsOf(child.pid)];
  const signal = (sig: NodeJS.Signals) =>
    pids.forEach((p) => {
      try {
        process.kill(p, sig);
      } catch {
        /* gone */
      }
    });
  signal('SIGTERM');
  await waitFor(() => pids.every((p) => !isAlive(p)), 2_000).catch(() => signal('SIGKILL'));
}
