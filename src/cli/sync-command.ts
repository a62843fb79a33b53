/** `xroad-sync sync`: one pass, reported to slave-sync.log, stderr, the JSON record and status.json. */
import { resolvePassSettings, type PassSettings, type RawPassOptions } from '../config.js';
import { describeError, exitCodeOf } from '../errors.js';
import { runPass, type PassResult, type SourceProvider } from '../pass.js';
import { connectPerPass } from '../remote/provider.js';
import { createLogger, logPass, passRecord } from '../report/logger.js';
import { RsyncLogFile } from '../report/rsync-log.js';
import { restartHintLines } from '../report/restart-hints.js';
import { recordPass } from '../state/status.js';
import { runOnChange } from './on-change.js';
import { makeReporter } from './reporter.js';
import { testHooksFromEnv } from './test-hooks.js';

export interface SyncCommandOptions extends RawPassOptions {
  verbose?: boolean;
}

export async function syncCommand(raw: SyncCommandOptions): Promise<number> {
  let settings: PassSettings;
  try {
    settings = resolvePassSettings(raw);
  } catch (err) {
    process.stderr.write(`xroad-sync: ${describeError(err)}\n`);
    return exitCodeOf(err);
  }
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  // process.on, not once: signal-exit (write-file-atomic) re-raises a signal when it sees no other listener.
  process.on('SIGTERM', onSignal).on('SIGINT', onSignal);
  try {
    const result = await runReportedPass(settings, connectPerPass(settings.connection, settings.sourceDir), {
      signal: stop.signal,
      printItems: settings.dryRun || raw.verbose === true,
    });
    return result.exitCode;
  } finally {
    process.off('SIGTERM', onSignal).off('SIGINT', onSignal);
  }
}

/** A pass with every report wired; shared by `sync`, `resume --now` and the daemon. */
export async function runReportedPass(
  settings: PassSettings,
  provider: SourceProvider,
  opts: { signal?: AbortSignal; printItems: boolean; logger?: ReturnType<typeof createLogger> },
): Promise<PassResult> {
  const log =
    settings.logFile && !settings.dryRun
      ? await RsyncLogFile.open(settings.logFile, { onWarning: (w) => process.stderr.write(`xroad-sync: ${w}\n`) })
      : null;
  const reporter = makeReporter(log, { printItems: opts.printItems, printErrors: true });
  let result: PassResult;
  try {
    result = await runPass(settings, provider, reporter, { signal: opts.signal, at: testHooksFromEnv() });
  } finally {
    await log?.close();
  }
  const durationMs = result.finishedAt.getTime() - result.startedAt.getTime();
  const logger = opts.logger ?? createLogger({ destination: 1 });
  logPass(logger, passRecord({ ...result, durationMs }));
  if (result.result === 'ok' && !settings.dryRun && result.changedPaths.length > 0) {
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
