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
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

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
    const hash = createHash('sha256');
    for (let n: number; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0; ) hash.update(chunk.subarray(0, n));
    return hash.digest('base64');
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}
