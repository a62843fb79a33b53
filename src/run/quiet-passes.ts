/**
 * What a daemon's no-change pass leaves out. At a 1 s interval, rsync's two
 * lines per run ("receiving file list", "sent … total size") would be
 * 172,800 lines a day in slave-sync.log, and status.json would be rewritten
 * 86,400 times. The policy:
 *
 * - slave-sync.log: a plain pass (ok, nothing changed, no notice) writes its
 *   two lines only when the pass before it was not plain (so a recovery or
 *   the first quiet pass after a change shows at once) or when the daemon
 *   has written nothing there for `logEveryMs` (60 s: the guide's timer
 *   wrote one such pair a minute, which is what log-age monitoring expects).
 *   Every change, notice, skip and error is logged at once, as before.
 * - status.json: rewritten when the result (outcome, exit code, error)
 *   differs from the one the daemon last recorded, when the pass changed
 *   something, and otherwise at least every `statusEveryMs` (30 s), so
 *   lastSuccessAt lags a running daemon by at most 30 s (`status --check
 *   --max-age` defaults to 300 s).
 * - After the flag file goes (`resume`), the next pass is logged and recorded.
 *
 * - The JSON `pass` record on stdout (journald) of a pass left out of the log
 *   is emitted at level debug (XROAD_SYNC_LOG_LEVEL=debug shows it).
 *
 * Both periods run on the monotonic clock: a wall clock stepped back must not
 * silence the log and status.json for the length of the step.
 */
import { describeError } from '../errors.js';
import type { PassResult } from '../pass/types.js';

export class QuietPasses {
  private lastLoggedAt = -Infinity;
  private previousPlain = false;
  private lastRecordedAt = -Infinity;
  private lastRecorded: string | undefined;

  constructor(
    private readonly opts: { readonly logEveryMs: number; readonly statusEveryMs: number } = { logEveryMs: 60_000, statusEveryMs: 30_000 },
    private readonly now: () => number = () => performance.now(),
  ) {}

  /**
   * The next pass is logged and recorded whatever it finds: after `resume` the
   * operator (and `resume`, which waits for the daemon's pass in status.json) must see it.
   */
  reset(): void {
    this.previousPlain = false;
    this.lastRecorded = undefined;
  }

  /** Whether this pass's log lines are left out; `plain`: ok, nothing changed, nothing noticed. */
  omitLog(plain: boolean): boolean {
    const now = this.now();
    const omit = plain && this.previousPlain && now - this.lastLoggedAt < this.opts.logEveryMs;
    this.previousPlain = plain;
    if (!omit) this.lastLoggedAt = now;
    return omit;
  }

  /** Whether recording this pass in status.json can wait. */
  omitStatus(result: Pick<PassResult, 'result' | 'exitCode' | 'error' | 'changedPaths'>): boolean {
    const now = this.now();
    const key = `${result.result} ${result.exitCode} ${result.error === undefined ? '' : describeError(result.error)}`;
    const omit = result.changedPaths.length === 0 && key === this.lastRecorded && now - this.lastRecordedAt < this.opts.statusEveryMs;
    if (!omit) {
      this.lastRecorded = key;
      this.lastRecordedAt = now;
    }
    return omit;
  }
}
