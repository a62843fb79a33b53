/**
 * What a synced file holds, as a hash: the daemon's record of the target's
 * content between full scans. The quick check (size + mtime) cannot see an
 * in-place edit whose mtime was put back, and inotify does not report a
 * write through a shared mmap; comparing the bytes finds both.
 *
 * Read synchronously, as the state files are (util/small-file.ts): the
 * files are small and local, and four trips through libuv's thread pool per
 * file cost several times more CPU than reading and hashing it.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';

/**
 * How long after a file's last change (its ctime) its stat identity is not
 * yet trusted to vouch for its content. A change within the same clock tick
 * as the one before it can leave ctime as it was (coarse timestamps), and a
 * page written through a shared mmap updates mtime and ctime only at its
 * first write fault after writeback (the kernel writes dirty pages back
 * within ~35 s by default): until then further writes through the mapping
 * change nothing stat can see. Older than this, any change moves ctime.
 */
const STAT_KEY_SETTLE_MS = 60_000;

/**
 * The stat identity of a regular file: device, inode, size, mtime and ctime.
 * ctime cannot be set by users, so an in-place edit whose size and mtime were
 * put back still changes it; a file replaced by rename has another inode.
 */
export interface StatIdentity {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
}

/**
 * A file's identity, or undefined while it changed too recently to be trusted
 * (STAT_KEY_SETTLE_MS, against the wall clock the kernel stamps ctime with):
 * it is then hashed at every check until it has settled.
 */
export function statIdentityOf(st: Stats, nowWallMs: number): StatIdentity | undefined {
  if (st.ctimeMs > nowWallMs - STAT_KEY_SETTLE_MS) return undefined;
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
}

/** Compared field by field: a check of an unchanged tree allocates nothing per file. */
export function sameIdentity(recorded: StatIdentity, st: Stats): boolean {
  return recorded.ino === st.ino && recorded.ctimeMs === st.ctimeMs && recorded.mtimeMs === st.mtimeMs && recorded.size === st.size && recorded.dev === st.dev;
}

/** The record's hash: SHA-256, base64 (the staging thread computes it too: stage/temp-writer.ts). */
export const CONTENT_HASH = { algorithm: 'sha256', encoding: 'base64' } as const;

/** The record's hash of bytes fed in file order: what hashFile returns for a file holding them. */
export function contentHasher(): { update(bytes: Buffer): void; digest(): string } {
  const hash = createHash(CONTENT_HASH.algorithm);
  return { update: (bytes) => void hash.update(bytes), digest: () => hash.digest(CONTENT_HASH.encoding) };
}

/** Read in pieces into one reused buffer: a large file costs no memory, and no file is too large to read. */
const chunk = Buffer.allocUnsafe(256 * 1024);

/**
 * The SHA-256 of the regular file at `abs`, or null when it is gone or is no
 * longer a regular file (replaced by a symlink or a FIFO since it was listed:
 * never followed, never blocked on).
 */
export function hashFile(abs: string): string | null {
  let fd: number;
  try {
    fd = openSync(abs, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return null;
  }
  try {
    if (!fstatSync(fd).isFile()) return null;
    const hash = createHash(CONTENT_HASH.algorithm);
    for (let n: number; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0; ) hash.update(chunk.subarray(0, n));
    return hash.digest(CONTENT_HASH.encoding);
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}
