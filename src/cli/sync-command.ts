/** `xroad-sync sync`: one pass, reported to slave-sync.log, stderr, the JSON record and status.json. */
import { resolvePassSettings, type PassSettings, type RawPassOptions } from '../config.js';
import { describeError, isLockWait } from '../errors.js';
import { runPass, type PassResult, type SourceProvider } from '../pass.js';
import { connectPerPass } from '../remote/provider.js';
import { createLogger, logPass, passRecord } from '../report/logger.js';
import { RsyncLogFile } from '../report/rsync-log.js';
import { restartHintLines } from '../report/restart-hints.js';
import type { LockHolder, LockWait } from '../state/lock.js';
import { recordPass } from '../state/status.js';
import { runOnChange } from './on-change.js';
import { makeReporter } from './reporter.js';
import { testHooksFromEnv } from './test-hooks.js';

export interface SyncCommandOptions extends RawPassOptions {
  verbose?: boolean;
}

export async function syncCommand(raw: SyncCommandOptions): Promise<number> {
  const settings = resolvePassSettings(raw);
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  // process.on, not once: signal-exit (write-file-atomic) re-raises a signal when it sees no other listener.
  process.on('SIGTERM', onSignal).on('SIGINT', onSignal);
  try {
    const result = await runReportedPass(settings, connectPerPass(settings.connection, settings.sourceDir), {
      signal: stop.signal,
      printItems: settings.dryRun || raw.verbose === true,
      lockWait: operatorLockWait(settings.lockWaitMs, stop.signal),
    });
    return result.exitCode;
  } finally {
    process.off('SIGTERM', onSignal).off('SIGINT', onSignal);
  }
}

/** A by-hand pass waits for one in flight, and says so after a second. */
export function operatorLockWait(waitMs: number, signal?: AbortSignal): LockWait {
  return {
    waitMs,
    signal,
    onWait: (holder) => process.stderr.write(`xroad-sync: ${waitingLine(holder, waitMs)}\n`),
    onTakeover: (notice) => process.stderr.write(`xroad-sync: ${notice}\n`),
  };
}

export function waitingLine(holder: LockHolder, waitMs: number): string {
  return `waiting for the running pass (pid ${holder.pid}${holder.purpose === 'sync' ? '' : `, ${holder.purpose}`}) to finish, up to ${Number((waitMs / 1000).toFixed(1))} s …`;
}

/** A pass with every report wired; shared by `sync`, `resume --now` and the daemon. */
export async function runReportedPass(
  settings: PassSettings,
  provider: SourceProvider,
  opts: { signal?: AbortSignal; printItems: boolean; logger?: ReturnType<typeof createLogger>; lockWait?: LockWait },
): Promise<PassResult> {
  const log =
    settings.logFile && !settings.dryRun
      ? await RsyncLogFile.open(settings.logFile, { onWarning: (w) => process.stderr.write(`xroad-sync: ${w}\n`) })
      : null;
  const reporter = makeReporter(log, { printItems: opts.printItems, printErrors: true });
  let result: PassResult;
  try {
    result = await runPass(settings, provider, reporter, { signal: opts.signal, at: testHooksFromEnv(), lockWait: opts.lockWait });
  } finally {
    await log?.close();
  }
  // A pass that never got the lock did nothing: the pass that holds it reports and records its own result.
  if (isLockWait(result.error)) return result;
  const durationMs = result.finishedAt.getTime() - result.startedAt.getTime();
  const logger = opts.logger ?? createLogger({ destination: 1 });
  logPass(logger, passRecord({ ...result, durationMs }));
  // Also after a failed pass: a partial commit or a completed journal made these paths live.
  if (!settings.dryRun && result.changedPaths.length > 0) {
    for (const hint of await restartHintLines(result.changedPaths)) logger.info({ msg: hint });
    if (settings.onChange) await runOnChange(settings.onChange, result.changedPaths, logger);
  }
  if (!settings.dryRun) {
    await recordPass(settings.stateDir, result).catch((err) =>
      process.stderr.write(`xroad-sync: cannot record the pass in ${settings.stateDir}: ${describeError(err)}\n`),
    );
  }
  return result;
}
