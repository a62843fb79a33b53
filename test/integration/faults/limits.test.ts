/**
 * Resource faults: the transfer limits (--max-file-size, --max-total-bytes,
 * --max-files) refuse a pass before anything is staged, and a full disk
 * (a 1 MiB tmpfs as the target, root only) fails the pass with exit 11 and
 * leaves the target as it was. A refused or failed pass never leaves a temp
 * file, and the target is byte-for-byte, mode and mtime what it was.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { describeRun, leftoverTemps, obj, runSync } from '../../helpers/run-sync.js';
import { type TestMaster, writeTree } from '../../helpers/sshd.js';
import { assertConverged, differences, faultSuite, inProcessPasses, journalOf, snapshot, type Workspace } from './helpers.js';
import { T0 } from './trees.js';

const T = { timeout: 60_000 };

describe('resource limits and a full disk', () => {
  let master!: TestMaster;
  const { scratch, results } = faultSuite('faults/limits', (m) => (master = m));

  async function seed(ws: Workspace): Promise<void> {
    const p = inProcessPasses(master, ws);
    try {
      const r = await p.run();
      assert.equal(r.exitCode, 0, p.notices.join('; '));
    } finally {
      await p.close();
    }
  }

  /** Old target synced; then the master grows: one 20 KiB file, 30 new small files. */
  async function grown(ws?: Workspace): Promise<Workspace> {
    ws ??= await scratch.workspace('xroad-sync-limits-');
    await writeTree(ws.source, {
      'conf.d/local.ini': { content: 'old\n', mtime: T0 + 1 },
      'signer/keyconf.xml': { content: '<keyConf/>\n', mtime: T0 + 2 },
    });
    await seed(ws);
    const spec: Record<string, { content: Buffer | string; mtime: number }> = {
      'conf.d/local.ini': { content: 'new\n', mtime: T0 + 11 },
      'big.bin': { content: randomBytes(20 * 1024), mtime: T0 + 12 },
    };
    for (let i = 0; i < 30; i++) spec[`many/f${i}`] = { content: `file ${i}\n`.repeat(50), mtime: T0 + 20 + i };
    await writeTree(ws.source, spec);
    return ws;
  }

  async function refused(args: string[], flag: string): Promise<void> {
    const ws = await grown();
    const before = await snapshot(ws.target);
    const run = await runSync({ master, source: ws.source, target: ws.target, stateDir: ws.state, args });
    assert.equal(run.status, 25, describeRun(run));
    assert.ok(run.stderr.includes(flag), `stderr does not name ${flag}:\n${describeRun(run)}`);
    assert.deepEqual(differences(before, await snapshot(ws.target)), [], `${flag}: the target changed`);
    assert.deepEqual(await leftoverTemps(ws.target), []);
    assert.equal(existsSync(journalOf(ws.state)), false);
    results.push(`${args.join(' ')}: exit ${run.status}`);
    // Raised limit: the same master goes through.
    const ok = await runSync({ master, source: ws.source, target: ws.target, stateDir: ws.state });
    assert.equal(ok.status, 0, describeRun(ok));
    await assertConverged(ws, `after raising ${flag}`);
  }

  it('--max-file-size exceeded: exit 25 before any change', T, () => refused(['--max-file-size', '16K'], '--max-file-size'));
  it('--max-total-bytes exceeded: exit 25 before any change', T, () => refused(['--max-total-bytes', '24K'], '--max-total-bytes'));
  it('--max-files exceeded: exit 25 before any change', T, () => refused(['--max-files', '20'], '--max-files'));

  it('disk full (1 MiB tmpfs target, master > 1 MiB): exit 11, ENOSPC named, target unchanged, no temps', T, async (t) => {
    if (process.getuid?.() !== 0) {
      console.log('faults/limits: disk-full test skipped: not root (mount -t tmpfs needs root)');
      t.skip('not root');
      return;
    }
    const ws = await scratch.workspace('xroad-sync-enospc-');
    const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0755', 'tmpfs', ws.target], { encoding: 'utf8', timeout: 10_000 });
    if (mount.status !== 0) {
      console.log(`faults/limits: disk-full test skipped: mount failed: ${(mount.stderr || mount.error?.message || '').trim()}`);
      t.skip('mount -t tmpfs failed');
      return;
    }
    try {
      await writeTree(ws.source, {
        'conf.d/local.ini': { content: 'old\n', mtime: T0 + 1 },
        'signer/keyconf.xml': { content: '<keyConf>old</keyConf>\n', mtime: T0 + 2 },
      });
      await seed(ws);
      const before = await snapshot(ws.target);
      await writeTree(ws.source, {
        'conf.d/local.ini': { content: 'new\n', mtime: T0 + 11 },
        'signer/keyconf.xml': { content: '<keyConf>new</keyConf>\n', mtime: T0 + 12 },
        'a.bin': { content: randomBytes(450 * 1024), mtime: T0 + 13 },
        'b.bin': { content: randomBytes(450 * 1024), mtime: T0 + 14 },
        'c.bin': { content: randomBytes(450 * 1024), mtime: T0 + 15 },
      });
      const run = await runSync({ master, source: ws.source, target: ws.target, stateDir: ws.state });
      assert.equal(run.status, 11, describeRun(run));
      assert.match(run.stderr, /ENOSPC|no space/i, describeRun(run));
      const after = await snapshot(ws.target);
      assert.deepEqual(differences(before, after), [], 'the target changed on ENOSPC');
      assert.deepEqual(obj(after), obj(before));
      assert.deepEqual(await leftoverTemps(ws.target), [], 'temp files left on the full disk');
      assert.equal(existsSync(journalOf(ws.state)), false);
      results.push(`disk full: exit ${run.status}, "${/[^\n]*(ENOSPC|no space)[^\n]*/i.exec(run.stderr)?.[0]?.slice(0, 160)}"`);
    } finally {
      const um = spawnSync('umount', [ws.target], { encoding: 'utf8', timeout: 10_000 });
      if (um.status !== 0) spawnSync('umount', ['-l', ws.target], { timeout: 10_000 });
    }
  });
});
