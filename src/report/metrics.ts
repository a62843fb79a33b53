/**
 * The Prometheus text exposition of a slave's sync state, for node_exporter's
 * textfile collector: base units (`_seconds`, `_bytes`), counters ending
 * `_total`, no timestamps on samples (the collector stamps them when it
 * reads). `promtool check metrics` accepts it (a test runs it).
 */
import type { PassOutcome } from '../pass/outcome.js';

/** Counters: they only grow, kept across processes (the timer's one-shot passes) by reading the last file back. */
export interface MetricTotals {
  readonly passes: Readonly<Record<PassOutcome, number>>;
  readonly changedFiles: number;
  readonly deletedFiles: number;
  readonly receivedBytes: number;
  readonly sentBytes: number;
}

export interface MetricsSnapshot {
  /** Unix seconds of the last pass that ended ok; null: none known. */
  readonly lastSuccessAt: number | null;
  readonly lastPass: { readonly exitCode: number; readonly durationS: number } | null;
  readonly paused: boolean;
  readonly daemonUp: boolean;
  readonly journalPending: boolean;
  readonly totals: MetricTotals;
  /** The master state the target mirrors after the last ok pass (see `xroad-sync digest`); null: unknown. */
  readonly digest: string | null;
  /** With the serverconf replica (SERVERCONF_REPLICA=yes): its state when the file was written; null without one. */
  readonly replica?: ReplicaMetrics | null;
}

/** What the file says of the serverconf standby; a field it could not read is left out. */
export interface ReplicaMetrics {
  /** Connected, and the database is a standby in recovery. */
  readonly up: boolean;
  readonly replayPaused: boolean | null;
  readonly streaming: boolean | null;
  readonly lagBytes: number | null;
  readonly lagSeconds: number | null;
}

export const ZERO_TOTALS: MetricTotals = { passes: { ok: 0, failed: 0, skipped: 0 }, changedFiles: 0, deletedFiles: 0, receivedBytes: 0, sentBytes: 0 };

type Sample = readonly [labels: string, value: number];

interface Family {
  readonly name: string;
  readonly type: 'gauge' | 'counter';
  readonly help: string;
  readonly samples: readonly Sample[];
}

const bool = (b: boolean): number => (b ? 1 : 0);

function families(s: MetricsSnapshot): Family[] {
  const f: Family[] = [];
  const gauge = (name: string, help: string, value: number | null | undefined): void => {
    if (value !== null && value !== undefined) f.push({ name, type: 'gauge', help, samples: [['', value]] });
  };
  const counter = (name: string, help: string, samples: readonly Sample[]): void => void f.push({ name, type: 'counter', help, samples });
  gauge(
    'xroad_sync_last_success_timestamp_seconds',
    'Unix time of the last pass that ended ok: the slave mirrored the master then (alert on time() minus this).',
    s.lastSuccessAt,
  );
  gauge('xroad_sync_last_pass_exit_code', 'Exit code of the last pass (0 ok or skipped; README "Exit codes").', s.lastPass?.exitCode);
  gauge('xroad_sync_last_pass_duration_seconds', 'How long the last pass took.', s.lastPass?.durationS);
  gauge('xroad_sync_paused', '1 while the flag file pauses sync (xroad-sync pause).', bool(s.paused));
  gauge('xroad_sync_crash_journal_pending', '1 while an interrupted commit waits to be rolled forward by the next pass.', bool(s.journalPending));
  gauge('xroad_sync_daemon_up', '1 while xroad-sync daemon runs for this state dir.', bool(s.daemonUp));
  counter(
    'xroad_sync_passes_total',
    'Passes by result.',
    (['ok', 'failed', 'skipped'] as const).map((r) => [`result="${r}"`, s.totals.passes[r]]),
  );
  counter('xroad_sync_changed_files_total', 'Entries created or updated on the target.', [['', s.totals.changedFiles]]);
  counter('xroad_sync_deleted_files_total', 'Entries deleted from the target.', [['', s.totals.deletedFiles]]);
  counter('xroad_sync_received_bytes_total', 'Bytes received from the master over SSH.', [['', s.totals.receivedBytes]]);
  counter('xroad_sync_sent_bytes_total', 'Bytes sent to the master over SSH.', [['', s.totals.sentBytes]]);
  if (s.replica) {
    const r = s.replica;
    gauge('xroad_sync_serverconf_up', '1 when the serverconf replica could be read and is a standby in recovery.', bool(r.up));
    gauge(
      'xroad_sync_serverconf_replay_paused',
      '1 while WAL replay on the serverconf standby is paused (or a pause is requested).',
      r.replayPaused === null ? null : bool(r.replayPaused),
    );
    gauge('xroad_sync_serverconf_streaming', '1 while the standby WAL receiver streams from the primary.', r.streaming === null ? null : bool(r.streaming));
    gauge('xroad_sync_serverconf_replay_lag_bytes', 'WAL received but not yet replayed.', r.lagBytes);
    gauge('xroad_sync_serverconf_replay_lag_seconds', 'Age of the last replayed transaction while WAL waits to be replayed, else 0.', r.lagSeconds);
  }
  if (s.digest !== null) {
    f.push({
      name: 'xroad_sync_master_state_info',
      type: 'gauge',
      help: 'The master state the target mirrors, as xroad-sync digest computes it on the master.',
      samples: [[`digest="${s.digest}"`, 1]],
    });
  }
  return f;
}

const number = (n: number): string => (Number.isInteger(n) ? String(n) : n.toFixed(3));

export function renderMetrics(snapshot: MetricsSnapshot): string {
  const lines: string[] = [];
  for (const family of families(snapshot)) {
    lines.push(`# HELP ${family.name} ${family.help}`, `# TYPE ${family.name} ${family.type}`);
    for (const [labels, value] of family.samples) lines.push(`${family.name}${labels ? `{${labels}}` : ''} ${number(value)}`);
  }
  return lines.join('\n') + '\n';
}

/** What a file renderMetrics wrote holds that a later writer carries on (a missing or foreign line counts as 0 / unknown). */
export function parseMetrics(text: string): {
  totals: MetricTotals;
  lastSuccessAt: number | null;
  lastPass: MetricsSnapshot['lastPass'];
  digest: string | null;
} {
  const values = new Map<string, number>();
  let digest: string | null = null;
  for (const line of text.split('\n')) {
    const m = /^(xroad_sync_[a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (!m) continue;
    values.set(m[1]!, Number(m[2]));
    const d = /^xroad_sync_master_state_info\{digest="([0-9a-f]+)"\}/.exec(line);
    if (d) digest = d[1]!;
  }
  const count = (key: string): number => {
    const v = values.get(key);
    return v !== undefined && Number.isFinite(v) && v >= 0 ? v : 0;
  };
  const last = values.get('xroad_sync_last_success_timestamp_seconds');
  const exitCode = values.get('xroad_sync_last_pass_exit_code');
  const durationS = values.get('xroad_sync_last_pass_duration_seconds');
  return {
    lastPass: exitCode !== undefined && durationS !== undefined ? { exitCode, durationS } : null,
    totals: {
      passes: {
        ok: count('xroad_sync_passes_total{result="ok"}'),
        failed: count('xroad_sync_passes_total{result="failed"}'),
        skipped: count('xroad_sync_passes_total{result="skipped"}'),
      },
      changedFiles: count('xroad_sync_changed_files_total'),
      deletedFiles: count('xroad_sync_deleted_files_total'),
      receivedBytes: count('xroad_sync_received_bytes_total'),
      sentBytes: count('xroad_sync_sent_bytes_total'),
    },
    lastSuccessAt: last !== undefined && Number.isFinite(last) ? last : null,
    digest,
  };
}
