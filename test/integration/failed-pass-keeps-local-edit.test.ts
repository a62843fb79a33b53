/**
 * A local edit noted by a pass that then fails (the master cannot be
 * reached) stays in question: the next sync that reaches the master corrects
 * it. Here the edit keeps its size and mtime, so only the content record can
 * find it, and the failing pass follows one killed past its commit's
 * announcement (a journal left, or only the incoming content in the record):
 * the failed pass must not save the edited bytes as the recorded content, or
 * neither the next check nor the quick check would ever see the edit again.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { type CliRun, parseRecords, passArgs, runCli } from '../helpers/cli.js';
import { writeKeepingSizeAndMtime } from '../helpers/local-edit.js';
import { deferrer, slaveDirs } from '../helpers/slave.js';
import { freePort, sshdAvailable, startMaster } from '../helpers/sshd.js';

const T = { timeout: 60_000, skip: !sshdAvailable() && 'needs /usr/sbin/sshd' };
const shown = (run: CliRun): string => `exit ${run.status} ${run.signal ?? ''}\n--- stdout\n${run.stdout}--- stderr\n${run.stderr}`;
const ORIGINAL = 'port=5558\n';
const EDIT = 'port=6666\n';

for (const [killAt, left] of [
  ['committed', 'only what the commit wrote in the record'],
  ['rename', 'its journal'],
] as const) {
  test(`a local edit noted by a pass that cannot reach the master, after a pass killed at ${killAt} (${left}), is corrected by the next sync`, T, async (t) => {
    const defer = deferrer(t);
    const tree = { 'a.ini': 'a=1\n', 'b.ini': ORIGINAL };
    const dirs = await slaveDirs(defer, 'xroad-sync-failed-keeps-edit-', tree);
    const anHourAgo = Date.now() / 1000 - 3600;
    for (const rel of Object.keys(tree)) await fs.utimes(path.join(dirs.source, rel), anHourAgo, anHourAgo);
    const master = await startMaster();
    defer(() => master.stop());
    const closed = await freePort();
    const sync = (opts: { port?: number; env?: NodeJS.ProcessEnv } = {}) =>
      runCli(['sync', ...passArgs(master, { ...dirs, port: opts.port })], { env: opts.env });
    const first = await sync();
    assert.equal(first.status, 0, shown(first));

    const halfAnHourAgo = Date.now() / 1000 - 1800;
    await fs.writeFile(path.join(dirs.source, 'a.ini'), 'a=2\n');
    await fs.utimes(path.join(dirs.source, 'a.ini'), halfAnHourAgo, halfAnHourAgo);
    const killed = await sync({ env: { XROAD_SYNC_TEST_HOOK: `kill@${killAt}` } });
    assert.equal(killed.signal, 'SIGKILL', shown(killed));

    const file = path.join(dirs.target, 'b.ini');
    await writeKeepingSizeAndMtime(file, EDIT);
    const failed = await sync({ port: closed });
    assert.equal(failed.status, 255, shown(failed));
    assert.deepEqual(
      parseRecords(failed.stdout)
        .filter((r) => /^synced file changed locally/.test(String(r.msg)))
        .map((r) => r.path),
      ['b.ini'],
      shown(failed),
    );

    const next = await sync();
    assert.equal(next.status, 0, shown(next));
    assert.equal(await fs.readFile(file, 'utf8'), ORIGINAL, `the master's bytes are back\n${shown(next)}`);
  });
}
