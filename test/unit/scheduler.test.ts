/**
 * The daemon's scheduler on its own: backoff after failures, jitter bounds,
 * one pass at a time with a request during a pass served once afterwards,
 * and stop() waiting for the pass in flight.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PassScheduler, type SpacingChange } from '../../src/daemon/scheduler.js';

type Outcome = 'ok' | 'failed' | 'skipped';

function scheduler(runPass: () => Promise<Outcome> = async () => 'ok', intervalMs = 60_000): PassScheduler {
  return new PassScheduler({ intervalMs, jitter: 0.1, maxBackoffMs: 30_000, runPass });
}

/** A pass the test finishes by hand. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('pass scheduler', () => {
  it('backs off 1, 2, 4, 8, 16 s after consecutive failures, capped, and resets after a success', () => {
    const s = scheduler();
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 7].map(() => s.nextDelay('failed')),
      [1000, 2000, 4000, 8000, 16000, 30000, 30000],
    );
    const afterOk = s.nextDelay('ok');
    assert.ok(afterOk >= 60_000 && afterOk <= 66_000, `interval plus at most 10 % jitter, got ${afterOk}`);
    assert.equal(s.nextDelay('failed'), 1000, 'a success resets the backoff');
  });

  it('keeps every jittered delay within interval .. interval × (1 + jitter)', () => {
    const s = scheduler();
    for (let i = 0; i < 1000; i++) {
      const d = s.nextDelay(i % 2 ? 'ok' : 'skipped');
      assert.ok(d >= 60_000 && d <= 66_000, `delay ${d}`);
    }
  });

  it('spaces passes so that polling an unchanged master keeps to its CPU share, up to a minute', () => {
    const s = new PassScheduler({ intervalMs: 1000, jitter: 0.1, maxBackoffMs: 30_000, pollCpuShare: 0.02, runPass: async () => 'ok' });
    assert.equal(s.spacingMs(), 1000, 'no pass measured yet: the interval');
    s.notePollCost(5); // a realistic /etc/xroad: 5 ms is 0.5 % of a 1 s interval
    assert.equal(s.spacingMs(), 1000);
    for (let i = 0; i < 40; i++) s.notePollCost(100); // a 50,000-entry tree
    assert.ok(Math.abs(s.spacingMs() - 5000) < 10, `100 ms per pass at 2 %: every 5 s, got ${s.spacingMs()}`);
    const d = s.nextDelay('ok');
    assert.ok(d >= s.spacingMs() && d <= s.spacingMs() * 1.1, `jitter applies to the spacing, got ${d}`);
    s.notePollCost(700, { fullScan: true }); // a pass and the minute's full scan: 600 ms, 1 % of a core whatever the spacing
    assert.ok(Math.abs(s.spacingMs() - 10_000) < 10, `the other 1 % for the passes: every 10 s, got ${s.spacingMs()}`);
    for (let i = 0; i < 5; i++) s.notePollCost(5); // cheap again: back to the interval within five passes
    assert.equal(s.spacingMs(), 1000);
    for (let i = 0; i < 40; i++) s.notePollCost(5000);
    assert.equal(s.spacingMs(), 60_000, "never longer than the guide's minute");
    assert.equal(s.nextDelay('failed'), 1000, 'failures still back off from 1 s');
  });

  it('says a change of spacing once, not every pass, while the cost hovers around the share', () => {
    const s = new PassScheduler({ intervalMs: 1000, jitter: 0.1, maxBackoffMs: 30_000, pollCpuShare: 0.02, runPass: async () => 'ok' });
    // 24 ms is 1.2 s at 2 %: a tree whose passes cost 23 or 25 ms (GC, the master's load) sits on the line.
    const said: boolean[] = [];
    for (let i = 0; i < 200; i++) {
      const change = s.notePollCost(i % 2 === 0 ? 23 : 25);
      if (change) said.push(change.spacedOut);
    }
    assert.ok(said.length <= 1, `log lines about the spacing over 200 passes: ${said.length}`);
    const after: boolean[] = [];
    for (const cost of [5, 5, 5, 5, 5, 100, 100, 100, 100, 100]) {
      const change = s.notePollCost(cost);
      if (change) after.push(change.spacedOut);
    }
    assert.deepEqual(after, said[0] === true ? [false, true] : [true], 'a real fall and rise are still said');
    assert.equal(s.spacingMs(), 5000);
  });

  it('a full scan once a minute does not swing the spacing: an hour of 1 s passes on a 3,000-entry tree says nothing', () => {
    const s = new PassScheduler({ intervalMs: 1000, jitter: 0, maxBackoffMs: 30_000, pollCpuShare: 0.02, fullScanEveryMs: 60_000, runPass: async () => 'ok' });
    const said: SpacingChange[] = [];
    let elapsedMs = 0;
    let nextFullScanMs = 0;
    // Passes 15 ms each (1.5 % of a core at 1 s); the minute's full scan 300 ms (0.5 %): 2 % together.
    while (elapsedMs < 3_600_000) {
      const fullScan = elapsedMs >= nextFullScanMs;
      if (fullScan) nextFullScanMs += 60_000;
      const change = s.notePollCost(fullScan ? 300 : 15, { fullScan });
      if (change) said.push(change);
      elapsedMs += s.spacingMs();
    }
    assert.deepEqual(said, [], 'no line about the spacing');
    assert.equal(s.spacingMs(), 1000);
  });

  it('full scans that alone exceed the share space the passes as far as they go', () => {
    const s = new PassScheduler({ intervalMs: 1000, jitter: 0, maxBackoffMs: 30_000, pollCpuShare: 0.02, fullScanEveryMs: 60_000, runPass: async () => 'ok' });
    s.notePollCost(5);
    s.notePollCost(1500, { fullScan: true }); // 2.5 % of a core in full scans alone
    assert.equal(s.spacingMs(), 60_000);
    const change = s.notePollCost(5);
    assert.equal(change, undefined, 'said once, when the full scan was noted');
  });

  it('keeps to --interval when the CPU share is unlimited', () => {
    const s = new PassScheduler({ intervalMs: 1000, jitter: 0, maxBackoffMs: 30_000, pollCpuShare: 1, runPass: async () => 'ok' });
    for (let i = 0; i < 10; i++) s.notePollCost(500);
    assert.equal(s.nextDelay('ok'), 1000);
  });

  it('never runs two passes at once; requests during a pass are served by one pass after it', async () => {
    let running = 0;
    let maxRunning = 0;
    let passes = 0;
    const gates: Array<ReturnType<typeof gate>> = [];
    const s = scheduler(async () => {
      running++;
      passes++;
      maxRunning = Math.max(maxRunning, running);
      const g = gate();
      gates.push(g);
      await g.promise;
      running--;
      return 'ok';
    });
    s.start();
    await tick();
    assert.equal(passes, 1);
    s.requestNow();
    s.requestNow();
    s.requestNow();
    await tick();
    assert.equal(passes, 1, 'requests during a pass wait for it');
    gates[0]!.open();
    for (let i = 0; i < 20 && passes < 2; i++) await tick();
    assert.equal(passes, 2, 'three requests during a pass become one pass after it');
    gates[1]!.open();
    for (let i = 0; i < 20; i++) await tick();
    assert.equal(passes, 2, 'and no more until the interval');
    assert.equal(maxRunning, 1);
    await s.stop();
  });

  it('stop() waits for the pass in flight and schedules nothing after it', async () => {
    let passes = 0;
    const g = gate();
    const s = scheduler(async () => {
      passes++;
      await g.promise;
      return 'failed';
    }, 1);
    s.start();
    await tick();
    let stopped = false;
    const stopping = s.stop().then(() => (stopped = true));
    await tick();
    assert.equal(stopped, false, 'stop() must wait for the running pass');
    g.open();
    await stopping;
    s.requestNow();
    await new Promise((resolve) => setTimeout(resolve, 1100)); // past the 1 s backoff a failure would schedule
    assert.equal(passes, 1);
  });
});
