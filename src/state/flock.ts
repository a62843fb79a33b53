/**
 * flock(2) for Node, which has none, without native code: the `flock`
 * utility (util-linux) runs on an fd this process opened and hands down. A
 * flock lock belongs to the open file description, not to the process that
 * asked: once the child has taken it and exited, this process holds it
 * through its own fd until it closes it or dies. Nothing on disk can go
 * stale. One short-lived child per lock taken (a couple of ms of CPU): the
 * daemon takes its lock once per lifetime, never per pass.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { LocalIoError } from '../errors.js';

/**
 * util-linux installs it here on every supported distribution (merged /usr);
 * a PATH without /usr/bin (a cron job, a stripped environment) must not lose the lock.
 */
const FLOCK = ['/usr/bin/flock', '/bin/flock'].find((p) => existsSync(p)) ?? 'flock';

/** flock's exit status when the lock is taken by someone else (-E): distinct from its own failures. */
const BUSY = 99;

/**
 * Lock `fd` exclusively: true when this process now holds it, false when
 * another open file description holds it (after `waitSeconds`, 0: at once).
 */
export function flockExclusive(fd: number, subject: string, waitSeconds = 0): boolean {
  const wait = waitSeconds > 0 ? ['-w', String(waitSeconds)] : ['-n'];
  const run = spawnSync(FLOCK, ['-x', ...wait, '-E', String(BUSY), '3'], { stdio: ['ignore', 'ignore', 'pipe', fd], encoding: 'utf8' });
  if (run.error !== undefined || (run.status !== 0 && run.status !== BUSY)) {
    throw new LocalIoError(`cannot lock ${subject} with flock: ${run.error?.message ?? (run.stderr.trim() || `exit ${run.status ?? run.signal}`)}`, {
      subject,
      cause: run.error,
      hint: 'xroad-sync needs the flock utility (util-linux): /usr/bin/flock, or flock in PATH',
    });
  }
  return run.status === 0;
}

/** A process holding a flock on a given path, as /proc shows it. */
export interface FlockHolder {
  readonly pid: number;
  /** Every path that process has open (what else it holds names it). */
  readonly openPaths: readonly string[];
}

/**
 * Who holds a write flock on `path` (compared as /proc/PID/fd shows paths:
 * resolved, absolute): only processes this user may inspect; undefined when
 * none is visible. The `likely` pids are looked at first; then every fd of
 * every process (tens of ms): for refusals and by-hand commands, never per
 * daemon pass.
 */
export function flockHolderOf(path: string, likely: readonly number[] = []): FlockHolder | undefined {
  const pids = [
    ...likely,
    ...safeReaddir('/proc')
      .map(Number)
      .filter((pid) => Number.isInteger(pid) && !likely.includes(pid)),
  ];
  for (const pid of pids) {
    if (pid === process.pid) continue;
    const fds = safeReaddir(`/proc/${pid}/fd`);
    const openPaths = fds.map((fd) => safeReadlink(`/proc/${pid}/fd/${fd}`));
    const holding = fds.some((fd, i) => openPaths[i] === path && /^lock:.*\bFLOCK\s+ADVISORY\s+WRITE\b/m.test(safeRead(`/proc/${pid}/fdinfo/${fd}`)));
    if (holding) return { pid, openPaths };
  }
  return undefined;
}

function safeReaddir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return []; // gone, or not ours to read
  }
}

function safeReadlink(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return '';
  }
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
