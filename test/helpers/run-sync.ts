/**
 * Runs `xroad-sync sync` the way an operator (or the systemd unit) does: the
 * compiled CLI as a child process, against a TestMaster, with every path
 * given as a flag. Bounded: the child is SIGKILLed after `timeoutMs`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestMaster } from './sshd.js';

/** dist/test/helpers/run-sync.js → dist/src/cli/main.js */
export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface RunSyncOptions {
  readonly master: TestMaster;
  /** Directory on the master; passed with a trailing slash, like the guide's `:/etc/xroad/`. */
  readonly source: string;
  readonly target: string;
  /** Lock and status; also holds the default log (`sync.log`) and flag (`flag`) files. */
  readonly stateDir: string;
  /** Extra flags, appended after the defaults (commander: a later flag wins). */
  readonly args?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly port?: number;
  readonly user?: string;
  readonly knownHosts?: string;
  /** Default `<stateDir>/sync.log`. */
  readonly logFile?: string;
  /** Default `<stateDir>/flag`. */
  readonly flagFile?: string;
  /** Default 60 s; the child is SIGKILLed after it and the result says `timedOut`. */
  readonly timeoutMs?: number;
}

export interface SyncRun {
  /** Exit code, null when killed by a signal. */
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** The rsync-format log as it is after the run ('' when absent). */
  readonly log: string;
  readonly elapsedMs: number;
  readonly timedOut: boolean;
}

export interface StartedSync {
  readonly child: ChildProcess;
  /** Everything the child wrote to stderr so far. */
  stderrSoFar(): string;
  readonly done: Promise<SyncRun>;
}

export function syncArgs(opts: RunSyncOptions): string[] {
  const source = opts.source.endsWith('/') ? opts.source : `${opts.source}/`;
  return [
    'sync',
    '--master', opts.master.host,
    '--port', String(opts.port ?? opts.master.port),
    '--user', opts.user ?? opts.master.user,
    '--identity', opts.master.identity,
    '--known-hosts', opts.knownHosts ?? opts.master.knownHosts,
    '--source', source,
    '--target', opts.target,
    '--state-dir', opts.stateDir,
    '--log-file', logFileOf(opts),
    '--flag-file', opts.flagFile ?? path.join(opts.stateDir, 'flag'),
    ...(opts.args ?? []),
  ];
}

export function logFileOf(opts: Pick<RunSyncOptions, 'stateDir' | 'logFile'>): string {
  return opts.logFile ?? path.join(opts.stateDir, 'sync.log');
}

/** Starts the CLI and returns at once; `done` settles when it exits (or is killed on timeout). */
export function startSync(opts: RunSyncOptions): StartedSync {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const started = Date.now();
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env };
  // Flags are explicit; keep the caller's environment from choosing a master or user.
  delete env.MASTER;
  delete env.XROAD_USER;
  if (!opts.env?.XROAD_SYNC_TEST_HOOK) delete env.XROAD_SYNC_TEST_HOOK;
  const child = spawn(process.execPath, [CLI, ...syncArgs(opts)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const done = new Promise<SyncRun>((resolve, reject) => {
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (status, signal) => {
      clearTimeout(timer);
      const elapsedMs = Date.now() - started;
      readFile(logFileOf(opts), 'utf8')
        .catch(() => '')
        .then((log) => resolve({ status, signal, stdout, stderr, log, elapsedMs, timedOut }));
    });
  });
  return { child, stderrSoFar: () => stderr, done };
}

export function runSync(opts: RunSyncOptions): Promise<SyncRun> {
  return startSync(opts).done;
}

/** The log's messages without the `YYYY/MM/DD HH:MM:SS [PID] ` prefix. */
export function logMessages(log: string): string[] {
  return log
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.replace(/^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d \[\d+\] /, ''));
}

/** Everything worth printing when an assertion about a run fails. */
export function describeRun(run: SyncRun): string {
  return `exit ${run.status}${run.signal ? ` (signal ${run.signal})` : ''}${run.timedOut ? ' TIMED OUT' : ''} after ${run.elapsedMs} ms\n` +
    `--- stderr\n${run.stderr}--- stdout\n${run.stdout}--- log\n${run.log}`;
}
