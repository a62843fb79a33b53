/**
 * `xroad-sync daemon`: passes on a schedule over one warm SSH session, paused
 * live by the flag file, corrective passes when someone edits a synced file
 * on this (read-only) slave, clean stop on SIGTERM/SIGINT within 5 s.
 */
import { watch, type FSWatcher } from 'chokidar';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, relative } from 'node:path';
import type { PassSettings } from '../settings/pass-settings.js';
import { QuietPasses } from '../run/quiet-passes.js';
import { runReportedPass } from '../run/reported-pass.js';
import { describeError, ExitCode, isLockWait } from '../errors.js';
import { compileFilter } from '../filter/rsync-filter.js';
import { KnownTarget } from '../local/known-target.js';
import { isTempName } from '../local/temp-names.js';
import { WarmSessionProvider } from '../remote/provider.js';
import { createLogger, logLevelFromEnv, type Logger } from '../report/logger.js';
import { readStatus, writeStatus } from '../state/status.js';
import { acquireDaemonLock, ensureStateDir } from '../state/lock.js';
import { PassMetrics } from '../state/metrics-file.js';
import { PassScheduler } from './scheduler.js';

/** The safety net under the watcher: the target is scanned in full at least this often. */
const KNOWN_TARGET_MAX_AGE_MS = 60_000;
/**
 * A local edit arrives as several events (truncate, writes, close): the
 * corrective pass starts once they have stopped this long, so it does not
 * read a half-written file and leave it for the next scheduled pass.
 */
const LOCAL_EDIT_SETTLE_MS = 250;

export interface DaemonOptions {
  readonly intervalMs: number;
  /** Events for paths a pass wrote are ignored this long after it (the watcher reports our own renames late). */
  readonly quietAfterPassMs?: number;
  readonly stopDeadlineMs?: number;
}

export async function runDaemon(settings: PassSettings, opts: DaemonOptions): Promise<number> {
  // One daemon per state dir: a second one stops here, naming the first one's pid.
  const daemonLock = await acquireDaemonLock(settings.stateDir, (notice) => process.stderr.write(`xroad-sync: ${notice}\n`));
  try {
    return await runLockedDaemon(settings, opts);
  } finally {
    await daemonLock.release();
  }
}

async function runLockedDaemon(settings: PassSettings, opts: DaemonOptions): Promise<number> {
  const logger = createLogger({ destination: 1, level: logLevelFromEnv() });
  const provider = new WarmSessionProvider(settings.connection, settings.sourceDir);
  const filter = compileFilter(settings.excludes);
  let abort = new AbortController();
  let passing = false;
  // Paths our last pass wrote: their watcher events are our own, not an operator's edit.
  let ownWrites = new Set<string>();
  let ownWritesUntil = 0;
  // The watchers start before the first pass; until it has run, the target is not ours to judge.
  let firstPassDone = false;
  // The last target scan, reused by no-change passes while the watcher sees nothing (at most 60 s).
  const knownTarget = new KnownTarget(KNOWN_TARGET_MAX_AGE_MS);
  // No-change passes: two log lines a minute, status.json every 30 s (run/quiet-passes.ts says why).
  const quiet = new QuietPasses();
  // --metrics-file: counters kept across passes; written at start, stop, pause/resume and with status.json.
  const metrics = settings.metricsFile ? await PassMetrics.load({ ...settings, metricsFile: settings.metricsFile }, { daemon: true }) : undefined;
  const flushMetrics = (): Promise<void> | undefined =>
    metrics?.flush().catch((err: unknown) => logger.warn({ msg: 'cannot write --metrics-file', file: settings.metricsFile, error: describeError(err) }));

  const scheduler = new PassScheduler({
    intervalMs: opts.intervalMs,
    jitter: 0.1,
    // A short --interval must not mean retrying a down master every second: back off to 30 s at least.
    maxBackoffMs: Math.max(opts.intervalMs, 30_000),
    runPass: async () => {
      if (existsSync(settings.flagFile)) return 'skipped'; // logged once, when the flag appeared
      passing = true;
      abort = new AbortController();
      const before = provider.connections;
      try {
        const result = await runReportedPass(settings, provider, {
          signal: abort.signal,
          printItems: false,
          logger,
          knownTarget,
          quiet,
          metrics,
          // A by-hand pass (sync, resume --now) holds the lock: wait for it, it does our work.
          lockWait: {
            waitMs: Math.max(opts.intervalMs, settings.lockWaitMs),
            signal: abort.signal,
            onWait: (holder) => logger.info({ msg: 'waiting for a pass run by hand', pid: holder.pid }),
            onTakeover: (notice) => logger.warn({ msg: notice }),
          },
        });
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
        throw error;
      } finally {
        passing = false;
        firstPassDone = true;
        ownWritesUntil = Date.now() + (opts.quietAfterPassMs ?? 2000);
      }
    },
  });

  // Paths edited locally since the last corrective pass was requested, and the timer that requests it.
  const edited = new Set<string>();
  let settling: NodeJS.Timeout | undefined;
  const correctOnceSettled = (path: string): void => {
    if (!edited.has(path)) logger.warn({ msg: 'synced file changed locally; slaves are read-only, a corrective pass follows', path });
    edited.add(path);
    clearTimeout(settling);
    settling = setTimeout(() => {
      edited.clear();
      scheduler.requestNow();
    }, LOCAL_EDIT_SETTLE_MS);
  };

  await ensureStateDir(settings.stateDir);
  await setDaemonPid(settings.stateDir, process.pid);
  const watchers = await startWatchers(settings, {
    onFlag: (present) => {
      logger.info({ msg: present ? 'sync paused: flag file created' : 'sync resumed: flag file removed', flagFile: settings.flagFile });
      void flushMetrics();
      if (!present) {
        quiet.reset(); // `resume` waits for this pass's record in status.json
        scheduler.requestNow();
      }
    },
    onLocalChange: (path) => {
      // During a pass the commit re-checks each path itself (an edit there is logged and left for the next pass).
      if (passing || !firstPassDone || (ownWrites.has(path) && Date.now() < ownWritesUntil)) return;
      if (isTempName(basename(path)) || filter.isExcludedPath(path, false)) return;
      correctOnceSettled(path);
    },
    onTargetEvent: () => knownTarget.forget(),
    onError: (err) => {
      knownTarget.forget();
      logger.warn({ msg: 'file watcher error', error: describeError(err) });
    },
  });
  await flushMetrics();
  logger.info({ msg: 'daemon started', pid: process.pid, intervalS: opts.intervalMs / 1000, master: settings.connection.host, target: settings.targetDir, inotifyWatches: inotifyWatches() });
  scheduler.start();

  const signal = await waitForStopSignal(logger);
  logger.info({ msg: 'stopping', signal });
  clearTimeout(settling);
  abort.abort();
  provider.drop(); // in-flight fetches fail at once; staging then removes its temp files
  await within(opts.stopDeadlineMs ?? 3000, scheduler.stop());
  await within(1000, Promise.all(watchers.map((w) => w.close())));
  await setDaemonPid(settings.stateDir, null);
  metrics?.setDaemonUp(false);
  await flushMetrics();
  // What still keeps the event loop alive (a watcher chokidar failed to close, a socket): logged, so a test can see it.
  const openHandles = await settledHandles(500);
  logger.info({ msg: 'daemon stopped', openHandles, inotifyWatches: inotifyWatches() });
  return 0;
}

/** Resolves when `promise` settles or after `ms`, whichever comes first; the timer never outlives it. */
async function within(ms: number, promise: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  try {
    await Promise.race([promise.then(() => undefined, () => undefined), deadline]);
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
  const deadline = Date.now() + ms;
  while (open().length > 0 && Date.now() < deadline) await new Promise<void>((resolve) => setImmediate(resolve));
  return open();
}

interface WatchHandlers {
  onFlag(present: boolean): void;
  onLocalChange(relPath: string): void;
  /** Any raw event in the target (a chmod too), before chokidar filters it. */
  onTargetEvent(): void;
  onError(err: unknown): void;
}

async function startWatchers(settings: PassSettings, on: WatchHandlers): Promise<FSWatcher[]> {
  // Watch the flag's directory, not the flag: the file comes and goes.
  const flagDir = dirname(settings.flagFile);
  const flagWatcher = watch(existsSync(flagDir) ? flagDir : dirname(flagDir), { ignoreInitial: true, depth: 1 });
  flagWatcher.on('add', (p) => p === settings.flagFile && on.onFlag(true));
  flagWatcher.on('unlink', (p) => p === settings.flagFile && on.onFlag(false));
  flagWatcher.on('error', on.onError);
  // Temp files are a pass's own (or a crashed pass's): thousands of them must not become watched events.
  const targetWatcher = watch(settings.targetDir, { ignoreInitial: true, followSymlinks: false, ignored: (p: string) => isTempName(basename(p)) });
  for (const event of ['add', 'change', 'unlink'] as const) {
    targetWatcher.on(event, (p) => on.onLocalChange(relative(settings.targetDir, p)));
  }
  // 'raw' is every inotify event chokidar receives, including attribute changes it does not report as 'change'.
  targetWatcher.on('raw', () => on.onTargetEvent());
  targetWatcher.on('all', () => on.onTargetEvent());
  targetWatcher.on('error', on.onError);
  await Promise.all([once(flagWatcher, 'ready'), once(targetWatcher, 'ready')]);
  return [flagWatcher, targetWatcher];
}

function once(watcher: FSWatcher, event: 'ready'): Promise<void> {
  return new Promise((resolve) => watcher.once(event, () => resolve()));
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
    // Each pass opens slave-sync.log afresh in append mode, so after logrotate
    // the next pass already writes the new file; HUP only needs acknowledging.
    process.on('SIGHUP', () => logger.info({ msg: 'SIGHUP: the log file is reopened at the next pass' }));
  });
}

async function setDaemonPid(stateDir: string, pid: number | null): Promise<void> {
  const status = await readStatus(stateDir);
  await writeStatus(stateDir, { ...status, daemonPid: pid });
}
