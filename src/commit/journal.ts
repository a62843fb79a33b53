/**
 * The crash journal: before the first rename, the whole list of commit
 * operations is written under --state-dir (temp file, fsync, rename, fsync of
 * the directory: write-file-atomic plus the directory fsync it leaves out).
 * It is removed after the last operation. A pass (or daemon) that finds one
 * left behind replays it: every operation is idempotent, so rolling forward
 * from any point yields the complete new state.
 */
import { open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { describeError } from '../errors.js';
import type { CommitOp } from './ops.js';

const JOURNAL_VERSION = 1;

interface JournalDoc {
  readonly version: number;
  readonly target: string;
  readonly pid: number;
  readonly createdAt: string;
  readonly ops: readonly CommitOp[];
}

export function journalPath(stateDir: string): string {
  return join(stateDir, 'commit-journal.json');
}

export interface OpenJournal {
  finish(): Promise<void>;
}

export async function beginJournal(stateDir: string, target: string, ops: readonly CommitOp[]): Promise<OpenJournal> {
  const path = journalPath(stateDir);
  const doc: JournalDoc = { version: JOURNAL_VERSION, target, pid: process.pid, createdAt: new Date().toISOString(), ops };
  await writeFileAtomic(path, JSON.stringify(doc), { fsync: true, mode: 0o600 });
  await fsyncDir(stateDir);
  return {
    async finish() {
      await unlink(path).catch(() => undefined);
      await fsyncDir(stateDir);
    },
  };
}

export type Recovery =
  | { readonly kind: 'none' }
  | { readonly kind: 'rolled-forward'; readonly operations: number; readonly createdAt: string }
  | { readonly kind: 'discarded'; readonly reason: string };

/**
 * Complete an interrupted commit, if any. `replay` runs the operations (the
 * commit executor without its live re-checks). A journal for another target
 * is left alone; one that cannot be read or replayed is discarded with the
 * reason: the pass that follows converges the target anyway.
 */
export async function recoverJournal(
  stateDir: string,
  target: string,
  replay: (ops: readonly CommitOp[]) => Promise<unknown>,
): Promise<Recovery> {
  const path = journalPath(stateDir);
  const text = await readFile(path, 'utf8').catch(() => null);
  if (text === null) return { kind: 'none' };
  let doc: JournalDoc;
  try {
    doc = JSON.parse(text) as JournalDoc;
    if (doc.version !== JOURNAL_VERSION || !Array.isArray(doc.ops)) throw new Error(`unknown journal format`);
  } catch (err) {
    await unlink(path).catch(() => undefined);
    return { kind: 'discarded', reason: `unreadable journal ${path}: ${describeError(err)}` };
  }
  if (doc.target !== target) return { kind: 'discarded', reason: `journal ${path} belongs to target ${doc.target}; left in place` };
  try {
    await replay(doc.ops);
  } catch (err) {
    await unlink(path).catch(() => undefined);
    return { kind: 'discarded', reason: `could not roll forward the interrupted commit of ${doc.createdAt}: ${describeError(err)}` };
  }
  await unlink(path).catch(() => undefined);
  await fsyncDir(stateDir);
  return { kind: 'rolled-forward', operations: doc.ops.length, createdAt: doc.createdAt };
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
