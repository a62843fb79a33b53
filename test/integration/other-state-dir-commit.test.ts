/**
 * A commit interrupted under one state dir, met by a pass with another: the
 * pass that runs next completes it (nothing half-applied, no journal left
 * naming staged files that are gone), and the staged files of a state dir
 * that is gone for good do not stay in the target. The compiled CLI as child
 * processes against a real OpenSSH master on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { isTempName } from '../../src/local/temp-names.js';
import { type CliRun, passArgs, runCli, startCli, waitFor } from '../helpers/cli.js';
import { deferrer, type SlaveDirs, slaveDirs } from '../helpers/slave.js';
import { readTree, sshdAvailable, startMaster, type TestMaster } from '../helpers/sshd.js';

const T = { timeout: 120_000, skip: !sshdAvailable() && 'needs /usr/sbin/sshd' };
const show = (r: CliRun) => `exit ${r.status ?? r.signal}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
const CHANGED = ['conf.d/local.ini', 'serverconf.xml', 'signer/keyconf.xml'];

interface Setup extends SlaveDirs {
  master: TestMaster;
  otherStateDir: string;
  argsWithStateDir(stateDir: string): string[];
}

async function setup(t: TestContext): Promise<Setup> {
  const defer = deferrer(t);
  const dirs = await slaveDirs(defer, 'xroad-sync-other-commit-', {
    'conf.d/local.ini': '[signer]\n',
    'serverconf.xml': '<conf/>\n',
    'signer/keyconf.xml': '<keys/>\n',
  });
  const master = await startMaster();
  defer(() => master.stop());
  const argsWithStateDir = (stateDir: string) => passArgs(master, { ...dirs, stateDir, logFile: path.join(stateDir, '..', `${path.basename(stateDir)}.log`) });
  return { ...dirs, master, otherStateDir: path.join(dirs.base, 'other-state'), argsWithStateDir };
}

async function changeMaster(s: Setup, tag: string): Promise<void> {
  for (const rel of CHANGED) await fs.writeFile(path.join(s.source, rel), `<${tag} of ${rel}/>\n${'x'.repeat(tag.length * 100)}`);
}

/** A sync with the first state dir SIGKILLed at its commit's 2nd rename: its journal and staged files left behind. */
async function killedMidCommit(s: Setup): Promise<void> {
  const synced = await runCli(['sync', ...s.argsWithStateDir(s.stateDir)]);
  assert.equal(synced.status, 0, show(synced));
  await changeMaster(s, 'first');
  const killed = await runCli(['sync', ...s.argsWithStateDir(s.stateDir)], { env: { XROAD_SYNC_TEST_HOOK: 'kill@rename:2' } });
  assert.equal(killed.signal, 'SIGKILL', show(killed));
  assert.ok(existsSync(path.join(s.stateDir, 'commit-journal.json')), 'the killed pass left its journal');
  assert.ok((await tempFiles(s.target)).length > 0, 'the killed pass left staged files in the target');
}

async function tempFiles(target: string): Promise<string[]> {
  return [...(await readTree(target)).keys()].filter((rel) => isTempName(path.basename(rel)));
}

async function assertMirrorsMaster(s: Setup, what: string): Promise<void> {
  const [source, target] = await Promise.all([readTree(s.source), readTree(s.target)]);
  assert.deepEqual(target, source, `${what}: the target mirrors the master, no staged file left`);
}

test(
  "a pass with another state dir completes the commit a killed pass left in the target: no journal left naming files that are gone, the killed pass's state dir runs clean",
  T,
  async (t) => {
    const s = await setup(t);
    await killedMidCommit(s);
    await changeMaster(s, 'second');

    const other = await runCli(['sync', ...s.argsWithStateDir(s.otherStateDir)]);
    assert.equal(other.status, 0, show(other));
    const said = other.stdout + other.stderr;
    assert.doesNotMatch(said, /removed a temp file/, `another state dir's staged files are not taken for strays\n${show(other)}`);
    assert.match(said, /completed the commit interrupted at .* another state dir/, show(other));
    assert.ok(said.includes(s.stateDir), `it names the state dir whose commit it completed\n${show(other)}`);
    assert.equal(existsSync(path.join(s.stateDir, 'commit-journal.json')), false, 'the completed journal is gone');
    await assertMirrorsMaster(s, 'after the pass with another state dir');
    // No journal pending in either state dir: monitoring on both says OK.
    for (const stateDir of [s.stateDir, s.otherStateDir]) {
      const check = await runCli(['status', '--check', '--state-dir', stateDir, '--flag-file', s.flagFile]);
      assert.match(check.stdout, /^XROAD-SYNC OK\b/, `${stateDir}\n${show(check)}`);
    }

    const own = await runCli(['sync', ...s.argsWithStateDir(s.stateDir)]);
    assert.equal(own.status, 0, show(own));
    assert.doesNotMatch(own.stdout + own.stderr, /roll forward|temp file|journal/, `nothing left to complete or remove\n${show(own)}`);
    await assertMirrorsMaster(s, 'after a pass with the first state dir');
  },
);

test('the staged files of a state dir deleted after its pass was killed are removed by a pass with another state dir, and said only once', T, async (t) => {
  const s = await setup(t);
  await killedMidCommit(s);
  await fs.rm(s.stateDir, { recursive: true, force: true });

  const other = await runCli(['sync', ...s.argsWithStateDir(s.otherStateDir)]);
  assert.equal(other.status, 0, show(other));
  assert.match(other.stdout + other.stderr, /removed a temp file left by an interrupted pass/, show(other));
  await assertMirrorsMaster(s, 'after the pass with another state dir');

  const again = await runCli(['sync', ...s.argsWithStateDir(s.otherStateDir)]);
  assert.equal(again.status, 0, show(again));
  assert.doesNotMatch(again.stdout + again.stderr, /temp file|journal/, `nothing is said again\n${show(again)}`);
});

test(
  'a commit a pass cannot complete (its journal names the target by another path) keeps its staged files, said once by a daemon; a pass with its own state dir then leaves no journal and no staged file',
  T,
  async (t) => {
    const s = await setup(t);
    await killedMidCommit(s);
    const left = await tempFiles(s.target);
    await changeMaster(s, 'second');
    // The same directory by another path: the journal's target does not match, so this pass must not replay it.
    const link = path.join(s.base, 'target-link');
    await fs.symlink(s.target, link);
    const viaLink = s.argsWithStateDir(s.otherStateDir).map((a) => (a === s.target ? link : a));

    const daemon = startCli(['daemon', ...viaLink, '--interval', '1']);
    t.after(() => daemon.stop(2_000));
    const passes = () => daemon.records().filter((r) => r.msg === 'pass' && r.result === 'ok').length;
    await waitFor(
      () => passes() >= 3,
      30_000,
      'three daemon passes',
      () => `--- stdout\n${daemon.stdout()}--- stderr\n${daemon.stderr()}`,
    );
    const ran = await daemon.stop(5_000);
    const said = ran.stdout + ran.stderr;
    assert.doesNotMatch(said, /removed a temp file/, `the staged files a journal still needs are kept\n${said}`);
    assert.equal(said.match(/left \d+ staged files in the target for the interrupted commit/g)?.length, 1, `said once, not every pass\n${said}`);
    assert.ok(said.includes(path.join(s.stateDir, 'commit-journal.json')), `it names the journal\n${said}`);
    assert.deepEqual((await tempFiles(s.target)).sort(), left.sort(), 'the staged files are still there');
    assert.ok(existsSync(path.join(s.stateDir, 'commit-journal.json')), 'the journal is still there');
    const check = await runCli(['status', '--check', '--state-dir', s.stateDir, '--flag-file', s.flagFile]);
    assert.match(check.stdout, /^XROAD-SYNC CRITICAL\b.*journal/i, `the first state dir reports its pending commit\n${show(check)}`);

    // Its journal is replayed over a target the daemon moved on: a rename already made may no longer match (then the
    // journal is discarded, said so); either way the pass leaves no journal and no staged file, and mirrors the master.
    const own = await runCli(['sync', ...s.argsWithStateDir(s.stateDir)]);
    assert.equal(own.status, 0, show(own));
    assert.match(own.stdout + own.stderr, /completed the commit interrupted at|could not roll forward the interrupted commit/, show(own));
    assert.equal(existsSync(path.join(s.stateDir, 'commit-journal.json')), false, 'no journal left');
    await assertMirrorsMaster(s, 'after a pass with the first state dir');
  },
);
