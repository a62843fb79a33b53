/**
 * Commit: turn a fully staged plan into the new target. Runs only after every
 * fetch succeeded. Order follows rsync --delay-updates --delete-delay, with
 * two strengthenings: signer/keyconf.xml is renamed last (the signer reloads
 * it live and it names the .p12 files), and every touched directory is
 * fsynced. The operations are journaled first (see journal.ts), so a pass
 * killed mid-commit is rolled forward by the next one.
 *
 *   1. remove entries that an entry of another type replaces (dir involved)
 *   2. create new directories (0700 until step 6)
 *   3. rename staged files and symlinks into place, keyconf.xml last
 *   4. attribute-only changes of files and symlinks
 *   5. deletions, deepest first
 *   6. directory modes, owners and mtimes, deepest first
 *   7. fsync the directories touched
 */
import {
  accessSync,
  chmodSync,
  chownSync,
  constants,
  lchownSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  renameSync,
  rmdirSync,
  unlinkSync,
  utimesSync,
} from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { describeError, errnoOf, LocalIoError } from '../errors.js';
import { lstatIfPresent } from '../local/lstat.js';
import { ownerFileName, ownerTag } from '../local/temp-names.js';
import type { Change } from '../plan/types.js';
import type { Staging } from '../stage/stage.js';
import { parentOf, type Tree, underRoot } from '../tree.js';
import { fsyncDir } from './fsync-dir.js';
import { journalPath, type OpenJournal, prepareJournal, type Recovery, recoverJournal } from './journal.js';
import { buildCommitOps, type CommitOp, type Seen } from './ops.js';

export type CommitStep = 'replace-remove' | 'mkdir' | 'rename' | 'attrs' | 'delete' | 'dir-attrs' | 'fsync';

export interface CommitOptions {
  readonly targetRoot: string;
  /** The master's tree: directories whose content changed get their master mtime back at the end. */
  readonly source: Tree;
  /** Where the crash journal goes. */
  readonly stateDir: string;
  /** Fault-injection and progress hook: awaited before each step on each path. */
  readonly beforeStep?: (step: CommitStep, path: string) => void | Promise<void>;
  /**
   * Called once the staged data is on disk, just before the journal: throws to give the commit up
   * (a pause or a signal that came while the flush ran). Nothing has changed then.
   */
  readonly beforeJournal?: () => void;
  /**
   * Started as the journal is prepared (the staged data still flushing) and awaited before the journal
   * begins: says what the commit is about to write (run-pass.ts: the content record learns it), so that
   * a check after the commit was cut short anywhere knows what it was writing.
   */
  readonly announce?: () => Promise<void>;
}

export interface CommitResult {
  /** Changes left alone because the path changed locally during the pass; the next pass corrects them. */
  readonly skipped: readonly { path: string; reason: string }[];
}

/**
 * A commit that failed after its first operation: part of it is live. The
 * journal stays (with the temps it names) so the next pass completes it;
 * `livePaths` says which changes this pass must report as applied.
 */
export class PartialCommitError extends LocalIoError {
  constructor(
    cause: unknown,
    readonly livePaths: ReadonlySet<string>,
    journal: string,
  ) {
    super(`${describeError(cause)}; the commit stopped part-way (${livePaths.size} paths live), the rest is journaled in ${journal}`, {
      subject: cause instanceof LocalIoError ? cause.subject : undefined,
      cause,
      hint: 'fix the cause; the next pass completes the commit and reports the rest',
    });
  }
}

export async function commitChanges(changes: readonly Change[], staging: Staging, opts: CommitOptions): Promise<CommitResult> {
  const relTemps = new Map([...staging.temps].map(([path, abs]) => [path, abs.slice(opts.targetRoot.length + 1)]));
  const ops = buildCommitOps(changes, relTemps, opts.source, ownerFileName(ownerTag(opts.stateDir)));
  await precheckCommit(ops, opts.targetRoot);
  // The journal may name the temps only once their data is on disk; all before it is done meanwhile
  // (the flush of 5,000 staged files takes ~0.1 s), the announcement too.
  const announced = opts.announce?.();
  announced?.catch(() => undefined); // awaited below; not unhandled if preparing the journal throws first
  const prepared = await prepareJournal(opts.stateDir, opts.targetRoot, ops, changes);
  let journal: OpenJournal;
  try {
    await staging.durable;
    await announced;
    opts.beforeJournal?.();
    journal = await prepared.begin();
  } catch (err) {
    await prepared.abandon();
    throw err;
  }
  const done = new Set<string>();
  let result: CommitResult;
  try {
    result = await executeOps(ops, { root: opts.targetRoot, recheck: true, beforeStep: opts.beforeStep, done });
  } catch (err) {
    if (done.size === 0) {
      await journal.finish();
      throw err;
    }
    // The staged files the journal still names must survive for the roll-forward.
    staging.forget(() => true);
    await journal.markReported([...done]).catch(() => undefined);
    throw new PartialCommitError(err, done, journalPath(opts.stateDir));
  }
  await journal.finish();
  staging.forget(() => true); // every temp was renamed into place or, for a skipped path, removed
  return result;
}

/**
 * A pass killed (or failed) mid-commit left its journal: roll it forward
 * (the operations without their live re-checks) before anything else looks
 * at the target.
 */
export function recoverInterruptedCommit(stateDir: string, targetRoot: string): Promise<Recovery> {
  return recoverJournal(stateDir, targetRoot, (ops) => executeOps(ops, { root: targetRoot, recheck: false }));
}

/**
 * What can be checked before the first rename, so a commit does not stop
 * half-way: every directory the commit writes in is writable (a read-only
 * bind mount under the target answers EROFS here), and no rename crosses a
 * mount point (EXDEV). Nothing has changed when this throws.
 */
async function precheckCommit(ops: readonly CommitOp[], root: string): Promise<void> {
  const dirs = new Set<string>();
  const crossings: Array<[string, string]> = [];
  for (const op of ops) {
    if (op.op === 'remove' || op.op === 'mkdir' || op.op === 'rename') dirs.add(underRoot(root, parentOf(op.path)));
    if (op.op === 'rename') {
      dirs.add(underRoot(root, parentOf(op.temp)));
      crossings.push([underRoot(root, op.temp), underRoot(root, op.path)]);
    }
  }
  // Synchronous: a local lstat and access(2) per directory, where two thread-pool round trips each
  // cost a 5,000-file initial sync ~40 ms.
  for (const dir of [...dirs].sort()) {
    // Not a directory yet: the commit creates it (after removing what is there), in a parent checked here too.
    if (!lstatIfPresent(dir)?.isDirectory()) continue;
    const err = accessError(dir, constants.W_OK | constants.X_OK);
    if (err === undefined) continue;
    throw new LocalIoError(`cannot commit: ${dir} is not writable (${errnoOf(err) ?? describeError(err)}); nothing was changed`, {
      subject: dir,
      cause: err,
      hint: 'a read-only mount or wrong permissions under the target: make the directory writable for the sync user, or exclude it',
    });
  }
  const mounts = await mountPointsUnder(root);
  for (const [temp, final] of crossings) {
    const [a, b] = [mountOf(temp, mounts), mountOf(final, mounts)];
    if (a !== b) {
      throw new LocalIoError(`cannot commit: ${final} is on another mount (${b ?? root}) than its staged copy ${temp}; nothing was changed`, {
        subject: final,
        hint: 'a mount point under the target must not separate a new directory from the target root; unmount it or exclude the path',
      });
    }
  }
}

function accessError(path: string, mode: number): unknown {
  try {
    accessSync(path, mode);
    return undefined;
  } catch (err) {
    return err;
  }
}

/** Mount points strictly below `root` (from /proc/self/mountinfo; none when it cannot be read). */
async function mountPointsUnder(root: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const unescapeOctal = (p: string): string => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return text
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map(unescapeOctal)
    .filter((p) => p.startsWith(root + '/'));
}

function mountOf(path: string, mounts: readonly string[]): string | undefined {
  let best: string | undefined;
  for (const m of mounts) if ((path === m || path.startsWith(m + '/')) && (best === undefined || m.length > best.length)) best = m;
  return best;
}

export interface ExecuteOptions {
  readonly root: string;
  /** Live commit: verify each replaced path is still what the scan saw. Recovery replays without. */
  readonly recheck: boolean;
  readonly beforeStep?: (step: CommitStep, path: string) => void | Promise<void>;
  /** Filled with each path whose operation completed: what is live if a later one fails. */
  readonly done?: Set<string>;
}

/**
 * Run the operations in order. Idempotent, so a recovery can replay a list that was partly done.
 * Every step on the target is a synchronous system call, with no await between files unless a test
 * hook waits there: these are local calls of microseconds, made one after another, and a trip through
 * libuv's thread pool or a yield to the event loop per file cost more than the call (a 5,000-file commit).
 */
export async function executeOps(ops: readonly CommitOp[], opts: ExecuteOptions): Promise<CommitResult> {
  const skipped: { path: string; reason: string }[] = [];
  const abs = (path: string): string => underRoot(opts.root, path);
  // `inReplayToo`: a removal replayed from a journal removes only the entry the plan saw. A journal restored from a
  // backup after its commit completed (or one whose rename already put the new entry in place) must not delete
  // what is there now.
  const unchanged = (path: string, seen: Seen | null | undefined, inReplayToo = false): boolean => {
    if ((!opts.recheck && !inReplayToo) || seen === undefined) return true;
    const ok = stillAsSeen(abs(path), seen);
    if (!ok) skipped.push({ path, reason: 'changed on this slave during the pass' });
    return ok;
  };

  for (const op of ops) {
    switch (op.op) {
      case 'remove':
        if (opts.beforeStep) await opts.beforeStep(op.step, op.path);
        if (!unchanged(op.path, op.seen, true)) break;
        guard('delete', abs(op.path), () => removeEntry(abs(op.path), op.recursive, skipped, op.path, !opts.recheck));
        opts.done?.add(op.path);
        break;
      case 'mkdir':
        if (opts.beforeStep) await opts.beforeStep('mkdir', op.path);
        guard('create directory', abs(op.path), () => {
          try {
            mkdirSync(abs(op.path), { mode: 0o700 });
          } catch (err) {
            if (errnoOf(err) !== 'EEXIST') throw err;
          }
          if (op.uid !== undefined || op.gid !== undefined) chownSync(abs(op.path), op.uid ?? -1, op.gid ?? -1);
        });
        opts.done?.add(op.path);
        break;
      case 'rename':
        if (opts.beforeStep) await opts.beforeStep('rename', op.path);
        if (!unchanged(op.path, op.seen)) {
          // Drop the staged copy now, before the directory mtimes below are set.
          await rm(abs(op.temp), { force: true });
          break;
        }
        guard('rename into place', abs(op.path), () => renameStaged(abs(op.temp), abs(op.path), op.size, opts.recheck));
        opts.done?.add(op.path);
        break;
      case 'attrs':
        if (opts.beforeStep) await opts.beforeStep(op.dir ? 'dir-attrs' : 'attrs', op.path);
        guard('set attributes of', abs(op.path), () => applyAttrs(abs(op.path), op));
        opts.done?.add(op.path);
        break;
      case 'fsync':
        await Promise.all(
          op.dirs.map(async (dir) => {
            await opts.beforeStep?.('fsync', dir);
            await fsyncDir(abs(dir));
          }),
        );
        break;
    }
  }
  return { skipped };
}

/**
 * Contents of a doomed directory were planned as deletions of their own,
 * deepest first, so a plain rmdir suffices; ENOTEMPTY means someone put a
 * file there during the pass: keep it and say so.
 */
function removeEntry(path: string, isDir: boolean, skipped: { path: string; reason: string }[], rel: string, replay: boolean): void {
  try {
    (isDir ? rmdirSync : unlinkSync)(path);
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'ENOENT') return;
    // Replaying a journal: the entry may already have been replaced by its successor
    // (a directory where a file was, or a file where its parent directory was).
    if (replay && (code === 'ENOTDIR' || code === 'EISDIR' || (isDir && code === 'ENOTEMPTY'))) return;
    if (!isDir || (code !== 'ENOTEMPTY' && code !== 'EEXIST')) throw err;
    skipped.push({ path: rel, reason: 'gained entries on this slave during the pass' });
  }
}

/** In recovery the rename may already have happened before the crash: then the temp is gone and the final has the size. */
function renameStaged(temp: string, final: string, size: number | null, live: boolean): void {
  try {
    if (!live && size !== null) {
      const staged = lstatSync(temp);
      if (staged.size !== size) throw new Error(`staged file ${temp} has ${staged.size} bytes, expected ${size}`);
    }
    renameSync(temp, final);
  } catch (err) {
    if (live || errnoOf(err) !== 'ENOENT') throw err;
    const done = lstatSync(final, { throwIfNoEntry: false });
    if (!done || (size !== null && done.size !== size)) throw new Error(`neither the staged file ${temp} nor a complete ${final} exists`);
  }
}

function applyAttrs(path: string, op: Extract<CommitOp, { op: 'attrs' }>): void {
  if (op.uid !== undefined || op.gid !== undefined) (op.link ? lchownSync : chownSync)(path, op.uid ?? -1, op.gid ?? -1);
  if (op.mode !== undefined && !op.link) chmodSync(path, op.mode);
  if (op.mtime !== undefined) (op.link ? lutimesSync : utimesSync)(path, op.mtime, op.mtime);
}

/**
 * True when `path` is still what the scan saw (or still absent). A slave is
 * read-only by contract, but an operator may edit a file mid-pass: that
 * edit is logged and left for the next pass instead of silently lost.
 */
function stillAsSeen(path: string, seen: Seen | null): boolean {
  const now = lstatIfPresent(path);
  if (seen === null) return now === undefined;
  if (now === undefined || now.ino !== seen.ino) return false;
  // A directory's mtime moves as the commit deletes its children; rmdir's ENOTEMPTY guards its content instead.
  return seen.dir || (Math.floor(now.mtimeMs / 1000) === seen.mtime && now.size === seen.size);
}

function guard(what: string, path: string, action: () => void): void {
  try {
    action();
  } catch (cause) {
    throw new LocalIoError(`cannot ${what} ${path}`, { subject: path, cause });
  }
}
