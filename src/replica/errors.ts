/**
 * What can go wrong talking to the serverconf replica, each with the fix:
 * a missing GRANT names the statement (to run on the primary), a refused
 * peer login names the pg_ident.conf / pg_hba.conf lines, a missing socket
 * names the cluster to start.
 */
import { userInfo } from 'node:os';
import { ExitCode, SyncError } from '../errors.js';
import { describeEndpoint, type ReplicaSettings } from '../settings/replica-settings.js';
import { type ReplayFunctions, replayFunctions } from './functions.js';
import { grantExecute, grantMonitor, leastPrivilegeSetup } from './setup.js';

/** The replica cannot be reached, is not a standby, or has not caught up. */
class ReplicaError extends SyncError {
  readonly exitCode: typeof ExitCode.REPLICA_UNAVAILABLE | typeof ExitCode.REPLICA_PERMISSION = ExitCode.REPLICA_UNAVAILABLE;
}

/** Peer login refused, or a function or view the role may not use: a one-time setup step is missing. */
class ReplicaPermissionError extends ReplicaError {
  override readonly exitCode = ExitCode.REPLICA_PERMISSION;
}

export interface ErrorContext {
  readonly settings: ReplicaSettings;
  /** What we were doing, e.g. "pause serverconf replay". */
  readonly action: string;
  /** Known once connected; before that the 10+ names are assumed in hints. */
  readonly versionNum?: number;
}

/**
 * Where a GRANT goes: the master's serverconf cluster (the replication primary; port 5433 in the
 * guide, as on the slave), in the database we connect to, since function privileges are per database.
 */
export function onPrimary(s: ReplicaSettings, sql: string): string {
  return `on the master (the replication primary; the standby is read-only and the grant replicates): sudo -u postgres psql -p ${s.port} -d ${s.database} -c '${sql}'`;
}
const osUser = (): string => {
  try {
    return userInfo().username;
  } catch {
    return 'xroad';
  }
};

/** Any error from pg or the socket → a ReplicaError with the hint for it. Already typed errors pass through. */
export function toReplicaError(err: unknown, ctx: ErrorContext): SyncError {
  if (err instanceof SyncError) return err;
  const where = describeEndpoint(ctx.settings);
  const e = err as { code?: string; message?: string };
  const message = e.message ?? String(err);
  const fns = replayFunctions(ctx.versionNum ?? 150000);
  const s = ctx.settings;
  const fail = (text: string, hint: string, Type: typeof ReplicaError = ReplicaError): ReplicaError =>
    new Type(`cannot ${ctx.action} (${where}): ${text}`, { subject: where, cause: err, hint });
  switch (e.code) {
    case 'ENOENT':
    case 'ECONNREFUSED':
      return fail(
        `no PostgreSQL listening on ${s.socketDir}/.s.PGSQL.${s.port}`,
        `is the serverconf cluster running (pg_lsclusters; systemctl status postgresql@<version>-serverconf)? Otherwise set --serverconf-port / --serverconf-socket-dir (SERVERCONF_PORT, SERVERCONF_SOCKET_DIR)`,
      );
    case 'EACCES':
      return fail(
        `permission denied on the socket directory ${s.socketDir}`,
        `let ${osUser()} search ${s.socketDir} (its mode), or set SERVERCONF_SOCKET_DIR`,
        ReplicaPermissionError,
      );
    case '42501': {
      const fn = /function (\w+)/.exec(message)?.[1];
      if (fn) return fail(message, onPrimary(s, grantExecute(fn, s.role)), ReplicaPermissionError);
      if (fns.monitorRole) return fail(message, onPrimary(s, grantMonitor(fns.monitorRole, s.role)), ReplicaPermissionError);
      return fail(message, 'before PostgreSQL 10 only a superuser may do this', ReplicaPermissionError);
    }
    case '28000':
    case '28P01':
      return fail(message, authHint(message, ctx), ReplicaPermissionError);
    case '3D000':
      return fail(message, `set --serverconf-database (SERVERCONF_DATABASE) to a database of that cluster, e.g. postgres`);
    case '55000':
      return fail(
        `${message}: the database on port ${s.port} is not a standby`,
        'a promoted replica no longer follows the master: rebuild it (IG-XLB §4, pg_basebackup -R) or point --serverconf-port at the replica',
      );
    case '57P03':
      return fail(message, 'the replica is starting or shutting down: try again shortly');
    default:
      // The server asked for a password (md5/scram line in pg_hba.conf): the peer line is missing or below it.
      if (/password/i.test(message)) return fail(message, authHint(message, ctx), ReplicaPermissionError);
      if (/timeout/i.test(message))
        return fail(message, `the server on ${s.socketDir}/.s.PGSQL.${s.port} did not answer within ${s.connectTimeoutMs / 1000} s`);
      return fail(message, 'see the serverconf cluster log (/var/log/postgresql/)');
  }
}

function authHint(message: string, ctx: ErrorContext): string {
  const s = ctx.settings;
  const setup = leastPrivilegeSetup({ role: s.role, osUser: osUser(), versionNum: ctx.versionNum ?? 150000 });
  if (/role .* does not exist/.test(message)) {
    return `create the role ${onPrimary(s, setup.primarySql.join(' '))}`;
  }
  // "Peer authentication failed", "no pg_hba.conf entry", a password demanded: the map is missing.
  const asXroad = osUser() === 'xroad' ? '' : ` (or run xroad-sync as xroad: sudo -u xroad xroad-sync …)`;
  return (
    `map OS user ${osUser()} to role ${s.role} in the slave's serverconf cluster: add '${setup.identLine}' to pg_ident.conf and ` +
    `'${setup.hbaLine}' to pg_hba.conf above the other local lines, then reload it (sudo -u postgres psql -p ${s.port} -c 'select pg_reload_conf()')${asXroad}`
  );
}

/** The grant `fns` needs for pg_stat_wal_receiver, as a hint. */
export function monitorHint(fns: ReplayFunctions, s: ReplicaSettings): string {
  return fns.monitorRole ? onPrimary(s, grantMonitor(fns.monitorRole, s.role)) : 'before PostgreSQL 10 only a superuser sees pg_stat_wal_receiver';
}
