/**
 * A real master for tests: a private OpenSSH sshd on 127.0.0.1 with fresh
 * ed25519 keys, or (no /usr/sbin/sshd, or asked to) the embedded ssh2 master
 * with the same key files. Plus small tree helpers to build a master's
 * /etc/xroad look-alike and compare a target with it.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, existsSync, constants as fsConstants, readdirSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import type { SessionOptions } from '../../src/remote/session.js';
import { generateEd25519 } from '../../src/serve/keys.js';
import { startEmbeddedMaster } from '../../src/serve/sftp-server.js';
import { sleep, until } from './wait.js';

export interface TestMaster {
  host: '127.0.0.1';
  port: number;
  user: string;
  /** Path of the client private key (ed25519, OpenSSH format, mode 0600). */
  identity: string;
  /** known_hosts holding `[127.0.0.1]:PORT <host key>` (plain, unhashed). */
  knownHosts: string;
  /** "ssh-ed25519 AAAA..." of the host key. */
  hostPublicKey: string;
  /** "SHA256:..." as `ssh-keygen -lf` prints it. */
  hostKeyFingerprint: string;
  /** Temp dir holding config, keys, log; removed by stop(). */
  dir: string;
  kind: 'openssh' | 'embedded';
  /** sshd's log (-E), openssh only: count "Accepted publickey for" lines to count logins. */
  logPath?: string;
  /** Bounded: SIGTERM, then SIGKILL after 2 s. */
  stop(): Promise<void>;
}

export interface StartMasterOptions {
  /** Extra sshd_config lines (openssh only); a keyword given here replaces the harness's default for it. */
  extraConfig?: string[];
  forceEmbedded?: boolean;
  /** Root the embedded master serves; default '/', so the same absolute paths work with both kinds. */
  embeddedRoot?: string;
}

const SSHD = '/usr/sbin/sshd';
const SSH_KEYGEN = '/usr/bin/ssh-keygen';
const READY_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 2_000;
const BIND_ATTEMPTS = 5;

/** Session options for a test master: its address, user, key and known_hosts, 5 s timeouts unless overridden. */
export function sessionOptionsFor(master: TestMaster, overrides: Partial<SessionOptions> = {}): SessionOptions {
  return {
    host: master.host,
    port: master.port,
    user: master.user,
    identityFile: master.identity,
    knownHostsFile: master.knownHosts,
    connectTimeoutMs: 5000,
    idleTimeoutMs: 5000,
    ...overrides,
  };
}

export function sshdAvailable(): boolean {
  return isExecutable(SSHD);
}

export async function makeTempDir(prefix: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

export async function startMaster(opts: StartMasterOptions = {}): Promise<TestMaster> {
  const dir = await makeTempDir('xroad-sync-master-');
  try {
    const keys = await makeKeys(dir);
    if (opts.forceEmbedded || !sshdAvailable()) {
      // CI installs openssh-server: there the fallback would hide a missing component.
      if (!opts.forceEmbedded && process.env.CI === 'true') throw new Error(`CI=true and ${SSHD} is missing (.ci/run must install openssh-server)`);
      if (!opts.forceEmbedded) noteFallbackOnce();
      return await startEmbedded(dir, keys, opts.embeddedRoot ?? '/');
    }
    return await startOpenSsh(dir, keys, opts.extraConfig ?? []);
  } catch (err) {
    await fs.rm(dir, { recursive: true, force: true });
    throw err;
  }
}

// ---------------------------------------------------------------------------
// Keys

interface KeyFiles {
  hostKey: string;
  hostPublicKey: string;
  identity: string;
  clientPublicKey: string;
  fingerprint: string;
}

async function makeKeys(dir: string): Promise<KeyFiles> {
  const hostKey = path.join(dir, 'ssh_host_ed25519_key');
  const identity = path.join(dir, 'id_ed25519');
  await generateKey(hostKey);
  await generateKey(identity);
  await fs.chmod(identity, 0o600);
  await fs.chmod(hostKey, 0o600);
  const hostPublicKey = keyTypeAndBlob(await fs.readFile(`${hostKey}.pub`, 'utf8'));
  const clientPublicKey = keyTypeAndBlob(await fs.readFile(`${identity}.pub`, 'utf8'));
  return { hostKey, hostPublicKey, identity, clientPublicKey, fingerprint: sha256Fingerprint(hostPublicKey) };
}

/** ssh-keygen when present; ssh2's generator (same OpenSSH format) on machines without openssh-client. */
async function generateKey(file: string): Promise<void> {
  if (isExecutable(SSH_KEYGEN)) {
    const r = spawnSync(SSH_KEYGEN, ['-q', '-t', 'ed25519', '-N', '', '-C', 'xroad-sync-test', '-f', file], {
      timeout: 10_000,
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`ssh-keygen failed for ${file}: ${r.error?.message ?? r.stderr}`);
    return;
  }
  const pair = generateEd25519('xroad-sync-test');
  await fs.writeFile(file, pair.private, { mode: 0o600 });
  await fs.writeFile(`${file}.pub`, `${pair.public}\n`, { mode: 0o644 });
}

/** "ssh-ed25519 AAAA... comment\n" → "ssh-ed25519 AAAA...". */
function keyTypeAndBlob(pubLine: string): string {
  const [type, blob] = pubLine.trim().split(/\s+/);
  if (!type || !blob) throw new Error(`not a public key line: ${pubLine}`);
  return `${type} ${blob}`;
}

/** What `ssh-keygen -lf` prints: SHA256 of the key blob, base64 without padding. */
function sha256Fingerprint(typeAndBlob: string): string {
  const blob = Buffer.from(typeAndBlob.split(' ')[1]!, 'base64');
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

async function writeKnownHosts(dir: string, port: number, hostPublicKey: string): Promise<string> {
  const file = path.join(dir, 'known_hosts');
  await fs.writeFile(file, `[127.0.0.1]:${port} ${hostPublicKey}\n`, { mode: 0o644 });
  return file;
}

// ---------------------------------------------------------------------------
// OpenSSH

async function startOpenSsh(dir: string, keys: KeyFiles, extraConfig: string[]): Promise<TestMaster> {
  await ensurePrivsepDir();
  const authorizedKeys = path.join(dir, 'authorized_keys');
  await fs.writeFile(authorizedKeys, `${keys.clientPublicKey}\n`, { mode: 0o600 });
  const logPath = path.join(dir, 'sshd.log');
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < BIND_ATTEMPTS; attempt++) {
    const port = await freePort();
    const config = path.join(dir, 'sshd_config');
    await fs.writeFile(config, sshdConfig(dir, port, keys.hostKey, authorizedKeys, extraConfig));
    await fs.writeFile(logPath, ''); // fresh log per attempt, so "Address already in use" is this attempt's
    const child = spawn(SSHD, ['-D', '-E', logPath, '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    const stderr = collect(child);
    const death = watchDeath(child);
    try {
      await waitForBanner(port, death, READY_TIMEOUT_MS);
    } catch (err) {
      await stopProcessTree(child);
      const log = await fs.readFile(logPath, 'utf8').catch(() => '');
      lastError = new Error(
        `sshd did not start on 127.0.0.1:${port}: ${(err as Error).message}\n` +
          `sshd stderr: ${stderr().trim() || '(empty)'}\nsshd log: ${log.trim() || '(empty)'}`,
      );
      if (/Address already in use|Cannot bind any address/.test(log + stderr())) continue; // lost the port race: retry
      throw lastError;
    }
    return {
      host: '127.0.0.1',
      port,
      user: os.userInfo().username,
      identity: keys.identity,
      knownHosts: await writeKnownHosts(dir, port, keys.hostPublicKey),
      hostPublicKey: keys.hostPublicKey,
      hostKeyFingerprint: keys.fingerprint,
      dir,
      kind: 'openssh',
      logPath,
      stop: onceOnly(async () => {
        await stopProcessTree(child);
        await fs.rm(dir, { recursive: true, force: true });
      }),
    };
  }
  throw lastError ?? new Error('sshd did not start');
}

/**
 * sshd takes the first value it reads for a keyword and refuses a second
 * `Subsystem sftp`, so a default whose keyword appears in extraConfig is
 * dropped rather than shadowed; a `Match` block in extraConfig stays last.
 */
function sshdConfig(dir: string, port: number, hostKey: string, authorizedKeys: string, extra: string[]): string {
  const defaults = [
    'ListenAddress 127.0.0.1',
    `Port ${port}`,
    `HostKey ${hostKey}`,
    `PidFile ${path.join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${authorizedKeys}`,
    'StrictModes no', // temp dirs and keys are not laid out the way StrictModes wants
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes',
    // No PAM stack for a throwaway sshd; note that without PAM sshd refuses accounts whose shadow password starts with "!".
    'UsePAM no',
    'PermitRootLogin prohibit-password',
    // internal-sftp runs inside sshd, so it works even for users whose shell is nologin.
    'Subsystem sftp internal-sftp',
    'LogLevel VERBOSE',
  ];
  const matchAt = extra.findIndex((line) => keywordOf(line) === 'match');
  const global = matchAt < 0 ? extra : extra.slice(0, matchAt);
  const matchBlock = matchAt < 0 ? [] : extra.slice(matchAt);
  const overridden = new Set(global.map(keywordOf));
  return [...defaults.filter((line) => !overridden.has(keywordOf(line))), ...global, ...matchBlock, ''].join('\n');
}

/** "Port 22" → "port"; Subsystem is keyed by its name too ("subsystem sftp"), since several may coexist. */
function keywordOf(line: string): string {
  const [keyword = '', arg = ''] = line.trim().toLowerCase().split(/\s+/);
  return keyword === 'subsystem' ? `${keyword} ${arg}` : keyword;
}

/** Privilege separation dir: sshd refuses to start as root without it. */
async function ensurePrivsepDir(): Promise<void> {
  if (process.getuid?.() !== 0 || existsSync('/run/sshd')) return;
  await fs.mkdir('/run/sshd', { recursive: true, mode: 0o755 });
}

/** Bind 127.0.0.1:0, read the port, release it. Racy by nature; startOpenSsh retries on a bind failure. */
/**
 * One master for a whole suite (like rclone's fstest.NewRun): started before
 * the suite's first test and handed to `onStarted`, stopped after its last,
 * together with every scratch directory pushed onto the returned list and
 * then `afterAll`. Call it in a describe() body.
 */
export function suiteMaster(onStarted: (master: TestMaster) => void, opts: StartMasterOptions & { afterAll?: () => unknown } = {}): string[] {
  const scratch: string[] = [];
  let master: TestMaster | undefined;
  before(async () => {
    master = await startMaster(opts);
    onStarted(master);
  });
  after(async () => {
    await master?.stop();
    await Promise.all(scratch.map((d) => fs.rm(d, { recursive: true, force: true })));
    await opts.afterAll?.();
  });
  return scratch;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function collect(child: ChildProcess): () => string {
  let text = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    if (text.length < 64 * 1024) text += chunk;
  });
  return () => text;
}

/** Why the child is gone (exit or spawn failure), undefined while it runs. An unhandled 'error' would crash the test process. */
function watchDeath(child: ChildProcess): () => string | undefined {
  let death: string | undefined;
  child.on('error', (err) => (death = `could not run ${SSHD}: ${err.message}`));
  child.on('exit', (code, signal) => (death = `sshd exited with ${signal ?? `code ${code}`}`));
  return () => death;
}

/** Poll until a TCP connect to the port yields an "SSH-" banner; fail early if sshd dies. */
async function waitForBanner(port: number, death: () => string | undefined, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastProblem = 'no attempt';
  while (Date.now() < deadline) {
    const dead = death();
    if (dead) throw new Error(dead);
    try {
      const banner = await readBanner(port, Math.min(1_000, deadline - Date.now()));
      if (banner.startsWith('SSH-')) return;
      lastProblem = `unexpected banner ${JSON.stringify(banner)}`;
    } catch (err) {
      lastProblem = (err as Error).message;
    }
    await sleep(50);
  }
  throw new Error(`no SSH banner within ${timeoutMs} ms (${lastProblem})`);
}

function readBanner(port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let data = '';
    const finish = (err: Error | null): void => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(data);
    };
    const timer = setTimeout(() => finish(new Error('banner timeout')), Math.max(timeoutMs, 1));
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      data += chunk;
      if (data.includes('\n')) finish(null);
    });
    socket.on('error', (err) => finish(err));
    socket.on('close', () => finish(data ? null : new Error('closed before banner')));
  });
}

/**
 * sshd forks one child per connection and that child calls setsid(), so a
 * process-group kill misses it: collect the descendants from /proc first,
 * then SIGTERM them all, SIGKILL what is left after 2 s.
 */
async function stopProcessTree(child: ChildProcess): Promise<void> {
  if (child.pid === undefined) return;
  const pids = [child.pid, ...descendantsOf(child.pid)];
  const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((resolve) => child.once('exit', () => resolve()));
  signalAll(pids, 'SIGTERM');
  if (!(await until(() => pids.every((p) => !isAlive(p)), STOP_GRACE_MS))) signalAll(pids, 'SIGKILL');
  await Promise.race([exited, sleep(STOP_GRACE_MS)]);
  await until(() => pids.every((p) => !isAlive(p)), STOP_GRACE_MS);
}

function signalAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/** pids whose ancestry leads to `root`, read from /proc/<pid>/stat (Linux only; empty elsewhere). */
export function descendantsOf(root: number): number[] {
  const parents = new Map<number, number>();
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const ppid = ppidOf(Number(name));
    if (ppid !== undefined) parents.set(Number(name), ppid);
  }
  const found: number[] = [];
  const frontier = [root];
  while (frontier.length > 0) {
    const parent = frontier.pop()!;
    for (const [pid, ppid] of parents) {
      if (ppid === parent && !found.includes(pid)) {
        found.push(pid);
        frontier.push(pid);
      }
    }
  }
  return found;
}

function ppidOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid ...": comm may hold spaces and parens, so parse after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[1]);
  } catch {
    return undefined;
  }
}

/** Alive and not a zombie (a zombie has exited; only its parent's reaping is pending). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    if (existsSync('/proc/self')) return false;
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

// ---------------------------------------------------------------------------
// Embedded fallback

let fallbackNoted = false;

function noteFallbackOnce(): void {
  if (fallbackNoted) return;
  fallbackNoted = true;
  process.stderr.write(`test master: ${SSHD} not found, using the embedded ssh2 SFTP master instead\n`);
}

async function startEmbedded(dir: string, keys: KeyFiles, root: string): Promise<TestMaster> {
  const user = os.userInfo().username;
  const server = await startEmbeddedMaster({
    root,
    hostKey: await fs.readFile(keys.hostKey),
    authorizedKeys: [keys.clientPublicKey],
    user,
  });
  return {
    host: '127.0.0.1',
    port: server.port,
    user,
    identity: keys.identity,
    knownHosts: await writeKnownHosts(dir, server.port, keys.hostPublicKey),
    hostPublicKey: keys.hostPublicKey,
    hostKeyFingerprint: keys.fingerprint,
    dir,
    kind: 'embedded',
    stop: onceOnly(async () => {
      await server.close();
      await fs.rm(dir, { recursive: true, force: true });
    }),
  };
}

// ---------------------------------------------------------------------------
// Tree helpers

/**
 * Compact description of a tree: `'dir/'` keys (trailing slash) are
 * directories, strings/Buffers are file contents, `{ symlink }` a link,
 * `{ content, mode, mtime }` a file (or a directory when the key ends in '/').
 * Parent directories are created as needed.
 */
export type TreeSpecValue = string | Buffer | null | { symlink: string; mtime?: number } | { content?: string | Buffer; mode?: number; mtime?: number };
export type TreeSpec = Record<string, TreeSpecValue>;

export async function writeTree(root: string, spec: TreeSpec): Promise<void> {
  const modes: Array<[string, number]> = [];
  const times: Array<[string, number, boolean]> = [];
  for (const key of Object.keys(spec).sort()) {
    const value = spec[key] ?? null;
    const isDir = key.endsWith('/');
    const full = path.join(root, key);
    await fs.mkdir(path.dirname(full), { recursive: true });
    if (typeof value === 'object' && value !== null && 'symlink' in value) {
      await fs.symlink(value.symlink, full);
      if (value.mtime !== undefined) times.push([full, value.mtime, true]);
      continue;
    }
    const detail = typeof value === 'string' || Buffer.isBuffer(value) || value === null ? { content: value ?? '' } : value;
    if (isDir) await fs.mkdir(full, { recursive: true });
    else await fs.writeFile(full, detail.content ?? '');
    if (detail.mode !== undefined) modes.push([full, detail.mode]);
    if (detail.mtime !== undefined) times.push([full, detail.mtime, false]);
  }
  // Times after every entry exists (creating a child bumps its directory's mtime);
  // modes last and deepest first, so a 0o500 directory does not block work below it.
  const deepestFirst = <T extends [string, ...unknown[]]>(a: T, b: T): number => b[0].length - a[0].length;
  for (const [p, mtime, isLink] of times.sort(deepestFirst)) {
    if (isLink) await fs.lutimes(p, mtime, mtime);
    else await fs.utimes(p, mtime, mtime);
  }
  for (const [p, mode] of modes.sort(deepestFirst)) await fs.chmod(p, mode);
}

export interface TreeEntrySnapshot {
  type: 'file' | 'dir' | 'symlink' | 'other';
  /** mode & 0o7777 */
  mode: number;
  /** Bytes for files and symlinks (target length), 0 for directories (their st_size differs across file systems). */
  size: number;
  /** Whole seconds. */
  mtime: number;
  /** Files: UTF-8 text, or "base64:..." when the bytes are not valid UTF-8. */
  content?: string;
  linkTarget?: string;
}

/** Every path below `root` ('/'-separated, relative, root itself excluded unless asked), sorted. */
export async function readTree(root: string, opts: { includeRoot?: boolean } = {}): Promise<Map<string, TreeEntrySnapshot>> {
  const found: Array<[string, TreeEntrySnapshot]> = [];
  const walk = async (rel: string): Promise<void> => {
    const full = rel === '' ? root : path.join(root, rel);
    const st = await fs.lstat(full);
    if (rel !== '' || opts.includeRoot) found.push([rel, await snapshot(full, st)]);
    if (!st.isDirectory()) return;
    for (const name of await fs.readdir(full)) await walk(rel === '' ? name : `${rel}/${name}`);
  };
  await walk('');
  found.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return new Map(found);
}

async function snapshot(full: string, st: import('node:fs').Stats): Promise<TreeEntrySnapshot> {
  const base = { mode: st.mode & 0o7777, mtime: Math.floor(st.mtimeMs / 1000) };
  if (st.isFile()) return { type: 'file', ...base, size: st.size, content: textOrBase64(await fs.readFile(full)) };
  if (st.isSymbolicLink()) return { type: 'symlink', ...base, size: st.size, linkTarget: await fs.readlink(full) };
  return { type: st.isDirectory() ? 'dir' : 'other', ...base, size: 0 };
}

function textOrBase64(bytes: Buffer): string {
  const text = bytes.toString('utf8');
  return Buffer.from(text, 'utf8').equals(bytes) ? text : `base64:${bytes.toString('base64')}`;
}

// ---------------------------------------------------------------------------
// Small utilities

function isExecutable(file: string): boolean {
  try {
    accessSync(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onceOnly(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= fn());
}

/** Reject when `promise` has not settled within `ms`: every wait in a test is bounded. */
export function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
