/**
 * The one-time setup that lets OS user xroad pause and resume replay without
 * being a superuser: a login role granted EXECUTE on the two replay control
 * functions (PostgreSQL revokes them from PUBLIC) and pg_monitor (to read
 * pg_stat_wal_receiver), and a peer map from the OS user to that role for the
 * local socket. The SQL runs on the PRIMARY: a standby is read-only, and the
 * role and grants reach it by replication. pg_hba.conf and pg_ident.conf are
 * per cluster files, edited on the slave's serverconf cluster. The README and
 * `check` print exactly this; the tests apply exactly this.
 */
import { replayFunctions } from './functions.js';

export interface SetupOptions {
  readonly role: string;
  /** The OS user xroad-sync runs as. */
  readonly osUser: string;
  /** server_version_num; picks 9.x or 10+ function names. */
  readonly versionNum: number;
  /** pg_ident.conf map name. */
  readonly mapName?: string;
}

export interface LeastPrivilegeSetup {
  /** On the master's PostgreSQL (the replication primary), as superuser. */
  readonly primarySql: readonly string[];
  /** Line for the slave's serverconf pg_ident.conf. */
  readonly identLine: string;
  /** Line for the slave's serverconf pg_hba.conf, above any other `local` line. */
  readonly hbaLine: string;
}

const quoteIdent = (name: string): string => (/^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`);

export function grantExecute(fn: string, role: string): string {
  return `GRANT EXECUTE ON FUNCTION ${fn}() TO ${quoteIdent(role)};`;
}

export function grantMonitor(monitorRole: string, role: string): string {
  return `GRANT ${monitorRole} TO ${quoteIdent(role)};`;
}

export function leastPrivilegeSetup(o: SetupOptions): LeastPrivilegeSetup {
  const fns = replayFunctions(o.versionNum);
  const map = o.mapName ?? o.role;
  return {
    primarySql: [
      `CREATE ROLE ${quoteIdent(o.role)} LOGIN;`,
      grantExecute(fns.pause, o.role),
      grantExecute(fns.resume, o.role),
      ...(fns.monitorRole ? [grantMonitor(fns.monitorRole, o.role)] : []),
    ],
    identLine: `${map}  ${o.osUser}  ${o.role}`,
    hbaLine: `local  all  ${o.role}  peer  map=${map}`,
  };
}
