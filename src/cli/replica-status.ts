/**
 * `status` with the serverconf replica: its state joins the text, the JSON
 * (key "serverconf") and the --check line. The check's bands: CRITICAL when
 * replay runs although pause --serverconf asked for it paused (the standby
 * restarted: PostgreSQL forgets a pause), when replay is paused while config
 * sync is not (a forgotten resume), when a
 * pause xroad-sync made outlived --max-replay-pause, when replay lags more
 * than --max-replay-lag, or the replica cannot be read or is no standby;
 * WARNING above --warn-replay-lag, when the WAL receiver is not streaming,
 * and (with --fail-if-paused) while replay is paused.
 */
import { describeError, exitCodeOf } from '../errors.js';
import { agePerfdata, replicaPerfdata } from '../report/nagios.js';
import { durationOption } from '../util/duration.js';
import { replayNotAsAsked } from '../replica/as-asked.js';
import { replayPausedSince } from '../replica/paused-marker.js';
import type { ReplicaStatus } from '../replica/replica.js';
import { describeEndpoint, replicaEnabled, resolveReplicaSettings, type RawReplicaOptions } from '../settings/replica-settings.js';
import { checkStatus, collectStatus, printCheck, statusCommand, unknownIfUnreadable, type StatusOptions } from './status-command.js';
import { printLine, printReport } from '../util/output.js';

export interface ReplicaStatusOptions extends StatusOptions, RawReplicaOptions {
  maxReplayLag?: string;
  warnReplayLag?: string;
  maxReplayPause?: string;
}

export type ReplicaReport =
  | ({ endpoint: string; error: null; pausedSince: string | null; pauseAskedAt?: string | null } & ReplicaStatus)
  | { endpoint: string; error: string; exitCode: number };

async function collectReplica(opts: ReplicaStatusOptions): Promise<ReplicaReport> {
  const settings = resolveReplicaSettings(opts);
  const endpoint = describeEndpoint(settings);
  const { Replica } = await import('../replica/replica.js');
  let replica;
  try {
    replica = await Replica.connect(settings);
    const status = await replica.status();
    const paused = status.replay === 'paused' || status.replay === 'pause requested';
    const pauseAskedAt = await replayPausedSince(opts.stateDir);
    return { endpoint, error: null, ...status, pausedSince: paused ? pauseAskedAt : null, pauseAskedAt };
  } catch (err) {
    return { endpoint, error: describeError(err), exitCode: exitCodeOf(err) };
  } finally {
    await replica?.close();
  }
}

/** A --check limit in seconds, through the one duration parser (plain seconds or s/m/h). */
const seconds = (value: string | undefined, flag: string, fallback: number): number =>
  durationOption(value ?? String(fallback), flag, { minMs: 0, maxMs: 365 * 86_400_000 }) / 1000;

export interface ReplicaLimits {
  maxLagS: number;
  warnLagS: number;
  maxPauseS: number;
  failIfPaused: boolean;
}

const CODE_NAME = ['OK', 'WARNING', 'CRITICAL', 'UNKNOWN'] as const;

/** One verdict on the replica: 0 OK, 1 WARNING, 2 CRITICAL, and its message. */
export function checkReplica(r: ReplicaReport, configPaused: boolean, limits: ReplicaLimits, now = new Date()): { code: number; text: string } {
  if (r.error !== null) return { code: 2, text: `serverconf replica unreadable: ${r.error}` };
  if (!r.inRecovery) return { code: 2, text: 'serverconf database is not a standby (not in recovery): was it promoted?' };
  const notAsAsked = replayNotAsAsked(r.replay, r.pauseAskedAt ?? null);
  if (notAsAsked) return { code: 2, text: notAsAsked };
  if (r.replay !== 'running') {
    const ageS = r.pausedSince ? Math.round((now.getTime() - Date.parse(r.pausedSince)) / 1000) : null;
    const since = r.pausedSince ? `since ${r.pausedSince}` : 'since an unknown time (paused outside xroad-sync; PostgreSQL does not record when)';
    if (!configPaused) return { code: 2, text: `serverconf replay ${r.replay} ${since} while config sync is not paused: forgotten resume? run xroad-sync resume --serverconf` };
    if (ageS !== null && ageS > limits.maxPauseS) return { code: 2, text: `serverconf replay paused for ${ageS} s (limit ${limits.maxPauseS} s)` };
    return { code: limits.failIfPaused ? 1 : 0, text: `serverconf replay ${r.replay} ${since}` };
  }
  if (r.streaming === null) return { code: 1, text: 'serverconf WAL receiver not visible (grant pg_monitor to the role)' };
  const lag = `serverconf replay lag ${r.lagSeconds ?? '?'} s, ${r.lagBytes ?? '?'} bytes`;
  if (r.lagSeconds !== null && r.lagSeconds > limits.maxLagS) return { code: 2, text: `${lag} (limit ${limits.maxLagS} s)` };
  if (!r.streaming) return { code: 1, text: `serverconf WAL receiver not streaming (${r.receiver}); ${lag}` };
  if (r.lagSeconds !== null && r.lagSeconds > limits.warnLagS) return { code: 1, text: `${lag} (warning above ${limits.warnLagS} s)` };
  return { code: 0, text: `${lag}, streaming` };
}

/** The config verdict's line and the replica's, worst first, under one Nagios prefix. */
export function combineChecks(config: { code: number; line: string }, replica: { code: number; text: string }): { code: number; line: string } {
  const configText = config.line.replace(/^XROAD-SYNC \w+ - /, '');
  const code = Math.max(config.code, replica.code);
  const parts = replica.code > config.code ? [replica.text, configText] : [configText, replica.text];
  return { code, line: `XROAD-SYNC ${CODE_NAME[code]} - ${parts.join('; ')}` };
}

function describeReplica(r: ReplicaReport): string {
  if (r.error !== null) return `serverconf:    ${r.endpoint}: ${r.error}\n`;
  const lines = [
    `serverconf:    ${r.endpoint}, PostgreSQL ${r.server}, ${r.inRecovery ? 'in recovery (standby)' : 'NOT in recovery'}`,
    `  replay:      ${r.replay ?? '-'}${r.replay && r.replay !== 'running' ? (r.pausedSince ? `, since ${r.pausedSince}` : ', since unknown (PostgreSQL does not record when)') : ''}${replayNotAsAsked(r.replay, r.pauseAskedAt ?? null) ? `, NOT as asked: paused by pause --serverconf at ${r.pauseAskedAt}` : ''}`,
    `  receiver:    ${r.streaming === null ? 'unknown (the role needs pg_monitor)' : r.receiver}`,
    `  received:    ${r.receiveLsn ?? '-'}`,
    `  replayed:    ${r.replayLsn ?? '-'}${r.lastReplayAt ? ` (last transaction ${r.lastReplayAt})` : ''}`,
    `  lag:         ${r.lagBytes ?? '?'} bytes, ${r.lagSeconds ?? '?'} s`,
  ];
  return lines.join('\n') + '\n';
}

export async function statusWithReplica(opts: ReplicaStatusOptions): Promise<number> {
  // Usage errors throw to main, the one exit path.
  const enabled = replicaEnabled(opts);
  const limits: ReplicaLimits = {
    maxLagS: seconds(opts.maxReplayLag, '--max-replay-lag', 300),
    warnLagS: seconds(opts.warnReplayLag, '--warn-replay-lag', 60),
    maxPauseS: seconds(opts.maxReplayPause, '--max-replay-pause', 7200),
    failIfPaused: opts.failIfPaused === true,
  };
  if (enabled) resolveReplicaSettings(opts);
  if (!enabled) return statusCommand(opts);
  if (opts.check) {
    const [config, replica] = await Promise.all([collectStatus(opts.stateDir, opts.flagFile).catch(unknownIfUnreadable), collectReplica(opts)]);
    // Without the flag's state the replica's verdict (paused with config sync or not) is unknown too.
    if (!('paused' in config)) return printCheck(config);
    const maxAgeS = seconds(opts.maxAge, '--max-age', 300);
    const now = new Date();
    const configCheck = checkStatus(config, { maxAgeS, failIfPaused: opts.failIfPaused === true, now });
    const perfdata = [agePerfdata(config.lastSuccessAt, maxAgeS, now), ...replicaPerfdata(replica.error === null ? replica : null, limits)];
    return printCheck(combineChecks(configCheck, checkReplica(replica, config.paused, limits, now)), perfdata);
  }
  const [config, replica] = await Promise.all([collectStatus(opts.stateDir, opts.flagFile), collectReplica(opts)]);
  if (opts.json) {
    printLine(JSON.stringify({ ...config, serverconf: replica }));
    return 0;
  }
  const code = await statusCommand(opts);
  printReport(describeReplica(replica));
  return code;
}
