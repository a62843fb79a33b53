/**
 * The idle daemon measured the way an operator's `top` sees it: ONE
 * `xroad-sync daemon` as shipped (the single executable when built), at its
 * defaults (no --interval, the unit's environment, info log level, stdout to
 * a file as journald takes it), against an unchanged master. After a warm-up
 * the CPU is read from /proc/PID/stat (utime + stime: every thread, live and
 * exited) in fixed windows, each reported on its own.
 *
 * Passes are counted from outside, as the lock file `sync.lock` appearing in
 * the state dir (inotify), not from the daemon's own debug records: debug
 * logging is work the shipped daemon does not do.
 *
 * Scenarios:
 *  - idle: the realistic tree (BENCH_IDLE_WARMUP_S 60, BENCH_IDLE_MEASURE_S 120);
 *  - large-daemon: the realistic tree plus one 50,000-entry directory
 *    (BENCH_LARGE_WARMUP_S 120, BENCH_LARGE_MEASURE_S 120).
 * BENCH_IDLE_WINDOW_S (30) is the window; BENCH_IDLE_INTERVAL / BENCH_LARGE_INTERVAL
 * give the daemon an --interval (default: none, the daemon's own). The guide's rsync runs a no-change
 * pass against the same tree in the same run (5 times, median) as the yardstick.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, watch } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { TestMaster } from '../test/helpers/sshd.js';
import { type Meter, median, spawnCollect } from './measure.js';
import { CLI, EXE, exeExists, interpreterFlags, passArgs, rsyncArgs, type ToolDirs } from './tools.js';
import { type BenchTree, buildTree, writeBenchTree } from './tree.js';

const CLK_TCK = 100; // USER_HZ on Linux
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface IdleOptions {
  /** --interval for the daemon; null: its default, as shipped. */
  readonly intervalS: number | null;
  readonly warmupS: number;
  readonly measureS: number;
  readonly windowS: number;
}

export interface IdleWindow {
  readonly seconds: number;
  readonly cpuMs: number;
  readonly cpuPct: number;
  readonly passes: number;
  readonly cpuPerPassMs: number | null;
  /** Bytes both ways on the daemon's SSH connection per pass (ss -ti), null when unknown. */
  readonly bytesPerPass: number | null;
  readonly rssMb: number | null;
  readonly loadavg: number;
}

export interface IdleResult {
  readonly scenario: 'idle' | 'large-daemon';
  readonly tree: { readonly files: number; readonly entries: number };
  readonly command: string;
  readonly options: IdleOptions;
  readonly firstPassMs: number;
  readonly windows: IdleWindow[];
  readonly peakRssMb: number | null;
  /** The guide's rsync, no-change pass of the same tree, median CPU (ms) of 5 in this run. */
  readonly rsyncNoChangeCpuMs: number | null;
}

/** utime + stime of the whole process (all threads, exited ones included), ms. */
export function processCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
  } catch {
    return undefined;
  }
}

function memoryMb(pid: number): { rss: number; peak: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
    return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
  } catch {
    return null;
  }
}

/** Bytes acked + received on established TCP connections to the master's port (only the daemon's exist then). */
async function connectionBytes(port: number): Promise<number | null> {
  const r = await spawnCollect('ss', ['-H', '-tin', 'state', 'established', `( dport = :${port} )`]).catch(() => null);
  if (!r || r.status !== 0) return null;
  let total = 0;
  for (const m of r.stdout.matchAll(/bytes_(?:acked|received):(\d+)/g)) total += Number(m[1]);
  return total;
}

/** The realistic tree plus one directory of 50,000 small files (a member's per-client configs gone wild). */
export function hugeTree(): BenchTree {
  const base = buildTree('realistic');
  const entries = [...base.entries, { kind: 'dir' as const, path: 'services-huge', mode: 0o750 }];
  for (let i = 0; i < 49_999; i++) {
    entries.push({ kind: 'file', path: `services-huge/client-${String(i).padStart(5, '0')}.conf`, data: Buffer.from(`client = ${i}\n`), mode: 0o640 });
  }
  const files = entries.filter((e) => e.kind === 'file');
  return {
    name: base.name,
    entries,
    editable: base.editable,
    files: files.length,
    bytes: files.reduce((s, e) => s + (e.kind === 'file' ? e.data.length : 0), 0),
  };
}

/** How the shipped daemon starts: the executable (else node + dist with its interpreter flags), the unit's environment. */
function daemonCommand(args: string[]): [string, string[]] {
  return exeExists() ? [EXE, args] : [process.execPath, [...interpreterFlags(CLI), CLI, ...args]];
}

function unitEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', HOME: process.env.HOME ?? '/root', LANG: 'C.UTF-8', MALLOC_ARENA_MAX: '2' };
}

export async function runIdleDaemon(
  scenario: IdleResult['scenario'],
  work: string,
  master: TestMaster,
  meter: Meter,
  opts: IdleOptions,
  log: (line: string) => void,
): Promise<IdleResult> {
  const tree = scenario === 'idle' ? buildTree('realistic') : hugeTree();
  const root = path.join(work, scenario);
  const source = path.join(root, 'master');
  await fs.mkdir(source, { recursive: true });
  await writeBenchTree(source, tree);
  const dirs: ToolDirs = { target: path.join(root, 'target'), state: path.join(root, 'state'), log: path.join(root, 'sync.log') };
  await fs.mkdir(dirs.target, { mode: 0o751 });
  await fs.mkdir(dirs.state);
  await fs.mkdir(path.join(root, 'flag'));
  const rsyncDirs: ToolDirs = { target: path.join(root, 'rsync-target'), state: path.join(root, 'rsync-state'), log: path.join(root, 'rsync.log') };
  await fs.mkdir(rsyncDirs.target, { mode: 0o751 });

  // As the unit does (ExecStartPre=xroad-sync sync): the initial sync is a one-shot pass, the daemon starts on a synced target.
  const initial = performance.now();
  const synced = await spawnCollect(...daemonCommand(['sync', ...passArgs(master, source, dirs, path.join(root, 'flag', 'sync-disabled'))]), {
    env: unitEnv(),
    timeoutMs: 1_800_000,
  });
  if (synced.status !== 0) throw new Error(`${scenario}: the initial sync exited ${synced.status}: ${synced.stderr.trim()}`);
  log(`${scenario}: initial sync (one-shot, as the unit's ExecStartPre) ${((performance.now() - initial) / 1000).toFixed(1)} s`);
  // The daemon's passes, counted as the pass lock appearing (created and removed once per pass).
  let lockEvents = 0;
  const watcher = watch(dirs.state, (_event, name) => void (name === 'sync.lock' && lockEvents++));
  const passes = (): number => Math.floor(lockEvents / 2);
  const interval = opts.intervalS === null ? [] : ['--interval', String(opts.intervalS)];
  const [command, argv] = daemonCommand(['daemon', ...passArgs(master, source, dirs, path.join(root, 'flag', 'sync-disabled')), ...interval]);
  const out = openSync(path.join(root, 'daemon.out'), 'a');
  const child = spawn(command, argv, { env: unitEnv(), stdio: ['ignore', out, out] });
  closeSync(out);
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  try {
    const t0 = performance.now();
    for (;;) {
      if (passes() >= 1) break;
      if (child.exitCode !== null)
        throw new Error(`${scenario}: the daemon exited ${child.exitCode}: ${await fs.readFile(path.join(root, 'daemon.out'), 'utf8')}`);
      if (performance.now() - t0 > 600_000) throw new Error(`${scenario}: no first pass within 600 s`);
      await sleep(50);
    }
    const firstPassMs = performance.now() - t0;
    log(
      `${scenario}: first pass ${(firstPassMs / 1000).toFixed(1)} s (${tree.entries.length} entries); warm-up ${opts.warmupS} s, then ${opts.measureS} s in ${opts.windowS} s windows`,
    );
    await sleep(opts.warmupS * 1000);

    const windows: IdleWindow[] = [];
    const pid = child.pid!;
    for (let left = opts.measureS; left > 0; left -= opts.windowS) {
      const seconds = Math.min(opts.windowS, left);
      const cpu0 = processCpuMs(pid);
      const passes0 = passes();
      const bytes0 = await connectionBytes(master.port);
      const w0 = performance.now();
      await sleep(seconds * 1000);
      const wallMs = performance.now() - w0;
      const cpuMs = (processCpuMs(pid) ?? NaN) - (cpu0 ?? NaN);
      const n = passes() - passes0;
      const bytes1 = await connectionBytes(master.port);
      const w: IdleWindow = {
        seconds: wallMs / 1000,
        cpuMs,
        cpuPct: (100 * cpuMs) / wallMs,
        passes: n,
        cpuPerPassMs: n > 0 ? cpuMs / n : null,
        bytesPerPass: n > 0 && bytes0 !== null && bytes1 !== null ? (bytes1 - bytes0) / n : null,
        rssMb: memoryMb(pid)?.rss ?? null,
        loadavg: Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]),
      };
      log(
        `${scenario}: window ${windows.length + 1}: ${w.cpuPct.toFixed(2)} % of a core, ${n} passes, ${w.cpuPerPassMs?.toFixed(1) ?? 'n/a'} ms/pass, RSS ${w.rssMb?.toFixed(0)} MB, load ${w.loadavg}`,
      );
      windows.push(w);
    }
    const peakRssMb = memoryMb(pid)?.peak ?? null;

    // The yardstick: the guide's rsync, a no-change pass of the same tree (first run fills its target).
    const rsyncCpu: number[] = [];
    for (let i = 0; i < 6; i++) {
      const s = await meter.run('rsync', rsyncArgs(master, source, rsyncDirs));
      if (s.status !== 0) throw new Error(`rsync exited ${s.status}: ${s.stderr.trim()}`);
      if (i > 0) rsyncCpu.push(s.cpuMs);
    }
    return {
      scenario,
      tree: { files: tree.files, entries: tree.entries.length },
      command: [command, 'daemon', '(bench paths)', ...interval].join(' '),
      options: opts,
      firstPassMs,
      windows,
      peakRssMb,
      rsyncNoChangeCpuMs: median(rsyncCpu),
    };
  } finally {
    watcher.close();
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 7000);
    await exited;
    clearTimeout(killer);
  }
}

export function idleTable(results: readonly IdleResult[]): string {
  const lines: string[] = [];
  for (const r of results) {
    const perPass = r.windows.map((w) => w.cpuPerPassMs).filter((x): x is number => x !== null);
    const bytes = r.windows.map((w) => w.bytesPerPass).filter((x): x is number => x !== null);
    const pct = r.windows.map((w) => w.cpuPct);
    const rss = r.windows.map((w) => w.rssMb).filter((x): x is number => x !== null);
    const perPassMedian = perPass.length ? median(perPass) : null;
    lines.push(
      `${r.scenario}: one daemon as shipped, ${r.options.intervalS === null ? 'defaults' : `--interval ${r.options.intervalS}`}, ${r.tree.entries} entries; /proc/PID/stat utime+stime (all threads) in ${r.options.windowS} s windows after ${r.options.warmupS} s of warm-up`,
      `  window   % of a core   passes   CPU/pass   bytes/pass   RSS     load`,
      ...r.windows.map(
        (w, i) =>
          `  ${String(i + 1).padStart(6)}   ${w.cpuPct.toFixed(2).padStart(10)}%   ${String(w.passes).padStart(6)}   ${(w.cpuPerPassMs?.toFixed(1) ?? 'n/a').padStart(6)} ms   ${(w.bytesPerPass === null ? 'n/a' : Math.round(w.bytesPerPass).toString()).padStart(10)}   ${(w.rssMb?.toFixed(0) ?? 'n/a').padStart(3)} MB   ${w.loadavg.toFixed(2)}`,
      ),
      `  median ${median(pct).toFixed(2)} % of a core, ${perPassMedian?.toFixed(1) ?? 'n/a'} ms CPU per pass, ${bytes.length ? Math.round(median(bytes)) : 'n/a'} bytes per pass, RSS ${rss.length ? median(rss).toFixed(0) : 'n/a'} MB (peak ${r.peakRssMb?.toFixed(0) ?? 'n/a'} MB)`,
      `  rsync no-change pass of the same tree (this run, median of 5): ${r.rsyncNoChangeCpuMs?.toFixed(0) ?? 'n/a'} ms CPU; a daemon pass is ${perPassMedian !== null && r.rsyncNoChangeCpuMs ? (perPassMedian / r.rsyncNoChangeCpuMs).toFixed(3) : 'n/a'}× of it`,
      '',
    );
  }
  return lines.join('\n');
}
