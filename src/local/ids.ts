/**
 * Users and groups as the slave knows them, for mapping the master's owner
 * and group names to local ids (rsync maps by name, falling back to the
 * number) and for showing local names.
 *
 * Only the files backend is read: /etc/passwd and /etc/group. Users and
 * groups from NSS modules (LDAP, SSSD, systemd-userdb) are not seen, so for
 * them the numeric id is used, as rsync does for a name it cannot resolve.
 * On a security server `xroad` is a local system user, which is what matters.
 */
import { statSync } from 'node:fs';
import type { IdMapping } from '../plan/types.js';
import { readSmallFile } from '../util/small-file.js';

/** The reverse direction: id -> name, for showing local entries. */
export interface IdNames {
  readonly userById: ReadonlyMap<number, string>;
  readonly groupById: ReadonlyMap<number, string>;
}

export interface IdFiles {
  readonly passwd?: string;
  readonly group?: string;
}

interface IdTable {
  readonly byName: ReadonlyMap<string, number>;
  readonly byId: ReadonlyMap<number, string>;
}

/**
 * `name:x:id:...` lines (the layout of both files). The first line for a
 * name or id wins, as getpwnam()/getpwuid() do; comments, NIS `+`/`-`
 * entries and malformed lines are skipped.
 */
export function parseIdFile(text: string): IdTable {
  const byName = new Map<string, number>();
  const byId = new Map<number, string>();
  for (const raw of text.split('\n')) {
    const fields = raw.split(':');
    const name = fields[0] ?? '';
    if (fields.length < 3 || name === '' || name.startsWith('#') || name.startsWith('+') || name.startsWith('-')) continue;
    if (!/^\d+$/.test(fields[2] ?? '')) continue;
    const id = Number(fields[2]);
    if (!byName.has(name)) byName.set(name, id);
    if (!byId.has(id)) byId.set(id, name);
  }
  return { byName, byId };
}

/**
 * Parsed files by path, kept while the file's identity (inode, size, mtime
 * and ctime) is the same: a daemon asks every second, and useradd, vipw and
 * package scripts all replace or rewrite the file, changing it.
 */
const parsed = new Map<string, { readonly stamp: string; readonly table: IdTable }>();

/** A missing or unreadable file counts as empty: names then fall back to numbers. */
function readIdFile(path: string): IdTable {
  const stamp = fileStamp(path);
  const cached = parsed.get(path);
  if (cached && stamp !== null && cached.stamp === stamp) return cached.table;
  const table = parseIdFile(readSmallFile(path) ?? '');
  if (stamp === null) parsed.delete(path);
  else parsed.set(path, { stamp, table });
  return table;
}

/** The file's identity, or null when it must be read afresh (missing, or changed too recently to trust). */
function fileStamp(path: string): string | null {
  const st = statSync(path, { bigint: true, throwIfNoEntry: false });
  if (!st) return null;
  // Timestamps tick coarsely (a jiffy on ext4): a file changed within the last second may change again
  // without moving them, so it is not cached until it is older (git's "racily clean" rule).
  const changedNs = st.ctimeNs > st.mtimeNs ? st.ctimeNs : st.mtimeNs;
  if (BigInt(Date.now()) * 1_000_000n - changedNs < 1_000_000_000n) return null;
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

function readBoth(files: IdFiles): { users: IdTable; groups: IdTable } {
  return { users: readIdFile(files.passwd ?? '/etc/passwd'), groups: readIdFile(files.group ?? '/etc/group') };
}

/** The groups this process may give files: supplementary plus real and effective (as rsync's is_in_group()). */
function ownGroups(): Set<number> {
  const gids = new Set<number>(process.getgroups?.() ?? []);
  const gid = process.getgid?.();
  const egid = process.getegid?.();
  if (gid !== undefined) gids.add(gid);
  if (egid !== undefined) gids.add(egid);
  return gids;
}

/** Both views of the id files from one read: the planner's mapping and the scanner's names. */
export interface LocalIds {
  readonly mapping: IdMapping;
  readonly names: IdNames;
}

export async function loadLocalIds(files: IdFiles = {}): Promise<LocalIds> {
  const { users, groups } = readBoth(files);
  return {
    mapping: { asRoot: process.getuid?.() === 0, uidByName: users.byName, gidByName: groups.byName, memberGids: ownGroups() },
    names: { userById: users.byId, groupById: groups.byId },
  };
}

export async function loadIdNames(files: IdFiles = {}): Promise<IdNames> {
  return (await loadLocalIds(files)).names;
}
