/**
 * One SSH connection to the master with its SFTP channel, opened the way the
 * guide's `ssh -o ConnectTimeout=5` + `rsync --timeout=10` behaved, but with
 * host key checking against known_hosts (ssh2 accepts any key by default) and
 * a watchdog, because ssh2 has no per-request timeout and a dead peer leaves
 * SFTP callbacks pending forever.
 */
import { readFileSync } from 'node:fs';
import { type Socket, connect as tcpConnect } from 'node:net';
import type { Algorithms, ConnectConfig, ServerHostKeyAlgorithm, SFTPWrapper } from 'ssh2';
import ssh2 from 'ssh2';
import SftpClient from 'ssh2-sftp-client';
import { ConfigError, ConnectionError, errnoOf, HostKeyError, type SyncError, TimeoutError } from '../errors.js';
import { coalesceRequests } from './coalesced-requests.js';
import { fingerprint, type KnownHosts, keyTypeOf, knownKeyTypes, loadKnownHosts, verifyHostKey } from './known-hosts.js';

export interface SessionOptions {
  host: string;
  port: number;
  user: string;
  identityFile: string;
  knownHostsFile: string;
  /** TCP connect + SSH handshake + auth + opening the sftp subsystem. */
  connectTimeoutMs: number;
  /** With requests outstanding, how long without any byte from the master before the session is declared dead. */
  idleTimeoutMs: number;
  /** SSH-level keepalive for long-lived (daemon) sessions; off when absent. */
  keepaliveMs?: number;
}

/** Completes one raw ssh2 SFTP call; the tracker settles the request's promise from it. */
export type Settle<T> = (err: Error | null | undefined, value: T) => void;

export interface SftpSession {
  /** "host:port", as messages name the master. */
  readonly address: string;
  /**
   * Runs one raw SFTP request under the watchdog. Rejects with the raw ssh2
   * error (SFTP status: numeric `code`) while the session lives, with the
   * session's TimeoutError/ConnectionError once it is dead.
   */
  request<T>(issue: (sftp: SFTPWrapper, settle: Settle<T>) => void): Promise<T>;
  /** Largest READ the master serves in one response (limits@openssh.com), so reads are not split. */
  maxReadLength(): number;
  /** Polite SSH disconnect, bounded: gives `end()` about a second, then destroys the socket. */
  close(): Promise<void>;
  destroy(): void;
  isAlive(): boolean;
  /** Raw socket bytes, for rsync's "sent N bytes  received N bytes" line. */
  traffic(): { sent: number; received: number };
  /** Called once when the session dies without close()/destroy(); returns an unsubscribe function. */
  onLost(listener: (err: SyncError) => void): () => void;
}

const END_GRACE_MS = 1000;
const noop = (): void => {};

/** Modern and fast first (AES-GCM is hardware-accelerated through OpenSSL); older masters still negotiate. */
const ALGORITHMS: Omit<Algorithms, 'serverHostKey'> = {
  kex: [
    'curve25519-sha256',
    'curve25519-sha256@libssh.org',
    'ecdh-sha2-nistp256',
    'ecdh-sha2-nistp384',
    'ecdh-sha2-nistp521',
    'diffie-hellman-group-exchange-sha256',
    'diffie-hellman-group14-sha256',
    'diffie-hellman-group16-sha512',
  ],
  cipher: ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'chacha20-poly1305@openssh.com', 'aes128-ctr', 'aes256-ctr'],
  hmac: ['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-512-etm@openssh.com', 'hmac-sha2-256', 'hmac-sha2-512'],
  // Config files are small and the LAN is fast: zlib would only cost CPU (rsync -z did the same harm).
  compress: ['none'],
};

const DEFAULT_HOST_KEY_ALGORITHMS: ServerHostKeyAlgorithm[] = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
];

/** Host key algorithms with the types known for this master first, as ssh(1) orders them. */
function hostKeyAlgorithms(knownTypes: string[]): ServerHostKeyAlgorithm[] {
  const preferred = knownTypes.flatMap((t): ServerHostKeyAlgorithm[] =>
    t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256'] : DEFAULT_HOST_KEY_ALGORITHMS.filter((a) => a === t),
  );
  return [...new Set([...preferred, ...DEFAULT_HOST_KEY_ALGORITHMS])];
}

/** Synchronously, as known_hosts (known-hosts.ts): the connect starts at once. */
function loadIdentity(file: string): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(file);
  } catch (err) {
    throw new ConfigError(`cannot read identity file ${file}`, {
      subject: file,
      cause: err,
      hint:
        errnoOf(err) === 'ENOENT'
          ? `create the sync user's key (ssh-keygen -t ed25519 -N '' -f ${file}) and add its .pub to the master's authorized_keys, or give --identity`
          : `the sync user must be able to read it (ls -l ${file})`,
    });
  }
  const parsed = ssh2.utils.parseKey(data);
  if (parsed instanceof Error) {
    const encrypted = /passphrase|encrypted/i.test(parsed.message);
    throw new ConfigError(encrypted ? `identity file ${file} is encrypted` : `identity file ${file} is not a usable private key: ${parsed.message}`, {
      subject: file,
      hint: encrypted ? `an unattended sync needs a key without passphrase (ssh-keygen -p -N '' -f ${file})` : undefined,
    });
  }
  if (!parsed.isPrivateKey()) throw new ConfigError(`identity file ${file} holds a public key, not a private key`, { subject: file });
  return data;
}

interface HostKeyRejection {
  reason: 'unknown' | 'changed' | 'revoked';
  keyType: string;
  fingerprint: string;
}

function hostKeyError(opts: SessionOptions, rejection: HostKeyRejection): HostKeyError {
  const { host, port, knownHostsFile: file } = opts;
  const what = `${rejection.keyType} host key ${rejection.fingerprint}`;
  const message = {
    unknown: `host key verification failed for ${host}:${port}: unknown ${what} (not in ${file})`,
    changed: `host key verification failed for ${host}:${port}: changed ${what} differs from the one in ${file} (possible man-in-the-middle)`,
    revoked: `host key verification failed for ${host}:${port}: revoked ${what} is marked @revoked in ${file}`,
  }[rejection.reason];
  const add = `ssh-keyscan -p ${port} ${host} >> ${file}, then verify that ssh-keygen -lf ${file} shows ${rejection.fingerprint} and that it matches ssh-keygen -lf on the master's /etc/ssh/ssh_host_*_key.pub`;
  const hint = {
    unknown: `if this is the master, add its key: ${add}`,
    changed: `if the master was reinstalled, remove the old entry (ssh-keygen -R '[${host}]:${port}' -f ${file}) and add the new one: ${add}`,
    revoked: 'the master needs a new host key; a revoked key is never accepted',
  }[rejection.reason];
  return new HostKeyError(message, { subject: `${host}:${port}`, hint });
}

interface ConnectState {
  hostKey?: HostKeyRejection;
  transportError?: Error & { level?: string };
  timedOut: boolean;
  /** Key exchange completed: what fails after this (auth, subsystem) is not retried. */
  handshakeDone: boolean;
}

function connectFailure(opts: SessionOptions, state: ConnectState, err: unknown): SyncError {
  const where = `${opts.host}:${opts.port}`;
  if (state.hostKey) return hostKeyError(opts, state.hostKey);
  const raw = state.transportError ?? (err as Error & { level?: string });
  if (state.timedOut || raw?.level === 'client-timeout') {
    return new ConnectionError(`timed out connecting to ${where} after ${opts.connectTimeoutMs / 1000} s`, { subject: where, cause: raw });
  }
  if (raw?.level === 'client-authentication') {
    return new ConnectionError(`authentication failed for ${opts.user}@${where}`, {
      subject: where,
      hint: `the public key of ${opts.identityFile} must be in ~${opts.user}/.ssh/authorized_keys on the master`,
    });
  }
  const errno = errnoOf(raw);
  if (errno) return new ConnectionError(`cannot connect to ${where}: ${errno}`, { subject: where, cause: raw });
  return new ConnectionError(`SSH connection to ${where} failed: ${raw?.message ?? String(err)}`, { subject: where, cause: raw });
}

/**
 * Connects, retrying the failures a busy master causes before the SSH
 * handshake (OpenSSH's MaxStartups drops a new connection before its banner
 * once 10 are unauthenticated; a restarting sshd refuses or resets) with
 * jittered exponential backoff, all within connectTimeoutMs. A refused
 * connection is retried for REFUSED_RETRY_MS only, so a master that is down
 * still fails in about a second. Host key, authentication and protocol
 * failures are never retried.
 */
export async function openSession(opts: SessionOptions): Promise<SftpSession> {
  const knownHosts = loadKnownHosts(opts.knownHostsFile);
  const privateKey = loadIdentity(opts.identityFile);
  const started = performance.now();
  const deadline = started + opts.connectTimeoutMs;
  for (let attempt = 0; ; attempt++) {
    const outcome = await connectOnce(opts, knownHosts, privateKey, deadline);
    if ('session' in outcome) return outcome.session;
    const delay = backoffMs(attempt);
    const budget = outcome.retry === 'refused' ? Math.min(deadline, started + REFUSED_RETRY_MS) : deadline;
    if (!outcome.retry) throw outcome.error;
    if (performance.now() + delay >= budget) throw gaveUp(opts, outcome.error, outcome.retry, attempt + 1, performance.now() - started);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

/** The last attempt's error, saying how often it was tried and what busy masters do. */
function gaveUp(opts: SessionOptions, last: SyncError, retry: Retry, attempts: number, elapsedMs: number): SyncError {
  if (attempts === 1) return last;
  const where = `${opts.host}:${opts.port}`;
  const hint =
    retry === 'refused'
      ? `is sshd running on ${where}? (ssh -p ${opts.port} ${opts.user}@${opts.host})`
      : `the master's sshd closed every connection before the SSH handshake: many slaves connecting at once exceed its MaxStartups (default 10:30:100); ` +
        'spread their start times (the timer has RandomizedDelaySec=), raise MaxStartups on the master, or raise --connect-timeout';
  return new ConnectionError(`${last.message} (${attempts} attempts in ${(elapsedMs / 1000).toFixed(1)} s)`, { subject: where, cause: last, hint });
}

/** How long a refused connection keeps being retried (an sshd restart takes well under this). */
const REFUSED_RETRY_MS = 1000;
const BACKOFF_BASE_MS = 50;
const BACKOFF_CAP_MS = 1000;

/** "Full jitter": uniform in [base, min(cap, base·2^attempt)], so a herd of slaves spreads out instead of retrying in step. */
function backoffMs(attempt: number): number {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt + 1, 10));
  return BACKOFF_BASE_MS + Math.random() * (ceiling - BACKOFF_BASE_MS);
}

type Retry = false | 'refused' | 'dropped';
type ConnectOutcome = { session: Session } | { error: SyncError; retry: Retry };

async function connectOnce(opts: SessionOptions, knownHosts: KnownHosts, privateKey: Buffer, deadline: number): Promise<ConnectOutcome> {
  const state: ConnectState = { timedOut: false, handshakeDone: false };
  let session: Session | undefined;
  // Silent callbacks: ssh2-sftp-client's defaults print every late error/end/close to the console.
  const client = new SftpClient('xroad-sync', { error: noop, end: noop, close: noop });
  // Our own listener on the raw ssh2 Client: it keeps `level` (which sftpc's re-wrapped errors lose) and, being
  // always attached, no ssh2 'error' event can ever go unhandled and crash the process.
  client.client.on('error', (err: Error & { level?: string }) => {
    if (session) session.transportError(err);
    else state.transportError ??= err;
  });
  client.client.once('handshake', () => (state.handshakeDone = true));
  // Our own socket: its byte counters give traffic(), and destroying it is the one reliable way out
  // (ssh2's destroy() is a no-op once the socket is half-closed, which is how end() hangs).
  const sock = tcpConnect({ host: opts.host, port: opts.port });
  sock.setNoDelay(true);
  const remaining = Math.max(1, deadline - performance.now());
  const config = connectConfig({ ...opts, connectTimeoutMs: remaining }, knownHosts, privateKey, sock, state);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      state.timedOut = true;
      sock.destroy();
      reject(new Error('connect timeout'));
    }, remaining);
  });
  const connecting = client.connect(config);
  connecting.catch(noop); // it may settle after the deadline won; nobody awaits it then
  try {
    const sftp = await Promise.race([connecting, timeout]);
    session = new Session(client, sock, sftp, opts);
    return { session };
  } catch (err) {
    sock.destroy();
    return { error: connectFailure(opts, state, err), retry: retryable(state) };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A connection that ended before key exchange finished, by a refusal, a reset
 * or a close (MaxStartups writes "Exceeded MaxStartups" and closes), is the
 * master being busy, not wrong. Everything after the handshake is an answer.
 */
function retryable(state: ConnectState): Retry {
  if (state.hostKey || state.timedOut || state.handshakeDone) return false;
  const raw = state.transportError;
  const errno = errnoOf(raw);
  if (errno === 'ECONNREFUSED') return 'refused';
  if (errno === 'ECONNRESET' || errno === 'EPIPE' || errno === 'ECONNABORTED') return 'dropped';
  if (!raw || raw.message === 'Connection lost before handshake') return 'dropped';
  return false;
}

function connectConfig(opts: SessionOptions, knownHosts: KnownHosts, privateKey: Buffer, sock: Socket, state: ConnectState): ConnectConfig {
  return {
    sock,
    host: opts.host,
    port: opts.port,
    username: opts.user,
    privateKey,
    authHandler: ['publickey'],
    readyTimeout: opts.connectTimeoutMs,
    keepaliveInterval: opts.keepaliveMs ?? 0,
    keepaliveCountMax: 3,
    algorithms: { ...ALGORITHMS, serverHostKey: hostKeyAlgorithms(knownKeyTypes(knownHosts, opts.host, opts.port)) },
    // Fail closed: anything but an explicit match in known_hosts is refused, with the reason kept for the message.
    hostVerifier: (key: Buffer): boolean => {
      try {
        const verdict = verifyHostKey(knownHosts, opts.host, opts.port, key);
        if (verdict.ok) return true;
        state.hostKey = { reason: verdict.reason, keyType: keyTypeOf(key) ?? 'unknown-type', fingerprint: fingerprint(key) };
      } catch {
        state.hostKey = { reason: 'unknown', keyType: 'unparsable', fingerprint: fingerprint(key) };
      }
      return false;
    },
  };
}

class Session implements SftpSession {
  readonly address: string;
  private readonly pending = new Set<(err: Error) => void>();
  private readonly lostListeners = new Set<(err: SyncError) => void>();
  /** Runs only while requests are outstanding: a daemon's session idles between passes without a timer. */
  private watchdog: NodeJS.Timeout | undefined;
  private readonly watchdogTickMs: number;
  private lastProgress = performance.now();
  private failure?: SyncError;
  private lastTransportError?: Error & { level?: string };
  private ending = false;

  constructor(
    private readonly client: SftpClient,
    private readonly sock: Socket,
    private readonly sftp: SFTPWrapper,
    private readonly opts: SessionOptions,
  ) {
    this.address = `${opts.host}:${opts.port}`;
    // Any byte counts as progress: a 256 KiB READ reply arrives in many TCP segments.
    sock.on('data', () => (this.lastProgress = performance.now()));
    sock.on('close', () => this.lost());
    sftp.on('error', (err: Error) => this.fail(new ConnectionError(`SFTP protocol error from ${this.address}: ${err.message}`, { cause: err })));
    sftp.on('close', () => this.lost());
    // Requests of one turn of the event loop leave in one SSH packet and one write (coalesced-requests.ts).
    coalesceRequests(sftp, sock);
    this.watchdogTickMs = Math.min(1000, Math.max(20, Math.floor(opts.idleTimeoutMs / 4)));
  }

  request<T>(issue: (sftp: SFTPWrapper, settle: Settle<T>) => void): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.ending) return Promise.reject(new ConnectionError(`session to ${this.address} is closed`, { subject: this.address }));
    return new Promise<T>((resolve, reject) => {
      // The idle clock starts when work starts, not when the session last did something.
      if (this.pending.size === 0) {
        this.lastProgress = performance.now();
        this.startWatchdog();
      }
      this.pending.add(reject);
      const settle: Settle<T> = (err, value) => {
        if (!this.pending.delete(reject)) return; // already failed by the watchdog or close
        if (this.pending.size === 0) this.stopWatchdog();
        this.lastProgress = performance.now();
        if (!err) return resolve(value);
        // ssh2 fails requests with "No response from server" before our socket 'close' listener runs.
        if (this.sock.destroyed) this.lost();
        reject(this.failure ?? err);
      };
      try {
        issue(this.sftp, settle);
      } catch (err) {
        settle(err instanceof Error ? err : new Error(String(err)), undefined as T);
      }
    });
  }

  maxReadLength(): number {
    const limit = (this.sftp as unknown as { _maxReadLen?: unknown })._maxReadLen;
    return typeof limit === 'number' && limit > 0 ? limit : 32 * 1024;
  }

  async close(): Promise<void> {
    if (this.ending) return;
    this.stop(new ConnectionError(`session to ${this.address} was closed with requests outstanding`, { subject: this.address }));
    if (!this.sock.destroyed) {
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, END_GRACE_MS)));
      await Promise.race([this.client.end().then(noop, noop), grace]);
      clearTimeout(timer);
    }
    this.sock.destroy();
  }

  destroy(): void {
    if (this.ending) return;
    this.stop(new ConnectionError(`session to ${this.address} was destroyed`, { subject: this.address }));
    this.sock.destroy();
  }

  isAlive(): boolean {
    return !this.failure && !this.ending && !this.sock.destroyed;
  }

  traffic(): { sent: number; received: number } {
    return { sent: this.sock.bytesWritten, received: this.sock.bytesRead };
  }

  onLost(listener: (err: SyncError) => void): () => void {
    this.lostListeners.add(listener);
    return () => this.lostListeners.delete(listener);
  }

  /** ssh2 client errors after the handshake (ECONNRESET, keepalive timeout); the socket closes right after. */
  transportError(err: Error & { level?: string }): void {
    this.lastTransportError = err;
    if (err.level === 'client-timeout') {
      this.fail(new TimeoutError(`no answer from ${this.address} to SSH keepalives`, { subject: this.address, cause: err }));
    }
  }

  private startWatchdog(): void {
    if (this.watchdog) return;
    this.watchdog = setInterval(() => this.checkProgress(), this.watchdogTickMs);
    this.watchdog.unref();
  }

  private stopWatchdog(): void {
    clearInterval(this.watchdog);
    this.watchdog = undefined;
  }

  private checkProgress(): void {
    if (this.pending.size === 0 || performance.now() - this.lastProgress < this.opts.idleTimeoutMs) return;
    const seconds = this.opts.idleTimeoutMs / 1000;
    this.fail(
      new TimeoutError(`no progress from ${this.address} for ${seconds} s`, {
        subject: this.address,
        hint: `${this.pending.size} SFTP request(s) were outstanding; raise --timeout if the master is just slow`,
      }),
    );
  }

  private lost(): void {
    if (this.failure || this.ending) return;
    const cause = this.lastTransportError;
    const detail = errnoOf(cause) ?? cause?.message;
    this.fail(new ConnectionError(`connection to ${this.address} lost${detail ? `: ${detail}` : ''}`, { subject: this.address, cause }));
  }

  /** The session died on its own: fail all pending work, cut the socket, tell whoever wants to reconnect. */
  private fail(err: SyncError): void {
    if (this.failure || this.ending) return;
    this.failure = err;
    this.rejectPending(err);
    this.stopWatchdog();
    this.sock.destroy();
    for (const listener of [...this.lostListeners]) listener(err);
  }

  /** We ended the session: no 'lost' notification. */
  private stop(err: SyncError): void {
    this.ending = true;
    this.stopWatchdog();
    this.rejectPending(err);
  }

  private rejectPending(err: Error): void {
    const rejects = [...this.pending];
    this.pending.clear();
    for (const reject of rejects) reject(err);
  }
}
