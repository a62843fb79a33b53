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
async function syncedSlave(t: TestContext): Promise<{ sync: () => Promise<CliRun>; file: string; flagFile: string }> {
  const defer = deferrer(t);
  const dirs: SlaveDirs = await slaveDirs(defer, 'xroad-sync-oneshot-edits-', { [EDITED]: ORIGINAL, 'serverconf.xml': '<conf/>\n' });
  const anHourAgo = Date.now() / 1000 - 3600;
  for (const rel of [EDITED, 'serverconf.xml']) await fs.utimes(path.join(dirs.source, rel), anHourAgo, anHourAgo);
  const master: TestMaster = await startMaster();
  defer(() => master.stop());
  const sync = () => runCli(['sync', ...passArgs(master, dirs)]);
  const first = await sync();
  assert.equal(first.status, 0, shown(first));
  return { sync, file: path.join(dirs.target, EDITED), flagFile: dirs.flagFile };
}

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
