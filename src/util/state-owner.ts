/**
 * Files a command run as root writes into the state dir (`sudo xroad-sync
 * sync` instead of `sudo -u xroad`) belong to the state dir's owner, like
 * the ones the service would have written: a root-owned 0600 crash journal
 * or record is unreadable for the service user's daemon, which would take it
 * for none. Undefined when nothing needs handing over (not root, or a state
 * dir of root's own).
 */
import { statSync } from 'node:fs';

export interface FileOwner {
  readonly uid: number;
  readonly gid: number;
}

export function stateFileOwner(stateDir: string): FileOwner | undefined {
  if (process.geteuid?.() !== 0) return undefined;
  const dir = statSync(stateDir, { throwIfNoEntry: false });
  if (dir === undefined || dir.uid === 0) return undefined;
  return { uid: dir.uid, gid: dir.gid };
}
