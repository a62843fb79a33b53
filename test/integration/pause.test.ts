/**
 * `pause` means paused when it returns 0, and the pause hides nothing: the
 * compiled CLI against a real OpenSSH master on 127.0.0.1, the daemon run
 * under the daemon unit's own mount layout (reproduced with `unshare -m`,
 * no systemd needed), an interrupted commit met while paused, and `resume`
 * beside a daemon whose pass fails.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type CliRun, passArgs, type RunningCli, runCli, startCli, waitFor } from '../helpers/cli.js';
import { deferrer, type SlaveDirs, SMALL_TREE, slaveDirs } from '../helpers/slave.js';
import { readTree, sshdAvailable, startMaster, type TestMaster, type TreeSpec } from '../helpers/sshd.js';
import { until } from '../helpers/wait.js';

const T = { timeout: 150_000, skip: !sshdAvailable() && 'needs /usr/sbin/sshd' };
const canUnshare = process.getuid?.() === 0 && spawnSync('unshare', ['-m', 'true']).status === 0;
const TNS = { ...T, skip: T.skip || (!canUnshare && 'needs root and unshare -m (mount namespaces)') };
const show = (r: CliRun) => `exit ${r.status ?? r.signal}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
const output = (d: RunningCli) => () => `--- daemon stdout\n${d.stdout()}--- daemon stderr\n${d.stderr()}`;
const DAEMON_UNIT = fileURLToPath(new URL('../../../service/xroad-sync-daemon.service', import.meta.url));

interface Setup extends SlaveDirs {
  master: TestMaster;
  args: string[];
  defer(step: () => Promise<unknown>): void;
}

/** `flagFile` lives in `<base>/vartmp/xroad`: `<base>/vartmp` plays the host's /var/tmp. */
async function setup(t: TestContext, tree: TreeSpec = SMALL_TREE): Promise<Setup & { varTmp: string }> {
  const defer = deferrer(t);
  const dirs = await slaveDirs(defer, 'xroad-sync-pause-', tree);
  const varTmp = path.join(dirs.base, 'vartmp');
  const flagFile = path.join(varTmp, 'xroad', 'sync-disabled');
  await fs.mkdir(path.dirname(flagFile), { recursive: true });
  const master = await startMaster();
  defer(() => master.stop());
  const s = { ...dirs, flagFile, varTmp, master, defer };
  return { ...s, args: passArgs(master, s) };
}

function startDaemon(s: Setup, opts: { under?: string[]; env?: NodeJS.ProcessEnv } = {}): RunningCli {
  const d = startCli(['daemon', ...s.args, '--interval', '1'], opts);
  s.defer(() => d.stop(3_000));
  return d;
}

const okPasses = (d: RunningCli) => d.records().filter((r) => r.msg === 'pass' && r.result === 'ok');
const pausedSkips = (d: RunningCli) => d.records().filter((r) => r.msg === 'pass skipped: sync paused').length;
const pause = (s: Setup) => runCli(['pause', '--flag-file', s.flagFile, '--state-dir', s.stateDir]);

// ---------------------------------------------------------------------------
// The unit's mount namespace, without systemd
// ---------------------------------------------------------------------------

interface Layout {
  /** PrivateTmp=yes or TemporaryFileSystem=/var/tmp: the daemon gets an empty /var/tmp of its own. */
  readonly privateVarTmp: boolean;
  /** BindPaths=/var/tmp/xroad: the host's flag directory bound back in; `optional` for a "-" prefix. */
  readonly bindFlagDir: false | { optional: boolean };
  /** ProtectSystem=strict: what is not private or bound is read-only. */
  readonly readOnly: boolean;
}

function unitValues(text: string, key: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith(`${key}=`))
    .flatMap((l) =>
      l
        .slice(key.length + 1)
        .split(/\s+/)
        .filter(Boolean),
    );
}

/** What the daemon unit as shipped does to /var/tmp and /var/tmp/xroad. */
function shippedLayout(): Layout {
  const unit = readFileSync(DAEMON_UNIT, 'utf8');
  const bind = [...unitValues(unit, 'BindPaths'), ...unitValues(unit, 'BindReadOnlyPaths')].find((p) => p.replace(/^-/, '').startsWith('/var/tmp'));
  return {
    privateVarTmp: unitValues(unit, 'PrivateTmp').includes('yes') || unitValues(unit, 'TemporaryFileSystem').some((p) => p.startsWith('/var/tmp')),
    bindFlagDir: bind === undefined ? false : { optional: bind.startsWith('-') },
    readOnly: unitValues(unit, 'ProtectSystem').includes('strict'),
  };
}

/** The pre-fix layout, as an operator's drop-in or an older package may still have it. */
const PINNED_LAYOUT: Layout = { privateVarTmp: true, bindFlagDir: { optional: false }, readOnly: true };

/**
 * `unshare -m` + a shell that builds `layout` over `varTmp` as systemd does
 * over /var/tmp, then execs the daemon. A missing bind source fails the start
 * with 226, as systemd's 226/NAMESPACE does.
 */
function namespaceOf(layout: Layout, varTmp: string, stage: string): string[] {
  const script = [
    'set -e',
    'H="$1"; S="$2"; shift 2',
    ...(layout.privateVarTmp && layout.bindFlagDir
      ? [
          `if [ -d "$H/xroad" ]; then mount --bind "$H/xroad" "$S"; BOUND=1; else ${layout.bindFlagDir.optional ? 'BOUND=' : 'echo "226/NAMESPACE: bind source $H/xroad is missing" >&2; exit 226'}; fi`,
        ]
      : []),
    ...(layout.privateVarTmp ? ['mount -t tmpfs tmpfs "$H"'] : []),
    ...(layout.privateVarTmp && layout.bindFlagDir ? ['if [ -n "$BOUND" ]; then mkdir "$H/xroad"; mount --bind "$S" "$H/xroad"; umount "$S"; fi'] : []),
    ...(!layout.privateVarTmp && layout.readOnly ? ['mount --bind "$H" "$H"', 'mount -o remount,bind,ro "$H"'] : []),
    'exec "$@"',
  ].join('\n');
  return ['unshare', '-m', '--propagation', 'private', 'sh', '-c', script, 'sh', varTmp, stage];
}

async function startSandboxed(s: Setup & { varTmp: string }, layout: Layout): Promise<RunningCli> {
  const stage = path.join(s.base, 'bind-stage');
  await fs.mkdir(stage, { recursive: true });
  return startDaemon(s, { under: namespaceOf(layout, s.varTmp, stage) });
}

/** tmpfiles ageing, or an operator fixing the owner: the flag directory goes and comes back (a new inode). */
async function replaceFlagDir(s: { flagFile: string }): Promise<void> {
  await fs.rm(path.dirname(s.flagFile), { recursive: true, force: true });
  await fs.mkdir(path.dirname(s.flagFile), { mode: 0o1750 });
}

/**
 * After `pause` returned 0: a master change must not land. Waits (bounded)
 * until the daemon has skipped three scheduled passes because it is paused,
 * or until the change landed, and says which.
 */
let changeNo = 0;
async function assertNothingLands(s: Setup, d: RunningCli): Promise<void> {
  const skipsBefore = pausedSkips(d);
  const name = `after-pause-${++changeNo}.ini`;
  await fs.writeFile(path.join(s.source, name), 'landed=1\n');
  const landed = () => existsSync(path.join(s.target, name));
  await waitFor(() => landed() || pausedSkips(d) >= skipsBefore + 3, 20_000, 'three paused passes or the change landing', output(d));
  assert.equal(landed(), false, `a master change landed after pause returned 0\n${output(d)()}`);
}

test(
  "pause beside a daemon under the unit's mount layout, after /var/tmp/xroad was replaced: acknowledged and nothing lands, or a loud failure; the next start works without the directory",
  TNS,
  async (t) => {
    const s = await setup(t);
    const layout = shippedLayout();
    t.diagnostic(`the unit's layout: ${JSON.stringify(layout)}`);
    const d = await startSandboxed(s, layout);
    await waitFor(() => okPasses(d).length >= 1, 20_000, 'the first pass', output(d));
    // Many replacements: a look racing an rm -rf meets the dying directory, which is not a pinned one.
    for (let i = 0; i < 40; i++) await replaceFlagDir(s);
    const p = await pause(s);
    t.diagnostic(show(p).replaceAll('\n', ' | '));
    if (p.status === 0) {
      assert.match(p.stdout, new RegExp(`the daemon \\(pid ${d.child.pid}\\) sees the flag`), `the same daemon confirmed\n${show(p)}\n${output(d)()}`);
      await assertNothingLands(s, d);
    } else {
      assert.match(p.stderr, new RegExp(s.flagFile.replaceAll('.', '\\.')), `the failure names the flag\n${show(p)}`);
      assert.match(p.stderr, new RegExp(`pid ${d.child.pid}|restart`), `the failure names the daemon and what to do\n${show(p)}`);
    }
    // The next start (systemd's Restart=, or a reboot before tmpfiles ran) while the directory is missing.
    await d.stop(5_000);
    await fs.rm(path.dirname(s.flagFile), { recursive: true, force: true });
    const again = await startSandboxed(s, layout);
    await waitFor(
      () => again.records().some((r) => r.msg === 'daemon started') || again.child.exitCode !== null,
      20_000,
      'the daemon to start or fail',
      output(again),
    );
    assert.equal(again.child.exitCode, null, `the daemon did not start without ${path.dirname(s.flagFile)}\n${output(again)()}`);
    await waitFor(() => okPasses(again).length >= 1, 20_000, 'a pass of the restarted daemon', output(again));
    // The directory comes back (tmpfiles, xroad-base): the running daemon must see a pause made in it.
    await fs.mkdir(path.dirname(s.flagFile), { mode: 0o1750 });
    const p2 = await pause(s);
    assert.equal(p2.status, 0, `pause once the directory is back\n${show(p2)}\n${output(again)()}`);
    await assertNothingLands(s, again);
  },
);

test('a daemon whose flag directory is a deleted one (a bind mount pins it) exits non-zero naming it, so systemd restarts it', TNS, async (t) => {
  const s = await setup(t);
  const d = await startSandboxed(s, PINNED_LAYOUT);
  await waitFor(() => okPasses(d).length >= 1, 20_000, 'the first pass', output(d));
  await replaceFlagDir(s);
  const p = await pause(s);
  t.diagnostic(show(p).replaceAll('\n', ' | '));
  // Success is only honest once the pinned daemon has let go of its lock (it exits; a restarted one sees the real directory).
  if (p.status !== 0) assert.match(p.stderr, /sync-disabled/, show(p));
  const exited = await until(() => d.child.exitCode !== null, 15_000);
  assert.ok(exited, `the daemon kept running on a deleted flag directory\n${output(d)()}`);
  assert.notEqual(d.child.exitCode, 0, output(d)());
  assert.match(d.stdout() + d.stderr(), /deleted/, `the daemon says why it exits\n${output(d)()}`);
});

test('pause beside a daemon that does not answer (stopped) fails non-zero naming the flag, the pid and the restart; the flag stays', T, async (t) => {
  const s = await setup(t);
  const d = startDaemon(s);
  await waitFor(() => okPasses(d).length >= 1, 20_000, 'the first pass', output(d));
  d.child.kill('SIGSTOP');
  s.defer(async () => d.child.kill('SIGCONT'));
  const p = await pause(s);
  d.child.kill('SIGCONT');
  assert.notEqual(p.status, 0, `pause returned success although the daemon never saw the flag\n${show(p)}`);
  assert.match(p.stderr, new RegExp(s.flagFile.replaceAll('.', '\\.')), show(p));
  assert.match(p.stderr, new RegExp(`pid ${d.child.pid}\\b`), show(p));
  assert.match(p.stderr, /systemctl restart xroad-sync-daemon/, show(p));
  assert.ok(existsSync(s.flagFile), 'the flag stays for the daemon to find');
  // Running again, it sees the flag: a second pause is acknowledged.
  const p2 = await pause(s);
  assert.equal(p2.status, 0, `${show(p2)}\n${output(d)()}`);
  await assertNothingLands(s, d);
});

// ---------------------------------------------------------------------------
// An interrupted commit met while paused
// ---------------------------------------------------------------------------

const NEW_FILES: TreeSpec = { 'a.ini': 'a=1\n', 'b.ini': 'b=1\n', 'c.ini': 'c=1\n', 'conf.d/d.ini': 'd=1\n' };

/** A synced target, then a pass SIGKILLed in the middle of its commit: the journal is left behind, the target half-applied. */
async function interruptedCommit(s: Setup): Promise<void> {
  const first = await runCli(['sync', ...s.args]);
  assert.equal(first.status, 0, show(first));
  for (const [rel, text] of Object.entries(NEW_FILES)) {
    await fs.mkdir(path.dirname(path.join(s.source, rel)), { recursive: true });
    await fs.writeFile(path.join(s.source, rel), text as string);
  }
  const killed = await runCli(['sync', ...s.args], { env: { XROAD_SYNC_TEST_HOOK: 'kill@rename:2' } });
  assert.equal(killed.signal, 'SIGKILL', show(killed));
  assert.ok(existsSync(path.join(s.stateDir, 'commit-journal.json')), 'a journal after a kill mid-commit');
  const present = Object.keys(NEW_FILES).filter((rel) => existsSync(path.join(s.target, rel)));
  assert.ok(present.length > 0 && present.length < Object.keys(NEW_FILES).length, `half-applied: ${present.join(', ')}`);
}

async function assertWhole(s: Setup, what: string): Promise<void> {
  const master = [...(await readTree(s.source)).keys()].sort();
  const target = [...(await readTree(s.target)).keys()].sort();
  assert.deepEqual(target, master, `${what}: the target is the master's new state (rolled forward)`);
  assert.equal(existsSync(path.join(s.stateDir, 'commit-journal.json')), false, `${what}: no journal left`);
}

test('an interrupted commit is reported by status --check (not OK) and rolled forward by pause; the target ends whole', T, async (t) => {
  const s = await setup(t);
  await interruptedCommit(s);
  const check = await runCli(['status', '--check', '--state-dir', s.stateDir, '--flag-file', s.flagFile]);
  t.diagnostic(check.stdout.trim());
  assert.equal(check.status, 2, `status --check with a pending journal\n${show(check)}`);
  assert.match(check.stdout, /interrupted commit/, show(check));
  const p = await pause(s);
  assert.equal(p.status, 0, show(p));
  assert.match(p.stdout, /completed the commit interrupted/, show(p));
  await assertWhole(s, 'after pause');
  const after = await runCli(['status', '--check', '--state-dir', s.stateDir, '--flag-file', s.flagFile]);
  assert.equal(after.status, 0, show(after));
});

test('while paused, a sync and a daemon roll an interrupted commit forward (and change nothing else)', T, async (t) => {
  const s = await setup(t);
  await interruptedCommit(s);
  await fs.writeFile(s.flagFile, 'paused by hand\n'); // a flag typed by hand: pause never ran
  await fs.writeFile(path.join(s.source, 'not-yet.ini'), 'later=1\n');
  const sync = await runCli(['sync', ...s.args]);
  assert.equal(sync.status, 0, show(sync));
  assert.match(sync.stderr, /completed the commit interrupted/, show(sync));
  assert.equal(existsSync(path.join(s.target, 'not-yet.ini')), false, 'a paused sync only finishes the committed plan');
  assert.deepEqual(
    Object.keys(NEW_FILES).filter((rel) => !existsSync(path.join(s.target, rel))),
    [],
    'every file of the interrupted commit is live',
  );

  // The daemon, started while paused, finishes the next interrupted commit.
  await fs.rm(s.flagFile);
  await fs.rm(path.join(s.source, 'not-yet.ini'));
  await fs.writeFile(path.join(s.source, 'e.ini'), 'e=1\n');
  await fs.writeFile(path.join(s.source, 'f.ini'), 'f=1\n');
  await fs.writeFile(path.join(s.source, 'g.ini'), 'g=1\n');
  const killed = await runCli(['sync', ...s.args], { env: { XROAD_SYNC_TEST_HOOK: 'kill@rename:2' } });
  assert.equal(killed.signal, 'SIGKILL', show(killed));
  await fs.writeFile(s.flagFile, 'paused by hand\n');
  const d = startDaemon(s);
  await waitFor(() => !existsSync(path.join(s.stateDir, 'commit-journal.json')), 20_000, 'the paused daemon to roll the journal forward', output(d));
  await waitFor(() => d.stderr().includes('completed the commit interrupted'), 10_000, 'the roll-forward reported', output(d));
  for (const rel of ['e.ini', 'f.ini', 'g.ini']) assert.ok(existsSync(path.join(s.target, rel)), `${rel} live after the paused daemon's roll-forward`);
});

// ---------------------------------------------------------------------------
// resume beside a daemon
// ---------------------------------------------------------------------------

test("resume beside a daemon whose pass fails exits with that pass's code, naming its error", T, async (t) => {
  const s = await setup(t);
  const d = startDaemon(s);
  await waitFor(() => okPasses(d).length >= 1, 20_000, 'the first pass', output(d));
  const p = await pause(s);
  assert.equal(p.status, 0, show(p));
  // An empty master: the safety valve refuses the daemon's next pass (exit 25).
  for (const name of await fs.readdir(s.source)) await fs.rm(path.join(s.source, name), { recursive: true });
  const r = await runCli(['resume', '--flag-file', s.flagFile, '--state-dir', s.stateDir]);
  t.diagnostic(show(r).replaceAll('\n', ' | '));
  assert.equal(r.status, 25, `resume reports the daemon's failed pass\n${show(r)}\n${output(d)()}`);
  assert.match(r.stdout + r.stderr, /empty/, show(r));
  assert.ok(existsSync(path.join(s.target, 'serverconf.xml')), 'the refused pass changed nothing');
});
