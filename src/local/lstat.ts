/**
 * lstat for a path that may have gone: none when it is gone (ENOENT), its parent became a file
 * (ENOTDIR) or it cannot be looked at. Synchronous: one local system call, where a trip through
 * libuv's thread pool costs several times its CPU (the commit and the content record make one per file).
 */
import { lstatSync, type Stats } from 'node:fs';

export function lstatIfPresent(path: string): Stats | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}
