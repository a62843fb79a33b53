/**
 * The spacing log against a real daemon's noisy costs: per-pass CPU wanders
 * (GC, a busy X-Road proxy beside it); measured on a 3,000-file tree, 20-31 ms
 * per pass, and the log said the spacing 17 times in 4 minutes. An hour of
 * such passes, on a simulated clock, must say it rarely.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PassScheduler, type SpacingChange } from '../../src/daemon/scheduler.js';

/** Deterministic noise (a linear congruential generator): the same hour every run. */
function noise(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

describe('pass scheduler, noisy costs', () => {
  it('an hour of 1 s passes costing 12-24 ms (mean 18), a 300 ms full scan a minute: the spacing is said at most twice', () => {
    let elapsedMs = 0;
    const s = new PassScheduler({
      intervalMs: 1000,
      jitter: 0,
      maxBackoffMs: 30_000,
      pollCpuShare: 0.02,
      fullScanEveryMs: 60_000,
      now: () => elapsedMs,
      runPass: async () => 'ok',
    });
    const random = noise(42);
    const said: SpacingChange[] = [];
    let nextFullScanMs = 0;
    while (elapsedMs < 3_600_000) {
      const fullScan = elapsedMs >= nextFullScanMs;
      if (fullScan) nextFullScanMs += 60_000;
      const passMs = 12 + 12 * random();
      const change = s.notePollCost(fullScan ? 300 + passMs : passMs, { fullScan });
      if (change) said.push(change);
      elapsedMs += s.spacingMs();
    }
    assert.ok(said.length <= 2, `the log said the spacing ${said.length} times in an hour `);
  });
});
