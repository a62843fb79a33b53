/**
 * The text rsync's `--log-file` writes for a pull with `-aqz` (default format
 * `%i %n%L`), built from one planned change. Pure: no clock, no I/O except
 * reading our version once when the caller does not give one.
 *
 * Deviations from rsync, deliberate (monitoring greps still match):
 * - The cause line of a failure is `xroad-sync: [receiver] <what> ...`, not
 *   `rsync: [receiver] ...`, because the text is ours and not rsync's.
 * - The error line ends `at xroad-sync [receiver=xroad-sync <version>]`
 *   where rsync names its source file, line and version
 *   (`at io.c(231) [Receiver=3.2.7]`); `rsync error: <text> (code N)` is kept.
 * - `sent`/`received` on the final line are SFTP byte counts, not rsync's
 *   wire counts (only `total size` is comparable).
 * - Deletions of the old entry a new one replaces are not logged, as in
 *   rsync (delete.c: no log_delete() with DEL_MAKE_ROOM), but the contents of
 *   a replaced directory are, which needs the whole plan: see itemizePlan().
 */
import { readFileSync } from 'node:fs';
import { describeError, type ExitCodeValue, exitCodeText, SyncError } from '../errors.js';
import type { Change } from '../plan/types.js';
import type { Entry } from '../tree.js';

/** Which paths get a new entry after a make-room deletion: see replacedPaths(). */
export interface ItemizeContext {
  readonly replacedPaths: ReadonlySet<string>;
}

const NEW_ITEM = '+++++++++';
/** `*deleting` padded to the 11 characters of `%i`. */
const DELETING = '*deleting  ';

/** `%n`: the path relative to the root, directories with a trailing '/', the root as `./`. */
function itemName(path: string, isDir: boolean): string {
  if (path === '') return './';
  return isDir ? `${path}/` : path;
}

/** `%L`: ` -> target` for symlinks, nothing otherwise. */
function linkSuffix(entry: Entry): string {
  return entry.type === 'symlink' ? ` -> ${entry.linkTarget ?? ''}` : '';
}

function typeLetter(entry: Entry): string {
  switch (entry.type) {
    case 'file':
      return 'f';
    case 'dir':
      return 'd';
    case 'symlink':
      return 'L';
    default:
      return 'S';
  }
}

interface AttrFlags {
  readonly checksum: boolean;
  readonly size: boolean;
  readonly time: boolean;
  readonly perms: boolean;
  readonly owner: boolean;
  readonly group: boolean;
}

/** What rsync's itemize() would flag for `source` over an existing `target` of the same type. */
function attrFlags(change: Exclude<Change, { kind: 'delete' }>, target: Entry): AttrFlags {
  const { source, owner } = change;
  return {
    checksum: change.kind === 'symlink' && source.linkTarget !== target.linkTarget,
    size: source.type === 'file' && source.size !== target.size,
    time: source.mtime !== target.mtime,
    // Linux cannot chmod a symlink, and rsync does not report its perms there.
    perms: source.type !== 'symlink' && source.mode !== target.mode,
    // Only set when the planner will apply them (owner: root only; group: a group we belong to).
    owner: owner.uid !== undefined && owner.uid !== target.uid,
    group: owner.gid !== undefined && owner.gid !== target.gid,
  };
}

function hasAnyFlag(flags: AttrFlags): boolean {
  return Object.values(flags).some(Boolean);
}

/** `YXcstpoguax`; u, a and x stay '.' (-a sets no atimes, ACLs or xattrs). */
function itemCode(y: string, x: string, flags: AttrFlags): string {
  const attrs =
    (flags.checksum ? 'c' : '.') +
    (flags.size ? 's' : '.') +
    (flags.time ? 't' : '.') +
    (flags.perms ? 'p' : '.') +
    (flags.owner ? 'o' : '.') +
    (flags.group ? 'g' : '.') +
    '...';
  // rsync: for '.', 'h' and 'c' items with nothing flagged, the dots become spaces.
  const blank = (y === '.' || y === 'h' || y === 'c') && !hasAnyFlag(flags);
  return y + x + (blank ? ' '.repeat(attrs.length) : attrs);
}

function line(code: string, entry: Entry, path: string): string {
  return `${code} ${itemName(path, entry.type === 'dir')}${linkSuffix(entry)}`;
}

/** A fresh entry, or one that replaces an entry of another type: rsync shows `+++++++++`. */
function isNewItem(source: Entry, target: Entry | undefined): target is undefined {
  return target === undefined || target.type !== source.type;
}

function itemizeFetch(change: Extract<Change, { kind: 'fetch' }>): string {
  const { source, target } = change;
  if (isNewItem(source, target)) return line(`>f${NEW_ITEM}`, source, change.path);
  return line(itemCode('>', 'f', attrFlags(change, target)), source, change.path);
}

/** Directories and symlinks are created locally: Y is 'c'. */
function itemizeCreate(change: Extract<Change, { kind: 'mkdir' | 'symlink' }>): string {
  const { source, target } = change;
  const x = typeLetter(source);
  if (isNewItem(source, target)) return line(`c${x}${NEW_ITEM}`, source, change.path);
  // A symlink whose target changed (observed: `cLc.t...... link -> newtarget`).
  return line(itemCode('c', x, attrFlags(change, target)), source, change.path);
}

/**
 * Attribute-only changes. rsync logs these only for directories (receiver.c
 * maybe_log_item(): `S_ISDIR(file->mode) && significant_flags`); for files,
 * perms or group alone are applied silently. A file whose mtime differs is
 * re-sent by rsync's quick check, so if the planner chose not to re-fetch it,
 * we still write the line rsync would have written.
 */
function itemizeAttrs(change: Extract<Change, { kind: 'attrs' }>): string | null {
  const { source, target } = change;
  const flags = attrFlags(change, target);
  if (source.type === 'dir') return hasAnyFlag(flags) ? line(itemCode('.', 'd', flags), source, change.path) : null;
  if (source.type === 'file' && flags.time) return line(itemCode('>', 'f', flags), source, change.path);
  return null;
}

/** `*deleting   path`; no ` -> target` for symlinks (log_delete() has no link text). */
function itemizeDelete(change: Extract<Change, { kind: 'delete' }>, context?: ItemizeContext): string | null {
  if (change.forReplace && (context === undefined || context.replacedPaths.has(change.path))) return null;
  return `${DELETING} ${itemName(change.path, change.target.type === 'dir')}`;
}

/**
 * The `%i %n%L` text for one change, or null where rsync logs nothing.
 * Without `context`, every `forReplace` deletion counts as the make-room
 * deletion of the replaced entry itself (not logged); pass the plan's
 * context to log the contents of a replaced directory as rsync does.
 */
export function itemize(change: Change, context?: ItemizeContext): string | null {
  switch (change.kind) {
    case 'fetch':
      return itemizeFetch(change);
    case 'mkdir':
    case 'symlink':
      return itemizeCreate(change);
    case 'attrs':
      return itemizeAttrs(change);
    case 'delete':
      return itemizeDelete(change, context);
  }
}

/** Paths that a non-delete change writes: a forReplace deletion there removes the replaced entry itself. */
function replacedPaths(changes: readonly Change[]): ReadonlySet<string> {
  const replaced = new Set<string>();
  for (const c of changes) if (c.kind !== 'delete') replaced.add(c.path);
  return replaced;
}

/** Every log line for a plan's changes, in plan order. */
export function itemizePlan(changes: readonly Change[]): string[] {
  const context: ItemizeContext = { replacedPaths: replacedPaths(changes) };
  const lines: string[] = [];
  for (const change of changes) {
    const text = itemize(change, context);
    if (text !== null) lines.push(text);
  }
  return lines;
}

/** The final line of a successful run (rsync >= 3.1.1: plain integers, two spaces). */
export function totalSizeLine(sent: number, received: number, totalSize: number): string {
  return `sent ${sent} bytes  received ${received} bytes  total size ${totalSize}`;
}

let cachedVersion: string | undefined;

/** Our version from package.json (dist/src/report/ -> package root); 'unknown' when bundled elsewhere. */
function packageVersion(): string {
  if (cachedVersion === undefined) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
      cachedVersion = typeof pkg.version === 'string' ? pkg.version : 'unknown';
    } catch {
      cachedVersion = 'unknown';
    }
  }
  return cachedVersion;
}

/** The cause in our words, naming the file or host at fault when the message does not. */
function causeText(err: unknown): string {
  const text = describeError(err);
  const subject = err instanceof SyncError ? err.subject : undefined;
  return subject && !text.includes(subject) ? `"${subject}": ${text}` : text;
}

/**
 * The lines to log when a pass fails: the cause, then rsync's error line so
 * that alerts grepping for `rsync error:` and `(code N)` keep firing.
 */
export function errorLines(err: unknown, exitCode: ExitCodeValue, version: string = packageVersion()): string[] {
  const text = exitCodeText[exitCode] ?? 'unexplained error';
  return [`xroad-sync: [receiver] ${causeText(err)}`, `rsync error: ${text} (code ${exitCode}) at xroad-sync [receiver=xroad-sync ${version}]`];
}
