/**
 * A pass with every report wired: slave-sync.log, stderr, the JSON record,
 * restart hints, --on-change and status.json. Shared by `sync`, `resume
 * --now` and the daemon, so it lives beneath both.
 */
import { existsSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import { describeError, isLockWait } from '../errors.js';
import { compileFilter } from '../filter/rsync-filter.js';
import type { KnownTarget } from '../local/known-target.js';
import type { TargetScan } from '../local/scan.js';
import { runPass } from '../pass/run-pass.js';
import type { LocalCheck, PassHooks, PassResult } from '../pass/types.js';
import type { KnownMaster } from '../remote/known-master.js';
import type { SourceProvider } from '../remote/types.js';
import { treeDigest } from '../report/digest.js';
import { createLogger, type Logger, logPass, passRecord } from '../report/logger.js';
import { operatorRestartRules, restartHintLines } from '../report/restart-hints.js';
import { RsyncLogFile } from '../report/rsync-log.js';
import type { PassSettings } from '../settings/pass-settings.js';
import { daemonLockPath, type LockWait, liveHolder } from '../state/lock.js';
import { PassMetrics } from '../state/metrics-file.js';
import { recordPass } from '../state/status.js';
import type { Tree } from '../tree.js';
import { notice } from '../util/output.js';
import { LocalEdits } from './local-edits.js';
import { runOnChange } from './on-change.js';
import type { QuietPasses } from './quiet-passes.js';
import { makeReporter } from './reporter.js';
import { testHooksFromEnv } from './test-hooks.js';

export async function runReportedPass(
  settings: PassSettings,
  provider: SourceProvider,
  opts: {
    signal?: AbortSignal;
    printItems: boolean;
    logger?: ReturnType<typeof createLogger>;
    lockWait?: LockWait;
    knownTarget?: KnownTarget;
    knownMaster?: KnownMaster;
    /** The daemon's policy for no-change passes: what they leave out of slave-sync.log and status.json. */
    quiet?: QuietPasses;
    /**
     * The daemon's local edits: paths compared with the master byte for byte, whatever their size and mtime.
     * Without it (a one-shot pass) the pass runs the content check itself and compares what that notes.
     */
    verify?: ReadonlySet<string>;
    /** The daemon's content record, told what a commit writes before it starts (PassHooks.recordIncoming); a one-shot pass tells its own. */
    recordIncoming?: PassHooks['recordIncoming'];
    /** The daemon's --metrics-file, kept across its passes; one-shot passes load their own. */
    metrics?: PassMetrics;
  },
): Promise<PassResult> {
  // A malformed operator rule is a usage error before the pass changes anything.
  const restartRules = operatorRestartRules();
  const log =
    settings.logFile && !settings.dryRun ? await RsyncLogFile.open(settings.logFile, { onWarning: (w) => notice(w), lazy: opts.quiet !== undefined }) : null;
  const logger = opts.logger ?? createLogger({ destination: 1 });
  // Paused, a pass compares nothing (at most it completes an interrupted commit): it must not promise a correction.
  // Beside a running daemon the record is the daemon's, and it may be mid-commit: its own check covers the target.
  const oneShotCheck = opts.verify === undefined && !settings.dryRun && !existsSync(settings.flagFile) && !(await daemonRuns(settings.stateDir));
  // Run by the pass once it holds its locks (after it completed an interrupted commit), while it connects.
  let localEdits: LocalEdits | undefined;
  const whileConnecting = oneShotCheck
    ? async (): Promise<LocalCheck | undefined> => {
        const takenAt = performance.now();
        const checked = await checkLocalEdits(settings, logger);
        if (checked === undefined) return undefined;
        localEdits = checked.edits;
        return { verify: checked.edits.startPass(), targetScan: { scan: checked.scan, takenAt } };
      }
    : undefined;
  const reporter = makeReporter(log, { printItems: opts.printItems, printErrors: true, holdPlain: opts.quiet !== undefined });
  let result: PassResult | undefined;
  let quietPass = false;
  try {
    result = await runPass(settings, provider, reporter, {
      signal: opts.signal,
      at: testHooksFromEnv(),
      lockWait: opts.lockWait,
      knownTarget: opts.knownTarget,
      knownMaster: opts.knownMaster,
      verify: opts.verify,
      whileConnecting,
      // The one-shot record exists once the check ran (whileConnecting), before any commit.
      recordIncoming: opts.recordIncoming ?? (async (incoming) => localEdits?.recordIncoming(incoming)),
    });
  } finally {
    const plain = result?.result === 'ok' && result.changedPaths.length === 0 && reporter.plain;
    quietPass = opts.quiet?.omitLog(plain) ?? false;
    reporter.end(quietPass);
    await log?.close();
  }
  // A pass that never got the lock did nothing: the pass that holds it reports and records its own result.
  if (isLockWait(result.error)) return result;
  const durationMs = result.finishedAt.getTime() - result.startedAt.getTime();
  // A quiet pass's record is debug: at a 1 s interval one per pass would be 86,400 journal lines a day.
  if (!quietPass) logPass(logger, passRecord({ ...result, durationMs }));
  else if (logger.isLevelEnabled('debug')) logger.debug(passRecord({ ...result, durationMs }));
  // Also after a failed pass: a partial commit or a completed journal made these paths live.
  if (!settings.dryRun && result.changedPaths.length > 0) {
    for (const hint of await restartHintLines(filesOnly(settings.targetDir, result.changedPaths, result.mirrored), restartRules)) logger.info({ msg: hint });
    if (settings.onChange) await runOnChange(settings.onChange, result.changedPaths, logger);
  }
  // What became of each local edit, and the content this pass wrote or confirmed (the daemon settles its own).
  await localEdits?.endPass(result);
  const record = !settings.dryRun && !opts.quiet?.omitStatus(result);
  // Hashing the listing is for the record: a daemon's quiet pass that records nothing skips it.
  const digest = record && result.mirrored ? treeDigest(result.mirrored) : undefined;
  if (record) {
    await recordPass(settings.stateDir, { ...result, digest }).catch((err) => notice(`cannot record the pass in ${settings.stateDir}: ${describeError(err)}`));
  }
  if (!settings.dryRun && settings.metricsFile) await updateMetrics(settings, result, record, opts.metrics, digest);
  return result;
}

/**
 * A one-shot pass's content check: every synced file hashed and compared
 * with the stored record (a few ms for a security server's /etc/xroad).
 * The quick check (size + mtime) cannot see an in-place edit whose mtime was
 * put back; what this notes, the pass compares with the master byte for byte.
 */
async function checkLocalEdits(settings: PassSettings, logger: Logger): Promise<{ edits: LocalEdits; scan: TargetScan } | undefined> {
  const edits = new LocalEdits({
    targetDir: settings.targetDir,
    stateDir: settings.stateDir,
    filter: compileFilter(settings.excludes),
    logger,
    contentCheckEveryMs: 0,
    oneShot: true,
  });
  try {
    // The check's scan, taken under the pass's locks, is the one the pass plans against: the target is scanned once.
    return { edits, scan: await edits.checkContentForPass() };
  } catch (err) {
    // A target that cannot be read is the pass's to report, with its typed error.
    logger.warn({ msg: 'content check failed', error: describeError(err) });
    return undefined;
  }
}

/** Counts the pass; writes the file when status.json was written too (a daemon's quiet pass waits). */
async function updateMetrics(
  settings: PassSettings,
  result: PassResult,
  record: boolean,
  kept: PassMetrics | undefined,
  digest: string | undefined,
): Promise<void> {
  const place = { metricsFile: settings.metricsFile!, stateDir: settings.stateDir, targetDir: settings.targetDir, flagFile: settings.flagFile };
  try {
    const metrics = kept ?? (await PassMetrics.load(place, { daemon: false }));
    await metrics.countPass(result, digest ?? (result.changedPaths.length === 0 ? undefined : null));
    if (record) await metrics.flush();
  } catch (err) {
    notice(`cannot write --metrics-file ${settings.metricsFile}: ${describeError(err)}`);
  }
}

/**
 * Services read files: a directory's own change (new, mode, mtime) restarts nothing. Deleted paths count.
 * A path in the listing the target now mirrors is what the listing says (no lstat per path of an initial sync).
 */
function filesOnly(targetDir: string, paths: readonly string[], mirrored: Tree | undefined): string[] {
  const isDir = (p: string): boolean => {
    const listed = mirrored?.get(p);
    if (listed) return listed.type === 'dir';
    try {
      return lstatSync(join(targetDir, p)).isDirectory();
    } catch {
      return false; // gone (ENOENT), or its parent is a file now (ENOTDIR): a deletion, which counts
    }
  };
  return paths.filter((p) => !isDir(p));
}

async function daemonRuns(stateDir: string): Promise<boolean> {
  return (await liveHolder(daemonLockPath(stateDir))) !== undefined;
}
