/**
 * The serverconf half of pause, resume and check. Each wraps the command's
 * config half: both halves run and are reported even when one fails, and the
 * exit code is the first failure's. `resume --now` ends with one line that
 * says whether the node is ready (to upgrade, when it resumed both halves:
 * IG-XLB 1.3's order) or why not; `resume --serverconf-only` resumes and
 * checks the replica alone, the current guide's step before the upgrade.
 * check's replica half is in check-command.ts.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError, describeError, ExitCode } from '../errors.js';
import { pauseReplayAsAsked, resumeReplayAsAsked } from '../replica/as-asked.js';
import type { Replica } from '../replica/replica.js';
import { DEFAULTS } from '../settings/pass-settings.js';
import {
  describeEndpoint,
  type RawReplicaOptions,
  REPLICA_DEFAULTS,
  type ReplicaSettings,
  replicaEnabled,
  resolveReplicaSettings,
} from '../settings/replica-settings.js';
import { durationOption } from '../util/duration.js';
import { notice, printLine, reportError, warn } from '../util/output.js';

export type Opts = RawReplicaOptions & { stateDir?: string; flagFile?: string; now?: boolean; readyTimeout?: string; serverconfOnly?: boolean };

/** The replay resumed, but its pause ask is still noted: status --check will alert on it. */
function warnUnforgotten(stateDir: string, err: unknown): void {
  warn(`cannot forget the serverconf pause in ${stateDir} (status --check will say replay runs against the ask): ${describeError(err)}`);
}

/** null = the replica is not managed by this command; a ConfigError is printed and returned as a code. */
export function replicaSettingsFor(opts: Opts): ReplicaSettings | null | number {
  try {
    return replicaEnabled(opts) ? resolveReplicaSettings(opts) : null;
  } catch (err) {
    return reportError(err);
  }
}

async function openReplica(settings: ReplicaSettings): Promise<Replica> {
  const { Replica } = await import('../replica/replica.js');
  return Replica.connect(settings);
}

export async function pauseWithReplica(opts: Opts, configHalf: () => Promise<number>): Promise<number> {
  const settings = replicaSettingsFor(opts);
  if (settings === null) return configHalf();
  // The replica half is tried and reported whatever happened to the flag.
  const configCode = await configHalf().catch((err: unknown) => {
    printLine(`Sync paused: failed, not paused (${resolve(opts.flagFile ?? DEFAULTS.flagFile)})`);
    return reportError(err);
  });
  if (typeof settings === 'number') return configCode || settings;
  const stateDir = opts.stateDir ?? DEFAULTS.stateDir;
  let replica: Replica | undefined;
  try {
    replica = await openReplica(settings);
    const { before, after, unrecorded } = await pauseReplayAsAsked(replica, stateDir);
    printLine(`serverconf replay: ${before} => ${after} (${describeEndpoint(settings)}, PostgreSQL ${replica.server})`);
    const recordCode = unrecorded ? reportError(unrecorded) : ExitCode.OK;
    return configCode || recordCode;
  } catch (err) {
    printLine(`serverconf replay: not paused (${describeEndpoint(settings)})`);
    const replicaCode = reportError(err);
    return configCode || replicaCode;
  } finally {
    await replica?.close();
  }
}

export async function resumeWithReplica(opts: Opts, configHalf: () => Promise<number>): Promise<number> {
  if (opts.serverconfOnly) return resumeReplicaOnly(opts);
  const settings = replicaSettingsFor(opts);
  if (settings === null) return configHalf();
  if (typeof settings === 'number') return (await configHalf()) || settings;
  // A usage error stops the command before either half changes anything.
  const timeoutMs = durationOption(opts.readyTimeout ?? REPLICA_DEFAULTS.readyTimeoutS, '--ready-timeout', { minMs: 0, maxMs: 86_400_000 });
  const stateDir = opts.stateDir ?? DEFAULTS.stateDir;
  const notReady: string[] = [];
  let replicaCode: number = ExitCode.OK;
  let replica: Replica | undefined;
  // Both halves resumed here: the old guide's order (the upgrade follows). Replay resumed earlier
  // (resume --serverconf-only, the current guide's order): the upgrade is done, the node is ready to restart.
  let ready = 'node ready to upgrade';
  try {
    replica = await openReplica(settings);
    const { before, after, unforgotten } = await resumeReplayAsAsked(replica, stateDir);
    if (unforgotten) warnUnforgotten(stateDir, unforgotten);
    if (before === 'running') ready = 'node ready';
    printLine(`serverconf replay: ${before} => ${after} (${describeEndpoint(settings)}, PostgreSQL ${replica.server})`);
  } catch (err) {
    printLine(`serverconf replay: not resumed (${describeEndpoint(settings)})`);
    replicaCode = reportError(err);
    notReady.push(`serverconf replay not resumed: ${err instanceof Error ? err.message : String(err)}`);
    await replica?.close();
    replica = undefined;
  }
  try {
    const configCode = await configHalf();
    if (!opts.now) return configCode || replicaCode;
    if (configCode !== ExitCode.OK) notReady.unshift(`the config pass failed (exit ${configCode})`);
    let caughtUp = '';
    if (replica) {
      // Not ready anyway when the pass failed: one look at the replica for the report, no wait.
      const waited = await waitWithProgress(replica, configCode === ExitCode.OK ? timeoutMs : 0);
      if (waited.ready) caughtUp = waited.reason;
      else notReady.push(waited.reason);
    }
    if (notReady.length === 0) {
      printLine(`${ready}: config synced, ${caughtUp}`);
      return ExitCode.OK;
    }
    printLine(`${ready.replace('ready', 'NOT ready')}: ${notReady.join('; ')}`);
    return configCode || replicaCode || ExitCode.REPLICA_UNAVAILABLE;
  } finally {
    await replica?.close();
  }
}

/**
 * The current guide's step before the package upgrade (IG-XLB 1.29 §7.2.3): resume replay and
 * check it caught up, while the config sync stays paused until after the upgrade. The last line
 * says whether the replica is ready for the upgrade, or why not.
 */
async function resumeReplicaOnly(opts: Opts): Promise<number> {
  if (opts.now) {
    throw new ConfigError('--serverconf-only leaves the config sync paused; --now would run a pass', {
      hint: 'upgrade the packages after "serverconf replica ready to upgrade", then run xroad-sync resume --now',
    });
  }
  if (opts.serverconf === false) throw new ConfigError('--serverconf-only and --no-serverconf contradict each other');
  const settings = resolveReplicaSettings({ ...opts, serverconf: true });
  const timeoutMs = durationOption(opts.readyTimeout ?? String(REPLICA_DEFAULTS.readyTimeoutS), '--ready-timeout', { minMs: 0, maxMs: 86_400_000 });
  const stateDir = opts.stateDir ?? DEFAULTS.stateDir;
  const flagFile = resolve(opts.flagFile ?? DEFAULTS.flagFile);
  let replica: Replica | undefined;
  let resumed = false;
  try {
    replica = await openReplica(settings);
    const { before, after, unforgotten } = await resumeReplayAsAsked(replica, stateDir);
    if (unforgotten) warnUnforgotten(stateDir, unforgotten);
    printLine(`serverconf replay: ${before} => ${after} (${describeEndpoint(settings)}, PostgreSQL ${replica.server})`);
    resumed = true;
    const configPaused = existsSync(flagFile);
    printLine(`Sync paused: ${configPaused} (${flagFile}, left as it is)`);
    const waited = await waitWithProgress(replica, timeoutMs);
    if (!waited.ready) {
      printLine(`serverconf replica NOT ready to upgrade: ${waited.reason}`);
      return ExitCode.REPLICA_UNAVAILABLE;
    }
    const next = configPaused ? 'config sync paused until xroad-sync resume --now after the upgrade' : `config sync NOT paused (no ${flagFile})`;
    printLine(`serverconf replica ready to upgrade: ${waited.reason.replace(/^serverconf replica /, '')}; ${next}`);
    return ExitCode.OK;
  } catch (err) {
    if (!resumed) printLine(`serverconf replay: not resumed (${describeEndpoint(settings)})`);
    printLine(`serverconf replica NOT ready to upgrade: ${err instanceof Error ? err.message : String(err)}`);
    return reportError(err);
  } finally {
    await replica?.close();
  }
}

/** Waits for the replica, a progress line on stderr when the reason changes or every 5 s. */
async function waitWithProgress(replica: Replica, timeoutMs: number) {
  const { waitCaughtUp } = await import('../replica/replica.js');
  const started = Date.now();
  let last = '';
  let lastAt = 0;
  return waitCaughtUp(replica, {
    timeoutMs,
    onProgress: (_status, why) => {
      if (why.ready || timeoutMs === 0) return;
      const now = Date.now();
      if (why.reason === last && now - lastAt < 5_000) return;
      (last = why.reason), (lastAt = now);
      const left = Math.max(0, Math.round((timeoutMs - (now - started)) / 1000));
      notice(`waiting for the serverconf replica (${left} s left): ${why.reason}`);
    },
  });
}
