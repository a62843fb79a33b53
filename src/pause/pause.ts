/**
 * The pause protocol behind pause / resume: the guide's flag file, made a
 * command that means what it says when it returns. `pause` creates /var/tmp/xroad/sync-disabled (and its
 * directory, handed to the xroad user when run as root), then waits until no
 * pass is in flight: a pass that has not started committing sees the flag and
 * is abandoned, one already committing finishes. `resume` removes the flag
 * and, with --now, runs a pass (waiting for one in flight); beside a daemon it
 * reports the pass the daemon runs on resume.
 *
 * Each thing paused is a "half" with its own pause/resume returning the
 * lines to print ("Sync paused: false => true"); the file sync is one, a
 * later half (e.g. a database replica) is added to HALVES.
 */
import { existsSync } from 'node:fs';
import { chown, mkdir, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { recoverInterruptedCommit } from '../commit/commit.js';
import { leftJournal } from '../commit/journal.js';
import { describeError, LocalIoError, PauseUnconfirmedError } from '../errors.js';
import { loadLocalIds } from '../local/ids.js';
import { operatorRestartRules, restartHintLines } from '../report/restart-hints.js';
import { DEFAULTS, lockWait } from '../settings/pass-settings.js';
import { readFlagSeen } from '../state/flag-seen.js';
import { acquireLock, daemonLockPath, liveHolder, passLockPath, waitingLine, waitUntilFree } from '../state/lock.js';
import { type LastPass, readStatus } from '../state/status.js';
import { formatDuration } from '../util/duration.js';

export interface PauseOptions {
  flagFile?: string;
  stateDir?: string;
  wait?: string;
}

export interface PauseContext {
  readonly flagFile: string;
  readonly stateDir: string;
  readonly waitMs: number;
  /** A line for the operator while waiting (stderr). */
  readonly notice: (line: string) => void;
}

export interface PauseHalf {
  pause(ctx: PauseContext): Promise<string[]>;
  /** `exitCode`: non-zero when what resume started failed (the daemon's pass). */
  resume(ctx: PauseContext): Promise<{ lines: string[]; exitCode: number }>;
}

/** How long `pause` waits for a running daemon to record that it sees the flag (it looks at least once a second). */
const DAEMON_ACK_WAIT_MS = 10_000;

const fileSync: PauseHalf = { pause: pauseFileSync, resume: resumeFileSync };
const HALVES: readonly PauseHalf[] = [fileSync];

/** The pause context from the command's options; `notice` reaches the operator while waiting. */
export function pauseContext(opts: PauseOptions, notice: (line: string) => void): PauseContext {
  return {
    flagFile: resolve(opts.flagFile ?? DEFAULTS.flagFile),
    stateDir: resolve(opts.stateDir ?? DEFAULTS.stateDir),
    waitMs: lockWait(opts.wait),
    notice,
  };
}

/** Pauses every half; the lines to print. */
export async function pauseAll(ctx: PauseContext): Promise<string[]> {
  const lines: string[] = [];
  for (const half of HALVES) lines.push(...(await half.pause(ctx)));
  return lines;
}

/** Resumes every half; the lines to print and the first failure's exit code. */
export async function resumeAll(ctx: PauseContext): Promise<{ lines: string[]; exitCode: number }> {
  const lines: string[] = [];
  let exitCode = 0;
  for (const half of HALVES) {
    const resumed = await half.resume(ctx);
    lines.push(...resumed.lines);
    exitCode ||= resumed.exitCode;
  }
  return { lines, exitCode };
}

async function pauseFileSync(ctx: PauseContext): Promise<string[]> {
  const was = existsSync(ctx.flagFile);
  if (!was) await createFlag(ctx.flagFile);
  const lines = [`Sync paused: ${was} => true (${ctx.flagFile})`];
  const seenBy = await daemonSeesFlag(ctx);
  if (seenBy !== undefined) lines.push(`the daemon (pid ${seenBy}) sees the flag`);
  // Every pass checks the flag again right before its commit, so once the lock is free no pass can commit.
  const since = Date.now();
  const { holder, waitedMs } = await waitUntilFree(passLockPath(ctx.stateDir), {
    waitMs: ctx.waitMs,
    onWait: (h) => ctx.notice(waitingLine(h, ctx.waitMs)),
  });
  if (holder === undefined) {
    lines.push('no pass was running');
  } else {
    const last = await passRecordedSince(ctx.stateDir, since);
    lines.push(`waited ${formatDuration(waitedMs)} for the running pass (pid ${holder.pid}) to ${outcomeOf(last, since)}`);
  }
  lines.push(...(await completeInterruptedCommit(ctx)));
  return lines;
}

/**
 * A running daemon must show that it sees this flag (flag-seen.json, same
 * inode) before pause may say "paused": one looking at a deleted flag
 * directory, or a stuck one, would go on syncing. Returns the daemon's pid,
 * undefined when no daemon runs.
 */
async function daemonSeesFlag(ctx: PauseContext): Promise<number | undefined> {
  const flag = await stat(ctx.flagFile).catch(() => null);
  if (flag === null) return undefined; // removed at once by a resume: nothing to confirm
  // Monotonic: a clock step during the wait must not end it early or stretch it.
  const deadline = performance.now() + DAEMON_ACK_WAIT_MS;
  for (;;) {
    const daemon = await liveHolder(daemonLockPath(ctx.stateDir));
    if (daemon === undefined) return undefined; // a daemon started from now on finds the flag
    const seen = await readFlagSeen(ctx.stateDir);
    if (seen?.pid === daemon.pid && seen.ino === flag.ino) return daemon.pid;
    if (performance.now() >= deadline) {
      throw new PauseUnconfirmedError(
        `sync is NOT paused for the running daemon (pid ${daemon.pid}): it did not confirm within ${DAEMON_ACK_WAIT_MS / 1000} s that it sees ${ctx.flagFile}, and may still change the target`,
        {
          subject: ctx.flagFile,
          hint: `it may be looking at an older, deleted ${dirname(ctx.flagFile)} (the directory was replaced since it started) or be stuck; the flag stays in place: restart it (systemctl restart xroad-sync-daemon), then run pause again`,
        },
      );
    }
    await sleep(50);
  }
}

/**
 * A commit interrupted by kill -9 or a power loss is finished here, even
 * though sync is paused: it only completes a plan already committed to, and
 * a half-applied target must not wait out an upgrade.
 */
async function completeInterruptedCommit(ctx: PauseContext): Promise<string[]> {
  const left = leftJournal(ctx.stateDir);
  if (left?.unreadable !== undefined)
    return [
      `WARNING: cannot read ${left.path} (${describeError(left.unreadable)}): a commit interrupted there may have left the target half-applied; make it readable by this user (chown it to the owner of ${ctx.stateDir}), then run pause again`,
    ];
  if (left === null || left.target === null) return []; // an unparsable one is discarded by the next pass (status reports it)
  const lock = await acquireLock(ctx.stateDir, 'pause', { waitMs: ctx.waitMs, onWait: (h) => ctx.notice(waitingLine(h, ctx.waitMs)) });
  try {
    const target = left.target;
    const recovery = await asWriterOf(left, () => recoverInterruptedCommit(ctx.stateDir, target));
    if (recovery.kind === 'none') return [];
    if (recovery.kind === 'discarded') return [recovery.reason];
    const paths = recovery.changes.map((c) => c.path);
    return [
      `completed the commit interrupted at ${recovery.createdAt} (${recovery.operations} operations replayed): ${paths.length} changes now live in ${target}`,
      ...(await restartHintLines(paths, operatorRestartRules())),
    ];
  } finally {
    await lock.release();
  }
}

/**
 * Run as root, replay as the user whose pass wrote the journal (the service user): directories the commit creates
 * must be theirs, and a root pass's ownership changes need root. Journals of older versions name no writer: their
 * file's owner wrote them.
 */
async function asWriterOf<T>(left: { path: string; uid?: number }, work: () => Promise<T>): Promise<T> {
  const owner = await stat(left.path);
  const uid = left.uid ?? owner.uid;
  if (process.getuid?.() !== 0 || uid === 0 || !process.seteuid || !process.setegid) return work();
  process.setegid(owner.gid); // the state dir's group: the writer is root (handled above) or, in practice, the service user
  process.seteuid(uid);
  try {
    return await work();
  } finally {
    process.seteuid(0);
    process.setegid(0);
  }
}

async function resumeFileSync(ctx: PauseContext): Promise<{ lines: string[]; exitCode: number }> {
  const was = existsSync(ctx.flagFile);
  // The daemon's pass after resume is the first record that is not this one (clocks need not agree to the second).
  const recordBefore = (await readStatus(ctx.stateDir)).lastPass;
  try {
    await unlink(ctx.flagFile);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new LocalIoError(`cannot remove the flag file ${ctx.flagFile}`, {
        subject: ctx.flagFile,
        cause,
        hint: 'run as the user that owns it (xroad), or with sudo',
      });
    }
  }
  const lines = [`Sync paused: ${was} => false (${ctx.flagFile})`];
  const daemon = await liveHolder(daemonLockPath(ctx.stateDir));
  if (!was || !daemon) return { lines, exitCode: 0 };
  const after = await daemonPassAfter(ctx, daemon.pid, Date.now(), recordBefore?.startedAt);
  return { lines: [...lines, after.line], exitCode: after.exitCode };
}

/** The daemon runs a pass when the flag goes: wait (bounded) for its record and say how it went; its failure is resume's. */
async function daemonPassAfter(ctx: PauseContext, pid: number, since: number, startedBefore: string | undefined): Promise<{ line: string; exitCode: number }> {
  const deadline = since + Math.min(ctx.waitMs, 30_000);
  while (Date.now() < deadline) {
    const last = (await readStatus(ctx.stateDir)).lastPass;
    if (last && last.startedAt !== startedBefore && last.result !== 'skipped') {
      const line = `the daemon (pid ${pid}) ran a pass ${formatDuration(Date.parse(last.finishedAt) - since)} after resume: ${describeLast(last)}`;
      if (last.result !== 'failed') return { line, exitCode: 0 };
      ctx.notice(`the daemon's pass after resume failed: ${last.error ?? 'no error recorded'} (exit ${last.exitCode})`);
      return { line, exitCode: last.exitCode || 1 };
    }
    await sleep(100);
  }
  return { line: `the daemon (pid ${pid}) has not finished a pass yet; it runs one at once (xroad-sync status shows it)`, exitCode: 0 };
}

/**
 * A pass releases its lock, then records itself in status.json: give it a
 * moment (bounded) so pause can say how it ended. A killed holder, or a
 * daemon's quiet pass that status.json skips, leaves the plain "to end".
 */
async function passRecordedSince(stateDir: string, since: number, waitMs = 2_000): Promise<LastPass | null> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const last = (await readStatus(stateDir)).lastPass;
    if ((last && Date.parse(last.finishedAt) >= since) || Date.now() >= deadline) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
}

function outcomeOf(last: LastPass | null, since: number): string {
  if (!last || Date.parse(last.finishedAt) < since) return 'end';
  if (last.result === 'skipped') return 'be abandoned before its commit (nothing changed)';
  return `finish: ${describeLast(last)}`;
}

function describeLast(last: LastPass): string {
  return last.result === 'ok' ? `ok, ${last.changed} changed` : `${last.result}${last.error ? `: ${last.error}` : ''}`;
}

async function createFlag(flag: string): Promise<void> {
  try {
    await mkdir(dirname(flag), { recursive: true, mode: 0o1750 });
    await handToXroad(dirname(flag));
    await writeFile(flag, `paused by ${process.env.SUDO_USER ?? process.env.USER ?? 'unknown'} at ${new Date().toISOString()}\n`, { flag: 'wx' }).catch(
      (err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      },
    );
    await handToXroad(flag);
  } catch (cause) {
    throw new LocalIoError(`cannot create the flag file ${flag}`, {
      subject: flag,
      cause,
      hint: `run as the xroad user (sudo -u xroad), or create ${dirname(flag)} for it`,
    });
  }
}

/** When root creates the flag or its directory, give them to xroad so the service user can manage them too. */
async function handToXroad(path: string): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const { uidByName, gidByName } = (await loadLocalIds()).mapping;
  const uid = uidByName.get('xroad');
  if (uid === undefined) return;
  await chown(path, uid, gidByName.get('xroad') ?? -1).catch(() => undefined);
}
