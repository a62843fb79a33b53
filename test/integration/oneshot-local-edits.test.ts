/**
 * One-shot passes (`sync`, what the timer runs every minute, and `resume
 * --now`) against a real OpenSSH master, and a local edit the quick check
 * (size + mtime) cannot see: an in-place write whose mtime is put back. The
 * next pass that exits 0 leaves the master's bytes and says it corrected
 * them; a rewrite with the same bytes is not claimed as corrected.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { hashFile } from '../../src/local/content-hashes.js';
import { stateFilePath } from '../../src/util/state-files.js';
import { type CliRun, parseRecords, passArgs, runCli } from '../helpers/cli.js';
import { writeKeepingSizeAndMtime } from '../helpers/local-edit.js';
import { deferrer, type SlaveDirs, slaveDirs } from '../helpers/slave.js';
import { sshdAvailable, startMaster, type TestMaster } from '../helpers/sshd.js';

const T = { timeout: 60_000, skip: !sshdAvailable() && 'needs /usr/sbin/sshd' };
const ORIGINAL = '[signer]\nport=5558\n';
/** Same length as ORIGINAL: only the bytes differ. */
const SAME_SIZE_EDIT = '[signer]\nport=6666\n';
const CORRECTED = 'local change corrected';
const EDITED = 'conf.d/local.ini';

const shown = (run: CliRun): string => `exit ${run.status}\n--- stdout\n${run.stdout}--- stderr\n${run.stderr}`;
const recordsFor = (run: CliRun, msg: string) => parseRecords(run.stdout).filter((r) => r.msg === msg && r.path === EDITED);

/** A slave synced once by a one-shot pass, its master files an hour old (not racy: no pass re-fetches them on its own). */
async function syncedSlave(t: TestContext): Promise<{ sync: () => Promise<CliRun>; file: string; flagFile: string; stateDir: string }> {
  const defer = deferrer(t);
  const dirs: SlaveDirs = await slaveDirs(defer, 'xroad-sync-oneshot-edits-', { [EDITED]: ORIGINAL, 'serverconf.xml': '<conf/>\n' });
  const anHourAgo = Date.now() / 1000 - 3600;
  for (const rel of [EDITED, 'serverconf.xml']) await fs.utimes(path.join(dirs.source, rel), anHourAgo, anHourAgo);
  const master: TestMaster = await startMaster();
  defer(() => master.stop());
  const sync = () => runCli(['sync', ...passArgs(master, dirs)]);
  const first = await sync();
  assert.equal(first.status, 0, shown(first));
  return { sync, file: path.join(dirs.target, EDITED), flagFile: dirs.flagFile, stateDir: dirs.stateDir };
}

test('a one-shot sync that finds its content record garbled (truncated by a crash) says so, naming the file, and writes it afresh', T, async (t) => {
  const { sync, stateDir } = await syncedSlave(t);
  const record = path.join(stateDir, 'content-hashes.json');
  await fs.writeFile(record, '{"version":2,"target":');
  const second = await sync();
  assert.equal(second.status, 0, shown(second));
  const said = parseRecords(second.stdout).filter((r) => String(r.msg).startsWith(`content record ${record} cannot be used`));
  assert.equal(said.length, 1, shown(second));
  const third = await sync();
  assert.equal(parseRecords(third.stdout).filter((r) => String(r.msg).includes('cannot be used')).length, 0, `written afresh\n${shown(third)}`);
});

test('a one-shot sync corrects an in-place edit that kept size and mtime, and says so', T, async (t) => {
  const { sync, file } = await syncedSlave(t);
  await writeKeepingSizeAndMtime(file, SAME_SIZE_EDIT);
  const second = await sync();
  assert.equal(second.status, 0, shown(second));
  assert.equal(await fs.readFile(file, 'utf8'), ORIGINAL, `the master's bytes are back\n${shown(second)}`);
  assert.equal(recordsFor(second, CORRECTED).length, 1, shown(second));
  // Corrected once: the pass after that has nothing to claim.
  const third = await sync();
  assert.equal(third.status, 0, shown(third));
  assert.equal(recordsFor(third, CORRECTED).length, 0, shown(third));
});

test('a one-shot sync does not claim to correct a rewrite with the same bytes', T, async (t) => {
  const { sync, file } = await syncedSlave(t);
  await writeKeepingSizeAndMtime(file, ORIGINAL);
  const second = await sync();
  assert.equal(second.status, 0, shown(second));
  assert.equal(await fs.readFile(file, 'utf8'), ORIGINAL);
  assert.equal(recordsFor(second, CORRECTED).length, 0, shown(second));
});

test('a paused one-shot sync claims nothing about a local edit; the first pass after resume corrects it', T, async (t) => {
  const { sync, file, flagFile } = await syncedSlave(t);
  await writeKeepingSizeAndMtime(file, SAME_SIZE_EDIT);
  await fs.writeFile(flagFile, '');
  const paused = await sync();
  assert.equal(await fs.readFile(file, 'utf8'), SAME_SIZE_EDIT, `paused: the target is left alone\n${shown(paused)}`);
  const claims = parseRecords(paused.stdout).filter((r) => r.path === EDITED);
  assert.deepEqual(claims, [], `a paused pass compares nothing, so it says nothing about the file\n${shown(paused)}`);
  await fs.rm(flagFile);
  const resumed = await sync();
  assert.equal(resumed.status, 0, shown(resumed));
  assert.equal(await fs.readFile(file, 'utf8'), ORIGINAL, shown(resumed));
  assert.equal(recordsFor(resumed, CORRECTED).length, 1, shown(resumed));
});

// ---------------------------------------------------------------------------
// A pass killed during or right after its commit, before the content record took in what it wrote.

const CHANGED_LOCALLY = /^synced file changed locally/;
/** The master's tree the killed pass starts from, and what it changes: a modification, an addition and a deletion. */
const BEFORE_KILL = { 'conf.d/local.ini': ORIGINAL, 'serverconf.xml': '<conf/>\n', 'a.ini': 'a=1\n', 'b.ini': 'b=1\n', 'old.ini': 'old=1\n' };
const MASTER_CHANGES = { modified: ['a.ini', 'b.ini'], added: 'c.ini', deleted: 'old.ini' };

/**
 * A slave synced once, then a pass of master changes (two files modified, one added, one deleted) SIGKILLed by its
 * test hook at `killAt`: after its commit (`committed`) or inside it (a rename step, its journal left).
 */
async function killedPass(t: TestContext, killAt: string): Promise<{ sync: () => Promise<CliRun>; dirs: SlaveDirs; killed: CliRun }> {
  const defer = deferrer(t);
  const dirs = await slaveDirs(defer, 'xroad-sync-oneshot-killed-', BEFORE_KILL);
  const anHourAgo = Date.now() / 1000 - 3600;
  for (const rel of Object.keys(BEFORE_KILL)) await fs.utimes(path.join(dirs.source, rel), anHourAgo, anHourAgo);
  const master: TestMaster = await startMaster();
  defer(() => master.stop());
  const sync = (env?: NodeJS.ProcessEnv) => runCli(['sync', ...passArgs(master, dirs)], { env });
  const first = await sync();
  assert.equal(first.status, 0, shown(first));
  // The master changes: other sizes (the quick check sees them), mtimes half an hour old (not racy).
  const halfAnHourAgo = Date.now() / 1000 - 1800;
  for (const rel of MASTER_CHANGES.modified) await fs.writeFile(path.join(dirs.source, rel), `${rel}: changed on the master\n`);
  await fs.writeFile(path.join(dirs.source, MASTER_CHANGES.added), 'c=1\n');
  await fs.rm(path.join(dirs.source, MASTER_CHANGES.deleted));
  for (const rel of [...MASTER_CHANGES.modified, MASTER_CHANGES.added]) await fs.utimes(path.join(dirs.source, rel), halfAnHourAgo, halfAnHourAgo);
  const killed = await sync({ XROAD_SYNC_TEST_HOOK: `kill@${killAt}` });
  assert.equal(killed.signal, 'SIGKILL', `the pass was killed at ${killAt}\n${shown(killed)}`);
  return { sync: () => sync(), dirs, killed };
}

/** The content record names every synced file with the hash of what it holds, and nothing the commit was writing. */
async function assertRecordMatches(dirs: SlaveDirs, after: CliRun): Promise<void> {
  const record = JSON.parse(await fs.readFile(stateFilePath(dirs.stateDir, 'contentHashes'), 'utf8')) as { files: Record<string, string[]>; incoming?: object };
  const onDisk: Record<string, string> = {};
  for (const rel of ['conf.d/local.ini', 'serverconf.xml', 'a.ini', 'b.ini', 'c.ini']) onDisk[rel] = hashFile(path.join(dirs.target, rel))!;
  const recorded = Object.fromEntries(Object.entries(record.files).map(([rel, [hash]]) => [rel, hash]));
  assert.deepEqual(recorded, onDisk, `the record is what the target holds\n${shown(after)}`);
  assert.equal(Object.keys(record.incoming ?? {}).length, 0, 'nothing left of the interrupted commit in the record');
}

const changedLocally = (run: CliRun) => parseRecords(run.stdout).filter((r) => CHANGED_LOCALLY.test(String(r.msg)));

for (const [killAt, when] of [
  ['committed', 'after its commit, before the content record was saved'],
  ['rename:2', 'in the middle of its commit (the next pass rolls the journal forward)'],
] as const) {
  test(`a one-shot sync killed ${when}: the next sync takes nothing it wrote for a local edit`, T, async (t) => {
    const { sync, dirs } = await killedPass(t, killAt);
    const next = await sync();
    assert.equal(next.status, 0, shown(next));
    assert.deepEqual(changedLocally(next), [], `nobody edited anything on the slave\n${shown(next)}`);
    if (killAt !== 'committed') assert.match(next.stderr + next.stdout, /completed the commit interrupted/, shown(next));
    for (const rel of MASTER_CHANGES.modified) assert.equal(await fs.readFile(path.join(dirs.target, rel), 'utf8'), `${rel}: changed on the master\n`);
    await assert.rejects(fs.lstat(path.join(dirs.target, MASTER_CHANGES.deleted)), { code: 'ENOENT' });
    await assertRecordMatches(dirs, next);
    // And the pass after that has nothing to say about local edits either.
    const third = await sync();
    assert.equal(third.status, 0, shown(third));
    assert.deepEqual(changedLocally(third), [], shown(third));
  });
}

test('a real local edit made after a pass was killed past its commit is still noted and corrected', T, async (t) => {
  const { sync, dirs } = await killedPass(t, 'committed');
  const edited = MASTER_CHANGES.modified[0]!;
  await fs.writeFile(path.join(dirs.target, edited), 'edited on the slave\n');
  const next = await sync();
  assert.equal(next.status, 0, shown(next));
  assert.deepEqual(
    changedLocally(next).map((r) => r.path),
    [edited],
    `only the edited file is noted\n${shown(next)}`,
  );
  assert.equal(parseRecords(next.stdout).filter((r) => r.msg === CORRECTED && r.path === edited).length, 1, shown(next));
  assert.equal(await fs.readFile(path.join(dirs.target, edited), 'utf8'), `${edited}: changed on the master\n`);
  await assertRecordMatches(dirs, next);
});
