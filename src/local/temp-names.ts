/**
 * Names of our own temporary files in the target tree. A fetched file is
 * written under such a name next to its final path and renamed into place,
 * so the signer's watcher sees one IN_MOVED_TO and never a half-written file.
 * A pass that dies leaves them behind; the next scan finds them by this
 * pattern and removes them. They end in `.tmp` so the guide's `*.tmp`
 * exclude also keeps an old rsync from copying or deleting them.
 *
 * Each name carries its owner: a short hash of the --state-dir of the pass
 * that staged it. While a commit's journal exists, an owner file in the
 * target root (`.xroad-sync.<owner>.owner.tmp`) holds that state dir's path,
 * so a pass with another state dir can find the journal that still needs
 * these files instead of taking them for strays.
 */
import { createHash, randomBytes } from 'node:crypto';
import { basename, resolve } from 'node:path';

/**
 * `.xroad-sync.<8 hex owner>.<12 hex>.tmp` (a staged file), `.xroad-sync.<8 hex owner>.owner.tmp`
 * (the owner file) or `.xroad-sync.<12 hex>.tmp` (a staged file of a version before owners): exact,
 * so an operator's own file never matches.
 */
export const TEMP_NAME_RE = /^\.xroad-sync\.(?:([0-9a-f]{8})\.([0-9a-f]{12}|owner)|[0-9a-f]{12})\.tmp$/;

/** The owner tag of a state dir: 32 bits of the SHA-256 of its absolute path. */
export function ownerTag(stateDir: string): string {
  // A daemon asks for its own every pass.
  let tag = tagByStateDir.get(stateDir);
  if (tag === undefined) {
    tag = createHash('sha256').update(resolve(stateDir)).digest('hex').slice(0, 8);
    if (tagByStateDir.size < 64) tagByStateDir.set(stateDir, tag);
  }
  return tag;
}
const tagByStateDir = new Map<string, string>();

/**
 * A fresh temp-file name (basename only). Counted up from a random 48-bit start drawn once per
 * process: unique within it, and two processes clash only if their starts fall within the number of
 * files they stage (and O_EXCL creation refuses a clash rather than share a file). Asking the CSPRNG
 * per file cost ~6 µs each, 30 ms of a 5,000-file initial sync.
 */
export function tempName(owner: string): string {
  tempCounter = (tempCounter + 1) % TEMP_SPACE;
  return `.xroad-sync.${owner}.${tempCounter.toString(16).padStart(12, '0')}.tmp`;
}
const TEMP_SPACE = 2 ** 48;
let tempCounter = randomBytes(6).readUIntBE(0, 6);

/** The owner file's name (basename, in the target root). */
export function ownerFileName(owner: string): string {
  return `.xroad-sync.${owner}.owner.tmp`;
}

export function isTempName(name: string): boolean {
  return TEMP_NAME_RE.test(name);
}

/** Whose a temp file (a path relative to the target) is: its owner tag (null for a name without one), and whether it is an owner file. */
export function tempOwner(rel: string): { readonly owner: string | null; readonly ownerFile: boolean } | undefined {
  const m = TEMP_NAME_RE.exec(basename(rel));
  if (!m) return undefined;
  return { owner: m[1] ?? null, ownerFile: m[2] === 'owner' };
}
