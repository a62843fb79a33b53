/**
 * Running a command and measuring it: wall time, CPU (user + sys of the
 * child and everything it waited for, e.g. rsync's ssh) and peak RSS.
 *
 * `child_process` gives no rusage, so a wrapper reports it:
 *  - python3 (when present) forks, execs, and wait4()s: wall and CPU to the
 *    microsecond; it runs the command under /usr/bin/time -f %M so peak RSS
 *    is the command's own (a child forked from python would inherit
 *    python's ~10 MB as its high-water mark);
 *  - otherwise /usr/bin/time -f '%e %U %S %M' alone (CPU to 10 ms).
 * One of the two must exist (Debian: apt-get install time).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface ProcessSample {
  readonly wallMs: number;
  readonly cpuMs: number;
  readonly userMs: number;
  readonly sysMs: number;
  /** Peak resident set of the largest single process, KiB; null when unknown. */
  readonly maxRssKb: number | null;
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

const GNU_TIME = '/usr/bin/time';

// argv: out-file cmd... ; writes "wall_s user_s sys_s" with microseconds.
const PY_WRAPPER = `
import os, sys, time
out = sys.argv[1]
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
t1 = time.monotonic()
with open(out, 'w') as f:
    f.write('%.6f %.6f %.6f\\n' % (t1 - t0, ru.ru_utime, ru.ru_stime))
sys.exit(os.waitstatus_to_exitcode(status) & 255)
`;

/**
 * The environment a systemd unit gives its command: PATH, HOME and a locale,
 * nothing from the shell that started the benchmark. (NODE_EXTRA_CA_CERTS,
 * set on some build hosts, alone costs every node start-up ~80 ms of CPU
 * parsing certificates; NODE_OPTIONS could change anything.)
 */
export function serviceEnv(): NodeJS.ProcessEnv {
  // XROAD_SYNC_LOG_LEVEL=debug: a JSON record for every daemon pass, quiet ones too (the bench counts passes by them).
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: process.env.HOME ?? '/root',
    LANG: 'C.UTF-8',
    XROAD_SYNC_LOG_LEVEL: 'debug',
  };
  // Passed through so a run can compare staging's flush policies (per-file is the behaviour before the single flush).
  if (process.env.XROAD_SYNC_FLUSH) env.XROAD_SYNC_FLUSH = process.env.XROAD_SYNC_FLUSH;
  return env;
}

export interface Meter {
  readonly method: string;
  run(cmd: string, args: readonly string[], opts?: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number }): Promise<ProcessSample>;
  /** Removes the meter's scratch directory. */
  close(): Promise<void>;
}

/** Finds the real python3 binary once (pyenv shims are shell scripts that cost 50 ms each). */
function findPython(): string | null {
  const r = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' });
  const exe = r.status === 0 ? r.stdout.trim() : '';
  return exe && existsSync(exe) ? exe : null;
}

export async function createMeter(): Promise<Meter> {
  const python = process.env.BENCH_METER === 'time' ? null : findPython();
  const gnuTime = existsSync(GNU_TIME) ? GNU_TIME : null;
  if (!python && !gnuTime) {
    throw new Error(`neither python3 nor ${GNU_TIME} found: install one (Debian/Ubuntu: apt-get install time)`);
  }
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'xroad-sync-bench-meter-'));
  let n = 0;
  const method = python
    ? `python3 wait4 (wall/CPU, µs)${gnuTime ? ' + /usr/bin/time %M (peak RSS)' : " (peak RSS includes python's)"}`
    : '/usr/bin/time -f "%e %U %S %M" (CPU to 10 ms)';
  return {
    method,
    close: () => fs.rm(dir, { recursive: true, force: true }),
    async run(cmd, args, opts = {}) {
      const id = n++;
      const pyOut = path.join(dir, `py-${id}`);
      const timeOut = path.join(dir, `time-${id}`);
      const resolved = cmd.includes('/') ? cmd : which(cmd);
      const timed = gnuTime ? [gnuTime, '-f', python ? '%M' : '%e %U %S %M', '-o', timeOut, resolved, ...args] : [resolved, ...args];
      const argv = python ? [python, '-c', PY_WRAPPER, pyOut, ...timed] : timed;
      const started = process.hrtime.bigint();
      const { status, stdout, stderr } = await spawnCollect(argv[0]!, argv.slice(1), opts);
      const hrWallMs = Number(process.hrtime.bigint() - started) / 1e6;
      const timeFields = gnuTime ? lastLine(await fs.readFile(timeOut, 'utf8').catch(() => '')).split(/\s+/) : [];
      let wallMs = hrWallMs;
      let userMs: number;
      let sysMs: number;
      let maxRssKb: number | null = null;
      if (python) {
        const [w, u, s] = (await fs.readFile(pyOut, 'utf8')).trim().split(/\s+/).map(Number);
        wallMs = w! * 1000;
        userMs = u! * 1000;
        sysMs = s! * 1000;
        if (gnuTime) maxRssKb = Number(timeFields[0]) || null;
      } else {
        userMs = Number(timeFields[1]) * 1000;
        sysMs = Number(timeFields[2]) * 1000;
        maxRssKb = Number(timeFields[3]) || null;
      }
      await Promise.all([fs.rm(pyOut, { force: true }), fs.rm(timeOut, { force: true })]);
      return { wallMs, userMs, sysMs, cpuMs: userMs + sysMs, maxRssKb, status, stdout, stderr };
    },
  };
}

/** GNU time prints "Command exited with non-zero status N" before the format line. */
function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return lines[lines.length - 1] ?? '';
}

function which(cmd: string): string {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const full = path.join(dir, cmd);
    if (dir && existsSync(full)) return full;
  }
  throw new Error(`${cmd} not found on PATH`);
}

export function spawnCollect(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? serviceEnv(), cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 300_000);
    child.once('error', (err) => (clearTimeout(timer), reject(err)));
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ status: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

/** Wall and CPU of an in-process async function (no RSS: the process is shared). */
export async function measureInProcess<T>(fn: () => Promise<T>): Promise<{ wallMs: number; cpuMs: number; userMs: number; sysMs: number; value: T }> {
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const value = await fn();
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpu = process.cpuUsage(cpu0);
  return { wallMs, userMs: cpu.user / 1000, sysMs: cpu.system / 1000, cpuMs: (cpu.user + cpu.system) / 1000, value };
}

// ------------------------------------------------------------------ stats

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.round((p / 100) * (s.length - 1))))]!;
}
