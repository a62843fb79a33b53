/**
 * The operator and environment actions of the chaos simulation. A step is
 * `{ kind, arg }`: the kind names the action, `arg` (drawn from the seed)
 * picks its variant and details, so a sequence is data that replays and
 * shrinks. Each step acts on the real program and world, updates the model
 * with what an operator would believe, and reports the violations of the
 * invariants it can judge at once; the simulation checks I1 and I2 after
 * every step as well.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { CLI, type CliRun, parseRecords, passArgs, runCli } from '../helpers/cli.js';
import { cliForOtherUsers } from '../helpers/other-user.js';
import { isAlive, type TestMaster } from '../helpers/sshd.js';
import { until } from '../helpers/wait.js';
import { COMMAND_LINE_EXCLUDE, journalExists, type Model, mayDiffer, PROTECTED, type Rng, rngFor, syncedView, type Workspace } from './model.js';

export interface Step {
  readonly kind: string;
  readonly arg: number;
}

export interface Violation {
  /** I1…I6, LIVE (a master change never applied by a running daemon) or STOP (SIGTERM is not a clean exit 0). */
  readonly invariant: string;
  /** A stable name for the check, usable in CHAOS_DISABLE. */
  readonly check: string;
  readonly message: string;
}

export interface SimOptions {
  /** How long a running, unpaused daemon may take to apply a master change or correct a reported local edit. */
  readonly convergeMs: number;
  /** The daemon's full-scan bound for edits inotify cannot see; 0 = do not wait for it (CI budget). */
  readonly fullScanMs: number;
  /** Checks and step kinds switched off, each with its reason. */
  readonly disabled: ReadonlyMap<string, string>;
}

export interface Daemon {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly namespaced: boolean;
  stdout(): string;
  records(): Array<Record<string, unknown>>;
  readonly done: Promise<{ status: number | null; signal: NodeJS.Signals | null }>;
}

export interface World {
  readonly ws: Workspace;
  readonly model: Model;
  readonly master: TestMaster;
  readonly opts: SimOptions;
  daemon?: Daemon;
  /** One line per step run, with what the program answered. */
  readonly transcript: string[];
  /** Every daemon ever started in this sequence, for cleanup. */
  readonly daemons: Daemon[];
}

type StepResult = Violation[];
export interface StepKind {
  readonly weight: number;
  /** What the step will do, from its arg alone (for printing a sequence). */
  describe(arg: number): string;
  run(w: World, rng: Rng): Promise<StepResult>;
}

const LOCK_WAIT = '--wait=30';
const DAEMON_STOP_MS = 15_000;

// ---------------------------------------------------------------------------
// Running the program

function env(w: World, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { XROAD_SYNC_SETTINGS: w.ws.settingsFile, ...extra };
}

const args = (w: World, stateDir = w.ws.stateDir): string[] =>
  passArgs(w.master, { source: w.ws.source, target: w.ws.target, stateDir, flagFile: w.ws.flagFile, logFile: w.ws.logFile });

async function cli(w: World, argv: string[], extraEnv?: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<CliRun> {
  const run = await runCli(argv, { env: env(w, extraEnv), timeoutMs });
  const last = (run.stdout + run.stderr).trim().split('\n').slice(-1)[0] ?? '';
  w.transcript.push(
    `    $ xroad-sync ${argv[0]}${argv.includes(`--exclude`) ? ` --exclude ${COMMAND_LINE_EXCLUDE}` : ''}: exit ${run.status ?? run.signal} ${JSON.stringify(last.slice(0, 160))}`,
  );
  return run;
}

const skippedByFlag = (run: CliRun): boolean => /sync skipped/.test(run.stdout + run.stderr);
const v = (invariant: string, check: string, message: string): Violation => ({ invariant, check, message });

// ---------------------------------------------------------------------------
// Judging a pass

/** I3 and I4 for one pass that ran to its end: `before` is the target's synced view before it started. */
async function judgePass(w: World, run: CliRun, before: string, what: string, mark: number): Promise<Violation[]> {
  const found: Violation[] = [];
  const after = await syncedView(w.ws.target);
  if (run.status === 11 && /part-way/.test(run.stdout + run.stderr)) {
    found.push(v('I4', 'I4.part-way', `${what} exited 11 and left the target half-applied: ${lastLine(run)}`));
  }
  if (run.status === 0 && !skippedByFlag(run) && !w.model.paused) {
    if (!w.model.isStateSince(after, mark)) {
      // Told apart so that the quick check's known blind spot can be set aside by name.
      const check = w.model.invisibleEdit ? 'I3.quick-check-blind' : 'I3.exit0-state';
      const why = w.model.invisibleEdit ? ' (a local in-place edit kept size and mtime)' : '';
      found.push(v('I3', check, `${what} exited 0 but the target is no state the master had since the pass started${why}`));
    } else {
      w.model.localEditPending = false;
      w.model.invisibleEdit = false;
    }
  } else if (run.status !== 0 && run.status !== null) {
    if (after !== before && !w.model.masterHistory.has(after) && !journalExists(w.ws)) {
      found.push(v('I3', 'I3.failed-changed', `${what} failed (exit ${run.status}) yet changed the target into no state the master had, with no journal`));
    }
  }
  return found;
}

const lastLine = (run: CliRun): string => (run.stdout + run.stderr).trim().split('\n').slice(-1)[0] ?? '';

// ---------------------------------------------------------------------------
// The daemon

function startDaemon(w: World, namespaced: boolean, daemonOptsExclude: boolean, testHook?: string): Daemon {
  const ws = w.ws;
  const daemonArgs = [CLI, 'daemon', ...args(w), '--interval', '1'];
  let settings = ws.settingsFile;
  if (daemonOptsExclude) settings = `${ws.settingsFile}.daemon`;
  const childEnv: NodeJS.ProcessEnv = { ...process.env, XROAD_SYNC_SETTINGS: settings, XROAD_SYNC_LOG_LEVEL: 'debug' };
  for (const k of ['MASTER', 'XROAD_USER', 'XROAD_SYNC_OPTS', 'SERVERCONF_REPLICA', 'XROAD_SYNC_TEST_HOOK', 'NODE_OPTIONS']) delete childEnv[k];
  if (testHook) childEnv.XROAD_SYNC_TEST_HOOK = testHook;
  let child: ChildProcess;
  if (namespaced) {
    // The unit's PrivateTmp=yes + BindPaths=/var/tmp/xroad: a private /var/tmp with the host's
    // /var/tmp/xroad bound into it. Removing the host's directory leaves the daemon the old one.
    const script = [
      'set -e',
      'mount --make-rprivate /',
      'mkdir -p "$STAGE" "$PRIV"',
      'mount --bind "$FLAGDIR" "$STAGE"',
      'mount --bind "$PRIV" "$VARTMP"',
      'mkdir -p "$FLAGDIR"',
      'mount --bind "$STAGE" "$FLAGDIR"',
      'exec "$@"',
    ].join('\n');
    child = spawn('unshare', ['-m', 'sh', '-c', script, 'sh', process.execPath, ...daemonArgs], {
      env: { ...childEnv, STAGE: path.join(ws.base, 'ns-stage'), PRIV: path.join(ws.base, 'ns-private-tmp'), FLAGDIR: ws.flagDir, VARTMP: ws.varTmp },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } else {
    child = spawn(process.execPath, daemonArgs, { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  }
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (out += c));
  const done = new Promise<{ status: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('error', () => resolve({ status: null, signal: null }));
    child.once('close', (status, signal) => resolve({ status, signal }));
  });
  const d: Daemon = { child, pid: child.pid ?? -1, namespaced, stdout: () => out, records: () => parseRecords(out), done };
  w.daemons.push(d);
  everyDaemon.add(d);
  void done.then(() => everyDaemon.delete(d));
  return d;
}

/** Every daemon of this process still running, for a runner stopped by a signal. */
const everyDaemon = new Set<Daemon>();
export function killEveryDaemon(): void {
  for (const d of everyDaemon) d.child.kill('SIGKILL');
}

const daemonAlive = (d: Daemon | undefined): d is Daemon => d !== undefined && d.child.exitCode === null && d.child.signalCode === null && isAlive(d.pid);
const passRecords = (d: Daemon) => d.records().filter((r) => r.msg === 'pass');

/** Exited, or past its first pass, or (paused) started: a paused daemon runs no pass to wait for. */
function daemonSettled(w: World, d: Daemon): boolean {
  return !daemonAlive(d) || passRecords(d).length > 0 || (existsSync(w.ws.flagFile) && d.records().some((r) => r.msg === 'daemon started'));
}

/** A live daemon, not paused: wait until the target mirrors the master again, or the daemon reports a failed pass. */
async function daemonConverges(w: World, sinceRecords: number, what: string, check: string, invariant: string): Promise<Violation[]> {
  const d = w.daemon;
  if (!daemonAlive(d) || w.model.paused || existsSync(w.ws.flagFile)) return [];
  const failedSince = () =>
    passRecords(d)
      .slice(sinceRecords)
      .some((r) => r.result === 'failed');
  // A daemon whose last pass failed is in its backoff (up to 30 s): that is the bound then.
  const inBackoff = passRecords(d)[sinceRecords - 1]?.result === 'failed';
  const bound = inBackoff ? Math.max(w.opts.convergeMs, 35_000) : w.opts.convergeMs;
  const ok = await until(async () => failedSince() || (await syncedView(w.ws.target)) === w.model.latestMaster, bound, 50);
  if (ok && !failedSince()) {
    w.model.localEditPending = false;
    w.model.invisibleEdit = false;
  }
  if (ok || !daemonAlive(d)) return [];
  if (w.model.invisibleEdit)
    return [
      v(
        'I6',
        'I6.not-corrected',
        `a local in-place edit that kept size and mtime is still not corrected by the running daemon (seen ${w.opts.convergeMs} ms after ${what})`,
      ),
    ];
  return [v(invariant, check, `the running daemon did not bring the target to the master's state within ${bound} ms after ${what}`)];
}

/** While paused with a daemon running: give the daemon a window to misbehave (two of its intervals), ended early by any pass record. */
async function pausedWindow(w: World, sinceRecords: number): Promise<void> {
  const d = w.daemon;
  if (!daemonAlive(d) || !w.model.paused) return;
  await until(() => passRecords(d).length > sinceRecords, 2_500, 50);
}

// ---------------------------------------------------------------------------
// Master edits

const MASTER_FILES = [
  'conf.d/local.ini',
  'conf.d/extra.ini',
  'serverconf.xml',
  'signer/devices.ini',
  'new/deep/file.xml',
  'notes.old',
  'local.bak',
  'conf.d/node.ini',
  'db.properties',
  'backup.tmp',
];

async function listMasterFiles(w: World): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const e of await fs.readdir(path.join(w.ws.source, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(r);
      else out.push(r);
    }
  };
  await walk('');
  return out.sort();
}

async function afterMasterEdit(w: World, what: string, sinceRecords: number): Promise<Violation[]> {
  await w.model.recordMaster(w.ws.source);
  await pausedWindow(w, sinceRecords);
  return daemonConverges(w, sinceRecords, what, 'LIVE.master-change', 'LIVE');
}

const recordCount = (w: World): number => (w.daemon ? passRecords(w.daemon).length : 0);

async function writeMaster(w: World, rel: string, content: string): Promise<void> {
  const full = path.join(w.ws.source, rel);
  await fs.mkdir(path.dirname(full), { recursive: true });
  // Bump the mtime a second past the old one: two writes within a second must still differ to a quick check.
  const old = await fs.stat(full).catch(() => undefined);
  await fs.writeFile(full, content);
  if (old) {
    const t = Math.max(Date.now() / 1000, old.mtimeMs / 1000 + 1);
    await fs.utimes(full, t, t);
  }
}

const content = (rng: Rng, rel: string): string => `${rel} v${rng.int(1_000_000)}\n${'x'.repeat(rng.int(200))}\n`;

// ---------------------------------------------------------------------------
// Local edits on the target

const LOCAL_EDITS = ['write', 'inplace-keep-mtime', 'chmod', 'delete', 'replace-dir', 'restore-backup'] as const;

async function syncedTargetFiles(w: World): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const e of await fs.readdir(path.join(w.ws.target, rel), { withFileTypes: true }).catch(() => [])) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (mayDiffer(r)) continue;
      if (e.isDirectory()) await walk(r);
      else if (e.isFile()) out.push(r);
    }
  };
  await walk('');
  return out.sort();
}

/** Applies a local edit; returns the path it touched (undefined: nothing to edit, or many paths). */
async function localEdit(w: World, rng: Rng, how: (typeof LOCAL_EDITS)[number]): Promise<string | undefined> {
  const files = await syncedTargetFiles(w);
  if (how === 'restore-backup') {
    if (!existsSync(w.ws.backup)) return undefined;
    await fs.rm(w.ws.target, { recursive: true, force: true, maxRetries: 10, retryDelay: 20 });
    await fs.cp(w.ws.backup, w.ws.target, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    return undefined;
  }
  if (files.length === 0) return undefined;
  const rel = rng.pick(files);
  const full = path.join(w.ws.target, rel);
  switch (how) {
    case 'write':
      await fs.writeFile(full, `edited on the slave ${rng.int(1e6)}\n`);
      return rel;
    case 'inplace-keep-mtime': {
      // Same size, other bytes, the old mtime put back (touch -r): a quick check cannot see it.
      const st = await fs.stat(full);
      const old = await fs.readFile(full);
      const flipped = Buffer.from(old.map((b, i) => (i === 0 ? (b === 0x5a ? 0x59 : 0x5a) : b)));
      if (old.length === 0) return undefined;
      const fh = await fs.open(full, 'r+');
      await fh.write(flipped, 0, flipped.length, 0);
      await fh.close();
      await fs.utimes(full, st.atime, st.mtime);
      return rel;
    }
    case 'chmod': {
      const st = await fs.stat(full);
      await fs.chmod(full, (st.mode & 0o777) === 0o600 ? 0o644 : 0o600);
      return rel;
    }
    case 'delete':
      await fs.rm(full, { force: true });
      return rel;
    case 'replace-dir': {
      // The file's directory replaced by a plain file of the same name (or the file by a directory at the root).
      const dir = path.dirname(rel);
      // A directory holding slave-local excluded files is left alone: losing them would be the harness's doing.
      const holdsProtected = Object.keys(PROTECTED).some((p) => p.startsWith(`${dir}/`));
      if (dir === '.' || holdsProtected) {
        await fs.rm(full, { force: true });
        await fs.mkdir(full);
        return rel;
      }
      await fs.rm(path.join(w.ws.target, dir), { recursive: true, force: true, maxRetries: 10, retryDelay: 20 });
      await fs.writeFile(path.join(w.ws.target, dir), 'a file where a directory was\n');
      return dir;
    }
  }
}

// ---------------------------------------------------------------------------
// The step kinds

function variant<T>(arg: number, items: readonly T[]): T {
  return items[arg % items.length]!;
}

async function ranPause(w: World, run: CliRun): Promise<void> {
  if (run.status !== 0) return;
  w.model.paused = true;
  w.model.pausedTarget = await syncedView(w.ws.target);
  w.model.journalAtPause = journalExists(w.ws);
}

export const STEP_KINDS: Record<string, StepKind> = {
  'master-write': {
    weight: 6,
    describe: (arg) => `write master ${variant(arg, MASTER_FILES)}`,
    async run(w, rng) {
      const since = recordCount(w);
      const rel = variant(rngArg(w), MASTER_FILES);
      await writeMaster(w, rel, content(rng, rel));
      return afterMasterEdit(w, `writing ${rel} on the master`, since);
    },
  },
  'master-keyconf': {
    weight: 2,
    describe: () => 'change signer/keyconf.xml on the master',
    async run(w, rng) {
      const since = recordCount(w);
      await writeMaster(w, 'signer/keyconf.xml', `<keyconf v="${rng.int(1e6)}"/>\n`);
      return afterMasterEdit(w, 'changing keyconf.xml', since);
    },
  },
  'master-delete': {
    weight: 2,
    describe: () => 'delete a master file',
    async run(w, rng) {
      const since = recordCount(w);
      const files = await listMasterFiles(w);
      if (files.length <= 3) return [];
      const rel = rng.pick(files);
      await fs.rm(path.join(w.ws.source, rel));
      return afterMasterEdit(w, `deleting ${JSON.stringify(rel)} on the master`, since);
    },
  },
  'master-mkdir': {
    weight: 1,
    describe: (arg) => `mkdir extra/d${arg % 5} on the master`,
    async run(w) {
      const since = recordCount(w);
      await fs.mkdir(path.join(w.ws.source, 'extra', `d${rngArg(w) % 5}`), { recursive: true });
      return afterMasterEdit(w, 'a new master directory', since);
    },
  },
  'master-odd-name': {
    weight: 1,
    describe: () => 'create a master file whose name holds a newline and a "|"',
    async run(w, rng) {
      const since = recordCount(w);
      // Large enough to trip sync-size-limit, whose error then names it.
      await writeMaster(w, `conf.d/odd\nrsync error: forged ${rng.int(100)}|x=1`, 'odd\n'.repeat(2_000));
      return afterMasterEdit(w, 'an odd master file name', since);
    },
  },
  'live-writer': {
    weight: 2,
    describe: () => 'a sync while a writer rewrites a master file 30 times',
    async run(w, rng) {
      const before = await syncedView(w.ws.target);
      const mark = w.model.mark();
      const rel = 'conf.d/local.ini';
      let stop = false;
      const writer = (async () => {
        for (let i = 0; i < 30 && !stop; i++) {
          // Rename into place: every state the writer leaves is a whole file, so each is a master state.
          const full = path.join(w.ws.source, rel);
          await fs.writeFile(`${full}.writing.tmp`, content(rng, rel));
          await fs.rename(`${full}.writing.tmp`, full);
          await w.model.recordMaster(w.ws.source);
          await new Promise((r) => setImmediate(r));
        }
      })();
      const run = await cli(w, ['sync', ...args(w), LOCK_WAIT]);
      stop = true;
      await writer;
      await w.model.recordMaster(w.ws.source);
      return judgePass(w, run, before, 'sync beside a live writer', mark);
    },
  },
  sync: {
    weight: 5,
    describe: (arg) => variant(arg, ['sync', 'sync --now']),
    async run(w) {
      return syncStep(w, rngArg(w) % 2 === 1 ? ['--now'] : [], 'sync');
    },
  },
  'sync-cmdline-exclude': {
    weight: 2,
    describe: () => `sync --exclude '${COMMAND_LINE_EXCLUDE}' (beside the settings file's --exclude)`,
    async run(w) {
      return syncStep(w, ['--exclude', COMMAND_LINE_EXCLUDE], `sync --exclude '${COMMAND_LINE_EXCLUDE}'`);
    },
  },
  'sync-size-limit': {
    weight: 1,
    describe: () => "sync --max-file-size 4k (an operator's limit that a large master file trips)",
    async run(w) {
      return syncStep(w, ['--max-file-size', '4096'], 'sync --max-file-size 4k');
    },
  },
  'sync-killed-mid-commit': {
    weight: 2,
    describe: () => 'change 3 master files, then a sync SIGKILLed at its 2nd rename (power loss mid-commit)',
    async run(w, rng) {
      const since = recordCount(w);
      for (const rel of ['conf.d/local.ini', 'serverconf.xml', 'signer/devices.ini']) await writeMaster(w, rel, content(rng, rel));
      await w.model.recordMaster(w.ws.source);
      await cli(w, ['sync', ...args(w), LOCK_WAIT], { XROAD_SYNC_TEST_HOOK: 'kill@rename:2' });
      await pausedWindow(w, since);
      return [];
    },
  },
  pause: {
    weight: 4,
    describe: () => 'pause',
    async run(w) {
      const run = await cli(w, ['pause', '--flag-file', w.ws.flagFile, '--state-dir', w.ws.stateDir, '--wait=20']);
      await ranPause(w, run);
      return [];
    },
  },
  resume: {
    weight: 3,
    describe: (arg) => variant(arg, ['resume', 'resume --now']),
    async run(w) {
      const now = rngArg(w) % 2 === 1;
      w.model.paused = false;
      const before = await syncedView(w.ws.target);
      const mark = w.model.mark();
      const run = await cli(w, ['resume', ...args(w), LOCK_WAIT, ...(now ? ['--now'] : [])]);
      return now ? judgePass(w, run, before, 'resume --now', mark) : [];
    },
  },
  'status-check': {
    weight: 3,
    describe: () => 'status --check --max-age 5m',
    async run(w) {
      const run = await cli(w, ['status', '--check', '--max-age', '5m', '--state-dir', w.ws.stateDir, '--flag-file', w.ws.flagFile]);
      const found: Violation[] = [];
      const lines = run.stdout.replace(/\n$/, '').split('\n');
      if (lines.length !== 1) found.push(v('I5', 'I5.one-line', `status --check printed ${lines.length} lines: ${JSON.stringify(run.stdout.slice(0, 200))}`));
      if (/rsync error:/.test(run.stderr))
        found.push(v('I5', 'I5.one-line', `status --check wrote a forged "rsync error:" line on stderr: ${JSON.stringify(run.stderr.slice(0, 200))}`));
      // Nagios reads what follows the first "|" as performance data: only the check's own may stand there.
      const [text, perfdata] = splitCheckLine(lines[0]!);
      if (text.includes('|'))
        found.push(v('I5', 'I5.one-line', `status --check's text holds a "|" (Nagios reads performance data after it): ${JSON.stringify(lines[0])}`));
      if (perfdata !== undefined && !PERFDATA.test(perfdata))
        found.push(v('I5', 'I5.one-line', `status --check's performance data is malformed: ${JSON.stringify(perfdata)}`));
      if (run.status === 0 && journalExists(w.ws))
        found.push(v('I5', 'I5.journal', `status --check says OK while a crash journal is pending (the target is half-applied): ${JSON.stringify(lines[0])}`));
      return found;
    },
  },
  'status-check-as-monitoring': {
    weight: 1,
    describe: () => 'status --check run by a monitoring agent (uid nobody) that cannot read the state dir (root only)',
    async run(w) {
      if (process.getuid?.() !== 0 || !existsSync(path.join(w.ws.stateDir, 'status.json'))) return [];
      await fs.chmod(w.ws.base, 0o755); // the agent reaches the state dir, whose own 0750 keeps it out
      const run = await runAs(65534, ['status', '--check', '--max-age', '5m', '--state-dir', w.ws.stateDir, '--flag-file', w.ws.flagFile, '--settings', '']);
      w.transcript.push(`    $ (as nobody) xroad-sync status --check: exit ${run.status} ${JSON.stringify(run.stdout.trim())}`);
      // Either fix is right: UNKNOWN when the agent cannot read status.json, or status.json made readable and the verdict root's.
      if (!(await canRead(65534, path.join(w.ws.stateDir, 'status.json')))) {
        if (run.status === 3) return [];
        return [
          v(
            'I5',
            'I5.unreadable',
            `status --check could not read status.json yet said exit ${run.status}: ${JSON.stringify(run.stdout.trim())} (a permission problem is UNKNOWN, not a fact about the sync)`,
          ),
        ];
      }
      const asRoot = await cli(w, ['status', '--check', '--max-age', '5m', '--state-dir', w.ws.stateDir, '--flag-file', w.ws.flagFile]);
      if (asRoot.status === run.status) return [];
      return [v('I5', 'I5.unreadable', `status --check said exit ${run.status} as nobody and ${asRoot.status} as root: ${JSON.stringify(run.stdout.trim())}`)];
    },
  },
  status: {
    weight: 2,
    describe: () => 'status --json (daemon pid)',
    async run(w) {
      const run = await cli(w, ['status', '--json', '--state-dir', w.ws.stateDir, '--flag-file', w.ws.flagFile]);
      if (run.status !== 0) return [];
      const pid = (JSON.parse(run.stdout) as { daemonPid: number | null }).daemonPid;
      if (daemonAlive(w.daemon) && pid !== w.daemon.pid)
        return [v('I5', 'I5.daemon-pid', `status says daemonPid ${pid} while the daemon (pid ${w.daemon.pid}) runs`)];
      return [];
    },
  },
  check: {
    weight: 1,
    describe: () => 'check (read-only)',
    async run(w) {
      const quiet = !daemonAlive(w.daemon) || w.model.paused;
      const before = await syncedView(w.ws.target);
      await cli(w, ['check', ...args(w)]);
      if (quiet && (await syncedView(w.ws.target)) !== before) return [v('I3', 'I3.check-read-only', '`check` changed the target')];
      return [];
    },
  },
  'daemon-start': {
    weight: 3,
    describe: () => 'start the daemon',
    run: (w) => daemonStart(w, false, false),
  },
  'daemon-start-namespaced': {
    weight: 2,
    describe: () => "start the daemon in the unit's mount namespace (PrivateTmp + BindPaths of the flag dir; root only, else plain)",
    run: (w) => daemonStart(w, process.getuid?.() === 0, false),
  },
  'daemon-start-opts-exclude': {
    weight: 1,
    describe: () => `start the daemon with XROAD_SYNC_DAEMON_OPTS="--exclude ${COMMAND_LINE_EXCLUDE}" in the settings file`,
    run: (w) => daemonStart(w, false, true),
  },
  'daemon-stop': {
    weight: 2,
    describe: () => 'stop the daemon (SIGTERM)',
    async run(w) {
      const d = w.daemon;
      if (!daemonAlive(d)) return [];
      d.child.kill('SIGTERM');
      const ended = await until(() => !daemonAlive(d), DAEMON_STOP_MS, 50);
      w.daemon = undefined;
      if (!ended) {
        d.child.kill('SIGKILL');
        return [v('STOP', 'STOP.sigterm', `the daemon did not exit within ${DAEMON_STOP_MS} ms of SIGTERM`)];
      }
      const { status, signal } = await d.done;
      w.transcript.push(`    daemon exit ${status ?? signal}`);
      if (status !== 0)
        w.transcript.push(
          ...d
            .stdout()
            .trim()
            .split('\n')
            .slice(-3)
            .map((l) => `    daemon: ${l.slice(0, 300)}`),
        );
      if (status === 0) return [];
      // Told apart: a state dir removed under the daemon is a known way to get here.
      const check = w.model.stateDirLostUnderDaemon ? 'STOP.after-state-dir-loss' : 'STOP.sigterm';
      return [
        v(
          'STOP',
          check,
          `the daemon exited ${status ?? signal} after SIGTERM${w.model.stateDirLostUnderDaemon ? ' (its state dir was removed while it ran)' : ''}`,
        ),
      ];
    },
  },
  'daemon-kill9': {
    weight: 1,
    describe: () => 'kill -9 the daemon',
    async run(w) {
      const d = w.daemon;
      if (!daemonAlive(d)) return [];
      d.child.kill('SIGKILL');
      await d.done;
      w.daemon = undefined;
      return [];
    },
  },
  'local-edit': {
    weight: 5,
    describe: (arg) => `local edit on the target: ${variant(arg, LOCAL_EDITS)}`,
    async run(w, rng) {
      const how = variant(rngArg(w), LOCAL_EDITS);
      const since = recordCount(w);
      const logBefore = await fs.readFile(w.ws.logFile, 'utf8').catch(() => '');
      const outBefore = w.daemon?.stdout().length ?? 0;
      const rel = await localEdit(w, rng, how);
      w.transcript.push(`    edited ${JSON.stringify(rel ?? '(tree)')}`);
      w.model.localEditPending = true;
      if (how === 'inplace-keep-mtime' && rel !== undefined) w.model.invisibleEdit = true;
      if (w.model.paused) {
        w.model.pausedTarget = await syncedView(w.ws.target);
        await pausedWindow(w, since);
        return [];
      }
      return judgeCorrection(w, rel, since, logBefore.length, outBefore);
    },
  },
  'local-edit-mmap': {
    weight: 1,
    describe: () => 'local edit on the target through mmap (python3; inotify reports no event)',
    async run(w, rng) {
      const files = (await syncedTargetFiles(w)).filter((f) => !f.includes('\n'));
      if (files.length === 0) return [];
      const rel = rng.pick(files);
      const since = recordCount(w);
      const logBefore = await fs.readFile(w.ws.logFile, 'utf8').catch(() => '');
      const outBefore = w.daemon?.stdout().length ?? 0;
      const script =
        'import mmap,sys\nf=open(sys.argv[1],"r+b")\nm=mmap.mmap(f.fileno(),0)\nm[0]=0x5a if m[0]!=0x5a else 0x59\nm.flush()\nm.close()\nf.close()';
      const code = await new Promise<number | null>((resolve) => {
        const child = spawn('python3', ['-c', script, path.join(w.ws.target, rel)], { stdio: 'ignore' });
        child.once('error', () => resolve(null));
        child.once('close', (c) => resolve(c));
      });
      w.transcript.push(`    mmap-edited ${JSON.stringify(rel)}: python3 exit ${code}`);
      if (code !== 0) return [];
      w.model.localEditPending = true;
      if (w.model.paused) {
        w.model.pausedTarget = await syncedView(w.ws.target);
        return [];
      }
      return judgeCorrection(w, rel, since, logBefore.length, outBefore);
    },
  },
  'flagdir-recreate': {
    weight: 2,
    describe: () => 'rm -rf the flag directory and create it again (tmpfiles ageing /var/tmp)',
    async run(w) {
      await fs.rm(w.ws.flagDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 20 });
      await fs.mkdir(w.ws.flagDir, { recursive: true });
      // The flag went with its directory: as far as anyone can tell, sync is no longer paused.
      w.model.paused = false;
      return [];
    },
  },
  'state-dir-loss': {
    weight: 1,
    describe: () => 'rm -rf the state dir',
    async run(w) {
      if (journalExists(w.ws)) w.model.localEditPending = true; // the half-applied target's only record goes
      if (daemonAlive(w.daemon)) w.model.stateDirLostUnderDaemon = true;
      await fs.rm(w.ws.stateDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 20 });
      return [];
    },
  },
  'stale-daemon-lock': {
    weight: 1,
    describe: () => 'a daemon.lock naming a dead pid, then two daemons started at once',
    async run(w, rng) {
      if (daemonAlive(w.daemon)) return [];
      await fs.mkdir(w.ws.stateDir, { recursive: true });
      await fs.writeFile(
        path.join(w.ws.stateDir, 'daemon.lock'),
        `${JSON.stringify({ pid: 4_000_000 + rng.int(100_000), start: '1', boot: 'gone', purpose: 'daemon', since: new Date(0).toISOString() })}\n`,
      );
      const pair = [startDaemon(w, false, false), startDaemon(w, false, false)];
      // Both have either exited or logged a pass (or a pause): then at most one may still run.
      await until(() => pair.every((d) => daemonSettled(w, d)), 20_000, 50);
      const alive = pair.filter((d) => daemonAlive(d));
      const running = (d: Daemon): boolean => daemonAlive(d);
      w.transcript.push(`    daemons ${pair.map((d) => `${d.pid}: ${running(d) ? 'running' : `exit ${d.child.exitCode}`}`).join(', ')}`);
      w.daemon = alive[0];
      if (alive.length > 1) {
        alive[1]!.child.kill('SIGKILL');
        await alive[1]!.done;
        return [v('I4', 'I4.one-daemon', `two daemons took over one stale daemon.lock and ran at once (pids ${pair.map((d) => d.pid).join(', ')})`)];
      }
      return [];
    },
  },
  'flag-by-hand': {
    weight: 1,
    describe: (arg) => variant(arg, ["touch the flag file by hand (the guide's way)", 'rm the flag file by hand']),
    async run(w) {
      if (rngArg(w) % 2 === 0) {
        await fs.writeFile(w.ws.flagFile, '');
      } else {
        await fs.rm(w.ws.flagFile, { force: true });
        w.model.paused = false; // the operator resumed
      }
      return [];
    },
  },
  'daemon-crash-mid-commit': {
    weight: 1,
    describe: () => 'a daemon SIGKILLed at the 2nd rename of a commit (OOM, power loss), after 3 master changes',
    async run(w, rng) {
      if (daemonAlive(w.daemon) || existsSync(w.ws.flagFile)) return [];
      const d = startDaemon(w, false, false, 'kill@rename:2');
      await until(() => !daemonAlive(d) || passRecords(d).length > 0, 20_000, 50);
      for (const rel of ['conf.d/local.ini', 'serverconf.xml', 'signer/devices.ini']) await writeMaster(w, rel, content(rng, rel));
      await w.model.recordMaster(w.ws.source);
      const died = await until(() => !daemonAlive(d), 15_000, 50);
      if (!died) d.child.kill('SIGKILL');
      const end = await d.done;
      w.transcript.push(
        `    daemon pid ${d.pid}: ${died ? `died (${end.signal ?? end.status})` : 'still running, stopped now'}; journal ${journalExists(w.ws) ? 'pending' : 'none'}`,
      );
      return [];
    },
  },
  'second-writer': {
    weight: 2,
    describe: () => 'change 3 master files, then two syncs at once with different state dirs',
    async run(w, rng) {
      for (const rel of ['conf.d/local.ini', 'serverconf.xml', 'new/deep/file.xml']) await writeMaster(w, rel, content(rng, rel) + 'y'.repeat(20_000));
      await w.model.recordMaster(w.ws.source);
      return twoPasses(w, [w.ws.stateDir, w.ws.otherStateDir], 'two syncs with different state dirs');
    },
  },
  'stale-lock': {
    weight: 1,
    describe: () => 'a sync.lock naming a dead pid, then two syncs at once',
    async run(w, rng) {
      await fs.mkdir(w.ws.stateDir, { recursive: true });
      await fs.writeFile(
        path.join(w.ws.stateDir, 'sync.lock'),
        `${JSON.stringify({ pid: 4_000_000 + rng.int(100_000), start: '1', boot: 'gone', purpose: 'sync', since: new Date(0).toISOString() })}\n`,
      );
      for (const rel of ['conf.d/local.ini', 'serverconf.xml']) await writeMaster(w, rel, content(rng, rel));
      await w.model.recordMaster(w.ws.source);
      return twoPasses(w, [w.ws.stateDir, w.ws.stateDir], 'two syncs meeting a stale lock');
    },
  },
};

/** The step's own arg, for variants chosen by arg rather than by the step's PRNG. */
let currentArg = 0;
const rngArg = (_w: World): number => currentArg;

/** The CLI as another user: node and the bundle from a place that user can reach (a checkout may sit in a 0700 home). */
function runAs(uid: number, args: string[]): Promise<{ status: number | null; stdout: string }> {
  const reachable = cliForOtherUsers();
  return new Promise((resolve) => {
    const child = spawn(reachable.node, [reachable.script, ...args], {
      uid,
      gid: uid,
      stdio: ['ignore', 'pipe', 'ignore'],
      env: { PATH: process.env.PATH, XROAD_SYNC_SETTINGS: '' },
    });
    let stdout = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('error', () => (clearTimeout(timer), resolve({ status: null, stdout })));
    child.once('close', (status) => (clearTimeout(timer), resolve({ status, stdout })));
  });
}

/** Whether `uid` may read `file`: asked of the kernel by a child running as that user. */
async function canRead(uid: number, file: string): Promise<boolean> {
  const run = await runAs(uid, ['-e', `require('fs').readFileSync(${JSON.stringify(file)})`]);
  return run.status === 0;
}

export async function syncStep(w: World, extra: string[], what: string): Promise<Violation[]> {
  const before = await syncedView(w.ws.target);
  const mark = w.model.mark();
  const run = await cli(w, ['sync', ...args(w), LOCK_WAIT, ...extra]);
  return judgePass(w, run, before, what, mark);
}

async function daemonStart(w: World, namespaced: boolean, daemonOptsExclude: boolean): Promise<Violation[]> {
  if (daemonOptsExclude)
    await fs.writeFile(
      `${w.ws.settingsFile}.daemon`,
      `${await fs.readFile(w.ws.settingsFile, 'utf8')}XROAD_SYNC_DAEMON_OPTS="--exclude ${COMMAND_LINE_EXCLUDE}"\n`,
    );
  const first = daemonAlive(w.daemon) ? w.daemon : undefined;
  const d = startDaemon(w, namespaced, daemonOptsExclude);
  if (first) {
    // A second daemon on the same state dir must be refused.
    const ended = await until(() => !daemonAlive(d), 15_000, 50);
    w.transcript.push(`    second daemon pid ${d.pid}: ${ended ? `exit ${d.child.exitCode}` : 'still running'}`);
    if (!ended) {
      d.child.kill('SIGKILL');
      await d.done;
      return [v('I4', 'I4.one-daemon', `a second daemon (pid ${d.pid}) started beside pid ${first.pid} on one state dir`)];
    }
    return [];
  }
  w.daemon = d;
  w.model.stateDirLostUnderDaemon = false;
  const mark = w.model.mark();
  const ready = await until(() => daemonSettled(w, d), 20_000, 50);
  w.transcript.push(
    `    daemon pid ${d.pid}${namespaced ? ' (namespaced)' : ''}: ${ready ? (passRecords(d).slice(-1)[0]?.result ?? 'paused') : 'no first pass in 20 s'}`,
  );
  if (!daemonAlive(d)) return [];
  const last = passRecords(d).slice(-1)[0];
  const found: Violation[] = [];
  if (last?.result === 'ok' && !w.model.paused && !w.model.isStateSince(await syncedView(w.ws.target), mark)) {
    // The daemon may already be in its next pass; only a state no master had is wrong.
    found.push(v('I3', 'I3.exit0-state', "the daemon's first pass was ok but the target is no state the master had"));
  }
  return found;
}

async function twoPasses(w: World, stateDirs: string[], what: string): Promise<Violation[]> {
  const before = await syncedView(w.ws.target);
  const mark = w.model.mark();
  const runs = await Promise.all(stateDirs.map((s) => cli(w, ['sync', ...args(w, s), LOCK_WAIT])));
  const found: Violation[] = [];
  for (const run of runs) {
    if (run.status === 11 && /part-way/.test(run.stdout + run.stderr))
      found.push(v('I4', 'I4.part-way', `${what}: one exited 11 and left the target half-applied: ${lastLine(run)}`));
    // Only one writer at a time can see another's staged file as "left by an interrupted pass" while that pass still runs.
    const removed = /(removed a temp file left by an interrupted pass|changed on this slave during the pass)[^\n]*/.exec(run.stdout + run.stderr);
    if (removed)
      found.push(
        v('I4', 'I4.two-writers', `${what}: both wrote into the target at once; one took the other's work for a crash or a local edit (${removed[0]})`),
      );
  }
  const after = await syncedView(w.ws.target);
  const anyOk = runs.some((r) => r.status === 0 && !skippedByFlag(r));
  if (!w.model.paused && anyOk && !w.model.isStateSince(after, mark)) {
    const check = w.model.invisibleEdit ? 'I3.quick-check-blind' : 'I3.exit0-state';
    found.push(
      v(
        'I3',
        check,
        `${what}: one exited 0 but the target is no state the master had since they started${w.model.invisibleEdit ? ' (a local in-place edit kept size and mtime)' : ''}`,
      ),
    );
  }
  if (!anyOk && after !== before && !w.model.masterHistory.has(after) && !journalExists(w.ws)) {
    found.push(
      v('I4', 'I4.unreported-half', `${what}: both failed (exit ${runs.map((r) => r.status).join(', ')}) and the target is half-applied with no journal`),
    );
  }
  return found;
}

/** I6: a local edit beside a running daemon is corrected, logged, and every "a corrective pass follows" is true. */
async function judgeCorrection(w: World, rel: string | undefined, since: number, logFrom: number, outFrom: number): Promise<Violation[]> {
  const d = w.daemon;
  if (!daemonAlive(d) || existsSync(w.ws.flagFile)) return [];
  const corrected = async () => (await syncedView(w.ws.target)) === w.model.latestMaster;
  const failed = () =>
    passRecords(d)
      .slice(since)
      .some((r) => r.result === 'failed');
  const claimed = () =>
    rel !== undefined && parseRecords(d.stdout().slice(outFrom)).some((r) => r.path === rel && /corrective pass follows/.test(String(r.msg)));
  const inBackoff = passRecords(d)[since - 1]?.result === 'failed';
  const bound = inBackoff ? Math.max(w.opts.convergeMs, 35_000) : w.opts.convergeMs;
  if (await until(async () => failed() || (await corrected()), bound, 50)) {
    if (failed() || rel === undefined) return [];
    w.model.localEditPending = false;
    w.model.invisibleEdit = false;
    // The log line follows the commit that corrected the target: wait for it, bounded.
    const logged = async () => ((await fs.readFile(w.ws.logFile, 'utf8').catch(() => '')).slice(logFrom) + d.stdout().slice(outFrom)).includes(rel);
    return (await until(logged, 5_000, 50)) ? [] : [v('I6', 'I6.logged', `the local edit of ${rel} was corrected silently (no log line names it within 5 s)`)];
  }
  if (!daemonAlive(d)) return [];
  if (claimed()) return [v('I6', 'I6.claim', `the daemon logged "a corrective pass follows" for ${rel}, but the target was not corrected within ${bound} ms`)];
  if (w.opts.fullScanMs > 0) {
    if (await until(corrected, w.opts.fullScanMs, 200)) return [];
    return [v('I6', 'I6.bound', `the local edit of ${rel ?? 'the tree'} was not corrected within the full-scan bound (${w.opts.fullScanMs} ms)`)];
  }
  w.transcript.push(`    (not corrected within ${w.opts.convergeMs} ms and nothing claimed; the full-scan bound is not waited for in this budget)`);
  w.transcript.push(
    ...d
      .stdout()
      .slice(outFrom)
      .trim()
      .split('\n')
      .slice(-5)
      .map((l) => `    daemon: ${l.slice(0, 240)}`),
  );
  return [];
}

export function describeStep(step: Step): string {
  return STEP_KINDS[step.kind]?.describe(step.arg) ?? step.kind;
}

export async function runStep(w: World, step: Step): Promise<Violation[]> {
  const kind = STEP_KINDS[step.kind];
  if (!kind) throw new Error(`unknown step kind ${step.kind}`);
  currentArg = step.arg;
  return kind.run(w, rngFor(step.arg));
}

/** Step kinds with their weights, without the disabled ones. */
export function enabledKinds(disabled: ReadonlyMap<string, string>): Array<[string, number]> {
  return Object.entries(STEP_KINDS)
    .filter(([k]) => !disabled.has(k))
    .map(([k, s]) => [k, s.weight]);
}

export { daemonAlive };

/** `label=value[UOM];warn;crit;min[;max]`, space-separated (Monitoring Plugins guidelines). */
const PERFDATA = /^[a-z_]+=(?:-?[\d.]+|U)[a-zA-Z%]*(?:;[\d.]*){0,4}(?: [a-z_]+=(?:-?[\d.]+|U)[a-zA-Z%]*(?:;[\d.]*){0,4})*$/;

/** The check's text and its performance data, split at the first " | ". */
function splitCheckLine(line: string): [string, string | undefined] {
  const at = line.indexOf(' | ');
  return at < 0 ? [line, undefined] : [line.slice(0, at), line.slice(at + 3)];
}
