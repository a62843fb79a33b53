/**
 * The serverconf replica over node-postgres: connect over the local socket,
 * read its state, pause and resume WAL replay, wait until it has caught up.
 * pg is imported on first use, so commands that never touch the replica do
 * not pay for loading it.
 */
import type { Client } from 'pg';
import type { ReplicaSettings } from '../settings/replica-settings.js';
import { toReplicaError } from './errors.js';
import { compareLsn, type ReplayFunctions, replayFunctions, versionText } from './functions.js';

/** 'pause requested': asked (14+), the startup process has not stopped yet. */
export type ReplayState = 'running' | 'pause requested' | 'paused';

export interface ReplicaStatus {
  /** "15.8" */
  readonly server: string;
  readonly inRecovery: boolean;
  /** null when not in recovery (nothing to replay). */
  readonly replay: ReplayState | null;
  /** pg_stat_wal_receiver.status ('streaming', 'waiting', …); 'none' when no receiver runs; null when the role may not see it. */
  readonly receiver: string | null;
  /** true/false; null when the role may not see pg_stat_wal_receiver (grant pg_monitor). */
  readonly streaming: boolean | null;
  /** Last WAL location received and flushed by the standby. */
  readonly receiveLsn: string | null;
  /** Last WAL location replayed. */
  readonly replayLsn: string | null;
  /** The master's WAL end as its sender last told the receiver (latest_end_lsn). */
  readonly senderEndLsn: string | null;
  /** Received but not yet replayed. */
  readonly lagBytes: number | null;
  /** 0 when all received WAL is replayed, else the age of the last replayed transaction. */
  readonly lagSeconds: number | null;
  /** pg_last_xact_replay_timestamp(): commit time of the last replayed transaction. */
  readonly lastReplayAt: string | null;
}

export interface StateChange {
  readonly before: ReplayState;
  readonly after: ReplayState;
}

export class Replica {
  readonly fns: ReplayFunctions;
  private constructor(
    private readonly client: Client,
    readonly settings: ReplicaSettings,
    readonly versionNum: number,
  ) {
    this.fns = replayFunctions(versionNum);
  }

  static async connect(settings: ReplicaSettings): Promise<Replica> {
    const ctx = { settings, action: 'connect to the serverconf replica' };
    const { default: pg } = await import('pg');
    const client = new pg.Client({
      host: settings.socketDir,
      port: settings.port,
      user: settings.role,
      database: settings.database,
      application_name: 'xroad-sync',
      connectionTimeoutMillis: settings.connectTimeoutMs,
      statement_timeout: 10_000,
      query_timeout: 15_000,
    });
    // A server that goes away mid-session emits 'error' on the client; the next query reports it.
    client.on('error', () => undefined);
    try {
      await client.connect();
      const r = await client.query<{ v: number }>("SELECT current_setting('server_version_num')::int AS v");
      return new Replica(client, settings, r.rows[0]!.v);
    } catch (err) {
      await client.end().catch(() => undefined);
      throw toReplicaError(err, ctx);
    }
  }

  get server(): string {
    return versionText(this.versionNum);
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => undefined);
  }

  async status(): Promise<ReplicaStatus> {
    return this.run('read the serverconf replica status', async () => {
      const { in_recovery } = await this.one<{ in_recovery: boolean }>('SELECT pg_is_in_recovery() AS in_recovery');
      const none = {
        replay: null,
        receiver: null,
        streaming: null,
        receiveLsn: null,
        replayLsn: null,
        senderEndLsn: null,
        lagBytes: null,
        lagSeconds: null,
        lastReplayAt: null,
      };
      if (!in_recovery) return { server: this.server, inRecovery: false, ...none };
      const f = this.fns;
      const row = await this.one<{
        paused: boolean;
        pause_state: string | null;
        receive_lsn: string | null;
        replay_lsn: string | null;
        lag_bytes: number | null;
        last_replay_at: Date | null;
        since_last_replay: number | null;
      }>(
        `SELECT ${f.isPaused}() AS paused, ${f.pauseState ? `${f.pauseState}()` : 'NULL::text'} AS pause_state,
                ${f.receiveLsn}()::text AS receive_lsn, ${f.replayLsn}()::text AS replay_lsn,
                ${f.lsnDiff}(${f.receiveLsn}(), ${f.replayLsn}())::float8 AS lag_bytes,
                pg_last_xact_replay_timestamp() AS last_replay_at,
                extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS since_last_replay`,
      );
      const receiver = await this.receiver();
      const caughtUp = row.receive_lsn === null || row.replay_lsn === null || compareLsn(row.replay_lsn, row.receive_lsn) >= 0;
      return {
        server: this.server,
        inRecovery: true,
        replay: replayState(row.paused, row.pause_state),
        ...receiver,
        receiveLsn: row.receive_lsn,
        replayLsn: row.replay_lsn,
        lagBytes: row.lag_bytes === null ? null : Math.max(0, row.lag_bytes),
        lagSeconds: caughtUp ? (row.receive_lsn === null ? null : 0) : row.since_last_replay === null ? null : Math.max(0, Math.round(row.since_last_replay)),
        lastReplayAt: row.last_replay_at?.toISOString() ?? null,
      };
    });
  }

  /** Pauses replay; waits (≤ 2 s) for a 14+ server to confirm, since a requested pause is not yet a pause. */
  async pauseReplay(): Promise<StateChange> {
    return this.run('pause serverconf replay', async () => {
      const before = await this.replayState();
      if (before === 'running') await this.client.query(`SELECT ${this.fns.pause}()`);
      let after = await this.replayState();
      for (let i = 0; i < 20 && after === 'pause requested'; i++) {
        await new Promise((r) => setTimeout(r, 100));
        after = await this.replayState();
      }
      return { before, after };
    });
  }

  async resumeReplay(): Promise<StateChange> {
    return this.run('resume serverconf replay', async () => {
      const before = await this.replayState();
      if (before !== 'running') await this.client.query(`SELECT ${this.fns.resume}()`);
      return { before, after: await this.replayState() };
    });
  }

  /** Replay state; a server not in recovery makes PostgreSQL raise "recovery is not in progress". */
  private async replayState(): Promise<ReplayState> {
    const f = this.fns;
    const row = await this.one<{ paused: boolean; pause_state: string | null }>(
      `SELECT ${f.isPaused}() AS paused, ${f.pauseState ? `${f.pauseState}()` : 'NULL::text'} AS pause_state`,
    );
    return replayState(row.paused, row.pause_state);
  }

  private async receiver(): Promise<Pick<ReplicaStatus, 'receiver' | 'streaming' | 'senderEndLsn'>> {
    if (!this.fns.hasWalReceiverView) return { receiver: null, streaming: null, senderEndLsn: null };
    const r = await this.client.query<{ status: string | null; latest_end_lsn: string | null }>(
      'SELECT status, latest_end_lsn::text AS latest_end_lsn FROM pg_stat_wal_receiver',
    );
    const row = r.rows[0];
    if (!row) return { receiver: 'none', streaming: false, senderEndLsn: null };
    // Without pg_monitor (pg_read_all_stats) PostgreSQL shows the row with every column but pid NULL.
    if (row.status === null) return { receiver: null, streaming: null, senderEndLsn: null };
    return { receiver: row.status, streaming: row.status === 'streaming', senderEndLsn: row.latest_end_lsn };
  }

  /** Privileges the one-time setup grants, as the server sees them for this role. */
  async privileges(): Promise<{ pause: boolean; resume: boolean; monitor: boolean | null; superuser: boolean }> {
    return this.run("read the role's privileges", async () => {
      const f = this.fns;
      const row = await this.one<{ pause: boolean; resume: boolean; monitor: boolean | null; superuser: boolean }>(
        `SELECT has_function_privilege('${f.pause}()', 'EXECUTE') AS pause,
                has_function_privilege('${f.resume}()', 'EXECUTE') AS resume,
                ${f.monitorRole ? `pg_has_role('${f.monitorRole}', 'USAGE')` : 'NULL::boolean'} AS monitor,
                (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser`,
      );
      return row;
    });
  }

  private async one<T>(sql: string): Promise<T> {
    const r = await this.client.query(sql);
    return r.rows[0] as T;
  }

  private async run<T>(action: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toReplicaError(err, { settings: this.settings, action, versionNum: this.versionNum });
    }
  }
}

function replayState(paused: boolean, pauseState: string | null): ReplayState {
  if (pauseState === 'pause requested') return 'pause requested';
  if (pauseState === 'paused') return 'paused';
  if (pauseState === 'not paused') return 'running';
  return paused ? 'paused' : 'running';
}

export interface Readiness {
  readonly ready: boolean;
  /** Why not, or what "ready" rests on. */
  readonly reason: string;
}

/** Has the replica replayed all it received, with its WAL receiver streaming? The guide's `replay_lsn = receive_lsn` check, stricter. */
export function readiness(s: ReplicaStatus): Readiness {
  if (!s.inRecovery) return { ready: false, reason: 'the serverconf database is not a standby (not in recovery): was it promoted?' };
  if (s.replay !== 'running') return { ready: false, reason: `serverconf replay is ${s.replay}` };
  if (s.streaming === null) return { ready: false, reason: 'cannot see the WAL receiver (the role needs pg_monitor)' };
  if (!s.streaming)
    return { ready: false, reason: `the serverconf WAL receiver is not streaming (${s.receiver}): is the master's PostgreSQL up and reachable?` };
  if (s.receiveLsn === null || s.replayLsn === null) return { ready: false, reason: 'the serverconf replica has received nothing yet' };
  if (compareLsn(s.replayLsn, s.receiveLsn) < 0) {
    return { ready: false, reason: `serverconf replay at ${s.replayLsn} is ${s.lagBytes ?? '?'} bytes behind what it received (${s.receiveLsn})` };
  }
  if (s.senderEndLsn !== null && compareLsn(s.replayLsn, s.senderEndLsn) < 0) {
    return { ready: false, reason: `serverconf replay at ${s.replayLsn} is behind the master's WAL end ${s.senderEndLsn}` };
  }
  return { ready: true, reason: `serverconf replica caught up at ${s.replayLsn}, streaming` };
}

export interface WaitOptions {
  readonly timeoutMs: number;
  readonly intervalMs?: number;
  readonly onProgress?: (status: ReplicaStatus | null, why: Readiness) => void;
  readonly signal?: AbortSignal;
}

/**
 * Polls until `readiness` holds or `timeoutMs` passes. A failing status read
 * (replica restarting) is a reason, not the end: it is retried until the deadline.
 */
export async function waitCaughtUp(replica: Replica, o: WaitOptions): Promise<Readiness & { status: ReplicaStatus | null }> {
  const deadline = performance.now() + o.timeoutMs;
  for (;;) {
    let status: ReplicaStatus | null = null;
    let why: Readiness;
    try {
      status = await replica.status();
      why = readiness(status);
    } catch (err) {
      why = { ready: false, reason: err instanceof Error ? err.message : String(err) };
    }
    o.onProgress?.(status, why);
    if (why.ready || performance.now() >= deadline || o.signal?.aborted) return { ...why, status };
    await new Promise((r) => setTimeout(r, Math.min(o.intervalMs ?? 500, Math.max(0, deadline - performance.now()))));
  }
}
