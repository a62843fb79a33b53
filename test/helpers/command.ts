/**
 * Any command as a child process, output collected, SIGKILLed after
 * `timeoutMs` (60 s by default): the package and systemd suites run system
 * tools (dpkg, apt-get, nsenter, the installed executable) through it.
 */
import { spawn } from 'node:child_process';

export interface CommandRun {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

export function runCommand(cmd: string, args: readonly string[], opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<CommandRun> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.once('error', (err) => (clearTimeout(timer), reject(new Error(`${cmd}: ${err.message}`))));
    child.once('close', (status, signal) => (clearTimeout(timer), resolve({ status, signal, stdout, stderr, ms: Date.now() - started })));
  });
}
