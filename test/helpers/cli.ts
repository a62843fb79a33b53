/**
 * The compiled CLI as a child process, for any command (run-sync.ts covers
 * `sync` only): one-shot runs, long-running ones (daemon) with their stdout
 * parsed as pino JSON records, and a bounded poll helper. Every wait here
 * has a deadline; children are SIGKILLed when they outlive it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseRecords } from '../../src/report/logger.js';
import { cliForOtherUsers } from './other-user.js';
import type { TestMaster } from './sshd.js';

export { parseRecords };

/** dist/test/helpers/cli.js → dist/src/cli/main.js */
export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface CliRun {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly elapsedMs: number;
}

export interface RunningCli {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** stdout lines that parse as JSON objects (the daemon's pino records). */
  records(): Array<Record<string, unknown>>;
  /** Settles when the child exits; SIGKILLed after `timeoutMs`. */
  readonly done: Promise<CliRun>;
  /** SIGTERM, wait up to `graceMs`, then SIGKILL; resolves with the run. Safe to call twice. */
  stop(graceMs?: number): Promise<CliRun>;
}

export interface CliOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** Default 30 s for runCli, 120 s for startCli. */
  readonly timeoutMs?: number;
  /** A command the CLI runs under (e.g. `unshare -m sh -c …`): it gets node, the CLI and the arguments as its last words. */
  readonly under?: readonly string[];
}

function cleanEnv(extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  // Flags are explicit; the caller's environment must not choose a master, user or fault.
  delete env.MASTER;
  delete env.XROAD_USER;
  delete env.XROAD_SYNC_OPTS;
  delete env.SERVERCONF_REPLICA;
  if (!extra?.XROAD_SYNC_TEST_HOOK) delete env.XROAD_SYNC_TEST_HOOK;
  // Never the machine's /etc/default/xroad-sync: a test names its settings file, or none ('').
  env.XROAD_SYNC_SETTINGS = extra?.XROAD_SYNC_SETTINGS ?? '';
  // Every daemon pass as a JSON record (quiet ones are debug): suites count passes by them.
  env.XROAD_SYNC_LOG_LEVEL = extra?.XROAD_SYNC_LOG_LEVEL ?? 'debug';
  return env;
}

export function startCli(args: readonly string[], opts: CliOptions = {}): RunningCli {
  const started = Date.now();
  // Another user (runuser) may not reach this checkout (a 0700 clone): give it node and the bundle from
  // a world-readable place. Other wrappers (unshare with a private /tmp) keep the checkout's own.
  const cli = opts.under?.[0] === 'runuser' ? cliForOtherUsers() : { node: process.execPath, script: CLI };
  const words = [...(opts.under ?? []), cli.node, cli.script, ...args];
  const child = spawn(words[0]!, words.slice(1), { env: cleanEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
  const done = new Promise<CliRun>((resolve, reject) => {
    child.once('error', (err) => (clearTimeout(timer), reject(err)));
    child.once('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, elapsedMs: Date.now() - started });
    });
  });
  const exited = (): boolean => child.exitCode !== null || child.signalCode !== null;
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    records: () => parseRecords(stdout),
    done,
    async stop(graceMs = 5_000) {
      if (!exited()) child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      try {
        return await done;
      } finally {
        clearTimeout(killer);
      }
    },
  };
}

export function runCli(args: readonly string[], opts: CliOptions = {}): Promise<CliRun> {
  return startCli(args, { ...opts, timeoutMs: opts.timeoutMs ?? 30_000 }).done;
}

/** The per-pass flags a test passes to sync/daemon/check, every path explicit. */
export interface PassPaths {
  readonly source: string;
  readonly target: string;
  readonly stateDir: string;
  readonly flagFile: string;
  readonly logFile?: string;
  readonly port?: number;
  readonly knownHosts?: string;
  readonly identity?: string;
}

export function passArgs(master: TestMaster, p: PassPaths): string[] {
  return [
    '--master',
    master.host,
    '--port',
    String(p.port ?? master.port),
    '--user',
    master.user,
    '--identity',
    p.identity ?? master.identity,
    '--known-hosts',
    p.knownHosts ?? master.knownHosts,
    '--source',
    p.source.endsWith('/') ? p.source : `${p.source}/`,
    '--target',
    p.target,
    '--state-dir',
    p.stateDir,
    '--log-file',
    p.logFile ?? path.join(p.stateDir, 'sync.log'),
    '--flag-file',
    p.flagFile,
    '--connect-timeout',
    '3',
    '--timeout',
    '5',
  ];
}

export { sleep, waitFor } from './wait.js';
