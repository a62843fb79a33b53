/**
 * Several slaves on one master: five `xroad-sync daemon` processes,
 * each with its own target and state dir, against one real OpenSSH sshd; a
 * burst of 100 master changes (new files and directories, edits, deletes,
 * keyconf.xml with a new .p12) made while they poll; every target must then
 * equal the master byte for byte (content, modes, mtimes, links). Not timed:
 * the wait is only bounded.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import { passArgs, type RunningCli, startCli, waitFor } from '../helpers/cli.js';
import { makeTempDir, readTree, sshdAvailable, startMaster, writeTree } from '../helpers/sshd.js';

const SLAVES = 5;
const CHANGES = 100;
const CI = process.env.CI === 'true';
const T = { timeout: 240_000, skip: !CI && !sshdAvailable() && 'needs /usr/sbin/sshd' };

/** Deterministic choices, so a failure can be replayed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** One burst of master changes; every write gets a fresh whole-second mtime (a quick check compares size + mtime). */
async function burst(root: string, count: number, rnd: () => number): Promise<Record<string, number>> {
  let clock = Math.floor(Date.now() / 1000) + 10_000;
  const stamp = async (p: string): Promise<void> => {
    const t = ++clock;
    await fs.utimes(p, t, t);
  };
  const created: string[] = [];
  const kinds: Record<string, number> = {};
  for (let n = 0; n < count; n++) {
    const roll = rnd();
    const kind = roll < 0.35 ? 'new' : roll < 0.6 ? 'edit' : roll < 0.75 && created.length > 0 ? 'delete' : roll < 0.9 ? 'keyconf' : 'new-dir';
    kinds[kind] = (kinds[kind] ?? 0) + 1;
    if (kind === 'new') {
      const rel = `conf.d/burst-${n}.ini`;
      await fs.writeFile(path.join(root, rel), randomBytes(Math.floor(rnd() * 3000)));
      await stamp(path.join(root, rel));
      created.push(rel);
    } else if (kind === 'edit') {
      const rel = ['serverconf.xml', 'conf.d/local.ini', ...created][Math.floor(rnd() * (2 + created.length))]!;
      await fs.appendFile(path.join(root, rel), `edit ${n}\n`);
      await stamp(path.join(root, rel));
    } else if (kind === 'delete') {
      const [rel] = created.splice(Math.floor(rnd() * created.length), 1);
      await fs.rm(path.join(root, rel!));
    } else if (kind === 'keyconf') {
      const p12 = path.join(root, `signer/softtoken/burst-${n}.p12`);
      await fs.writeFile(p12, randomBytes(2048), { mode: 0o600 });
      await stamp(p12);
      await fs.appendFile(path.join(root, 'signer/keyconf.xml'), `<key id="burst-${n}"/>\n`);
      await stamp(path.join(root, 'signer/keyconf.xml'));
    } else {
      const dir = path.join(root, `services/burst-${n}`);
      await fs.mkdir(dir, { recursive: true });
      await fs.writeFile(path.join(dir, 'wsdl.xml'), `<wsdl n="${n}"/>\n`);
      await stamp(path.join(dir, 'wsdl.xml'));
      await stamp(dir);
    }
  }
  return kinds;
}

test(`${SLAVES} daemons converge after a burst of ${CHANGES} master changes`, T, async (t) => {
  const master = await startMaster();
  const base = await makeTempDir('xroad-sync-fleet-');
  const daemons: RunningCli[] = [];
  t.after(async () => {
    await Promise.all(daemons.map((d) => d.stop(3_000)));
    await master.stop();
    await fs.rm(base, { recursive: true, force: true });
  });
  const source = path.join(base, 'master');
  await writeTree(source, {
    'conf.d/local.ini': '[signer]\nport=5558\n',
    'signer/keyconf.xml': '<keyconf>\n',
    'signer/softtoken/a.p12': { content: Buffer.alloc(2048, 7), mode: 0o600 },
    'serverconf.xml': '<conf/>\n',
    'services/': null,
    current: { symlink: 'serverconf.xml' },
  });
  const slaves = Array.from({ length: SLAVES }, (_, i) => ({
    target: path.join(base, `slave${i}`, 'target'),
    stateDir: path.join(base, `slave${i}`, 'state'),
    // A directory of its own: the daemon watches the flag's directory.
    flagFile: path.join(base, `slave${i}`, 'flag', 'sync-disabled'),
  }));
  await Promise.all(slaves.flatMap((s) => [s.target, s.stateDir, path.dirname(s.flagFile)].map((d) => fs.mkdir(d, { recursive: true }))));
  for (const s of slaves) daemons.push(startCli(['daemon', ...passArgs(master, { source, ...s }), '--interval', '1'], { timeoutMs: 230_000 }));
  const output = (): string => daemons.map((d, i) => `--- daemon ${i}\n${d.stderr()}${d.stdout().split('\n').slice(-5).join('\n')}`).join('\n');
  const okPasses = (d: RunningCli): number => d.records().filter((r) => r.msg === 'pass' && r.result === 'ok').length;
  await waitFor(() => daemons.every((d) => okPasses(d) > 0), 60_000, "every daemon's first pass", output);

  const seed = Number(process.env.XROAD_SYNC_FLEET_SEED ?? Date.now() % 1_000_000);
  const kinds = await burst(source, CHANGES, prng(seed));
  t.diagnostic(`seed ${seed} (XROAD_SYNC_FLEET_SEED replays it): ${JSON.stringify(kinds)}`);

  const expected = await readTree(source);
  const converged = async (): Promise<boolean> => {
    for (const s of slaves) if (!isDeepStrictEqual(await readTree(s.target).catch(() => null), expected)) return false;
    return true;
  };
  await waitFor(converged, 120_000, `all ${SLAVES} targets equal to the master after the burst`, output);
  for (const d of daemons) assert.equal(d.child.exitCode, null, 'every daemon is still running');
  // Stopped, then compared once more: nothing a daemon does on its way out may change a target.
  await Promise.all(daemons.map((d) => d.stop(5_000)));
  for (const s of slaves) assert.deepEqual(await readTree(s.target), expected, `${s.target} equals the master byte for byte`);
});
