/**
 * Names of our own temporary files in the target tree. A fetched file is
 * written under such a name next to its final path and renamed into place,
 * so the signer's watcher sees one IN_MOVED_TO and never a half-written file.
 * A pass that dies leaves them behind; the next scan finds them by this
 * pattern and removes them. They end in `.tmp` so the guide's `*.tmp`
 * exclude also keeps an old rsync from copying or deleting them.
 */
import { randomBytes } from 'node:crypto';

/** `.xroad-sync.<12 hex>.tmp`: exact, so an operator's own file never matches. */
export const TEMP_NAME_RE = /^\.xroad-sync\.[0-9a-f]{12}\.tmp$/;

/** A fresh temp-file name (basename only); 48 random bits make clashes negligible. */
export function tempName(): string {
  return `.xroad-sync.${randomBytes(6).toString('hex')}.tmp`;
}

export function isTempName(name: string): boolean {
  return TEMP_NAME_RE.test(name);
}
