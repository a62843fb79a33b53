/**
 * Soak: 500 passes (XROAD_SYNC_SOAK_PASSES raises it) over one warm session
 * against a real OpenSSH master, in process (runPass + WarmSessionProvider,
 * as the daemon runs them: a process per pass would cost ~0.3 s each), with
 * seeded random churn on the master between passes: files added, modified
 * (same size and other size), touched (mtime only), chmodded, deleted;
 * file ↔ dir ↔ symlink swaps; symlink retargets; whole directories added
 * and removed; excluded names (x.tmp, db.properties, a top-level jetty/)
 * created. After every pass: target == master minus excludes, no temp file,
 * no journal. Replay a failure with XROAD_SYNC_SOAK_SEED=<seed>.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, lutimes, mkdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { leftoverTemps } from '../../helpers/run-sync.js';
import { suiteMaster, type TestMaster } from '../../helpers/sshd.js';
import {
  differences,
  expectedTree,
  inProcessPasses,
  journalOf,
  prng,
  quickSnapshot,
  Scratch,
  type Snapshot,
  seedFromEnv,
  snapshot,
  withoutExcluded,
} from './helpers.js';
import { T0, writeSpec } from './trees.js';

const hashed = (dir: string): Promise<Snapshot> => quickSnapshot(dir, 'hash');
/** XROAD_SYNC_SOAK_TRACE=1 prints every churn step and the master paths it changed. */
const TRACE = process.env.XROAD_SYNC_SOAK_TRACE === '1';
const PASSES = Math.max(1, Number(process.env.XROAD_SYNC_SOAK_PASSES ?? 500));
const T = { timeout: Math.max(150_000, PASSES * 600) };

type Rnd = () => number;

class Churn {
  /** Every change gets a fresh whole-second mtime: SFTP v3 carries seconds, and same size + same mtime is "unchanged" to rsync too. */
  private clock = T0 + 100_000;
  private serial = 0;
  ops = 0;
  last = '';
  readonly failures: string[] = [];
  readonly counts = new Map<string, number>();

  constructor(
    private readonly root: string,
    private readonly rnd: Rnd,
  ) {}

  private pick<T>(items: readonly T[]): T | undefined {
    return items.length === 0 ? undefined : items[Math.floor(this.rnd() * items.length)];
  }
  private abs(rel: string): string {
    return path.join(this.root, rel);
  }
  private bytes(n: number): Buffer {
    const b = Buffer.alloc(n + 4);
    for (let i = 0; i < n; i += 4) b.writeUInt32LE(Math.floor(this.rnd() * 2 ** 32), i);
    return b.subarray(0, n);
  }
  private tick(): number {
    return ++this.clock;
  }
  private async file(rel: string, size: number): Promise<void> {
    await writeFile(this.abs(rel), this.bytes(size));
    const t = this.tick();
    await utimes(this.abs(rel), t, t);
  }
  private fresh(dir: string, prefix = 'f'): string {
    return dir === '' ? `${prefix}${++this.serial}` : `${dir}/${prefix}${++this.serial}`;
  }

  /** One random change, chosen from what the master has now (`tree`: its full snapshot). */
  async step(tree: Snapshot): Promise<void> {
    const all = [...tree.entries()].filter(([p]) => p !== '');
    const files = all.filter(([, e]) => e.type === 'file').map(([p]) => p);
    const links = all.filter(([, e]) => e.type === 'symlink').map(([p]) => p);
    const dirs = ['', ...all.filter(([, e]) => e.type === 'dir').map(([p]) => p)];
    const dir = this.pick(dirs)!;
    const plenty = files.length > 25;
    const choices: Array<[string, () => Promise<void>]> = [
      ['add', () => this.file(this.fresh(dir), Math.floor(this.rnd() * 5000))],
      [
        'modify-size',
        async () => {
          const f = this.pick(files);
          if (f) await this.file(f, Math.floor(this.rnd() * 5000) + 1 + (tree.get(f)!.size % 7));
        },
      ],
      [
        'modify-same-size',
        async () => {
          const f = this.pick(files);
          if (f) await this.file(f, tree.get(f)!.size);
        },
      ],
      [
        'mtime-only',
        async () => {
          const f = this.pick([...files, ...links]);
          if (!f) return;
          const t = this.tick();
          await (tree.get(f)!.type === 'symlink' ? lutimes : utimes)(this.abs(f), t, t);
        },
      ],
      [
        'chmod',
        async () => {
          const f = this.pick(files);
          if (f) await chmod(this.abs(f), this.pick([0o600, 0o640, 0o644, 0o660, 0o755])!);
        },
      ],
      [
        'chmod-dir',
        async () => {
          const d = this.pick(dirs.filter((x) => x !== ''));
          if (d) await chmod(this.abs(d), this.pick([0o750, 0o755, 0o700])!);
        },
      ],
      [
        'delete',
        async () => {
          const f = plenty ? this.pick([...files, ...links]) : undefined;
          if (f) await rm(this.abs(f));
        },
      ],
      [
        'file-to-dir',
        async () => {
          const f = this.pick(files);
          if (!f) return;
          await rm(this.abs(f));
          await mkdir(this.abs(f));
          await this.file(this.fresh(f), 100);
        },
      ],
      [
        'dir-to-file',
        async () => {
          const d = plenty ? this.pick(dirs.filter((x) => x !== '' && [...tree.keys()].filter((p) => p.startsWith(`${x}/`)).length <= 6)) : undefined;
          if (!d) return;
          await rm(this.abs(d), { recursive: true });
          await this.file(d, 300);
        },
      ],
      [
        'file-to-symlink',
        async () => {
          const f = this.pick(files);
          if (!f) return;
          await rm(this.abs(f));
          await symlink(this.pick(['nowhere', '../up', '/etc/hostname', 'f1'])!, this.abs(f));
          const t = this.tick();
          await lutimes(this.abs(f), t, t);
        },
      ],
      [
        'symlink-to-file-or-dir',
        async () => {
          const l = this.pick(links);
          if (!l) return;
          await rm(this.abs(l));
          if (this.rnd() < 0.5) await this.file(l, 50);
          else await mkdir(this.abs(l));
        },
      ],
      [
        'symlink-retarget',
        async () => {
          const l = this.pick(links);
          if (!l) return;
          await rm(this.abs(l));
          await symlink(`target-${++this.serial}`, this.abs(l));
        },
      ],
      [
        'add-dir',
        async () => {
          const d = this.fresh(dir, 'd');
          await mkdir(this.abs(d));
          for (let i = 0; i < 3; i++) await this.file(this.fresh(d), 200);
        },
      ],
      [
        'excluded',
        async () => {
          const name = this.pick(['x.tmp', 'db.properties', 'keyconf.xml.tmp'])!;
          await writeFile(this.abs(dir === '' ? name : `${dir}/${name}`), this.bytes(64));
        },
      ],
      [
        'excluded-top',
        async () => {
          const top = this.pick(['jetty', 'nginx', 'postgresql'])!;
          if (tree.get(top) && tree.get(top)!.type !== 'dir') await rm(this.abs(top));
          await mkdir(this.abs(top), { recursive: true });
          await writeFile(this.abs(`${top}/${++this.serial}.conf`), this.bytes(64));
        },
      ],
    ];
    // Keep the tree about /etc/xroad's size: past 100 files, growth steps give way to the others.
    const growing = new Set(['add', 'add-dir', 'file-to-dir', 'excluded', 'excluded-top']);
    const [name, act] = this.pick(files.length > 100 ? choices.filter(([n]) => !growing.has(n)) : choices)!;
    try {
      await act();
    } catch (err) {
      // A churn step that does not fit the tree it met (EEXIST, ENOTDIR): the master's business, not the sync's.
      this.counts.set('skipped', (this.counts.get('skipped') ?? 0) + 1);
      this.failures.push(`${name}: ${(err as Error).message}`);
      return;
    }
    this.ops++;
    this.last = name;
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
  }
}

describe('soak: passes with random churn on the master', () => {
  let master!: TestMaster;
  const scratch = new Scratch();
  suiteMaster((m) => (master = m), { afterAll: () => scratch.cleanup() });

  it(`${PASSES} in-process passes over one warm session: target == master minus excludes after each`, T, async () => {
    const seed = seedFromEnv('XROAD_SYNC_SOAK_SEED');
    const rnd = prng(seed);
    const ws = await scratch.workspace('xroad-sync-soak-');
    const spec: Record<string, { content: string; mtime: number } | { mtime: number } | { symlink: string }> = {};
    for (let d = 0; d < 5; d++) {
      spec[`dir${d}/`] = { mtime: T0 + d };
      for (let f = 0; f < 8; f++) spec[`dir${d}/file${f}`] = { content: `${d}/${f}\n`.repeat(1 + f * 40), mtime: T0 + 100 + d * 10 + f };
    }
    spec['signer/keyconf.xml'] = { content: '<keyConf/>\n', mtime: T0 + 500 };
    spec['link-a'] = { symlink: 'dir0/file0' };
    spec['link-b'] = { symlink: 'nowhere' };
    await writeSpec(ws.source, spec);

    const passes = inProcessPasses(master, ws, { maxDelete: 1_000_000 });
    const churn = new Churn(ws.source, rnd);
    const mismatches: string[] = [];
    let failed = 0;
    const spent = { churn: 0, pass: 0, check: 0 };
    let mark = Date.now();
    const lap = (k: keyof typeof spent): void => {
      const now = Date.now();
      spent[k] += now - mark;
      mark = now;
    };
    const started = Date.now();
    /** The master as the last check read it: what the next churn step chooses from. */
    let masterNow: Snapshot | undefined;
    try {
      for (let i = 0; i < PASSES; i++) {
        if (i > 0) {
          const steps = 1 + Math.floor(rnd() * 4);
          for (let s = 0; s < steps; s++) {
            const before = (s === 0 ? masterNow : undefined) ?? (await quickSnapshot(ws.source, 'none'));
            await churn.step(before);
            if (TRACE) console.log(`pass ${i} churn ${churn.last}: ${differences(before, await quickSnapshot(ws.source, 'none')).join(' ')}`);
          }
        }
        lap('churn');
        const r = await passes.run();
        lap('pass');
        masterNow = undefined;
        if (r.exitCode !== 0) {
          failed++;
          mismatches.push(`pass ${i}: exit ${r.exitCode}: ${passes.notices.join('; ')}`);
          lap('check');
          continue;
        }
        const [onMaster, got] = await Promise.all([hashed(ws.source), hashed(ws.target)]);
        masterNow = onMaster;
        const want = withoutExcluded(onMaster);
        const diff = differences(want, got);
        const temps = await leftoverTemps(ws.target);
        if (diff.length > 0 || temps.length > 0 || existsSync(journalOf(ws.state))) {
          const first = diff[0] === '(root)' ? '' : diff[0];
          const detail = first === undefined ? '' : ` (master ${JSON.stringify(want.get(first))}, slave ${JSON.stringify(got.get(first))})`;
          mismatches.push(
            `pass ${i}: differs at ${diff.slice(0, 5).join(', ')}${detail}${temps.length ? `; temps ${temps.join(', ')}` : ''}; ${passes.notices.join('; ')}`,
          );
        }
        lap('check');
      }
    } finally {
      await passes.close();
    }
    const ms = Date.now() - started;
    console.log(
      `faults/soak: seed ${seed}, passes ${PASSES}, mismatches ${mismatches.length} (failed passes ${failed}), churn ops ${churn.ops} ` +
        `(${[...churn.counts].map(([k, v]) => `${k} ${v}`).join(', ')}), ${ms} ms (${(ms / PASSES).toFixed(1)} ms/pass; churn ${spent.churn} ms, passes ${spent.pass} ms, checks ${spent.check} ms), SSH connections ${passes.provider.connections}`,
    );
    // The fast walker the loop used agrees with the harness's readTree.
    assert.deepEqual(Object.fromEntries(await quickSnapshot(ws.target)), Object.fromEntries(await snapshot(ws.target)));
    assert.deepEqual(
      mismatches.slice(0, 10),
      [],
      `seed ${seed}: ${mismatches.length} of ${PASSES} passes did not converge (replay: XROAD_SYNC_SOAK_SEED=${seed})`,
    );
    assert.equal(passes.provider.connections, 1, 'the warm session was dropped and reopened');
  });

  // Found by the soak (seed 890915928, pass 2): pinned so it does not depend on the dice.
  it("a directory whose mode changes in the same pass as a file inside it keeps the master's mtime", T, async () => {
    const ws = await scratch.workspace('xroad-sync-soak-dirmode-');
    await writeSpec(ws.source, { 'dir1/': { mtime: T0 + 1 }, 'dir1/file0': { content: 'old\n', mtime: T0 + 2 }, 'dir2/f': { content: 'x\n', mtime: T0 + 3 } });
    const passes = inProcessPasses(master, ws);
    try {
      assert.equal((await passes.run()).exitCode, 0, passes.notices.join('; '));
      await writeSpec(ws.source, { 'dir1/file0': { content: 'new!\n', mtime: T0 + 12 } });
      await utimes(path.join(ws.source, 'dir1'), T0 + 1, T0 + 1);
      await chmod(path.join(ws.source, 'dir1'), 0o700);
      assert.equal((await passes.run()).exitCode, 0, passes.notices.join('; '));
      const [want, got] = await Promise.all([expectedTree(ws.source), snapshot(ws.target)]);
      assert.deepEqual(got.get('dir1'), want.get('dir1'), 'dir1 after a pass that changed its mode and a file in it');
      assert.deepEqual(differences(want, got), []);
    } finally {
      await passes.close();
    }
  });
});
