/**
 * An embedded, read-only SFTP master on ssh2's Server: for `xroad-sync serve`
 * and the demo on machines without sshd, for tests that need a master that
 * misbehaves (hooks), and as the test harness's fallback when sshd is absent.
 *
 * Public-key authentication only, only the `sftp` subsystem; the SFTP side
 * lives in sftp-session.ts.
 */
import net from 'node:net';
import type { AuthContext, Connection, ParsedKey } from 'ssh2';
import ssh2 from 'ssh2';
import { type IdNames, loadIdNames } from '../local/ids.js';
import { SERVE_DEFAULTS } from './defaults.js';
import { RootedPaths } from './rooted-paths.js';
import { type ServerHooks, SftpServerSession } from './sftp-session.js';

export type { Fault, ServerHooks, SftpOp } from './sftp-session.js';

// ssh2 is CommonJS whose exports Node's ESM loader cannot name: default import only.
const { Server, utils } = ssh2;

export interface EmbeddedMasterOptions {
  /** Directory served read-only; clients see real absolute paths below it, "." is the root. */
  root: string;
  /** Listen address, default 127.0.0.1. */
  host?: string;
  /** 0 (default) = any free port. */
  port?: number;
  /** Host private key *contents* (OpenSSH or PEM), not a path. */
  hostKey: Buffer | string;
  /** Public key lines ("ssh-ed25519 AAAA... comment") allowed to log in; '#' lines and blanks ignored. */
  authorizedKeys: string[];
  /** Only this user name may log in; any name when omitted. */
  user?: string;
  /** Read on every request, so a test may set and delete hooks on this object while the server runs. */
  hooks?: ServerHooks;
  log?: (msg: string) => void;
}

export interface EmbeddedMaster {
  port: number;
  /** Stop listening, destroy every open connection, close every fd. */
  close(): Promise<void>;
  /** Connections that passed authentication so far (sshd's "Accepted publickey" lines). */
  connections(): number;
}

export async function startEmbeddedMaster(opts: EmbeddedMasterOptions): Promise<EmbeddedMaster> {
  const paths = await RootedPaths.create(opts.root);
  const keys = parseAuthorizedKeys(opts.authorizedKeys);
  const shared: Shared = {
    paths,
    ids: await loadIdNames(),
    hooks: opts.hooks ?? {},
    keys,
    user: opts.user,
    log: opts.log ?? (() => {}),
    sockets: new Map(),
    sessions: new Set(),
    authenticated: 0,
  };
  const ssh = new Server({ hostKeys: [opts.hostKey] }, (conn, info) => onConnection(shared, conn, `${info.ip}:${info.port}`));
  // Our own listener hands sockets to ssh2 (injectSocket) so that we hold every
  // socket: needed to cut one abruptly and to make close() bounded.
  const listener = net.createServer((socket) => {
    const key = `${socket.remoteAddress}:${socket.remotePort}`;
    shared.sockets.set(key, socket);
    socket.on('error', () => {}); // ECONNRESET from a client that vanished is not our failure
    socket.setNoDelay(true); // SFTP is request/response: Nagle + delayed ACK would add ~40 ms per round trip
    socket.once('close', () => shared.sockets.delete(key));
    ssh.injectSocket(socket);
  });
  const host = opts.host ?? SERVE_DEFAULTS.host;
  const port = await listen(listener, opts.port ?? SERVE_DEFAULTS.port, host);
  shared.log(`embedded master serving ${paths.root} on ${host}:${port}`);
  return {
    port,
    connections: () => shared.authenticated,
    close: () => closeAll(listener, shared),
  };
}

interface Shared {
  paths: RootedPaths;
  ids: IdNames;
  hooks: ServerHooks;
  keys: ParsedKey[];
  user: string | undefined;
  log: (msg: string) => void;
  /** Open TCP sockets by "ip:port" of the client. */
  sockets: Map<string, net.Socket>;
  sessions: Set<SftpServerSession>;
  authenticated: number;
}

function parseAuthorizedKeys(lines: string[]): ParsedKey[] {
  const keys: ParsedKey[] = [];
  for (const raw of lines) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const parsed: unknown = utils.parseKey(line);
    // parseKey returns an Error instead of throwing, and an array for multi-key inputs.
    const key = (Array.isArray(parsed) ? parsed[0] : parsed) as ParsedKey | Error | undefined;
    if (!key || key instanceof Error) {
      throw new Error(`authorized key not understood: ${line.slice(0, 40)}...${key ? `: ${key.message}` : ''}`);
    }
    keys.push(key);
  }
  return keys;
}

function listen(server: net.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

function onConnection(shared: Shared, conn: Connection, peer: string): void {
  const mine = new Set<SftpServerSession>();
  const cut = (): void => {
    shared.log(`cutting connection from ${peer}`);
    const socket = shared.sockets.get(peer);
    if (socket) socket.destroy();
    else conn.end();
  };
  // An unhandled 'error' on a Connection would crash the whole process.
  conn.on('error', (err: Error) => shared.log(`connection ${peer}: ${err.message}`));
  conn.on('authentication', (ctx) => authenticate(shared, ctx, peer));
  conn.on('ready', () => {
    shared.authenticated++;
    conn.on('session', (accept) => {
      const session = accept();
      session.on('sftp', (acceptSftp) => {
        const sftp = new SftpServerSession(acceptSftp(), { ...shared, cut });
        mine.add(sftp);
        shared.sessions.add(sftp);
        sftp.attach();
      });
      // Only SFTP: shells, commands and other subsystems are refused.
      session.on('shell', (_accept, reject) => reject());
      session.on('exec', (_accept, reject) => reject());
      session.on('subsystem', (_accept, reject) => reject());
    });
  });
  conn.on('close', () => {
    for (const s of mine) {
      shared.sessions.delete(s);
      void s.closeAll();
    }
  });
}

/** Public key only: the offered key must be authorized and, when signed, the signature must verify. */
function authenticate(shared: Shared, ctx: AuthContext, peer: string): void {
  if (ctx.method !== 'publickey') {
    ctx.reject(['publickey']);
    return;
  }
  if (shared.user !== undefined && ctx.username !== shared.user) {
    shared.log(`refused user ${JSON.stringify(ctx.username)} from ${peer}`);
    ctx.reject(['publickey']);
    return;
  }
  const key = shared.keys.find((k) => k.getPublicSSH().equals(ctx.key.data));
  if (!key) {
    shared.log(`refused unknown ${ctx.key.algo} key from ${peer}`);
    ctx.reject(['publickey']);
    return;
  }
  // Without a signature the client only asks whether this key would do.
  if (!ctx.signature || !ctx.blob || key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) === true) {
    ctx.accept();
    return;
  }
  shared.log(`bad signature from ${peer}`);
  ctx.reject(['publickey']);
}

async function closeAll(listener: net.Server, shared: Shared): Promise<void> {
  const closed = new Promise<void>((resolve) => listener.close(() => resolve()));
  for (const socket of shared.sockets.values()) socket.destroy();
  await Promise.allSettled([...shared.sessions].map((s) => s.closeAll()));
  shared.sessions.clear();
  await closed;
}
