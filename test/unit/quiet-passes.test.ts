/** The daemon's policy for quiet passes and its memory of the target, on a fake clock (no processes, no timing). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KnownTarget } from '../../src/local/known-target.js';
import type { TargetScan } from '../../src/local/scan.js';
import { QuietPasses } from '../../src/run/quiet-passes.js';

const ok = { result: 'ok' as const, exitCode: 0 as const, error: undefined, changedPaths: [] as string[] };

describe('QuietPasses', () => {
  it('logs the first quiet pass after a change, then one a minute; changes and failures always', () => {
    let now = 0;
    const q = new QuietPasses({ logEveryMs: 60_000, statusEveryMs: 30_000 }, () => now);
    assert.equal(q.omitLog(false), false, 'a changing pass');
    now += 1000;
    assert.equal(q.omitLog(true), false, 'the first quiet pass after it');
    const omitted: boolean[] = [];
    for (let i = 0; i < 59; i++) omitted.push(((now += 1000), q.omitLog(true)));
    assert.ok(omitted.every(Boolean), 'quiet passes within the minute');
    now += 1000;
    assert.equal(q.omitLog(true), false, 'a minute after the last logged pass');
    now += 1000;
    assert.equal(q.omitLog(true), true);
    assert.equal(q.omitLog(false), false, 'a failure or change is logged at once');
    now += 1000;
    assert.equal(q.omitLog(true), false, 'and so is the quiet pass after it');
  });

  it('rewrites status.json on any change of result, after a changing pass, and every 30 s', () => {
    let now = 0;
    const q = new QuietPasses({ logEveryMs: 60_000, statusEveryMs: 30_000 }, () => now);
    assert.equal(q.omitStatus(ok), false, 'the first pass');
    now += 1000;
    assert.equal(q.omitStatus(ok), true);
    now += 1000;
    assert.equal(q.omitStatus({ ...ok, changedPaths: ['a'] }), false, 'a pass that changed something');
    now += 1000;
    assert.equal(q.omitStatus({ ...ok, result: 'failed', exitCode: 12, error: new Error('down') }), false, 'a failure');
    now += 1000;
    assert.equal(q.omitStatus({ ...ok, result: 'failed', exitCode: 12, error: new Error('down') }), true, 'the same failure again');
    now += 1000;
    assert.equal(q.omitStatus(ok), false, 'the recovery');
    q.reset();
    assert.equal(q.omitStatus(ok), false, 'the first pass after resume');
    assert.equal(q.omitLog(true), false, 'is logged too');
    now += 29_999;
    assert.equal(q.omitStatus(ok), true);
    now += 1;
    assert.equal(q.omitStatus(ok), false, '30 s after the last write');
  });
});

describe('KnownTarget', () => {
  const scan = (tempFiles: string[] = []): TargetScan => ({ tree: new Map(), excluded: new Set(), tempFiles, unrepresentable: [] });

  it('reuses a scan until an event, and never past its age limit', () => {
    let now = 0;
    const k = new KnownTarget(60_000, () => now);
    assert.equal(k.reusable(), undefined, 'nothing scanned yet');
    const first = scan();
    k.remember(first, k.startScan());
    assert.equal(k.reusable(), first);
    k.forget();
    assert.equal(k.reusable(), undefined, 'after a watcher event');
    k.remember(first, k.startScan());
    now += 59_999;
    assert.equal(k.reusable(), first);
    now += 1;
    assert.equal(k.reusable(), undefined, 'a full scan at least every 60 s');
  });

  it('does not keep a scan that an event overtook, or one that found temp files', () => {
    const k = new KnownTarget();
    const token = k.startScan();
    k.forget(); // an edit while the scan ran
    k.remember(scan(), token);
    assert.equal(k.reusable(), undefined);
    k.remember(scan(['.xroad-sync.0123456789ab.tmp']), k.startScan());
    assert.equal(k.reusable(), undefined);
  });
});
