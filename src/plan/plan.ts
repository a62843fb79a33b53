/**
 * The planner: a pure function from (master tree, target tree) to the list of
 * changes that makes the target a mirror of the master. No I/O here, so every
 * rule of `rsync -a --delete` that decides *what* changes is testable on plain
 * data; stage/ and commit/ decide *how*.
 */
import { TransferError } from '../errors.js';
import { baseName, compareNames, type Entry, isWithin, parentOf, rsyncOrder, type Tree } from '../tree.js';
import { desiredOwnership } from './ownership.js';
import type { Change, IdMapping, Ownership, Plan } from './types.js';

export interface PlanInput {
  /** The master's tree, already filtered. */
  readonly source: Tree;
  /** The target's tree, already filtered (excluded paths are not in it). */
  readonly target: Tree;
  /** Excluded paths found in the target: never touched, and they keep their parent directories alive. */
  readonly targetExcluded: ReadonlySet<string>;
  readonly ids: IdMapping;
  /** Files whose quick check cannot be trusted (taken while racy): fetched again and compared. */
  readonly suspect?: (path: string) => boolean;
}

export function planChanges(input: PlanInput): Plan {
  const { source, target } = input;
  if (inStep(input)) {
    // The daemon's every-second case: no change to order, so no sorting and no deletion walk.
    return { changes: [], totalSize: totalSizeOf(source), sourceFiles: countFiles(source), targetFiles: countFiles(target), keptNonEmpty: [] };
  }
  const changes: Change[] = [];
  const deletions = new DeletionPlanner(input);
  const isSourceDir = (p: string): boolean => source.get(p)?.type === 'dir';

  for (const path of rsyncOrder(source.keys(), isSourceDir)) {
    const want = source.get(path)!;
    if (want.type === 'other') continue; // devices and specials: skipped, as rsync -a does for non-root
    const have = target.get(path);
    if (have && needsRemovalFirst(want, have)) changes.push(...deletions.forReplace(have));
    const change = changeFor(want, have, input.ids, input.suspect);
    if (change) changes.push(change);
  }
  changes.push(...deletions.extraneous());

  return {
    changes,
    totalSize: totalSizeOf(source),
    sourceFiles: countFiles(source),
    targetFiles: countFiles(target),
    keptNonEmpty: deletions.kept(),
  };
}

/**
 * True when the full planner would find nothing to do: every master entry
 * has a twin of its type needing no change, and the target holds nothing
 * else (so nothing to delete, and no directory kept for excluded content).
 */
function inStep({ source, target, ids, suspect }: PlanInput): boolean {
  if (source.size !== target.size) return false;
  for (const want of source.values()) {
    const have = target.get(want.path);
    if (!have) return false;
    // Devices and specials are skipped, and a target entry at their path is not deleted.
    if (want.type !== 'other' && changeFor(want, have, ids, suspect) !== null) return false;
  }
  // As many entries on each side, each master path present in the target: the same paths.
  return true;
}

/** A rename can replace a file or symlink in one step; a directory on either side must go first. */
function needsRemovalFirst(want: Entry, have: Entry): boolean {
  return want.type !== have.type && (want.type === 'dir' || have.type === 'dir');
}

function changeFor(want: Entry, have: Entry | undefined, ids: IdMapping, suspect?: (path: string) => boolean): Change | null {
  const owner = desiredOwnership(want, ids);
  const path = want.path;
  const sameType = have !== undefined && have.type === want.type;
  switch (want.type) {
    case 'dir':
      if (!sameType) return { kind: 'mkdir', path, source: want, target: have, owner };
      break;
    case 'file':
      if (!sameType || have.size !== want.size || have.mtime !== want.mtime) {
        return { kind: 'fetch', path, source: want, target: have, owner };
      }
      if (suspect?.(path)) {
        const attrs = attributeChange(want, have, owner);
        return { kind: 'fetch', path, source: want, target: have, owner, verify: true, ifIdentical: attrs?.kind === 'attrs' ? attrs : undefined };
      }
      break;
    case 'symlink':
      if (!sameType || have.linkTarget !== want.linkTarget) return { kind: 'symlink', path, source: want, target: have, owner };
      break;
    default:
      return null;
  }
  return attributeChange(want, have, owner);
}

function attributeChange(want: Entry, have: Entry, owner: Ownership): Change | null {
  // Symlink permission bits mean nothing on Linux and cannot be set (no lchmod).
  const mode = want.type !== 'symlink' && want.mode !== have.mode;
  const mtime = want.mtime !== have.mtime;
  const uid = owner.uid !== undefined && owner.uid !== have.uid;
  const gid = owner.gid !== undefined && owner.gid !== have.gid;
  if (!mode && !mtime && !uid && !gid) return null;
  return { kind: 'attrs', path: want.path, source: want, target: have, owner, mode, mtime, uid, gid };
}

/** Counts of a plan as the pass record shows them (make-room deletions are part of a replacement). */
export function countChanges(changes: readonly Change[]): { changed: number; deleted: number } {
  let changed = 0;
  let deleted = 0;
  for (const c of changes) {
    if (c.kind !== 'delete') changed++;
    else if (!c.forReplace) deleted++;
  }
  return { changed, deleted };
}

function totalSizeOf(tree: Tree): number {
  let total = 0;
  for (const e of tree.values()) {
    if (e.type === 'file') total += e.size;
    else if (e.type === 'symlink') total += Buffer.byteLength(e.linkTarget ?? '');
  }
  return total;
}

function countFiles(tree: Tree): number {
  let n = 0;
  for (const e of tree.values()) if (e.type === 'file') n++;
  return n;
}

/**
 * Deletions in rsync's order (delete.c): per surviving directory in file-list
 * order, its extraneous entries in reverse sorted order; a doomed directory's
 * contents depth-first before the directory itself. A directory holding an
 * excluded entry is kept (rsync: "cannot delete non-empty directory").
 */
class DeletionPlanner {
  private readonly children = new Map<string, Entry[]>();
  private readonly done = new Set<string>();
  private readonly keptDirs: string[] = [];

  constructor(private readonly input: PlanInput) {
    for (const entry of input.target.values()) {
      if (entry.path === '') continue;
      const parent = parentOf(entry.path);
      const list = this.children.get(parent) ?? [];
      list.push(entry);
      this.children.set(parent, list);
    }
  }

  /** Removal of an entry that a new entry of another type replaces. Protected content makes that impossible. */
  forReplace(have: Entry): Change[] {
    const protectedPath = this.protectedWithin(have.path);
    if (protectedPath !== undefined) {
      throw new TransferError(
        `cannot replace directory ${have.path}/ with the master's ${this.input.source.get(have.path)?.type}: it holds the excluded path ${protectedPath}`,
        { subject: have.path, hint: 'move the excluded file away on this slave, or change the master' },
      );
    }
    return this.subtree(have, true);
  }

  /** Everything in the target that the master does not have, in rsync's deletion order. */
  extraneous(): Change[] {
    const out: Change[] = [];
    const { source, target } = this.input;
    const surviving = rsyncOrder(
      [...target.keys()].filter((p) => target.get(p)!.type === 'dir' && source.get(p)?.type === 'dir'),
      () => true,
    );
    for (const dir of surviving) {
      for (const child of this.sortedChildren(dir).reverse()) {
        if (!source.has(child.path) && !this.done.has(child.path)) out.push(...this.subtree(child, false));
      }
    }
    return out;
  }

  kept(): readonly string[] {
    return this.keptDirs;
  }

  private subtree(entry: Entry, forReplace: boolean): Change[] {
    const out: Change[] = [];
    if (entry.type === 'dir') {
      for (const child of this.sortedChildren(entry.path).reverse()) out.push(...this.subtree(child, forReplace));
    }
    this.done.add(entry.path);
    if (entry.type === 'dir' && this.protectedWithin(entry.path) !== undefined) {
      this.keptDirs.push(entry.path);
      return out;
    }
    out.push({ kind: 'delete', path: entry.path, target: entry, forReplace });
    return out;
  }

  private sortedChildren(dir: string): Entry[] {
    const list = this.children.get(dir) ?? [];
    return list.slice().sort((a, b) => compareNames(baseName(a.path), baseName(b.path)));
  }

  private protectedWithin(dir: string): string | undefined {
    for (const p of this.input.targetExcluded) if (p !== dir && isWithin(p, dir)) return p;
    return undefined;
  }
}
