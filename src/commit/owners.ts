/**
 * Staged files of other state dirs. One writer per target holds only while
 * everyone uses one --state-dir; when two were used, a pass may find the
 * staged files of another state dir's interrupted commit in its target. Its
 * owner file (local/temp-names.ts) names that state dir: while that state
 * dir's journal exists and names a file, the file is needed; otherwise no
 * one will ever use it and it is a stray like our own.
 */
import { lstatSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ownerFileName, ownerTag, tempOwner } from '../local/temp-names.js';
import { readSmallFile, readSmallFileStrictly } from '../util/small-file.js';
import { journalPath } from './journal.js';

/** The state dir an owner tag stands for in `target`, when its owner file names one whose tag it is. */
function ownerStateDir(target: string, owner: string): string | undefined {
  const named = readSmallFile(join(target, ownerFileName(owner)))?.trim();
  return named && ownerTag(named) === owner ? named : undefined;
}

/**
 * The target roots last seen with no owner file, by their times: a daemon asks every pass, and an owner
 * file cannot appear in the root without changing its mtime and ctime.
 */
const noOwnersAt = new Map<string, string>();

/** Other state dirs with an owner file in the target root: those that may have a commit to complete here. */
export function otherOwners(target: string, ownStateDir: string): string[] {
  // stat, not lstat: the names below are read through a target given as a symlink, and only the directory's times move with them.
  const root = statSync(target, { throwIfNoEntry: false, bigint: true });
  // Not trusted while the root changed within the last two seconds: timestamps tick coarsely (git's racily clean).
  const settled = root !== undefined && BigInt(Date.now()) * 1_000_000n - root.ctimeNs > 2_000_000_000n;
  const stamp = root && settled ? `${root.dev}:${root.ino}:${root.mtimeNs}:${root.ctimeNs}` : undefined;
  if (stamp !== undefined && noOwnersAt.get(target) === stamp) return [];
  let names: string[];
  try {
    names = readdirSync(target);
  } catch {
    return [];
  }
  if (stamp !== undefined && !names.some((name) => tempOwner(name)?.ownerFile === true)) {
    if (noOwnersAt.size < 64) noOwnersAt.set(target, stamp);
    return [];
  }
  const own = ownerTag(ownStateDir);
  return names
    .map((name) => tempOwner(name))
    .filter((t) => t?.ownerFile === true && t.owner !== own)
    .map((t) => ownerStateDir(target, t!.owner!))
    .filter((dir): dir is string => dir !== undefined && dir !== resolve(ownStateDir) && trustedJournal(dir, target));
}

/**
 * Another state dir's journal is replayed (or keeps files) only when written
 * by root, by us or by the target's owner: anyone else could not write the
 * target, and must not steer a pass that can.
 */
function trustedJournal(stateDir: string, target: string): boolean {
  const st = lstatSync(journalPath(stateDir), { throwIfNoEntry: false });
  if (st === undefined) return true; // nothing to replay or keep
  return st.isFile() && (st.uid === 0 || st.uid === process.geteuid?.() || st.uid === lstatSync(target, { throwIfNoEntry: false })?.uid);
}

/** What a state dir's journal still needs in the target: the staged files it names, or that it cannot be read (then all of them). */
export type JournalNeeds =
  | { readonly kind: 'none' }
  | { readonly kind: 'names'; readonly journal: string; readonly createdAt: string; readonly temps: ReadonlySet<string> }
  | { readonly kind: 'unreadable'; readonly journal: string };

function journalNeeds(stateDir: string): JournalNeeds {
  const journal = journalPath(stateDir);
  let text: string | null;
  try {
    text = readSmallFileStrictly(journal);
  } catch {
    return { kind: 'unreadable', journal };
  }
  if (text === null) return { kind: 'none' };
  try {
    const doc = JSON.parse(text) as { createdAt?: unknown; ops?: unknown };
    const ops = Array.isArray(doc.ops) ? (doc.ops as Array<{ op?: unknown; temp?: unknown }>) : [];
    const temps = new Set(ops.filter((op) => op.op === 'rename' && typeof op.temp === 'string').map((op) => op.temp as string));
    return { kind: 'names', journal, createdAt: String(doc.createdAt ?? 'unknown'), temps };
  } catch {
    // Not a journal any pass can replay: it needs nothing.
    return { kind: 'none' };
  }
}

export interface KeptTemps {
  readonly stateDir: string;
  readonly needs: Exclude<JournalNeeds, { kind: 'none' }>;
  readonly files: string[];
}

/**
 * Strays, and the temp files a pending journal still needs, by owner: a
 * name without an owner is taken for ours; an owner file that names no
 * state dir makes its files strays (no journal can be found for them).
 */
export function sortStrayTemps(targetDir: string, tempFiles: readonly string[], stateDir: string): { strays: string[]; kept: KeptTemps[] } {
  const own = ownerTag(stateDir);
  const owners = new Map<string, { stateDir: string; needs: JournalNeeds } | undefined>();
  const ownerOf = (tag: string) => {
    if (!owners.has(tag)) {
      const named = tag === own ? resolve(stateDir) : ownerStateDir(targetDir, tag);
      const dir = named !== undefined && (tag === own || trustedJournal(named, targetDir)) ? named : undefined;
      owners.set(tag, dir === undefined ? undefined : { stateDir: dir, needs: journalNeeds(dir) });
    }
    return owners.get(tag);
  };
  const strays: string[] = [];
  const kept = new Map<string, KeptTemps>();
  for (const rel of tempFiles) {
    const name = tempOwner(rel);
    const owner = ownerOf(name?.owner ?? own);
    const needs = owner?.needs;
    if (owner === undefined || needs === undefined || needs.kind === 'none' || (needs.kind === 'names' && !needs.temps.has(rel) && !name?.ownerFile)) {
      strays.push(rel);
      continue;
    }
    const entry = kept.get(owner.stateDir) ?? { stateDir: owner.stateDir, needs, files: [] };
    entry.files.push(rel);
    kept.set(owner.stateDir, entry);
  }
  return { strays, kept: [...kept.values()] };
}
