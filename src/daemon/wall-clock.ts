/**
 * Notices the wall clock being stepped (NTP correcting a bad clock, an
 * operator's `date -s`, a VM resumed from a snapshot). The daemon's
 * intervals run on the monotonic clock and are not affected; what is
 * affected is the wall time status.json shows to monitoring: after a step
 * back the last record is "in the future" and `status --check` says
 * CRITICAL, after a step forward it looks older than it is. So on a step the
 * daemon records its next pass at once instead of within 30 s.
 */

/** Smaller differences are drift or slewing, not a step (matches `status --check`'s slack). */
const STEP_THRESHOLD_MS = 2_000;

export class WallClockSteps {
  private lastWall: number;
  private lastMonotonic: number;

  constructor(
    private readonly wall: () => number = Date.now,
    private readonly monotonic: () => number = () => performance.now(),
  ) {
    this.lastWall = wall();
    this.lastMonotonic = monotonic();
  }

  /** The step (ms, negative: back) since the last call, or 0 when the two clocks moved alike. */
  step(): number {
    const wall = this.wall();
    const monotonic = this.monotonic();
    const drift = wall - this.lastWall - (monotonic - this.lastMonotonic);
    this.lastWall = wall;
    this.lastMonotonic = monotonic;
    return Math.abs(drift) >= STEP_THRESHOLD_MS ? Math.round(drift) : 0;
  }
}
