/**
 * The commit's durability and order, read from the system calls of a real
 * pass against OpenSSH (strace -f -y), not from our own hooks: a test that
 * trusts the code's notion of "fsynced" would pass with the fsync removed.
 *
 *   - every staged temp file is fsynced before it is renamed into place;
 *   - the journal is fsynced, renamed, and its directory fsynced before the
 *     first rename into the target;
 *   - signer/keyconf.xml is the last file renamed into the target;
 *   - every target directory a rename or unlink touched is fsynced after its
 *     last change and before the journal is removed.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { skipUnlessCI } from '../helpers/components.js';
import { CLI, syncArgs } from '../helpers/run-sync.js';
import { makeTempDir, startMaster, writeTree, type TestMaster } from '../helpers/sshd.js';
import { fdPath, parseTrace, quoted, type Call } from '../helpers/strace.js';

const T0 = 1_700_000_000;
const straceAvailable = spawnSync('strace', ['-V']).status === 0;
const T = { timeout: 90_000, skip: skipUnlessCI(!straceAvailable && 'strace is not installed (apt-get install strace)') };

const isRename = (c: Call): boolean => c.ok && /^rename(at2?)?$/.test(c.name);
const isUnlink = (c: Call): boolean => c.ok && /^(unlink(at)?|rmdir)$/.test(c.name);
const isFsync = (c: Call): boolean => c.ok && (c.name === 'fsync' || c.name === 'fdatasync');

describe('commit durability, from the system calls of a real pass', { concurrency: false }, () => {
  let master: TestMaster;
  let work: string;

  before(async () => {
    master = await startMaster();
    work = await makeTempDir('xroad-sync-durability-');
  });
  after(async () => {
    await master?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('fsyncs each temp before its rename, the journal before the first rename, every touched directory before the journal goes; keyconf.xml last', T, async () => {
    const source = path.join(work, 'master');
    const target = path.join(work, 'target');
    const stateDir = path.join(work, 'state');
    const file = (content: string, dt: number) => ({ content, mode: 0o640, mtime: T0 + dt });
    await writeTree(source, {
      'conf.d/local.ini': file('[proxy]\n', 1),
      'conf.d/addons/message-log.ini': file('m\n', 2),
      // Sorted after keyconf.xml by name: only a deliberate order puts keyconf.xml last.
      'signer/softtoken/zz.p12': file('p12', 3),
      'signer/keyconf.xml': file('<keyConf/>\n', 4),
      'ssl/internal.crt': file('crt', 5),
      'zz-last-by-name.ini': file('z', 6),
    });
    await writeTree(target, { 'old/stale.ini': file('stale', 7), 'ssl/old.key': file('old', 8) });
    await writeTree(stateDir, {});

    const traceFile = path.join(work, 'trace');
    const args = syncArgs({ master, source, target, stateDir, args: ['--max-delete', '10'] });
    const env = { ...process.env };
    delete env.MASTER;
    delete env.XROAD_USER;
    const child = spawn(
      'strace',
      ['-f', '-y', '-qq', '-s', '4096', '-o', traceFile, '-e', 'trace=fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat,rmdir', process.execPath, CLI, ...args],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const killer = setTimeout(() => child.kill('SIGKILL'), 80_000);
    const status = await new Promise<number | null>((resolve) => child.once('close', resolve));
    clearTimeout(killer);
    assert.equal(status, 0, stderr);

    const calls = parseTrace(await readFile(traceFile, 'utf8'));
    const journal = path.join(stateDir, 'commit-journal.json');
    const inTarget = (p: string): boolean => p.startsWith(`${target}/`);
    const renamesIn = calls.filter((c) => isRename(c) && inTarget(quoted(c.args)[1] ?? ''));
    assert.ok(renamesIn.length >= 6, `expected renames into the target, saw ${renamesIn.length}`);

    // 1. Each temp fsynced (completed) before its rename.
    for (const r of renamesIn) {
      const [temp] = quoted(r.args);
      const synced = calls.some((c) => isFsync(c) && c.index < r.index && fdPath(c.args) === temp);
      assert.ok(synced, `${temp} renamed to ${quoted(r.args)[1]} without a completed fsync before`);
    }

    // 2. The journal: renamed into place after its own fsync; the state dir fsynced before the first target rename.
    const journalRename = calls.find((c) => isRename(c) && quoted(c.args)[1] === journal);
    assert.ok(journalRename, 'the commit journal was never renamed into place');
    const firstTargetRename = renamesIn[0]!;
    assert.ok(journalRename.index < firstTargetRename.index, 'the journal must exist before the first rename into the target');
    const journalTemp = quoted(journalRename.args)[0];
    assert.ok(calls.some((c) => isFsync(c) && c.index < journalRename.index && fdPath(c.args) === journalTemp), 'journal temp not fsynced before its rename');
    assert.ok(
      calls.some((c) => isFsync(c) && c.index > journalRename.index && c.index < firstTargetRename.index && fdPath(c.args) === stateDir),
      'the state directory was not fsynced between the journal rename and the first rename into the target',
    );

    // 3. keyconf.xml is the last file renamed into the target.
    assert.equal(quoted(renamesIn.at(-1)!.args)[1], path.join(target, 'signer/keyconf.xml'), 'signer/keyconf.xml must be renamed last');

    // 4. Every touched target directory fsynced after its last change, before the journal is removed.
    const journalRemoved = calls.find((c) => isUnlink(c) && quoted(c.args).includes(journal));
    assert.ok(journalRemoved, 'the journal was never removed');
    const lastChange = new Map<string, number>();
    for (const c of calls) {
      if (c.index > journalRemoved.index) break;
      if (!isRename(c) && !isUnlink(c)) continue;
      const changed = isRename(c) ? quoted(c.args)[1] : quoted(c.args)[0];
      if (changed && inTarget(changed)) lastChange.set(path.dirname(changed), c.index);
    }
    assert.ok(lastChange.size >= 4, `expected several touched directories, saw ${[...lastChange.keys()].join(', ')}`);
    const removedDirs = new Set(calls.filter((c) => c.ok && (c.name === 'rmdir' || (c.name === 'unlinkat' && c.args.includes('AT_REMOVEDIR')))).map((c) => quoted(c.args)[0]));
    for (const [dir, at] of lastChange) {
      if (removedDirs.has(dir)) continue; // gone with the commit: nothing left to fsync
      const synced = calls.some((c) => isFsync(c) && c.index > at && c.index < journalRemoved.index && fdPath(c.args) === dir);
      assert.ok(synced, `${dir} was changed but not fsynced before the journal was removed`);
    }
  });
});
