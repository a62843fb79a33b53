import type { Entry } from '../tree.js';

/** Owner and group to give a path; undefined leaves that id as the local default/as it is. */
export interface Ownership {
  readonly uid?: number;
  readonly gid?: number;
}

/**
 * One change to the target. `source` is the master's entry, `target` what the
 * slave has at that path now (absent for new paths). Changes that replace an
 * entry of another type where a directory is involved are preceded by
 * `delete` changes with `forReplace: true` for the old entry and its subtree.
 */
export type Change =
  | {
      readonly kind: 'fetch';
      readonly path: string;
      readonly source: Entry;
      readonly target?: Entry;
      readonly owner: Ownership;
      /** Size and mtime match, but the slave's copy was taken while racy: fetched and compared, kept only if the bytes differ. */
      readonly verify?: boolean;
      /** For a `verify` fetch whose bytes turn out identical: the attribute change still due, if any. */
      readonly ifIdentical?: Extract<Change, { kind: 'attrs' }>;
    }
  | { readonly kind: 'mkdir'; readonly path: string; readonly source: Entry; readonly target?: Entry; readonly owner: Ownership }
  | { readonly kind: 'symlink'; readonly path: string; readonly source: Entry; readonly target?: Entry; readonly owner: Ownership }
  | {
      /** Same type, same content: only mode, mtime, owner or group differ. */
      readonly kind: 'attrs';
      readonly path: string;
      readonly source: Entry;
      readonly target: Entry;
      readonly owner: Ownership;
      readonly mode: boolean;
      readonly mtime: boolean;
      readonly uid: boolean;
      readonly gid: boolean;
    }
  | { readonly kind: 'delete'; readonly path: string; readonly target: Entry; readonly forReplace: boolean };

export type ChangeKind = Change['kind'];

export interface Plan {
  /**
   * Every change, creations and updates in rsync's file-list order, then the
   * deletions in rsync's deletion order (deepest first within a removed directory).
   */
  readonly changes: readonly Change[];
  /** rsync's "total size": sum of file sizes plus symlink target lengths in the (filtered) source. */
  readonly totalSize: number;
  /** Regular files in the filtered source / filtered target, for the safety valve and reports. */
  readonly sourceFiles: number;
  readonly targetFiles: number;
  /** Directories that would be deleted but hold excluded (protected) entries: kept, as rsync does. */
  readonly keptNonEmpty: readonly string[];
}

/**
 * What the slave knows about users and groups, as plain data so the planner
 * stays pure. Built by local/ids.ts from /etc/passwd, /etc/group and the
 * process's credentials.
 */
export interface IdMapping {
  /** Running as root: owner and group are set, mapped by name (rsync -a as root). */
  readonly asRoot: boolean;
  readonly uidByName: ReadonlyMap<string, number>;
  readonly gidByName: ReadonlyMap<string, number>;
  /** Non-root: the groups the running user belongs to (rsync -g preserves only these). */
  readonly memberGids: ReadonlySet<number>;
}
