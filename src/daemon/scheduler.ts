/**
 * When the daemon runs a pass: every interval (with a little jitter so a
 * cluster's slaves do not hit the master in the same second), at once when
 * asked (flag removed, local change seen), later after failures (capped
 * exponential backoff). Never two passes at once: a request during a pass
 * is remembered and served right after it.
 */
import type { PassOutcome } from '../pass/outcome.js';

export interface SchedulerOptions {
  readonly intervalMs: number;
  /** Up to this fraction of the interval is added at random to each wait. */
  readonly jitter: number;
  /** Backoff after consecutive failures: 1 s, 2 s, 4 s, … capped at this. */
  readonly maxBackoffMs: number;
  readonly runPass: () => Promise<PassOutcome>;
}

export class PassScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private failures = 0;
  private stopped = false;

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

  /** Delay before the next pass after `result`; exposed for tests. */
  nextDelay(result: PassOutcome): number {
    if (result === 'failed') {
      this.failures++;
      return Math.min(this.opts.maxBackoffMs, 1000 * 2 ** (this.failures - 1));
    }
    this.failures = 0;
    return this.opts.intervalMs + Math.random() * this.opts.jitter * this.opts.intervalMs;
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
