/**
 * Files whose content was taken while their master mtime was too recent to
 * trust (git's "racily clean"): a same-size rewrite in that same second
 * keeps size and mtime, so the quick check alone would never fetch it again.
 * Their (size, mtime) as listed are kept in <state-dir>/racy-files.json; the
 * next pass fetches each again, and keeps only the new content's bytes if
 * they differ from the slave's (nothing is reported otherwise). Once the
 * master stops changing, the file leaves the list. A lost or unreadable list
 * means "unknown": every file whose quick check matches is fetched again
 * once and compared, a refetch, never a wrong result.
 */
import writeFileAtomic from 'write-file-atomic';
import { LocalIoError } from '../errors.js';
import type { Entry, Tree } from '../tree.js';
import { readSmallFile } from '../util/small-file.js';
import { stateFilePath } from '../util/state-files.js';
import { stateFileOwner } from '../util/state-owner.js';

const VERSION = 1;
type Listed = readonly [size: number, mtime: number];

interface RacyDoc {
  readonly version: number;
  readonly target: string;
  readonly files: Record<string, Listed>;
}

function racyFilesPath(stateDir: string): string {
  return stateFilePath(stateDir, 'racyFiles');
}

export class RacyFiles {
  private constructor(
    private readonly stateDir: string,
    private readonly target: string,
    /** null: no trustworthy record (first pass, lost state dir): everything is suspect once. */
    private readonly known: ReadonlyMap<string, Listed> | null,
  ) {}

  static async load(stateDir: string, target: string): Promise<RacyFiles> {
    const text = readSmallFile(racyFilesPath(stateDir));
    let known: Map<string, Listed> | null = null;
    try {
      const doc = text === null ? null : (JSON.parse(text) as RacyDoc);
      if (doc && doc.version === VERSION && doc.target === target && typeof doc.files === 'object') known = new Map(Object.entries(doc.files));
    } catch {
      known = null;
    }
    return new RacyFiles(stateDir, target, known);
  }

  /** True when a file whose size and mtime match must still be fetched and compared. */
  suspect(path: string): boolean {
    return this.known === null || this.known.has(path);
  }

  /** False when no file at all is suspect (the record is known and empty): the quick check holds for every path. */
  anySuspect(): boolean {
    return this.known === null || this.known.size > 0;
  }

  /** The racy files of this listing: regular files with an mtime inside `window`. */
  static of(tree: Tree, window: RacyWindow): Map<string, Listed> {
    const out = new Map<string, Listed>();
    // The daemon gets the same tree back while the master is unchanged: its newest mtime says at once that none is recent.
    if (newestFileMtime(tree) < window.from) return out;
    for (const e of tree.values()) if (isRacy(e, window)) out.set(e.path, [e.size, e.mtime]);
    return out;
  }

  /**
   * Before a commit: the old entries stay until the commit has replaced
   * them, so a commit that stops part-way leaves nothing unverified.
   * Nothing is written while the record is unknown (it stays unknown).
   */
  async beforeCommit(now: ReadonlyMap<string, Listed>): Promise<void> {
    if (this.known === null) return;
    const union = new Map([...this.known, ...now]);
    if (!sameRecord(union, this.known)) await this.write(union, true);
  }

  /** After a complete pass: exactly this listing's racy files. */
  async settle(now: ReadonlyMap<string, Listed>): Promise<void> {
    if (this.known !== null && sameRecord(now, this.known)) return;
    await this.write(now, false);
  }

  private async write(files: ReadonlyMap<string, Listed>, fsync: boolean): Promise<void> {
    const doc: RacyDoc = { version: VERSION, target: this.target, files: Object.fromEntries(files) };
    const path = racyFilesPath(this.stateDir);
    await writeFileAtomic(path, JSON.stringify(doc), { fsync, mode: 0o600, chown: stateFileOwner(this.stateDir) }).catch((cause: unknown) => {
      throw new LocalIoError(`cannot write ${path}`, { subject: path, cause, hint: 'the state directory must be writable by the sync user' });
    });
  }
}

/**
 * The master mtimes (whole seconds) too recent to trust for one listing. An
 * mtime beyond `until` is not "recent": it is a wrong clock at some point (an
 * archive unpacked with future dates); any ordinary rewrite moves it back to
 * the present, so the quick check sees it, and a daemon does not fetch such
 * a file again every second for as long as the date stays ahead.
 */
export interface RacyWindow {
  readonly from: number;
  readonly until: number;
}

export function isRacy(e: Entry, window: RacyWindow): boolean {
  return e.type === 'file' && e.mtime >= window.from && e.mtime <= window.until;
}

const newestByTree = new WeakMap<Tree, number>();
function newestFileMtime(tree: Tree): number {
  let newest = newestByTree.get(tree);
  if (newest === undefined) {
    newest = -Infinity;
    for (const e of tree.values()) if (e.type === 'file' && e.mtime > newest) newest = e.mtime;
    newestByTree.set(tree, newest);
  }
  return newest;
}

function sameRecord(a: ReadonlyMap<string, Listed>, b: ReadonlyMap<string, Listed>): boolean {
  if (a.size !== b.size) return false;
  for (const [p, [size, mtime]] of a) {
    const other = b.get(p);
    if (!other || other[0] !== size || other[1] !== mtime) return false;
  }
  return true;
}
