/**
 * Stage: fetch every changed file (and build every changed symlink) into a
 * temp file beside its final place, before anything in the target changes.
 * Temp files are created exclusively with mode 0600 (signer keys are never
 * readable by others, not even for a moment), written, fsynced, checked
 * against the listed size, then given their final mode, owner and mtime, so
 * the commit is nothing but renames. (Many files are flushed to disk once,
 * after the last is written, instead of fsynced each: flush.ts.)
 */
import { closeSync, fchmodSync, fchownSync, fsync, futimesSync, openSync, readSync, write, writeSync } from 'node:fs';
import { lchown, lutimes, open, symlink, unlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ContentUnlikeListingError, describeError, errnoOf, LocalIoError, MasterChangedError, ProtocolError, SyncError } from '../errors.js';
import { contentHasher } from '../local/content-hashes.js';
import { tempName } from '../local/temp-names.js';
import type { Change, Plan } from '../plan/types.js';
import type { MasterSource } from '../remote/types.js';
import { type Entry, parentOf, type Tree } from '../tree.js';
import { forEachLimited } from '../util/pool.js';
import { flushOnceFor, flushStaged } from './flush.js';
import { startTempWriter, TempWriteError } from './temp-writer.js';

type StagedChange = Extract<Change, { kind: 'fetch' | 'symlink' }>;

export interface StageOptions {
  readonly targetRoot: string;
  /** The target as scanned: temp files go into a parent directory only if it exists there and stays. */
  readonly target: Tree;
  /** Files fetched at once (each fetch is several dependent SFTP round trips). */
  readonly concurrency: number;
  /** The owner tag of the pass's state dir, carried in every temp name (local/temp-names.ts). */
  readonly owner: string;
  /** Checked between files: an abort stops staging and discards what was staged. */
  readonly signal?: AbortSignal;
  /** Called after each staged file, for progress and test hooks. */
  readonly onStaged?: (path: string) => void;
  /** Awaited before the one flush of many staged files starts (a test hook); staging returns meanwhile. */
  readonly beforeFlush?: () => void | Promise<void>;
  /**
   * True for a master file whose mtime is too recent to trust (the listing's
   * second or later, git's "racily clean"): a writer may be rewriting it in
   * place right now, keeping size and mtime. Such a file is read twice and
   * must come back with the same bytes (state/racy.ts has it fetched again
   * by the next pass).
   */
  readonly isRacy?: (entry: Entry) => boolean;
}

export interface Staging {
  /** Relative path → absolute temp path, for every fetch and symlink change. */
  readonly temps: ReadonlyMap<string, string>;
  /** `verify` fetches whose bytes equal the slave's: their temps are gone, the change is dropped. */
  readonly identical: ReadonlySet<string>;
  /**
   * The content hash (local/content-hashes.ts) of each fetched file's bytes as staged: the content
   * record takes what the pass wrote from here instead of reading the committed files back.
   */
  readonly contentHashes: ReadonlyMap<string, string>;
  /**
   * Settles when every staged file's data is on disk: at once where each was fsynced, after the one
   * flush of the filesystem where they were flushed together. The commit prepares meanwhile and waits
   * for it before its journal (commit.ts); a rejection is the flush's LocalIoError, before anything changed.
   */
  readonly durable: Promise<void>;
  /**
   * Remove every temp file still ours. Before a commit this also puts back
   * the mtimes of the directories that held them; after one (`committed`),
   * the commit has already set the master's.
   */
  discard(opts?: { committed?: boolean }): Promise<void>;
  /** Stop tracking temps the commit renamed into place. */
  forget(renamed: (path: string) => boolean): void;
}

export async function stageChanges(plan: Plan, source: MasterSource, opts: StageOptions): Promise<Staging> {
  const work = plan.changes.filter((c): c is StagedChange => c.kind === 'fetch' || c.kind === 'symlink');
  const temps = new Map<string, string>();
  const tempDir = tempDirChooser(plan, opts);
  let durable: Promise<void> = Promise.resolve();
  const discard = async ({ committed = false } = {}): Promise<void> => {
    await durable.catch(() => undefined); // the flush holds the temps' names
    await Promise.all([...temps.values()].map((t) => unlink(t).catch(() => undefined)));
    temps.clear();
    if (!committed) await restoreDirTimes(touched, opts);
  };
  const touched = new Set<string>();
  const identical = new Set<string>();
  const contentHashes = new Map<string, string>();
  const identicalDirs = new Set<string>();
  const fetches = work.filter((c) => c.kind === 'fetch');
  // Many files (1,000+): no fsync each, one flush of the filesystem after the last is written (flush.ts says when and why).
  const flushOnce = flushOnceFor(
    fetches.length,
    fetches.reduce((sum, c) => sum + c.source.size, 0),
  );

  const finalOf = (temp: string): string => join(opts.targetRoot, [...temps].find(([, t]) => t === temp)?.[0] ?? '?');
  // Many files flushed once: their creation and writes go to a second thread (temp-writer.ts).
  const writer = flushOnce ? startTempWriter() : undefined;
  try {
    await forEachLimited(work, opts.concurrency, async (change) => {
      if (opts.signal?.aborted) throw opts.signal.reason;
      const dir = tempDir(change.path);
      touched.add(dir);
      const tempAbs = join(dir, tempName(opts.owner));
      temps.set(change.path, tempAbs);
      if (change.kind === 'fetch') {
        const racy = opts.isRacy?.(change.source) === true;
        // A file compared with the slave's right after staging (verify) or read back (racy) is written here.
        if (writer && !racy && !change.verify && change.source.size <= SYNC_WRITE_MAX) {
          const failed = writer.failure();
          if (failed) throw writeFailure(failed, finalOf);
          const data = await fetchIntoMemory(change, source);
          const job = { temp: tempAbs, data, uid: change.owner.uid, gid: change.owner.gid, mode: change.source.mode, mtime: change.source.mtime };
          // A failure on the thread may surface here (it refuses more work once one file failed): worded like the rest.
          await writer
            .enqueue(job, (contentHash) => {
              contentHashes.set(change.path, contentHash);
              opts.onStaged?.(change.path);
            })
            .catch((err: unknown) => {
              throw writeFailure(err, finalOf);
            });
          return;
        }
        const hash = await stageFile(change, tempAbs, source, opts.targetRoot, racy, flushOnce);
        if (hash !== null) contentHashes.set(change.path, hash);
        if (change.verify && (await sameBytes(tempAbs, join(opts.targetRoot, change.path)))) {
          await unlink(tempAbs);
          temps.delete(change.path);
          identical.add(change.path);
          identicalDirs.add(dir);
        }
      } else await stageSymlink(change, tempAbs, opts.targetRoot);
      opts.onStaged?.(change.path);
    });
    await writer?.settled().catch((err: unknown) => {
      throw writeFailure(err, finalOf);
    });
    if (flushOnce) {
      const staged = fetches.map((c) => temps.get(c.path)).filter((t): t is string => t !== undefined);
      durable = (async () => {
        await opts.beforeFlush?.();
        await flushStaged(opts.targetRoot, staged);
      })();
      durable.catch(() => undefined); // awaited by the commit, or by discard
    }
  } catch (err) {
    // Nothing may still be writing a temp when they are removed.
    await writer?.settled().catch(() => undefined);
    await discard();
    throw err;
  } finally {
    await writer?.close();
  }
  // A dropped temp still bumped its directory's mtime; the commit only restores the directories it writes in.
  await restoreDirTimes(identicalDirs, opts);
  const forget = (renamed: (path: string) => boolean): void => {
    for (const path of [...temps.keys()]) if (renamed(path)) temps.delete(path);
  };
  return { temps, identical, contentHashes, durable, discard, forget };
}

/**
 * Same directory as the final path when that directory already exists and is
 * not being replaced (a rename within a directory is the classic atomic
 * replace); otherwise the target root, which is on the same filesystem.
 */
/** Creating and removing a temp file bumps its directory's mtime: put back what the scan saw. */
async function restoreDirTimes(dirs: ReadonlySet<string>, opts: StageOptions): Promise<void> {
  await Promise.all(
    [...dirs].map(async (abs) => {
      const rel = abs === opts.targetRoot ? '' : abs.slice(opts.targetRoot.length + 1);
      const seen = opts.target.get(rel);
      if (seen) await utimes(abs, seen.mtime, seen.mtime).catch(() => undefined);
    }),
  );
}

function tempDirChooser(plan: Plan, opts: StageOptions): (path: string) => string {
  const replaced = new Set(plan.changes.filter((c) => c.kind === 'delete').map((c) => c.path));
  return (path) => {
    const parent = parentOf(path);
    const usable = opts.target.get(parent)?.type === 'dir' && !replaced.has(parent);
    return usable ? join(opts.targetRoot, parent) : opts.targetRoot;
  };
}

const fsyncFd = promisify(fsync);
const writeFd = promisify(write);
/** Above this size a file's chunks are written on the thread pool (see stageFile). */
const SYNC_WRITE_MAX = 256 * 1024;

/**
 * Create, write and close go straight to the kernel, synchronously: on a
 * local filesystem they land in the page cache in microseconds, where each
 * async call is a thread-pool round trip (futex wake-ups both ways), four or
 * more per file. The fsync, the one call that waits for the disk, stays on
 * the thread pool; the system calls and their order are the same as before.
 * A large file's chunks still go through the pool: written synchronously,
 * they let received Buffers pile up between scavenges (peak RSS +30–50 MB
 * on the bench's large initial sync, measured).
 */
async function stageFile(
  change: StagedChange,
  tempAbs: string,
  source: MasterSource,
  targetRoot: string,
  racy: boolean,
  flushedLater: boolean,
): Promise<string | null> {
  const want = change.source;
  const small = want.size <= SYNC_WRITE_MAX;
  // Hashed as written (the source hands chunks on in file order; anything else leaves the hash to a read-back).
  const hasher = contentHasher();
  let hashedUpTo: number | null = 0;
  let fd: number;
  try {
    fd = openSync(tempAbs, racy ? 'wx+' : 'wx', 0o600);
  } catch (err) {
    throw localError('cannot create temp file', tempAbs, err);
  }
  try {
    const received = await source
      .fetch(want, {
        write: async (chunk, position) => {
          if (hashedUpTo === position) {
            hasher.update(chunk);
            hashedUpTo += chunk.length;
          } else hashedUpTo = null;
          try {
            if (small) for (let done = 0; done < chunk.length; ) done += writeSync(fd, chunk, done, chunk.length - done, position + done);
            else await writeFd(fd, chunk, 0, chunk.length, position);
          } catch (err) {
            throw localError(`cannot write ${join(targetRoot, change.path)} (staged as ${tempAbs})`, tempAbs, err);
          }
        },
      })
      .catch((err: unknown) => {
        // A racy file's mtime cannot move when its writer truncates and rewrites it in that second: a race, not a lie.
        if (racy && err instanceof ContentUnlikeListingError) {
          throw new MasterChangedError(`${change.path} changed on the master while it was read (${err.message}; rewritten within its listed second)`, {
            subject: change.path,
            cause: err,
          });
        }
        throw err;
      });
    // Every write above either completed or threw, so the bytes received are the bytes on disk.
    if (received !== want.size) {
      throw new ProtocolError(`${change.path}: received ${received} bytes but the master listed ${want.size}`, { subject: change.path });
    }
    if (racy) await verifyByRereading(change, source, fd);
    if (!flushedLater) await fsyncFd(fd);
    // Metadata on an open fd never blocks on the disk either.
    // chown before chmod: chown clears set-id bits.
    if (change.owner.uid !== undefined || change.owner.gid !== undefined) {
      fchownSync(fd, change.owner.uid ?? -1, change.owner.gid ?? -1);
    }
    fchmodSync(fd, want.mode);
    futimesSync(fd, want.mtime, want.mtime);
    return hashedUpTo === want.size ? hasher.digest() : null;
  } catch (err) {
    if (err instanceof SyncError) throw err;
    throw localError(`cannot stage ${join(targetRoot, change.path)}`, tempAbs, err);
  } finally {
    try {
      closeSync(fd);
    } catch {
      // already reported or irrelevant: the temp is discarded or renamed by name
    }
  }
}

/** A small file's bytes, for the writer thread: checked against the listed size. */
async function fetchIntoMemory(change: StagedChange, source: MasterSource): Promise<Buffer> {
  const want = change.source;
  const data = Buffer.allocUnsafeSlow(want.size);
  const received = await source.fetch(want, {
    write: async (chunk, position) => {
      if (position + chunk.length > data.length) {
        throw new ProtocolError(`${change.path}: the master sent more bytes than the ${want.size} it listed`, { subject: change.path });
      }
      chunk.copy(data, position);
    },
  });
  if (received !== want.size) {
    throw new ProtocolError(`${change.path}: received ${received} bytes but the master listed ${want.size}`, { subject: change.path });
  }
  return data;
}

/** A failure on the writer thread, worded as stageFile words the same failure; `finalOf` names a temp's final path. */
function writeFailure(err: unknown, finalOf: (temp: string) => string): unknown {
  if (!(err instanceof TempWriteError)) {
    if (err instanceof SyncError) return err;
    return new LocalIoError(`cannot stage files: ${describeError(err)}; nothing was changed`, {
      cause: err,
      hint: 'the next pass tries again; XROAD_SYNC_FLUSH=per-file in the settings file stages on the main thread (each file fsynced)',
    });
  }
  const final = finalOf(err.temp);
  const what =
    err.step === 'create' ? 'cannot create temp file' : err.step === 'write' ? `cannot write ${final} (staged as ${err.temp})` : `cannot stage ${final}`;
  return localError(what, err.temp, err.cause);
}

/** Byte-for-byte comparison of two files (a missing or unreadable one differs). */
async function sameBytes(a: string, b: string): Promise<boolean> {
  const [fa, fb] = await Promise.all([open(a, 'r'), open(b, 'r').catch(() => undefined)]);
  try {
    if (!fb) return false;
    const [sa, sb] = await Promise.all([fa.stat(), fb.stat()]);
    if (sa.size !== sb.size) return false;
    const [ba, bb] = [Buffer.allocUnsafe(64 * 1024), Buffer.allocUnsafe(64 * 1024)];
    for (let pos = 0; pos < sa.size; ) {
      const [ra, rb] = await Promise.all([fa.read(ba, 0, ba.length, pos), fb.read(bb, 0, bb.length, pos)]);
      if (ra.bytesRead === 0 || ra.bytesRead !== rb.bytesRead || !ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) return false;
      pos += ra.bytesRead;
    }
    return true;
  } finally {
    await fa.close();
    await fb?.close();
  }
}

/**
 * A same-size rewrite within the listing's second is invisible to size and
 * mtime: read the file again and require the same bytes, so torn content (a
 * read racing an in-place writer) is never committed.
 */
async function verifyByRereading(change: StagedChange, source: MasterSource, staged: number): Promise<void> {
  await source.fetch(change.source, {
    write: async (chunk, position) => {
      const have = Buffer.allocUnsafe(chunk.length);
      let bytesRead = 0;
      for (let n = -1; n !== 0 && bytesRead < chunk.length; bytesRead += n)
        n = readSync(staged, have, bytesRead, chunk.length - bytesRead, position + bytesRead);
      if (bytesRead !== chunk.length || !have.equals(chunk)) {
        throw new MasterChangedError(`${change.path} changed on the master while it was read (two reads differ)`, { subject: change.path });
      }
    },
  });
}

async function stageSymlink(change: StagedChange, tempAbs: string, targetRoot: string): Promise<void> {
  const want = change.source;
  try {
    await symlink(want.linkTarget ?? '', tempAbs);
    if (change.owner.uid !== undefined || change.owner.gid !== undefined) {
      await lchown(tempAbs, change.owner.uid ?? -1, change.owner.gid ?? -1);
    }
    await lutimes(tempAbs, want.mtime, want.mtime);
  } catch (err) {
    throw localError(`cannot stage symlink ${join(targetRoot, change.path)}`, tempAbs, err);
  }
}

function localError(what: string, path: string, cause: unknown): LocalIoError {
  const errno = errnoOf(cause);
  const hint =
    errno === 'ENOSPC'
      ? 'free space on the target filesystem; nothing was changed'
      : errno === 'EACCES' || errno === 'EPERM'
        ? 'the sync user needs write access to the target directory'
        : undefined;
  return new LocalIoError(what, { subject: path, cause, hint });
}
