/**
 * A master file or directory that cannot be read (SFTP PERMISSION_DENIED):
 * the whole pass fails with exit 23 naming the path and the --exclude that
 * would skip it. And a hostile (or broken) master, played by the embedded
 * master's hooks: names
 * that climb out (`..`, `../x`, `a/b`), NUL, 4 KiB names, `.`-only listings,
 * a name listed both as a symlink and as a directory, a directory symlink
 * cycle, a symlink on the slave that a later listing turns into a directory,
 * sizes that do not match the data (lying listing, or a file that grows
 * between listing and read), and a claimed 10 GiB file. Every time: nothing
 * is written outside the target (a sentinel directory beside it stays empty,
 * the target's parent gains nothing, no marker file appears in / or the temp
 * dir), the sync child's peak RSS stays under 300 MB, the error is clear, the
 * exit code is non-zero, and a failed pass leaves the target as it was.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { appendFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import type { FileEntry } from 'ssh2';
import { describeRun, leftoverTemps, startSync } from '../../helpers/run-sync.js';
import { writeTree } from '../../helpers/sshd.js';
import {
  assertConverged,
  differences,
  type HookedMaster,
  inProcessPasses,
  namesIn,
  Scratch,
  snapshot,
  startHookedMaster,
  type Workspace,
  watchPeakRss,
} from './helpers.js';
import { T0 } from './trees.js';

const T = { timeout: 60_000 };
const RSS_LIMIT = 300 * 1024 * 1024;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const GiB = 1024 ** 3;
/** Name of the file a hostile listing tries to plant outside the target. */
const EVIL = `xroad-sync-evil-${process.pid}`;
const LOOP = `loop-${'x'.repeat(200)}`;

interface HostileCase {
  /** 'parent' serves the workspace root, so a symlink to `..` stays inside the served tree. */
  readonly served?: 'source' | 'parent';
  /** Master changes after the target was seeded, before the hooks go live. */
  readonly change?: (ws: Workspace, m: HookedMaster) => Promise<void>;
  /** Installs the hooks; `rel(p)` turns a source-relative path into the hook's form. */
  readonly hostile: (m: HookedMaster, rel: (p: string) => string, ws: Workspace) => void;
  /** Allowed exit codes. */
  readonly exits: readonly number[];
  readonly message: RegExp;
  readonly args?: readonly string[];
  /** After a successful hostile pass: the target equals the honest master. */
  readonly convergesToHonest?: boolean;
}

const summary: string[] = [];

describe('hostile master', () => {
  const scratch = new Scratch();
  after(async () => {
    await scratch.cleanup();
    console.log(`faults/hostile: ${summary.join('; ')}`);
  });

  async function run(name: string, c: HostileCase): Promise<void> {
    const ws = await scratch.workspace('xroad-sync-hostile-');
    await writeTree(ws.source, {
      'conf.d/': { mtime: T0 + 1 },
      'conf.d/local.ini': { content: '[proxy]\nold\n', mtime: T0 + 2 },
      'signer/keyconf.xml': { content: '<keyConf>old</keyConf>\n', mtime: T0 + 3 },
      'grow.bin': { content: Buffer.alloc(64 * 1024, 1), mtime: T0 + 4 },
      'sub/deep.txt': { content: 'deep\n', mtime: T0 + 5 },
    });
    const m = await startHookedMaster(c.served === 'parent' ? ws.root : ws.source);
    try {
      const seed = inProcessPasses(m, ws);
      try {
        assert.equal((await seed.run()).exitCode, 0, seed.notices.join('; '));
      } finally {
        await seed.close();
      }
      await writeTree(ws.source, {
        'conf.d/local.ini': { content: '[proxy]\nnew, longer\n', mtime: T0 + 12 },
        'signer/keyconf.xml': { content: '<keyConf>new</keyConf>\n', mtime: T0 + 13 },
      });
      await c.change?.(ws, m);
      const before = await snapshot(ws.target);
      const rootNames = await namesIn(ws.root);
      const rel = (p: string): string => (c.served === 'parent' ? (p === '' ? 'src' : `src/${p}`) : p);
      c.hostile(m, rel, ws);

      const started = startSync({
        master: m,
        source: ws.source,
        target: ws.target,
        stateDir: ws.state,
        args: ['--timeout', '5', ...(c.args ?? [])],
        timeoutMs: 45_000,
      });
      const rss = watchPeakRss(started.child.pid!);
      const result = await started.done;
      const peak = rss.stop();
      const said = result.stderr.split('\n').find((l) => / \(exit \d+\)$/.test(l)) ?? '';
      summary.push(
        `${name}: exit ${result.status}, peak RSS ${Math.round(peak / 1024 / 1024)} MB${said ? ` ("${said.replace(/^xroad-sync: /, '').slice(0, 110)}")` : ''}`,
      );

      assert.equal(result.timedOut, false, describeRun(result));
      assert.ok(c.exits.includes(result.status ?? -1), `${name}: exit ${result.status}, expected one of ${c.exits}:\n${describeRun(result)}`);
      assert.match(result.stderr, c.message, describeRun(result));
      assert.ok(peak > 0 && peak < RSS_LIMIT, `${name}: peak RSS ${peak} bytes`);
      // Nothing outside the target.
      assert.deepEqual(await namesIn(ws.sentinel), [], `${name}: something was written into the sentinel beside the target`);
      assert.deepEqual(await namesIn(ws.root), rootNames, `${name}: the target's parent gained or lost entries`);
      for (const dir of ['/', os.tmpdir(), path.dirname(ws.root)]) assert.equal(existsSync(path.join(dir, EVIL)), false, `${name}: ${EVIL} appeared in ${dir}`);
      assert.deepEqual(await leftoverTemps(ws.target), [], `${name}: temp files left`);
      if (result.status !== 0) {
        assert.deepEqual(differences(before, await snapshot(ws.target)), [], `${name}: a failed pass changed the target`);
      } else if (c.convergesToHonest) {
        await assertConverged(ws, name);
      }
    } finally {
      await m.stop();
    }
  }

  /** The listing of `dir` plus entries built from its first real file's attributes. */
  const plus = (rel: (p: string) => string, dir: string, extra: (model: FileEntry) => FileEntry[]) => (d: string, entries: FileEntry[]) => {
    if (d !== rel(dir)) return entries;
    const model = entries.find((e) => e.filename !== '.' && e.filename !== '..' && (e.attrs.mode & 0o170000) === 0o100000) ?? entries[0]!;
    return [...entries, ...extra(model)];
  };
  const named = (model: FileEntry, filename: string, attrs: Partial<FileEntry['attrs']> = {}): FileEntry => ({
    ...model,
    filename,
    attrs: { ...model.attrs, ...attrs },
  });

  it('a master file that cannot be read (PERMISSION_DENIED on open): exit 23, nothing changed, --exclude suggested', T, () =>
    run('unreadable file', {
      hostile: (m, rel) => (m.hooks.onRequest = (op, p) => (op === 'open' && p === rel('conf.d/local.ini') ? 3 : undefined)),
      exits: [23],
      message: /cannot open \S*conf\.d\/local\.ini.*Permission denied.*--exclude \/conf\.d\/local\.ini/,
    }),
  );

  it('a master directory that cannot be listed (PERMISSION_DENIED on opendir): exit 23, nothing changed, --exclude suggested', T, () =>
    run('unreadable directory', {
      hostile: (m, rel) => (m.hooks.onRequest = (op, p) => (op === 'opendir' && p === rel('sub') ? 3 : undefined)),
      exits: [23],
      message: /cannot open directory \S*\/sub\b.*Permission denied.*--exclude \/sub/,
    }),
  );

  for (const [label, name] of [
    ['../x', `../${EVIL}`],
    ['a/b', `conf.d/${EVIL}`],
    ['NUL', `ev\0${EVIL}`],
    ['4 KiB', 'n'.repeat(4096)],
  ] as const) {
    it(`a name like ${label}: exit 12, nothing written`, T, () =>
      run(`name ${label}`, {
        hostile: (m, rel) => (m.hooks.rewriteListing = plus(rel, '', (model) => [named(model, name)])),
        exits: [12],
        message: /invalid name/,
      }),
    );
  }

  it('extra `.` and `..` entries typed as files are skipped; real files named `...` and `....` sync like any other', T, () =>
    run('`.`/`..` as files', {
      change: (ws) => writeTree(ws.source, { '...': { content: 'three dots\n', mtime: T0 + 40 }, 'conf.d/....': { content: 'four\n', mtime: T0 + 41 } }),
      hostile: (m, rel) => (m.hooks.rewriteListing = plus(rel, 'conf.d', (model) => [named(model, '..', { size: 5 }), named(model, '.', { size: 7 })])),
      exits: [0],
      message: /^/,
      convergesToHonest: true,
    }),
  );

  it('a `.`-only root listing (empty master): refused by the safety valve, exit 25', T, () =>
    run('`.`-only listing', {
      hostile: (m, rel) =>
        (m.hooks.rewriteListing = (d, entries) => (d === rel('') ? entries.filter((e) => e.filename === '.' || e.filename === '..') : entries)),
      exits: [25],
      message: /empty/,
    }),
  );

  it('a name listed both as a symlink to / and as a directory: exit 12', T, () =>
    run('link -> / and link/', {
      change: (ws) => writeTree(ws.source, { 'link/': { mtime: T0 + 20 }, [`link/${EVIL}`]: 'planted\n' }),
      hostile: (m, rel) => (m.hooks.rewriteListing = plus(rel, '', (model) => [named(model, 'link', { mode: S_IFLNK | 0o777, size: 1 })])),
      exits: [12],
      message: /twice/,
    }),
  );

  it('a symlink to .. listed as a directory (a cycle through the served tree): bounded, exit non-zero', T, () =>
    run('dir symlink cycle', {
      served: 'parent',
      // A long (legal) name, so each turn of the cycle adds ~210 bytes and the master's PATH_MAX ends it in ~20 turns.
      change: (ws) => writeTree(ws.source, { [LOOP]: { symlink: '..' } }),
      hostile: (m) =>
        (m.hooks.rewriteListing = (_d, entries) => entries.map((e) => (e.filename === LOOP ? { ...e, attrs: { ...e.attrs, mode: S_IFDIR | 0o755 } } : e))),
      exits: [12, 23, 25],
      message: /loop/,
    }),
  );

  it('a symlink to / listed as a directory: the master refuses to follow it, exit non-zero', T, () =>
    run('link -> / as dir', {
      change: (ws) => writeTree(ws.source, { root: { symlink: '/' } }),
      hostile: (m, rel) =>
        (m.hooks.rewriteListing = (d, entries) =>
          d !== rel('') ? entries : entries.map((e) => (e.filename === 'root' ? { ...e, attrs: { ...e.attrs, mode: S_IFDIR | 0o755 } } : e))),
      exits: [12, 23],
      message: /root/,
    }),
  );

  it('a slave symlink to the sentinel, then listed as a directory with a file: written beneath the target, not through the link', T, async () => {
    let sentinel = '';
    await run('symlink then dir', {
      change: async (ws, m) => {
        sentinel = ws.sentinel;
        // Pass 1 (honest): the slave gets `link -> <sentinel>`.
        await writeTree(ws.source, { link: { symlink: ws.sentinel, mtime: T0 + 21 } });
        const p = inProcessPasses(m, ws);
        try {
          assert.equal((await p.run()).exitCode, 0, p.notices.join('; '));
        } finally {
          await p.close();
        }
        assert.equal((await snapshot(ws.target)).get('link')?.type, 'symlink');
        // Pass 2: the master now has a directory `link/` holding EVIL.
        await rm(path.join(ws.source, 'link'));
        await writeTree(ws.source, { 'link/': { mtime: T0 + 22 }, [`link/${EVIL}`]: { content: 'planted\n', mtime: T0 + 23 } });
      },
      hostile: () => {},
      exits: [0],
      message: /^/,
      convergesToHonest: true,
    });
    assert.deepEqual(await namesIn(sentinel), []);
  });

  // The listing and the open handle disagree: indistinguishable from a file rewritten since the
  // listing, so the pass starts over once and then gives up with rsync's "vanished" code 24.
  it('a listing that claims more bytes than the file has: exit 24 (or 12), nothing written', T, () =>
    run('size grows in listing', {
      hostile: (m, rel) =>
        (m.hooks.rewriteListing = (d, entries) =>
          d !== rel('conf.d') ? entries : entries.map((e) => (e.filename === 'local.ini' ? { ...e, attrs: { ...e.attrs, size: e.attrs.size + 100 } } : e))),
      exits: [12, 24],
      message: /changed on the master|listed/,
    }),
  );

  it('a listing that claims fewer bytes than the file has: exit 24 (or 12), nothing written', T, () =>
    run('size shrinks in listing', {
      hostile: (m, rel) =>
        (m.hooks.rewriteListing = (d, entries) =>
          d !== rel('conf.d') ? entries : entries.map((e) => (e.filename === 'local.ini' ? { ...e, attrs: { ...e.attrs, size: 3 } } : e))),
      exits: [12, 24],
      message: /changed on the master|listed/,
    }),
  );

  it('a file that grows between listing and read (every time): a race, retried once, then exit 24', T, () =>
    run('file grows before read', {
      change: (ws) => writeTree(ws.source, { 'grow.bin': { content: Buffer.alloc(64 * 1024, 2), mtime: T0 + 30 } }),
      hostile: (m, rel, ws) =>
        (m.hooks.onRequest = async (op, p) => {
          if (op === 'open' && p === rel('grow.bin')) await appendFile(path.join(ws.source, 'grow.bin'), Buffer.alloc(100_000, 3));
          return undefined;
        }),
      exits: [24],
      message: /grow\.bin.*changed on the master/,
    }),
  );

  it('a claimed 10 GiB file with the default limits: refused before any fetch, exit 25', T, () =>
    run('10 GiB claim, default limits', {
      hostile: (m, rel) => {
        m.hooks.rewriteListing = (d, entries) =>
          d !== rel('') ? entries : entries.map((e) => (e.filename === 'grow.bin' ? { ...e, attrs: { ...e.attrs, size: 10 * GiB } } : e));
        m.hooks.rewriteAttrs = (p, attrs) => (p === rel('grow.bin') ? { ...attrs, size: 10 * GiB } : attrs);
      },
      exits: [25],
      message: /grow\.bin.*--max-file-size/,
    }),
  );

  it(
    'a file rewritten in place within its listed second while read (short data, FSTAT as listed, mtime now): a race, retried, exit 24, not blamed on the master',
    T,
    () =>
      run('same-second in-place rewrite during the read', {
        hostile: (m, rel) => {
          // What a live master shows when a writer truncates, then rewrites, the file in the second it was listed.
          const now = Math.floor(Date.now() / 1000);
          const listed = (attrs: FileEntry['attrs']) => ({ ...attrs, size: 128 * 1024, mtime: now });
          m.hooks.rewriteListing = (d, entries) =>
            d !== rel('') ? entries : entries.map((e) => (e.filename === 'grow.bin' ? { ...e, attrs: listed(e.attrs) } : e));
          m.hooks.rewriteAttrs = (p, attrs) => (p === rel('grow.bin') ? listed(attrs) : attrs);
        },
        exits: [24],
        message: /grow\.bin changed on the master while it was read/,
      }),
  );

  it('a claimed 10 GiB file with limits raised: the short read is caught, memory stays bounded, exit 12', T, () =>
    run('10 GiB claim, limits raised', {
      args: ['--max-file-size', '20G', '--max-total-bytes', '20G'],
      hostile: (m, rel) => {
        m.hooks.rewriteListing = (d, entries) =>
          d !== rel('') ? entries : entries.map((e) => (e.filename === 'grow.bin' ? { ...e, attrs: { ...e.attrs, size: 10 * GiB } } : e));
        m.hooks.rewriteAttrs = (p, attrs) => (p === rel('grow.bin') ? { ...attrs, size: 10 * GiB } : attrs);
      },
      exits: [12],
      message: /served 65536 bytes of grow\.bin/,
    }),
  );
});
