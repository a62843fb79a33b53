/**
 * kill -9 anywhere: the sync CLI (real child process, real OpenSSH master)
 * is SIGKILLed at named points of the pass (XROAD_SYNC_TEST_HOOK=kill@point:n,
 * spread over connect, scan, every n-th staged file and every commit step),
 * and after random delays on a larger tree. Meanwhile a reader sweeps every
 * file of the target: each read is the old or the new version, never a mix.
 * The next pass (un-hooked) must converge: target == master minus excludes,
 * no temp files, no crash journal. The explicit journal round trip (kill at
 * rename:2, journal on disk, "completed the commit interrupted" logged) runs
 * through the CLI too.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { PassPoint } from '../../../src/pass/types.js';
import type { WarmSessionProvider } from '../../../src/remote/provider.js';
import { describeRun, runSync, type SyncRun, startHeldAt, startSync } from '../../helpers/run-sync.js';
import { startMaster, type TestMaster } from '../../helpers/sshd.js';
import { ConcurrentChecker } from './checker.js';
import { assertConverged, copyTree, expectedTree, inProcessPasses, journalOf, prng, Scratch, type Snapshot, seedFromEnv, snapshot } from './helpers.js';
import { largePair, newTree, oldTree, writeSpec } from './trees.js';

const T = { timeout: 170_000 };
/** A pass that does not die within this was not killed: the point was never reached. */
const CHILD_TIMEOUT_MS = 20_000;
/** Cases run this many at a time (each with its own target, state dir and reader): the suite's wall time on 2 cores. */
const LANES = Math.max(1, Number(process.env.XROAD_SYNC_KILL_LANES ?? 2));
const COMMIT_STEPS = new Set(['replace-remove', 'mkdir', 'rename', 'attrs', 'delete', 'dir-attrs', 'fsync']);

interface Layout {
  /** The master's tree (the new version). */
  readonly source: string;
  /** A target synced from the old version: each case starts from a copy. */
  readonly oldTarget: string;
  readonly oldSnap: Snapshot;
  readonly newSnap: Snapshot;
  /** Warm sessions for the converging passes, one per lane. */
  readonly providers: WarmSessionProvider[];
}

/** `work` over `items`, `lanes` at a time; lane numbers start at 0. */
async function inLanes<T>(items: readonly T[], lanes: number, work: (item: T, lane: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(lanes, items.length) }, async (_, lane) => {
      while (next < items.length) await work(items[next++]!, lane);
    }),
  );
}

const totals = { hookPoints: 0, randomKills: 0, reads: 0, sweeps: 0, partial: 0, journals: 0, recoveries: 0 };

describe('kill -9 of the sync process', () => {
  let master: TestMaster;
  const scratch = new Scratch();
  const providers: WarmSessionProvider[] = [];
  let caseNo = 0;

  before(async () => {
    master = await startMaster();
  });
  after(async () => {
    await Promise.all(providers.map((p) => p.close()));
    await master?.stop();
    await scratch.cleanup();
    console.log(
      `faults/kill: kill points tried ${totals.hookPoints + totals.randomKills} (${totals.hookPoints} hook points, ${totals.randomKills} random-timing), ` +
        `concurrent reads ${totals.reads} in ${totals.sweeps} sweeps, partial reads seen ${totals.partial}, ` +
        `journals left by kills ${totals.journals}, rolled forward ${totals.recoveries}; ` +
        `test process CPU ${((process.cpuUsage().user + process.cpuUsage().system) / 1e6).toFixed(1)} s`,
    );
  });

  /** Master = `newer`; a target synced from `older`, kept as the template every case copies. */
  async function layout(older: Parameters<typeof writeSpec>[1], newer: Parameters<typeof writeSpec>[1]): Promise<Layout> {
    const ws = await scratch.workspace('xroad-sync-kill-');
    const oldSource = path.join(ws.root, 'old-src');
    await mkdir(oldSource);
    await writeSpec(oldSource, older);
    await writeSpec(ws.source, newer);
    const seed = inProcessPasses(master, { source: oldSource, target: ws.target, state: ws.state });
    try {
      const r = await seed.run();
      assert.equal(r.exitCode, 0, `seeding the old target: ${seed.notices.join('; ')}`);
    } finally {
      await seed.close();
    }
    await assertConverged({ source: oldSource, target: ws.target, state: ws.state }, 'old target');
    const lanes = Array.from({ length: LANES }, () => inProcessPasses(master, ws).provider);
    providers.push(...lanes);
    return { source: ws.source, oldTarget: ws.target, oldSnap: await snapshot(ws.target), newSnap: await expectedTree(ws.source), providers: lanes };
  }

  /** A fresh copy of the old target with its own state dir. */
  /** A pass SIGKILLed at its commit's 2nd rename: the target half-applied, its crash journal left in the state dir. */
  async function killedMidCommit(c: { source: string; target: string; state: string }): Promise<void> {
    const killed = await runSync({
      master,
      source: c.source,
      target: c.target,
      stateDir: c.state,
      env: { XROAD_SYNC_TEST_HOOK: 'kill@rename:2' },
      timeoutMs: CHILD_TIMEOUT_MS,
    });
    assert.equal(killed.signal, 'SIGKILL', describeRun(killed));
    assert.ok(existsSync(journalOf(c.state)), 'no commit-journal.json after a kill mid-commit');
  }

  async function freshCase(l: Layout): Promise<{ source: string; target: string; state: string }> {
    const dir = path.join(path.dirname(l.oldTarget), `case-${++caseNo}`);
    const c = { source: l.source, target: path.join(dir, 'dst'), state: path.join(dir, 'state') };
    await mkdir(c.target, { recursive: true });
    await mkdir(c.state);
    copyTree(l.oldTarget, c.target);
    return c;
  }

  /** How often a full un-hooked pass from old to new reaches each point. */
  async function countPoints(l: Layout): Promise<Map<PassPoint, number>> {
    const c = await freshCase(l);
    const counts = new Map<PassPoint, number>();
    const passes = inProcessPasses(master, c);
    try {
      const r = await passes.run({ at: (p) => void counts.set(p, (counts.get(p) ?? 0) + 1) });
      assert.equal(r.exitCode, 0, passes.notices.join('; '));
    } finally {
      await passes.close();
    }
    await assertConverged(c, 'counting pass');
    return counts;
  }

  /**
   * One killed pass under a concurrent reader, then the converging pass.
   * `kill` is either a hook spec or a delay after which the test SIGKILLs it.
   * Returns what went wrong (empty when nothing did), so one run reports every bad point.
   */
  async function killCase(l: Layout, kill: { hook: string } | { afterMs: number }, lane = 0): Promise<{ run: SyncRun; journal: boolean; problems: string[] }> {
    const c = await freshCase(l);
    const checker = new ConcurrentChecker(c.target, l.oldSnap, l.newSnap);
    checker.sweep(); // the old target itself passes the check
    assert.equal(checker.report.partial.length, 0, `checker disagrees with the untouched old target: ${JSON.stringify(checker.report.partial[0])}`);
    const started = startSync({
      master,
      source: c.source,
      target: c.target,
      stateDir: c.state,
      timeoutMs: CHILD_TIMEOUT_MS,
      env: 'hook' in kill ? { XROAD_SYNC_TEST_HOOK: `kill@${kill.hook}` } : {},
    });
    checker.start(CHILD_TIMEOUT_MS);
    const timer = 'afterMs' in kill ? setTimeout(() => started.child.kill('SIGKILL'), kill.afterMs) : undefined;
    const run = await started.done;
    clearTimeout(timer);
    await checker.stop();
    checker.sweep(); // the state the kill left
    const journal = existsSync(journalOf(c.state));
    const what = 'hook' in kill ? `kill@${kill.hook}` : `SIGKILL after ${kill.afterMs} ms`;
    const problems: string[] = [];
    totals.reads += checker.report.reads;
    totals.sweeps += checker.report.sweeps;
    totals.partial += checker.report.partial.length;
    for (const bad of checker.report.partial.slice(0, 3)) {
      problems.push(`${what}: read ${bad.path} as ${bad.seen}, neither old nor new (${bad.allowed.join(' | ')})`);
    }

    const passes = inProcessPasses(master, c, {}, l.providers[lane]);
    try {
      const r = await passes.run();
      if (r.exitCode !== 0) problems.push(`${what}: the next pass failed (exit ${r.exitCode}): ${passes.notices.join('; ')}`);
      if (journal) {
        totals.journals++;
        const rolled = passes.notices.some((n) => n.startsWith('completed the commit interrupted'));
        if (rolled) totals.recoveries++;
        else problems.push(`${what}: journal not rolled forward: ${passes.notices.filter((n) => !n.startsWith('removed a temp')).join('; ')}`);
      }
    } finally {
      await passes.close();
    }
    await assertConverged(c, `after ${what}`).catch((err: Error) => problems.push(err.message.split('\n')[0]!));
    return { run, journal, problems };
  }

  it('at >= 50 hook points over connect, scan, stage and every commit step: no mixed file, the next pass converges', T, async () => {
    const l = await layout(oldTree(), newTree());
    const counts = await countPoints(l);
    const spread = (n: number, max: number): number[] => {
      if (n <= max) return Array.from({ length: n }, (_, i) => i + 1);
      return [...new Set(Array.from({ length: max }, (_, i) => 1 + Math.round((i * (n - 1)) / (max - 1))))];
    };
    const perStep: Record<string, number> = {
      connected: 1,
      scanned: 1,
      planned: 1,
      staged: 1,
      committed: 1,
      'file-staged': 9,
      'replace-remove': 4,
      mkdir: 4,
      rename: 12,
      attrs: 4,
      delete: 6,
      'dir-attrs': 5,
      fsync: 3,
    };
    const points: string[] = [];
    for (const [point, max] of Object.entries(perStep)) {
      const n = counts.get(point as PassPoint) ?? 0;
      assert.ok(n > 0, `the old→new pass never reaches ${point}: ${JSON.stringify([...counts])}`);
      for (const k of spread(n, max)) points.push(`${point}:${k}`);
    }
    assert.ok(points.length >= 50, `only ${points.length} kill points: ${JSON.stringify([...counts])}`);
    const problems: string[] = [];
    await inLanes(points, LANES, async (hook, lane) => {
      const r = await killCase(l, { hook }, lane);
      totals.hookPoints++;
      problems.push(...r.problems);
      if (r.run.signal !== 'SIGKILL') problems.push(`kill@${hook} was not reached: ${describeRun(r.run).split('\n')[0]}`);
      else if (COMMIT_STEPS.has(hook.split(':')[0]!) && !r.journal) problems.push(`kill@${hook}: a kill mid-commit left no crash journal`);
    });
    assert.deepEqual(problems, [], `${problems.length} problems over ${points.length} kill points`);
  });

  it('at random moments on a larger tree: no mixed file, the next pass converges', T, async () => {
    const seed = seedFromEnv('XROAD_SYNC_KILL_SEED');
    const pair = largePair(seed);
    const l = await layout(pair.old, pair.new);
    // How long an un-killed pass takes here, so the delays land inside it.
    const c = await freshCase(l);
    const full = await runSync({ master, source: c.source, target: c.target, stateDir: c.state });
    assert.equal(full.status, 0, describeRun(full));
    await assertConverged(c, 'un-killed pass');
    const rnd = prng(seed);
    const kills = Number(process.env.XROAD_SYNC_RANDOM_KILLS ?? 8);
    let killed = 0;
    const problems: string[] = [];
    const delays = Array.from({ length: kills }, () => Math.round(full.elapsedMs * (0.15 + 0.9 * rnd())));
    await inLanes(delays, LANES, async (afterMs, lane) => {
      const r = await killCase(l, { afterMs }, lane);
      totals.randomKills++;
      problems.push(...r.problems);
      if (r.run.signal === 'SIGKILL') killed++;
      else if (r.run.status !== 0) problems.push(`SIGKILL after ${afterMs} ms: a pass that was not killed must succeed: ${describeRun(r.run)}`);
    });
    console.log(`faults/kill: random-timing seed ${seed}, full pass ${full.elapsedMs} ms, ${killed}/${kills} kills landed before the pass ended`);
    assert.deepEqual(problems, [], `seed ${seed} (replay with XROAD_SYNC_KILL_SEED=${seed})`);
  });

  it('crash journal: a kill at rename:2 leaves commit-journal.json; the next CLI pass logs the roll-forward and converges', T, async () => {
    const l = await layout(oldTree(), newTree());
    const c = await freshCase(l);
    await killedMidCommit(c);
    const changed = [...l.newSnap.keys()].filter((p) => JSON.stringify(l.newSnap.get(p)) !== JSON.stringify(l.oldSnap.get(p)));
    assert.ok(changed.length >= 5, `only ${changed.length} changed paths`);
    const next = await runSync({ master, source: c.source, target: c.target, stateDir: c.state });
    assert.equal(next.status, 0, describeRun(next));
    assert.match(next.stderr + next.log, /completed the commit interrupted/, describeRun(next));
    await assertConverged(c, 'after the journal roll-forward');
    totals.hookPoints++;
    totals.journals++;
    totals.recoveries++;
  });

  it(
    'a pass that rolls a crash journal forward and is then abandoned by a pause still reports what it made live (--on-change gets those paths)',
    T,
    async () => {
      const l = await layout(oldTree(), newTree());
      const c = await freshCase(l);
      await killedMidCommit(c);
      const journaled = (JSON.parse(await readFile(journalOf(c.state), 'utf8')) as { changes: Array<{ path: string }> }).changes.map((x) => x.path);
      assert.ok(journaled.length > 0, 'the journal names its changes');
      // Something for the next pass to stage after the roll-forward, so it reaches `staged` and meets the flag there.
      await writeFile(path.join(c.source, 'after-the-kill.ini'), 'x=1\n');
      const hookOut = path.join(c.state, 'on-change.out');
      const next = await startHeldAt(
        { master, source: c.source, target: c.target, stateDir: c.state, args: ['--on-change', `cat > ${hookOut}`], timeoutMs: 60_000 },
        'staged',
      );
      await writeFile(path.join(c.state, 'flag'), '');
      const run = await next.release();
      assert.equal(run.status, 0, describeRun(run));
      assert.match(run.stderr + run.log, /completed the commit interrupted/, describeRun(run));
      assert.match(run.stderr + run.log, /abandoned before its commit/, describeRun(run));
      const reported = existsSync(hookOut) ? (await readFile(hookOut, 'utf8')).split('\0').filter(Boolean) : [];
      assert.deepEqual(
        journaled.filter((p) => !reported.includes(p)),
        [],
        `--on-change did not get the paths the roll-forward made live\n${describeRun(run)}`,
      );
    },
  );
});
