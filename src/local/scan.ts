/**
 * The target side's tree: what the slave has under the target directory now,
 * with lstat semantics (a symlink is an entry, never followed), minus what
 * the filter excludes. Excluded paths are reported separately because rsync
 * protects them: they are never deleted, and neither is a directory holding
 * one. Our own leftover temp files are reported for cleanup instead.
 */
import type { Dirent, Stats } from 'node:fs';
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { errnoOf, LocalIoError } from '../errors.js';
import type { Filter } from '../filter/types.js';
import { type Entry, type EntryType, joinRel, type Tree, underRoot } from '../tree.js';
import { type IdNames, loadIdNames } from './ids.js';
import { isTempName } from './temp-names.js';

export interface ScanOptions {
  /** Names for local ids; read from /etc/passwd and /etc/group when absent. */
  readonly names?: IdNames;
  /** Called with each regular file's lstat (the content check keeps stat identities without a second lstat). */
  readonly onFileStat?: (path: string, st: Stats) => void;
}

export interface TargetScan {
  readonly tree: Tree;
  /** Paths the filter excluded (not descended): protected from deletion. */
  readonly excluded: ReadonlySet<string>;
  /** Our temp files left by an interrupted pass, relative paths, to remove. */
  readonly tempFiles: string[];
  /** Names that are not valid UTF-8 (shown with U+FFFD): protected like excluded paths, and warned about. */
  readonly unrepresentable: string[];
}

function entryType(st: Stats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

function toEntry(path: string, st: Stats, names: IdNames, linkTarget?: string): Entry {
  return {
    path,
    type: entryType(st),
    mode: st.mode & 0o7777,
    size: st.size,
    // SFTP v3 carries whole seconds; compare like with like.
    mtime: Math.floor(st.mtimeMs / 1000),
    uid: st.uid,
    gid: st.gid,
    owner: names.userById.get(st.uid),
    group: names.groupById.get(st.gid),
    linkTarget,
    ino: st.ino,
    dev: st.dev,
  };
}

/** True for errors meaning "it went away while we looked": a concurrent change, not a failure. */
function vanished(err: unknown): boolean {
  const code = errnoOf(err);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * A synchronous walk, on purpose: /etc/xroad's inodes are in the dentry
 * cache, where an lstat costs a microsecond or two, while each async fs call
 * costs a thread-pool round trip and a promise. Measured on 5,000 files: the
 * async walk took ~480 ms of CPU, this one a few tens. It runs while the
 * master's listing is in flight, so nothing waits on it.
 */
class TargetScanner {
  readonly entries: Entry[] = [];
  readonly excluded = new Set<string>();
  readonly tempFiles: string[] = [];
  readonly unrepresentable: string[] = [];

  constructor(
    private readonly root: string,
    private readonly filter: Filter,
    private readonly names: IdNames,
    private readonly onFileStat?: (path: string, st: Stats) => void,
  ) {}

  private abs(rel: string): string {
    return underRoot(this.root, rel);
  }

  private fail(rel: string, what: string, err: unknown): never {
    throw new LocalIoError(`cannot ${what} ${this.abs(rel)}`, { subject: this.abs(rel), cause: err });
  }

  scanDir(dir: string): void {
    let dirents: Dirent[];
    try {
      dirents = readdirSync(this.abs(dir), { withFileTypes: true });
    } catch (err) {
      if (vanished(err)) return;
      this.fail(dir, 'read directory', err);
    }
    for (const d of dirents) this.visit(joinRel(dir, d.name), d);
  }

  private visit(rel: string, dirent: Dirent): void {
    if (!dirent.isDirectory() && isTempName(dirent.name)) {
      this.tempFiles.push(rel);
      return;
    }
    // d_type is lstat-like; a DT_UNKNOWN file system gets the answer from lstat below.
    if (this.filter.isExcluded(rel, dirent.isDirectory())) {
      this.excluded.add(rel);
      return;
    }
    if (dirent.name.includes('\uFFFD')) {
      // Decoded with U+FFFD for invalid bytes, the name cannot be opened again: never touch it (nor its directory).
      this.unrepresentable.push(rel);
      this.excluded.add(rel);
      return;
    }
    const st = this.lstatOrNull(rel);
    if (!st) return;
    if (st.isDirectory() !== dirent.isDirectory() && this.filter.isExcluded(rel, st.isDirectory())) {
      this.excluded.add(rel);
      return;
    }
    const linkTarget = st.isSymbolicLink() ? this.readlinkOrNull(rel) : undefined;
    if (linkTarget === null) return;
    this.entries.push(toEntry(rel, st, this.names, linkTarget));
    if (st.isDirectory()) this.scanDir(rel);
    else if (st.isFile()) this.onFileStat?.(rel, st);
  }

  private lstatOrNull(rel: string): Stats | null {
    try {
      return lstatSync(this.abs(rel), { throwIfNoEntry: false }) ?? null;
    } catch (err) {
      if (vanished(err)) return null;
      this.fail(rel, 'lstat', err);
    }
  }

  private readlinkOrNull(rel: string): string | null {
    try {
      return readlinkSync(this.abs(rel));
    } catch (err) {
      if (vanished(err) || errnoOf(err) === 'EINVAL') return null;
      this.fail(rel, 'read symlink', err);
    }
  }
}

/** The root itself, followed if it is a symlink (rsync resolves the destination path). */
async function statRoot(root: string, names: IdNames): Promise<Entry> {
  let st: Stats;
  try {
    st = await stat(root);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') {
      throw new LocalIoError(`target directory ${root} does not exist`, {
        subject: root,
        cause: err,
        hint: 'install the security server packages first, or check the target path',
      });
    }
    throw new LocalIoError(`cannot stat target directory ${root}`, { subject: root, cause: err });
  }
  if (!st.isDirectory()) {
    throw new LocalIoError(`target ${root} is not a directory`, { subject: root, hint: 'check the target path' });
  }
  return toEntry('', st, names);
}

export async function scanTarget(root: string, filter: Filter, opts: ScanOptions = {}): Promise<TargetScan> {
  const names = opts.names ?? (await loadIdNames());
  const rootEntry = await statRoot(root, names);
  const scanner = new TargetScanner(root, filter, names, opts.onFileStat);
  scanner.scanDir('');
  // A sorted tree makes runs and tests repeatable.
  const sorted = [rootEntry, ...scanner.entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))];
  return {
    tree: new Map(sorted.map((e) => [e.path, e])),
    excluded: scanner.excluded,
    tempFiles: scanner.tempFiles.sort(),
    unrepresentable: scanner.unrepresentable.sort(),
  };
}
