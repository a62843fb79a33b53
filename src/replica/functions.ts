/**
 * The replay functions by server version. PostgreSQL 10 renamed "xlog" to
 * "wal" and "location" to "lsn" (the guide still prints the 9.x names);
 * 14 added pg_get_wal_replay_pause_state(), which tells a requested pause
 * from one the startup process has reached.
 */
export interface ReplayFunctions {
  readonly pause: string;
  readonly resume: string;
  readonly isPaused: string;
  readonly receiveLsn: string;
  readonly replayLsn: string;
  readonly lsnDiff: string;
  /** 14+: 'not paused' | 'pause requested' | 'paused'; null before 14. */
  readonly pauseState: string | null;
  /** pg_stat_wal_receiver exists from 9.6 on. */
  readonly hasWalReceiverView: boolean;
  /** The built-in role that may read pg_stat_wal_receiver's columns (10+); before 10 only superusers may. */
  readonly monitorRole: string | null;
}

/** `versionNum` is server_version_num: 90624, 100023, 150008 … */
export function replayFunctions(versionNum: number): ReplayFunctions {
  if (versionNum < 100000) {
    return {
      pause: 'pg_xlog_replay_pause',
      resume: 'pg_xlog_replay_resume',
      isPaused: 'pg_is_xlog_replay_paused',
      receiveLsn: 'pg_last_xlog_receive_location',
      replayLsn: 'pg_last_xlog_replay_location',
      lsnDiff: 'pg_xlog_location_diff',
      pauseState: null,
      hasWalReceiverView: versionNum >= 90600,
      monitorRole: null,
    };
  }
  return {
    pause: 'pg_wal_replay_pause',
    resume: 'pg_wal_replay_resume',
    isPaused: 'pg_is_wal_replay_paused',
    receiveLsn: 'pg_last_wal_receive_lsn',
    replayLsn: 'pg_last_wal_replay_lsn',
    lsnDiff: 'pg_wal_lsn_diff',
    pauseState: versionNum >= 140000 ? 'pg_get_wal_replay_pause_state' : null,
    hasWalReceiverView: true,
    monitorRole: 'pg_monitor',
  };
}

/** "15.8" from 150008, "9.6.24" from 90624. */
export function versionText(versionNum: number): string {
  if (versionNum >= 100000) return `${Math.floor(versionNum / 10000)}.${versionNum % 10000}`;
  return `${Math.floor(versionNum / 10000)}.${Math.floor(versionNum / 100) % 100}.${versionNum % 100}`;
}

/** Compare two LSNs "16/B374D848": -1, 0, 1. */
export function compareLsn(a: string, b: string): number {
  const [ah, al] = parseLsn(a);
  const [bh, bl] = parseLsn(b);
  if (ah !== bh) return ah < bh ? -1 : 1;
  return al === bl ? 0 : al < bl ? -1 : 1;
}

function parseLsn(lsn: string): [number, number] {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn.trim());
  if (!m) throw new Error(`not an LSN: ${lsn}`);
  return [parseInt(m[1]!, 16), parseInt(m[2]!, 16)];
}
