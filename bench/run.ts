/**
 * `npm run bench`: xroad-sync against the rsync job it replaces,
 * side by side over one real sshd on loopback.
 *
 * Environment:
 *   BENCH_RUNS=N        timed runs per tool and scenario (default 10)
 *   BENCH_WARMUPS=N     untimed rounds before them (default 1)
 *   BENCH_QUICK=1       smoke run: 2 runs, 1 warm-up
 *   BENCH_TREES=realistic,large        which trees
 *   BENCH_SCENARIOS=initial,no-change,one-file,100-files,herd,propagation,idle,large-daemon
 *   BENCH_IDLE_WARMUP_S / BENCH_IDLE_MEASURE_S / BENCH_IDLE_WINDOW_S   idle: one daemon as shipped, read like top (default 60 / 120 / 30)
 *   BENCH_LARGE_WARMUP_S / BENCH_LARGE_MEASURE_S   large-daemon: the same on a 50,000-entry directory (default 120 / 120)
 *   BENCH_IDLE_INTERVAL / BENCH_LARGE_INTERVAL   their daemon's --interval (default: none, the daemon's own)
 *   BENCH_HERD=N        herd: one-shot passes started at once, each tool (default 20)
 *   BENCH_SLAVES=N      propagation: daemons against the one master (default 5)
 *   BENCH_CHANGES=N     propagation: master changes timed (default 50; quick 10)
 *   BENCH_IDLE_S=N      propagation: idle seconds for the cost measurement (default 30; quick 5)
 *   BENCH_INTERVAL=S    propagation: the daemons' --interval (default 1; "default" leaves it to the daemon)
 *   BENCH_SPACING_MS=A-B  propagation: random pause between changes (default 200-1500)
 *   BENCH_FLEET=exe     herd and propagation: run xroad-sync as the single executable (BENCH_EXE) instead of node + dist
 *   BENCH_TOOLS=rsync,xroad-sync,xroad-sync-bundle,xroad-sync-exe,xroad-sync-daemon
 *   BENCH_EXE=path      the single executable to time (default dist/exe/xroad-sync from `npm run exe`; no row if absent)
 *   BENCH_BUNDLE=path   the bundle to time (default dist/bundle/xroad-sync.cjs from `npm run bundle`; no row if absent)
 *   BENCH_METER=time    force /usr/bin/time instead of the python3 wait4 wrapper
 *   BENCH_KEEP=1        keep the temp dirs (trees, targets, sshd log)
 *   BENCH_TARGET_FS=workdir  targets in the work dir instead of a journaled loop ext4 (bench/target-fs.ts)
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { makeTempDir, type TestMaster } from '../test/helpers/sshd.js';
import { type HerdRound, herdTable, type PropagationOptions, type PropagationResult, propagationTable, runHerd, runPropagation } from './fleet.js';
import { type IdleResult, idleTable, runIdleDaemon } from './idle.js';
import { MasterCpu, startBenchMaster } from './master.js';
import { createMeter } from './measure.js';
import { checkTargets, saveResults, summarize, table, targetLines } from './report.js';
import { type Cell, runTree, SCENARIOS, type ScenarioId } from './scenarios.js';
import { targetFilesystem } from './target-fs.js';
import { BUNDLE, bundleExists, daemonTool, EXE, exeExists, PACKAGE_ROOT, processTool, rsyncTool, type Tool } from './tools.js';
import { type BenchTree, buildTree, writeBenchTree } from './tree.js';

function list(name: string, all: readonly string[]): string[] {
  const v = process.env[name];
  if (!v) return [...all];
  const wanted = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = wanted.filter((w) => !all.includes(w));
  if (unknown.length) throw new Error(`${name}: unknown ${unknown.join(', ')} (known: ${all.join(', ')})`);
  return wanted;
}

function count(name: string, fallback: number, min: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be a whole number ≥ ${min}, got "${v}"`);
  return n;
}

/** An optional --interval in seconds; null when unset. */
function seconds(name: string): number | null {
  const v = process.env[name];
  if (v === undefined || v === '') return null;
  const n = Number(v);
  if (!(n > 0)) throw new Error(`${name} must be seconds > 0, got "${v}"`);
  return n;
}

function versionOf(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0]?.trim() || 'unknown';
}

function propagationOptions(quick: boolean): PropagationOptions {
  const interval = process.env.BENCH_INTERVAL ?? '1';
  const intervalS = interval === 'default' ? null : Number(interval);
  if (intervalS !== null && !(intervalS > 0)) throw new Error(`BENCH_INTERVAL must be seconds or "default", got "${interval}"`);
  const spacing = /^(\d+)-(\d+)$/.exec(process.env.BENCH_SPACING_MS ?? '200-1500');
  if (!spacing || Number(spacing[1]) > Number(spacing[2]))
    throw new Error(`BENCH_SPACING_MS must be MIN-MAX milliseconds, got "${process.env.BENCH_SPACING_MS}"`);
  return {
    slaves: count('BENCH_SLAVES', 5, 1),
    changes: count('BENCH_CHANGES', quick ? 10 : 50, 1),
    idleS: count('BENCH_IDLE_S', quick ? 5 : 30, 1),
    intervalS,
    spacingMs: [Number(spacing[1]), Number(spacing[2])],
    // Bounded: a change not applied within two intervals (+ 10 s of slack for a loaded machine) is counted as missed.
    changeTimeoutMs: Math.round(2 * (intervalS ?? 60) * 1000 + 10_000),
  };
}

const log = (line: string): void => void process.stderr.write(`bench: ${line}\n`);

async function main(): Promise<void> {
  const quick = process.env.BENCH_QUICK === '1';
  const runs = count('BENCH_RUNS', quick ? 2 : 10, 1);
  const warmups = count('BENCH_WARMUPS', 1, 0);
  const trees = list('BENCH_TREES', ['realistic', 'large']) as Array<BenchTree['name']>;
  const allScenarios = list('BENCH_SCENARIOS', [...SCENARIOS.map((s) => s.id), 'herd', 'propagation', 'idle', 'large-daemon']);
  const scenarios = allScenarios.filter((s): s is ScenarioId => SCENARIOS.some((x) => x.id === s));
  const herdSize = allScenarios.includes('herd') ? count('BENCH_HERD', 20, 1) : 0;
  const propagation = allScenarios.includes('propagation') ? propagationOptions(quick) : null;
  const toolIds = list('BENCH_TOOLS', ['rsync', 'xroad-sync', 'xroad-sync-bundle', 'xroad-sync-exe', 'xroad-sync-daemon']);
  if (spawnSync('rsync', ['--version']).status !== 0) throw new Error('rsync is not installed (Debian/Ubuntu: apt-get install rsync)');

  const meter = await createMeter();
  const work = await makeTempDir('xroad-sync-bench-');
  const targets = await targetFilesystem(work, log);
  let master: TestMaster | undefined;
  const tools: Tool[] = [];
  // Ctrl-C must not leave an sshd behind.
  const onSignal = (signal: NodeJS.Signals): void => {
    log(`${signal}: stopping sshd and removing ${work}`);
    void Promise.allSettled([master?.stop(), meter.close(), targets.close().then(() => fs.rm(work, { recursive: true, force: true }))]).then(() =>
      process.exit(130),
    );
  };
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  const loadStart = os.loadavg();
  const started = new Date();
  try {
    master = await startBenchMaster();
    log(
      `sshd on 127.0.0.1:${master.port}; meter: ${meter.method}; ${runs} runs + ${warmups} warm-up per cell; work dir ${work}; targets on ${targets.describe}`,
    );
    const cpu = await MasterCpu.of(master);
    if (!cpu) log('cannot read the sshd listener in /proc: no master CPU column');
    for (const id of scenarios.length > 0 ? toolIds : []) {
      if (id === 'rsync') tools.push(rsyncTool(targets.root, master, meter, cpu));
      else if (id === 'xroad-sync') tools.push(processTool(targets.root, master, meter, cpu, 'cli'));
      else if (id === 'xroad-sync-bundle' && bundleExists()) tools.push(processTool(targets.root, master, meter, cpu, 'bundle'));
      else if (id === 'xroad-sync-exe' && exeExists()) tools.push(processTool(targets.root, master, meter, cpu, 'exe'));
      else if (id === 'xroad-sync-daemon') tools.push(daemonTool(targets.root, master, cpu));
    }
    if (!exeExists()) log(`${path.relative(PACKAGE_ROOT, EXE)} not built (npm run exe): no executable row`);
    if (!bundleExists()) log(`${path.relative(PACKAGE_ROOT, BUNDLE)} not built: no bundle row`);

    const cells: Cell[] = [];
    const treeInfo: Record<string, unknown> = {};
    for (const name of scenarios.length > 0 ? trees : []) {
      const tree = buildTree(name);
      const source = path.join(work, `master-${name}`);
      await fs.mkdir(source);
      await writeBenchTree(source, tree);
      treeInfo[name] = { files: tree.files, bytes: tree.bytes, entries: tree.entries.length };
      log(`${name} tree: ${tree.files} files (${(tree.bytes / 1024 / 1024).toFixed(1)} MiB, excluded ones included), ${tree.entries.length} entries`);
      cells.push(...(await runTree(tree, source, tools, { runs, warmups, scenarios, progress: log })));
    }

    let herd: HerdRound[] | undefined;
    if (herdSize > 0) {
      const source = path.join(work, 'herd-master');
      await fs.mkdir(source);
      await writeBenchTree(source, buildTree('realistic'));
      herd = await runHerd(targets.root, master, cpu, herdSize, source);
    }
    let spread: PropagationResult | undefined;
    if (propagation) spread = await runPropagation(targets.root, master, cpu, propagation);
    const idle: IdleResult[] = [];
    const windowS = count('BENCH_IDLE_WINDOW_S', 30, 1);
    if (allScenarios.includes('idle')) {
      idle.push(
        await runIdleDaemon(
          'idle',
          targets.root,
          master,
          meter,
          { intervalS: seconds('BENCH_IDLE_INTERVAL'), warmupS: count('BENCH_IDLE_WARMUP_S', 60, 0), measureS: count('BENCH_IDLE_MEASURE_S', 120, 1), windowS },
          log,
        ),
      );
    }
    if (allScenarios.includes('large-daemon')) {
      idle.push(
        await runIdleDaemon(
          'large-daemon',
          targets.root,
          master,
          meter,
          {
            intervalS: seconds('BENCH_LARGE_INTERVAL'),
            warmupS: count('BENCH_LARGE_WARMUP_S', 120, 0),
            measureS: count('BENCH_LARGE_MEASURE_S', 120, 1),
            windowS,
          },
          log,
        ),
      );
    }

    const rows = summarize(cells);
    const checks = checkTargets(rows);
    const out = [
      '',
      `xroad-sync vs rsync — ${runs} runs per cell (medians), ${os.cpus().length} CPUs, load ${loadStart.map((l) => l.toFixed(2)).join(' ')} at start`,
      ...(rows.length > 0 ? [table(rows), '', targetLines(checks), ''] : []),
      ...(herd ? [herdTable(herd), ''] : []),
      ...(spread ? [propagationTable(spread), ''] : []),
      ...(idle.length > 0 ? [idleTable(idle)] : []),
      `load ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')} at end`,
      '',
    ].join('\n');
    process.stdout.write(out);

    const file = await saveResults(path.join(PACKAGE_ROOT, 'bench/results'), {
      startedAt: started.toISOString(),
      finishedAt: new Date().toISOString(),
      environment: {
        node: process.version,
        rsync: versionOf('rsync', ['--version']),
        ssh: versionOf('ssh', ['-V']),
        platform: `${os.type()} ${os.release()} ${os.arch()}`,
        cpus: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown'}`,
        memoryMb: Math.round(os.totalmem() / 1024 / 1024),
        loadavgStart: loadStart,
        loadavgEnd: os.loadavg(),
        commit: versionOf('git', ['-C', PACKAGE_ROOT, 'rev-parse', '--short', 'HEAD']),
        meter: meter.method,
        targets: targets.describe,
      },
      settings: { runs, warmups, trees, scenarios: allScenarios, tools: tools.map((t) => t.id), herd: herdSize || undefined, propagation },
      trees: treeInfo,
      summary: rows,
      targets: checks,
      samples: cells,
      herd,
      propagation: spread,
      idle,
    });
    log(`results saved to ${path.relative(process.cwd(), file)}`);
  } finally {
    for (const t of tools) await t.close().catch(() => undefined);
    await master?.stop();
    await meter.close();
    await targets.close();
    if (process.env.BENCH_KEEP === '1') log(`kept ${work}`);
    else await fs.rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
