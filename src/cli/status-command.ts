/**
 * `xroad-sync status`: what the last pass did, whether sync is paused and
 * whether a daemon runs. `--check` turns it into a monitoring probe with
 * Nagios exit codes (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) and one line.
 */
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { isAlive } from '../state/lock.js';
import { readStatus, type StoredStatus } from '../state/status.js';

export interface StatusOptions {
  stateDir: string;
  flagFile: string;
  json?: boolean;
  check?: boolean;
  maxAge?: string;
  failIfPaused?: boolean;
}

export interface StatusReport extends StoredStatus {
  paused: boolean;
  pausedSince: string | null;
}

export async function collectStatus(stateDir: string, flagFile: string): Promise<StatusReport> {
  const stored = await readStatus(resolve(stateDir));
  const flag = await stat(resolve(flagFile)).catch(() => null);
  const daemonPid = stored.daemonPid !== null && isAlive(stored.daemonPid) ? stored.daemonPid : null;
  return { paused: flag !== null, pausedSince: flag ? flag.mtime.toISOString() : null, ...stored, daemonPid };
}

export async function statusCommand(opts: StatusOptions): Promise<number> {
  const report = await collectStatus(opts.stateDir, opts.flagFile);
  if (opts.check) {
    const { code, line } = checkStatus(report, { maxAgeS: Number(opts.maxAge ?? 300), failIfPaused: opts.failIfPaused === true });
    process.stdout.write(line + '\n');
    return code;
  }
  process.stdout.write(opts.json ? JSON.stringify(report) + '\n' : describe(report));
  return 0;
}

export function checkStatus(report: StatusReport, opts: { maxAgeS: number; failIfPaused: boolean; now?: Date }): { code: number; line: string } {
  const now = (opts.now ?? new Date()).getTime();
  const paused = report.paused ? `; paused since ${report.pausedSince}` : '';
  if (report.paused && opts.failIfPaused) return { code: 1, line: `XROAD-SYNC WARNING - sync paused since ${report.pausedSince}` };
  if (report.lastPass?.result === 'failed') {
    return { code: 2, line: `XROAD-SYNC CRITICAL - last pass failed at ${report.lastPass.finishedAt}: ${report.lastPass.error}${paused}` };
  }
  if (report.lastSuccessAt === null) return { code: 2, line: `XROAD-SYNC CRITICAL - no successful pass recorded${paused}` };
  const ageS = Math.round((now - Date.parse(report.lastSuccessAt)) / 1000);
  if (ageS > opts.maxAgeS && !report.paused) {
    return { code: 2, line: `XROAD-SYNC CRITICAL - last success ${ageS} s ago (limit ${opts.maxAgeS} s)` };
  }
  return { code: 0, line: `XROAD-SYNC OK - last success ${ageS} s ago${paused}` };
}

function describe(r: StatusReport): string {
  const lines = [
    `paused:        ${r.paused ? `yes, since ${r.pausedSince}` : 'no'}`,
    `last pass:     ${r.lastPass ? `${r.lastPass.result} at ${r.lastPass.finishedAt}, ${r.lastPass.changed} changed, ${r.lastPass.bytesReceived} bytes received` : 'none recorded'}`,
  ];
  if (r.lastPass?.error) lines.push(`last error:    ${r.lastPass.error}`);
  lines.push(`last success:  ${r.lastSuccessAt ?? 'never'}`, `daemon:        ${r.daemonPid ? `running (pid ${r.daemonPid})` : 'not running'}`);
  return lines.join('\n') + '\n';
}
