/**
 * `xroad-sync daemon`: passes on a schedule over one warm SSH session, paused
 * live by the flag file, corrective passes when someone edits a synced file
 * on this (read-only) slave, clean stop on SIGTERM/SIGINT within 5 s.
 */

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { type FSWatcher, watch } from 'chokidar';
import { journalPath } from '../commit/journal.js';
import { describeError, ExitCode, exitCodeOf, isLockWait } from '../errors.js';
import { compileFilter } from '../filter/rsync-filter.js';
import { KnownTarget } from '../local/known-target.js';
import { type TargetWatcher, watchTarget } from '../local/target-watcher.js';
import { isTempName } from '../local/temp-names.js';
import type { PassResult } from '../pass/types.js';
import { KnownMaster } from '../remote/known-master.js';
import { WarmSessionProvider } from '../remote/provider.js';
import { createLogger, type Logger, logLevelFromEnv } from '../report/logger.js';
import { LocalEdits } from '../run/local-edits.js';
import { QuietPasses } from '../run/quiet-passes.js';
import { runReportedPass } from '../run/reported-pass.js';
import { fullScanPeriodFromEnv, hangOnSignalFromEnv } from '../run/test-hooks.js';
import type { PassSettings } from '../settings/pass-settings.js';
import { acquireDaemonLock, type DaemonLock, ensureStateDir } from '../state/lock.js';
import { PassMetrics } from '../state/metrics-file.js';
import { readStatus, writeStatus } from '../state/status.js';
import { type DaemonTargetLock, lockTargetForDaemon } from '../state/target-lock.js';
import { notice } from '../util/output.js';
import { PauseFlag } from './pause-flag.js';
import { PassScheduler } from './scheduler.js';
import { lastPassOf, SystemdNotifier, takeNotifyEnv } from './systemd-notify.js';
import { WallClockSteps } from './wall-clock.js';

/** The safety net under the watcher: the target is scanned in full (listing and content) at least this often. */
const FULL_SCAN_MS = 60_000;
/**
 * A local edit arrives as several events (truncate, writes, close): the
 * corrective pass starts once they have stopped this long, so it does not
 * read a half-written file and leave it for the next scheduled pass.
 */
const LOCAL_EDIT_SETTLE_MS = 250;

export interface DaemonOptions {
  readonly intervalMs: number;
  /** Share of one core that polling an unchanged master may use (0.02: 2 %); undefined or 1: no limit. */
  readonly pollCpuShare?: number;
  /** Events for paths a pass wrote are ignored this long after it (the watcher reports our own renames late). */
  readonly quietAfterPassMs?: number;
  readonly stopDeadlineMs?: number;
}

export async function runDaemon(settings: PassSettings, opts: DaemonOptions): Promise<number> {
  // Before anything slow: logrotate's reload (SIGHUP) right after a (re)start must not kill the daemon.
  let logger: Logger | undefined;
  process.on('SIGHUP', () => logger?.info({ msg: 'SIGHUP: the log file is reopened at the next pass' }));
  // One daemon per state dir: a second one stops here, naming the first one's pid.
  const daemonLock = await acquireDaemonLock(settings.stateDir, notice);
  try {
    // One writer per target, for the daemon's lifetime: a pass or daemon with another state dir is refused.
    const targetLock = await lockTargetForDaemon(settings.targetDir, { stateDir: settings.stateDir, lockFile: daemonLock.path }, settings.lockWaitMs);
    try {
      return await runLockedDaemon(settings, opts, { daemonLock, targetLock }, (l) => (logger = l));
    } finally {
      targetLock.release();
    }
  } finally {
    await daemonLock.release();
  }
}

async function runLockedDaemon(settings: PassSettings, opts: DaemonOptions, locks: DaemonLocks, onLogger: (logger: Logger) => void): Promise<number> {
  const logger = createLogger({ destination: 1, level: logLevelFromEnv() });
  onLogger(logger);
  const provider = new WarmSessionProvider(settings.connection, settings.sourceDir);
  const filter = compileFilter(settings.excludes);
  let abort = new AbortController();
  // Paths our last pass wrote: their watcher events are our own, not an operator's edit.
  let ownWrites = new Set<string>();
  let ownWritesUntil = 0; // monotonic, as every interval here
  // The watchers start before the first pass; until it has run, the target is not ours to judge.
  let firstPassDone = false;
  const fullScanMs = fullScanPeriodFromEnv() ?? FULL_SCAN_MS;
  // The last target scan, reused by no-change passes while the watcher sees nothing (at most 60 s).
  const knownTarget = new KnownTarget(fullScanMs);
  // The last master listing, per directory: an unchanged directory is not turned into entries again (remote/known-master.ts).
  const knownMaster = new KnownMaster();
  // Local edits: noted by the watcher or the full scan's content check, compared with the master by the next pass.
  const localEdits = new LocalEdits({ targetDir: settings.targetDir, stateDir: settings.stateDir, filter, logger, contentCheckEveryMs: fullScanMs });
  const wallClock = new WallClockSteps();
  // No-change passes: two log lines a minute, status.json every 30 s (run/quiet-passes.ts says why).
  const quiet = new QuietPasses();
  // --metrics-file: counters kept across passes; written at start, stop, pause/resume and with status.json.
  const metrics = settings.metricsFile ? await PassMetrics.load({ ...settings, metricsFile: settings.metricsFile }, { daemon: true }) : undefined;
  const flushMetrics = (): Promise<void> | undefined =>
    metrics?.flush().catch((err: unknown) => logger.warn({ msg: 'cannot write --metrics-file', file: settings.metricsFile, error: describeError(err) }));
  // Under systemd (Type=notify): READY=1 after the first pass, STATUS= naming the last one, watchdog pings.
  const systemd = new SystemdNotifier(logger, takeNotifyEnv());
  hangOnSignalFromEnv();

  // Started before the first pass, after the scheduler exists (a pass rechecks the target's watch).
  let watchers: Watchers | undefined;
  const scheduler = new PassScheduler({
    intervalMs: opts.intervalMs,
    jitter: 0.1,
    // A short --interval must not mean retrying a down master every second: back off to 30 s at least.
    maxBackoffMs: Math.max(opts.intervalMs, 30_000),
    // Polling an unchanged master keeps to a CPU share (a large tree is listed less often; changes still start a pass at once).
    pollCpuShare: opts.pollCpuShare,
    fullScanEveryMs: fullScanMs,
    runPass: async () => {
      await keepLocks(locks, logger);
      // A target restored by moving the old one aside is watched afresh. Looked at when the pass scans the
      // target anyway (after a target event, and at each full scan): an idle pass touches nothing there.
      if (!knownTarget.reusable()) watchers?.target.recheck();
      // Logged once, when the flag appeared. An interrupted commit is still completed while paused (the pass does only that).
      if (existsSync(settings.flagFile) && !existsSync(journalPath(settings.stateDir))) {
        logger.debug({ msg: 'pass skipped: sync paused' });
        systemd.passEnded({ kind: 'paused', at: new Date(), flagFile: settings.flagFile });
        return 'skipped';
      }
      noticeClockStep();
      const fullScan = localEdits.contentCheckDue();
      if (fullScan) {
        // The full scan: the listing is taken afresh too, by the content check's scan, which this pass plans against.
        knownTarget.forget();
        // A target that cannot be read is the pass's to report, with its typed error.
        await localEdits.checkContent(knownTarget).catch((err: unknown) => logger.warn({ msg: 'content check failed', error: describeError(err) }));
      }
      const verify = localEdits.startPass();
      let passResult: PassResult | undefined;
      abort = new AbortController();
      const before = provider.connections;
      try {
        const result = await runReportedPass(settings, provider, {
          signal: abort.signal,
          printItems: false,
          logger,
          knownTarget,
          knownMaster,
          quiet,
          verify,
          recordIncoming: (incoming) => localEdits.recordIncoming(incoming),
          metrics,
          // A by-hand pass (sync, resume --now) holds the lock: wait for it, it does our work.
          lockWait: {
            waitMs: Math.max(opts.intervalMs, settings.lockWaitMs),
            signal: abort.signal,
            onWait: (holder) => logger.info({ msg: 'waiting for a pass run by hand', pid: holder.pid }),
            onTakeover: (notice) => logger.warn({ msg: notice }),
          },
        });
        passResult = result;
        // What polling costs: all the CPU since the last pass ended (its full scans and content checks too),
        // when this one changed nothing. The CPU of a pass that changed something, failed, or compared local
        // edits with the master (thousands after a by-hand pass beside the daemon) follows changes, not the tree.
        const cycleCpuMs = cpuMsSince(cpuMark);
        cpuMark = process.cpuUsage();
        if (result.result === 'ok' && result.changedPaths.length === 0 && verify.size === 0 && !isLockWait(result.error)) notePollCost(cycleCpuMs, fullScan);
        systemd.passEnded(isLockWait(result.error) ? { kind: 'skipped', at: result.finishedAt, why: 'another pass kept the lock' } : lastPassOf(result));
        // Only a clean no-change pass leaves the target as scanned (a by-hand pass we waited for may have written it).
        if (result.result !== 'ok' || result.changedPaths.length > 0) knownTarget.forget();
        if (isLockWait(result.error)) {
          logger.warn({ msg: 'pass skipped: another pass kept the lock', error: describeError(result.error) });
          return 'skipped';
        }
        if (provider.connections > before) logger.info({ msg: 'connected', connections: provider.connections, master: settings.connection.host });
        ownWrites = new Set(result.changedPaths);
        if (result.result === 'failed') logger.warn({ msg: 'pass failed; will reconnect and retry with backoff', error: describeError(result.error) });
        return result.result;
      } catch (error) {
        knownTarget.forget();
        systemd.passEnded(lastPassOf({ thrown: error }));
        throw error;
      } finally {
        firstPassDone = true;
        ownWritesUntil = performance.now() + (opts.quietAfterPassMs ?? 2000);
        if (await localEdits.endPass(passResult)) scheduler.requestNow();
      }
    },
  });

  let cpuMark = process.cpuUsage();
  // Said when polling starts to be spaced out for its CPU share, and when it is back to --interval.
  const notePollCost = (cpuMs: number, fullScan: boolean): void => {
    const change = scheduler.notePollCost(cpuMs, { fullScan });
    if (change === undefined) return;
    const { spacedOut, spacingMs, passCostMs } = change;
    const share = `${(opts.pollCpuShare ?? 1) * 100} %`;
    logger.info(
      spacedOut
        ? {
            msg: `passes are spaced ${(spacingMs / 1000).toFixed(1)} s apart: a pass over the unchanged master costs ${passCostMs.toFixed(0)} ms of CPU, and polling keeps to --poll-cpu ${share} of a core (changes seen locally, and resume, still start a pass at once)`,
            spacingS: spacingMs / 1000,
          }
        : { msg: `passes are back to every --interval: polling costs less than --poll-cpu ${share} of a core`, intervalS: opts.intervalMs / 1000 },
    );
  };

  // The corrective pass for local edits, once their events have settled.
  let settling: NodeJS.Timeout | undefined;
  const correctOnceSettled = (): void => {
    clearTimeout(settling);
    settling = setTimeout(() => scheduler.requestNow(), LOCAL_EDIT_SETTLE_MS);
  };
  // After a wall-clock step status.json's time misleads monitoring until rewritten: record the next pass at once.
  const noticeClockStep = (): void => {
    const stepMs = wallClock.step();
    if (stepMs === 0) return;
    logger.warn({ msg: 'wall clock stepped; intervals are unaffected, this pass is recorded at once', stepS: stepMs / 1000 });
    quiet.reset();
  };

  await ensureStateDir(settings.stateDir);
  await setDaemonPid(settings.stateDir, process.pid);
  let staleView: (why: string) => void = () => undefined;
  const stale = new Promise<string>((resolve) => (staleView = resolve));
  const pauseFlag = new PauseFlag(settings.flagFile, settings.stateDir, {
    change: (present) => {
      logger.info({ msg: present ? 'sync paused: flag file created' : 'sync resumed: flag file removed', flagFile: settings.flagFile });
      void flushMetrics();
      if (!present) {
        quiet.reset(); // `resume` waits for this pass's record in status.json
        scheduler.requestNow();
      }
    },
    stale: staleView,
    writeFailed: (error) => logger.warn({ msg: 'cannot record that the daemon saw the flag file; pause will report this daemon as not answering', error }),
  });
  await pauseFlag.start();
  watchers = await startWatchers(settings, {
    onFlag: () => pauseFlag.look(),
    onLocalChange: (path, isDirectory) => {
      // During a pass the commit re-checks each path itself; localEdits sorts its events out when it ends.
      if (!firstPassDone || (ownWrites.has(path) && performance.now() < ownWritesUntil)) return;
      if (isTempName(basename(path)) || filter.isExcludedPath(path, isDirectory)) return;
      if (localEdits.watcherSaw(path)) correctOnceSettled();
    },
    onTargetEvent: () => {
      knownTarget.forget();
      locks.targetLock.noteTargetEvent();
    },
    onError: (err) => {
      knownTarget.forget();
      logger.warn({ msg: 'file watcher error', error: describeError(err) });
    },
  });
  await flushMetrics();
  logger.info({
    msg: 'daemon started',
    pid: process.pid,
    intervalS: opts.intervalMs / 1000,
    master: settings.connection.host,
    target: settings.targetDir,
    inotifyWatches: inotifyWatches(),
    watchedDirectories: watchers.target.watchedDirectories,
  });
  systemd.start();
  scheduler.start();
  // The full scan is due every fullScanMs even when --interval is longer (it runs at the start of a pass):
  // looked at four times a period, it starts at most a quarter period late.
  const fullScanTimer = setInterval(() => localEdits.contentCheckDue() && scheduler.requestNow(), fullScanMs / 4);

  const signal = await Promise.race([waitForStopSignal(logger), stale.then((why) => ({ why }))]);
  if (typeof signal === 'string') logger.info({ msg: 'stopping', signal });
  else logger.error({ msg: `stopping: ${signal.why}; exiting so that systemd starts the daemon again with the current directory` });
  await pauseFlag.stop();
  const systemdStopped = systemd.stop();
  clearTimeout(settling);
  clearInterval(fullScanTimer);
  abort.abort();
  provider.drop(); // in-flight fetches fail at once; staging then removes its temp files
  await within(opts.stopDeadlineMs ?? 3000, scheduler.stop());
  await within(1000, Promise.all([systemdStopped, watchers.flag.close(), watchers.target.close()]));
  await clearDaemonPid(settings.stateDir, logger);
  metrics?.setDaemonUp(false);
  await flushMetrics();
  // What still keeps the event loop alive (a watcher chokidar failed to close, a socket): logged, so a test can see it.
  const openHandles = await settledHandles(500);
  logger.info({ msg: 'daemon stopped', openHandles, inotifyWatches: inotifyWatches() });
  if (typeof signal === 'string') return 0;
  notice(`${signal.why} (restart the daemon: systemctl restart xroad-sync-daemon)`);
  return ExitCode.LOCAL_IO;
}

function cpuMsSince(before: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000;
}

/** Resolves when `promise` settles or after `ms`, whichever comes first; the timer never outlives it. */
async function within(ms: number, promise: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  try {
    await Promise.race([
      promise.then(
        () => undefined,
        () => undefined,
      ),
      deadline,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Watches the kernel still holds for this process (Linux /proc/self/fdinfo), or null where that cannot be read. */
function inotifyWatches(): number | null {
  let fds: string[];
  try {
    fds = readdirSync('/proc/self/fdinfo');
  } catch {
    return null;
  }
  let count = 0;
  for (const fd of fds) {
    // The fd readdir itself used is gone by now: skip what cannot be read.
    const info = (() => {
      try {
        return readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
      } catch {
        return '';
      }
    })();
    count += info.split('\n').filter((line) => line.startsWith('inotify wd:')).length;
  }
  return count;
}

/** Active handles other than stdio, after giving closing sockets up to `ms` to go. */
async function settledHandles(ms: number): Promise<string[]> {
  const open = (): string[] => process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap' && r !== 'PipeWrap');
  const deadline = performance.now() + ms;
  while (open().length > 0 && performance.now() < deadline) await new Promise<void>((resolve) => setImmediate(resolve));
  return open();
}

interface WatchHandlers {
  /** Something happened in the flag's directory: look the flag up again. */
  onFlag(): void;
  onLocalChange(relPath: string, isDirectory: boolean): void;
  /** Any event in the target (a chmod too), before any filtering. */
  onTargetEvent(): void;
  onError(err: unknown): void;
}

interface Watchers {
  readonly flag: FSWatcher;
  readonly target: TargetWatcher;
}

async function startWatchers(settings: PassSettings, on: WatchHandlers): Promise<Watchers> {
  // Watch the flag's directory, not the flag: the file comes and goes.
  const flagDir = dirname(settings.flagFile);
  const flagWatcher = watch(existsSync(flagDir) ? flagDir : dirname(flagDir), { ignoreInitial: true, depth: 1 });
  flagWatcher.on('all', () => on.onFlag());
  flagWatcher.on('error', on.onError);
  // One inotify watch per directory of the target: its cost follows the directories, not the files.
  const target = watchTarget(settings.targetDir, {
    // Temp files are a pass's own (or a crashed pass's): thousands of them must not become watched events.
    ignoredName: isTempName,
    onPath: on.onLocalChange,
    onEvent: on.onTargetEvent,
    onError: on.onError,
  });
  await new Promise<void>((resolve) => flagWatcher.once('ready', () => resolve()));
  return { flag: flagWatcher, target };
}

function waitForStopSignal(logger: Logger): Promise<string> {
  return new Promise((resolve) => {
    // process.on, not once: with no listener left, signal-exit (used by
    // write-file-atomic) re-raises a second SIGTERM and kills us mid-stop.
    let stopping = false;
    const stop = (signal: string) => () => {
      if (stopping) {
        // A second signal while stopping: the operator (or systemd) will not wait. Staging keeps the target whole.
        logger.warn({ msg: `second ${signal} while stopping: exiting now` });
        process.exit(ExitCode.SIGNAL);
      }
      stopping = true;
      resolve(signal);
    };
    process.on('SIGTERM', stop('SIGTERM'));
    process.on('SIGINT', stop('SIGINT'));
    // SIGHUP (logrotate) is acknowledged from the daemon's first moment (runDaemon): each pass opens
    // slave-sync.log afresh in append mode, so after logrotate the next pass already writes the new file.
  });
}

interface DaemonLocks {
  readonly daemonLock: DaemonLock;
  readonly targetLock: DaemonTargetLock;
}

/**
 * Every pass: a stat of the daemon lock; of the target only after a target
 * event or a minute. The state dir removed under us: take our lock again, so
 * status and a second daemon still see us. The target replaced: lock the new
 * one. Lost to another writer meanwhile: it runs, we stop.
 */
async function keepLocks({ daemonLock, targetLock }: DaemonLocks, logger: Logger): Promise<void> {
  try {
    for (const notice of [await daemonLock.reclaimIfLost(), await targetLock.followTarget()]) if (notice) logger.warn({ msg: notice });
  } catch (error) {
    logger.error({ msg: 'stopping: another writer took our lock', error: describeError(error) });
    process.exit(exitCodeOf(error));
  }
}

/**
 * On the way out: a state dir removed under the daemon holds no record to
 * clear (the daemon's lock, which says whether one runs, went with it), and
 * a record that cannot be written must not turn a requested stop into a failure.
 */
async function clearDaemonPid(stateDir: string, logger: Logger): Promise<void> {
  if (!existsSync(stateDir)) return;
  await setDaemonPid(stateDir, null).catch((err: unknown) =>
    logger.warn({ msg: 'cannot clear the daemon pid in status.json', stateDir, error: describeError(err) }),
  );
}

async function setDaemonPid(stateDir: string, pid: number | null): Promise<void> {
  const status = await readStatus(stateDir);
  await writeStatus(stateDir, { ...status, daemonPid: pid });
}
