/**
 * The contenders, each syncing the same master tree into its own target:
 *  - rsync: the guide's command, over the same sshd;
 *  - xroad-sync as a process per pass (the compiled CLI, and the bundle if built);
 *  - a daemon-mode pass in this process over an already-open WarmSessionProvider.
 * Bytes over the wire: xroad-sync counts its socket; rsync's ssh reports
 * "Transferred: sent N, received M bytes" with -o LogLevel=VERBOSE, which is
 * added only in warm-up (probe) runs so timed runs use the guide's command.
 */
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WarmSessionProvider } from '../src/remote/provider.js';
import { createLogger } from '../src/report/logger.js';
import { runReportedPass } from '../src/run/reported-pass.js';
import { type PassSettings, type RawPassOptions, resolvePassSettings } from '../src/settings/pass-settings.js';
import type { TestMaster } from '../test/helpers/sshd.js';
import type { MasterCpu } from './master.js';
import { type Meter, measureInProcess } from './measure.js';

/** dist/bench/tools.js → the package root. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = path.join(PACKAGE_ROOT, 'dist/src/cli/main.js');
/** The single-file bundle (`npm run bundle`: dist/bundle/xroad-sync.cjs); BENCH_BUNDLE overrides. */
export const BUNDLE = process.env.BENCH_BUNDLE
  ? path.resolve(process.env.BENCH_BUNDLE)
  : (['xroad-sync.cjs', 'xroad-sync.mjs'].map((f) => path.join(PACKAGE_ROOT, 'dist/bundle', f)).find((f) => existsSync(f)) ??
    path.join(PACKAGE_ROOT, 'dist/bundle/xroad-sync.cjs'));

/** The single executable as shipped in the packages (`npm run exe`: dist/exe/xroad-sync); BENCH_EXE overrides. */
export const EXE = process.env.BENCH_EXE ? path.resolve(process.env.BENCH_EXE) : path.join(PACKAGE_ROOT, 'dist/exe/xroad-sync');

export const GUIDE_EXCLUDES = ['db.properties', '/conf.d/node.ini', '*.tmp', '/postgresql', '/nginx', '/globalconf', '/jetty', '/gpghome'];

export interface Sample {
  readonly wallMs: number;
  readonly cpuMs: number;
  readonly userMs: number;
  readonly sysMs: number;
  readonly maxRssKb: number | null;
  /** Bytes both ways on the SSH connection (xroad-sync: socket counters; rsync: ssh's count, probe runs only). */
  readonly wireBytes: number | null;
  /** CPU the master's sshd spent on this run (session, rsync --server or sftp), 10 ms ticks. */
  readonly masterCpuMs: number | null;
  /** What the tool itself reported (rsync: protocol payload after -z; xroad-sync: socket bytes). */
  readonly selfBytes: number | null;
}

export interface ToolDirs {
  readonly target: string;
  readonly state: string;
  readonly log: string;
}

export interface Tool {
  readonly id: string;
  readonly label: string;
  readonly mode: 'process' | 'daemon';
  /** Own target, state dir and log, below `base`. */
  dirs(tree: string): ToolDirs;
  /** `probe`: an untimed warm-up run, where rsync may log its wire bytes. */
  run(tree: string, source: string, probe: boolean): Promise<Sample>;
  close(): Promise<void>;
}

function baseDirs(base: string, id: string, tree: string): ToolDirs {
  const root = path.join(base, tree, id);
  return { target: path.join(root, 'target'), state: path.join(root, 'state'), log: path.join(root, 'sync.log') };
}

/** The guide's rsync command line for one slave (`probe`: ssh logs its byte counts). */
export function rsyncArgs(master: TestMaster, source: string, d: ToolDirs, probe = false): string[] {
  const ssh = `ssh -o ConnectTimeout=5 -p ${master.port} -i ${master.identity} -o UserKnownHostsFile=${master.knownHosts} -o StrictHostKeyChecking=yes`;
  return [
    '-e',
    probe ? `${ssh} -o LogLevel=VERBOSE` : ssh,
    '-aqz',
    '--timeout=10',
    '--delete-delay',
    ...GUIDE_EXCLUDES.flatMap((p) => ['--exclude', p]),
    '--delay-updates',
    `--log-file=${d.log}`,
    `${master.user}@127.0.0.1:${source.replace(/\/?$/, '/')}`,
    `${d.target}/`,
  ];
}

export function rsyncTool(base: string, master: TestMaster, meter: Meter, cpu: MasterCpu | null): Tool {
  const id = 'rsync';
  return {
    id,
    label: 'rsync (guide command)',
    mode: 'process',
    dirs: (tree) => baseDirs(base, id, tree),
    async run(tree, source, probe) {
      const d = baseDirs(base, id, tree);
      const args = rsyncArgs(master, source, d, probe);
      const before = cpu?.snapshot();
      const s = await meter.run('rsync', args);
      const masterCpuMs = before ? await cpu!.since(before) : null;
      if (s.status !== 0) throw new Error(`rsync exited ${s.status}: ${s.stderr.trim()}`);
      const log = await fs.readFile(d.log, 'utf8');
      const finals = [...log.matchAll(/sent ([\d,]+) bytes {2}received ([\d,]+) bytes/g)];
      const last = finals[finals.length - 1];
      const selfBytes = last ? Number(last[1]!.replace(/,/g, '')) + Number(last[2]!.replace(/,/g, '')) : null;
      const t = /Transferred: sent (\d+), received (\d+) bytes/.exec(s.stderr);
      const wireBytes = t ? Number(t[1]) + Number(t[2]) : null;
      return { wallMs: s.wallMs, cpuMs: s.cpuMs, userMs: s.userMs, sysMs: s.sysMs, maxRssKb: s.maxRssKb, wireBytes, selfBytes, masterCpuMs };
    },
    close: async () => {},
  };
}

/** `flagFile`: the daemon watches its directory, so give a daemon one of its own (a state dir there would wake it every pass). */
export function passArgs(master: TestMaster, source: string, d: ToolDirs, flagFile = path.join(d.state, 'sync-disabled')): string[] {
  return [
    '--master',
    '127.0.0.1',
    '--port',
    String(master.port),
    '--user',
    master.user,
    '--identity',
    master.identity,
    '--known-hosts',
    master.knownHosts,
    '--source',
    source.replace(/\/?$/, '/'),
    '--target',
    d.target,
    '--state-dir',
    d.state,
    '--log-file',
    d.log,
    '--flag-file',
    flagFile,
  ];
}

/** The JSON pass record on stdout. */
function passRecordOf(stdout: string): { result?: string; bytesReceived?: number; bytesSent?: number } | undefined {
  for (const line of stdout.split('\n').reverse()) {
    if (!line.startsWith('{')) continue;
    try {
      const rec = JSON.parse(line) as { msg?: string };
      if (rec.msg === 'pass') return rec as { result?: string; bytesReceived?: number; bytesSent?: number };
    } catch {
      // not JSON
    }
  }
  return undefined;
}

export function processTool(base: string, master: TestMaster, meter: Meter, cpu: MasterCpu | null, which: 'cli' | 'bundle' | 'exe'): Tool {
  const id = which === 'cli' ? 'xroad-sync' : which === 'bundle' ? 'xroad-sync-bundle' : 'xroad-sync-exe';
  const script = which === 'cli' ? CLI : BUNDLE;
  // The executable carries its node flags itself (SEA execArgv); the scripts run under this process's node.
  const command = (args: string[]): [string, string[]] => (which === 'exe' ? [EXE, args] : [process.execPath, [...interpreterFlags(script), script, ...args]]);
  return {
    id,
    label: which === 'cli' ? 'xroad-sync sync (process)' : which === 'bundle' ? 'xroad-sync bundle (process)' : 'xroad-sync executable (process, as shipped)',
    mode: 'process',
    dirs: (tree) => baseDirs(base, id, tree),
    async run(tree, source) {
      const d = baseDirs(base, id, tree);
      const before = cpu?.snapshot();
      // Run it as /usr/bin/xroad-sync runs: with the node flags of its interpreter line.
      const s = await meter.run(...command(['sync', ...passArgs(master, source, d)]));
      const masterCpuMs = before ? await cpu!.since(before) : null;
      const rec = passRecordOf(s.stdout);
      if (s.status !== 0 || rec?.result !== 'ok') throw new Error(`${id} exited ${s.status}: ${s.stderr.trim() || s.stdout.trim()}`);
      const selfBytes = (rec.bytesReceived ?? 0) + (rec.bytesSent ?? 0);
      return { wallMs: s.wallMs, cpuMs: s.cpuMs, userMs: s.userMs, sysMs: s.sysMs, maxRssKb: s.maxRssKb, wireBytes: selfBytes, selfBytes, masterCpuMs };
    },
    close: async () => {},
  };
}

/**
 * What the daemon does each interval: runReportedPass (rsync log, status.json,
 * pass record to a logger, here /dev/null) over one warm session per tree,
 * opened before the first timed pass.
 */
export function daemonTool(base: string, master: TestMaster, cpu: MasterCpu | null): Tool {
  const id = 'xroad-sync-daemon';
  const devNull = openSync('/dev/null', 'w');
  const logger = createLogger({ destination: devNull });
  const warm = new Map<string, { provider: WarmSessionProvider; settings: PassSettings }>();
  const session = async (tree: string, source: string) => {
    let w = warm.get(tree);
    if (!w) {
      const d = baseDirs(base, id, tree);
      const raw: RawPassOptions = {
        master: '127.0.0.1',
        port: master.port,
        user: master.user,
        identity: master.identity,
        knownHosts: master.knownHosts,
        source: source.replace(/\/?$/, '/'),
        target: d.target,
        stateDir: d.state,
        logFile: d.log,
        flagFile: path.join(d.state, 'sync-disabled'),
      };
      const settings = resolvePassSettings(raw, {});
      const provider = new WarmSessionProvider(settings.connection, settings.sourceDir);
      w = { provider, settings };
      warm.set(tree, w);
    }
    return w;
  };
  return {
    id,
    label: 'xroad-sync daemon pass (in-process, warm session)',
    mode: 'daemon',
    dirs: (tree) => baseDirs(base, id, tree),
    async run(tree, source) {
      const { provider, settings } = await session(tree, source);
      // Warm: connect (untimed) if this is the first pass or the session was dropped.
      const before = (await provider.acquire()).traffic();
      const cpuBefore = cpu?.snapshot();
      const m = await measureInProcess(() => runReportedPass(settings, provider, { printItems: false, logger }));
      if (m.value.result !== 'ok') throw new Error(`daemon pass failed: ${String(m.value.error)}`);
      const after = (await provider.acquire()).traffic();
      const wire = after.sent - before.sent + (after.received - before.received);
      const masterCpuMs = cpuBefore ? await cpu!.since(cpuBefore) : null;
      // The pass record's counts: cumulative over the session's life, not per pass (reported as found).
      const selfBytes = m.value.bytesReceived + m.value.bytesSent;
      return { wallMs: m.wallMs, cpuMs: m.cpuMs, userMs: m.userMs, sysMs: m.sysMs, maxRssKb: null, wireBytes: wire, selfBytes, masterCpuMs };
    },
    async close() {
      for (const w of warm.values()) await w.provider.close();
      warm.clear();
      closeSync(devNull);
    },
  };
}

export function exeExists(): boolean {
  return existsSync(EXE);
}

export function bundleExists(): boolean {
  return existsSync(BUNDLE);
}

/** The node flags on a script's `#!/usr/bin/env -S node …` line. */
export function interpreterFlags(script: string): string[] {
  const first = readFileSync(script, 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!\/usr\/bin\/env -S node (.*)$/.exec(first);
  return m ? m[1]!.trim().split(/\s+/) : [];
}
