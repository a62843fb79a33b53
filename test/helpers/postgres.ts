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
import { existsSync, readdirSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { CliRun } from './cli.js';
import { cliForOtherUsers } from './other-user.js';
import { freePort } from './sshd.js';

const PG_LIB = '/usr/lib/postgresql';
const STEP_TIMEOUT_MS = 30_000;

/** The newest installed server's bin dir (postgresql-15 on Debian 12), or null. */
export function pgBinDir(): string | null {
  if (!existsSync(PG_LIB)) return null;
  const versions = readdirSync(PG_LIB).filter((v) => existsSync(path.join(PG_LIB, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  return versions[0] ? path.join(PG_LIB, versions[0], 'bin') : null;
}

/** Servers run as user postgres and the CLI as another OS user: both need root. */
export function postgresTestSkipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (runuser to postgres and to the test OS user)';
  if (!pgBinDir()) return `no PostgreSQL server under ${PG_LIB} (apt-get install postgresql-15)`;
  if (spawnSync('getent', ['passwd', 'postgres']).status !== 0) return 'no OS user postgres';
  return false;
}

export interface PgPair {
  readonly dir: string;
  /** Socket dir of both servers (mode 0755, so any OS user can reach the sockets). */
  readonly socketDir: string;
  readonly primaryPort: number;
  readonly standbyPort: number;
  /** Superuser query on the primary / the standby (TCP, trust). */
  primary(sql: string): Promise<Array<Record<string, unknown>>>;
  standby(sql: string): Promise<Array<Record<string, unknown>>>;
  /** Appends lines to the standby's pg_ident.conf / pg_hba.conf (hba lines go first) and reloads it. */
  configureStandbyAuth(identLines: readonly string[], hbaLines: readonly string[]): Promise<void>;
  /** Appends settings to the standby's postgresql.conf and reloads it (e.g. recovery_min_apply_delay). */
  configureStandby(lines: readonly string[]): Promise<void>;
  stopPrimary(): Promise<void>;
  stop(): Promise<void>;
}

function runAsPostgres(bin: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('runuser', ['-u', 'postgres', '--', bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: '/' });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), STEP_TIMEOUT_MS);
    child.once('error', (err) => (clearTimeout(timer), reject(err)));
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${path.basename(bin)} ${args.join(' ')} exited ${code}:\n${out}`));
    });
  });
}

export async function startPgPair(): Promise<PgPair> {
  const bin = pgBinDir();
  if (!bin) throw new Error('no PostgreSQL server installed');
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'xroad-sync-pg-'));
  await fs.chmod(dir, 0o755);
  const socketDir = path.join(dir, 'sock');
  await fs.mkdir(socketDir, { mode: 0o755 });
  spawnSync('chown', ['-R', 'postgres:', dir]);
  const primaryData = path.join(dir, 'primary');
  const standbyData = path.join(dir, 'standby');
  const running = new Set<string>();
  const stopSync = (): void => {
    for (const data of running) spawnSync('runuser', ['-u', 'postgres', '--', path.join(bin, 'pg_ctl'), '-D', data, '-m', 'immediate', '-w', '-t', '10', 'stop'], { timeout: 15_000 });
    running.clear();
  };
  process.once('exit', stopSync);
  const clients: pg.Client[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    for (const data of [...running].reverse()) {
      await runAsPostgres(path.join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', '-t', '10', 'stop']).catch(() => undefined);
      running.delete(data);
    }
    process.off('exit', stopSync);
    await fs.rm(dir, { recursive: true, force: true });
  };
  try {
    const primaryPort = await freePort();
    const standbyPort = await freePort();
    await runAsPostgres(path.join(bin, 'initdb'), ['-D', primaryData, '-U', 'postgres', '--auth-local=peer', '--auth-host=trust', '-N', '-E', 'UTF8', '--locale=C']);
    await fs.appendFile(
      path.join(primaryData, 'postgresql.conf'),
      [`listen_addresses = '127.0.0.1'`, `port = ${primaryPort}`, `unix_socket_directories = '${socketDir}'`, 'fsync = off', 'wal_sender_timeout = 5s', ''].join('\n'),
    );
    const start = async (data: string): Promise<void> => {
      await runAsPostgres(path.join(bin, 'pg_ctl'), ['-D', data, '-l', `${data}.log`, '-w', '-t', '30', 'start']);
      running.add(data);
    };
    await start(primaryData);
    await runAsPostgres(path.join(bin, 'pg_basebackup'), ['-h', '127.0.0.1', '-p', String(primaryPort), '-U', 'postgres', '-D', standbyData, '-R', '-X', 'stream', '-c', 'fast']);
    // A short retry so a stopped primary shows as "not streaming" promptly, and reconnection is quick.
    await fs.appendFile(path.join(standbyData, 'postgresql.conf'), [`port = ${standbyPort}`, 'wal_retrieve_retry_interval = 1s', 'wal_receiver_timeout = 5s', ''].join('\n'));
    await start(standbyData);
    const connect = async (port: number): Promise<pg.Client> => {
      const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 10_000 });
      c.on('error', () => undefined);
      await c.connect();
      clients.push(c);
      return c;
    };
    const primary = await connect(primaryPort);
    const standby = await connect(standbyPort);
    const query = async (c: pg.Client, sql: string) => (await c.query(sql)).rows as Array<Record<string, unknown>>;
    return {
      dir,
      socketDir,
      primaryPort,
      standbyPort,
      primary: (sql) => query(primary, sql),
      standby: (sql) => query(standby, sql),
      async configureStandbyAuth(identLines, hbaLines) {
        const hba = path.join(standbyData, 'pg_hba.conf');
        await fs.appendFile(path.join(standbyData, 'pg_ident.conf'), identLines.join('\n') + '\n');
        await fs.writeFile(hba, hbaLines.join('\n') + '\n' + (await fs.readFile(hba, 'utf8')));
        await query(standby, 'SELECT pg_reload_conf()');
      },
      async configureStandby(lines) {
        await fs.appendFile(path.join(standbyData, 'postgresql.conf'), lines.join('\n') + '\n');
        await query(standby, 'SELECT pg_reload_conf()');
      },
      async stopPrimary() {
        await runAsPostgres(path.join(bin, 'pg_ctl'), ['-D', primaryData, '-m', 'immediate', '-w', '-t', '10', 'stop']);
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
  const r = spawnSync('useradd', ['--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', name], { encoding: 'utf8', timeout: 15_000 });
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
