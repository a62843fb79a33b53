/**
 * `xroad-sync status`: what the last pass did, whether sync is paused and
 * whether a daemon runs; with the serverconf replica, its state joins the
 * text, the JSON (key "serverconf") and the --check line. `--check` is a
 * monitoring probe: Nagios exit codes and one line. The verdicts are health/'s.
 */
import { checkReplica, collectReplica, combineChecks, describeReplica, replicaLimits } from '../health/replica.js';
import { checkStatus, collectStatus, describeStatus, freeBytes, maxAgeSeconds, unknownIfUnreadable } from '../health/status.js';
import { agePerfdata, checkLine, replicaPerfdata } from '../report/nagios.js';
import { type RawReplicaOptions, replicaEnabled, resolveReplicaSettings } from '../settings/replica-settings.js';
import { printLine, printReport } from '../util/output.js';

export interface StatusOptions extends RawReplicaOptions {
  stateDir: string;
  flagFile: string;
  json?: boolean;
  check?: boolean;
  maxAge?: string;
  failIfPaused?: boolean;
  maxReplayLag?: string;
  warnReplayLag?: string;
  maxReplayPause?: string;
}

function printCheck({ code, line }: { code: number; line: string }, perfdata: readonly string[] = []): number {
  printLine(checkLine(line, perfdata));
  return code;
}

async function configStatus(opts: StatusOptions): Promise<number> {
  const maxAgeS = maxAgeSeconds(opts.maxAge);
  if (opts.check) {
    const report = await collectStatus(opts.stateDir, opts.flagFile).catch(unknownIfUnreadable);
    if (!('paused' in report)) return printCheck(report);
    report.stateDirFreeBytes = await freeBytes(opts.stateDir);
    const now = new Date();
    const verdict = checkStatus(report, { maxAgeS, failIfPaused: opts.failIfPaused === true, now });
    return printCheck(verdict, [agePerfdata(report.lastSuccessAt, maxAgeS, now)]);
  }
  const report = await collectStatus(opts.stateDir, opts.flagFile);
  printReport(opts.json ? JSON.stringify(report) + '\n' : describeStatus(report));
  return 0;
}

export async function statusCommand(opts: StatusOptions): Promise<number> {
  // Usage errors throw to main, the one exit path.
  const enabled = replicaEnabled(opts);
  const limits = replicaLimits(opts);
  if (!enabled) return configStatus(opts);
  resolveReplicaSettings(opts);
  if (opts.check) {
    const maxAgeS = maxAgeSeconds(opts.maxAge);
    const [config, replica] = await Promise.all([collectStatus(opts.stateDir, opts.flagFile).catch(unknownIfUnreadable), collectReplica(opts)]);
    // Without the flag's state the replica's verdict (paused with config sync or not) is unknown too.
    if (!('paused' in config)) return printCheck(config);
    config.stateDirFreeBytes = await freeBytes(opts.stateDir);
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
  const code = await configStatus(opts);
  printReport(describeReplica(replica));
  return code;
}
