/**
 * Where the serverconf replica is and who we are to it. X-Road's slaves run
 * the serverconf database as a PostgreSQL streaming standby in its own
 * cluster on port 5433 (IG-XLB §4); xroad-sync reaches it over the local
 * Unix socket with peer authentication, as role xroad_sync (see README,
 * "serverconf replica: one-time setup").
 */
import { ConfigError } from '../errors.js';

export interface ReplicaSettings {
  /** Directory holding the server's socket `.s.PGSQL.<port>`. */
  readonly socketDir: string;
  readonly port: number;
  /** Database role; the OS user is mapped to it by pg_ident.conf. */
  readonly role: string;
  /** Any database the role may connect to; the replay functions are cluster-wide. */
  readonly database: string;
  readonly connectTimeoutMs: number;
}

export const REPLICA_DEFAULTS = {
  socketDir: '/var/run/postgresql',
  port: 5433,
  role: 'xroad_sync',
  database: 'postgres',
  connectTimeoutMs: 5_000,
  /** resume --now waits this long for replay to catch up before saying the node is not ready. */
  readyTimeoutS: 120,
} as const;

/** Environment (or settings file) names; flags win over them. */
export const REPLICA_ENV = {
  enabled: 'SERVERCONF_REPLICA',
  port: 'SERVERCONF_PORT',
  socketDir: 'SERVERCONF_SOCKET_DIR',
  role: 'SERVERCONF_ROLE',
  database: 'SERVERCONF_DATABASE',
} as const;

export interface RawReplicaOptions {
  /** --serverconf / --no-serverconf; undefined = the SERVERCONF_REPLICA setting decides. */
  serverconf?: boolean;
  serverconfPort?: string;
  serverconfSocketDir?: string;
  serverconfRole?: string;
  serverconfDatabase?: string;
}

/** Does this command manage the replica? The flag, else SERVERCONF_REPLICA=yes|no, else no. */
export function replicaEnabled(raw: RawReplicaOptions, env: NodeJS.ProcessEnv = process.env): boolean {
  if (raw.serverconf !== undefined) return raw.serverconf;
  const value = env[REPLICA_ENV.enabled]?.trim().toLowerCase();
  if (value === undefined || value === '') return false;
  if (['yes', 'true', '1', 'on'].includes(value)) return true;
  if (['no', 'false', '0', 'off'].includes(value)) return false;
  throw new ConfigError(`${REPLICA_ENV.enabled}=${env[REPLICA_ENV.enabled]} is neither yes nor no`, {
    subject: REPLICA_ENV.enabled,
    hint: `set ${REPLICA_ENV.enabled}=yes on slaves with a serverconf replica, no (or nothing) elsewhere`,
  });
}

export function resolveReplicaSettings(raw: RawReplicaOptions, env: NodeJS.ProcessEnv = process.env): ReplicaSettings {
  const pick = (flag: string | undefined, name: string): string | undefined => flag ?? (env[name]?.trim() || undefined);
  const portText = pick(raw.serverconfPort, REPLICA_ENV.port);
  const port = portText === undefined ? REPLICA_DEFAULTS.port : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(`serverconf port ${portText} is not a port number`, {
      subject: '--serverconf-port',
      hint: `the guide's replica listens on ${REPLICA_DEFAULTS.port}`,
    });
  }
  const socketDir = pick(raw.serverconfSocketDir, REPLICA_ENV.socketDir) ?? REPLICA_DEFAULTS.socketDir;
  if (!socketDir.startsWith('/')) {
    throw new ConfigError(`serverconf socket dir ${socketDir} is not an absolute path`, {
      subject: '--serverconf-socket-dir',
      hint: `e.g. ${REPLICA_DEFAULTS.socketDir}`,
    });
  }
  return {
    socketDir,
    port,
    role: pick(raw.serverconfRole, REPLICA_ENV.role) ?? REPLICA_DEFAULTS.role,
    database: pick(raw.serverconfDatabase, REPLICA_ENV.database) ?? REPLICA_DEFAULTS.database,
    connectTimeoutMs: REPLICA_DEFAULTS.connectTimeoutMs,
  };
}

/** "xroad_sync@/var/run/postgresql/.s.PGSQL.5433", for messages. */
export function describeEndpoint(s: ReplicaSettings): string {
  return `${s.role}@${s.socketDir.replace(/\/$/, '')}/.s.PGSQL.${s.port}`;
}
