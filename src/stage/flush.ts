/**
 * Getting staged files' data onto the disk before the commit renames them.
 *
 * One fsync per file costs a journal commit each (ext4 batches only the
 * fsyncs in flight at once, and libuv runs four): 5,000 small files took
 * ~2,300 commits and 8 s on a loop-mounted ext4, where one syncfs(2) of the
 * filesystem after staging took 1 commit and 1 s. Node has no syncfs, so
 * coreutils' `sync -f` makes the call. But syncfs writes out every dirty
 * page of the filesystem, other programs' too (PostgreSQL's on a slave):
 * it is used only for a pass that stages many files while the other
 * dirty pages are few next to the journal commits it saves, and every other
 * pass fsyncs file by file as before. XROAD_SYNC_FLUSH=per-file (never the
 * whole filesystem) or =filesystem (always, from the first file) overrides.
 */
import { execFile } from 'node:child_process';
import { closeSync, existsSync, fsync, openSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { LocalIoError } from '../errors.js';
import { forEachLimited } from '../util/pool.js';

/**
 * Fewer staged files than this are fsynced one by one, as a realistic
 * /etc/xroad (~250 files) always is: its fsyncs cost a fraction of a second,
 * while a flush of the whole filesystem can cost more than that when other
 * programs have written a lot (measured: 1.7 s against 0.75 s next to other
 * jobs' dirty pages).
 */
export const FLUSH_ONCE_MIN_FILES = 1000;
/**
 * Dirty pages beyond our own staged bytes that one flush may take along: a
 * base (an idle slave has a few MB) plus, per fsync saved, what a disk
 * writes in the time of a journal commit with its cache flush (~1 ms on an
 * SSD, more on a disk): writing that much is no slower than the commit.
 */
const FOREIGN_DIRTY_BASE_BYTES = 64 * 1024 * 1024;
const FOREIGN_DIRTY_PER_FILE_BYTES = 128 * 1024;
const SYNC_BINARIES = ['/usr/bin/sync', '/bin/sync'];
/** Temps re-opened and fsynced at once when the single flush is not possible. */
const FSYNC_CONCURRENCY = 16;

const fsyncFd = promisify(fsync);
const execFileAsync = promisify(execFile);

/**
 * Whether staging `files` files of `bytes` bytes should skip the fsync per
 * file and flush the filesystem once at the end (`flushStaged`).
 */
export function flushOnceFor(files: number, bytes: number, mode = process.env.XROAD_SYNC_FLUSH): boolean {
  if (files === 0 || mode === 'per-file' || !SYNC_BINARIES.some((b) => existsSync(b))) return false;
  if (mode === 'filesystem') return true;
  if (files < FLUSH_ONCE_MIN_FILES) return false;
  const dirty = dirtyBytes();
  return dirty !== null && dirty <= bytes + FOREIGN_DIRTY_BASE_BYTES + files * FOREIGN_DIRTY_PER_FILE_BYTES;
}

/** The system's dirty page cache (Linux /proc/meminfo), bytes; null where unknown. */
function dirtyBytes(): number | null {
  try {
    const kb = /^Dirty:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1];
    return kb === undefined ? null : Number(kb) * 1024;
  } catch {
    return null;
  }
}

/**
 * Every staged file's data and metadata on disk: syncfs(2) of the target's
 * filesystem, once. If that cannot run or reports an error, each file is
 * fsynced by name instead, which surfaces a write-back error (the kernel
 * reports an unseen one to the next fsync of the file) with its path.
 */
export async function flushStaged(targetRoot: string, files: readonly string[]): Promise<void> {
  if (await syncFilesystem(targetRoot)) return;
  await forEachLimited(files, FSYNC_CONCURRENCY, async (file) => {
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch (err) {
      throw new LocalIoError('cannot open a staged file to fsync it', { subject: file, cause: err });
    }
    try {
      await fsyncFd(fd);
    } catch (err) {
      throw new LocalIoError('cannot fsync a staged file', { subject: file, cause: err });
    } finally {
      closeSync(fd);
    }
  });
}

/** `sync -f PATH` (coreutils ≥ 8.24): true when syncfs(2) of PATH's filesystem succeeded. */
async function syncFilesystem(path: string): Promise<boolean> {
  const binary = SYNC_BINARIES.find((b) => existsSync(b));
  if (!binary) return false;
  try {
    await execFileAsync(binary, ['-f', path], { env: {}, timeout: 0 });
    return true;
  } catch {
    return false;
  }
}
