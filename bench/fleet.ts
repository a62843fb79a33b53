/**
 * Many slaves on one master, two scenarios over the bench's sshd:
 *
 *  - herd: N one-shot `xroad-sync sync` processes started in the same instant,
 *    then N of the guide's rsync, each into its own target, against sshd's
 *    default `MaxStartups 10:30:100` (written explicitly): how many succeed,
 *    wall time of the whole herd and of the slowest, CPU of all of them.
 *  - propagation: N `xroad-sync daemon` processes (own target and state dir
 *    each); after their first pass, an idle period prices the polling (each
 *    daemon's CPU from /proc/PID/stat, the master's sshd session processes
 *    from /proc, daemon RSS); then random master changes (new file, edit,
 *    delete, keyconf.xml + new .p12), randomly spaced, each timed until it
 *    is applied on all N targets (polled, bounded).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { TestMaster } from '../test/helpers/sshd.js';
import type { MasterCpu } from './master.js';
import { median, percentile, serviceEnv } from './measure.js';
import { CLI, EXE, interpreterFlags, passArgs, rsyncArgs, type ToolDirs } from './tools.js';
import { buildTree, writeBenchTree } from './tree.js';

const CLK_TCK = 100; // USER_HZ on Linux
const log = (line: string): void => void process.stderr.write(`bench: ${line}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** utime + stime of a live process, in ms (10 ms ticks); undefined once gone. */
function cpuMsOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/** CPU of the children this process has reaped (cutime + cstime), ms: what a herd of spawned passes cost. */
function reapedChildrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[13]) + Number(f[14])) * 1000) / CLK_TCK;
}

/** VmRSS and VmHWM (peak) of a process, MB. */
function rssOf(pid: number): { rssMb: number; peakMb: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
    return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
  } catch {
    return undefined;
  }
}

function slaveDirs(root: string): ToolDirs {
  return { target: path.join(root, 'target'), state: path.join(root, 'state'), log: path.join(root, 'sync.log') };
}

async function makeSlaveDirs(root: string): Promise<ToolDirs> {
  const d = slaveDirs(root);
  await fs.mkdir(d.target, { recursive: true, mode: 0o751 });
  await fs.mkdir(d.state, { recursive: true });
  await fs.mkdir(path.dirname(flagFileOf(d)), { recursive: true });
  return d;
}

/** In a directory of its own, as /var/tmp/xroad is: the daemon watches the flag's directory. */
function flagFileOf(d: ToolDirs): string {
  return path.join(path.dirname(d.state), 'flag', 'sync-disabled');
}

// ------------------------------------------------------------------ herd

export interface HerdRound {
  readonly tool: 'xroad-sync' | 'rsync';
  readonly round: 'initial' | 'no-change';
  readonly started: number;
  readonly succeeded: number;
  /** From the first spawn to the last exit. */
  readonly herdWallMs: number;
  readonly medianWallMs: number;
  readonly maxWallMs: number;
  /** user + sys of all N processes (and their children), from this process's reaped-children counters. */
  readonly cpuMs: number;
  readonly masterCpuMs: number | null;
  /** Exit code → how many, and the first stderr line of each distinct failure. */
  readonly exitCodes: Record<string, number>;
  readonly failures: string[];
}

interface Exit {
  readonly status: number;
  readonly wallMs: number;
  readonly stderr: string;
}

function launch(cmd: string, args: readonly string[], timeoutMs: number): Promise<Exit> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { env: serviceEnv(), stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr.length < 8192 ? (stderr += c) : undefined));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => (clearTimeout(timer), resolve({ status: -1, wallMs: 0, stderr: err.message })));
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ status: code ?? (signal ? 128 : 1), wallMs: performance.now() - t0, stderr });
    });
  });
}

/** How the fleet runs xroad-sync: BENCH_FLEET=exe, the single executable as shipped (`npm run exe`); else node + dist with main.ts's flags. */
function xroadSync(args: string[]): [string, string[]] {
  return process.env.BENCH_FLEET === 'exe' ? [EXE, args] : [process.execPath, [...interpreterFlags(CLI), CLI, ...args]];
}

export async function runHerd(work: string, master: TestMaster, cpu: MasterCpu | null, size: number, source: string): Promise<HerdRound[]> {
  const rounds: HerdRound[] = [];
  for (const tool of ['xroad-sync', 'rsync'] as const) {
    const dirs = await Promise.all(Array.from({ length: size }, (_, i) => makeSlaveDirs(path.join(work, 'herd', tool, String(i)))));
    for (const round of ['initial', 'no-change'] as const) {
      // Let the previous round's sessions end, so MaxStartups sees only this herd.
      await sleep(1500);
      const before = cpu?.snapshot();
      const cpu0 = reapedChildrenCpuMs();
      const t0 = performance.now();
      const exits = await Promise.all(
        dirs.map((d) =>
          tool === 'rsync' ? launch('rsync', rsyncArgs(master, source, d), 120_000) : launch(...xroadSync(['sync', ...passArgs(master, source, d)]), 120_000),
        ),
      );
      const herdWallMs = performance.now() - t0;
      const cpuMs = reapedChildrenCpuMs() - cpu0;
      const masterCpuMs = before ? await cpu!.since(before) : null;
      const exitCodes: Record<string, number> = {};
      for (const e of exits) exitCodes[e.status] = (exitCodes[e.status] ?? 0) + 1;
      const failures = [...new Set(exits.filter((e) => e.status !== 0).map((e) => `${e.status}: ${e.stderr.trim().split('\n')[0] ?? ''}`))];
      const walls = exits.map((e) => e.wallMs);
      const r: HerdRound = {
        tool,
        round,
        started: size,
        succeeded: exits.filter((e) => e.status === 0).length,
        herdWallMs,
        medianWallMs: median(walls),
        maxWallMs: Math.max(...walls),
        cpuMs,
        masterCpuMs,
        exitCodes,
        failures,
      };
      log(`herd ${tool} ${round}: ${r.succeeded}/${size} ok in ${herdWallMs.toFixed(0)} ms${failures.length ? `; ${failures.slice(0, 3).join(' | ')}` : ''}`);
      rounds.push(r);
    }
  }
  return rounds;
}

export function herdTable(rounds: readonly HerdRound[]): string {
  const head = ['herd (MaxStartups 10:30:100)', 'ok', 'herd wall', 'median wall', 'slowest', 'CPU all', 'master CPU', 'exit codes'];
  const body = rounds.map((r) => [
    `${r.tool} ${r.round}`,
    `${r.succeeded}/${r.started}`,
    `${r.herdWallMs.toFixed(0)} ms`,
    `${r.medianWallMs.toFixed(0)} ms`,
    `${r.maxWallMs.toFixed(0)} ms`,
    `${r.cpuMs.toFixed(0)} ms`,
    r.masterCpuMs === null ? 'n/a' : `${r.masterCpuMs.toFixed(0)} ms`,
    Object.entries(r.exitCodes)
      .map(([c, n]) => `${c}×${n}`)
      .join(' '),
  ]);
  return columns(head, body);
}

// ------------------------------------------------------------------ propagation

export interface PropagationOptions {
  readonly slaves: number;
  readonly changes: number;
  readonly idleS: number;
  /** --interval for the daemons; null: the daemon's own default. */
  readonly intervalS: number | null;
  /** Random pause between changes, uniform in [min, max] ms. */
  readonly spacingMs: readonly [number, number];
  /** Give up on one change after this long (it counts as not applied). */
  readonly changeTimeoutMs: number;
}

export type ChangeKind = 'new' | 'edit' | 'delete' | 'keyconf';

export interface ChangeSample {
  readonly kind: ChangeKind;
  readonly paths: string[];
  /** From the master write to the last of the N targets showing it; null when not within changeTimeoutMs. */
  readonly ms: number | null;
}

export interface PropagationResult {
  readonly options: PropagationOptions;
  readonly changes: ChangeSample[];
  readonly p50Ms: number | null;
  readonly p95Ms: number | null;
  readonly maxMs: number | null;
  readonly notApplied: number;
  readonly idle: {
    readonly seconds: number;
    /** Per daemon: % of one core over the idle period, passes run, CPU per pass. */
    readonly daemons: Array<{ cpuPct: number; passes: number; cpuPerPassMs: number | null; passWallMs: number | null }>;
    /** sshd session processes (internal-sftp runs inside them) for all N daemons together, % of one core. */
    readonly masterCpuPct: number | null;
    /** The same, per pass of any daemon. */
    readonly masterCpuPerPassMs: number | null;
  };
  /** While the changes were made: each daemon's and the master's CPU, % of one core. */
  readonly changing: { readonly seconds: number; readonly daemonCpuPct: number[]; readonly masterCpuPct: number | null };
  /** Per daemon at the end: RSS and peak RSS, MB; passes in all. */
  readonly daemons: Array<{ rssMb: number | null; peakMb: number | null; passes: number; failedPasses: number }>;
}

interface Daemon {
  readonly child: ChildProcess;
  readonly dirs: ToolDirs;
  ok: number;
  failed: number;
  stderr: string;
  /** Wall time of each pass while `timing` is set (the idle window), ms. */
  timing: boolean;
  readonly durations: number[];
}

function startDaemon(master: TestMaster, source: string, dirs: ToolDirs, intervalS: number | null): Daemon {
  const [command, argv] = xroadSync([
    'daemon',
    ...passArgs(master, source, dirs, flagFileOf(dirs)),
    ...(intervalS === null ? [] : ['--interval', String(intervalS)]),
  ]);
  const child = spawn(command, argv, { env: serviceEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  const d: Daemon = { child, dirs, ok: 0, failed: 0, stderr: '', timing: false, durations: [] };
  let partial = '';
  // Count pass records as they come; keep nothing else (a long run prints one line per pass).
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.includes('"msg":"pass"')) continue;
      if (line.includes('"result":"ok"')) d.ok++;
      else if (line.includes('"result":"failed"')) d.failed++;
      const duration = d.timing ? /"durationMs":(\d+)/.exec(line) : null;
      if (duration) d.durations.push(Number(duration[1]));
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (d.stderr.length < 16384 ? (d.stderr += c) : undefined));
  child.on('error', (err) => (d.stderr += `spawn: ${err.message}\n`));
  return d;
}

async function stopDaemon(d: Daemon): Promise<void> {
  if (d.child.exitCode !== null || d.child.signalCode !== null) return;
  const exited = new Promise<void>((r) => d.child.once('close', () => r()));
  d.child.kill('SIGTERM');
  const killer = setTimeout(() => d.child.kill('SIGKILL'), 5000);
  await Promise.race([exited, sleep(7000)]);
  clearTimeout(killer);
}

async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, pollMs = 10): Promise<number | null> {
  const t0 = performance.now();
  for (;;) {
    if (await cond()) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) return null;
    await sleep(pollMs);
  }
}

/** What a target must show for a change to count as applied: path → bytes, or null for "absent". */
type Expectation = Map<string, Buffer | null>;

async function applied(target: string, expect: Expectation): Promise<boolean> {
  for (const [rel, bytes] of expect) {
    const actual = await fs.readFile(path.join(target, rel)).catch(() => null);
    if (bytes === null ? actual !== null : actual === null || !actual.equals(bytes)) return false;
  }
  return true;
}

/**
 * Master edits as an operator or the signer makes them: mtime "now" (so each
 * changed file is racy for a pass and fetched once more to compare, as in
 * production), every edit changing the size.
 */
class Changer {
  private serial = 0;
  private readonly created: string[] = [];

  constructor(
    private readonly root: string,
    private readonly editable: readonly string[],
  ) {}

  private async write(rel: string, bytes: Buffer): Promise<void> {
    await fs.writeFile(path.join(this.root, rel), bytes);
  }

  async apply(kind: ChangeKind): Promise<{ kind: ChangeKind; expect: Expectation }> {
    const n = ++this.serial;
    const expect: Expectation = new Map();
    if (kind === 'delete' && this.created.length === 0) kind = 'new';
    if (kind === 'new') {
      const rel = `conf.d/bench-${n}.ini`;
      const bytes = Buffer.from(`# bench change ${n}\n${randomBytes(64 + (n % 900)).toString('hex')}\n`);
      await this.write(rel, bytes);
      this.created.push(rel);
      expect.set(rel, bytes);
    } else if (kind === 'edit') {
      const rel = this.editable[n % this.editable.length]!;
      const bytes = Buffer.concat([await fs.readFile(path.join(this.root, rel)), Buffer.from(`\n# edit ${n}\n`)]);
      await this.write(rel, bytes);
      expect.set(rel, bytes);
    } else if (kind === 'delete') {
      const rel = this.created.splice(n % this.created.length, 1)[0]!;
      await fs.rm(path.join(this.root, rel));
      expect.set(rel, null);
    } else {
      // A new signing key: the .p12 first, then keyconf.xml naming it (what the master's signer writes).
      const p12 = `signer/softtoken/bench${n}.p12`;
      const key = randomBytes(2500);
      await this.write(p12, key);
      const keyconf = 'signer/keyconf.xml';
      const conf = Buffer.concat([await fs.readFile(path.join(this.root, keyconf)), Buffer.from(`<!-- key bench${n} -->\n`)]);
      await this.write(keyconf, conf);
      expect.set(p12, key).set(keyconf, conf);
    }
    return { kind, expect };
  }
}

const KINDS: readonly ChangeKind[] = ['new', 'edit', 'delete', 'keyconf'];

export async function runPropagation(work: string, master: TestMaster, cpu: MasterCpu | null, opts: PropagationOptions): Promise<PropagationResult> {
  const tree = buildTree('realistic');
  const source = path.join(work, 'propagation-master');
  await fs.mkdir(source);
  await writeBenchTree(source, tree);
  const daemons: Daemon[] = [];
  try {
    for (let i = 0; i < opts.slaves; i++) {
      daemons.push(startDaemon(master, source, await makeSlaveDirs(path.join(work, 'propagation', String(i))), opts.intervalS));
    }
    const firstPass = await until(() => daemons.every((d) => d.ok > 0), 120_000, 50);
    if (firstPass === null) {
      throw new Error(
        `not every daemon finished its first pass within 120 s:\n${daemons.map((d, i) => `daemon ${i}: ${d.ok} ok, ${d.failed} failed; ${d.stderr.trim()}`).join('\n')}`,
      );
    }
    log(`propagation: ${opts.slaves} daemons synced the realistic tree (${(firstPass / 1000).toFixed(1)} s); idle ${opts.idleS} s`);

    // Idle: what polling costs both sides when nothing changes.
    await sleep(2000);
    const pids = daemons.map((d) => d.child.pid!);
    const cpu0 = pids.map((p) => cpuMsOf(p) ?? NaN);
    const passes0 = daemons.map((d) => d.ok + d.failed);
    const master0 = cpu?.snapshot();
    const t0 = performance.now();
    for (const d of daemons) d.timing = true;
    await sleep(opts.idleS * 1000);
    for (const d of daemons) d.timing = false;
    const idleMs = performance.now() - t0;
    const masterMs = master0 ? ((cpu!.snapshot().ticks - master0.ticks) * 1000) / CLK_TCK : null;
    const idleDaemons = daemons.map((d, i) => {
      const used = (cpuMsOf(pids[i]!) ?? NaN) - cpu0[i]!;
      const passes = d.ok + d.failed - passes0[i]!;
      return {
        cpuPct: (100 * used) / idleMs,
        passes,
        cpuPerPassMs: passes > 0 ? used / passes : null,
        passWallMs: d.durations.length ? median(d.durations) : null,
      };
    });
    const masterCpuPct = masterMs === null ? null : (100 * masterMs) / idleMs;
    const idlePasses = idleDaemons.reduce((n, d) => n + d.passes, 0);
    const masterCpuPerPassMs = masterMs === null || idlePasses === 0 ? null : masterMs / idlePasses;
    log(`propagation idle: daemon CPU ${idleDaemons.map((d) => `${d.cpuPct.toFixed(2)}%`).join(' ')}; master ${masterCpuPct?.toFixed(2) ?? 'n/a'}%`);

    // Changes, one at a time, at random moments relative to the daemons' passes.
    const changer = new Changer(source, tree.editable);
    const samples: ChangeSample[] = [];
    const busyMaster0 = cpu?.snapshot();
    const busyCpu0 = pids.map((p) => cpuMsOf(p) ?? NaN);
    const busyT0 = performance.now();
    for (let k = 0; k < opts.changes; k++) {
      const [lo, hi] = opts.spacingMs;
      await sleep(lo + Math.random() * (hi - lo));
      const { kind, expect } = await changer.apply(KINDS[Math.floor(Math.random() * KINDS.length)]!);
      const ms = await until(async () => {
        for (const d of daemons) if (!(await applied(d.dirs.target, expect))) return false;
        return true;
      }, opts.changeTimeoutMs);
      samples.push({ kind, paths: [...expect.keys()], ms });
      if ((k + 1) % 10 === 0 || ms === null)
        log(`propagation: change ${k + 1}/${opts.changes} (${kind}) ${ms === null ? 'NOT applied in time' : `${ms.toFixed(0)} ms`}`);
    }
    const busyMs = performance.now() - busyT0;
    const busyMasterMs = busyMaster0 ? ((cpu!.snapshot().ticks - busyMaster0.ticks) * 1000) / CLK_TCK : null;
    const busyDaemonPct = pids.map((p, i) => (100 * ((cpuMsOf(p) ?? NaN) - busyCpu0[i]!)) / busyMs);
    const times = samples.map((s) => s.ms).filter((m): m is number => m !== null);
    const final = daemons.map((d) => {
      const r = rssOf(d.child.pid!);
      return { rssMb: r?.rssMb ?? null, peakMb: r?.peakMb ?? null, passes: d.ok + d.failed, failedPasses: d.failed };
    });
    return {
      options: opts,
      changes: samples,
      p50Ms: times.length ? percentile(times, 50) : null,
      p95Ms: times.length ? percentile(times, 95) : null,
      maxMs: times.length ? Math.max(...times) : null,
      notApplied: samples.length - times.length,
      idle: { seconds: idleMs / 1000, daemons: idleDaemons, masterCpuPct, masterCpuPerPassMs },
      changing: { seconds: busyMs / 1000, daemonCpuPct: busyDaemonPct, masterCpuPct: busyMasterMs === null ? null : (100 * busyMasterMs) / busyMs },
      daemons: final,
    };
  } finally {
    await Promise.all(daemons.map(stopDaemon));
  }
}

export function propagationTable(r: PropagationResult): string {
  const o = r.options;
  const f = (n: number | null, unit = ' ms', digits = 0): string => (n === null || !Number.isFinite(n) ? 'n/a' : `${n.toFixed(digits)}${unit}`);
  const pcts = r.idle.daemons.map((d) => d.cpuPct);
  const perPass = r.idle.daemons.map((d) => d.cpuPerPassMs).filter((x): x is number => x !== null);
  const walls = r.idle.daemons.map((d) => d.passWallMs).filter((x): x is number => x !== null);
  const rss = r.daemons.map((d) => d.rssMb).filter((x): x is number => x !== null);
  const peak = r.daemons.map((d) => d.peakMb).filter((x): x is number => x !== null);
  const byKind = KINDS.map((k) => {
    const ms = r.changes.filter((c) => c.kind === k && c.ms !== null).map((c) => c.ms!);
    return `${k} ${ms.length ? f(median(ms)) : 'n/a'}`;
  }).join(', ');
  const rows: string[][] = [
    ['slaves / interval', `${o.slaves} daemons, --interval ${o.intervalS ?? 'default'}`],
    [
      'changes applied on all',
      `${r.changes.length - r.notApplied}/${r.changes.length} (spacing ${o.spacingMs[0]}-${o.spacingMs[1]} ms, bound ${o.changeTimeoutMs / 1000} s each)`,
    ],
    ['propagation p50 / p95 / max', `${f(r.p50Ms)} / ${f(r.p95Ms)} / ${f(r.maxMs)}`],
    ['median by kind', byKind],
    [`idle ${r.idle.seconds.toFixed(0)} s: daemon CPU`, `median ${f(median(pcts), ' %', 2)}, max ${f(Math.max(...pcts), ' %', 2)} of one core`],
    ['idle: CPU per pass', `median ${f(perPass.length ? median(perPass) : null, ' ms', 1)} (${r.idle.daemons.map((d) => d.passes).join('/')} passes)`],
    ['idle: pass wall time', `median ${f(walls.length ? median(walls) : null, ' ms', 1)}`],
    ['idle: master sshd sessions, all', `${f(r.idle.masterCpuPct, ' % of one core', 2)}, ${f(r.idle.masterCpuPerPassMs, ' ms', 2)} per pass`],
    [
      `changing ${r.changing.seconds.toFixed(0)} s: CPU`,
      `daemons median ${f(median(r.changing.daemonCpuPct), ' %', 2)}, master ${f(r.changing.masterCpuPct, ' %', 2)} of one core`,
    ],
    ['daemon RSS at end (peak)', `median ${f(rss.length ? median(rss) : null, ' MB', 1)} (peak max ${f(peak.length ? Math.max(...peak) : null, ' MB', 1)})`],
    ['passes per daemon (failed)', r.daemons.map((d) => `${d.passes}(${d.failedPasses})`).join(' ')],
  ];
  return columns(['propagation', 'value'], rows);
}

function columns(head: string[], body: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}
