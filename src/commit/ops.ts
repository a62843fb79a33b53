/**
 * A commit as data: the list of filesystem operations that turns a staged
 * plan into the new target, in order. Building it is pure; the same list is
 * written to the crash journal before the first operation runs, so a killed
 * pass can be rolled forward by replaying it (every operation is idempotent).
 */

import type { Change } from '../plan/types.js';
import { depthOf, type Entry, parentOf, type Tree } from '../tree.js';
import { COMMIT_LAST } from './order.js';

/** What the scan saw at a path, so a live commit can notice a local edit made during the pass. */
export interface Seen {
  readonly ino: number;
  readonly mtime: number;
  readonly size: number;
  readonly dir: boolean;
}

export type CommitOp =
  | { readonly op: 'remove'; readonly path: string; readonly recursive: boolean; readonly seen?: Seen; readonly step: 'replace-remove' | 'delete' }
  | { readonly op: 'mkdir'; readonly path: string; readonly uid?: number; readonly gid?: number }
  /** `temp` is relative to the target root; `size` null for symlinks; `seen` null when the path was absent, undefined when unknown. */
  | { readonly op: 'rename'; readonly temp: string; readonly path: string; readonly size: number | null; readonly seen?: Seen | null }
  | {
      readonly op: 'attrs';
      readonly path: string;
      readonly link: boolean;
      readonly dir: boolean;
      readonly mode?: number;
      readonly uid?: number;
      readonly gid?: number;
      readonly mtime?: number;
    }
  | { readonly op: 'fsync'; readonly dirs: readonly string[] };

type AttrsOp = Extract<CommitOp, { op: 'attrs' }>;

/**
 * `ownerFile` (relative to the target root) marks the staged files as this
 * journal's for passes with another state dir; once the renames are done no
 * staged file is left to mark, so it goes then, before the directory mtimes
 * are set (its removal bumps the root's).
 */
export function buildCommitOps(changes: readonly Change[], temps: ReadonlyMap<string, string>, source: Tree, ownerFile?: string): CommitOp[] {
  const ops: CommitOp[] = [];
  const touched = new Set<string>();
  const by = <K extends Change['kind']>(kind: K) => changes.filter((c): c is Extract<Change, { kind: K }> => c.kind === kind);
  const deletes = by('delete');

  for (const c of deletes.filter((d) => d.forReplace)) ops.push(removeOp(c.target, 'replace-remove'));
  for (const c of by('mkdir')) ops.push({ op: 'mkdir', path: c.path, uid: c.owner.uid, gid: c.owner.gid });
  for (const c of renameOrder(changes)) {
    const temp = temps.get(c.path);
    if (temp === undefined) throw new Error(`internal: ${c.path} was never staged`);
    const replaced = c.target && c.target.type !== 'dir' ? seenOf(c.target) : null;
    ops.push({ op: 'rename', temp, path: c.path, size: c.kind === 'fetch' ? c.source.size : null, seen: replaced });
    touched.add(parentOf(temp));
  }
  if (ownerFile !== undefined) ops.push({ op: 'remove', path: ownerFile, recursive: false, step: 'delete' });
  for (const c of by('attrs').filter((a) => a.source.type !== 'dir')) ops.push(attrsOp(c));
  for (const c of deletes.filter((d) => !d.forReplace)) ops.push(removeOp(c.target, 'delete'));
  for (const op of ops) if (op.op !== 'attrs' && op.op !== 'fsync') touched.add(parentOf(op.path));
  ops.push(...dirAttrOps(changes, touched, source));
  ops.push({ op: 'fsync', dirs: [...touched].sort() });
  return ops;
}

function renameOrder(changes: readonly Change[]): Extract<Change, { kind: 'fetch' | 'symlink' }>[] {
  const staged = changes.filter((c): c is Extract<Change, { kind: 'fetch' | 'symlink' }> => c.kind === 'fetch' || c.kind === 'symlink');
  return [...staged.filter((c) => !COMMIT_LAST.includes(c.path)), ...staged.filter((c) => COMMIT_LAST.includes(c.path))];
}

function seenOf(e: Entry): Seen | undefined {
  return e.ino === undefined ? undefined : { ino: e.ino, mtime: e.mtime, size: e.size, dir: e.type === 'dir' };
}

function removeOp(target: Entry, step: 'replace-remove' | 'delete'): CommitOp {
  return { op: 'remove', path: target.path, recursive: target.type === 'dir', seen: seenOf(target), step };
}

function attrsOp(c: Extract<Change, { kind: 'attrs' }>): AttrsOp {
  const link = c.source.type === 'symlink';
  return {
    op: 'attrs',
    path: c.path,
    link,
    dir: c.source.type === 'dir',
    // chmod again after a chown: chown clears set-id bits.
    mode: !link && (c.mode || c.uid || c.gid) ? c.source.mode : undefined,
    uid: c.uid ? c.owner.uid : undefined,
    gid: c.gid ? c.owner.gid : undefined,
    mtime: c.mtime ? c.source.mtime : undefined,
  };
}

/**
 * Directory modes and mtimes last, deepest first, once nothing inside them
 * changes any more: new directories get their real mode (they were made
 * 0700), changed ones their new attributes, and every directory our renames
 * and deletions bumped gets the master's mtime back (rsync's touch_up_dirs).
 */
function dirAttrOps(changes: readonly Change[], touched: ReadonlySet<string>, source: Tree): CommitOp[] {
  const ops = new Map<string, AttrsOp>();
  for (const c of changes) {
    if (c.kind === 'mkdir') ops.set(c.path, { op: 'attrs', path: c.path, link: false, dir: true, mode: c.source.mode, mtime: c.source.mtime });
    else if (c.kind === 'attrs' && c.source.type === 'dir') ops.set(c.path, attrsOp(c));
  }
  for (const dir of touched) {
    const want = source.get(dir);
    if (want?.type !== 'dir') continue;
    const planned = ops.get(dir);
    // A mode-only change still needs the mtime back if our renames bumped it.
    ops.set(dir, planned ? { ...planned, mtime: want.mtime } : { op: 'attrs', path: dir, link: false, dir: true, mtime: want.mtime });
  }
  return [...ops.values()].sort((a, b) => depthOf(b.path) - depthOf(a.path));
}
