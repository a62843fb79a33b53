/**
 * The slave's health: what the last pass did, whether sync is paused,
 * whether a daemon runs, and the monitoring verdict on it with Nagios codes
 * (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) and one line.
 */
import { stat, statfs } from 'node:fs/promises';
import { resolve } from 'node:path';
import { type LeftJournal, leftJournal } from '../commit/journal.js';
import { describeError, errnoOf } from '../errors.js';
import { CLOCK_SLACK_MS, escapeCheckText } from '../report/nagios.js';
import { daemonLockPath, liveHolder, passLockPath } from '../state/lock.js';
import { StateUnreadableError, stateUnreadable } from '../state/readable.js';
import { readStatusStrictly, type StoredStatus } from '../state/status.js';
import { durationOption } from '../util/duration.js';
import { STATE_FILES } from '../util/state-files.js';
import { CHECK_DEFAULTS } from './limits.js';

export interface StatusReport extends StoredStatus {
  paused: boolean;
  /** --check only: bytes free to this user on the state dir's filesystem (null: unknown). A full one records no failure: status.json stays on the last success. */
  stateDirFreeBytes?: number | null;
  pausedSince: string | null;
  /** A commit interrupted by a kill or power loss: the target is half-applied until a pass (or pause) completes it. */
  interruptedCommit: Omit<LeftJournal, 'pid'> | null;
}

export async function collectStatus(stateDir: string, flagFile: string): Promise<StatusReport> {
  const stored = await readStatusStrictly(resolve(stateDir));
  const flag = await stat(resolve(flagFile)).catch(async (err: unknown) => {
    if (errnoOf(err) === 'ENOENT') return null;
    throw await stateUnreadable(resolve(flagFile), err); // paused or not: unknown
  });
  // The daemon's lock, not status.json, says whether one runs: a lock cannot outlive its process.
  const daemonPid = (await liveHolder(daemonLockPath(resolve(stateDir))))?.pid ?? null;
  return {
    paused: flag !== null,
    pausedSince: flag ? flag.mtime.toISOString() : null,
    ...stored,
    daemonPid,
    interruptedCommit: await interruptedCommit(resolve(stateDir)),
  };
}

/** Bytes free to this user on the filesystem of `dir`; null when it cannot be told. */
export async function freeBytes(dir: string): Promise<number | null> {
  const fs = await statfs(resolve(dir)).catch(() => null);
  return fs === null ? null : fs.bavail * fs.bsize;
}

/** Below this a pass cannot write its lock, journal or status.json (a journal of a large commit takes more). */
const STATE_DIR_FULL_BYTES = 64 * 1024;

/** The journal left by a commit that is not running now (its pass no longer holds the lock). */
async function interruptedCommit(stateDir: string): Promise<StatusReport['interruptedCommit']> {
  const left = leftJournal(stateDir);
  if (left === null) return null;
  if (left.unreadable !== undefined) throw await stateUnreadable(left.path, left.unreadable); // half-applied or not: unknown
  const holder = await liveHolder(passLockPath(stateDir));
  if (holder !== undefined && holder.pid === left.pid) return null; // committing right now
  const { pid: _pid, unreadable: _unreadable, uid: _uid, ...journal } = left;
  return journal;
}

/** --max-age in seconds: at least 1 s, at most a year. */
export function maxAgeSeconds(value: string | undefined): number {
  return durationOption(value ?? String(CHECK_DEFAULTS.maxAgeS), '--max-age', { minMs: 1000, maxMs: 365 * 86_400_000 }) / 1000;
}

/** --check's verdict when the agent may not read the state: UNKNOWN, not a claim about the sync. */
export function unknownIfUnreadable(err: unknown): { code: number; line: string } {
  if (!(err instanceof StateUnreadableError)) throw err;
  return { code: 3, line: `XROAD-SYNC UNKNOWN - ${describeError(err)}` };
}

export function checkStatus(report: StatusReport, opts: { maxAgeS: number; failIfPaused: boolean; now?: Date }): { code: number; line: string } {
  const now = (opts.now ?? new Date()).getTime();
  const paused = report.paused ? `; paused since ${report.pausedSince}` : '';
  const interrupted = report.interruptedCommit;
  if (interrupted) {
    return {
      code: 2,
      line: `XROAD-SYNC CRITICAL - an interrupted commit of ${interrupted.createdAt} left ${interrupted.target ?? 'the target'} half-applied (${interrupted.path}); xroad-sync pause or sync completes it, also while paused${paused}`,
    };
  }
  const free = report.stateDirFreeBytes;
  if (free !== undefined && free !== null && free < STATE_DIR_FULL_BYTES) {
    return {
      code: 2,
      line: `XROAD-SYNC CRITICAL - the state directory's filesystem is full (${free} bytes free): passes cannot take their lock or record a failure, so the last success shown may be stale${paused}`,
    };
  }
  if (report.paused && opts.failIfPaused) return { code: 1, line: `XROAD-SYNC WARNING - sync paused since ${report.pausedSince}` };
  if (report.lastPass?.result === 'failed') {
    return { code: 2, line: `XROAD-SYNC CRITICAL - last pass failed at ${report.lastPass.finishedAt}: ${report.lastPass.error}${paused}` };
  }
  if (report.lastSuccessAt === null) return { code: 2, line: `XROAD-SYNC CRITICAL - no successful pass recorded${paused}` };
  const ageMs = now - Date.parse(report.lastSuccessAt);
  if (!Number.isFinite(ageMs))
    return { code: 2, line: `XROAD-SYNC CRITICAL - unreadable last success time "${report.lastSuccessAt}" in ${STATE_FILES.status.name}` };
  // Paused (an upgrade may last hours), the age does not count: a clock stepped back meanwhile is no alarm either.
  if (ageMs < -CLOCK_SLACK_MS && report.paused) {
    return {
      code: 0,
      line: `XROAD-SYNC OK - last success ${report.lastSuccessAt} is ${Math.round(-ageMs / 1000)} s in the future (the clock was stepped back)${paused}`,
    };
  }
  if (ageMs < -CLOCK_SLACK_MS) {
    return {
      code: 2,
      line: `XROAD-SYNC CRITICAL - last success ${report.lastSuccessAt} is ${Math.round(-ageMs / 1000)} s in the future: the clock was stepped back, the age of the last sync is unknown${paused}`,
    };
  }
  const ageS = Math.max(0, Math.round(ageMs / 1000));
  if (ageS > opts.maxAgeS && !report.paused) {
    return { code: 2, line: `XROAD-SYNC CRITICAL - last success ${ageS} s ago (limit ${opts.maxAgeS} s)` };
  }
  return { code: 0, line: `XROAD-SYNC OK - last success ${ageS} s ago${paused}` };
}

/** The status report as text, one aligned line per fact. */
export function describeStatus(r: StatusReport): string {
  const lines = [
    `paused:        ${r.paused ? `yes, since ${r.pausedSince}` : 'no'}`,
    `last pass:     ${r.lastPass ? `${r.lastPass.result} at ${r.lastPass.finishedAt}, ${r.lastPass.changed} changed, ${r.lastPass.bytesReceived} bytes received` : 'none recorded'}`,
  ];
  if (r.lastPass?.error) lines.push(`last error:    ${escapeCheckText(r.lastPass.error)}`);
  if (r.interruptedCommit)
    lines.push(
      `interrupted:   a commit of ${r.interruptedCommit.createdAt} is half-applied (${escapeCheckText(r.interruptedCommit.path)}); xroad-sync pause or sync completes it`,
    );
  lines.push(
    `last success:  ${r.lastSuccessAt ?? 'never'}`,
    `master state:  ${r.digest ?? 'unknown'} (xroad-sync digest on the master gives the same when this slave mirrors it)`,
    `daemon:        ${r.daemonPid ? `running (pid ${r.daemonPid})` : 'not running'}`,
  );
  return lines.join('\n') + '\n';
}
