/**
 * The master's tree over raw ssh2 SFTP calls. ssh2-sftp-client's list() drops
 * numeric modes and its get() resolves before data is written, and ssh2's
 * readdir(path) keeps one READDIR in flight per directory, so listing and
 * reading are done here with pipelined requests: round trips, not bandwidth,
 * dominate a tree of small config files.
 */
import type { FileEntry, SFTPWrapper } from 'ssh2';

import { ContentUnlikeListingError, MasterChangedError, ProtocolError, SyncError, TransferError } from '../errors.js';
import type { Filter } from '../filter/types.js';
import { type Entry, type EntryType, joinRel, type Tree } from '../tree.js';
import { forEachLimited } from '../util/pool.js';
import { type DirectoryListing, type KnownMaster, ListingMatch, type ListingRound } from './known-master.js';
import type { SftpSession } from './session.js';
import type { FileSink, GoneCheck, MasterSource, ScanNotes } from './types.js';

export interface SftpSourceOptions {
  /** Directories listed at once (each with its own READDIRs pipelined). */
  dirConcurrency?: number;
  /** READDIRs in flight per open directory while its batches come back full; OpenSSH answers up to 100 names each. */
  readdirDepth?: number;
  /** READDIRs in flight per directory once a batch came back full (a large directory). */
  readdirDepthLarge?: number;
  /** READ size per request, capped at what the master serves in one reply. */
  chunkSize?: number;
  /** READs in flight per file: memory per fetch is at most chunkSize * readsInFlight. */
  readsInFlight?: number;
  /** A master listing more entries than this is refused (ProtocolError). */
  maxEntries?: number;
}

const S_IFMT = 0o170000;
/** OpenSSH's sftp-server answers a READDIR with at most 100 names. */
const FULL_READDIR = 100;
/** Linux's PATH_MAX: no local path could be longer. */
const MAX_PATH_BYTES = 4095;
const TYPE_BY_FORMAT: ReadonlyMap<number, EntryType> = new Map([
  [0o100000, 'file'],
  [0o040000, 'dir'],
  [0o120000, 'symlink'],
]);
const MAX_NAME_BYTES = 255;
const noop = (): void => {};

/** A name as it may appear in a message: quoted, control characters and NUL escaped. */
function quote(name: string): string {
  return JSON.stringify(name);
}

/** Anything that could map outside the target, or that no real directory contains, is a hostile or broken master. */
function checkName(name: string, dir: string): void {
  const bad = name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0') || Buffer.byteLength(name) > MAX_NAME_BYTES;
  if (bad) {
    throw new ProtocolError(`the master listed an invalid name ${quote(name)} in directory ${quote(dir)}`, { subject: dir });
  }
}

/**
 * ssh2 decodes names as UTF-8 and replaces invalid bytes with U+FFFD: such a
 * name arrives mangled and could not be opened again by its real bytes.
 * Checked after the filter, so an excluded name never matters.
 */
function mangled(name: string): boolean {
  return name.includes('\uFFFD');
}

const SFTP_NO_SUCH_FILE = 2; // SFTP STATUS_CODE.NO_SUCH_FILE
function sftpCode(err: unknown): unknown {
  return typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
}

interface OwnerNames {
  readonly owner?: string;
  readonly group?: string;
}

/** OpenSSH's longname is `ls -l` style: "-rw-r----- 1 xroad xroad 1230 Nov 28 15:58 name"; numeric fields mean "no name". */
function ownerNames(longname: string): OwnerNames {
  // One match of the nine fields instead of split(): a daemon lists every entry every second.
  const fields = LONGNAME_OWNERS.exec(longname);
  if (!fields) return {};
  return { owner: named(fields[1]!), group: named(fields[2]!) };
}

/**
 * The names of each (uid, gid) pair, parsed from the first longname that
 * carries them: sftp-server names an id the same way for every entry of a
 * listing (it caches getpwuid/getgrgid itself), and a daemon lists every
 * entry every second.
 */
class OwnerNameCache {
  private readonly byUid = new Map<number, Map<number, OwnerNames>>();

  namesOf(uid: number, gid: number, longname: string): OwnerNames {
    let byGid = this.byUid.get(uid);
    if (!byGid) this.byUid.set(uid, (byGid = new Map()));
    let names = byGid.get(gid);
    if (!names) byGid.set(gid, (names = ownerNames(longname)));
    return names;
  }
}
const LONGNAME_OWNERS = /^\S*\s+\S*\s+(\S*)\s+(\S*)\s+\S*\s+\S*\s+\S*\s+\S*\s+/;
const named = (field: string): string | undefined => (/^\d+$/.test(field) ? undefined : field);
const validAttr = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v) && v >= 0;

function sftpMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Bounded parallelism for work that discovers more work (directories found while listing directories). */
class TaskPool {
  private active = 0;
  private readonly queue: Array<() => Promise<void>> = [];
  private failure: unknown;
  private failed = false;
  private resolveDone!: () => void;
  private rejectDone!: (err: unknown) => void;
  readonly done = new Promise<void>((resolve, reject) => ((this.resolveDone = resolve), (this.rejectDone = reject)));

  constructor(private readonly limit: number) {}

  add(task: () => Promise<void>): void {
    this.queue.push(task);
    this.pump();
  }

  private pump(): void {
    while (!this.failed && this.active < this.limit && this.queue.length > 0) {
      const task = this.queue.shift()!;
      this.active++;
      task().then(
        () => this.finish(),
        (err) => {
          if (!this.failed) (this.failed = true), (this.failure = err);
          this.finish();
        },
      );
    }
  }

  private finish(): void {
    this.active--;
    this.pump();
    if (this.active > 0) return;
    if (this.failed) this.rejectDone(this.failure);
    else if (this.queue.length === 0) this.resolveDone();
  }
}

/** One scan's state, shared by the directories it lists. */
interface ScanState {
  readonly filter: Filter;
  /** Entries built in this scan (the root, and every directory whose listing changed). */
  readonly tree: Map<string, Entry>;
  readonly pool: TaskPool;
  readonly owners: OwnerNameCache;
  readonly notes: ScanNotes | undefined;
  readonly round: ListingRound | undefined;
  /** Every directory listed in this scan, for the next one. */
  readonly listings: Map<string, DirectoryListing>;
  /** Directories whose listing was the same as last time. */
  readonly reused: string[];
  /** Directories listed afresh (changed, new, or not remembered). */
  fresh: number;
  /** Symlinks of reused listings whose target changed: a link's listed numbers can stay the same when it is pointed elsewhere. */
  readonly relinked: Map<string, Entry>;
  /** A remembered entry's owner or group name is not what the master says now. */
  ownerNamesChanged: boolean;
  /** Entries so far (the root included), against maxEntries. */
  entries: number;
  visit?: (dir: string) => void;
}

/** What one directory's listing put into the tree. */
interface Listed {
  dot: boolean;
  readonly paths: string[];
  readonly skipped: string[];
}

/** The last scan's listing of a directory and the tree its entries are in. */
type RememberedListing = NonNullable<ReturnType<ListingRound['previous']>>;

/** The root's own attributes unchanged (its lstat is not part of any listing). */
function sameEntry(a: Entry | undefined, b: Entry | undefined): boolean {
  return !!a && !!b && a.mode === b.mode && a.mtime === b.mtime && a.uid === b.uid && a.gid === b.gid;
}

export class SftpSource implements MasterSource {
  private readonly root: string;
  private readonly opts: Required<SftpSourceOptions>;

  constructor(
    private readonly session: SftpSession,
    root: string,
    options: SftpSourceOptions = {},
  ) {
    // Trailing slash: like rsync's "SRC/", the contents of the root, following the root itself if it is a link.
    this.root = root.endsWith('/') ? root : root + '/';
    this.opts = { dirConcurrency: 12, readdirDepth: 2, readdirDepthLarge: 16, chunkSize: 128 * 1024, readsInFlight: 8, maxEntries: 200_000, ...options };
  }

  traffic(): { sent: number; received: number } {
    return this.session.traffic();
  }

  private remotePath(rel: string): string {
    return this.root + rel;
  }

  private call<T>(issue: (sftp: SFTPWrapper, settle: (err: Error | null | undefined, value: T) => void) => void): Promise<T> {
    return this.session.request(issue);
  }

  // ---------------------------------------------------------------- scan

  async scan(filter: Filter, notes?: ScanNotes, known?: KnownMaster): Promise<Tree> {
    const round = known?.begin(filter);
    const tree = new Map<string, Entry>();
    const rootAttrs = await this.call<{ mode: number; size: number; mtime: number; uid: number; gid: number }>((sftp, settle) =>
      sftp.lstat(this.root, settle),
    ).catch((err) => this.rethrow(err, '', 'cannot stat the source root'));
    if ((rootAttrs.mode & S_IFMT) !== 0o040000) {
      throw new TransferError(`source root ${this.root} on ${this.session.address} is not a directory`, { subject: this.root });
    }
    tree.set('', { path: '', type: 'dir', mode: rootAttrs.mode & 0o7777, size: 0, mtime: rootAttrs.mtime, uid: rootAttrs.uid, gid: rootAttrs.gid });
    const scan: ScanState = {
      filter,
      tree,
      pool: new TaskPool(this.opts.dirConcurrency),
      owners: new OwnerNameCache(),
      notes,
      round,
      listings: new Map(),
      reused: [],
      fresh: 0,
      relinked: new Map(),
      ownerNamesChanged: false,
      entries: 1,
    };
    const visit = (dir: string): void => scan.pool.add(() => this.scanDir(dir, scan, visit));
    scan.visit = visit;
    visit('');
    await scan.pool.done;
    if (!round) return tree;
    if (scan.ownerNamesChanged) {
      // A user or group renamed on the master: remembered entries carry the old name. Once more, from nothing.
      known!.forget();
      return this.scan(filter, notes, known);
    }
    const result = this.treeOf(scan);
    round.finish(scan.listings, result);
    return result;
  }

  /**
   * The scan's tree: the previous one itself when every directory (and the
   * root) listed the same as last time, else the fresh entries plus the
   * reused directories' entries taken over from the previous tree.
   */
  private treeOf({ tree, reused, fresh, relinked, round }: ScanState): Tree {
    const previous = reused.length > 0 ? round!.previous(reused[0]!)!.tree : undefined;
    if (previous && fresh === 0 && relinked.size === 0 && sameEntry(previous.get(''), tree.get(''))) return previous;
    for (const dir of reused) {
      const { listing, tree: before } = round!.previous(dir)!;
      for (const path of listing.paths) tree.set(path, relinked.get(path) ?? before.get(path)!);
    }
    return tree;
  }

  private async scanDir(dir: string, scan: ScanState, visit: (dir: string) => void): Promise<void> {
    const previous = scan.round?.previous(dir);
    const match = new ListingMatch<FileEntry>(previous?.listing);
    // `..` is not this directory's: its times move with whatever happens beside it (the root's parent is /etc).
    await this.listDir(dir, (batch) => {
      const items = batch.filter((item) => item.filename !== '..');
      if (previous) this.checkOwnerNames(dir, items, previous, scan);
      match.add(items);
    });
    if (previous && match.same) return this.reuseListing(dir, previous, scan);
    scan.fresh++;
    const listed: Listed = { dot: false, paths: [], skipped: [] };
    // The names this listing shares with the remembered one, up to the first difference, are the entries they made then.
    if (previous) for (const name of match.agreedNames()) this.takeRemembered(dir, name, previous, listed, scan);
    for (const item of match.tail) this.takeListed(dir, item, listed, scan);
    if (!listed.dot) await this.checkEnterable(dir);
    // A listing without `.` is checked again every time: it is not remembered.
    else if (scan.round) scan.listings.set(dir, match.record(listed.paths, listed.skipped));
  }

  /**
   * Owner and group names are not in the remembered numbers: for each uid and gid pair in a
   * batch, its names now (from the longname) against those of a remembered entry with that pair.
   */
  private checkOwnerNames(dir: string, items: readonly FileEntry[], previous: RememberedListing, scan: ScanState): void {
    if (scan.ownerNamesChanged) return;
    const seen = new Set<string>();
    for (const item of items) {
      const { uid, gid } = item.attrs;
      const pair = `${uid}:${gid}`;
      if (seen.has(pair)) continue;
      const before = previous.tree.get(joinRel(dir, item.filename));
      if (!before || before.uid !== uid || before.gid !== gid) continue;
      seen.add(pair);
      const now = scan.owners.namesOf(uid, gid, item.longname);
      if (now.owner !== before.owner || now.group !== before.group) {
        scan.ownerNamesChanged = true;
        return;
      }
    }
  }

  /** A name as the master listed it: checked, filtered and made an entry. */
  private takeListed(dir: string, item: FileEntry, listed: Listed, scan: ScanState): void {
    // OpenSSH lists it (it is not an entry); `.` missing means its lstat failed, see checkEnterable.
    if (item.filename === '.') {
      listed.dot = true;
      return;
    }
    checkName(item.filename, this.remotePath(dir));
    const entry = this.entryFrom(dir, item, scan.owners);
    if (scan.filter.isExcluded(entry.path, entry.type === 'dir')) return;
    if (Buffer.byteLength(entry.path) > MAX_PATH_BYTES) {
      // A fabricated or cyclic listing would otherwise grow paths (and memory) without end.
      throw new ProtocolError(`the master listed a path longer than ${MAX_PATH_BYTES} bytes under ${quote(dir)}`, { subject: dir });
    }
    if (mangled(item.filename)) {
      scan.notes?.skipped(entry.path, 'its name is not valid UTF-8');
      listed.skipped.push(entry.path);
      return;
    }
    this.accept(entry, listed, scan);
  }

  /** A name listed as before: the entry it made then (or, as then, none: excluded or skipped). */
  private takeRemembered(dir: string, name: string, previous: RememberedListing, listed: Listed, scan: ScanState): void {
    if (name === '.') {
      listed.dot = true;
      return;
    }
    const path = joinRel(dir, name);
    const entry = previous.tree.get(path);
    if (entry) this.accept(entry, listed, scan);
    else if (previous.listing.skipped.includes(path)) {
      scan.notes?.skipped(path, 'its name is not valid UTF-8');
      listed.skipped.push(path);
    }
  }

  private accept(entry: Entry, listed: Listed, scan: ScanState): void {
    if (scan.tree.has(entry.path)) throw new ProtocolError(`the master listed ${quote(entry.path)} twice`, { subject: entry.path });
    this.countEntry(scan);
    scan.tree.set(entry.path, entry);
    listed.paths.push(entry.path);
    if (entry.type === 'dir') scan.visit!(entry.path);
    // Link targets are read through the same pool so they pipeline with the listing.
    else if (entry.type === 'symlink') scan.pool.add(() => this.readLink(entry, scan.tree));
  }

  /** The same listing as last time: its entries are the previous tree's (taken over at the end), its subdirectories are listed. */
  private reuseListing(dir: string, { listing, tree }: RememberedListing, scan: ScanState): void {
    for (const path of listing.skipped) scan.notes?.skipped(path, 'its name is not valid UTF-8');
    for (const path of listing.paths) {
      this.countEntry(scan);
      const entry = tree.get(path)!;
      if (entry.type === 'dir') scan.visit!(path);
      // Same length, same second (or a restore that kept the times): only READLINK tells the target.
      else if (entry.type === 'symlink') scan.pool.add(() => this.recheckLink(entry, scan.relinked));
    }
    scan.listings.set(dir, listing);
    scan.reused.push(dir);
  }

  private countEntry(scan: ScanState): void {
    if (scan.entries++ >= this.opts.maxEntries) {
      throw new ProtocolError(`more than ${this.opts.maxEntries} entries under ${this.root} on the master`, {
        subject: this.root,
        hint: 'exclude large subtrees or raise the entry limit',
      });
    }
  }

  /**
   * OpenSSH's sftp-server lstat()s every name readdir(3) returns and silently
   * drops the ones that fail: a directory its reader may list (r) but not
   * enter (no x) comes back empty, `.` and `..` included. Without `.` in the
   * listing, ask for `dir/.` directly: if that fails too, the listing cannot
   * be trusted and the pass must not act on it (least of all delete).
   */
  private async checkEnterable(dir: string): Promise<void> {
    const full = this.remotePath(dir === '' ? '.' : `${dir}/.`);
    await this.call((sftp, settle) => sftp.lstat(full, settle)).catch((err) => {
      if (err instanceof SyncError) throw err;
      if (sftpCode(err) === SFTP_NO_SUCH_FILE) throw this.vanished(dir, err);
      const where = this.remotePath(dir);
      throw new TransferError(
        `directory ${where} on ${this.session.address} can be listed but not entered (${sftpMessage(err)}): its entries cannot be seen, so nothing was changed or deleted`,
        {
          subject: where,
          cause: err,
          hint: `give the sync user search permission on it on the master (e.g. chmod g+x ${where}), or exclude it with --exclude /${dir}`,
        },
      );
    });
  }

  /**
   * Proof before deletion: LSTAT of each exact path; only NO_SUCH_FILE proves
   * it gone. An entry the listing dropped (lstat failed on the master, a path
   * beyond PATH_MAX there) answers with another error and is not deleted.
   */
  async confirmGone(paths: readonly string[]): Promise<GoneCheck[]> {
    const out: GoneCheck[] = [];
    await forEachLimited(paths, 32, async (path) => {
      try {
        await this.call((sftp, settle) => sftp.lstat(this.remotePath(path), settle));
        out.push({ path, gone: false, exists: true, reason: 'it exists on the master' });
      } catch (err) {
        if (err instanceof SyncError) throw err;
        if (sftpCode(err) === SFTP_NO_SUCH_FILE) out.push({ path, gone: true });
        else out.push({ path, gone: false, reason: sftpMessage(err) });
      }
    });
    return out;
  }

  private entryFrom(dir: string, item: FileEntry, owners: OwnerNameCache): Entry {
    const path = joinRel(dir, item.filename);
    const { mode, size, mtime, uid, gid } = item.attrs;
    if (!(validAttr(mode) && validAttr(size) && validAttr(mtime) && validAttr(uid) && validAttr(gid))) {
      throw new ProtocolError(`the master sent incomplete attributes for ${quote(path)}`, { subject: path });
    }
    const type = TYPE_BY_FORMAT.get(mode & S_IFMT) ?? 'other';
    const { owner, group } = owners.namesOf(uid, gid, item.longname);
    const entry: { -readonly [K in keyof Entry]: Entry[K] } = { path, type, mode: mode & 0o7777, size: type === 'file' ? size : 0, mtime, uid, gid };
    // Only the names the master gave: an absent name is an absent key, not `undefined`.
    if (owner !== undefined) entry.owner = owner;
    if (group !== undefined) entry.group = group;
    return entry;
  }

  private async readLink(entry: Entry, tree: Map<string, Entry>): Promise<void> {
    tree.set(entry.path, { ...entry, linkTarget: await this.linkTarget(entry.path) });
  }

  /** A remembered symlink: its entry is replaced only when the master now points it elsewhere. */
  private async recheckLink(before: Entry, relinked: Map<string, Entry>): Promise<void> {
    const target = await this.linkTarget(before.path);
    if (target !== before.linkTarget) relinked.set(before.path, { ...before, linkTarget: target });
  }

  private async linkTarget(path: string): Promise<string> {
    const target = await this.call<string>((sftp, settle) => sftp.readlink(this.remotePath(path), settle)).catch((err) =>
      this.rethrow(err, path, 'cannot read symlink'),
    );
    if (target === '' || target.includes('\0')) {
      throw new ProtocolError(`the master sent an invalid target ${quote(target)} for symlink ${quote(path)}`, { subject: path });
    }
    return target;
  }

  /** OPENDIR, then READDIRs kept `readdirDepth` deep until EOF, each batch handed to `onBatch` in listing order; the second READDIR of a small directory is its EOF. */
  private async listDir(dir: string, onBatch: (batch: FileEntry[]) => void): Promise<void> {
    const handle = await this.call<Buffer>((sftp, settle) => sftp.opendir(this.remotePath(dir), settle)).catch((err) =>
      this.rethrow(err, dir, 'cannot open directory'),
    );
    try {
      await this.readAllNames(handle, dir, onBatch);
    } finally {
      this.closeHandle(handle);
    }
  }

  private readAllNames(handle: Buffer, dir: string, onBatch: (batch: FileEntry[]) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      let inFlight = 0;
      let eof = false;
      let failed = false;
      const fail = (err: unknown): void => {
        failed = true;
        reject(err);
      };
      const issue = (): void => {
        inFlight++;
        // Replies to one handle come back in the order asked: the batches are handed on in listing order.
        this.readdirOnce(handle).then(
          (batch) => {
            inFlight--;
            if (failed) return;
            if (batch === undefined) eof = true;
            else {
              try {
                onBatch(batch);
              } catch (err) {
                return fail(err);
              }
            }
            // A short batch is most likely the last (the one in flight brings EOF): another READDIR
            // only when nothing else is in flight. A small directory costs two. A full batch means a
            // large directory: keep more in flight, so that replies arrive together and the requests
            // they prompt leave in one write (a 50,000-entry directory is 500 READDIRs a pass).
            // Topped up once half have come back: the requests go out together, not one write per reply.
            if (!eof && batch!.length >= FULL_READDIR) {
              if (inFlight <= this.opts.readdirDepthLarge / 2) while (inFlight < this.opts.readdirDepthLarge) issue();
            } else if (!eof && inFlight === 0) issue();
            else if (eof && inFlight === 0) resolve();
          },
          (err) => {
            inFlight--;
            if (!failed) fail(this.toSyncError(err, dir, 'cannot read directory'));
          },
        );
      };
      for (let i = 0; i < this.opts.readdirDepth; i++) issue();
    });
  }

  /**
   * One READDIR; `undefined` at end of directory. `full`: ssh2 otherwise drops `.` and `..`, and
   * `.` is what tells an enterable directory from one whose entries the master could not lstat.
   */
  private readdirOnce(handle: Buffer): Promise<FileEntry[] | undefined> {
    return this.call<FileEntry[] | undefined>((sftp, settle) =>
      (sftp as unknown as ReaddirFull).readdir(handle, { full: true }, (err, list) => {
        if (err && (err as Error & { code?: unknown }).code === ssh2StatusEof) settle(undefined, undefined);
        else settle(err, list);
      }),
    );
  }

  /** CLOSE without waiting: the server handles requests in order, so the handle is gone before the next one is used. */
  private closeHandle(handle: Buffer): void {
    this.call<void>((sftp, settle) => sftp.close(handle, (err) => settle(err, undefined))).catch(noop);
  }

  // ---------------------------------------------------------------- fetch

  async fetch(expected: Entry, sink: FileSink): Promise<number> {
    const handle = await this.call<Buffer>((sftp, settle) => sftp.open(this.remotePath(expected.path), 'r', settle)).catch((err) =>
      this.rethrow(err, expected.path, 'cannot open'),
    );
    try {
      return await this.readFile(handle, expected, sink);
    } finally {
      this.closeHandle(handle);
    }
  }

  /**
   * Windowed, pipelined READs of the listed size plus one READ at offset
   * `size` that must hit EOF; writes go to the sink in file order. A small
   * file is OPEN, READ+READ(EOF) together, CLOSE (not awaited).
   */
  private async readFile(handle: Buffer, expected: Entry, sink: FileSink): Promise<number> {
    const size = expected.size;
    const chunk = Math.max(1, Math.min(this.opts.chunkSize, this.session.maxReadLength()));
    if (size < chunk) return this.readSmallFile(handle, expected, sink);
    const probe = this.readSpan(handle, size, 1, expected.path);
    probe.catch(noop);
    let shortAt = Infinity; // where the file turned out to end, if before `size`
    let written = Promise.resolve();
    const window: Array<Promise<void>> = [];
    for (let pos = 0; pos < size && shortAt === Infinity; pos += chunk) {
      const len = Math.min(chunk, size - pos);
      const span = this.readSpan(handle, pos, len, expected.path);
      const previous = written;
      written = Promise.all([span, previous]).then(async ([data]) => {
        if (data.length < len) shortAt = Math.min(shortAt, pos + data.length);
        if (data.length > 0) await sink.write(data, pos);
      });
      written.catch(noop); // awaited through the window; this only keeps a failure from counting as unhandled meanwhile
      window.push(written);
      if (window.length >= this.opts.readsInFlight) await window.shift();
    }
    // Requests are answered in order: this FSTAT sees the file as it was after the last READ.
    const after = this.call<{ size: number; mtime: number }>((sftp, settle) => sftp.fstat(handle, settle));
    after.catch(noop);
    await written;
    const beyond = await probe;
    const now = await after.catch((err) => this.rethrow(err, expected.path, 'cannot fstat'));
    if (now.size !== size || now.mtime !== expected.mtime) {
      // The file was rewritten between listing and read (or during it): a race, never committed.
      throw new MasterChangedError(
        `${expected.path} changed on the master while it was read (listed ${size} bytes, mtime ${expected.mtime}; now ${now.size} bytes, mtime ${now.mtime})`,
        { subject: expected.path },
      );
    }
    if (shortAt !== Infinity) throw this.changedError(expected, shortAt);
    if (beyond.length > 0) throw this.changedError(expected, `more than ${size}`);
    return size;
  }

  /**
   * A file that fits one READ: a single READ of one byte more than listed,
   * and the FSTAT after it. The extra byte is the end-of-file probe: a file
   * that grew returns it; a file of the listed size returns its bytes and
   * no more (a short reply is asked again for the rest, as any READ is, up
   * to the listed size). OPEN, READ, FSTAT, CLOSE: four requests, not five.
   */
  private async readSmallFile(handle: Buffer, expected: Entry, sink: FileSink): Promise<number> {
    const size = expected.size;
    const data = this.readSpan(handle, 0, size + 1, expected.path, size);
    data.catch(noop);
    const after = this.call<{ size: number; mtime: number }>((sftp, settle) => sftp.fstat(handle, settle));
    after.catch(noop);
    const got = await data;
    const now = await after.catch((err) => this.rethrow(err, expected.path, 'cannot fstat'));
    if (now.size !== size || now.mtime !== expected.mtime) {
      throw new MasterChangedError(
        `${expected.path} changed on the master while it was read (listed ${size} bytes, mtime ${expected.mtime}; now ${now.size} bytes, mtime ${now.mtime})`,
        { subject: expected.path },
      );
    }
    if (got.length > size) throw this.changedError(expected, `more than ${size}`);
    if (got.length < size) throw this.changedError(expected, got.length);
    if (size > 0) await sink.write(got, 0);
    return size;
  }

  /**
   * READ `len` bytes at `pos`, re-asking after short replies until `enough` are in (default: all);
   * fewer bytes back only at end of file.
   */
  private async readSpan(handle: Buffer, pos: number, len: number, path: string, enough = len): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < enough) {
      const n = await this.call<number>((sftp, settle) => sftp.read(handle, buffer, got, len - got, pos + got, (err, bytes) => settle(err, bytes))).catch(
        (err) => this.rethrow(err, path, 'cannot read'),
      );
      if (n === 0) break; // ssh2 reports SFTP EOF as a zero-byte read
      got += n;
    }
    return got === len ? buffer : buffer.subarray(0, got);
  }

  private changedError(expected: Entry, got: number | string): ContentUnlikeListingError {
    return new ContentUnlikeListingError(`the master served ${got} bytes of ${expected.path}, whose open handle reports the listed ${expected.size}`, {
      subject: expected.path,
    });
  }

  // ---------------------------------------------------------------- errors

  /**
   * Session-level failures (timeout, lost connection) pass through; SFTP
   * status errors become TransferError, with the rsync-style anchored pattern
   * (relative to the source root) that would skip the path.
   */
  private toSyncError(err: unknown, path: string, what: string): SyncError {
    if (err instanceof SyncError) return err;
    if (path !== '' && sftpCode(err) === SFTP_NO_SUCH_FILE) return this.vanished(path, err);
    const full = this.remotePath(path);
    return new TransferError(`${what} ${full} on ${this.session.address}: ${sftpMessage(err)}`, {
      subject: full,
      cause: err,
      hint: path === '' ? 'check the source directory on the master' : `exclude it with --exclude /${path}`,
    });
  }

  /** Listed, then gone: the master changed during the pass (the pass starts over; no exclude to suggest). */
  private vanished(path: string, cause: unknown): MasterChangedError {
    return new MasterChangedError(`${this.remotePath(path)} vanished from ${this.session.address} during the pass`, { subject: this.remotePath(path), cause });
  }

  private rethrow(err: unknown, path: string, what: string): never {
    throw this.toSyncError(err, path, what);
  }
}

/** ssh2's readdir takes options its type definitions leave out. */
interface ReaddirFull {
  readdir(handle: Buffer, opts: { full: boolean }, cb: (err: (Error & { code?: unknown }) | undefined, list: FileEntry[]) => void): void;
}

const ssh2StatusEof = 1; // SFTP STATUS_CODE.EOF (ssh2 utils.sftp.STATUS_CODE.EOF)
