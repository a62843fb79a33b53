import { open } from 'node:fs/promises';
import { errnoOf } from '../errors.js';

/**
 * fsync a directory, so the renames, creations and removals in it survive a
 * crash. A directory removed or replaced later in the same commit (ENOENT,
 * ENOTDIR) has nothing left to make durable; one the sync user may not read
 * (EACCES: a mode without r for a non-root user) cannot be opened to fsync.
 */
export async function fsyncDir(path: string): Promise<void> {
  const handle = await open(path, 'r').catch((err: unknown) => {
    const code = errnoOf(err);
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EACCES') return undefined;
    throw err;
  });
  if (!handle) return;
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
