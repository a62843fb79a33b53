/**
 * What a pass would do, decided before anything changes: filter, both scans,
 * the plan, the safety valve, the transfer limits, stray temps and the proof
 * of every deletion. `sync`, `--dry-run`, the daemon and `check` all call
 * this one function, so `check` cannot call fine a pass that then refuses.
 */
import { unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pendingJournal } from '../commit/journal.js';
import { sortStrayTemps } from '../commit/owners.js';
import { InterruptedError, MasterChangedError, SafetyValveError, TransferError } from '../errors.js';
import { compileFilter } from '../filter/rsync-filter.js';
import type { Filter } from '../filter/types.js';
import { loadLocalIds } from '../local/ids.js';
import { scanTarget } from '../local/scan.js';
import { type PlanInput, planChanges } from '../plan/plan.js';
import type { IdMapping, Plan } from '../plan/types.js';
import type { MasterSource } from '../remote/types.js';
import type { PassSettings, TransferLimits } from '../settings/pass-settings.js';
import { RacyFiles, type RacyWindow } from '../state/racy.js';
import { parentOf, type Tree } from '../tree.js';
import type { PassContext } from './context.js';
import type { PassHooks, PassReporter } from './types.js';

/**
 * Seconds before the listing from which a master mtime is "too recent to
 * trust" (git's racily clean): the listing's own second and later, plus one
 * second of slack for clock granularity and skew between the two hosts
 * (X-Road requires synchronized clocks).
 */
const RACY_WINDOW_S = 1;
/** How far ahead of this slave's clock a master mtime still counts as recent: a master clock up to a minute fast. */
const RACY_AHEAD_S = 60;

/** Racy-file state of a pass that may commit: the record, the listing's window, the files racy in this listing. */
export interface RacyState {
  readonly window: RacyWindow;
  readonly files: RacyFiles;
  readonly now: ReturnType<typeof RacyFiles.of>;
}

export interface PlannedPass {
  readonly plan: Plan;
  readonly sourceTree: Tree;
  readonly targetTree: Tree;
  /** null in a preview (dry run, check): it records nothing. */
  readonly racy: RacyState | null;
}

/**
 * Scan both sides and plan, refusing (with the pass's typed errors) what a
 * pass must not do. A preview (`--dry-run`, `check`) changes nothing: stray
 * temps are only reported and the racy-file record is left alone.
 */
export async function planPass(ctx: PassContext, { preview }: { preview: boolean }): Promise<PlannedPass> {
  const { settings, source, reporter, hooks } = ctx;
  const filter = filterFor(settings.excludes);
  reporter.receivingFileList();
  // The id files are read once: names for the target scan, the mapping for the planner.
  const localIds = loadLocalIds();
  const racyFiles = preview ? null : await RacyFiles.load(settings.stateDir, settings.targetDir);
  const listedAt = Math.floor(Date.now() / 1000);
  const racyWindow: RacyWindow = { from: listedAt - RACY_WINDOW_S, until: listedAt + RACY_AHEAD_S };
  const unnamed: string[] = [];
  // A preview never trusts the daemon's memory: check and --dry-run look at the disk.
  const known = preview ? undefined : hooks.knownTarget;
  const reused = (preview ? undefined : hooks.targetScan) ?? known?.reusable();
  const token = known?.startScan();
  const [sourceTree, targetScan, ids] = await Promise.all([
    source.scan(filter, { skipped: (path) => unnamed.push(`${path} on the master`) }, preview ? undefined : hooks.knownMaster),
    reused ?? localIds.then(({ names }) => scanTarget(settings.targetDir, filter, { names })),
    localIds.then(({ mapping }) => mapping),
  ]);
  if (known && token && !reused) known.remember(targetScan, token);
  unnamed.push(...targetScan.unrepresentable.map((p) => `${p} on this slave`));
  if (unnamed.length > 0) reporter.notice(nonUtf8Warning(unnamed));
  await removeStrayTemps(settings, targetScan.tempFiles, reporter, preview);
  checkAborted(hooks);
  await hooks.at?.('scanned');

  // Without a suspect path the quick check decides alone, and the same inputs give the same plan (planOnce).
  const anySuspect = racyFiles !== null && (racyFiles.anySuspect() || (hooks.verify?.size ?? 0) > 0);
  const plan = planOnce({
    source: sourceTree,
    target: targetScan.tree,
    targetExcluded: targetScan.excluded,
    ids,
    suspect: anySuspect ? (path) => racyFiles.suspect(path) || hooks.verify?.has(path) === true : undefined,
  });
  enforceSafetyValve(plan, sourceTree.size, settings);
  enforceLimits(plan, settings.limits);
  await proveDeletions(plan, source, settings.sourceDir);
  await hooks.at?.('planned');
  const racy = racyFiles && { window: racyWindow, files: racyFiles, now: RacyFiles.of(sourceTree, racyWindow) };
  return { plan, sourceTree, targetTree: targetScan.tree, racy };
}

/**
 * The planner is pure: while the daemon gets the same master tree back (an
 * unchanged listing, remote/known-master.ts) and the same target scan (the
 * watcher saw nothing, local/known-target.ts), the plan is the one it made
 * last time. Kept only for plans with nothing to do, without suspect paths.
 */
const inStepPlans = new WeakMap<Tree, { readonly input: PlanInput; readonly plan: Plan }>();
function planOnce(input: PlanInput): Plan {
  const last = inStepPlans.get(input.source);
  const same = (a: PlanInput, b: PlanInput): boolean => a.target === b.target && a.targetExcluded === b.targetExcluded && sameIds(a.ids, b.ids);
  if (last && input.suspect === undefined && same(last.input, input)) return last.plan;
  const plan = planChanges(input);
  if (input.suspect === undefined && plan.changes.length === 0) inStepPlans.set(input.source, { input, plan });
  return plan;
}

/** The id files' tables are parsed again only when the files change (local/ids.ts): the same tables, the same mapping. */
function sameIds(a: IdMapping, b: IdMapping): boolean {
  const sameGroups = a.memberGids.size === b.memberGids.size && [...a.memberGids].every((gid) => b.memberGids.has(gid));
  return a.asRoot === b.asRoot && a.uidByName === b.uidByName && a.gidByName === b.gidByName && sameGroups;
}

/** A daemon plans with the same settings every second: its excludes are compiled once. */
const compiledFilters = new WeakMap<readonly string[], Filter>();
function filterFor(excludes: readonly string[]): Filter {
  let filter = compiledFilters.get(excludes);
  if (!filter) compiledFilters.set(excludes, (filter = compileFilter(excludes)));
  return filter;
}

/** One warning per pass, naming a few of the entries. */
function nonUtf8Warning(paths: readonly string[]): string {
  const shown = paths
    .slice(0, 3)
    .map((p) => JSON.stringify(p).slice(1, -1))
    .join(', ');
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
async function proveDeletions(plan: Plan, source: MasterSource, sourceDir: string): Promise<void> {
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
    {
      subject: dir,
      hint: `check that the sync user can enter ${dir} and every directory below it on the master, and that no path there exceeds PATH_MAX; or exclude it`,
    },
  );
}

/** A dry run never replays a journal: it says one is pending. */
export async function reportPendingJournal(settings: Pick<PassSettings, 'stateDir' | 'targetDir'>, reporter: Pick<PassReporter, 'notice'>): Promise<void> {
  const pending = await pendingJournal(settings.stateDir, settings.targetDir);
  if (pending) {
    reporter.notice(
      `the interrupted commit of ${pending.createdAt} is pending (${pending.operations} operations): a dry run leaves it; the next pass completes it`,
    );
  }
}

/**
 * Temp files of a pass that was killed: never part of the tree, removed
 * before planning, except those a pending journal still needs (another
 * state dir's, or our own one left for another user): they stay while
 * that journal exists and names them, and the operator is told once.
 */
async function removeStrayTemps(settings: PassSettings, tempFiles: readonly string[], reporter: PassReporter, preview: boolean): Promise<void> {
  const { strays, kept } = sortStrayTemps(settings.targetDir, tempFiles, settings.stateDir);
  for (const rel of strays) {
    if (preview) {
      reporter.notice(`a temp file left by an interrupted pass is removed by the next pass: ${rel}`);
      continue;
    }
    await unlink(join(settings.targetDir, rel)).catch(() => undefined);
    reporter.notice(`removed a temp file left by an interrupted pass: ${rel}`);
  }
  for (const k of kept) {
    // Our own journal left in place: the pass's recovery (or a dry run's pending notice) has said why.
    if (k.stateDir === resolve(settings.stateDir)) continue;
    const commit =
      k.needs.kind === 'names' ? `the interrupted commit of ${k.needs.createdAt} journaled in ${k.needs.journal}` : `the unreadable journal ${k.needs.journal}`;
    const text = preview
      ? `${k.files.length} staged files in the target belong to ${commit} (another state dir, ${k.stateDir}): the next pass completes that commit`
      : `left ${k.files.length} staged files in the target for ${commit} (another state dir, ${k.stateDir}): ` +
        `a pass or "xroad-sync pause" with --state-dir ${k.stateDir}, run as the user that wrote it, completes that commit; ` +
        `if that state dir is no longer used, remove its journal and the next pass removes the files`;
    noticeOnce(reporter, `${preview}:${k.needs.journal}@${k.needs.kind === 'names' ? k.needs.createdAt : ''}`, text);
  }
}

/** What is said once per process (a daemon would say it every pass otherwise). */
const saidOnce = new Set<string>();
export function noticeOnce(reporter: Pick<PassReporter, 'notice'>, key: string, text: string): void {
  if (saidOnce.has(key)) return;
  saidOnce.add(key);
  reporter.notice(text);
}

export function checkAborted(hooks: PassHooks): void {
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
  const doomed = plan.changes.filter((c) => c.kind === 'delete' && c.target.type !== 'dir').map((c) => `/${c.path}`);
  const limit = settings.maxDelete ?? Math.max(1, Math.floor(plan.targetFiles / 2));
  if (doomed.length > limit) {
    // All that is known is that these files are here and not on the master: the master may have lost
    // them, or they were made on this slave. The message says so and names both ways out.
    doomed.sort();
    const shown = doomed.slice(0, 5).join(', ') + (doomed.length > 5 ? ` and ${doomed.length - 5} more` : '');
    throw new SafetyValveError(
      `refusing to delete ${doomed.length} files that exist only on this slave, not on the master's ${settings.sourceDir} ` +
        `(limit ${limit}${settings.maxDelete === undefined ? ': half of the synced files' : ''}): ${shown}`,
      {
        subject: '--max-delete',
        hint:
          `if they are files of this slave: protect them with --exclude (e.g. --exclude ${doomed[0]}) in XROAD_SYNC_OPTS of /etc/default/xroad-sync; ` +
          `if the master really lost them: run once with --force, or raise --max-delete`,
      },
    );
  }
}

/** Limits that keep a runaway or hostile master from filling the slave's disk. */
function enforceLimits(plan: Plan, limits: TransferLimits): void {
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
