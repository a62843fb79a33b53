/**
 * --metrics-file: the slave's state as a node_exporter textfile, rewritten
 * atomically (temp file in the same directory, then rename: the collector
 * reads only `*.prom`, so it never sees the temp file or half a file) after
 * every recorded pass, skipped pass and daemon state change, and only when
 * its content changes. The daemon's quiet passes are counted in memory and
 * reach the file when status.json is next rewritten (at least every 30 s),
 * so an idle daemon does not write it every second. Each write adds what
 * this process counted since its last write to the counters the file holds
 * then: they survive the timer's one-shot passes, and a by-hand `sync` beside
 * the daemon never makes one go down (which Prometheus would read as a reset
 * and a rate spike). A lost file restarts them at 0, a reset rate() handles.
 * Writing it never fails a pass: the caller gets the error to warn with.
 */
import { existsSync, readFileSync } from 'node:fs';
import writeFileAtomic from 'write-file-atomic';
import { pendingJournal } from '../commit/journal.js';
import type { PassOutcome } from '../pass/outcome.js';
import { Replica } from '../replica/replica.js';
import { type MetricTotals, parseMetrics, type ReplicaMetrics, renderMetrics, ZERO_TOTALS } from '../report/metrics.js';
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
  readonly result: PassOutcome;
  readonly exitCode: number;
  readonly startedAt: Date;
  readonly finishedAt: Date;
  readonly changed: number;
  readonly deleted: number;
  readonly bytesReceived: number;
  readonly bytesSent: number;
}

export class PassMetrics {
  /** Counted since the last write: added to what the file holds then, so another writer's counts are kept. */
  private counted: MetricTotals = ZERO_TOTALS;
  private lastPass: { exitCode: number; durationS: number } | null = null;
  private journalPending = false;
  private lastSuccessAt: number | null = null;
  /** undefined: no pass of ours said; null: a partial commit, unknown. */
  private digest: string | null | undefined;

  private constructor(
    private readonly place: MetricsPlace,
    private daemonUp: boolean,
  ) {}

  static async load(place: MetricsPlace, opts: { daemon: boolean }): Promise<PassMetrics> {
    return new PassMetrics(place, opts.daemon || (await liveHolder(daemonLockPath(place.stateDir))) !== undefined);
  }

  /** Counts a finished pass (every one, recorded or not); `digest` as status.json records it. */
  async countPass(result: CountedPass, digest?: string | null): Promise<void> {
    this.counted = addTotals(this.counted, {
      passes: { ...ZERO_TOTALS.passes, [result.result]: 1 },
      changedFiles: result.changed,
      deletedFiles: result.deleted,
      receivedBytes: result.bytesReceived,
      sentBytes: result.bytesSent,
    });
    this.lastPass = { exitCode: result.exitCode, durationS: (result.finishedAt.getTime() - result.startedAt.getTime()) / 1000 };
    if (result.result === 'ok') this.lastSuccessAt = result.finishedAt.getTime() / 1000;
    if (digest !== undefined) this.digest = digest; // undefined: unchanged; null: a partial commit, unknown
    // An ok pass rolled any journal forward first; only a failed or skipped one can leave one behind.
    this.journalPending = result.result !== 'ok' && (await pendingJournal(this.place.stateDir, this.place.targetDir)) !== null;
  }

  setDaemonUp(up: boolean): void {
    this.daemonUp = up;
  }

  /**
   * Writes the file when its content changes: the counters the file holds now
   * (a by-hand `sync` beside the daemon may have added to them) plus ours.
   */
  flush(): Promise<void> {
    // One write at a time (a pause change and a pass may both flush), each taking what was counted
    // when it starts: a pass counted while a write is under way goes into the next write, not lost.
    const next = this.writing.then(() => this.write());
    this.writing = next.catch(() => undefined);
    return next;
  }

  private writing: Promise<void> = Promise.resolve();

  private async write(): Promise<void> {
    const counted = this.counted;
    this.counted = ZERO_TOTALS;
    try {
      await this.render(counted);
    } catch (err) {
      this.counted = addTotals(this.counted, counted); // not written: kept for the next write
      throw err;
    }
  }

  private async render(counted: MetricTotals): Promise<void> {
    const current = readFileOrNull(this.place.metricsFile);
    const previous = current === null ? null : parseMetrics(current);
    // Our own success is the latest news (not the larger number: after a clock step back that would hold a future time).
    const lastSuccessAt = this.lastSuccessAt ?? previous?.lastSuccessAt ?? (await lastSuccessFromStatus(this.place.stateDir));
    const replica = replicaEnabled({}) ? await readReplica() : null;
    const text = renderMetrics({
      replica,
      lastSuccessAt,
      lastPass: this.lastPass ?? previous?.lastPass ?? null,
      paused: existsSync(this.place.flagFile),
      daemonUp: this.daemonUp,
      journalPending: this.journalPending,
      totals: addTotals(previous?.totals ?? ZERO_TOTALS, counted),
      digest: this.digest !== undefined ? this.digest : (previous?.digest ?? null),
    });
    if (text !== current) {
      // 0644: node_exporter runs as its own user. No fsync: the next write repairs a file lost in a crash.
      await writeFileAtomic(this.place.metricsFile, text, { mode: 0o644, fsync: false });
    }
  }
}

function addTotals(a: MetricTotals, b: MetricTotals): MetricTotals {
  return {
    passes: { ok: a.passes.ok + b.passes.ok, failed: a.passes.failed + b.passes.failed, skipped: a.passes.skipped + b.passes.skipped },
    changedFiles: a.changedFiles + b.changedFiles,
    deletedFiles: a.deletedFiles + b.deletedFiles,
    receivedBytes: a.receivedBytes + b.receivedBytes,
    sentBytes: a.sentBytes + b.sentBytes,
  };
}

function readFileOrNull(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null; // none yet, or unreadable: counters start at 0
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
