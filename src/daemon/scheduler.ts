/**
 * When the daemon runs a pass: every interval (with a little jitter so a
 * cluster's slaves do not hit the master in the same second), at once when
 * asked (flag removed, local change seen), later after failures (capped
 * exponential backoff). Never two passes at once: a request during a pass
 * is remembered and served right after it.
 *
 * Polling an unchanged master costs what listing it costs, and that grows
 * with the tree (a few ms for /etc/xroad, hundreds for 50,000 entries). So
 * the scheduled passes keep to a CPU share: when a no-change pass costs more
 * than `pollCpuShare` of the interval, passes are spaced cost / share apart
 * (at most `maxSpacingMs`). Requests (a local edit, resume) still run at
 * once: their cost follows changes, not the tree.
 *
 * The full scan (every `fullScanEveryMs`, whatever the spacing) is not part
 * of that cost: spacing cannot make it rarer. Its share of a core comes off
 * the budget instead, so the two together keep to the share. Averaged into
 * the pass cost, one full scan a minute swung the spacing up and back down
 * every minute, and the log said so each time.
 */
import type { PassOutcome } from '../pass/outcome.js';

export interface SchedulerOptions {
  readonly intervalMs: number;
  /** Up to this fraction of the interval is added at random to each wait. */
  readonly jitter: number;
  /** Backoff after consecutive failures: 1 s, 2 s, 4 s, … capped at this. */
  readonly maxBackoffMs: number;
  /** Share of one core that polling an unchanged master may use (0.02: 2 %); 1 or more: no limit. */
  readonly pollCpuShare?: number;
  /** The longest the spacing grows to for the CPU share (the guide's minute). */
  readonly maxSpacingMs?: number;
  /** How often the daemon's full scan runs (a minute): its CPU is spread over that period. */
  readonly fullScanEveryMs?: number;
  /** Monotonic milliseconds (tests simulate hours). */
  readonly now?: () => number;
  readonly runPass: () => Promise<PassOutcome>;
}

/** Passes now spaced beyond --interval for the CPU share, or back to it. */
export interface SpacingChange {
  readonly spacedOut: boolean;
  readonly spacingMs: number;
  /** What a pass over the unchanged master costs now (ms of CPU, the mean the spacing follows). */
  readonly passCostMs: number;
}

/** No-change passes whose cost sets the spacing. */
const POLL_COSTS_KEPT = 5;
/** Full scans whose cost comes off the budget. */
const FULL_SCAN_COSTS_KEPT = 3;
/**
 * Passes are said to be spaced out once the spacing exceeds the interval by half, and back once it
 * is the interval again: a pass cost that wanders (GC, a busy proxy beside the daemon) stays inside.
 */
const SPACED_OUT_ABOVE = 1.5;
/** A change of spacing is said at most this often; one that does not last until then is not said. */
const SPACING_SAID_AT_MOST_EVERY_MS = 10 * 60_000;

export class PassScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private failures = 0;
  private stopped = false;
  /** CPU of the last few no-change passes (ms), newest last. */
  private readonly pollCosts: number[] = [];
  /** CPU of the last few no-change cycles that included the full scan (ms), newest last. */
  private readonly fullScanCosts: number[] = [];
  /** Passes are spaced beyond --interval for the CPU share (what the log said last). */
  private spacedOut = false;
  /** When the spacing was last said (monotonic ms). */
  private spacingSaidAt = -Infinity;

  constructor(private readonly opts: SchedulerOptions) {}

  start(): void {
    this.requestNow();
  }

  /** Run a pass as soon as possible (after the current one, if any). */
  requestNow(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.clearTimer();
    this.running = this.runOne().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.requestNow();
      }
    });
  }

  /** No more passes; resolves when the current one (if any) has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.clearTimer();
    await this.running;
  }

  /** The CPU (ms, all threads) the daemon used from the end of the last pass to the end of this no-change one: what polling costs. Returns the spacing when it is to be said in the log. */
  notePollCost(cpuMs: number, { fullScan = false }: { fullScan?: boolean } = {}): SpacingChange | undefined {
    if (!Number.isFinite(cpuMs) || cpuMs < 0) return undefined;
    const costs = fullScan ? this.fullScanCosts : this.pollCosts;
    costs.push(cpuMs);
    if (costs.length > (fullScan ? FULL_SCAN_COSTS_KEPT : POLL_COSTS_KEPT)) costs.shift();
    // Two thresholds, and a pause between lines: a cost that hovers around one (23 ms, 25 ms, 23 ms…)
    // would be said every pass, for months.
    const spacingMs = this.spacingMs();
    const change = this.spacedOut ? spacingMs <= this.opts.intervalMs : spacingMs > this.opts.intervalMs * SPACED_OUT_ABOVE;
    if (!change) return undefined;
    const now = this.opts.now ? this.opts.now() : performance.now();
    if (now - this.spacingSaidAt < SPACING_SAID_AT_MOST_EVERY_MS) return undefined;
    this.spacingSaidAt = now;
    this.spacedOut = !this.spacedOut;
    return { spacedOut: this.spacedOut, spacingMs, passCostMs: mean(this.pollCosts) ?? cpuMs };
  }

  /** Time between scheduled passes before jitter: the interval, or longer where polling would exceed its CPU share. */
  spacingMs(): number {
    const share = this.opts.pollCpuShare ?? 1;
    const cost = mean(this.pollCosts);
    if (cost === undefined || share >= 1) return this.opts.intervalMs;
    const longest = Math.max(this.opts.intervalMs, this.opts.maxSpacingMs ?? 60_000);
    // What is left of the share once the full scans have had theirs (a full-scan cycle includes a pass).
    const fullScanMs = Math.max(0, (mean(this.fullScanCosts) ?? 0) - cost);
    const budget = share - fullScanMs / (this.opts.fullScanEveryMs ?? 60_000);
    if (budget <= 0) return longest;
    return Math.min(longest, Math.max(this.opts.intervalMs, cost / budget));
  }

  /** Delay before the next pass after `result`; exposed for tests. */
  nextDelay(result: PassOutcome): number {
    if (result === 'failed') {
      this.failures++;
      return Math.min(this.opts.maxBackoffMs, 1000 * 2 ** (this.failures - 1));
    }
    this.failures = 0;
    const spacing = this.spacingMs();
    return spacing + Math.random() * this.opts.jitter * spacing;
  }

  private async runOne(): Promise<void> {
    let result: PassOutcome = 'failed';
    try {
      result = await this.opts.runPass();
    } finally {
      if (!this.stopped) this.schedule(this.nextDelay(result));
    }
  }

  private schedule(delayMs: number): void {
    this.clearTimer();
    this.timer = setTimeout(() => this.requestNow(), delayMs);
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/**
 * The mean of the last few: one pass with a major GC (or the first ones, while V8 still
 * compiles) stretches the spacing for a few passes only.
 */
function mean(costs: readonly number[]): number | undefined {
  return costs.length === 0 ? undefined : costs.reduce((sum, cost) => sum + cost, 0) / costs.length;
}
