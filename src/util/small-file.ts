/**
 * The state and id files (locks, journal, racy-file record, /etc/passwd,
 * /etc/group) are a few KB and local. They are read synchronously: an async
 * readFile is four trips through libuv's thread pool (open, fstat, read,
 * close), which for a daemon polling every second cost more CPU than the
 * reads themselves.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';

/** The file's text, or null when it is missing or cannot be read (callers treat both as "no record"). */
export function readSmallFile(path: string): string | null {
  // Most of these are usually absent (the journal): a failed read builds an Error with its stack, an existence check does not.
  if (!existsSync(path)) return null;
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** The file's text, or null when it is missing; any other failure (permission denied) is thrown: absent and unreadable differ. */
export function readSmallFileStrictly(path: string): string | null {
  // Not existsSync: it says false for a directory this user may not search too, and that is "unreadable", not "missing".
  if (statSync(path, { throwIfNoEntry: false }) === undefined) return null;
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}
