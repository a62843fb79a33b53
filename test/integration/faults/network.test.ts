/**
 * The network fails mid-pass: a loopback proxy in front of a real OpenSSH
 * master resets the connection, or stops forwarding, in the middle of a
 * 2 MiB file; the embedded master stalls a directory listing or cuts the
 * connection under a READ. Every time: the pass fails (a stall with exit 30
 * within --timeout plus a margin), the target is byte-for-byte, mode and
 * mtime what it was, no temp file is left, and the next pass straight to the
 * master converges.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { describeRun, leftoverTemps, obj, runSync } from '../../helpers/run-sync.js';
import { type TestMaster, writeTree } from '../../helpers/sshd.js';
import { assertConverged, differences, faultSuite, inProcessPasses, knownHostsFor, snapshot, startHookedMaster, type Workspace } from './helpers.js';
import { FaultProxy, type ProxyFault } from './proxy.js';
import { T0 } from './trees.js';

const T = { timeout: 60_000 };
const BIG = 2 * 1024 * 1024;
/** Well past the handshake and the listing (a few KiB), well inside the 2 MiB file. */
const FAULT_AFTER = 256 * 1024;
const IDLE_TIMEOUT_S = 2;
/** Liveness bound: --timeout plus this margin (process start, connect, cleanup). */
const MARGIN_MS = 5_000;

describe('network faults mid-pass', () => {
  let master!: TestMaster;
  const { scratch, results } = faultSuite('faults/network', (m) => (master = m));

  /** A target synced from an old master; the master then changes a 2 MiB file and two small ones. */
  async function prepared(m: TestMaster = master, ws?: Workspace): Promise<Workspace> {
    ws ??= await scratch.workspace('xroad-sync-net-');
    await writeTree(ws.source, {
      'big.bin': { content: randomBytes(BIG), mode: 0o640, mtime: T0 + 1 },
      'conf.d/': { mtime: T0 + 2 },
      'conf.d/local.ini': { content: 'old\n', mode: 0o640, mtime: T0 + 3 },
      'signer/keyconf.xml': { content: '<keyConf>old</keyConf>\n', mode: 0o640, mtime: T0 + 4 },
    });
    const seed = inProcessPasses(m, ws);
    try {
      assert.equal((await seed.run()).exitCode, 0, seed.notices.join('; '));
    } finally {
      await seed.close();
    }
    await writeTree(ws.source, {
      'big.bin': { content: randomBytes(BIG), mode: 0o640, mtime: T0 + 11 },
      'conf.d/local.ini': { content: 'new and longer\n', mode: 0o640, mtime: T0 + 13 },
      'signer/keyconf.xml': { content: '<keyConf>new</keyConf>\n', mode: 0o640, mtime: T0 + 14 },
    });
    return ws;
  }

  async function assertUntouched(ws: Workspace, before: Awaited<ReturnType<typeof snapshot>>, what: string): Promise<void> {
    const now = await snapshot(ws.target);
    assert.deepEqual(differences(before, now), [], `${what}: the target changed`);
    assert.deepEqual(obj(now), obj(before));
    assert.deepEqual(await leftoverTemps(ws.target), [], `${what}: temp files left`);
  }

  async function throughProxy(fault: ProxyFault): Promise<void> {
    const ws = await prepared();
    const before = await snapshot(ws.target);
    const proxy = await FaultProxy.start(master.port, fault, FAULT_AFTER);
    try {
      const run = await runSync({
        master,
        source: ws.source,
        target: ws.target,
        stateDir: ws.state,
        port: proxy.port,
        knownHosts: await knownHostsFor(master, proxy.port, ws.root),
        args: ['--timeout', String(IDLE_TIMEOUT_S), '--connect-timeout', '5'],
        timeoutMs: 30_000,
      });
      assert.ok(proxy.tripped, `the proxy never reached ${FAULT_AFTER} bytes (forwarded ${proxy.forwarded}):\n${describeRun(run)}`);
      assert.equal(run.timedOut, false, describeRun(run));
      assert.notEqual(run.status, 0, describeRun(run));
      assert.notEqual(run.status, null, describeRun(run));
      if (fault === 'stall') {
        assert.equal(run.status, 30, describeRun(run));
        assert.ok(run.elapsedMs < IDLE_TIMEOUT_S * 1000 + MARGIN_MS, `a stalled pass took ${run.elapsedMs} ms with --timeout ${IDLE_TIMEOUT_S}`);
        assert.match(run.stderr, /no progress/, describeRun(run));
      }
      results.push(`${fault} after ${FAULT_AFTER} B: exit ${run.status} in ${run.elapsedMs} ms`);
      await assertUntouched(ws, before, `${fault} mid-file`);
    } finally {
      await proxy.close();
    }
    const next = await runSync({ master, source: ws.source, target: ws.target, stateDir: ws.state });
    assert.equal(next.status, 0, describeRun(next));
    await assertConverged(ws, `the pass after the ${fault}`);
  }

  it('connection reset mid-file: the pass fails, the target is unchanged, the next pass converges', T, () => throughProxy('cut'));

  it('master stalls mid-file: exit 30 within --timeout 2 + 5 s, target unchanged, the next pass converges', T, () => throughProxy('stall'));

  describe('embedded master faults', () => {
    async function hooked(fault: 'stall-listing' | 'cut-read' | 'stall-read'): Promise<void> {
      const ws = await scratch.workspace('xroad-sync-net-hooked-');
      const m = await startHookedMaster(ws.source);
      try {
        await prepared(m, ws);
        const before = await snapshot(ws.target);
        if (fault === 'stall-listing') m.hooks.onRequest = (op, p) => (op === 'opendir' && p === 'conf.d' ? 'stall' : undefined);
        else m.hooks.onRead = (p, offset) => (p === 'big.bin' && offset >= FAULT_AFTER ? (fault === 'cut-read' ? 'cut' : 'stall') : undefined);
        const run = await runSync({
          master: m,
          source: ws.source,
          target: ws.target,
          stateDir: ws.state,
          args: ['--timeout', String(IDLE_TIMEOUT_S)],
          timeoutMs: 30_000,
        });
        assert.notEqual(run.status, 0, describeRun(run));
        assert.notEqual(run.status, null, describeRun(run));
        if (fault !== 'cut-read') {
          assert.equal(run.status, 30, describeRun(run));
          assert.ok(run.elapsedMs < IDLE_TIMEOUT_S * 1000 + MARGIN_MS, `${fault}: took ${run.elapsedMs} ms`);
        }
        results.push(`${fault}: exit ${run.status} in ${run.elapsedMs} ms`);
        await assertUntouched(ws, before, fault);
        delete m.hooks.onRequest;
        delete m.hooks.onRead;
        const next = await runSync({ master: m, source: ws.source, target: ws.target, stateDir: ws.state });
        assert.equal(next.status, 0, describeRun(next));
        await assertConverged(ws, `the pass after ${fault}`);
      } finally {
        await m.stop();
      }
    }

    it('a directory listing that never answers: exit 30 within the bound, target unchanged', T, () => hooked('stall-listing'));
    it('a READ that never answers: exit 30 within the bound, target unchanged', T, () => hooked('stall-read'));
    it('the connection cut under a READ: the pass fails, target unchanged', T, () => hooked('cut-read'));
  });
});
