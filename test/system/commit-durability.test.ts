/**
 * The commit's durability and order, read from the system calls of a real
 * pass against OpenSSH (strace -f -y), not from our own hooks: a test that
 * trusts the code's notion of "fsynced" would pass with the fsync removed.
 *
 *   - every staged temp file is on disk before it is renamed into place:
 *     fsynced itself, or (a pass staging many files) written and closed
 *     before one completed syncfs(2) of the target's filesystem;
 *   - the journal is fsynced, renamed, and its directory fsynced before the
 *     first rename into the target;
 *   - signer/keyconf.xml is the last file renamed into the target;
 *   - every target directory a rename or unlink touched is fsynced after its
 *     last change and before the journal is removed.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tempOwner } from '../../src/local/temp-names.js';
import { skipUnlessCI } from '../helpers/components.js';
import { CLI, syncArgs } from '../helpers/run-sync.js';
import { descendantsOf, makeTempDir, startMaster, type TestMaster, writeTree } from '../helpers/sshd.js';
import { type Call, fdPath, parseTrace, quoted } from '../helpers/strace.js';
import { waitFor } from '../helpers/wait.js';

const T0 = 1_700_000_000;
const straceAvailable = spawnSync('strace', ['-V']).status === 0;
const T = { timeout: 90_000, skip: skipUnlessCI(!straceAvailable && 'strace is not installed (apt-get install strace)') };

const isRename = (c: Call): boolean => c.ok && /^rename(at2?)?$/.test(c.name);
const isUnlink = (c: Call): boolean => c.ok && /^(unlink(at)?|rmdir)$/.test(c.name);
const isFsync = (c: Call): boolean => c.ok && (c.name === 'fsync' || c.name === 'fdatasync');
const isSyncfs = (c: Call): boolean => c.ok && c.name === 'syncfs';
const TRACED = 'trace=fsync,fdatasync,syncfs,close,rename,renameat,renameat2,unlink,unlinkat,rmdir';

/** Whether `temp`'s data was on disk before the call at `renameIndex`: its own fsync, or a syncfs of the target's filesystem after its last close. */
function durableBefore(calls: readonly Call[], temp: string, renameIndex: number, target: string): boolean {
  if (calls.some((c) => isFsync(c) && c.index < renameIndex && fdPath(c.args) === temp)) return true;
  const lastClose = calls.filter((c) => c.index < renameIndex && c.name === 'close' && fdPath(c.args) === temp).at(-1);
  if (!lastClose) return false;
  const onTarget = (p: string | undefined): boolean => p !== undefined && (p === target || p.startsWith(`${target}/`));
  return calls.some((c) => isSyncfs(c) && c.index > lastClose.index && c.index < renameIndex && onTarget(fdPath(c.args)));
}

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

  it(
    'fsyncs each temp before its rename, the journal before the first rename, every touched directory before the journal goes; keyconf.xml last',
    T,
    async () => {
      const { calls } = await traceCheckedPass('few', 0, {});
      assert.ok(!calls.some(isSyncfs), 'a pass staging a handful of files must not flush the whole filesystem');
    },
  );

  it('a flush held back until the commit has prepared all it may (its owner file is in the target) still completes before the journal', T, async () => {
    const { calls } = await traceCheckedPass(
      'late-flush',
      80,
      { XROAD_SYNC_FLUSH: 'filesystem', XROAD_SYNC_TEST_HOOK: 'pause@flush', XROAD_SYNC_TEST_PAUSE_MS: '60000' },
      releaseFlushOncePrepared,
    );
    assert.equal(calls.filter(isSyncfs).length, 1, 'expected exactly one syncfs of the target filesystem');
  });

  it('a pass staging many files flushes the filesystem once after the last is written instead of fsyncing each, in the same order', T, async () => {
    const { calls, target } = await traceCheckedPass('many', 80, { XROAD_SYNC_FLUSH: 'filesystem' });
    // The owner file (one per commit, naming the state dir beside the journal) is no staged file.
    const staged = (p = ''): boolean => p.startsWith(`${target}/`) && tempOwner(path.basename(p))?.ownerFile === false;
    const tempFsyncs = calls.filter((c) => isFsync(c) && staged(fdPath(c.args)));
    assert.equal(
      tempFsyncs.length,
      0,
      `expected no fsync per staged file, saw ${tempFsyncs.length}: ${tempFsyncs
        .slice(0, 3)
        .map((c) => c.args)
        .join('; ')}`,
    );
    assert.equal(calls.filter(isSyncfs).length, 1, 'expected exactly one syncfs of the target filesystem');
  });

  /** A real pass under strace (`many` extra files staged), checked for the four promises above; its calls. */
  /**
   * The held flush is released (SIGUSR2 to the pass under strace) once the commit has gone as far as it
   * may without it: its owner file is in the target root. A commit that did not wait would be renaming
   * by then, and files of the master would be in place: that releases it too, and the order check fails.
   */
  async function releaseFlushOncePrepared(pass: { pid: number; stderr: () => string }, target: string): Promise<void> {
    await waitFor(() => pass.stderr().includes('paused at flush'), 60_000, 'the flush to be held', pass.stderr);
    // Prepared: the owner file is in the target and the content record has learned the incoming content
    // (the last step before the journal that does not need the flush). A commit that did not wait for the
    // flush writes its journal right after that record, well before this poll sees it.
    const record = path.join(path.dirname(target), 'state', 'content-hashes.json');
    const announced = (): boolean => {
      try {
        return 'incoming' in JSON.parse(readFileSync(record, 'utf8'));
      } catch {
        return false;
      }
    };
    const prepared = (): boolean =>
      readdirSync(target).some((name) => name === 'zz-last-by-name.ini') ||
      (announced() && readdirSync(target).some((name) => tempOwner(name)?.ownerFile === true));
    await waitFor(prepared, 60_000, 'the commit to prepare', pass.stderr);
    // A commit that does not wait for the flush writes its journal next (a few ms: a write and two fsyncs);
    // held on, the flush leaves it every chance to. A correct commit never does: the second's bound only
    // limits how slow a broken commit may be and still be caught, never whether a correct one passes.
    const journalWritten = (): boolean => readdirSync(path.join(path.dirname(target), 'state')).some((name) => name.startsWith('commit-journal'));
    await waitFor(journalWritten, 1_000, 'a journal written while the flush is held').catch(() => undefined);
    const node = descendantsOf(pass.pid).find((pid) => readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'strace');
    assert.ok(node, 'the traced pass');
    process.kill(node, 'SIGUSR2');
  }

  async function traceCheckedPass(
    sub: string,
    many: number,
    extraEnv: Record<string, string>,
    whileRunning?: (pass: { pid: number; stderr: () => string }, target: string) => Promise<void>,
  ): Promise<{ calls: Call[]; target: string }> {
    const source = path.join(work, sub, 'master');
    const target = path.join(work, sub, 'target');
    const stateDir = path.join(work, sub, 'state');
    const file = (content: string, dt: number) => ({ content, mode: 0o640, mtime: T0 + dt });
    const bulk = Object.fromEntries(Array.from({ length: many }, (_, i) => [`bulk/client-${i}.conf`, file(`client ${i}\n`, 10 + i)]));
    await writeTree(source, {
      ...bulk,
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

    const traceFile = path.join(work, sub, 'trace');
    const args = syncArgs({ master, source, target, stateDir, args: ['--max-delete', '10'] });
    const env = { ...process.env, ...extraEnv };
    delete env.MASTER;
    delete env.XROAD_USER;
    const child = spawn('strace', ['-f', '-y', '-qq', '-s', '4096', '-o', traceFile, '-e', TRACED, process.execPath, CLI, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const killer = setTimeout(() => child.kill('SIGKILL'), 80_000);
    const closed = new Promise<number | null>((resolve) => child.once('close', resolve));
    await whileRunning?.({ pid: child.pid!, stderr: () => stderr }, target);
    const status = await closed;
    clearTimeout(killer);
    assert.equal(status, 0, stderr);

    const calls = parseTrace(await readFile(traceFile, 'utf8'));
    const journal = path.join(stateDir, 'commit-journal.json');
    const inTarget = (p: string): boolean => p.startsWith(`${target}/`);
    const renamesIn = calls.filter((c) => isRename(c) && inTarget(quoted(c.args)[1] ?? ''));
    assert.ok(renamesIn.length >= 6, `expected renames into the target, saw ${renamesIn.length}`);

    // 1. Each temp on disk (its fsync, or a syncfs after its close, completed) before its rename.
    for (const r of renamesIn) {
      const [temp] = quoted(r.args);
      assert.ok(durableBefore(calls, temp!, r.index, target), `${temp} renamed to ${quoted(r.args)[1]} without a completed fsync or syncfs before`);
    }

    // 2. The journal: renamed into place after its own fsync; the state dir fsynced before the first target rename.
    const journalRename = calls.find((c) => isRename(c) && quoted(c.args)[1] === journal);
    assert.ok(journalRename, 'the commit journal was never renamed into place');
    const firstTargetRename = renamesIn[0]!;
    assert.ok(journalRename.index < firstTargetRename.index, 'the journal must exist before the first rename into the target');
    const journalTemp = quoted(journalRename.args)[0];
    assert.ok(
      calls.some((c) => isFsync(c) && c.index < journalRename.index && fdPath(c.args) === journalTemp),
      'journal temp not fsynced before its rename',
    );
    assert.ok(
      calls.some((c) => isFsync(c) && c.index > journalRename.index && c.index < firstTargetRename.index && fdPath(c.args) === stateDir),
      'the state directory was not fsynced between the journal rename and the first rename into the target',
    );

    // 2b. A pass that flushes its staged files once: that flush completed before the journal was written.
    const syncfs = calls.find(isSyncfs);
    if (syncfs) assert.ok(syncfs.index < journalRename.index, 'the journal was written before the flush of the staged files completed');

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
    const removedDirs = new Set(
      calls.filter((c) => c.ok && (c.name === 'rmdir' || (c.name === 'unlinkat' && c.args.includes('AT_REMOVEDIR')))).map((c) => quoted(c.args)[0]),
    );
    for (const [dir, at] of lastChange) {
      if (removedDirs.has(dir)) continue; // gone with the commit: nothing left to fsync
      const synced = calls.some((c) => isFsync(c) && c.index > at && c.index < journalRemoved.index && fdPath(c.args) === dir);
      assert.ok(synced, `${dir} was changed but not fsynced before the journal was removed`);
    }
    return { calls, target };
  }
});
