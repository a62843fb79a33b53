/**
 * A commit that stops part-way with an error (not a kill) leaves its
 * journal, and the next one-shot sync rolls it forward before its content
 * check. The paths the journal still had to write are no local edits: neither
 * "synced file changed locally" nor "local change corrected" may be said of
 * them. Needs root and a file system with chattr +i (b.ini's rename then
 * fails with EPERM after a.ini's).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { type CliRun, parseRecords, passArgs, runCli } from '../helpers/cli.js';
import { deferrer, slaveDirs } from '../helpers/slave.js';
import { sshdAvailable, startMaster } from '../helpers/sshd.js';

/** chattr +i works here: root, the utility, and a file system that has the flag (tmpfs has not). */
function immutableFlagWorks(): boolean {
  if (process.getuid?.() !== 0) return false;
  const probe = mkdtempSync(path.join(tmpdir(), 'xroad-sync-chattr-'));
  try {
    const file = path.join(probe, 'f');
    writeFileSync(file, '');
    const works = spawnSync('chattr', ['+i', file]).status === 0;
    spawnSync('chattr', ['-i', file]);
    return works;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}
const T = {
  timeout: 60_000,
  skip: (!sshdAvailable() && 'needs /usr/sbin/sshd') || (!immutableFlagWorks() && 'needs root, chattr and a file system with the immutable flag'),
};
const shown = (run: CliRun): string => `exit ${run.status}\n--- stdout\n${run.stdout}--- stderr\n${run.stderr}`;

test('a commit that stopped part-way: the sync that completes it warns about no local edit', T, async (t) => {
  const defer = deferrer(t);
  const tree = { 'a.ini': 'a=1\n', 'b.ini': 'b=1\n', 'c.ini': 'c=1\n', 'keep.ini': 'k\n' };
  const dirs = await slaveDirs(defer, 'xroad-sync-partial-record-', tree);
  const anHourAgo = Date.now() / 1000 - 3600;
  for (const rel of Object.keys(tree)) await fs.utimes(path.join(dirs.source, rel), anHourAgo, anHourAgo);
  const master = await startMaster();
  defer(() => master.stop());
  const sync = () => runCli(['sync', ...passArgs(master, dirs)]);
  const first = await sync();
  assert.equal(first.status, 0, shown(first));

  const halfAnHourAgo = Date.now() / 1000 - 1800;
  for (const rel of ['a.ini', 'b.ini', 'c.ini']) {
    await fs.writeFile(path.join(dirs.source, rel), `${rel} changed on the master\n`);
    await fs.utimes(path.join(dirs.source, rel), halfAnHourAgo, halfAnHourAgo);
  }
  const immutable = path.join(dirs.target, 'b.ini');
  execFileSync('chattr', ['+i', immutable]);
  defer(async () => spawnSync('chattr', ['-i', immutable]));
  const failed = await sync();
  execFileSync('chattr', ['-i', immutable]);
  assert.equal(failed.status, 11, shown(failed));
  assert.match(failed.stderr, /stopped part-way/, shown(failed));

  const next = await sync();
  assert.equal(next.status, 0, shown(next));
  assert.match(next.stderr, /completed the commit interrupted/, shown(next));
  for (const rel of ['a.ini', 'b.ini', 'c.ini']) assert.equal(await fs.readFile(path.join(dirs.target, rel), 'utf8'), `${rel} changed on the master\n`);
  const falseAlarms = parseRecords(next.stdout).filter((r) => /^synced file changed locally|^local change corrected/.test(String(r.msg)));
  assert.deepEqual(
    falseAlarms.map((r) => `${r.msg}: ${r.path}`),
    [],
    `nobody edited anything on the slave\n${shown(next)}`,
  );
});
