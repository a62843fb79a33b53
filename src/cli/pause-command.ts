/**
 * pause / resume: the guide's flag file, made a command that means what it
 * says when it returns. `pause` creates /var/tmp/xroad/sync-disabled (and its
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
import { chown, mkdir, unlink, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { DEFAULTS, lockWait } from '../settings/pass-settings.js';
import { LocalIoError } from '../errors.js';
import { loadLocalIds } from '../local/ids.js';
import { daemonLockPath, liveHolder, passLockPath, waitUntilFree } from '../state/lock.js';
import { readStatus, type LastPass } from '../state/status.js';
import { formatDuration } from '../util/duration.js';
import { waitingLine } from './sync-command.js';

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
  resume(ctx: PauseContext): Promise<string[]>;
}

const fileSync: PauseHalf = { pause: pauseFileSync, resume: resumeFileSync };
const HALVES: readonly PauseHalf[] = [fileSync];

function contextOf(opts: PauseOptions): PauseContext {
  return {
    flagFile: resolve(opts.flagFile ?? DEFAULTS.flagFile),
    stateDir: resolve(opts.stateDir ?? DEFAULTS.stateDir),
    waitMs: lockWait(opts.wait),
    notice: (line) => process.stderr.write(`xroad-sync: ${line}\n`),
  };
}

export async function pauseCommand(opts: PauseOptions): Promise<number> {
  const ctx = contextOf(opts);
  for (const half of HALVES) print(await half.pause(ctx));
  return 0;
}

export async function resumeCommand(opts: PauseOptions & { now?: boolean } & Record<string, unknown>): Promise<number> {
  const ctx = contextOf(opts);
  for (const half of HALVES) print(await half.resume(ctx));
  if (!opts.now) return 0;
  const { syncCommand } = await import('./sync-command.js');
  return syncCommand(opts);
}

function print(lines: readonly string[]): void {
  for (const line of lines) process.stdout.write(line + '\n');
}

async function pauseFileSync(ctx: PauseContext): Promise<string[]> {
  const was = existsSync(ctx.flagFile);
  if (!was) await createFlag(ctx.flagFile);
  const lines = [`Sync paused: ${was} => true (${ctx.flagFile})`];
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
  return lines;
}

async function resumeFileSync(ctx: PauseContext): Promise<string[]> {
  const was = existsSync(ctx.flagFile);
  try {
    await unlink(ctx.flagFile);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new LocalIoError(`cannot remove the flag file ${ctx.flagFile}`, { subject: ctx.flagFile, cause, hint: 'run as the user that owns it (xroad), or with sudo' });
    }
  }
  const lines = [`Sync paused: ${was} => false (${ctx.flagFile})`];
  const daemon = await liveHolder(daemonLockPath(ctx.stateDir));
  if (was && daemon) lines.push(await daemonPassAfter(ctx, daemon.pid, Date.now()));
  return lines;
}

/** The daemon runs a pass when the flag goes: wait (bounded) for its record and say how it went. */
async function daemonPassAfter(ctx: PauseContext, pid: number, since: number): Promise<string> {
  const deadline = since + Math.min(ctx.waitMs, 30_000);
  while (Date.now() < deadline) {
    const last = (await readStatus(ctx.stateDir)).lastPass;
    if (last && Date.parse(last.startedAt) >= since - 1000 && last.result !== 'skipped') {
      return `the daemon (pid ${pid}) ran a pass ${formatDuration(Date.parse(last.finishedAt) - since)} after resume: ${describeLast(last)}`;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return `the daemon (pid ${pid}) has not finished a pass yet; it runs one at once (xroad-sync status shows it)`;
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
    throw new LocalIoError(`cannot create the flag file ${flag}`, { subject: flag, cause, hint: `run as the xroad user (sudo -u xroad), or create ${dirname(flag)} for it` });
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
