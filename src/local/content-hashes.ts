/**
 * What a synced file holds, as a hash: the daemon's record of the target's
 * content between full scans. The quick check (size + mtime) cannot see an
 * in-place edit whose mtime was put back, and inotify does not report a
 * write through a shared mmap; comparing the bytes finds both.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

/**
 * The SHA-256 of the regular file at `abs`, or null when it is gone or is no
 * longer a regular file (replaced by a symlink or a FIFO since it was listed:
 * never followed, never blocked on).
 */
export async function hashFile(abs: string): Promise<string | null> {
  let handle;
  try {
    handle = await open(abs, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return null;
  }
  try {
    if (!(await handle.stat()).isFile()) return null;
    return createHash('sha256').update(await handle.readFile()).digest('base64');
  } catch {
    return null;
  } finally {
    await handle.close();
  }
}
