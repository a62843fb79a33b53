/**
 * The serverconf replica's health: its state for status's text and JSON
 * (key "serverconf"), and its --check verdict. The check's bands: CRITICAL when
 * replay runs although pause --serverconf asked for it paused (the standby
 * restarted: PostgreSQL forgets a pause), when replay is paused while config
 * sync is not (a forgotten resume), when a
 * pause xroad-sync made outlived --max-replay-pause, when replay lags more
 * than --max-replay-lag, or the replica cannot be read or is no standby;
 * WARNING above --warn-replay-lag, when the WAL receiver is not streaming,
 * and (with --fail-if-paused) while replay is paused.
 */
import { describeError, exitCodeOf } from '../errors.js';
import { replayNotAsAsked } from '../replica/as-asked.js';
import { replayPausedSince } from '../replica/paused-marker.js';
import type { Replica, ReplicaStatus } from '../replica/replica.js';
import { describeEndpoint, type RawReplicaOptions, resolveReplicaSettings } from '../settings/replica-settings.js';
import { durationOption } from '../util/duration.js';
import { CHECK_DEFAULTS } from './limits.js';

export type ReplicaReport =
  | ({ endpoint: string; error: null; pausedSince: string | null; pauseAskedAt?: string | null } & ReplicaStatus)
  | { endpoint: string; error: string; exitCode: number };

/** The replica's state, or why it cannot be read (never throws: the config half is still reported). */
export async function collectReplica(opts: RawReplicaOptions & { stateDir: string }): Promise<ReplicaReport> {
  const settings = resolveReplicaSettings(opts);
  const endpoint = describeEndpoint(settings);
  const { Replica: ReplicaClient } = await import('../replica/replica.js');
  let replica: Replica | undefined;
  try {
    replica = await ReplicaClient.connect(settings);
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

export interface ReplicaLimits {
  maxLagS: number;
  warnLagS: number;
  maxPauseS: number;
  failIfPaused: boolean;
}

/** --check's replica limits from the flags, each through the one duration parser (plain seconds or s/m/h). */
export function replicaLimits(opts: { maxReplayLag?: string; warnReplayLag?: string; maxReplayPause?: string; failIfPaused?: boolean }): ReplicaLimits {
  return {
    maxLagS: limitSeconds(opts.maxReplayLag, '--max-replay-lag', CHECK_DEFAULTS.maxReplayLagS),
    warnLagS: limitSeconds(opts.warnReplayLag, '--warn-replay-lag', CHECK_DEFAULTS.warnReplayLagS),
    maxPauseS: limitSeconds(opts.maxReplayPause, '--max-replay-pause', CHECK_DEFAULTS.maxReplayPauseS),
    failIfPaused: opts.failIfPaused === true,
  };
}

/** A --check limit in seconds, through the one duration parser (plain seconds or s/m/h). */
function limitSeconds(value: string | undefined, flag: string, fallback: number): number {
  return durationOption(value ?? String(fallback), flag, { minMs: 0, maxMs: 365 * 86_400_000 }) / 1000;
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
    if (!configPaused)
      return { code: 2, text: `serverconf replay ${r.replay} ${since} while config sync is not paused: forgotten resume? run xroad-sync resume --serverconf` };
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

/** The replica's lines for status's text. */
export function describeReplica(r: ReplicaReport): string {
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
