/**
 * Locks under the state dir that cannot go stale: `sync.lock` (one pass at a
 * time) and `daemon.lock` (one daemon per state dir). A lock file is created
 * exclusively and names its holder by identity: pid, the process's start time
 * (/proc/PID/stat field 22) and the boot id. A holder counts only while a
 * process with that pid, start time and boot id lives, so a lock left by a
 * pass killed before a reboot (its pid now another process's) is taken over
 * at once, with one notice. Taking over a dead holder's lock runs under a
 * flock of the state dir (flock.ts), so two processes meeting one stale lock
 * never both take it.
 *
 * The file operations are synchronous: a handful of local system calls per
 * pass, where the async versions would each be a trip through libuv's pool
 * (a daemon takes the pass lock every second).
 */

import { randomBytes } from 'node:crypto';
import { closeSync, constants, linkSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { errnoOf, LocalIoError, LockHeldError, LockWaitInterruptedError } from '../errors.js';
import { readSmallFile } from '../util/small-file.js';
import { stateFilePath } from '../util/state-files.js';
import { flockExclusive } from './flock.js';

export interface Lock {
  readonly path: string;
  release(): Promise<void>;
}

/** Who holds a lock, as written into the lock file. */
export interface LockHolder {
  readonly pid: number;
  /** /proc/PID/stat field 22 (clock ticks since boot); absent in locks of older versions. */
  readonly start?: string;
  readonly boot?: string;
  readonly purpose: string;
  readonly since?: string;
}

export interface LockWait {
  /** How long to wait for a live holder; 0 = fail at once. */
  readonly waitMs: number;
  /** Called once, about a second into a wait (the operator should know why nothing happens). */
  readonly onWait?: (holder: LockHolder) => void;
  /** Called when a dead holder's lock is taken over. */
  readonly onTakeover?: (notice: string) => void;
  /** Stops the wait with LockWaitInterruptedError. */
  readonly signal?: AbortSignal;
}

const POLL_MS = 50;
const WAIT_NOTICE_MS = 1000;

export async function ensureStateDir(stateDir: string): Promise<void> {
  try {
    mkdirSync(stateDir, { recursive: true, mode: 0o750 });
  } catch (cause) {
    throw new LocalIoError(`cannot create the state directory ${stateDir}`, {
      subject: stateDir,
      cause,
      hint: 'create it owned by the sync user, or pass --state-dir',
    });
  }
}

export const passLockPath = (stateDir: string): string => stateFilePath(stateDir, 'passLock');
export const daemonLockPath = (stateDir: string): string => stateFilePath(stateDir, 'daemonLock');

/** The pass lock, waiting up to `wait.waitMs` for a running pass; LockHeldError after that. */
export async function acquireLock(stateDir: string, purpose: string, wait: LockWait = { waitMs: 0 }): Promise<Lock> {
  await ensureStateDir(stateDir);
  const path = passLockPath(stateDir);
  return takeLock(
    path,
    purpose,
    wait,
    (holder) =>
      new LockHeldError(`another xroad-sync pass (pid ${holder.pid}) holds ${path}: still running (${holder.purpose}) after waiting ${seconds(wait.waitMs)}`, {
        subject: path,
        hint: 'a pass normally takes seconds: check that process (ps -p PID -f); raise --wait to wait longer',
      }),
  );
}

/** The daemon's lock, held for its lifetime: a second daemon on the same state dir is refused. */
export interface DaemonLock extends Lock {
  /**
   * One stat (the daemon calls it every pass): when the lock file is no
   * longer the one we created (the state dir was removed under us), take the
   * lock again, recreating the state dir, and return a notice saying so.
   * LockHeldError when another daemon has taken it meanwhile.
   */
  reclaimIfLost(): Promise<string | undefined>;
}

export async function acquireDaemonLock(stateDir: string, onTakeover?: (notice: string) => void): Promise<DaemonLock> {
  let lock = await takeDaemonLock(stateDir, onTakeover);
  let inode = inodeOf(lock.path);
  return {
    path: lock.path,
    release: () => lock.release(),
    async reclaimIfLost() {
      if (inode !== undefined && inodeOf(lock.path) === inode) return undefined;
      // A copy of our own lock (the state dir restored from a backup made while we ran): no one else has our identity.
      if ((await liveHolder(lock.path))?.pid === process.pid) unlinkQuietly(lock.path);
      // A daemon started meanwhile may hold it for the moment it takes to be refused by our target lock.
      lock = await takeDaemonLock(stateDir, onTakeover, RECLAIM_WAIT_MS);
      inode = inodeOf(lock.path);
      return `the daemon lock ${lock.path} was gone (state directory removed?): recreated it`;
    },
  };
}

const RECLAIM_WAIT_MS = 2000;

async function takeDaemonLock(stateDir: string, onTakeover?: (notice: string) => void, waitMs = 0): Promise<Lock> {
  await ensureStateDir(stateDir);
  const path = daemonLockPath(stateDir);
  return takeLock(
    path,
    'daemon',
    { waitMs, onTakeover },
    (holder) =>
      new LockHeldError(`another xroad-sync daemon (pid ${holder.pid}) already runs on the state directory ${stateDir}`, {
        subject: path,
        hint: `one daemon per state dir: stop it first (systemctl stop xroad-sync-daemon, or kill ${holder.pid})`,
      }),
  );
}

function inodeOf(path: string): number | undefined {
  return statSync(path, { throwIfNoEntry: false })?.ino;
}

async function takeLock(path: string, purpose: string, wait: LockWait, held: (holder: LockHolder) => Error): Promise<Lock> {
  const started = performance.now();
  let told = false;
  for (;;) {
    if (wait.signal?.aborted) throw new LockWaitInterruptedError(`stopped while waiting for ${path}; nothing was changed`, { subject: path });
    const mine = tryCreate(path, purpose);
    if (mine) return mine;
    const text = readLockFile(path);
    if (text === null) continue; // released between our create and our read
    const holder = parseHolder(text);
    if (holder === undefined || !holderIsLive(holder)) {
      takeOver(path, text, holder, wait);
      continue;
    }
    const waited = performance.now() - started;
    if (waited >= wait.waitMs) throw held(holder);
    if (!told && waited >= Math.min(WAIT_NOTICE_MS, wait.waitMs)) {
      told = true;
      wait.onWait?.(holder);
    }
    await sleep(Math.min(POLL_MS, wait.waitMs - waited));
  }
}

/**
 * The lock file appears whole or not at all: its content is written to a
 * private temp file first, then hard-linked to the lock's name (link(2)
 * fails if the name exists). A reader never sees an empty lock and takes it
 * for a dead holder's.
 */
function tryCreate(path: string, purpose: string): Lock | undefined {
  const content = JSON.stringify({ ...ownIdentity(), purpose, since: new Date().toISOString() }) + '\n';
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(temp, content, { mode: 0o644, flag: 'wx' });
    linkSync(temp, path);
  } catch (err) {
    if (errnoOf(err) === 'EEXIST') return undefined;
    throw new LocalIoError(`cannot create the lock file ${path}`, { subject: path, cause: err });
  } finally {
    unlinkQuietly(temp);
  }
  return {
    path,
    // Only our own lock: never a successor's, should ours have been taken over.
    release: async () => {
      if (readSmallFile(path) === content) unlinkQuietly(path);
    },
  };
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/** The lock's text; null when it is gone. Any other failure is an error: retrying could never end. */
function readLockFile(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return null;
    throw new LocalIoError(`cannot read the lock file ${path}`, {
      subject: path,
      cause: err,
      hint: 'the state directory and the files in it must be readable and writable by the sync user',
    });
  }
}

/**
 * Remove a dead holder's lock, unless it changed hands since we read it.
 * Check-then-unlink by name is a race: two processes that judged the same
 * lock stale could each remove it, the second removing the lock the first
 * had just created in its place. Takeovers therefore run one at a time,
 * under a flock on the lock's directory: the one that checks finds either
 * the stale lock it judged (and removes it) or a successor's (and leaves it).
 * Only a takeover pays for the flock (a spawn); taking a free lock does not.
 */
function takeOver(path: string, text: string, holder: LockHolder | undefined, wait: LockWait): void {
  const removed = underDirectoryFlock(dirname(path), () => {
    if (readSmallFile(path) !== text) return false;
    pauseForTest('lock-takeover');
    unlinkQuietly(path);
    return true;
  });
  if (!removed) return;
  wait.onTakeover?.(
    holder === undefined
      ? `took over ${path}: it did not name a holder`
      : `took over ${path} from pid ${holder.pid} (${holder.purpose}${holder.since ? ` since ${holder.since}` : ''}): that process is gone (killed, or before a reboot)`,
  );
}

/** Seconds a takeover waits for another one in the same directory (each takes microseconds; a dead one's flock is gone with it). */
const TAKEOVER_WAIT_S = 10;

function underDirectoryFlock<T>(dir: string, critical: () => T): T {
  let fd: number;
  try {
    fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (cause) {
    throw new LocalIoError(`cannot open ${dir} to take over a stale lock in it`, {
      subject: dir,
      cause,
      hint: 'the state directory must be readable by the sync user',
    });
  }
  try {
    if (!flockExclusive(fd, dir, TAKEOVER_WAIT_S)) {
      throw new LocalIoError(`another process kept ${dir} locked for ${TAKEOVER_WAIT_S} s while taking over a stale lock`, {
        subject: dir,
        hint: 'a takeover takes microseconds: find the process with fuser -v DIR',
      });
    }
    return critical();
  } finally {
    closeSync(fd);
  }
}

/** The holder of a lock file if it is alive, else undefined. */
export async function liveHolder(path: string): Promise<LockHolder | undefined> {
  const text = readSmallFile(path);
  const holder = text === null ? undefined : parseHolder(text);
  return holder && holderIsLive(holder) ? holder : undefined;
}

/**
 * Wait until no live process holds the lock (without taking it): how `pause`
 * knows a pass in flight has finished or been abandoned. Resolves with the
 * holder waited for (undefined when there was none) and the time it took;
 * LockHeldError when `timeoutMs` runs out.
 */
export async function waitUntilFree(path: string, wait: LockWait): Promise<{ holder: LockHolder | undefined; waitedMs: number }> {
  const started = performance.now();
  let first: LockHolder | undefined;
  let told = false;
  for (;;) {
    const holder = await liveHolder(path);
    const waitedMs = performance.now() - started;
    if (holder === undefined) return { holder: first, waitedMs };
    first ??= holder;
    if (waitedMs >= wait.waitMs) {
      throw new LockHeldError(`the pass of pid ${holder.pid} (${holder.purpose}) is still running after ${seconds(wait.waitMs)}`, {
        subject: path,
        hint: 'new passes are paused already; that one may still commit: check it with ps -p PID -f, or raise --wait',
      });
    }
    if (!told && waitedMs >= WAIT_NOTICE_MS) {
      told = true;
      wait.onWait?.(holder);
    }
    await sleep(POLL_MS);
  }
}

/** JSON (this version) or "pid\npurpose\n" (earlier versions). */
export function parseHolder(text: string): LockHolder | undefined {
  try {
    const json = JSON.parse(text) as Partial<LockHolder>;
    if (Number.isInteger(json.pid) && json.pid! > 0) {
      return { pid: json.pid!, start: json.start, boot: json.boot, purpose: String(json.purpose ?? 'unknown'), since: json.since };
    }
    return undefined;
  } catch {
    const [pidLine, purpose] = text.split('\n');
    const pid = Number(pidLine);
    return Number.isInteger(pid) && pid > 0 ? { pid, purpose: purpose || 'unknown' } : undefined;
  }
}

/**
 * Alive means: a process with this pid exists, was started when the lock
 * says, in this boot. A lock of an earlier version (pid only) counts only if
 * that process is an xroad-sync (its command line).
 */
export function holderIsLive(holder: LockHolder): boolean {
  const now = processIdentity(holder.pid);
  if (now === undefined) return procUnavailable() ? pidExists(holder.pid) : false;
  // Under systemd-nspawn one boot has two boot ids (the container's is overmounted; a sandboxed unit
  // sees the host's): the same start time of an xroad-sync process is still the holder.
  if (holder.boot !== undefined && holder.boot !== now.boot) return holder.start === now.start && /xroad-sync|cli\/main\.js/.test(commandLine(holder.pid));
  if (holder.start !== undefined) return holder.start === now.start;
  return /xroad-sync|cli\/main\.js/.test(commandLine(holder.pid));
}

interface Identity {
  readonly pid: number;
  readonly start: string;
  readonly boot: string;
}

/** Read once: a process's pid, start time and boot never change (a daemon takes the lock every second). */
let cachedOwnIdentity: (Partial<Identity> & { pid: number }) | undefined;
function ownIdentity(): Partial<Identity> & { pid: number } {
  cachedOwnIdentity ??= processIdentity(process.pid) ?? { pid: process.pid };
  return cachedOwnIdentity;
}

function processIdentity(pid: number): Identity | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) is in parentheses and may hold spaces or ')': fields 3… follow the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { pid, start: fields[22 - 3]!, boot: bootId() };
  } catch {
    return undefined;
  }
}

let cachedBootId: string | undefined;
function bootId(): string {
  cachedBootId ??= readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  return cachedBootId;
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

function procUnavailable(): boolean {
  return processIdentity(process.pid) === undefined;
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoOf(err) === 'EPERM';
  }
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(1, ms)));
}

/**
 * Off unless XROAD_SYNC_TEST_HOOK is `pause@<point>`: stops this process at
 * <point> for XROAD_SYNC_TEST_PAUSE_MS (default 50), so a test can make a
 * race of microseconds happen every time.
 */
function pauseForTest(point: string): void {
  if (process.env.XROAD_SYNC_TEST_HOOK !== `pause@${point}`) return;
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(process.env.XROAD_SYNC_TEST_PAUSE_MS ?? 50));
}

/** The operator's line while a by-hand command waits for the pass in flight. */
export function waitingLine(holder: LockHolder, waitMs: number): string {
  return `waiting for the running pass (pid ${holder.pid}${holder.purpose === 'sync' ? '' : `, ${holder.purpose}`}) to finish, up to ${Number((waitMs / 1000).toFixed(1))} s …`;
}
