/**
 * One writer per target. The pass lock lives in the state dir, so two
 * passes (or daemons) with different state dirs could write one target at
 * once, each removing the other's staged temp files as a crashed pass's
 * strays. This lock is a flock on the target directory itself: it needs no
 * write access beside the target (/etc is not the sync user's), creates
 * nothing in it (no watcher, ours or the signer's, sees it), and dies with
 * its holder.
 *
 * Within one state dir the pass lock already puts passes in turn, so a pass
 * that holds it shares the target with its own state dir's daemon (idle
 * until the pass releases the pass lock). Any other writer is refused at
 * once, by name: waiting for a daemon would never end.
 */
import { closeSync, constants, openSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { errnoOf, LocalIoError, LockWaitInterruptedError, TargetInUseError } from '../errors.js';
import { STATE_FILES } from '../util/state-files.js';
import { type FlockHolder, flockExclusive, flockHolderOf } from './flock.js';
import { daemonLockPath, liveHolder, passLockPath } from './lock.js';

export interface TargetLock {
  release(): void;
}

export interface TargetWriter {
  readonly stateDir: string;
  /** The lock this process holds in its state dir (sync.lock, daemon.lock): kept open, it names our state dir to a refused writer. */
  readonly lockFile: string;
}

/** Targets this process holds (the daemon's, for its lifetime): its passes take no second lock. */
const heldHere = new Set<string>();
const NOTHING_TO_HOLD: TargetLock = { release: () => undefined };
const DAEMON_RETRY_MS = 100;

/** A pass's hold on the target, taken while it holds its pass lock. */
export async function lockTargetForPass(targetDir: string, writer: TargetWriter): Promise<TargetLock> {
  if (heldHere.has(resolve(targetDir))) return NOTHING_TO_HOLD; // the daemon's own pass: no system call
  const ownDaemon = (await liveHolder(daemonLockPath(writer.stateDir)))?.pid;
  const attempt = tryLockTarget(targetDir, writer, ownDaemon);
  if (!('holder' in attempt)) return attempt;
  if (attempt.holder !== undefined && attempt.holder.pid === ownDaemon) return NOTHING_TO_HOLD;
  throw targetInUse(targetDir, attempt.holder);
}

/** The daemon's hold on the target, kept on whatever directory the target path names. */
export interface DaemonTargetLock extends TargetLock {
  /** The target watcher saw something: the next followTarget looks (the directory may have been replaced). */
  noteTargetEvent(): void;
  /**
   * One stat after a target event, else at most once a minute (an idle
   * pass touches nothing in the target): when the target path names another
   * directory than the one locked (restored from a copy, replaced by a
   * rename), lock that one instead and return a notice saying so.
   * TargetInUseError when another writer got it first.
   */
  followTarget(): Promise<string | undefined>;
}

/** How often an idle daemon looks whether its target was replaced, should the watcher have missed it. */
const FOLLOW_TARGET_MAX_INTERVAL_MS = 60_000;

/**
 * The daemon's hold on the target, for its lifetime. A by-hand pass of its
 * own state dir is waited for (up to `waitMs`); any other writer refuses it.
 */
export async function lockTargetForDaemon(targetDir: string, writer: TargetWriter, waitMs: number, signal?: AbortSignal): Promise<DaemonTargetLock> {
  let lock = await waitForTarget(targetDir, writer, waitMs, signal);
  let locked = directoryIdentity(targetDir);
  let lookedAt = performance.now();
  let eventSeen = false;
  return {
    release: () => lock.release(),
    noteTargetEvent: () => void (eventSeen = true),
    async followTarget() {
      if (!eventSeen && performance.now() - lookedAt < FOLLOW_TARGET_MAX_INTERVAL_MS) return undefined;
      eventSeen = false;
      lookedAt = performance.now();
      const now = directoryIdentity(targetDir);
      if (now === undefined || now === locked) return undefined;
      lock.release();
      lock = await waitForTarget(targetDir, writer, waitMs, signal);
      locked = directoryIdentity(targetDir);
      return `the target ${targetDir} is another directory than at start (replaced or restored): locked it again`;
    },
  };
}

async function waitForTarget(targetDir: string, writer: TargetWriter, waitMs: number, signal?: AbortSignal): Promise<TargetLock> {
  const started = performance.now();
  for (;;) {
    const ownPassPid = (await liveHolder(passLockPath(writer.stateDir)))?.pid;
    const attempt = tryLockTarget(targetDir, writer, ownPassPid);
    if (!('holder' in attempt)) return attempt;
    const ownPass = attempt.holder !== undefined && attempt.holder.pid === ownPassPid;
    if (!ownPass || performance.now() - started >= waitMs) throw targetInUse(targetDir, attempt.holder);
    if (signal?.aborted) throw new LockWaitInterruptedError(`stopped while waiting for ${targetDir}; nothing was changed`, { subject: targetDir });
    await new Promise((done) => setTimeout(done, DAEMON_RETRY_MS));
  }
}

function directoryIdentity(dir: string): string | undefined {
  const st = statSync(dir, { throwIfNoEntry: false });
  return st === undefined ? undefined : `${st.dev}:${st.ino}`;
}

/** The lock, or who holds it (undefined: a process this user cannot see). */
function tryLockTarget(targetDir: string, writer: TargetWriter, likelyHolder: number | undefined): TargetLock | { holder: FlockHolder | undefined } {
  const key = resolve(targetDir);
  if (heldHere.has(key)) return NOTHING_TO_HOLD;
  const fd = openDirectory(targetDir);
  if (fd === undefined) return NOTHING_TO_HOLD; // no target yet: the pass reports that itself
  let locked = false;
  try {
    locked = flockExclusive(fd, targetDir);
  } finally {
    if (!locked) closeSync(fd);
  }
  if (!locked) return { holder: flockHolderOf(realpathSync(targetDir), likelyHolder === undefined ? [] : [likelyHolder]) };
  const naming = openQuietly(writer.lockFile);
  heldHere.add(key);
  return {
    release: () => {
      heldHere.delete(key);
      closeSync(fd);
      if (naming !== undefined) closeSync(naming);
    },
  };
}

function openDirectory(dir: string): number | undefined {
  try {
    return openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ENOTDIR') return undefined;
    throw new LocalIoError(`cannot open the target ${dir} to lock it`, {
      subject: dir,
      cause: err,
      hint: 'the target must be readable and writable by the sync user',
    });
  }
}

function openQuietly(path: string): number | undefined {
  try {
    return openSync(path, 'r');
  } catch {
    return undefined; // the refused writer then names our pid only
  }
}

function targetInUse(targetDir: string, holder: FlockHolder | undefined): TargetInUseError {
  if (holder === undefined) {
    return new TargetInUseError(`another process holds the target ${targetDir} (not visible to this user): one writer per target`, {
      subject: targetDir,
      hint: `find it with fuser -v ${targetDir}; every pass, timer and daemon on this node must use one --state-dir`,
    });
  }
  const held = holderLockFile(holder);
  const what = held === undefined ? 'process' : basename(held) === STATE_FILES.daemonLock.name ? 'xroad-sync daemon' : 'xroad-sync pass';
  const stateDir = held === undefined ? 'state dir unknown' : `state dir ${dirname(held)}`;
  return new TargetInUseError(`another ${what} (pid ${holder.pid}, ${stateDir}) writes into the target ${targetDir}: one writer per target`, {
    subject: targetDir,
    hint: `every pass, timer and daemon on this node must use one --state-dir: stop the other one (ps -p ${holder.pid} -f; kill ${holder.pid}) or use its state dir`,
  });
}

/** The lock file the holder keeps open in its state dir (" (deleted)" if its state dir was removed under it). */
function holderLockFile(holder: FlockHolder): string | undefined {
  const path = holder.openPaths.map((p) => p.replace(/ \(deleted\)$/, '')).find((p) => /\/(sync|daemon)\.lock$/.test(p));
  return path;
}
