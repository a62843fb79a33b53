/**
 * Commit: turn a fully staged plan into the new target. Runs only after every
 * fetch succeeded. Order follows rsync --delay-updates --delete-delay, with
 * two strengthenings: signer/keyconf.xml is renamed last (the signer reloads
 * it live and it names the .p12 files), and every touched directory is
 * fsynced so a crash cannot leave a rename only half on disk.
 *
 *   1. remove entries that an entry of another type replaces (dir involved)
 *   2. create new directories (0700 until step 6)
 *   3. rename staged files and symlinks into place, keyconf.xml last
 *   4. attribute-only changes of files and symlinks
 *   5. deletions, deepest first
 *   6. directory modes, owners and mtimes, deepest first
 *   7. fsync the directories touched
 */
import { chmod, chown, lchown, lstat, lutimes, mkdir, open, rename, rm, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { LocalIoError } from '../errors.js';
import type { Change } from '../plan/types.js';
import type { Staging } from '../stage/stage.js';
import { depthOf, parentOf, type Entry, type Tree } from '../tree.js';

/** Paths renamed after all others: they reference files that must already be in place. */
export const COMMIT_LAST: readonly string[] = ['signer/keyconf.xml'];

export interface CommitOptions {
  readonly targetRoot: string;
  /** The master's tree: directories whose content changed get their master mtime back at the end. */
  readonly source: Tree;
  /** Fault-injection and progress hook: awaited before each step on each path. */
  readonly beforeStep?: (step: CommitStep, path: string) => void | Promise<void>;
}

export type CommitStep = 'replace-remove' | 'mkdir' | 'rename' | 'attrs' | 'delete' | 'dir-attrs' | 'fsync';

export interface CommitResult {
  /** Changes left alone because the path changed locally during the pass; the next pass corrects them. */
  readonly skipped: readonly { path: string; reason: string }[];
}

export async function commitChanges(changes: readonly Change[], staging: Staging, opts: CommitOptions): Promise<CommitResult> {
  const run = new CommitRun(opts, staging);
  const by = <K extends Change['kind']>(kind: K) => changes.filter((c): c is Extract<Change, { kind: K }> => c.kind === kind);
  const deletes = by('delete');

  for (const c of deletes.filter((d) => d.forReplace)) await run.remove(c, 'replace-remove');
  for (const c of by('mkdir')) await run.makeDir(c);
  for (const c of renameOrder(changes)) await run.renameIntoPlace(c);
  for (const c of by('attrs').filter((a) => a.source.type !== 'dir')) await run.applyAttrs(c);
  for (const c of deletes.filter((d) => !d.forReplace)) await run.remove(c, 'delete');
  await run.applyDirAttrs(changes);
  await run.syncDirs();
  return { skipped: run.skipped };
}

function renameOrder(changes: readonly Change[]): Extract<Change, { kind: 'fetch' | 'symlink' }>[] {
  const staged = changes.filter((c): c is Extract<Change, { kind: 'fetch' | 'symlink' }> => c.kind === 'fetch' || c.kind === 'symlink');
  const last = staged.filter((c) => COMMIT_LAST.includes(c.path));
  return [...staged.filter((c) => !COMMIT_LAST.includes(c.path)), ...last];
}

class CommitRun {
  readonly skipped: { path: string; reason: string }[] = [];
  private readonly touchedDirs = new Set<string>();

  constructor(private readonly opts: CommitOptions, private readonly staging: Staging) {}

  private abs(path: string): string {
    return join(this.opts.targetRoot, path);
  }

  async remove(c: Extract<Change, { kind: 'delete' }>, step: CommitStep): Promise<void> {
    await this.opts.beforeStep?.(step, c.path);
    if (!(await this.unchangedSinceScan(c.path, c.target))) return;
    // Contents were planned as their own deletions, deepest first; recursive rm only mops up a race.
    await this.guard('delete', c.path, () => rm(this.abs(c.path), { recursive: c.target.type === 'dir', force: true }));
    this.touchedDirs.add(parentOf(c.path));
  }

  async makeDir(c: Extract<Change, { kind: 'mkdir' }>): Promise<void> {
    await this.opts.beforeStep?.('mkdir', c.path);
    await this.guard('create directory', c.path, async () => {
      await mkdir(this.abs(c.path), { mode: 0o700 });
      if (c.owner.uid !== undefined || c.owner.gid !== undefined) await chown(this.abs(c.path), c.owner.uid ?? -1, c.owner.gid ?? -1);
    });
    this.touchedDirs.add(parentOf(c.path));
  }

  async renameIntoPlace(c: Extract<Change, { kind: 'fetch' | 'symlink' }>): Promise<void> {
    await this.opts.beforeStep?.('rename', c.path);
    const temp = this.staging.temps.get(c.path);
    if (temp === undefined) throw new LocalIoError(`internal: ${c.path} was never staged`, { subject: c.path });
    const expected = c.target && (c.target.type === 'dir' ? undefined : c.target);
    if (!(await this.unchangedSinceScan(c.path, expected))) return;
    await this.guard('rename into place', c.path, () => rename(temp, this.abs(c.path)));
    this.touchedDirs.add(parentOf(c.path));
    this.touchedDirs.add(parentOf(temp.slice(this.opts.targetRoot.length + 1)));
  }

  async applyAttrs(c: Extract<Change, { kind: 'attrs' }>): Promise<void> {
    await this.opts.beforeStep?.(c.source.type === 'dir' ? 'dir-attrs' : 'attrs', c.path);
    const abs = this.abs(c.path);
    const want = c.source;
    await this.guard('set attributes of', c.path, async () => {
      const link = want.type === 'symlink';
      if (c.uid || c.gid) await (link ? lchown : chown)(abs, c.uid ? c.owner.uid! : -1, c.gid ? c.owner.gid! : -1);
      if ((c.mode || c.uid || c.gid) && !link) await chmod(abs, want.mode);
      if (c.mtime) await (link ? lutimes : utimes)(abs, want.mtime, want.mtime);
    });
  }

  /**
   * New and changed directories, deepest first, after everything inside them
   * has changed; then the mtimes of directories our renames and deletions
   * bumped (rsync's touch_up_dirs), or the next pass would see them as changed.
   */
  async applyDirAttrs(changes: readonly Change[]): Promise<void> {
    const dirs = changes.filter((c) => (c.kind === 'mkdir' || c.kind === 'attrs') && c.source.type === 'dir');
    dirs.sort((a, b) => depthOf(b.path) - depthOf(a.path));
    const handled = new Set(dirs.map((c) => c.path));
    for (const dir of [...this.touchedDirs].sort((a, b) => depthOf(b) - depthOf(a))) {
      const want = this.opts.source.get(dir);
      if (handled.has(dir) || want?.type !== 'dir') continue;
      await this.guard('set the mtime of', dir, () => utimes(this.abs(dir), want.mtime, want.mtime));
    }
    for (const c of dirs) {
      if (c.kind === 'attrs') {
        await this.applyAttrs(c);
        continue;
      }
      if (c.kind !== 'mkdir') continue;
      await this.opts.beforeStep?.('dir-attrs', c.path);
      await this.guard('set attributes of', c.path, async () => {
        await chmod(this.abs(c.path), c.source.mode);
        await utimes(this.abs(c.path), c.source.mtime, c.source.mtime);
      });
    }
  }

  async syncDirs(): Promise<void> {
    await Promise.all(
      [...this.touchedDirs].map(async (dir) => {
        await this.opts.beforeStep?.('fsync', dir);
        const handle = await open(this.abs(dir), 'r').catch(() => undefined);
        if (!handle) return; // removed later in the same commit
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
      }),
    );
  }

  /**
   * True when `path` is still what the scan saw (or still absent). A slave is
   * read-only by contract, but an operator may edit a file mid-pass: that
   * edit is logged and left for the next pass instead of silently lost.
   */
  private async unchangedSinceScan(path: string, seen: Entry | undefined): Promise<boolean> {
    const now = await lstat(this.abs(path)).catch(() => undefined);
    const same =
      seen === undefined ? now === undefined
      : now !== undefined && (seen.ino === undefined || (now.ino === seen.ino && Math.floor(now.mtimeMs / 1000) === seen.mtime && (seen.type === 'dir' || now.size === seen.size)));
    if (!same) this.skipped.push({ path, reason: 'changed on this slave during the pass' });
    return same;
  }

  private async guard(what: string, path: string, action: () => Promise<unknown>): Promise<void> {
    try {
      await action();
    } catch (cause) {
      throw new LocalIoError(`cannot ${what} ${this.abs(path)}`, { subject: this.abs(path), cause });
    }
  }
}
