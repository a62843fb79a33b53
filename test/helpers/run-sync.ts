/**
 * Runs `xroad-sync sync` the way an operator (or the systemd unit) does: the
 * compiled CLI as a child process, against a TestMaster, with every path
 * given as a flag. Bounded: the child is SIGKILLed after `timeoutMs`.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { lstat, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { PassPoint } from '../../src/pass/types.js';
import { CLI } from './cli.js';
import type { TestMaster, TreeEntrySnapshot } from './sshd.js';
import { until } from './wait.js';

export { CLI };

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

/**
 * Waits until `pass` says its test hook (XROAD_SYNC_TEST_HOOK=pause@POINT) holds it at `point`, and
 * fails with its output when it ended or timed out without getting there.
 */
export async function heldAt(pass: StartedSync, point: PassPoint, timeoutMs = 30_000): Promise<void> {
  const said = (): boolean => pass.stderrSoFar().includes(`test hook paused at ${point}`);
  await until(() => said() || pass.child.exitCode !== null, timeoutMs);
  assert.ok(said(), `the pass did not pause at ${point}:\n${pass.stderrSoFar()}`);
}

/** A pass held at a test hook point until `release()`, which lets it go on and resolves with its run. */
export interface HeldSync extends StartedSync {
  release(): Promise<SyncRun>;
}

/**
 * Starts a pass with XROAD_SYNC_TEST_HOOK=pause@POINT and returns once it is held there (released by
 * SIGUSR2 when the test has done what it holds the pass for, however slow the machine).
 */
export async function startHeldAt(opts: RunSyncOptions, point: PassPoint, timeoutMs = 30_000): Promise<HeldSync> {
  const pass = startSync({ ...opts, env: { ...opts.env, XROAD_SYNC_TEST_HOOK: `pause@${point}`, XROAD_SYNC_TEST_PAUSE_MS: '60000' } });
  await heldAt(pass, point, timeoutMs);
  return {
    ...pass,
    release: () => {
      pass.child.kill('SIGUSR2');
      return pass.done;
    },
  };
}

export function syncArgs(opts: RunSyncOptions): string[] {
  const source = opts.source.endsWith('/') ? opts.source : `${opts.source}/`;
  return [
    'sync',
    '--master',
    opts.master.host,
    '--port',
    String(opts.port ?? opts.master.port),
    '--user',
    opts.user ?? opts.master.user,
    '--identity',
    opts.master.identity,
    '--known-hosts',
    opts.knownHosts ?? opts.master.knownHosts,
    '--source',
    source,
    '--target',
    opts.target,
    '--state-dir',
    opts.stateDir,
    '--log-file',
    logFileOf(opts),
    '--flag-file',
    opts.flagFile ?? path.join(opts.stateDir, 'flag'),
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
  delete env.XROAD_SYNC_OPTS;
  if (!opts.env?.XROAD_SYNC_TEST_HOOK) delete env.XROAD_SYNC_TEST_HOOK;
  env.XROAD_SYNC_SETTINGS = opts.env?.XROAD_SYNC_SETTINGS ?? '';
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
  return (
    `exit ${run.status}${run.signal ? ` (signal ${run.signal})` : ''}${run.timedOut ? ' TIMED OUT' : ''} after ${run.elapsedMs} ms\n` +
    `--- stderr\n${run.stderr}--- stdout\n${run.stdout}--- log\n${run.log}`
  );
}

// ---------------------------------------------------------------------------
// Tree and log checks shared by the sync suites

/** A port on 127.0.0.1 that nobody listens on (bound, read, closed). */
export { freePort as closedPort } from './sshd.js';

/** `tree` without the given paths and everything below them. */
export function withoutPaths<T>(tree: Map<string, T>, drop: readonly string[]): Map<string, T> {
  return new Map([...tree].filter(([p]) => !drop.some((d) => p === d || p.startsWith(`${d}/`))));
}

/** Only the given paths (and what lies below them). */
export function onlyPaths<T>(tree: Map<string, T>, keep: readonly string[]): Map<string, T> {
  return new Map([...tree].filter(([p]) => keep.some((d) => p === d || p.startsWith(`${d}/`))));
}

/** For deepEqual diffs that name the path. */
export function obj<T>(tree: Map<string, T>): Record<string, T> {
  return Object.fromEntries(tree);
}

export interface StatSnapshot {
  readonly ino: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly type: 'dir' | 'symlink' | 'other';
}

/** lstat of every path below `root` (root itself as ''): what "rewrites nothing" is checked against. */
export async function statTree(root: string): Promise<Map<string, StatSnapshot>> {
  const out = new Map<string, StatSnapshot>();
  const walk = async (rel: string): Promise<void> => {
    const st = await lstat(rel === '' ? root : path.join(root, rel));
    out.set(rel, {
      ino: st.ino,
      mtimeMs: st.mtimeMs,
      ctimeMs: st.ctimeMs,
      mode: st.mode,
      uid: st.uid,
      gid: st.gid,
      type: st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other',
    });
    if (!st.isDirectory()) return;
    for (const name of (await readdir(rel === '' ? root : path.join(root, rel))).sort()) {
      await walk(rel === '' ? name : `${rel}/${name}`);
    }
  };
  await walk('');
  return out;
}

/** Paths below `root` whose name looks like one of our temp files (or any `.xroad-sync.` leftover). */
export async function leftoverTemps(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const d of await readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, d.name);
      if (d.name.startsWith('.xroad-sync.') || d.name === '.~tmp~') found.push(path.relative(root, full));
      if (d.isDirectory()) await walk(full);
    }
  };
  await walk(root);
  return found;
}

/** rsync's total size: regular file bytes plus symlink target lengths. */
export function totalSize(tree: Map<string, TreeEntrySnapshot>): number {
  let n = 0;
  for (const e of tree.values()) if (e.type === 'file' || e.type === 'symlink') n += e.size;
  return n;
}

export const LOG_PREFIX = /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d \[\d+\] /;
export const FINAL_LINE = /^sent \d+ bytes {2}received \d+ bytes {2}total size (\d+)$/;

/**
 * Every line has rsync's `YYYY/MM/DD HH:MM:SS [PID] ` prefix; a pass that
 * connected starts with `receiving file list`; success ends with the
 * `sent ... total size N` line (N returned), failure with `rsync error: ... (code N)`.
 */
export function assertLogFormat(log: string, expect: { code: number; connected?: boolean }): number | undefined {
  assert.ok(log.endsWith('\n'), `log does not end with a newline:\n${log}`);
  const lines = log.slice(0, -1).split('\n');
  for (const line of lines) assert.match(line, LOG_PREFIX, `log line without the rsync prefix: ${JSON.stringify(line)}`);
  const messages = logMessages(log);
  if (expect.connected ?? true) assert.equal(messages[0], 'receiving file list', `first log line:\n${log}`);
  const last = messages.at(-1) ?? '';
  if (expect.code === 0) {
    const m = FINAL_LINE.exec(last);
    assert.ok(m, `last log line is not the "sent ... total size" line: ${JSON.stringify(last)}\n${log}`);
    assert.ok(!messages.some((l) => l.startsWith('rsync error:')), `an error line in a successful pass:\n${log}`);
    return Number(m[1]);
  }
  assert.match(last, new RegExp(`^rsync error: .+ \\(code ${expect.code}\\)`), `last log line is not "rsync error: ... (code ${expect.code})":\n${log}`);
  assert.ok(!messages.some((l) => FINAL_LINE.test(l)), `a "sent ... total size" line in a failed pass:\n${log}`);
  return undefined;
}

/** The item lines (`%i %n%L` and `*deleting`) of a log, without prefix. */
export function itemLines(log: string): string[] {
  return logMessages(log).filter((l) => /^([<>ch.][fdLDS][c.+ ][s.+ ][tT.+ ][p.+ ][o.+ ][g.+ ][u.+ ][a.+ ][x.+ ]|\*deleting {2}) /.test(l));
}
