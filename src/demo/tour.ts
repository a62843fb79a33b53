/**
 * The tour behind `xroad-sync demo` (`npm run demo`): a self-contained tour in a temp dir on
 * 127.0.0.1. Generates keys and a sample /etc/xroad, starts the embedded
 * master, then runs the real CLI as child processes (exactly the commands an
 * operator runs): a pass, status, a change on the master, the daemon for two
 * intervals, pause/resume, status again. Removes everything at the end.
 * Exit 0 when every step worked, 1 with the failed step named otherwise.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { hostLookupName as knownHostsHost, fingerprint as sha256Fingerprint } from '../remote/known-hosts.js';
import { parseRecords } from '../report/logger.js';
import { generateEd25519, publicKeyOf } from '../serve/keys.js';
import { SAMPLE_CHANGED_FILE, SAMPLE_EXCLUDED, sampleTree, writeSampleTree } from '../serve/sample-tree.js';
import { type EmbeddedMaster, startEmbeddedMaster } from '../serve/sftp-server.js';

/** One bounded wait per step; the whole tour normally takes 5-8 s. */
const CHILD_TIMEOUT_MS = 30_000;
const DAEMON_EVENT_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 6_000;

class StepFailure extends Error {}

interface ChildRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

interface Running {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  done: Promise<ChildRun>;
}

interface DemoPaths {
  dir: string;
  masterKey: string;
  masterRoot: string;
  source: string;
  identity: string;
  knownHosts: string;
  target: string;
  stateDir: string;
  logFile: string;
  flagFile: string;
}

/** Where the tour goes: each line of it, and the failed step's report. */
export interface TourOutput {
  line(text?: string): void;
  failed(report: string): void;
}

/** The tour; `self` is the CLI script to run (undefined in the single executable, which is the program itself). Exit 0 or 1. */
export async function runTour(self: string | undefined, io: TourOutput): Promise<number> {
  const started = Date.now();
  let dir: string | undefined;
  let master: EmbeddedMaster | undefined;
  let daemon: Running | undefined;
  let step = 'setup';
  let succeeded = false;
  const interrupted = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => interrupted.abort(new StepFailure(`interrupted by ${signal}`));
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);

  const out = io.line;
  const show = (p: string): string => (dir ? p.split(dir).join('$DEMO') : p);
  const heading = (title: string): void => {
    step = title;
    out();
    out(`== ${title} ${'='.repeat(Math.max(3, 72 - title.length))}`);
  };
  const indent = (text: string, prefix = '  '): void => {
    for (const line of text.split('\n')) if (line !== '') out(`${prefix}${show(line)}`);
  };
  const checkAborted = (): void => {
    if (interrupted.signal.aborted) throw interrupted.signal.reason as Error;
  };

  /** Runs `xroad-sync ARGS` (this very script under this node) to completion, bounded. */
  const start = (args: string[], timeoutMs = CHILD_TIMEOUT_MS): Running => {
    out(`$ xroad-sync ${args.map((a) => show(quote(a))).join(' ')}`);
    const env = { ...process.env };
    delete env.MASTER; // every setting is on the command line
    delete env.XROAD_USER;
    delete env.XROAD_SYNC_TEST_HOOK;
    delete env.XROAD_SYNC_OPTS;
    env.XROAD_SYNC_SETTINGS = ''; // not this machine's /etc/default/xroad-sync either
    env.XROAD_SYNC_LOG_LEVEL = 'debug'; // the tour shows every daemon pass, quiet ones too
    const t0 = Date.now();
    const child = spawn(process.execPath, self ? [self, ...args] : args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const done = new Promise<ChildRun>((resolve, reject) => {
      child.once('error', (err) => (clearTimeout(timer), reject(err)));
      child.once('close', (status, signal) => {
        clearTimeout(timer);
        resolve({ status, signal, stdout, stderr, ms: Date.now() - t0 });
      });
    });
    return { child, stdout: () => stdout, stderr: () => stderr, done };
  };
  const run = async (args: string[], expectStatus = 0): Promise<ChildRun> => {
    checkAborted();
    const r = await start(args).done;
    if (r.status !== expectStatus) {
      throw new StepFailure(
        `"xroad-sync ${args[0]}" exited with ${r.signal ?? `code ${r.status}`} (expected ${expectStatus}) after ${r.ms} ms\n` +
          `--- stdout\n${r.stdout}--- stderr\n${r.stderr}`,
      );
    }
    return r;
  };

  let logSeen = 0;
  const newLogLines = async (p: DemoPaths): Promise<string> => {
    const log = await readFile(p.logFile, 'utf8').catch(() => '');
    const fresh = log.slice(logSeen);
    logSeen = log.length;
    return fresh;
  };

  try {
    out('xroad-sync demo: an embedded master on 127.0.0.1, a slave in a temp dir, the real CLI in between.');
    out(`"xroad-sync" below is: ${process.execPath}${self ? ` ${self}` : ''}`);

    // 1 ---------------------------------------------------------------------
    heading('1. Keys and a sample master /etc/xroad');
    dir = await mkdtemp(path.join(os.tmpdir(), 'xroad-sync-demo-'));
    const p = demoPaths(dir);
    out(`DEMO=${dir}   (removed at the end)`);
    const hostPair = generateEd25519('xroad-sync demo host key');
    const clientPair = generateEd25519('xroad-sync demo client key');
    await mkdir(path.dirname(p.masterKey), { recursive: true });
    await mkdir(path.dirname(p.identity), { recursive: true, mode: 0o700 });
    await writeFile(p.masterKey, hostPair.private, { mode: 0o600 });
    await writeFile(p.identity, clientPair.private, { mode: 0o600 });
    await writeFile(`${p.identity}.pub`, `${clientPair.public}\n`);
    const hostPub = publicKeyOf(hostPair.private, 'demo host key');
    out(`host key    ${show(p.masterKey)}  ${sha256Fingerprint(hostPub.blob)}`);
    out(`client key  ${show(p.identity)}  (the slave's xroad user's key; its .pub is the master's authorized key)`);
    const spec = sampleTree();
    await writeSampleTree(p.source, spec);
    out(`master tree ${show(p.source)}:`);
    for (const key of Object.keys(spec).sort()) {
      const v = spec[key]!;
      const what = 'symlink' in v ? `-> ${v.symlink}` : key.endsWith('/') ? 'dir' : `${byteLength(v.content)} bytes`;
      const mode = 'mode' in v && v.mode !== undefined ? v.mode.toString(8).padStart(4, '0') : '    ';
      const excluded = SAMPLE_EXCLUDED.some((x) => key === x || key.startsWith(`${x}/`)) ? '  (excluded by default)' : '';
      out(`  ${mode}  ${key.padEnd(62)} ${what}${excluded}`);
    }

    // 2 ---------------------------------------------------------------------
    heading('2. The embedded master (what "xroad-sync serve" runs)');
    const user = os.userInfo().username;
    master = await startEmbeddedMaster({ root: p.masterRoot, hostKey: hostPair.private, authorizedKeys: [clientPair.public], user });
    const knownHostsLine = `${knownHostsHost('127.0.0.1', master.port)} ${hostPub.type} ${hostPub.blob.toString('base64')}`;
    await writeFile(p.knownHosts, `${knownHostsLine}\n`);
    out(`listening on 127.0.0.1:${master.port}, read-only, public key only, user "${user}"`);
    out(`known_hosts ${show(p.knownHosts)}:`);
    out(`  ${knownHostsLine}`);
    await mkdir(p.target, { recursive: true });
    await mkdir(p.stateDir, { recursive: true });
    await mkdir(path.dirname(p.logFile), { recursive: true });
    await mkdir(path.dirname(p.flagFile), { recursive: true });

    const passFlags = [
      '--master',
      '127.0.0.1',
      '--port',
      String(master.port),
      '--user',
      user,
      '--identity',
      p.identity,
      '--known-hosts',
      p.knownHosts,
      '--source',
      `${p.source}/`,
      '--target',
      `${p.target}/`,
      '--state-dir',
      p.stateDir,
      '--log-file',
      p.logFile,
      '--flag-file',
      p.flagFile,
    ];
    const statusFlags = ['--state-dir', p.stateDir, '--flag-file', p.flagFile];

    // 3 ---------------------------------------------------------------------
    heading('3. A pass: the command the systemd timer runs every minute');
    const first = await run(['sync', ...passFlags]);
    out(`exit 0 in ${first.ms} ms; stdout (one JSON record per pass, for journald):`);
    indent(first.stdout, '  stdout | ');
    if (first.stderr.trim()) indent(first.stderr, '  stderr | ');
    out(`${show(p.logFile)} (rsync's --log-file format):`);
    indent(await newLogLines(p), '  log | ');
    await expectSame(p, 'signer/keyconf.xml');
    await expectSame(p, 'ssl/internal.key');
    for (const x of SAMPLE_EXCLUDED) await expectAbsent(p, x);
    out(`checked: the target matches the master; ${SAMPLE_EXCLUDED.join(', ')} were not copied`);

    // 4 ---------------------------------------------------------------------
    heading('4. status');
    indent((await run(['status', ...statusFlags])).stdout);
    indent((await run(['status', '--check', '--max-age', '300', ...statusFlags])).stdout);

    // 5 ---------------------------------------------------------------------
    heading('5. A change on the master');
    const changed = path.join(p.source, SAMPLE_CHANGED_FILE);
    const newText = `${await readFile(changed, 'utf8')}\n; changed by the demo at ${new Date().toISOString()}\n[signer]\nkey-length=3072\n`;
    await writeFile(changed, newText);
    out(`edited ${show(changed)} on the master (${Buffer.byteLength(newText)} bytes now)`);

    // 6 ---------------------------------------------------------------------
    heading('6. The daemon (--interval 1) for two intervals');
    daemon = start(['daemon', ...passFlags, '--interval', '1'], 120_000);
    const d = daemon;
    let shown = 0;
    const showDaemon = (): void => {
      const text = d.stdout();
      const end = text.lastIndexOf('\n') + 1;
      indent(text.slice(shown, end), '  daemon | ');
      shown = Math.max(shown, end);
    };
    const waitRecord = async (what: string, pred: (r: Record<string, unknown>) => boolean, count = 1, from = 0): Promise<number> => {
      const deadline = Date.now() + DAEMON_EVENT_TIMEOUT_MS;
      for (;;) {
        checkAborted();
        const records = parseRecords(d.stdout());
        const hits = records.slice(from).filter(pred).length;
        if (hits >= count) return records.length;
        if (d.child.exitCode !== null || d.child.signalCode !== null) {
          throw new StepFailure(
            `the daemon exited (${d.child.signalCode ?? `code ${d.child.exitCode}`}) while waiting for ${what}\n--- stdout\n${d.stdout()}--- stderr\n${d.stderr()}`,
          );
        }
        if (Date.now() > deadline) {
          throw new StepFailure(`no ${what} from the daemon within ${DAEMON_EVENT_TIMEOUT_MS} ms\n--- stdout\n${d.stdout()}--- stderr\n${d.stderr()}`);
        }
        await sleep(25);
      }
    };
    const isPass = (r: Record<string, unknown>): boolean => r.msg === 'pass';
    await waitRecord('two passes', isPass, 2);
    showDaemon();
    out('slave-sync.log, new lines:');
    indent(await newLogLines(p), '  log | ');
    if ((await readFile(path.join(p.target, SAMPLE_CHANGED_FILE), 'utf8')) !== newText) {
      throw new StepFailure(`the daemon's pass did not bring ${SAMPLE_CHANGED_FILE} up to date`);
    }
    out(`checked: ${SAMPLE_CHANGED_FILE} on the slave has the master's new content`);

    // 7 ---------------------------------------------------------------------
    heading('7. Pause and resume (rolling upgrade, IG-XLB 7.2)');
    indent((await run(['pause', '--flag-file', p.flagFile, '--state-dir', p.stateDir])).stdout);
    const afterPause = await waitRecord('"sync paused" record', (r) => typeof r.msg === 'string' && r.msg.startsWith('sync paused'));
    showDaemon();
    out('(paused: the daemon skips its passes silently; waiting one interval)');
    await sleep(1_200);
    indent((await run(['resume', '--flag-file', p.flagFile, '--state-dir', p.stateDir])).stdout);
    await waitRecord('"sync resumed" record and a pass', isPass, 1, afterPause);
    showDaemon();

    // 8 ---------------------------------------------------------------------
    heading('8. status again (the daemon still runs)');
    indent((await run(['status', ...statusFlags])).stdout);
    indent((await run(['status', '--json', ...statusFlags])).stdout);

    // 9 ---------------------------------------------------------------------
    heading('9. Stop everything');
    // SIGTERM between two passes: not mid-pass (that is logged as a failed pass), and not
    // in the few ms after the pass record while status.json is written.
    await waitRecord('the next pass', isPass, 1, parseRecords(d.stdout()).length);
    await sleep(250);
    daemon.child.kill('SIGTERM');
    const killer = setTimeout(() => d.child.kill('SIGKILL'), STOP_GRACE_MS);
    const stopped = await d.done.finally(() => clearTimeout(killer));
    daemon = undefined;
    showDaemon();
    if (stopped.status !== 0)
      throw new StepFailure(`the daemon exited with ${stopped.signal ?? `code ${stopped.status}`} on SIGTERM\n--- stderr\n${stopped.stderr}`);
    out(`daemon stopped on SIGTERM (exit 0, ${stopped.ms} ms after start)`);
    await master.close();
    master = undefined;
    out('embedded master closed');
    succeeded = true;
    return 0;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    io.failed(`FAILED at step "${step}":\n${dir ? message.split(dir).join('$DEMO') : message}`);
    return 1;
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    if (daemon) {
      const d = daemon;
      d.child.kill('SIGTERM');
      const killer = setTimeout(() => d.child.kill('SIGKILL'), 3_000);
      await d.done.catch(() => undefined).finally(() => clearTimeout(killer));
    }
    if (master) await Promise.race([master.close(), sleep(3_000)]);
    if (dir) {
      await rm(dir, { recursive: true, force: true });
      out(`removed ${dir}`);
    }
    const took = ((Date.now() - started) / 1000).toFixed(1);
    out(succeeded ? `demo finished in ${took} s` : `demo FAILED after ${took} s (see above)`);
  }
}

function demoPaths(dir: string): DemoPaths {
  const masterRoot = path.join(dir, 'master');
  const slave = path.join(dir, 'slave');
  return {
    dir,
    masterKey: path.join(dir, 'master-keys', 'ssh_host_ed25519_key'),
    masterRoot,
    source: path.join(masterRoot, 'etc', 'xroad'),
    identity: path.join(slave, 'var', 'lib', 'xroad', '.ssh', 'id_ed25519'),
    knownHosts: path.join(slave, 'var', 'lib', 'xroad', '.ssh', 'known_hosts'),
    target: path.join(slave, 'etc', 'xroad'),
    stateDir: path.join(slave, 'var', 'lib', 'xroad-sync'),
    logFile: path.join(slave, 'var', 'log', 'xroad', 'slave-sync.log'),
    flagFile: path.join(slave, 'var', 'tmp', 'xroad', 'sync-disabled'),
  };
}

async function expectSame(p: DemoPaths, rel: string): Promise<void> {
  const [a, b] = await Promise.all([readFile(path.join(p.source, rel)), readFile(path.join(p.target, rel)).catch(() => null)]);
  if (!b || !a.equals(b)) throw new StepFailure(`${rel} on the slave does not match the master after the pass`);
  const [sa, sb] = await Promise.all([stat(path.join(p.source, rel)), stat(path.join(p.target, rel))]);
  if ((sa.mode & 0o7777) !== (sb.mode & 0o7777)) {
    throw new StepFailure(`${rel}: mode ${(sb.mode & 0o7777).toString(8)} on the slave, ${(sa.mode & 0o7777).toString(8)} on the master`);
  }
}

async function expectAbsent(p: DemoPaths, rel: string): Promise<void> {
  if (
    await stat(path.join(p.target, rel)).then(
      () => true,
      () => false,
    )
  ) {
    throw new StepFailure(`${rel} is excluded by default but was copied to the slave`);
  }
}

function byteLength(content: string | Buffer | undefined): number {
  return content === undefined ? 0 : typeof content === 'string' ? Buffer.byteLength(content) : content.length;
}

function quote(arg: string): string {
  return /^[\w./:@%+=,-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
