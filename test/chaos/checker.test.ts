/**
 * The chaos checker checks: deliberately broken steps (a target changed
 * behind a pause, an excluded file overwritten, a "pass" that exits 0 without
 * mirroring the master) must each be flagged with the right invariant, and a
 * failing sequence must shrink to the steps that matter. Runs against real
 * sshd like the simulation itself.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { sshdAvailable, suiteMaster, type TestMaster } from '../helpers/sshd.js';
import { generateSequence, parseDisabled, runSequence, type SimOptions, type Step, shrink } from './simulation.js';
import { STEP_KINDS, syncStep } from './steps.js';

const T = { timeout: 120_000, skip: !sshdAvailable() && 'needs /usr/sbin/sshd' };
const OPTS: SimOptions = { convergeMs: 8_000, fullScanMs: 0, disabled: new Map() };

// Broken steps, known only to this suite: each does behind the model's back what the program must never do.
STEP_KINDS['broken-write-target'] = {
  weight: 0,
  describe: () => 'BROKEN: write into the target as a pass would, taken by the model for a local edit',
  run: async (w) => {
    await fs.writeFile(path.join(w.ws.target, 'serverconf.xml'), 'written behind the checker\n');
    w.model.localEditPending = true;
    return [];
  },
};
STEP_KINDS['broken-unexplained-target'] = {
  weight: 0,
  describe: () => 'BROKEN: leave the target in a state no master had, with nothing to explain it',
  run: async (w) => (await fs.writeFile(path.join(w.ws.target, 'serverconf.xml'), 'half-applied\n'), []),
};
STEP_KINDS['broken-overwrite-excluded'] = {
  weight: 0,
  describe: () => 'BROKEN: overwrite an excluded slave-local file',
  run: async (w) => (await fs.writeFile(path.join(w.ws.target, 'db.properties'), 'db.password=master\n'), []),
};
STEP_KINDS['broken-dry-run-as-pass'] = {
  weight: 0,
  describe: () => 'BROKEN: a master change, then a dry run judged as a pass',
  run: async (w) => {
    await fs.writeFile(path.join(w.ws.source, 'serverconf.xml'), '<conf changed="yes"/>\n');
    await w.model.recordMaster(w.ws.source);
    return syncStep(w, ['--dry-run'], 'sync --dry-run');
  },
};

const step = (kind: string, arg = 1): Step => ({ kind, arg });

describe('chaos checker', () => {
  let master: TestMaster;
  suiteMaster((m) => (master = m));

  test('a target changed after pause returned 0 is an I1 violation; the same write unpaused is not', T, async () => {
    const paused = await runSequence(master, [step('pause'), step('broken-write-target')], OPTS);
    assert.equal(paused.failedAt, 1, paused.transcript.join('\n'));
    assert.deepEqual(
      paused.violations.map((x) => x.check),
      ['I1.paused-changed'],
    );

    const unpaused = await runSequence(master, [step('broken-write-target')], OPTS);
    assert.equal(unpaused.failedAt, undefined, unpaused.transcript.join('\n'));
  });

  test('a target in no master state, without a journal or a local edit to explain it, is an I4 violation', T, async () => {
    const r = await runSequence(master, [step('status'), step('broken-unexplained-target')], OPTS);
    assert.equal(r.failedAt, 1, r.transcript.join('\n'));
    assert.deepEqual(
      r.violations.map((x) => x.check),
      ['I4.unreported-half'],
    );
  });

  test('an excluded slave-local file overwritten is an I2 violation', T, async () => {
    const r = await runSequence(master, [step('status'), step('broken-overwrite-excluded')], OPTS);
    assert.equal(r.failedAt, 1);
    assert.equal(r.violations[0]?.check, 'I2.excluded');
  });

  test('an exit 0 that leaves the target unlike every master state is an I3 violation', T, async () => {
    const r = await runSequence(master, [step('broken-dry-run-as-pass')], OPTS);
    assert.equal(r.failedAt, 0, r.transcript.join('\n'));
    assert.equal(r.violations[0]?.check, 'I3.exit0-state');
  });

  test('a disabled check is set aside with its reason, never silently', T, async () => {
    const r = await runSequence(master, [step('pause'), step('broken-write-target')], {
      ...OPTS,
      disabled: parseDisabled('I1.paused-changed=known in this test'),
    });
    assert.equal(r.failedAt, undefined);
    assert.equal(r.suppressed[0]?.check, 'I1.paused-changed');
    assert.match(r.transcript.join('\n'), /disabled I1\.paused-changed: known in this test/);
  });

  test('a failing sequence shrinks to the steps that matter', T, async () => {
    const steps = [step('status'), step('pause'), step('status-check'), step('broken-write-target'), step('sync')];
    const first = await runSequence(master, steps, OPTS);
    assert.equal(first.failedAt, 3);
    const shrunk = await shrink(master, first, OPTS);
    assert.deepEqual(
      shrunk.steps.map((s) => s.kind),
      ['pause', 'broken-write-target'],
    );
  });
});

test('a seed generates the same sequence every time, without the disabled kinds', () => {
  assert.deepEqual(generateSequence(7, 30, new Map()), generateSequence(7, 30, new Map()));
  assert.notDeepEqual(generateSequence(7, 30, new Map()), generateSequence(8, 30, new Map()));
  const without = generateSequence(7, 200, parseDisabled('pause=x;sync=y'));
  assert.ok(without.every((s) => s.kind !== 'pause' && s.kind !== 'sync'));
  assert.ok(
    without.every((s) => !s.kind.startsWith('broken-')),
    'weight-0 kinds are never drawn',
  );
  assert.deepEqual(
    [...parseDisabled(' a = why ; b=because=so ;')],
    [
      ['a', 'why'],
      ['b', 'because=so'],
    ],
  );
});
