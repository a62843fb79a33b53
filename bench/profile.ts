/**
 * `node dist/bench/profile.js`: where an xroad-sync pass spends its time.
 *
 *  1. start-up: bare node, `--version`, loading the sync command's module
 *     graph, and each dependency's import time in a fresh process;
 *  2. SSH: xroad-sync's handshake (openSession) against `ssh ... true`;
 *  3. pass phases in-process with a fresh connection per pass (the CLI's
 *     pass minus start-up), from runPass's hook points, and the same with
 *     fsync turned into a no-op to price the durability;
 *  4. V8 CPU profiles of whole CLI runs, by bucket and by function;
 *  5. the daemon's no-change pass over a warm session, part by part;
 *  6. a real `xroad-sync daemon` process under --cpu-prof, idle (no master
 *     changes) for PROFILE_DAEMON_S seconds at --interval PROFILE_INTERVAL:
 *     CPU per pass from /proc, and the profile after start-up and the first
 *     pass, by our calling function.
 *
 * Environment: PROFILE_RUNS (default 7), PROFILE_SECTIONS=startup,ssh,phases,cpu,daemon,daemon-process,
 * PROFILE_CPU_TREES=realistic,large, PROFILE_KEEP=1 (copy the .cpuprofile files to bench/results/);
 * section 6: PROFILE_DAEMON_TREE=huge (the 50,000-entry tree), PROFILE_DAEMON_S (30), PROFILE_INTERVAL (1), PROFILE_DAEMON_WARMUP_S (0), PROFILE_DAEMON_PROF=0
 * (no sampler: /proc's CPU is the daemon's own), PROFILE_NODE_FLAGS, PROFILE_DAEMON_STDOUT=file, PROFILE_DAEMON_ENV,
 * PROFILE_EXE=1|path (the single executable instead of node + main.js), PROFILE_DAEMON_PASSES=N (run N passes,
 * memory every PROFILE_SAMPLE_EVERY passes, bounded by PROFILE_DAEMON_MAX_S seconds; no sampler),
 * PROFILE_SAMPLE_US (the sampler's interval, default 1000).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { runPass } from '../src/pass/run-pass.js';
import { connectPerPass } from '../src/remote/provider.js';
import { openSession } from '../src/remote/session.js';
import type { SourceProvider } from '../src/remote/types.js';
import { makeReporter } from '../src/run/reporter.js';
import { resolvePassSettings } from '../src/settings/pass-settings.js';
import { makeTempDir, type TestMaster } from '../test/helpers/sshd.js';
import { loadTimeByPackage, summarizeProfile, timeByOwnCaller } from './cpuprofile.js';
import { hugeTree } from './idle.js';
import { startBenchMaster } from './master.js';
import { createMeter, type Meter, median, serviceEnv, spawnCollect } from './measure.js';
import { targetFilesystem } from './target-fs.js';
import { CLI, EXE, interpreterFlags, PACKAGE_ROOT, passArgs } from './tools.js';
import { buildTree, writeBenchTree } from './tree.js';

const RUNS = Number(process.env.PROFILE_RUNS ?? 7);
const SECTIONS = (process.env.PROFILE_SECTIONS ?? 'startup,ssh,phases,cpu,daemon,daemon-process').split(',');
const out = (line = ''): void => void process.stdout.write(line + '\n');
const ms = (n: number): string => `${n.toFixed(1)} ms`.padStart(10);

async function repeat<T>(n: number, fn: () => Promise<T>): Promise<T[]> {
  const r: T[] = [];
  for (let i = 0; i < n; i++) r.push(await fn());
  return r;
}

async function startup(meter: Meter): Promise<void> {
  out('## 1. Start-up (fresh process each; median wall / CPU)');
  const cases: Array<[string, string[]]> = [
    ['node -e 0', ['-e', '0']],
    ['xroad-sync --version (commander + main.js)', [CLI, '--version']],
    [
      'import the sync command graph',
      ['--input-type=module', '-e', `await import(${JSON.stringify(path.join(PACKAGE_ROOT, 'dist/src/cli/sync-command.js'))})`],
    ],
  ];
  for (const [label, args] of cases) {
    const s = await repeat(RUNS, () => meter.run(process.execPath, args, { cwd: PACKAGE_ROOT }));
    out(
      `${label.padEnd(48)} wall ${ms(median(s.map((x) => x.wallMs)))}  CPU ${ms(median(s.map((x) => x.cpuMs)))}  RSS ${(median(s.map((x) => x.maxRssKb ?? 0)) / 1024).toFixed(1)} MB`,
    );
  }
  out();
  out('Import time of each dependency alone (in-process, performance.now() around import(); fresh process each):');
  const mods = [
    'commander',
    'pino',
    'ssh2',
    'ssh2-sftp-client',
    'write-file-atomic',
    'micromatch',
    'chokidar',
    path.join(PACKAGE_ROOT, 'dist/src/remote/session.js'),
    path.join(PACKAGE_ROOT, 'dist/src/pass.js'),
    path.join(PACKAGE_ROOT, 'dist/src/cli/sync-command.js'),
  ];
  for (const mod of mods) {
    const code = `const t = performance.now(); await import(${JSON.stringify(mod)}); process.stdout.write(String(performance.now() - t));`;
    const times = await repeat(RUNS, async () =>
      Number((await spawnCollect(process.execPath, ['--input-type=module', '-e', code], { cwd: PACKAGE_ROOT })).stdout),
    );
    out(`  ${path.relative(PACKAGE_ROOT, mod).startsWith('dist') ? path.relative(PACKAGE_ROOT, mod) : mod}`.padEnd(50) + ms(median(times)));
  }
  out();
}

async function ssh(master: TestMaster, meter: Meter): Promise<void> {
  out('## 2. SSH handshake (TCP + kex + auth + channel)');
  const opts = {
    host: '127.0.0.1',
    port: master.port,
    user: master.user,
    identityFile: master.identity,
    knownHostsFile: master.knownHosts,
    connectTimeoutMs: 10_000,
    idleTimeoutMs: 10_000,
  };
  const open = await repeat(RUNS, async () => {
    const t = performance.now();
    const s = await openSession(opts);
    const opened = performance.now() - t;
    const c = performance.now();
    await s.close();
    return { opened, closed: performance.now() - c };
  });
  out(`xroad-sync openSession (in-process, ssh2 + sftp)       ${ms(median(open.map((o) => o.opened)))}; close() ${ms(median(open.map((o) => o.closed)))}`);
  const args = [
    '-o',
    'ConnectTimeout=5',
    '-p',
    String(master.port),
    '-i',
    master.identity,
    '-o',
    `UserKnownHostsFile=${master.knownHosts}`,
    '-o',
    'StrictHostKeyChecking=yes',
    `${master.user}@127.0.0.1`,
    'true',
  ];
  const s = await repeat(RUNS, () => meter.run('ssh', args));
  out(`ssh ... true (process: start-up, kex, auth, exec)      ${ms(median(s.map((x) => x.wallMs)))}; CPU ${ms(median(s.map((x) => x.cpuMs)))}`);
  out();
}

async function phases(master: TestMaster, work: string): Promise<void> {
  out('## 3. Pass phases, in-process, fresh connection per pass (median ms)');
  out('   connect = lock + journal check + openSession; scan = master listing ‖ target scan; stage = fetch + write + fsync files;');
  out('   commit = journal + renames + attrs + dir fsyncs; close = session close; report = pass end → runPass returns');
  const header = ['scenario', 'fsync', 'connect', 'scan', 'plan', 'stage', 'commit', 'close', 'report', 'total', 'CPU'];
  out(header.map((h, i) => (i < 2 ? h.padEnd(i ? 6 : 22) : h.padStart(8))).join(' '));
  // fsync off: the same pass with every FileHandle.sync and fs.fsync a no-op, to price durability.
  const handle = await fsp.open('/dev/null', 'r');
  const proto = Object.getPrototypeOf(handle) as { sync: () => Promise<void> };
  await handle.close();
  const realSync = proto.sync;
  const realFsync = fs.fsync;
  const setFsync = (on: boolean): void => {
    proto.sync = on ? realSync : async () => undefined;
    (fs as { fsync: typeof fs.fsync }).fsync = on ? realFsync : (((_fd: number, cb: (err: null) => void) => cb(null)) as typeof fs.fsync);
  };
  for (const treeName of ['realistic', 'large'] as const) {
    const tree = buildTree(treeName);
    const source = path.join(work, `master-${treeName}`);
    await fsp.mkdir(source);
    await writeBenchTree(source, tree);
    for (const scenario of ['initial', 'no-change'] as const) {
      for (const fsyncOn of scenario === 'initial' ? [true, false] : [true]) {
        setFsync(fsyncOn);
        const target = path.join(work, `t-${treeName}`);
        const rows: number[][] = [];
        for (let i = 0; i < RUNS + 1; i++) {
          if (scenario === 'initial' || i === 0) {
            await fsp.rm(target, { recursive: true, force: true });
            await fsp.mkdir(target);
          }
          const settings = resolvePassSettings(
            {
              master: '127.0.0.1',
              port: master.port,
              user: master.user,
              identity: master.identity,
              knownHosts: master.knownHosts,
              source: `${source}/`,
              target,
              stateDir: path.join(work, 'state'),
              logFile: false,
              flagFile: path.join(work, 'no-flag'),
            },
            {},
          );
          const inner = connectPerPass(settings.connection, settings.sourceDir);
          const marks = new Map<string, number>();
          const provider: SourceProvider = {
            acquire: () => inner.acquire(),
            release: async (s, h) => {
              marks.set('release', performance.now());
              await inner.release(s, h);
              marks.set('released', performance.now());
            },
          };
          const cpu0 = process.cpuUsage();
          const t0 = performance.now();
          const result = await runPass(settings, provider, makeReporter(null, { printItems: false, printErrors: true }), {
            at: (point) => void (marks.has(point) || marks.set(point, performance.now())),
          });
          const end = performance.now();
          const cpu = process.cpuUsage(cpu0);
          if (result.result !== 'ok') throw new Error(`pass failed: ${String(result.error)}`);
          if (scenario === 'no-change' && i === 0) continue; // the sync that makes the next ones no-change
          if (i === 0) continue; // warm-up
          const at = (p: string, fallback: number): number => marks.get(p) ?? fallback;
          const connected = at('connected', t0);
          const scanned = at('scanned', connected);
          const planned = at('planned', scanned);
          const staged = at('staged', planned);
          const committed = at('committed', staged);
          const release = at('release', committed);
          const released = at('released', release);
          rows.push([
            connected - t0,
            scanned - connected,
            planned - scanned,
            staged - planned,
            committed - staged,
            released - release,
            end - released + (release - committed),
            end - t0,
            (cpu.user + cpu.system) / 1000,
          ]);
        }
        const med = rows[0]!.map((_, col) => median(rows.map((r) => r[col]!)));
        out([`${treeName}/${scenario}`.padEnd(22), (fsyncOn ? 'on' : 'OFF').padEnd(6), ...med.map((v) => v.toFixed(1).padStart(8))].join(' '));
      }
    }
  }
  setFsync(true);
  out();
}

/**
 * The daemon's no-change pass, warm session, split into its parts: runPass
 * (by hook points) and what runReportedPass adds around it (the rsync log,
 * the pass record, status.json). Run under `node --cpu-prof` to see functions.
 */
async function daemonPass(master: TestMaster, work: string): Promise<void> {
  out('## 5. Daemon no-change pass, warm session (median ms over PROFILE_RUNS × 5 passes)');
  const { WarmSessionProvider } = await import('../src/remote/provider.js');
  const { RsyncLogFile } = await import('../src/report/rsync-log.js');
  const { recordPass } = await import('../src/state/status.js');
  const { createLogger, logPass, passRecord } = await import('../src/report/logger.js');
  const devNull = fs.openSync('/dev/null', 'w');
  const logger = createLogger({ destination: devNull });
  for (const treeName of ['realistic', 'large'] as const) {
    const source = path.join(work, `daemon-master-${treeName}`);
    await fsp.mkdir(source);
    await writeBenchTree(source, buildTree(treeName));
    const target = path.join(work, `daemon-target-${treeName}`);
    await fsp.mkdir(target);
    const stateDir = path.join(work, `daemon-state-${treeName}`);
    const settings = resolvePassSettings(
      {
        master: '127.0.0.1',
        port: master.port,
        user: master.user,
        identity: master.identity,
        knownHosts: master.knownHosts,
        source: `${source}/`,
        target,
        stateDir,
        logFile: path.join(work, 'daemon.log'),
        flagFile: path.join(work, 'no-flag'),
      },
      {},
    );
    const provider = new WarmSessionProvider(settings.connection, settings.sourceDir);
    await provider.acquire();
    const rows: number[][] = [];
    for (let i = 0; i < RUNS * 5 + 1; i++) {
      const marks = new Map<string, number>();
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const log = await RsyncLogFile.open(settings.logFile!);
      const tLog = performance.now();
      const result = await runPass(settings, provider, makeReporter(log, { printItems: false, printErrors: true }), {
        at: (point) => void (marks.has(point) || marks.set(point, performance.now())),
      });
      const tPass = performance.now();
      await log.close();
      const tClose = performance.now();
      logPass(logger, passRecord({ ...result, durationMs: 0 }));
      await recordPass(stateDir, result);
      const tEnd = performance.now();
      const cpu = process.cpuUsage(cpu0);
      if (result.result !== 'ok') throw new Error(`pass failed: ${String(result.error)}`);
      if (i === 0) continue; // the initial sync
      const connected = marks.get('connected') ?? tLog;
      const scanned = marks.get('scanned') ?? connected;
      const planned = marks.get('planned') ?? scanned;
      const committed = marks.get('committed') ?? planned;
      rows.push([
        tLog - t0,
        connected - tLog,
        scanned - connected,
        planned - scanned,
        committed - planned,
        tPass - committed,
        tClose - tPass,
        tEnd - tClose,
        tEnd - t0,
        (cpu.user + cpu.system) / 1000,
      ]);
    }
    await provider.close();
    const med = rows[0]!.map((_, col) => median(rows.map((r) => r[col]!)));
    const head = ['log open', 'lock+jrnl', 'scan', 'plan', 'stage+commit', 'report', 'log close', 'record+status', 'total', 'CPU'];
    out(`${treeName}: ` + head.map((h, i) => `${h} ${med[i]!.toFixed(1)}`).join(' | '));
  }
  fs.closeSync(devNull);
  out();
}

async function cpuProfiles(master: TestMaster, work: string): Promise<void> {
  out('## 4. V8 CPU profiles of CLI passes (node --cpu-prof; self time by bucket, ms)');
  const cases: Array<[string, () => Promise<void>, string[]]> = [];
  for (const treeName of (process.env.PROFILE_CPU_TREES ?? 'realistic,large').split(',') as Array<'realistic' | 'large'>) {
    const tree = buildTree(treeName);
    const source = path.join(work, `cpu-master-${treeName}`);
    await fsp.mkdir(source);
    await writeBenchTree(source, tree);
    const target = path.join(work, `cpu-target-${treeName}`);
    const args = [
      CLI,
      'sync',
      ...passArgs(master, source, { target, state: path.join(work, `cpu-state-${treeName}`), log: path.join(work, 'cpu.log') }, path.join(work, 'no-flag')),
    ];
    cases.push([
      `${treeName} initial`,
      async () => {
        await fsp.rm(target, { recursive: true, force: true });
        await fsp.mkdir(target);
      },
      args,
    ]);
    cases.push([`${treeName} no-change`, async () => {}, args]);
  }
  for (const [label, prepare, args] of cases) {
    await prepare();
    const dir = path.join(work, `prof-${label.replace(/\W+/g, '-')}`);
    const r = await spawnCollect(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-interval', '250', ...args]);
    if (r.status !== 0) throw new Error(`profiled pass failed: ${r.stderr}`);
    const file = path.join(dir, (await fsp.readdir(dir))[0]!);
    const p = await summarizeProfile(file, 12);
    out(`### ${label}: ${p.totalMs.toFixed(0)} ms profiled (from V8 start, after node's own bootstrap)`);
    for (const b of p.buckets.slice(0, 16)) out(`  ${b.bucket.padEnd(46)} ${ms(b.ms)}`);
    out('  heaviest functions (self):');
    for (const f of p.functions) out(`    ${f.fn.slice(0, 90).padEnd(90)} ${ms(f.ms)}`);
    out('  under module top-level code (loading), by module package:');
    for (const l of (await loadTimeByPackage(file)).slice(0, 10)) out(`    ${l.pkg.padEnd(44)} ${ms(l.ms)}`);
    if (process.env.PROFILE_KEEP === '1') {
      const keep = path.join(PACKAGE_ROOT, 'bench/results', `${label.replace(/\W+/g, '-')}.cpuprofile`);
      await fsp.mkdir(path.dirname(keep), { recursive: true });
      await fsp.copyFile(file, keep);
      out(`  kept ${path.relative(PACKAGE_ROOT, keep)}`);
    }
    out();
  }
}

async function daemonProcess(master: TestMaster, work: string): Promise<void> {
  const seconds = Number(process.env.PROFILE_DAEMON_S ?? 30);
  const interval = process.env.PROFILE_INTERVAL ?? '1';
  // PROFILE_EXE=1 (dist/exe/xroad-sync) or a path: the single executable as shipped, its execArgv built in;
  // PROFILE_NODE_FLAGS then reach it through NODE_OPTIONS.
  const exe = process.env.PROFILE_EXE ? (process.env.PROFILE_EXE === '1' ? EXE : path.resolve(process.env.PROFILE_EXE)) : undefined;
  // PROFILE_DAEMON_PASSES=N: run until N passes (instead of PROFILE_DAEMON_S seconds), memory sampled every
  // PROFILE_SAMPLE_EVERY (500) passes: does RSS grow with passes?
  const passGoal = Number(process.env.PROFILE_DAEMON_PASSES ?? 0);
  // PROFILE_DAEMON_TREE=huge: the realistic tree plus one 50,000-entry directory (the bench's large-daemon tree).
  const huge = process.env.PROFILE_DAEMON_TREE === 'huge';
  const sampleEvery = Number(process.env.PROFILE_SAMPLE_EVERY ?? 500);
  out(
    `## 6. xroad-sync daemon process (${exe ? path.relative(PACKAGE_ROOT, exe) : 'node ' + path.relative(PACKAGE_ROOT, CLI)}), ${huge ? 'the 50,000-entry tree' : 'realistic tree'}, no changes, --interval ${interval}, ` +
      (passGoal > 0 ? `${passGoal} passes` : `${seconds} s`) +
      ' after its first pass',
  );
  const source = path.join(work, 'daemon-proc-master');
  await fsp.mkdir(source);
  await writeBenchTree(source, huge ? hugeTree() : buildTree('realistic'));
  const target = path.join(work, 'daemon-proc-target');
  const state = path.join(work, 'daemon-proc-state');
  await fsp.mkdir(target);
  const profDir = path.join(work, 'daemon-proc-prof');
  // PROFILE_DAEMON_PROF=0: no sampler, so /proc's CPU per pass is the daemon's own.
  const profiled = process.env.PROFILE_DAEMON_PROF !== '0' && passGoal === 0;
  const nodeFlags = [
    ...(process.env.PROFILE_NODE_FLAGS ?? '').split(' ').filter(Boolean),
    ...(profiled ? ['--cpu-prof', '--cpu-prof-dir', profDir, '--cpu-prof-interval', process.env.PROFILE_SAMPLE_US ?? '1000'] : []),
  ];
  const daemonArgs = [
    'daemon',
    '--interval',
    interval,
    ...passArgs(master, source, { target, state, log: path.join(work, 'daemon-proc.log') }, path.join(work, 'daemon-proc-flag', 'sync-disabled')),
  ];
  // As /usr/bin/xroad-sync runs it: with the node flags of main.ts's interpreter line (the executable's execArgv).
  const [command, args] = exe ? [exe, daemonArgs] : [process.execPath, [...interpreterFlags(CLI), ...nodeFlags, CLI, ...daemonArgs]];
  // The daemon watches the flag's directory: give it one of its own, as /var/tmp/xroad is on a slave.
  await fsp.mkdir(path.join(work, 'daemon-proc-flag'));
  if (huge) {
    // As the unit does (ExecStartPre=xroad-sync sync): the daemon starts on a synced target.
    const syncArgs = ['sync', ...daemonArgs.slice(3)];
    const initial = await spawnCollect(command, exe ? syncArgs : [...interpreterFlags(CLI), CLI, ...syncArgs], { env: serviceEnv(), timeoutMs: 1_800_000 });
    if (initial.status !== 0) throw new Error(`the initial sync exited ${initial.status}: ${initial.stderr.trim()}`);
  }
  const started = performance.now();
  // PROFILE_DAEMON_ENV="K=V …": extra environment for the daemon (e.g. MALLOC_ARENA_MAX=2).
  const extraEnv = Object.fromEntries(
    (process.env.PROFILE_DAEMON_ENV ?? '')
      .split(' ')
      .filter(Boolean)
      .map((kv) => [kv.split('=')[0]!, kv.slice(kv.indexOf('=') + 1)]),
  );
  if (exe && nodeFlags.length > 0) extraEnv.NODE_OPTIONS = nodeFlags.join(' ');
  const child = spawn(command, args, { env: { ...serviceEnv(), ...extraEnv }, stdio: ['ignore', 'pipe', 'inherit'] });
  let passes = 0;
  const keepStdout = process.env.PROFILE_DAEMON_STDOUT; // a file for the daemon's stdout (e.g. with PROFILE_NODE_FLAGS=--trace-gc)
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    passes += c.split('"msg":"pass"').length - 1;
    if (keepStdout) fs.appendFileSync(keepStdout, c);
  });
  let exited = false;
  const closed = new Promise<void>((resolve) =>
    child.once('close', () => {
      exited = true;
      resolve();
    }),
  );
  const firstPassesS = huge ? 600 : 60; // the 50,000-entry initial sync is the daemon's first pass here
  const deadline = Date.now() + firstPassesS * 1000;
  while (passes < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (passes < 2) throw new Error(`the daemon did not finish two passes within ${firstPassesS} s`);
  // PROFILE_DAEMON_WARMUP_S: idle seconds before measuring, so V8's tiering (TurboFan compiles on its workers
  // for the first ~20 passes) is not billed to the steady state.
  await new Promise((r) => setTimeout(r, Number(process.env.PROFILE_DAEMON_WARMUP_S ?? 0) * 1000));
  const skipMs = performance.now() - started;
  const cpu0 = procCpuMs(child.pid!);
  const threads0 = threadCpuMs(child.pid!);
  const passes0 = passes;
  const t0 = performance.now();
  if (passGoal > 0) {
    out('  passes | VmRSS | RssAnon | RssFile | VmHWM (MB) | CPU per pass since the last row (ms)');
    let next = passes;
    let lastCpu = cpu0;
    let lastPasses = passes;
    // Bounded: at most PROFILE_DAEMON_MAX_S (3600) seconds, and the daemon must keep passing.
    const until = Date.now() + Number(process.env.PROFILE_DAEMON_MAX_S ?? 3600) * 1000;
    while (!exited && Date.now() < until) {
      if (passes >= next) {
        const cpu = procCpuMs(child.pid!);
        out(`  ${String(passes).padStart(6)} | ${memoryRow(child.pid!)} | ${passes > lastPasses ? ((cpu - lastCpu) / (passes - lastPasses)).toFixed(2) : '-'}`);
        lastCpu = cpu;
        lastPasses = passes;
        if (passes >= passGoal) break;
        next = Math.min(passGoal, (Math.floor(passes / sampleEvery) + 1) * sampleEvery);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    if (passes < passGoal) throw new Error(`the daemon made only ${passes} of ${passGoal} passes`);
  } else {
    await new Promise((r) => setTimeout(r, seconds * 1000));
  }
  const elapsedS = (performance.now() - t0) / 1000;
  const used = procCpuMs(child.pid!) - cpu0;
  const threads = threadCpuMs(child.pid!);
  const n = passes - passes0;
  const procStatus = fs.readFileSync(`/proc/${child.pid}/status`, 'utf8');
  const rss = /^VmRSS:\s+(\d+)/m.exec(procStatus)?.[1];
  // RssFile is node's own binary and libraries (shared, clean page cache); RssAnon is this process's memory.
  const rssParts = ['RssAnon', 'RssFile']
    .map((k) => `${k} ${(Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(procStatus)?.[1]) / 1024).toFixed(1)} MB`)
    .join(', ');
  const mappings = smapsByMapping(child.pid!, exe ?? process.execPath);
  child.kill('SIGTERM');
  await Promise.race([closed, new Promise((r) => setTimeout(r, 10_000))]);
  out(
    `${n} passes in ${elapsedS.toFixed(0)} s: ${(used / n).toFixed(1)} ms CPU per pass (/proc, 10 ms ticks${profiled ? ', sampler included' : ''}), ${((100 * used) / (elapsedS * 1000)).toFixed(2)} % of one core, RSS ${(Number(rss) / 1024).toFixed(1)} MB`,
  );
  const byThread = [...threads].map(([name, t]) => `${name} ${((t - (threads0.get(name) ?? 0)) / n).toFixed(1)}`).join(', ');
  out(`  per thread, ms CPU per pass: ${byThread}`);
  out(`  memory: ${rssParts}`);
  out('  RSS by mapping (/proc/PID/smaps, MB): Rss = Private_Dirty + Private_Clean + Shared_Clean (+ Shared_Dirty)');
  for (const m of mappings)
    out(`    ${m.name.padEnd(40)} Rss ${mb(m.rss)}  dirty ${mb(m.privateDirty)}  clean private ${mb(m.privateClean)}  clean shared ${mb(m.sharedClean)}`);
  if (!profiled) return out();
  const file = path.join(profDir, (await fsp.readdir(profDir))[0]!);
  const p = await summarizeProfile(file, 20, skipMs);
  const busy = p.buckets.filter((b) => !b.bucket.startsWith('idle')).reduce((a, b) => a + b.ms, 0);
  out(`profiled ${busy.toFixed(0)} ms busy in ${p.totalMs.toFixed(0)} ms (${(busy / n).toFixed(1)} ms per pass; sampling overhead included)`);
  out('  self time by bucket:');
  for (const b of p.buckets.filter((x) => !x.bucket.startsWith('idle')).slice(0, 14))
    out(`    ${b.bucket.padEnd(46)} ${ms(b.ms)}  ${(b.ms / n).toFixed(2)} ms/pass`);
  out('  by our innermost calling function (includes what it spends in npm packages and node):');
  for (const c of await timeByOwnCaller(file, skipMs, 22)) out(`    ${c.caller.slice(0, 70).padEnd(70)} ${ms(c.ms)}  ${(c.ms / n).toFixed(2)} ms/pass`);
  out('  heaviest functions (self):');
  for (const f of p.functions.filter((x) => !x.fn.startsWith('(idle)')).slice(0, 15)) out(`    ${f.fn.slice(0, 90).padEnd(90)} ${ms(f.ms)}`);
  if (process.env.PROFILE_KEEP === '1') {
    const keep = path.join(PACKAGE_ROOT, 'bench/results', 'daemon-idle.cpuprofile');
    await fsp.copyFile(file, keep);
    out(`  kept ${path.relative(PACKAGE_ROOT, keep)}`);
  }
  out();
}

const mb = (kb: number): string => (kb / 1024).toFixed(1).padStart(6);

/** VmRSS, RssAnon, RssFile, VmHWM from /proc/PID/status, in MB, as one table row. */
function memoryRow(pid: number): string {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return ['VmRSS', 'RssAnon', 'RssFile', 'VmHWM'].map((k) => mb(Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0))).join(' | ');
}

interface MappingRss {
  name: string;
  rss: number;
  privateDirty: number;
  privateClean: number;
  sharedClean: number;
}

/**
 * Resident memory by mapping kind (kB): the executable's text (r-x), read-only data (r--) and data (rw-),
 * the C heap, anonymous memory (V8's heap, Buffers, thread stacks), shared libraries, the rest.
 */
function smapsByMapping(pid: number, executable: string): MappingRss[] {
  const groups = new Map<string, MappingRss>();
  let current: MappingRss | undefined;
  for (const line of fs.readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const header = /^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (header) {
      const [, perms, file] = header as unknown as [string, string, string];
      const name =
        file === path.resolve(executable) || file === fs.realpathSync(executable)
          ? `executable ${perms.slice(0, 3)}`
          : file === ''
            ? 'anonymous'
            : file.startsWith('[')
              ? file
              : file.includes('.so')
                ? 'shared libraries'
                : 'other files';
      current = groups.get(name) ?? { name, rss: 0, privateDirty: 0, privateClean: 0, sharedClean: 0 };
      groups.set(name, current);
      continue;
    }
    const field = /^(Rss|Private_Dirty|Private_Clean|Shared_Clean):\s+(\d+) kB/.exec(line);
    if (!field || !current) continue;
    const kb = Number(field[2]);
    if (field[1] === 'Rss') current.rss += kb;
    else if (field[1] === 'Private_Dirty') current.privateDirty += kb;
    else if (field[1] === 'Private_Clean') current.privateClean += kb;
    else current.sharedClean += kb;
  }
  return [...groups.values()].filter((g) => g.rss > 0).sort((a, b) => b.rss - a.rss);
}

/** CPU by thread name (main, V8 workers, libuv pool, …) from /proc/PID/task. */
function threadCpuMs(pid: number): Map<string, number> {
  const byName = new Map<string, number>();
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = tid === String(pid) ? 'main' : `${stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))}/${tid}`;
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      byName.set(name, (byName.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) * 10);
    } catch {
      // a thread that ended
    }
  }
  return byName;
}

function procCpuMs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

async function main(): Promise<void> {
  const meter = await createMeter();
  const tmp = await makeTempDir('xroad-sync-profile-');
  const targets = await targetFilesystem(tmp, (line) => out(`profile: ${line}`));
  const work = targets.root;
  const master = await startBenchMaster();
  try {
    out(`targets on ${targets.describe}`);
    out(`# xroad-sync profile — ${RUNS} runs per measurement; meter: ${meter.method}`);
    out();
    if (SECTIONS.includes('startup')) await startup(meter);
    if (SECTIONS.includes('ssh')) await ssh(master, meter);
    if (SECTIONS.includes('phases')) await phases(master, work);
    if (SECTIONS.includes('cpu')) await cpuProfiles(master, work);
    if (SECTIONS.includes('daemon')) await daemonPass(master, work);
    if (SECTIONS.includes('daemon-process')) await daemonProcess(master, work);
  } finally {
    await master.stop();
    await meter.close();
    await targets.close();
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`profile: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
