/**
 * One sync pass, stage by stage:
 *
 *   flag check → lock → connect ‖ (recover journal → local check)
 *     → planPass (scan master ‖ scan target → plan → safety valve, limits, deletion proof)
 *     → stage → commit → report
 *
 * Each stage lives in its own module and takes the pass's PassContext; this
 * file only wires them and decides what is logged. Nothing in the target
 * changes before `commit`, and commit runs only when every fetch succeeded.
 */
import { existsSync } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { commitChanges, PartialCommitError, recoverInterruptedCommit } from '../commit/commit.js';
import { journalPath } from '../commit/journal.js';
import { otherOwners } from '../commit/owners.js';
import { ConfigError, describeError, exitCodeOf, LocalIoError, MasterChangedError, PassAbandonedError, SafetyValveError } from '../errors.js';
import { ownerTag } from '../local/temp-names.js';
import { countChanges } from '../plan/plan.js';
import type { Change } from '../plan/types.js';
import type { MasterSource, SourceProvider } from '../remote/types.js';
import type { PassSettings } from '../settings/pass-settings.js';
import { stageChanges } from '../stage/stage.js';
import { acquireLock } from '../state/lock.js';
import { isRacy } from '../state/racy.js';
import { lockTargetForPass, type TargetLock } from '../state/target-lock.js';
import type { Tree } from '../tree.js';
import { type PassContext, passContext } from './context.js';
import { checkAborted, noticeOnce, type PlannedPass, planPass, type RacyState, reportPendingJournal } from './plan-pass.js';
import type { LocalCheck, PassHooks, PassReporter, PassResult, PassStats } from './types.js';

const NO_STATS: PassStats = { changed: 0, deleted: 0, bytesReceived: 0, bytesSent: 0, totalSize: 0 };

export async function runPass(settings: PassSettings, provider: SourceProvider, reporter: PassReporter, hooks: PassHooks = {}): Promise<PassResult> {
  const startedAt = new Date();
  const finish = (
    result: PassResult['result'],
    stats: PassStats,
    changedPaths: string[] = [],
    error?: unknown,
    synced?: { mirrored?: Tree; fetchedContent?: ReadonlyMap<string, string> },
  ): PassResult => ({
    ...stats,
    mirrored: synced?.mirrored,
    fetchedContent: synced?.fetchedContent,
    result,
    exitCode: error === undefined ? 0 : exitCodeOf(error),
    startedAt,
    finishedAt: new Date(),
    error,
    changedPaths,
  });

  const paused = existsSync(settings.flagFile);
  const pausedLine = `${settings.flagFile} exists (remove it or run "xroad-sync resume")`;
  // Paused, a pass only completes an interrupted commit (a plan already committed to): without a journal it has nothing to do.
  if (paused && (settings.dryRun || !existsSync(journalPath(settings.stateDir)))) {
    reporter.skipped(pausedLine);
    return finish('skipped', NO_STATS);
  }
  let lock: Awaited<ReturnType<typeof acquireLock>>;
  try {
    lock = await acquireLock(settings.stateDir, settings.dryRun ? 'dry-run' : 'sync', hooks.lockWait);
  } catch (error) {
    reporter.failure(error, exitCodeOf(error));
    return finish('failed', NO_STATS, [], error);
  }
  // Changes made live by this pass even if it fails later: a completed journal, a partial commit.
  const live: Change[] = [];
  const liveStats = (): PassStats => ({ ...NO_STATS, ...countChanges(live) });
  let targetLock: TargetLock | undefined;
  try {
    // One writer per target: another state dir's pass or daemon would remove our staged files as strays. A dry run writes nothing.
    if (!settings.dryRun) targetLock = await lockTargetForPass(settings.targetDir, { stateDir: settings.stateDir, lockFile: lock.path });
    // Both locks held (a refused pass never logs into the master): the SSH session is set up meanwhile.
    const connecting = paused ? undefined : await connectInBackground(provider);
    let check: LocalCheck | undefined;
    try {
      // Journal state comes before the master: a pass that cannot reach it still completes an interrupted commit.
      if (settings.dryRun) await reportPendingJournal(settings, reporter);
      else live.push(...(await completeInterruptedCommit(settings, reporter, hooks)));
      if (paused) {
        reporter.skipped(pausedLine);
        return finish(
          'skipped',
          liveStats(),
          live.map((c) => c.path),
        );
      }
      check = await hooks.whileConnecting?.();
    } catch (error) {
      connecting?.abandon();
      throw error;
    }
    // A second attempt (the master changed mid-pass) compares the same paths, and scans the target afresh.
    const outcome = await syncOnceMore(
      () => connectAndSync(settings, connecting!.source, provider, reporter, hooks, (h) => withLocalCheck(h, check, performance.now()), live),
      () => connectAndSync(settings, provider.acquire(), provider, reporter, hooks, (h) => withLocalCheck(h, check, Number.POSITIVE_INFINITY), live),
      reporter,
    );
    const recovered = countChanges(live);
    const stats = { ...outcome.stats, changed: outcome.stats.changed + recovered.changed, deleted: outcome.stats.deleted + recovered.deleted };
    return finish('ok', stats, [...live.map((c) => c.path), ...outcome.changedPaths], undefined, outcome);
  } catch (error) {
    if (error instanceof PassAbandonedError) {
      reporter.skipped(error.message);
      // What a rolled-forward journal made live is reported all the same (restart hints, --on-change).
      return finish(
        'skipped',
        liveStats(),
        live.map((c) => c.path),
      );
    }
    reporter.failure(error, exitCodeOf(error));
    return finish(
      'failed',
      liveStats(),
      live.map((c) => c.path),
      error,
    );
  } finally {
    targetLock?.release();
    await lock.release();
  }
}

/** The master changed under the pass (a file vanished or was rewritten mid-read): nothing was committed; list it again, once. */
async function syncOnceMore<T>(attempt: () => Promise<T>, again: () => Promise<T>, reporter: PassReporter): Promise<T> {
  try {
    return await attempt();
  } catch (error) {
    if (!(error instanceof MasterChangedError)) throw error;
    reporter.notice(`${describeError(error)}; nothing was changed, starting the pass over`);
    return again();
  }
}

/** A session asked for before the pass needs it; abandoned (closed once it is up) when the pass ends before using it. */
async function connectInBackground(provider: SourceProvider): Promise<{ readonly source: Promise<MasterSource>; abandon(): void }> {
  const source = provider.acquire();
  source.catch(() => undefined); // its failure is the pass's to report, when the pass awaits it
  // Node issues the TCP connect to an IP address on a later tick: one turn of the event loop lets it
  // leave now, not after the local work that follows (which runs as one chain of promise jobs).
  await nextTurn();
  return { source, abandon: () => void source.then((s) => provider.release(s, true)).catch(() => undefined) };
}

/**
 * How old the local check's scan of the target may be, when the pass starts planning, to be planned
 * against. An edit made after it is seen by the next pass's check; waited for a slow master, the pass
 * scans again rather than let that window grow to the connect timeout.
 */
const CHECK_SCAN_REUSE_MS = 1000;

/** The pass's hooks once connected (at `now`, monotonic ms): what the local check found is compared, and its scan planned against while young. */
function withLocalCheck(hooks: PassHooks, check: LocalCheck | undefined, now: number): PassHooks {
  if (check === undefined) return hooks;
  const young = check.targetScan !== undefined && now - check.targetScan.takenAt <= CHECK_SCAN_REUSE_MS;
  return { ...hooks, verify: check.verify, targetScan: young ? check.targetScan!.scan : undefined };
}

async function connectAndSync(
  settings: PassSettings,
  connecting: Promise<MasterSource>,
  provider: SourceProvider,
  reporter: PassReporter,
  hooks: PassHooks,
  /** What the pass adds to its hooks once connected (what the local check found). */
  connected: (hooks: PassHooks) => PassHooks,
  live: Change[],
) {
  const source = await connecting;
  try {
    await hooks.at?.('connected');
    const outcome = await syncFrom(passContext(settings, source, reporter, connected(hooks), live));
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

async function syncFrom(ctx: PassContext) {
  const planned = await planPass(ctx, { preview: ctx.settings.dryRun });
  const { plan, racy } = planned;
  if (racy === null || plan.changes.length === 0) {
    // Nothing to write: no staging, no journal, no fsync (the every-minute case).
    await racy?.files.settle(racy.now);
    ctx.reporter.items(plan.changes);
    const stats = ctx.statsOf(plan.changes, plan.totalSize);
    ctx.reporter.success(stats);
    return { stats, changedPaths: [], mirrored: planned.sourceTree };
  }
  const { applied, leftForNextPass, fetchedContent } = await stageAndCommit(ctx, planned, racy);
  const stats = ctx.statsOf(applied, plan.totalSize);
  ctx.reporter.success(stats);
  // A path edited locally mid-pass was left for the next pass: the target does not mirror this listing yet.
  return { stats, changedPaths: applied.map((c) => c.path), mirrored: leftForNextPass === 0 ? planned.sourceTree : undefined, fetchedContent };
}

/** Stage every change, then commit; returns the changes applied and how many were left (a path edited locally mid-pass). */
async function stageAndCommit(
  ctx: PassContext,
  { plan, sourceTree, targetTree }: PlannedPass,
  racy: RacyState,
): Promise<{ applied: Change[]; leftForNextPass: number; fetchedContent: ReadonlyMap<string, string> }> {
  const { settings, reporter, hooks } = ctx;
  const staging = await stageChanges(plan, ctx.source, {
    targetRoot: settings.targetDir,
    target: targetTree,
    concurrency: settings.concurrency,
    owner: ownerTag(settings.stateDir),
    signal: hooks.signal,
    onStaged: (path) => void hooks.at?.('file-staged', path),
    beforeFlush: () => hooks.at?.('flush'),
    isRacy: (entry) => isRacy(entry, racy.window),
  });
  // Files fetched again only to compare, found identical: not a content change (their attributes may still be).
  const changes = plan.changes.flatMap((c): Change[] => (c.kind === 'fetch' && staging.identical.has(c.path) ? (c.ifIdentical ? [c.ifIdentical] : []) : [c]));
  let committed = false;
  try {
    checkAborted(hooks);
    await hooks.at?.('staged');
    if (changes.length === 0) {
      await racy.files.settle(racy.now);
      return { applied: [], leftForNextPass: 0, fetchedContent: staging.contentHashes };
    }
    // `xroad-sync pause` waits for this pass: paused now, it must not start committing. Asked again
    // once the staged files are flushed (the flush of many can take seconds), just before the journal.
    const mayCommit = (): void => {
      checkAborted(hooks);
      if (existsSync(settings.flagFile))
        throw new PassAbandonedError(`${settings.flagFile} appeared during the pass: abandoned before its commit, nothing changed`);
    };
    mayCommit();
    await racy.files.beforeCommit(racy.now);
    const { recordIncoming } = hooks;
    const result = await commitChanges(changes, staging, {
      targetRoot: settings.targetDir,
      source: sourceTree,
      stateDir: settings.stateDir,
      beforeStep: hooks.at,
      beforeJournal: mayCommit,
      announce: recordIncoming && (() => recordIncoming(incomingContent(changes, staging.contentHashes))),
    }).catch((err: unknown) => {
      if (err instanceof PartialCommitError) {
        // Part of the commit is live: say exactly what, so hints and --on-change cover it.
        const partial = changes.filter((c) => err.livePaths.has(c.path));
        reporter.items(partial);
        ctx.live.push(...partial);
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
    // A skipped path's temp was not renamed: what is there now is not what was fetched.
    const fetchedContent = new Map([...staging.contentHashes].filter(([path]) => !skipped.has(path)));
    return { applied, leftForNextPass: result.skipped.length, fetchedContent };
  } finally {
    // After a commit only unused temps (skipped paths) remain; before it, all of them.
    if (!committed || staging.temps.size > 0) await staging.discard({ committed });
  }
}

/**
 * What the commit leaves at each path it changes: a fetched file's staged hash, nothing at a deletion or where a
 * directory or symlink replaces a file. An attribute change leaves the content as it is: not listed.
 */
function incomingContent(changes: readonly Change[], staged: ReadonlyMap<string, string>): Map<string, string | null> {
  const incoming = new Map<string, string | null>();
  for (const c of changes) {
    if (c.kind === 'attrs') continue;
    // A file fetched without a staged hash (none is made for it) is read back by the pass's record instead.
    if (c.kind === 'fetch') {
      const hash = staged.get(c.path);
      if (hash !== undefined) incoming.set(c.path, hash);
    } else if (!incoming.has(c.path)) incoming.set(c.path, null);
  }
  return incoming;
}

/**
 * Other state dirs whose owner files are in the target root. The daemon's watcher vouches for a target
 * unchanged since its last scan, which held no temp or owner file: then none, without a look (an
 * idle pass touches nothing in the target).
 */
function otherStateDirsToComplete(settings: PassSettings, hooks: PassHooks): string[] {
  if (hooks.knownTarget?.reusable()) return [];
  return otherOwners(settings.targetDir, settings.stateDir);
}

/**
 * Completes an interrupted commit; returns the changes it made live, itemized here and counted, hinted and --on-change'd by this pass.
 * Then those of other state dirs whose owner files are in the target: this pass holds the target, so no one else is
 * writing it, and completing them now leaves neither a half-applied target nor a journal whose files a later pass removed.
 */
async function completeInterruptedCommit(settings: PassSettings, reporter: PassReporter, hooks: PassHooks): Promise<Change[]> {
  const live: Change[] = [];
  const recovery = await recoverInterruptedCommit(settings.stateDir, settings.targetDir);
  if (recovery.kind === 'rolled-forward') {
    reporter.notice(`completed the commit interrupted at ${recovery.createdAt} (${recovery.operations} operations replayed)`);
    reporter.items(recovery.changes);
    live.push(...recovery.changes);
  }
  if (recovery.kind === 'discarded') reporter.notice(recovery.reason);
  for (const other of otherStateDirsToComplete(settings, hooks)) {
    const theirs = await recoverInterruptedCommit(other, settings.targetDir);
    if (theirs.kind === 'rolled-forward') {
      reporter.notice(
        `completed the commit interrupted at ${theirs.createdAt} (${theirs.operations} operations replayed) that a pass with another state dir (${other}) left in this target`,
      );
      reporter.items(theirs.changes);
      live.push(...theirs.changes);
    }
    if (theirs.kind === 'discarded') noticeOnce(reporter, `${other}: ${theirs.reason}`, `another state dir's interrupted commit (${other}): ${theirs.reason}`);
  }
  return live;
}
