/**
 * What `status` needs to read (status.json, the flag file) and may not: a
 * monitoring agent outside group xroad cannot enter the state dir (0750) or
 * the flag's directory (/var/tmp/xroad, 1750). That is a fact about the
 * agent's permissions, not about the sync, so it is its own error, naming the
 * file, the directory that refuses, and the fix.
 */
import { accessSync, constants, lstatSync, type Stats } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname } from 'node:path';
import { errnoOf, LocalIoError } from '../errors.js';
import { type IdNames, loadIdNames } from '../local/ids.js';

/** A file status reads exists (or may) but this user may not read it. */
export class StateUnreadableError extends LocalIoError {}

/** A file's error other than "missing": the file cannot be read, and why, as StateUnreadableError. */
export async function stateUnreadable(path: string, cause: unknown): Promise<StateUnreadableError> {
  const user = currentUser();
  const denied = errnoOf(cause) === 'EACCES' || errnoOf(cause) === 'EPERM';
  const blocker = denied ? refusingEntry(path) : undefined;
  const names = blocker ? await loadIdNames() : undefined;
  const shown = blocker && names ? ` (${blocker.path} is ${describeEntry(blocker.stats, names)})` : '';
  const why = denied ? 'permission denied' : (errnoOf(cause) ?? String(cause));
  return new StateUnreadableError(`cannot read ${path} as user ${user}: ${why}${shown}`, {
    subject: path,
    cause: denied ? undefined : cause, // permission denied is said already
    hint: blocker && names ? fixFor(blocker.stats, names, user) : undefined,
  });
}

function currentUser(): string {
  try {
    return userInfo().username;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}`; // no passwd entry
  }
}

/** The outermost directory this user may not search, or the file itself when it may not read it. */
function refusingEntry(path: string): { path: string; stats: Stats } | undefined {
  const dirs: string[] = [];
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    dirs.unshift(dir);
    if (dirname(dir) === dir) break;
  }
  for (const dir of dirs) {
    if (!allowed(dir, constants.X_OK)) return statOf(dir);
  }
  return allowed(path, constants.R_OK) ? undefined : statOf(path);
}

function allowed(path: string, mode: number): boolean {
  try {
    accessSync(path, mode);
    return true;
  } catch (err) {
    return errnoOf(err) === 'ENOENT';
  }
}

function statOf(path: string): { path: string; stats: Stats } | undefined {
  try {
    return { path, stats: lstatSync(path) };
  } catch {
    return undefined;
  }
}

/** `drwxr-x--- xroad:xroad`, as ls -l shows it. */
function describeEntry(st: Stats, names: IdNames): string {
  return `${modeString(st)} ${names.userById.get(st.uid) ?? st.uid}:${names.groupById.get(st.gid) ?? st.gid}`;
}

function modeString(st: Stats): string {
  const m = st.mode;
  const bit = (mask: number, ch: string): string => (m & mask ? ch : '-');
  const exec = (x: number, special: number, set: string): string => (m & special ? (m & x ? set : set.toUpperCase()) : bit(x, 'x'));
  const type = st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : '-';
  return (
    type +
    bit(0o400, 'r') +
    bit(0o200, 'w') +
    exec(0o100, 0o4000, 's') +
    bit(0o040, 'r') +
    bit(0o020, 'w') +
    exec(0o010, 0o2000, 's') +
    bit(0o004, 'r') +
    bit(0o002, 'w') +
    exec(0o001, 0o1000, 't')
  );
}

function fixFor(st: Stats, names: IdNames, user: string): string {
  const group = names.groupById.get(st.gid) ?? String(st.gid);
  const owner = names.userById.get(st.uid) ?? String(st.uid);
  const groupMay = st.isDirectory() ? (st.mode & 0o050) === 0o050 : (st.mode & 0o040) !== 0;
  const join = `add ${user} to group ${group} (usermod -aG ${group} ${user}; the package makes the state dir 0750 and X-Road /var/tmp/xroad 1750, both group xroad), or run the check as ${owner}`;
  return groupMay ? join : `its group may not read it: run the check as ${owner}`;
}
