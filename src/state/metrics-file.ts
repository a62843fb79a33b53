/**
 * --metrics-file: the slave's state as a node_exporter textfile, rewritten
 * atomically (temp file in the same directory, then rename: the collector
 * reads only `*.prom`, so it never sees the temp file or half a file) after
 * every recorded pass, skipped pass and daemon state change, and only when
 * its content differs from what this process last wrote. The daemon's quiet
 * passes are counted in memory and reach the file when status.json is next
 * rewritten (at least every 30 s), so an idle daemon does not write it every
 * second. Counters survive the timer's one-shot passes by being read back
 * from the file; a lost file restarts them at 0, a reset rate() handles.
 * Writing it never fails a pass: the caller gets the error to warn with.
 */
import { existsSync, readFileSync } from 'node:fs';
import writeFileAtomic from 'write-file-atomic';
import { pendingJournal } from '../commit/journal.js';
import { parseMetrics, renderMetrics, ZERO_TOTALS, type MetricTotals, type PassOutcomeName, type ReplicaMetrics } from '../report/metrics.js';
import { Replica } from '../replica/replica.js';
import { replicaEnabled, resolveReplicaSettings } from '../settings/replica-settings.js';
import { daemonLockPath, liveHolder } from './lock.js';
import { readStatus } from './status.js';

export interface MetricsPlace {
  readonly metricsFile: string;
  readonly stateDir: string;
  readonly targetDir: string;
  readonly flagFile: string;
}

/** What the metrics count of a finished pass (a pass's result has more). */
export interface CountedPass {
  readonly result: PassOutcomeName;
  readonly exitCode: number;
  readonly startedAt: Date;
  readonly finishedAt: Date;
  readonly changed: number;
  readonly deleted: number;
  readonly bytesReceived: number;
  readonly bytesSent: number;
}

export class PassMetrics {
  private written: string | undefined;
  private lastPass: { exitCode: number; durationS: number } | null = null;
  private journalPending = false;

  private constructor(
    private readonly place: MetricsPlace,
    private totals: MetricTotals,
    private lastSuccessAt: number | null,
    private digest: string | null,
    private daemonUp: boolean,
  ) {}

  /** Picks up the counters where the file left them; the last success from status.json when the file has none. */
  static async load(place: MetricsPlace, opts: { daemon: boolean }): Promise<PassMetrics> {
    let text: string | null = null;
    try {
      text = readFileSync(place.metricsFile, 'utf8');
    } catch {
      // none yet, or unreadable: counters start at 0
    }
    const previous = text === null ? { totals: ZERO_TOTALS, lastSuccessAt: null, digest: null } : parseMetrics(text);
    const lastSuccess = previous.lastSuccessAt ?? (await lastSuccessFromStatus(place.stateDir));
    const daemonUp = opts.daemon || (await liveHolder(daemonLockPath(place.stateDir))) !== undefined;
    const metrics = new PassMetrics(place, previous.totals, lastSuccess, previous.digest, daemonUp);
    metrics.written = text ?? undefined;
    return metrics;
  }

  /** Counts a finished pass (every one, recorded or not); `digest` as status.json records it. */
  async countPass(result: CountedPass, digest?: string | null): Promise<void> {
    const t = this.totals;
    this.totals = {
      passes: { ...t.passes, [result.result]: t.passes[result.result] + 1 },
      changedFiles: t.changedFiles + result.changed,
      deletedFiles: t.deletedFiles + result.deleted,
      receivedBytes: t.receivedBytes + result.bytesReceived,
      sentBytes: t.sentBytes + result.bytesSent,
    };
    this.lastPass = { exitCode: result.exitCode, durationS: (result.finishedAt.getTime() - result.startedAt.getTime()) / 1000 };
    if (result.result === 'ok') this.lastSuccessAt = result.finishedAt.getTime() / 1000;
    if (digest !== undefined) this.digest = digest; // undefined: unchanged; null: a partial commit, unknown
    // An ok pass rolled any journal forward first; only a failed or skipped one can leave one behind.
    this.journalPending = result.result !== 'ok' && (await pendingJournal(this.place.stateDir, this.place.targetDir)) !== null;
  }

  setDaemonUp(up: boolean): void {
    this.daemonUp = up;
  }

  /** Writes the file if its content changed since this process last wrote (or read) it. */
  async flush(): Promise<void> {
    const replica = replicaEnabled({}) ? await readReplica() : null;
    const text = renderMetrics({
      replica,
      lastSuccessAt: this.lastSuccessAt,
      lastPass: this.lastPass,
      paused: existsSync(this.place.flagFile),
      daemonUp: this.daemonUp,
      journalPending: this.journalPending,
      totals: this.totals,
      digest: this.digest,
    });
    if (text === this.written) return;
    // 0644: node_exporter runs as its own user. No fsync: the next write repairs a file lost in a crash.
    await writeFileAtomic(this.place.metricsFile, text, { mode: 0o644, fsync: false });
    this.written = text;
  }
}

/** The replica's state for the file, read when the file is written (never per quiet daemon pass). */
async function readReplica(): Promise<ReplicaMetrics> {
  const down: ReplicaMetrics = { up: false, replayPaused: null, streaming: null, lagBytes: null, lagSeconds: null };
  let replica: Replica | undefined;
  try {
    replica = await Replica.connect(resolveReplicaSettings({}));
    const s = await replica.status();
    if (!s.inRecovery) return down;
    return { up: true, replayPaused: s.replay !== 'running', streaming: s.streaming, lagBytes: s.lagBytes, lagSeconds: s.lagSeconds };
  } catch {
    return down; // unreachable or refused: status --check says why
  } finally {
    await replica?.close().catch(() => undefined);
  }
}

async function lastSuccessFromStatus(stateDir: string): Promise<number | null> {
  const at = (await readStatus(stateDir)).lastSuccessAt;
  const ms = at === null ? NaN : Date.parse(at);
  return Number.isFinite(ms) ? ms / 1000 : null;
}
