/**
 * Races between processes: two passes on one target at once (the second
 * waits for the first and both run in turn; with a short --wait the loser
 * gets exit 75 and says who holds the lock; never a corrupt target), and
 * `xroad-sync pause` while a pass is already past its flag check (pause waits;
 * that pass is abandoned before its commit; the next one is skipped with exit
 * 0 and changes nothing; after resume the target converges).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { runCli } from '../../helpers/cli.js';
import { describeRun, heldAt, runSync, type SyncRun, startSync } from '../../helpers/run-sync.js';
import { type TestMaster, writeTree } from '../../helpers/sshd.js';
import { assertConverged, differences, faultSuite, snapshot, type Workspace } from './helpers.js';
import { T0 } from './trees.js';

const T = { timeout: 60_000 };
const LOCK_MESSAGE = /another xroad-sync pass \(pid (\d+)\) holds/;

describe('races between processes', () => {
  let master!: TestMaster;
  const { scratch, results: summary } = faultSuite('faults/race', (m) => (master = m));

  async function withTree(version: number, ws?: Workspace): Promise<Workspace> {
    ws ??= await scratch.workspace('xroad-sync-race-');
    const spec: Record<string, { content: string; mtime: number }> = {
      'signer/keyconf.xml': { content: `<keyConf v="${version}"/>\n`, mtime: T0 + version },
    };
    for (let i = 0; i < 40; i++) spec[`conf.d/f${i}.ini`] = { content: `v${version} ${i}\n`.repeat(20 + version), mtime: T0 + version * 100 + i };
    await writeTree(ws.source, spec);
    return ws;
  }

  const sync = (ws: Workspace, env: NodeJS.ProcessEnv = {}) =>
    startSync({ master, source: ws.source, target: ws.target, stateDir: ws.state, env, timeoutMs: 45_000 });

  function assertLoser(run: SyncRun, winnerPid: number | undefined): void {
    assert.equal(run.status, 75, describeRun(run));
    const m = LOCK_MESSAGE.exec(run.stderr);
    assert.ok(m, `the loser does not say why:\n${describeRun(run)}`);
    if (winnerPid !== undefined) assert.equal(Number(m[1]), winnerPid, 'the loser names the wrong holder');
  }

  it('two passes started together: they run in turn (the second waits for the lock); no corruption', T, async () => {
    const ws = await withTree(1);
    const outcomes: string[] = [];
    for (let round = 1; round <= 3; round++) {
      if (round > 1) await withTree(round, ws);
      const [a, b] = [sync(ws), sync(ws)];
      const runs = await Promise.all([a.done, b.done]);
      const pids = [a.child.pid, b.child.pid];
      const codes = runs.map((r) => r.status);
      assert.deepEqual(codes, [0, 0], `both must succeed, one after the other (pids ${pids.join(', ')})\n${runs.map(describeRun).join('\n')}`);
      outcomes.push('both ran in turn');
      await assertConverged(ws, `round ${round}`);
      assert.equal(existsSync(path.join(ws.state, 'sync.lock')), false, 'lock left behind');
    }
    summary.push(`simultaneous starts: ${outcomes.join(', ')}`);
  });

  it(
    'a pass started with --wait 1 while another holds the lock (paused after its scan) exits 75 after the wait; the holder then commits whole',
    T,
    async () => {
      const ws = await withTree(1);
      // Paused until released (SIGUSR2) once the loser is done: however slow the machine, the loser meets a held lock.
      const holder = sync(ws, { XROAD_SYNC_TEST_HOOK: 'pause@scanned', XROAD_SYNC_TEST_PAUSE_MS: '60000' });
      await heldAt(holder, 'scanned', 20_000);
      const before = await snapshot(ws.target);
      const loser = await runSync({ master, source: ws.source, target: ws.target, stateDir: ws.state, timeoutMs: 20_000, args: ['--wait', '1'] });
      assertLoser(loser, holder.child.pid);
      assert.ok(loser.elapsedMs < 10_000, `the loser waited ${loser.elapsedMs} ms`);
      assert.deepEqual(differences(before, await snapshot(ws.target)), [], 'the loser touched the target');
      holder.child.kill('SIGUSR2');
      const won = await holder.done;
      assert.equal(won.status, 0, describeRun(won));
      await assertConverged(ws, 'after the holder');
      summary.push(`held lock: loser exit ${loser.status} in ${loser.elapsedMs} ms`);
    },
  );

  it(
    'pause while a pass waits at `staged`: pause waits, that pass is abandoned before its commit; the next pass is skipped (exit 0, nothing changed); resume converges',
    T,
    async () => {
      const ws = await withTree(1);
      const flag = path.join(ws.state, 'flag');
      const first = await runSync({ master, source: ws.source, target: ws.target, stateDir: ws.state });
      assert.equal(first.status, 0, describeRun(first));
      await withTree(2, ws);

      const unchanged = await snapshot(ws.target);
      const running = sync(ws, { XROAD_SYNC_TEST_HOOK: 'pause@staged', XROAD_SYNC_TEST_PAUSE_MS: '2000' });
      await heldAt(running, 'staged', 20_000);
      const paused = await runCli(['pause', '--flag-file', flag, '--state-dir', ws.state]);
      assert.equal(paused.status, 0, paused.stderr);
      assert.ok(existsSync(flag));
      assert.match(paused.stdout, /waited .* for the running pass \(pid \d+\) to be abandoned before its commit/, paused.stdout);
      const run = await running.done;
      assert.equal(run.status, 0, describeRun(run));
      assert.match(run.stderr, /abandoned before its commit/, describeRun(run));
      assert.deepEqual(differences(unchanged, await snapshot(ws.target)), [], 'the pass past its flag check committed after pause returned');

      await withTree(3, ws);
      const before = await snapshot(ws.target);
      const skipped = await runSync({ master, source: ws.source, target: ws.target, stateDir: ws.state });
      assert.equal(skipped.status, 0, describeRun(skipped));
      assert.match(skipped.stderr + skipped.log, /skipped/, describeRun(skipped));
      assert.deepEqual(differences(before, await snapshot(ws.target)), [], 'a pass ran while paused');

      const resumed = await runCli(['resume', '--flag-file', flag]);
      assert.equal(resumed.status, 0, resumed.stderr);
      const next = await runSync({ master, source: ws.source, target: ws.target, stateDir: ws.state });
      assert.equal(next.status, 0, describeRun(next));
      await assertConverged(ws, 'after resume');
      summary.push('pause during a pass: waited, abandoned before commit, next skipped, resume converged');
    },
  );
});
