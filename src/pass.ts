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
import { commitChanges, executeOps, PartialCommitError, type CommitStep } from './commit/commit.js';
import { pendingJournal, recoverJournal } from './commit/journal.js';
import {
  ConfigError,
  InterruptedError,
  LocalIoError,
  MasterChangedError,
  PassAbandonedError,
  SafetyValveError,
  TransferError,
  describeError,
  exitCodeOf,
  type ExitCodeValue,
} from './errors.js';
import { compileFilter } from './filter/rsync-filter.js';
import { loadLocalIds } from './local/ids.js';
import { scanTarget } from './local/scan.js';
import { countChanges, planChanges } from './plan/plan.js';
import type { Change, Plan } from './plan/types.js';
import type { SourceProvider, SourceTree } from './remote/types.js';
import { parentOf, type Tree } from './tree.js';
import { stageChanges } from './stage/stage.js';
import { acquireLock, type LockWait } from './state/lock.js';
import { isRacy, RacyFiles } from './state/racy.js';


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

/**
 * Seconds before the listing from which a master mtime is "too recent to
 * trust" (git's racily clean): the listing's own second and later, plus one
 * second of slack for clock granularity and skew between the two hosts
 * (X-Road requires synchronized clocks).
 */
export const RACY_WINDOW_S = 1;

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
  // Changes made live by this pass even if it fails later: a completed journal, a partial commit.
  const live: Change[] = [];
  const liveStats = (): PassStats => ({ ...NO_STATS, ...countChanges(live) });
  try {
    if (settings.dryRun) await reportPendingJournal(settings, reporter);
    else live.push(...(await completeInterruptedCommit(settings, reporter)));
    const outcome = await syncOnceMore(() => connectAndSync(settings, provider, reporter, hooks, live), reporter);
    const recovered = countChanges(live);
    const stats = { ...outcome.stats, changed: outcome.stats.changed + recovered.changed, deleted: outcome.stats.deleted + recovered.deleted };
    return finish('ok', stats, [...live.map((c) => c.path), ...outcome.changedPaths]);
  } catch (error) {
    if (error instanceof PassAbandonedError) {
      reporter.skipped(error.message);
      return finish('skipped', NO_STATS);
    }
    reporter.failure(error, exitCodeOf(error));
    return finish('failed', liveStats(), live.map((c) => c.path), error);
  } finally {
    await lock.release();
  }
}

/** The master changed under the pass (a file vanished or was rewritten mid-read): nothing was committed; list it again, once. */
async function syncOnceMore<T>(attempt: () => Promise<T>, reporter: PassReporter): Promise<T> {
  try {
    return await attempt();
  } catch (error) {
    if (!(error instanceof MasterChangedError)) throw error;
    reporter.notice(`${describeError(error)}; nothing was changed, starting the pass over`);
    return attempt();
  }
}

async function connectAndSync(settings: PassSettings, provider: SourceProvider, reporter: PassReporter, hooks: PassHooks, live: Change[]) {
  const source = await provider.acquire();
  try {
    await hooks.at?.('connected');
    const outcome = await syncFrom(source, settings, reporter, hooks, live);
    await provider.release(source, true);
    return outcome;
  } catch (error) {
    await provider.release(source, !sessionMayBeBroken(error));
    throw error;
  }
}

/** Refusals and local errors leave the SFTP session usable; anything from the wire may not. */
function sessionMayBeBroken(error: unknown): boolean {
  return !(error instanceof SafetyValveError || error instanceof LocalIoError || error instanceof ConfigError || error instanceof MasterChangedError);
}

async function syncFrom(source: SourceTree, settings: PassSettings, reporter: PassReporter, hooks: PassHooks, live: Change[]) {
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
  const racy = settings.dryRun ? null : await RacyFiles.load(settings.stateDir, settings.targetDir);
  const racyFrom = Math.floor(Date.now() / 1000) - RACY_WINDOW_S;
  const unnamed: string[] = [];
  const [sourceTree, targetScan, ids] = await Promise.all([
    source.scan(filter, { skipped: (path) => unnamed.push(`${path} on the master`) }),
    localIds.then(({ names }) => scanTarget(settings.targetDir, filter, { names })),
    localIds.then(({ mapping }) => mapping),
  ]);
  unnamed.push(...targetScan.unrepresentable.map((p) => `${p} on this slave`));
  if (unnamed.length > 0) reporter.notice(nonUtf8Warning(unnamed));
  if (!settings.dryRun) await removeStrayTemps(settings.targetDir, targetScan.tempFiles, reporter);
  checkAborted(hooks);
  await hooks.at?.('scanned');

  const plan = planChanges({
    source: sourceTree,
    target: targetScan.tree,
    targetExcluded: targetScan.excluded,
    ids,
    suspect: racy ? (path) => racy.suspect(path) : undefined,
  });
  const racyNow = RacyFiles.of(sourceTree, racyFrom);
  enforceSafetyValve(plan, sourceTree.size, settings);
  enforceLimits(plan, settings.limits);
  await proveDeletions(plan, source, settings.sourceDir);
  await hooks.at?.('planned');

  if (settings.dryRun || plan.changes.length === 0) {
    // Nothing to write: no staging, no journal, no fsync (the every-minute case).
    await racy?.settle(racyNow);
    reporter.items(plan.changes);
    const stats = statsOf(plan.changes, plan.totalSize);
    reporter.success(stats);
    return { stats, changedPaths: [] };
  }
  const applied = await stageAndCommit(plan, sourceTree, targetScan.tree, source, settings, reporter, hooks, { from: racyFrom, files: racy!, now: racyNow }, live);
  const stats = statsOf(applied, plan.totalSize);
  reporter.success(stats);
  return { stats, changedPaths: applied.map((c) => c.path) };
}

/** One warning per pass, naming a few of the entries. */
function nonUtf8Warning(paths: readonly string[]): string {
  const shown = paths.slice(0, 3).map((p) => JSON.stringify(p).slice(1, -1)).join(', ');
  const more = paths.length > 3 ? ` and ${paths.length - 3} more` : '';
  return `skipped ${paths.length} entries whose names are not valid UTF-8 (${shown}${more}): they are neither synced nor deleted; rename them on the master or exclude them with a wildcard pattern`;
}

/**
 * A deletion needs proof: for every entry the plan deletes (the top of each
 * doomed subtree), the master must answer "no such file" for that exact
 * path. An entry its listing dropped answers otherwise (permission denied,
 * a path beyond PATH_MAX there): then nothing is changed or deleted (exit
 * 23), as a tree applied without part of its content is not the master's.
 */
async function proveDeletions(plan: Plan, source: SourceTree, sourceDir: string): Promise<void> {
  const deleted = new Set(plan.changes.filter((c) => c.kind === 'delete' && !c.forReplace).map((c) => c.path));
  const tops = [...deleted].filter((p) => !deleted.has(parentOf(p)));
  if (tops.length === 0) return;
  const checks = await source.confirmGone(tops);
  const unproven = checks.filter((c) => !c.gone).sort((a, b) => (a.path < b.path ? -1 : 1));
  if (unproven.length === 0) return;
  const reappeared = unproven.find((c) => c.exists);
  if (reappeared) throw new MasterChangedError(`${reappeared.path} appeared on the master during the pass`, { subject: reappeared.path });
  const first = unproven[0]!;
  const root = sourceDir.endsWith('/') ? sourceDir : `${sourceDir}/`;
  const dir = root + parentOf(first.path);
  throw new TransferError(
    `cannot confirm that ${root + first.path} is gone on the master (${first.reason}${unproven.length > 1 ? `; ${unproven.length - 1} more like it` : ''}): ` +
      `the listing of ${dir} may be incomplete, so nothing was deleted or changed`,
    { subject: dir, hint: `check that the sync user can enter ${dir} and every directory below it on the master, and that no path there exceeds PATH_MAX; or exclude it` },
  );
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
  racy: { from: number; files: RacyFiles; now: ReturnType<typeof RacyFiles.of> },
  live: Change[],
): Promise<Change[]> {
  const staging = await stageChanges(plan, source, {
    targetRoot: settings.targetDir,
    target: targetTree,
    concurrency: settings.concurrency,
    signal: hooks.signal,
    onStaged: (path) => void hooks.at?.('file-staged', path),
    isRacy: (entry) => isRacy(entry, racy.from),
  });
  // Files fetched again only to compare, found identical: not a content change (their attributes may still be).
  const changes = plan.changes.flatMap((c): Change[] =>
    c.kind === 'fetch' && staging.identical.has(c.path) ? (c.ifIdentical ? [c.ifIdentical] : []) : [c],
  );
  let committed = false;
  try {
    checkAborted(hooks);
    await hooks.at?.('staged');
    if (changes.length === 0) {
      await racy.files.settle(racy.now);
      return [];
    }
    // `xroad-sync pause` waits for this pass: paused now, it must not start committing.
    if (existsSync(settings.flagFile)) throw new PassAbandonedError(`${settings.flagFile} appeared during the pass: abandoned before its commit, nothing changed`);
    await racy.files.beforeCommit(racy.now);
    const result = await commitChanges(changes, staging, {
      targetRoot: settings.targetDir,
      source: sourceTree,
      stateDir: settings.stateDir,
      beforeStep: hooks.at,
    }).catch((err: unknown) => {
      if (err instanceof PartialCommitError) {
        // Part of the commit is live: say exactly what, so hints and --on-change cover it.
        const partial = changes.filter((c) => err.livePaths.has(c.path));
        reporter.items(partial);
        live.push(...partial);
        committed = true; // the journal needs the remaining temps; nothing to restore
      }
      throw err;
    });
    committed = true;
    await racy.files.settle(racy.now);
    await hooks.at?.('committed');
    const skipped = new Set(result.skipped.map((s) => s.path));
    const applied = changes.filter((c) => !skipped.has(c.path));
    reporter.items(applied);
    for (const s of result.skipped) reporter.notice(`${s.path} ${s.reason}: left for the next pass`);
    for (const dir of plan.keptNonEmpty) reporter.notice(`cannot delete non-empty directory: ${dir}`);
    return applied;
  } finally {
    // After a commit only unused temps (skipped paths) remain; before it, all of them.
    if (!committed || staging.temps.size > 0) await staging.discard({ committed });
  }
}

/**
 * A pass killed (or failed) mid-commit left its journal: roll it forward
 * before anything else looks at the target. Returns the changes it made
 * live, itemized here and counted, hinted and --on-change'd by this pass.
 */
async function completeInterruptedCommit(settings: PassSettings, reporter: PassReporter): Promise<Change[]> {
  const recovery = await recoverJournal(settings.stateDir, settings.targetDir, (ops) =>
    executeOps(ops, { root: settings.targetDir, recheck: false }),
  );
  if (recovery.kind === 'rolled-forward') {
    reporter.notice(`completed the commit interrupted at ${recovery.createdAt} (${recovery.operations} operations replayed)`);
    reporter.items(recovery.changes);
    return [...recovery.changes];
  }
  if (recovery.kind === 'discarded') reporter.notice(recovery.reason);
  return [];
}

/** A dry run never replays a journal: it says one is pending. */
async function reportPendingJournal(settings: PassSettings, reporter: PassReporter): Promise<void> {
  const pending = await pendingJournal(settings.stateDir, settings.targetDir);
  if (pending) {
    reporter.notice(
      `the interrupted commit of ${pending.createdAt} is pending (${pending.operations} operations): a dry run leaves it; the next pass completes it`,
    );
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
    if (c.kind !== 'fetch' || c.verify) continue; // a verifying fetch re-reads what the slave already holds
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
