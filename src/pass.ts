/**
 * One sync pass, stage by stage:
 *
 *   flag check → lock → connect → scan master ‖ scan target → plan
 *     → safety valve → stage → commit → report
 *
 * Each stage lives in its own module; this file only wires them and decides
 * what is logged. Nothing in the target changes before `commit`, and commit
 * runs only when every fetch succeeded.
 */
import { existsSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { PassSettings, TransferLimits } from './config.js';
import { commitChanges, executeOps, type CommitStep } from './commit/commit.js';
import { recoverJournal } from './commit/journal.js';
import { ConfigError, InterruptedError, LocalIoError, PassAbandonedError, SafetyValveError, exitCodeOf, type ExitCodeValue } from './errors.js';
import { compileFilter } from './filter/rsync-filter.js';
import { loadLocalIds } from './local/ids.js';
import { scanTarget } from './local/scan.js';
import { countChanges, planChanges } from './plan/plan.js';
import type { Change, Plan } from './plan/types.js';
import type { SourceTree } from './remote/types.js';
import type { Tree } from './tree.js';
import { stageChanges } from './stage/stage.js';
import { acquireLock, type LockWait } from './state/lock.js';

/** Where the master comes from: a fresh connection per pass, or the daemon's warm session. */
export interface SourceProvider {
  acquire(): Promise<SourceTree>;
  /** `healthy` false after a failure: the provider should drop the session. */
  release(source: SourceTree, healthy: boolean): Promise<void>;
}

/** What a pass reports as it goes; the CLI binds it to slave-sync.log, stdout and pino. */
export interface PassReporter {
  receivingFileList(): void;
  /** The applied (or, in a dry run, planned) changes, in plan order: logged together so replaced directories itemize right. */
  items(changes: readonly Change[]): void;
  /** Free-form notice, e.g. "cannot delete non-empty directory: jetty". */
  notice(message: string): void;
  skipped(reason: string): void;
  success(stats: PassStats): void;
  failure(error: unknown, code: ExitCodeValue): void;
}

export interface PassStats {
  readonly changed: number;
  readonly deleted: number;
  readonly bytesReceived: number;
  readonly bytesSent: number;
  readonly totalSize: number;
}

export interface PassResult extends PassStats {
  readonly result: 'ok' | 'failed' | 'skipped';
  readonly exitCode: ExitCodeValue;
  readonly startedAt: Date;
  readonly finishedAt: Date;
  readonly error?: unknown;
  /** Paths changed by this pass (for restart hints and --on-change). */
  readonly changedPaths: readonly string[];
}

export interface PassHooks {
  /** Awaited at each named point (fault injection in tests, progress). */
  readonly at?: (point: PassPoint, path?: string) => void | Promise<void>;
  readonly signal?: AbortSignal;
  /** How long to wait for another pass's lock (default: fail at once). */
  readonly lockWait?: LockWait;
}
export type PassPoint = 'connected' | 'scanned' | 'planned' | 'staged' | 'file-staged' | CommitStep | 'committed';

const NO_STATS: PassStats = { changed: 0, deleted: 0, bytesReceived: 0, bytesSent: 0, totalSize: 0 };

export async function runPass(
  settings: PassSettings,
  provider: SourceProvider,
  reporter: PassReporter,
  hooks: PassHooks = {},
): Promise<PassResult> {
  const startedAt = new Date();
  const finish = (result: PassResult['result'], stats: PassStats, changedPaths: string[] = [], error?: unknown): PassResult => ({
    ...stats,
    result,
    exitCode: error === undefined ? 0 : exitCodeOf(error),
    startedAt,
    finishedAt: new Date(),
    error,
    changedPaths,
  });

  if (existsSync(settings.flagFile)) {
    reporter.skipped(`${settings.flagFile} exists (remove it or run "xroad-sync resume")`);
    return finish('skipped', NO_STATS);
  }
  let lock;
  try {
    lock = await acquireLock(settings.stateDir, settings.dryRun ? 'dry-run' : 'sync', hooks.lockWait);
  } catch (error) {
    reporter.failure(error, exitCodeOf(error));
    return finish('failed', NO_STATS, [], error);
  }
  try {
    await completeInterruptedCommit(settings, reporter);
    const outcome = await connectAndSync(settings, provider, reporter, hooks);
    return finish('ok', outcome.stats, outcome.changedPaths);
  } catch (error) {
    if (error instanceof PassAbandonedError) {
      reporter.skipped(error.message);
      return finish('skipped', NO_STATS);
    }
    reporter.failure(error, exitCodeOf(error));
    return finish('failed', NO_STATS, [], error);
  } finally {
    await lock.release();
  }
}

async function connectAndSync(settings: PassSettings, provider: SourceProvider, reporter: PassReporter, hooks: PassHooks) {
  const source = await provider.acquire();
  try {
    await hooks.at?.('connected');
    const outcome = await syncFrom(source, settings, reporter, hooks);
    await provider.release(source, true);
    return outcome;
  } catch (error) {
    await provider.release(source, !sessionMayBeBroken(error));
    throw error;
  }
}

/** Refusals and local errors leave the SFTP session usable; anything from the wire may not. */
function sessionMayBeBroken(error: unknown): boolean {
  return !(error instanceof SafetyValveError || error instanceof LocalIoError || error instanceof ConfigError);
}

async function syncFrom(source: SourceTree, settings: PassSettings, reporter: PassReporter, hooks: PassHooks) {
  // A daemon's session counts bytes since it opened; a pass reports its own.
  const trafficBefore = source.traffic();
  const statsOf = (changes: readonly Change[], totalSize: number): PassStats => {
    const now = source.traffic();
    return { ...countChanges(changes), bytesReceived: now.received - trafficBefore.received, bytesSent: now.sent - trafficBefore.sent, totalSize };
  };
  const filter = compileFilter(settings.excludes);
  reporter.receivingFileList();
  // The id files are read once: names for the target scan, the mapping for the planner.
  const localIds = loadLocalIds();
  const [sourceTree, targetScan, ids] = await Promise.all([
    source.scan(filter),
    localIds.then(({ names }) => scanTarget(settings.targetDir, filter, { names })),
    localIds.then(({ mapping }) => mapping),
  ]);
  await removeStrayTemps(settings.targetDir, targetScan.tempFiles, reporter);
  checkAborted(hooks);
  await hooks.at?.('scanned');

  const plan = planChanges({ source: sourceTree, target: targetScan.tree, targetExcluded: targetScan.excluded, ids });
  enforceSafetyValve(plan, sourceTree.size, settings);
  enforceLimits(plan, settings.limits);
  await hooks.at?.('planned');

  if (settings.dryRun || plan.changes.length === 0) {
    // Nothing to write: no staging, no journal, no fsync (the every-minute case).
    reporter.items(plan.changes);
    const stats = statsOf(plan.changes, plan.totalSize);
    reporter.success(stats);
    return { stats, changedPaths: [] };
  }
  const applied = await stageAndCommit(plan, sourceTree, targetScan.tree, source, settings, reporter, hooks);
  const stats = statsOf(applied, plan.totalSize);
  reporter.success(stats);
  return { stats, changedPaths: applied.map((c) => c.path) };
}

/** Stage every change, then commit; returns the changes applied (a path edited locally mid-pass is left out). */
async function stageAndCommit(
  plan: Plan,
  sourceTree: Tree,
  targetTree: Tree,
  source: SourceTree,
  settings: PassSettings,
  reporter: PassReporter,
  hooks: PassHooks,
): Promise<Change[]> {
  const staging = await stageChanges(plan, source, {
    targetRoot: settings.targetDir,
    target: targetTree,
    concurrency: settings.concurrency,
    signal: hooks.signal,
    onStaged: (path) => void hooks.at?.('file-staged', path),
  });
  let committed = false;
  try {
    checkAborted(hooks);
    await hooks.at?.('staged');
    // `xroad-sync pause` waits for this pass: paused now, it must not start committing.
    if (existsSync(settings.flagFile)) throw new PassAbandonedError(`${settings.flagFile} appeared during the pass: abandoned before its commit, nothing changed`);
    const result = await commitChanges(plan.changes, staging, {
      targetRoot: settings.targetDir,
      source: sourceTree,
      stateDir: settings.stateDir,
      beforeStep: hooks.at,
    });
    committed = true;
    await hooks.at?.('committed');
    const skipped = new Set(result.skipped.map((s) => s.path));
    const applied = plan.changes.filter((c) => !skipped.has(c.path));
    reporter.items(applied);
    for (const s of result.skipped) reporter.notice(`${s.path} ${s.reason}: left for the next pass`);
    for (const dir of plan.keptNonEmpty) reporter.notice(`cannot delete non-empty directory: ${dir}`);
    return applied;
  } finally {
    // After a commit only unused temps (skipped paths) remain; before it, all of them.
    if (!committed || staging.temps.size > 0) await staging.discard({ committed });
  }
}

/** A pass killed mid-commit left its journal: roll it forward before anything else looks at the target. */
async function completeInterruptedCommit(settings: PassSettings, reporter: PassReporter): Promise<void> {
  const recovery = await recoverJournal(settings.stateDir, settings.targetDir, (ops) =>
    executeOps(ops, { root: settings.targetDir, recheck: false }),
  );
  if (recovery.kind === 'rolled-forward') {
    reporter.notice(`completed the commit interrupted at ${recovery.createdAt} (${recovery.operations} operations replayed)`);
  } else if (recovery.kind === 'discarded') {
    reporter.notice(recovery.reason);
  }
}

/** Temp files of a pass that was killed: never part of the tree, removed before planning. */
async function removeStrayTemps(targetDir: string, tempFiles: readonly string[], reporter: PassReporter): Promise<void> {
  for (const rel of tempFiles) {
    await unlink(join(targetDir, rel)).catch(() => undefined);
    reporter.notice(`removed a temp file left by an interrupted pass: ${rel}`);
  }
}

function checkAborted(hooks: PassHooks): void {
  if (hooks.signal?.aborted) throw new InterruptedError('pass stopped by a signal before commit; nothing was changed');
}

/**
 * An unmounted or emptied master tree must not wipe every slave: refuse a
 * pass from an empty source, or one deleting more files than --max-delete
 * (default: half of the synced files in the target), unless --force.
 */
export function enforceSafetyValve(plan: Plan, sourceEntries: number, settings: Pick<PassSettings, 'force' | 'maxDelete' | 'sourceDir'>): void {
  if (settings.force) return;
  if (sourceEntries <= 1 && plan.targetFiles > 0) {
    throw new SafetyValveError(`refusing to sync: the master's ${settings.sourceDir} is empty (after excludes) but this slave has ${plan.targetFiles} files`, {
      subject: settings.sourceDir,
      hint: 'check that the master tree is mounted and readable; pass --force if emptying the slave is really intended',
    });
  }
  const fileDeletions = plan.changes.filter((c) => c.kind === 'delete' && c.target.type !== 'dir').length;
  const limit = settings.maxDelete ?? Math.max(1, Math.floor(plan.targetFiles / 2));
  if (fileDeletions > limit) {
    throw new SafetyValveError(`refusing to delete ${fileDeletions} files (limit ${limit}${settings.maxDelete === undefined ? ': half of the synced files' : ''})`, {
      subject: '--max-delete',
      hint: 'if the master really lost these files, run once with --force or a higher --max-delete',
    });
  }
}

/** Limits that keep a runaway or hostile master from filling the slave's disk. */
export function enforceLimits(plan: Plan, limits: TransferLimits): void {
  if (plan.sourceFiles > limits.maxFiles) {
    throw new SafetyValveError(`the master lists ${plan.sourceFiles} files, more than --max-files ${limits.maxFiles}`, { subject: '--max-files' });
  }
  let total = 0;
  for (const c of plan.changes) {
    if (c.kind !== 'fetch') continue;
    if (c.source.size > limits.maxFileSize) {
      throw new SafetyValveError(`${c.path} is ${c.source.size} bytes on the master, more than --max-file-size ${limits.maxFileSize}`, {
        subject: c.path,
        hint: `exclude it with --exclude /${c.path}, or raise --max-file-size`,
      });
    }
    total += c.source.size;
  }
  if (total > limits.maxTotalBytes) {
    throw new SafetyValveError(`the pass would fetch ${total} bytes, more than --max-total-bytes ${limits.maxTotalBytes}`, { subject: '--max-total-bytes' });
  }
}
