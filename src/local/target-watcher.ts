/**
 * The daemon's watcher of the target: one inotify watch per DIRECTORY, none
 * per file. A watch on a directory reports each child's create, delete, move,
 * write and attribute change by name (libuv's mask: IN_ATTRIB, IN_CREATE,
 * IN_MODIFY, IN_DELETE, IN_MOVED_FROM/TO and the directory's own
 * IN_DELETE_SELF/IN_MOVE_SELF), so a 50,000-file directory costs one watch
 * and no stat at start, and an event costs one lstat of the path it names.
 *
 * Directories come and go under it: a directory created or moved in gets
 * its watch, and it and everything it already holds are reported (events
 * inside it before its watch existed are lost otherwise); a removed or
 * moved-away directory's watches, and those of its subdirectories, are
 * dropped. Symlinks below the root are never followed (inotify_add_watch
 * would follow one: a directory is watched only when lstat says it is one,
 * and checked again once watched); the root is, like the pass's scan
 * does. The root replaced (a restore that moved the old one aside)
 * is watched afresh by `recheck()`.
 *
 * What inotify cannot report (a write through a shared mmap, an overflowed
 * event queue, which libuv drops silently) is the daemon's full scan's to
 * find.
 */
import { type Dirent, type FSWatcher, lstatSync, readdirSync, type Stats, statSync, watch } from 'node:fs';
import { basename } from 'node:path';
import { errnoOf, LocalIoError } from '../errors.js';
import { isWithin, joinRel, underRoot } from '../tree.js';

export interface TargetWatchHandlers {
  /** Names never reported (our temp files: thousands of them must not become events). */
  ignoredName(name: string): boolean;
  /** Something at `relPath` was created, written, changed attributes, removed or moved. */
  onPath(relPath: string, isDirectory: boolean): void;
  /** Any event at all in the target (an attribute change, an ignored name's too). */
  onEvent(): void;
  onError(err: LocalIoError): void;
}

export interface TargetWatcher {
  /** Directories watched now (one inotify watch each). */
  readonly watchedDirectories: number;
  /** Watches the root afresh if the directory at its path is not the one watched (replaced, or back after a removal). */
  recheck(): void;
  close(): Promise<void>;
}

interface WatchedDir {
  readonly watcher: FSWatcher;
  readonly ino: number;
  readonly dev: number;
}

/** Starts watching `root` and every directory beneath it; existing entries are not reported. */
export function watchTarget(root: string, on: TargetWatchHandlers): TargetWatcher {
  const watcher = new DirectoryWatcher(root, on);
  watcher.recheck();
  return watcher;
}

class DirectoryWatcher implements TargetWatcher {
  private readonly watched = new Map<string, WatchedDir>();
  /** Errno codes already reported by the running walk: the inotify limit is reached once, not once per directory. */
  private reported = new Set<string>();
  private closed = false;

  constructor(
    private readonly root: string,
    private readonly on: TargetWatchHandlers,
  ) {}

  get watchedDirectories(): number {
    return this.watched.size;
  }

  recheck(): void {
    if (this.closed) return;
    const now = this.lstat('');
    const rootWatch = this.watched.get('');
    if (rootWatch && now?.isDirectory() && sameInode(rootWatch, now)) return;
    this.unwatch('');
    if (now?.isDirectory()) this.walk('', now, false);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unwatch('');
  }

  private abs(rel: string): string {
    return underRoot(this.root, rel);
  }

  /** Watches the directory at `rel` and every directory below it; `report`: each entry found is a change. */
  private walk(rel: string, st: Stats, report: boolean): void {
    this.reported = new Set();
    const pending: Array<[string, Stats]> = [[rel, st]];
    // A loop, not recursion: a deep tree cannot overflow the stack, and each directory is visited once.
    for (let next = pending.pop(); next; next = pending.pop()) {
      const [dir, dirStat] = next;
      if (!this.watchOne(dir, dirStat)) continue;
      for (const entry of this.entries(dir)) {
        const child = joinRel(dir, entry.name);
        if (report) this.on.onPath(child, entry.isDirectory());
        if (!entry.isDirectory()) continue;
        const childStat = this.lstat(child);
        if (childStat?.isDirectory()) pending.push([child, childStat]);
      }
    }
  }

  /** Watches one directory, then makes sure it is still the directory lstat saw (not a symlink swapped in). */
  private watchOne(rel: string, st: Stats): boolean {
    let watcher: FSWatcher;
    try {
      watcher = watch(this.abs(rel), { persistent: true }, (event, name) => this.event(rel, event, name));
    } catch (err) {
      this.fail(rel, err);
      return false;
    }
    watcher.on('error', (err) => this.fail(rel, err));
    const now = this.lstat(rel);
    if (!now?.isDirectory() || !sameInode(st, now)) {
      watcher.close(); // replaced meanwhile: its parent's event handles what is there now
      return false;
    }
    this.watched.get(rel)?.watcher.close();
    this.watched.set(rel, { watcher, ino: st.ino, dev: st.dev });
    return true;
  }

  private entries(rel: string): Dirent[] {
    try {
      return readdirSync(this.abs(rel), { withFileTypes: true }).filter((d) => !this.on.ignoredName(d.name) && !d.name.includes('\uFFFD'));
    } catch (err) {
      if (!vanished(err)) this.fail(rel, err);
      return [];
    }
  }

  private event(dir: string, _event: string, name: string | Buffer | null): void {
    if (this.closed || !this.watched.has(dir)) return; // a late event of a watch dropped meanwhile
    this.on.onEvent();
    if (typeof name !== 'string') return;
    // An event about the watched directory itself (its removal, move or attribute change) arrives
    // under its own name: libuv has no other. A child of that name is told apart by being there.
    if (name === basename(this.abs(dir)) && this.aboutItself(dir, joinRel(dir, name))) {
      if (this.isGone(dir)) {
        if (dir === '') this.recheck();
        else this.unwatch(dir); // its parent's event reports the path
      }
      return;
    }
    // Names that are not valid UTF-8 cannot be opened again: the scan protects them, nothing to report.
    if (this.on.ignoredName(name) || name.includes('\uFFFD')) return;
    this.childChanged(joinRel(dir, name));
  }

  private childChanged(rel: string): void {
    const st = this.lstat(rel);
    const known = this.watched.get(rel);
    if (st?.isDirectory()) {
      // A directory's own attribute change needs no report: the onEvent above makes the next pass scan.
      if (known && sameInode(known, st)) return;
      this.unwatch(rel);
      this.on.onPath(rel, true);
      this.walk(rel, st, true);
      return;
    }
    if (known) this.unwatch(rel);
    this.on.onPath(rel, known !== undefined);
  }

  /**
   * Whether an event named like its directory is about the directory: yes
   * when it is gone, or when no child of that name is there (nor was a
   * watched one). A file of that name just deleted is then not reported: the
   * onEvent already made the next pass scan, and the content check notes it.
   */
  private aboutItself(dir: string, child: string): boolean {
    return this.isGone(dir) || (!this.watched.has(child) && this.lstat(child) === undefined);
  }

  /** True when the directory watched at `rel` is no longer there (removed, moved away or replaced). */
  private isGone(rel: string): boolean {
    const known = this.watched.get(rel);
    const now = this.lstat(rel);
    return !known || !now?.isDirectory() || !sameInode(known, now);
  }

  /** Drops the watches of `rel` and of every directory below it. */
  private unwatch(rel: string): void {
    for (const [dir, { watcher }] of this.watched) {
      if (!isWithin(dir, rel)) continue;
      watcher.close();
      this.watched.delete(dir);
    }
  }

  /** lstat below the root; the root itself is followed if it is a symlink, as the pass's scan does. */
  private lstat(rel: string): Stats | undefined {
    try {
      return rel === '' ? statSync(this.root, { throwIfNoEntry: false }) : lstatSync(this.abs(rel), { throwIfNoEntry: false });
    } catch (err) {
      if (!vanished(err)) this.fail(rel, err);
      return undefined;
    }
  }

  private fail(rel: string, err: unknown): void {
    const code = errnoOf(err) ?? 'unknown';
    if (vanished(err) || this.reported.has(code)) return;
    this.reported.add(code);
    this.on.onError(watchError(this.abs(rel), err));
  }
}

function sameInode(a: { readonly ino: number; readonly dev: number }, b: { readonly ino: number; readonly dev: number }): boolean {
  return a.ino === b.ino && a.dev === b.dev;
}

function vanished(err: unknown): boolean {
  const code = errnoOf(err);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function watchError(abs: string, err: unknown): LocalIoError {
  const code = errnoOf(err);
  const hint =
    code === 'ENOSPC'
      ? 'the inotify watch limit is reached (one watch per directory of the target): raise fs.inotify.max_user_watches (sysctl -w, and a file in /etc/sysctl.d) and restart the daemon; until then the full scan every minute finds changes there'
      : code === 'EACCES' || code === 'EPERM'
        ? 'the daemon cannot read this directory: changes there are found by the full scan every minute only; check its owner and mode'
        : 'changes there are found by the full scan every minute only';
  return new LocalIoError(`cannot watch ${abs} for local changes`, { subject: abs, cause: err, hint });
}
