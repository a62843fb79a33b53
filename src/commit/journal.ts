/**
 * The crash journal: before the first rename, the whole list of commit
 * operations is written under --state-dir (temp file, fsync, rename, fsync of
 * the directory: write-file-atomic plus the directory fsync it leaves out).
 * It is removed after the last operation. A pass (or daemon) that finds one
 * left behind replays it: every operation is idempotent, so rolling forward
 * from any point yields the complete new state.
 *
 * While it exists, an owner file in the target root names its state dir
 * (local/temp-names.ts): a pass with another state dir finds it from there.
 */
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { lstat, unlink, utimes } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { describeError } from '../errors.js';
import { ownerFileName, ownerTag } from '../local/temp-names.js';
import type { Change } from '../plan/types.js';
import { readSmallFile, readSmallFileStrictly } from '../util/small-file.js';
import { stateFilePath } from '../util/state-files.js';
import { stateFileOwner } from '../util/state-owner.js';
import { fsyncDir } from './fsync-dir.js';
import type { CommitOp } from './ops.js';

const JOURNAL_VERSION = 1;

interface JournalDoc {
  readonly version: number;
  readonly target: string;
  readonly pid: number;
  readonly createdAt: string;
  readonly ops: readonly CommitOp[];
  /** The plan's changes, so the pass that completes the commit can itemize, count and hint them. */
  readonly changes?: readonly Change[];
  /** Paths a failed pass already reported as live. */
  readonly reported?: readonly string[];
  /** The effective uid of the pass that planned it (the file itself goes to the state dir's owner): whom a replay runs as. */
  readonly uid?: number;
}

export function journalPath(stateDir: string): string {
  return stateFilePath(stateDir, 'commitJournal');
}

export interface OpenJournal {
  finish(): Promise<void>;
  /** A failed commit records what it reported as live; the completing pass reports the rest. */
  markReported(paths: readonly string[]): Promise<void>;
}

/** A journal ready to be written: its owner file is in the target (and on disk), its text made. */
export interface PreparedJournal {
  /** Writes the journal (durable before this returns): from now on the commit is rolled forward if interrupted. */
  begin(): Promise<OpenJournal>;
  /** The commit will not begin: the owner file goes, the target root gets its mtime back. */
  abandon(): Promise<void>;
}

/**
 * Everything before the journal itself, which may run while the staged files are still being
 * flushed (commit.ts): the owner file (durable before the journal: a journal is never without the
 * owner file that leads to it) and the journal's text.
 */
export async function prepareJournal(stateDir: string, target: string, ops: readonly CommitOp[], changes: readonly Change[] = []): Promise<PreparedJournal> {
  const path = journalPath(stateDir);
  const rootTimes = await lstat(target);
  await writeOwnerFile(target, stateDir);
  const doc: JournalDoc = { version: JOURNAL_VERSION, target, pid: process.pid, createdAt: new Date().toISOString(), ops, changes, uid: process.geteuid?.() };
  const text = JSON.stringify(doc);
  // Still there only when the commit stopped before its first operation: nothing changed, the root's mtime included.
  const removeOwner = async (): Promise<void> => {
    if (await removeOwnerFile(target, stateDir)) await utimes(target, rootTimes.atime, rootTimes.mtime).catch(() => undefined);
  };
  return {
    async begin() {
      try {
        await writeFileAtomic(path, text, { fsync: true, mode: 0o600, chown: stateFileOwner(stateDir) });
        await fsyncDir(stateDir);
      } catch (err) {
        // No operation has run: a journal that may not be durable goes, so that abandon() may take its owner file.
        await unlink(path).catch(() => undefined);
        throw err;
      }
      return {
        async markReported(paths) {
          await writeFileAtomic(path, JSON.stringify({ ...doc, reported: paths }), { fsync: true, mode: 0o600, chown: stateFileOwner(stateDir) });
        },
        async finish() {
          await unlink(path).catch(() => undefined);
          await fsyncDir(stateDir);
          await removeOwner();
        },
      };
    },
    abandon: removeOwner,
  };
}

/** The owner file of `stateDir`'s staged files in `target`. */
function ownerFilePath(target: string, stateDir: string): string {
  return join(target, ownerFileName(ownerTag(stateDir)));
}

/**
 * Written in place, not by write-file-atomic: its temp name would not be
 * ours, so watchers and the scan would see it. A torn one names no state
 * dir whose tag matches, and no journal exists yet then.
 */
async function writeOwnerFile(target: string, stateDir: string): Promise<void> {
  const fd = openSync(ownerFilePath(target, stateDir), 'w', 0o644);
  try {
    writeSync(fd, `${resolve(stateDir)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  await fsyncDir(target);
}

/** Whether it was there. A stale one only costs the next pass a look at a journal that is gone. */
async function removeOwnerFile(target: string, stateDir: string): Promise<boolean> {
  return unlink(ownerFilePath(target, stateDir)).then(
    () => true,
    () => false,
  );
}

export type Recovery =
  | { readonly kind: 'none' }
  | {
      readonly kind: 'rolled-forward';
      readonly operations: number;
      readonly createdAt: string;
      /** Changes the completed commit made live that no pass has reported yet. */
      readonly changes: readonly Change[];
    }
  | { readonly kind: 'discarded'; readonly reason: string };

/**
 * Complete an interrupted commit, if any. `replay` runs the operations (the
 * commit executor without its live re-checks). A journal for another target
 * is left alone; one that cannot be read or replayed is discarded with the
 * reason: the pass that follows converges the target anyway.
 */
export async function recoverJournal(stateDir: string, target: string, replay: (ops: readonly CommitOp[]) => Promise<unknown>): Promise<Recovery> {
  const path = journalPath(stateDir);
  let text: string | null;
  try {
    text = readSmallFileStrictly(path);
  } catch (err) {
    // Not "no journal": the target may be half-applied. Left for whoever may read it (status says UNKNOWN meanwhile).
    return {
      kind: 'discarded',
      reason: `cannot read the interrupted commit's journal ${path}: ${describeError(err)}; left in place: make it readable by the sync user (chown it to the owner of ${stateDir})`,
    };
  }
  if (text === null) return { kind: 'none' };
  let doc: JournalDoc;
  try {
    doc = JSON.parse(text) as JournalDoc;
    if (doc.version !== JOURNAL_VERSION || !Array.isArray(doc.ops)) throw new Error(`unknown journal format`);
  } catch (err) {
    await unlink(path).catch(() => undefined);
    await removeOwnerFile(target, stateDir);
    return { kind: 'discarded', reason: `unreadable journal ${path}: ${describeError(err)}` };
  }
  if (doc.target !== target) return { kind: 'discarded', reason: `journal ${path} belongs to target ${doc.target}; left in place` };
  try {
    await replay(doc.ops);
  } catch (err) {
    // Another user's pass (root's) may have planned what this one may not do (chown): kept for a replay as that user.
    if (doc.uid !== undefined && doc.uid !== process.geteuid?.()) {
      return {
        kind: 'discarded',
        reason: `could not roll forward the interrupted commit of ${doc.createdAt} of a pass run as uid ${doc.uid}: ${describeError(err)}; left in place for a pass or pause run as that user (sudo xroad-sync pause)`,
      };
    }
    await unlink(path).catch(() => undefined);
    await removeOwnerFile(target, stateDir);
    return { kind: 'discarded', reason: `could not roll forward the interrupted commit of ${doc.createdAt}: ${describeError(err)}` };
  }
  await unlink(path).catch(() => undefined);
  await fsyncDir(stateDir);
  await removeOwnerFile(target, stateDir);
  const reported = new Set(doc.reported ?? []);
  const changes = (doc.changes ?? []).filter((c) => !reported.has(c.path));
  return { kind: 'rolled-forward', operations: doc.ops.length, createdAt: doc.createdAt, changes };
}

/** A journal left by an interrupted commit, without touching it (dry runs, `check`). */
export async function pendingJournal(stateDir: string, target: string): Promise<{ createdAt: string; operations: number } | null> {
  const text = readSmallFile(journalPath(stateDir));
  if (text === null) return null;
  try {
    const doc = JSON.parse(text) as JournalDoc;
    if (doc.target !== target) return null;
    return { createdAt: doc.createdAt, operations: Array.isArray(doc.ops) ? doc.ops.length : 0 };
  } catch {
    return { createdAt: 'unknown', operations: 0 };
  }
}

/** A journal in the state dir, whatever its target: what `status` and `pause` report and complete. */
export interface LeftJournal {
  readonly path: string;
  readonly target: string | null;
  readonly createdAt: string;
  readonly operations: number;
  /** The pass that wrote it: while it holds the lock, the commit is in progress, not interrupted. */
  readonly pid: number | null;
  /** Why it exists but cannot be read by this user (nothing else is known then). */
  readonly unreadable?: unknown;
  /** The effective uid of the pass that wrote it, when recorded. */
  readonly uid?: number;
}

export function leftJournal(stateDir: string): LeftJournal | null {
  const path = journalPath(stateDir);
  let text: string | null;
  try {
    text = readSmallFileStrictly(path);
  } catch (unreadable) {
    return { path, target: null, createdAt: 'unknown', operations: 0, pid: null, unreadable };
  }
  if (text === null) return null;
  try {
    const doc = JSON.parse(text) as Partial<JournalDoc>;
    return {
      path,
      target: typeof doc.target === 'string' ? doc.target : null,
      createdAt: String(doc.createdAt ?? 'unknown'),
      operations: Array.isArray(doc.ops) ? doc.ops.length : 0,
      pid: typeof doc.pid === 'number' ? doc.pid : null,
      uid: typeof doc.uid === 'number' ? doc.uid : undefined,
    };
  } catch {
    return { path, target: null, createdAt: 'unknown', operations: 0, pid: null };
  }
}
