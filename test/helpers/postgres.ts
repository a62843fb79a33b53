/**
 * A real PostgreSQL primary and streaming standby for the serverconf replica
 * tests, on 127.0.0.1 and Unix sockets in a temp dir: initdb and pg_ctl as
 * OS user postgres (runuser), the standby made by `pg_basebackup -R`, as
 * X-Road's slave serverconf cluster is. The test process talks to both as
 * superuser `postgres` over loopback TCP (trust, test clusters only); the
 * CLI under test logs in over the socket with peer authentication, as in
 * production. stop() is bounded (pg_ctl stop -m immediate) and also runs
 * from a process 'exit' hook, so no server outlives a failed test.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { CliRun } from './cli.js';
import { cliForOtherUsers } from './other-user.js';
import { freePort } from './sshd.js';

const PG_LIB = '/usr/lib/postgresql';
const STEP_TIMEOUT_MS = 30_000;
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/**
 * Where a PostgreSQL server comes from: the host's newest (postgresql-15 on Debian 12), or a
 * Debian root made by scripts/debian-postgres-root.sh (13 from bullseye, 17 from trixie), run
 * chrooted into it. The clusters of a chrooted server live under the root's /tmp, so the CLI
 * on the host reaches its socket at the same files through `root + path`.
 */
export interface PgServer {
  readonly major: number;
  /** "PostgreSQL 13 (Debian bullseye root)" */
  readonly label: string;
  /** null: the host's own server. */
  readonly root: string | null;
  readonly binDir: string;
}

/** The newest installed server's bin dir (postgresql-15 on Debian 12), or null. */
export function pgBinDir(): string | null {
  if (!existsSync(PG_LIB)) return null;
  const versions = readdirSync(PG_LIB)
    .filter((v) => existsSync(path.join(PG_LIB, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? path.join(PG_LIB, versions[0], 'bin') : null;
}

export function hostPgServer(): PgServer | null {
  const bin = pgBinDir();
  if (!bin) return null;
  const major = Number(path.basename(path.dirname(bin)));
  return { major, label: `PostgreSQL ${major} (host)`, root: null, binDir: bin };
}

/** Debian suites whose PostgreSQL the replica suite also runs on, besides the host's. */
export const DEBIAN_PG_SUITES = [
  { suite: 'bullseye', major: 13 },
  { suite: 'trixie', major: 17 },
] as const;

/**
 * The server of a Debian suite, building its root once (scripts/debian-postgres-root.sh, cached in
 * /var/cache/xroad-sync-test; about 1-2 min the first time). Throws with the script's output on failure.
 */
export function debianPgServer(suite: string, major: number): PgServer {
  const r = spawnSync('bash', [path.join(REPO, 'scripts/debian-postgres-root.sh'), suite], { encoding: 'utf8', timeout: 900_000 });
  if (r.status !== 0) throw new Error(`debian-postgres-root.sh ${suite} exited ${r.status ?? r.signal}:\n${r.stderr}`);
  const root = r.stdout.trim();
  const binDir = path.join('/usr/lib/postgresql', String(major), 'bin');
  if (!existsSync(path.join(root, binDir, 'postgres'))) throw new Error(`no ${binDir}/postgres in ${root}`);
  return { major, label: `PostgreSQL ${major} (Debian ${suite} root)`, root, binDir };
}

export interface ReplicaTestServer {
  readonly label: string;
  readonly server: PgServer | null;
  readonly skip: string | false;
}

/**
 * The servers the replica suite runs on: the host's and each Debian suite's root (built once,
 * cached). XROAD_SYNC_TEST_PG_MAJORS=15,13 limits them; under CI=true every one must be available.
 */
export function replicaTestServers(): ReplicaTestServer[] {
  const wanted = process.env.XROAD_SYNC_TEST_PG_MAJORS?.split(',').map((m) => Number(m.trim()));
  const want = (major: number): boolean => !wanted || wanted.includes(major);
  const ci = process.env.CI === 'true';
  const servers: ReplicaTestServer[] = [];
  const hostSkip = postgresTestSkipReason();
  const host = hostPgServer();
  if (!host || want(host.major)) servers.push({ label: host?.label ?? 'PostgreSQL (host)', server: host, skip: hostSkip });
  for (const { suite, major } of DEBIAN_PG_SUITES) {
    if (!want(major) || host?.major === major) continue;
    const label = `PostgreSQL ${major} (Debian ${suite} root)`;
    let skip: string | false =
      process.getuid?.() !== 0 ? 'needs root (debootstrap, chroot)' : spawnSync('sh', ['-c', 'command -v debootstrap']).status !== 0 ? 'no debootstrap' : false;
    let server: PgServer | null = null;
    if (!skip) {
      try {
        server = debianPgServer(suite, major);
      } catch (err) {
        skip = (err as Error).message;
      }
    }
    if (skip && ci) throw new Error(`${label} cannot run under CI: ${skip}`);
    servers.push({ label, server, skip });
  }
  return servers;
}

/** Servers run as user postgres and the CLI as another OS user: both need root. */
export function postgresTestSkipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (runuser to postgres and to the test OS user)';
  if (!pgBinDir()) return `no PostgreSQL server under ${PG_LIB} (apt-get install postgresql-15)`;
  if (spawnSync('getent', ['passwd', 'postgres']).status !== 0) return 'no OS user postgres';
  return false;
}

export interface PgPair {
  readonly server: PgServer;
  readonly dir: string;
  /** Socket dir of both servers (mode 0755, so any OS user can reach the sockets), as the host sees it. */
  readonly socketDir: string;
  readonly primaryPort: number;
  readonly standbyPort: number;
  /** Superuser query on the primary / the standby (TCP, trust; reconnects after a restart). */
  primary(sql: string): Promise<Array<Record<string, unknown>>>;
  standby(sql: string): Promise<Array<Record<string, unknown>>>;
  /** Appends lines to the standby's pg_ident.conf / pg_hba.conf (hba lines go first) and reloads it. */
  configureStandbyAuth(identLines: readonly string[], hbaLines: readonly string[]): Promise<void>;
  /** Appends settings to the standby's postgresql.conf and reloads it (e.g. recovery_min_apply_delay). */
  configureStandby(lines: readonly string[]): Promise<void>;
  /** Makes an OS user of the host known by uid to the server (peer authentication looks the uid up where the server runs). */
  knowOsUser(name: string): Promise<void>;
  /** pg_ctl restart of the standby (fast shutdown), as a package upgrade or a reboot would; waits until it accepts connections. */
  restartStandby(): Promise<void>;
  stopPrimary(): Promise<void>;
  stop(): Promise<void>;
}

/** How to run the server's programs as its postgres user: runuser on the host, chroot --userspec into a root. */
function postgresRunner(server: PgServer): { argv: (bin: string, args: readonly string[]) => string[]; owner: string } {
  if (server.root === null) return { argv: (bin, args) => ['runuser', '-u', 'postgres', '--', bin, ...args], owner: 'postgres:' };
  const line = readFileSync(path.join(server.root, 'etc/passwd'), 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error(`no user postgres in ${server.root}/etc/passwd`);
  const [, , uid, gid] = line.split(':');
  return { argv: (bin, args) => ['chroot', `--userspec=${uid}:${gid}`, server.root!, bin, ...args], owner: `${uid}:${gid}` };
}

function runAs(argv: readonly string[], what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], cwd: '/', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), STEP_TIMEOUT_MS);
    child.once('error', (err) => (clearTimeout(timer), reject(err)));
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${what} exited ${code}:\n${out}`));
    });
  });
}

interface Session {
  query(sql: string): Promise<Array<Record<string, unknown>>>;
  end(): Promise<void>;
}

/** A superuser session over loopback TCP that opens again after the server restarted. */
function reconnectingClient(port: number): Session {
  let client: pg.Client | null = null;
  const open = async (): Promise<pg.Client> => {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 10_000 });
    c.on('error', () => undefined);
    await c.connect();
    return c;
  };
  return {
    async query(sql) {
      client ??= await open();
      try {
        return (await client.query(sql)).rows as Array<Record<string, unknown>>;
      } catch (err) {
        // A session the server ended (restart) is opened again once; an SQL error is the caller's.
        if ((err as { code?: string }).code !== undefined && (err as { code?: string }).code !== '57P01') throw err;
        await client.end().catch(() => undefined);
        client = await open();
        return (await client.query(sql)).rows as Array<Record<string, unknown>>;
      }
    },
    async end() {
      await client?.end().catch(() => undefined);
      client = null;
    },
  };
}

export async function startPgPair(server: PgServer | null = hostPgServer()): Promise<PgPair> {
  if (!server) throw new Error('no PostgreSQL server installed');
  const runner = postgresRunner(server);
  const bin = (name: string): string => path.join(server.binDir, name);
  const run = (name: string, args: readonly string[]): Promise<string> => runAs(runner.argv(bin(name), args), `${name} ${args.join(' ')}`);
  // The server sees `inServer(p)`; the host the same file at `p`.
  const hostTmp = server.root === null ? os.tmpdir() : path.join(server.root, 'tmp');
  const dir = await fs.mkdtemp(path.join(hostTmp, 'xsync-pg-'));
  const inServer = (p: string): string => (server.root === null ? p : '/' + path.relative(server.root, p));
  await fs.chmod(dir, 0o755);
  const socketDir = path.join(dir, 'sock');
  await fs.mkdir(socketDir, { mode: 0o755 });
  spawnSync('chown', ['-R', runner.owner, dir]);
  const primaryData = path.join(dir, 'primary');
  const standbyData = path.join(dir, 'standby');
  const running = new Set<string>();
  const stopArgs = (data: string): string[] => ['-D', inServer(data), '-m', 'immediate', '-w', '-t', '10', 'stop'];
  const stopSync = (): void => {
    for (const data of running) {
      const argv = runner.argv(bin('pg_ctl'), stopArgs(data));
      spawnSync(argv[0]!, argv.slice(1), { timeout: 15_000 });
    }
    running.clear();
  };
  process.once('exit', stopSync);
  const sessions: Session[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(sessions.map((c) => c.end()));
    for (const data of [...running].reverse()) {
      await run('pg_ctl', stopArgs(data)).catch(() => undefined);
      running.delete(data);
    }
    process.off('exit', stopSync);
    await fs.rm(dir, { recursive: true, force: true });
  };
  try {
    const primaryPort = await freePort();
    const standbyPort = await freePort();
    await run('initdb', ['-D', inServer(primaryData), '-U', 'postgres', '--auth-local=peer', '--auth-host=trust', '-N', '-E', 'UTF8', '--locale=C']);
    await fs.appendFile(
      path.join(primaryData, 'postgresql.conf'),
      [
        `listen_addresses = '127.0.0.1'`,
        `port = ${primaryPort}`,
        `unix_socket_directories = '${inServer(socketDir)}'`,
        'fsync = off',
        'wal_sender_timeout = 5s',
        '',
      ].join('\n'),
    );
    const start = async (data: string): Promise<void> => {
      await run('pg_ctl', ['-D', inServer(data), '-l', `${inServer(data)}.log`, '-w', '-t', '30', 'start']);
      running.add(data);
    };
    await start(primaryData);
    await run('pg_basebackup', [
      '-h',
      '127.0.0.1',
      '-p',
      String(primaryPort),
      '-U',
      'postgres',
      '-D',
      inServer(standbyData),
      '-R',
      '-X',
      'stream',
      '-c',
      'fast',
    ]);
    // A short retry so a stopped primary shows as "not streaming" promptly, and reconnection is quick.
    await fs.appendFile(
      path.join(standbyData, 'postgresql.conf'),
      [`port = ${standbyPort}`, 'wal_retrieve_retry_interval = 1s', 'wal_receiver_timeout = 5s', ''].join('\n'),
    );
    await start(standbyData);
    const primary = reconnectingClient(primaryPort);
    const standby = reconnectingClient(standbyPort);
    sessions.push(primary, standby);
    return {
      server,
      dir,
      socketDir,
      primaryPort,
      standbyPort,
      primary: (sql) => primary.query(sql),
      standby: (sql) => standby.query(sql),
      async configureStandbyAuth(identLines, hbaLines) {
        const hba = path.join(standbyData, 'pg_hba.conf');
        await fs.appendFile(path.join(standbyData, 'pg_ident.conf'), identLines.join('\n') + '\n');
        await fs.writeFile(hba, hbaLines.join('\n') + '\n' + (await fs.readFile(hba, 'utf8')));
        await standby.query('SELECT pg_reload_conf()');
      },
      async configureStandby(lines) {
        await fs.appendFile(path.join(standbyData, 'postgresql.conf'), lines.join('\n') + '\n');
        await standby.query('SELECT pg_reload_conf()');
      },
      async knowOsUser(name) {
        if (server.root === null) return;
        const id = spawnSync('id', ['-u', name], { encoding: 'utf8' }).stdout.trim();
        const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' }).stdout.trim();
        const passwd = path.join(server.root, 'etc/passwd');
        // Appended once (a duplicate line from two runs at once would be harmless).
        if (!(await fs.readFile(passwd, 'utf8')).split('\n').some((l) => l.startsWith(`${name}:`))) {
          await fs.appendFile(passwd, `${name}:x:${id}:${gid}::/nonexistent:/usr/sbin/nologin\n`);
        }
      },
      async restartStandby() {
        await run('pg_ctl', ['-D', inServer(standbyData), '-l', `${inServer(standbyData)}.log`, '-m', 'fast', '-w', '-t', '30', 'restart']);
        await standby.end();
      },
      async stopPrimary() {
        await run('pg_ctl', stopArgs(primaryData));
        running.delete(primaryData);
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** An unprivileged OS user for peer authentication (created once, kept: useradd is not undone between runs). */
export function ensureOsUser(name: string): void {
  if (spawnSync('getent', ['passwd', name]).status === 0) return;
  const r = spawnSync('useradd', ['--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', name], {
    encoding: 'utf8',
    timeout: 15_000,
  });
  if (r.status !== 0 && spawnSync('getent', ['passwd', name]).status !== 0) throw new Error(`useradd ${name} failed: ${r.stderr}`);
}

/** The CLI as OS user `user` (runuser), from a place that user can reach (other-user.ts), bounded; the environment carries no SERVERCONF_* unless given. */
export function runCliAs(user: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliRun> {
  const started = Date.now();
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, LANG: 'C.UTF-8', ...opts.env };
  const cli = cliForOtherUsers();
  const child = spawn('runuser', ['-u', user, '--', cli.node, cli.script, ...args], { env, cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  return new Promise((resolve, reject) => {
    child.once('error', (err) => (clearTimeout(timer), reject(err)));
    child.once('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, elapsedMs: Date.now() - started });
    });
  });
}
