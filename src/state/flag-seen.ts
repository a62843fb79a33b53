/**
 * flag-seen.json under --state-dir: the pause flag as the running daemon sees
 * it, rewritten whenever that changes. `pause` compares it with the flag it
 * made (the inode is the same in every mount namespace): a daemon that looks
 * at a deleted flag directory (a bind mount keeps it alive after someone
 * replaced /var/tmp/xroad) or whose event loop is stuck never acknowledges,
 * and `pause` says so instead of "paused".
 */
import { readFile } from 'node:fs/promises';
import writeFileAtomic from 'write-file-atomic';
import { stateFilePath } from '../util/state-files.js';
import { stateFileOwner } from '../util/state-owner.js';

export interface FlagSeen {
  /** The daemon that wrote it. */
  readonly pid: number;
  readonly flagFile: string;
  /** The flag's inode, null when the daemon sees no flag. */
  readonly ino: number | null;
  readonly seenAt: string;
}

const flagSeenPath = (stateDir: string): string => stateFilePath(stateDir, 'flagSeen');

export async function writeFlagSeen(stateDir: string, seen: FlagSeen): Promise<void> {
  // Readable by `pause` run as another user (root); an old copy after a crash is harmless: the pid no longer matches.
  await writeFileAtomic(flagSeenPath(stateDir), JSON.stringify(seen) + '\n', { mode: 0o644, fsync: false, chown: stateFileOwner(stateDir) });
}

export async function readFlagSeen(stateDir: string): Promise<FlagSeen | null> {
  const text = await readFile(flagSeenPath(stateDir), 'utf8').catch(() => null);
  if (text === null) return null;
  try {
    return JSON.parse(text) as FlagSeen;
  } catch {
    return null; // half-written by a tool that is not ours: as if absent
  }
}
