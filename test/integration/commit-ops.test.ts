/**
 * The commit as data (buildCommitOps) and its executor (executeOps), without
 * sshd or SIGKILL: the op list's order is checked as a table, and a crash
 * after every prefix of the list is simulated by running the prefix, then
 * replaying the whole list as recovery does. Every prefix must end in the
 * master's tree: that is the journal's promise.
 */
import assert from 'node:assert/strict';
import { chmod, copyFile, lutimes, mkdir, readdir, readlink, rm, symlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { commitChanges, executeOps } from '../../src/commit/commit.js';
import { fsyncDir } from '../../src/commit/fsync-dir.js';
import { buildCommitOps, type CommitOp } from '../../src/commit/ops.js';
import { LocalIoError } from '../../src/errors.js';
import { compileFilter } from '../../src/filter/rsync-filter.js';
import { scanTarget } from '../../src/local/scan.js';
import { planChanges } from '../../src/plan/plan.js';
import type { Change, IdMapping } from '../../src/plan/types.js';
import type { Staging } from '../../src/stage/stage.js';
import { depthOf, type Tree } from '../../src/tree.js';
import { makeTempDir, readTree, type TreeSpec, writeTree } from '../helpers/sshd.js';

const T0 = 1_700_000_000;
const IDS: IdMapping = { asRoot: false, uidByName: new Map(), gidByName: new Map(), memberGids: new Set([process.getgid!()]) };
const NO_NAMES = { userById: new Map<number, string>(), groupById: new Map<number, string>() };
const file = (content: string, dt: number, mode = 0o640) => ({ content, mode, mtime: T0 + dt });
const dir = (dt: number, mode = 0o750) => ({ mode, mtime: T0 + dt });

/** The master: new, changed, replaced-by-type and attribute-only entries, keyconf.xml sorted before its .p12. */
const MASTER: TreeSpec = {
  'conf.d/': dir(100),
  'conf.d/local.ini': file('[proxy]\nnew\n', 1),
  'conf.d/mode-only.ini': file('same', 2, 0o600),
  'signer/': dir(101),
  'signer/keyconf.xml': file('<keyConf>new</keyConf>', 3),
  'signer/softtoken/': dir(102),
  'signer/softtoken/zz.p12': file('new key', 4),
  'was-dir': file('now a file', 5),
  'was-file/': dir(103),
  'was-file/inside.ini': file('inside', 6),
  'new/a/b/': dir(104, 0o700),
  'new/a/b/deep.ini': file('deep', 7),
  'new/': dir(105),
  'new/a/': dir(106),
  link: { symlink: 'conf.d/local.ini', mtime: T0 + 8 },
};

/** The slave before the pass. */
const SLAVE: TreeSpec = {
  'conf.d/': dir(100),
  'conf.d/local.ini': file('[proxy]\nold\n', 0),
  'conf.d/mode-only.ini': file('same', 2, 0o644),
  'conf.d/gone.ini': file('gone', 9),
  'signer/': dir(101),
  'signer/keyconf.xml': file('<keyConf>old</keyConf>', 0),
  'was-dir/': dir(107),
  'was-dir/child.ini': file('child', 10),
  'was-file': file('a file', 11),
  'old/': dir(108),
  'old/sub/': dir(109),
  'old/sub/stale.ini': file('stale', 12),
};

/** writeTree, then the root's own mode and mtime (writeTree's keys name entries below the root). */
async function writeRooted(root: string, spec: TreeSpec, rootMtime: number): Promise<void> {
  await writeTree(root, spec);
  await chmod(root, 0o751);
  await utimes(root, rootMtime, rootMtime);
}

const scan = async (root: string): Promise<Tree> => (await scanTarget(root, compileFilter([]), { names: NO_NAMES })).tree;

/** Stages every fetch and symlink the way stage/ does: a temp at the target root with the master's mode and mtime. */
async function stage(changes: readonly Change[], sourceRoot: string, targetRoot: string): Promise<Map<string, string>> {
  const temps = new Map<string, string>();
  let n = 0;
  for (const c of changes) {
    if (c.kind !== 'fetch' && c.kind !== 'symlink') continue;
    const temp = `.xroad-sync.${(n++).toString(16).padStart(12, '0')}.tmp`;
    const abs = path.join(targetRoot, temp);
    if (c.kind === 'fetch') {
      await copyFile(path.join(sourceRoot, c.path), abs);
      await chmod(abs, c.source.mode);
      await utimes(abs, c.source.mtime, c.source.mtime);
    } else {
      await symlink(await readlink(path.join(sourceRoot, c.path)), abs);
      await lutimes(abs, c.source.mtime, c.source.mtime);
    }
    temps.set(c.path, temp);
  }
  return temps;
}

const describeOp = (op: CommitOp): string => (op.op === 'fsync' ? 'fsync' : op.op === 'remove' ? `${op.step} ${op.path}` : `${op.op} ${op.path}`);

describe('commit operations', () => {
  let work: string;
  let sourceRoot: string;
  let source: Tree;

  before(async () => {
    work = await makeTempDir('xroad-sync-commit-ops-');
    sourceRoot = path.join(work, 'master');
    await writeRooted(sourceRoot, MASTER, T0 + 900);
    source = await scan(sourceRoot);
  });
  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** A fresh slave, planned and staged: what a pass has at the moment its commit starts. */
  async function stagedSlave(name: string): Promise<{ root: string; ops: CommitOp[] }> {
    const root = path.join(work, name);
    await writeRooted(root, SLAVE, T0 + 800);
    const changes = planChanges({ source, target: await scan(root), targetExcluded: new Set(), ids: IDS }).changes;
    const temps = await stage(changes, sourceRoot, root);
    return { root, ops: buildCommitOps(changes, temps, source) };
  }

  it('orders the steps: replaced entries, new dirs, renames with keyconf.xml last, attrs, deletions, dir attrs deepest first, fsync', async () => {
    const { ops } = await stagedSlave('order');
    const step = (op: CommitOp): number =>
      op.op === 'remove' ? (op.step === 'replace-remove' ? 0 : 4) : op.op === 'mkdir' ? 1 : op.op === 'rename' ? 2 : op.op === 'attrs' ? (op.dir ? 5 : 3) : 6;
    const steps = ops.map(step);
    assert.deepEqual(
      steps,
      [...steps].sort((a, b) => a - b),
      `steps out of order:\n${ops.map(describeOp).join('\n')}`,
    );

    const renames = ops.filter((o) => o.op === 'rename').map((o) => o.path);
    assert.equal(renames.at(-1), 'signer/keyconf.xml', 'keyconf.xml must be renamed after every file it may name');
    assert.ok(renames.includes('signer/softtoken/zz.p12') && renames.includes('was-dir') && renames.includes('link'));

    assert.ok(ops.some((o) => o.op === 'remove' && o.step === 'replace-remove' && o.path === 'was-dir'));
    assert.ok(ops.some((o) => o.op === 'remove' && o.step === 'replace-remove' && o.path === 'was-file'));

    const deletions = ops.filter((o): o is Extract<CommitOp, { op: 'remove' }> => o.op === 'remove' && o.step === 'delete').map((o) => o.path);
    assert.deepEqual(new Set(deletions), new Set(['conf.d/gone.ini', 'old/sub/stale.ini', 'old/sub', 'old']));
    assert.ok(
      deletions.indexOf('old/sub/stale.ini') < deletions.indexOf('old/sub') && deletions.indexOf('old/sub') < deletions.indexOf('old'),
      'deletions deepest first',
    );

    const dirAttrs = ops.filter((o): o is Extract<CommitOp, { op: 'attrs' }> => o.op === 'attrs' && o.dir);
    const depths = dirAttrs.map((o) => depthOf(o.path));
    assert.deepEqual(
      depths,
      [...depths].sort((a, b) => b - a),
      'directory attributes deepest first',
    );
    assert.ok(
      dirAttrs.some((o) => o.path === 'new/a/b' && o.mode === 0o700),
      'a new directory gets its real mode at the end',
    );
    assert.ok(
      dirAttrs.some((o) => o.path === '' && o.mtime === T0 + 900),
      'the root gets the master mtime back',
    );

    const fsync = ops.at(-1);
    assert.equal(fsync?.op, 'fsync');
    for (const p of ['', 'conf.d', 'signer', 'signer/softtoken', 'new/a/b']) {
      assert.ok(fsync.op === 'fsync' && fsync.dirs.includes(p), `directory '${p}' changed but is not fsynced`);
    }
  });

  it('a live commit turns the staged slave into the master', async () => {
    const { root, ops } = await stagedSlave('live');
    await executeOps(ops, { root, recheck: true });
    assert.deepEqual(Object.fromEntries(await readTree(root, { includeRoot: true })), Object.fromEntries(await readTree(sourceRoot, { includeRoot: true })));
  });

  it('recovery from a crash after any prefix of the op list ends in the master tree, and a second replay changes nothing', async () => {
    const expected = Object.fromEntries(await readTree(sourceRoot, { includeRoot: true }));
    const { ops } = await stagedSlave('probe');
    assert.ok(ops.length > 15, `the scenario should have many ops, has ${ops.length}`);
    for (let done = 0; done <= ops.length; done++) {
      const { root, ops: same } = await stagedSlave(`prefix-${done}`);
      await executeOps(same.slice(0, done), { root, recheck: false });
      await executeOps(same, { root, recheck: false });
      assert.deepEqual(
        Object.fromEntries(await readTree(root, { includeRoot: true })),
        expected,
        `crash after ${done} ops (${done ? describeOp(same[done - 1]!) : 'none'})`,
      );
      await executeOps(same, { root, recheck: false });
      assert.deepEqual(Object.fromEntries(await readTree(root, { includeRoot: true })), expected, `second replay after ${done} ops`);
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('fsyncDir', () => {
  it('fsyncs a directory, passes over one removed or replaced later in the commit, and reports any other failure', async () => {
    const base = await makeTempDir('xroad-sync-fsyncdir-');
    try {
      await writeTree(base, { 'd/': dir(0), f: file('x', 0) });
      await fsyncDir(path.join(base, 'd'));
      await fsyncDir(path.join(base, 'gone')); // ENOENT: removed later in the same commit
      await fsyncDir(path.join(base, 'f', 'sub')); // ENOTDIR: its parent was replaced by a file
      await assert.rejects(fsyncDir(path.join(base, 'x'.repeat(300))), /ENAMETOOLONG/);
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });
});

describe('commitChanges when the staged files cannot be flushed', () => {
  it('changes nothing: no journal, no owner file, the target root keeps its mtime, the flush error is the one reported', async () => {
    const base = await makeTempDir('xroad-sync-commit-flush-');
    const root = path.join(base, 'target');
    const stateDir = path.join(base, 'state');
    await writeTree(root, { 'a.ini': file('old', 0), '.staged.tmp': file('new', 1) });
    await mkdir(stateDir);
    await utimes(root, T0, T0);
    const flushFailed = new LocalIoError('cannot fsync a staged file', { subject: path.join(root, '.staged.tmp') });
    const staging: Staging = {
      temps: new Map([['a.ini', path.join(root, '.staged.tmp')]]),
      identical: new Set(),
      contentHashes: new Map(),
      durable: Promise.reject(flushFailed),
      discard: async () => undefined,
      forget: () => undefined,
    };
    staging.durable.catch(() => undefined);
    const source: Tree = new Map([['a.ini', { path: 'a.ini', type: 'file', mode: 0o640, size: 3, mtime: T0 + 1, uid: 0, gid: 0 }]]);
    const changes: Change[] = [{ kind: 'fetch', path: 'a.ini', source: source.get('a.ini')!, owner: {} } as Change];
    await assert.rejects(commitChanges(changes, staging, { targetRoot: root, source, stateDir }), (err) => err === flushFailed);
    const after = await readTree(root, { includeRoot: true });
    assert.deepEqual([...after.keys()].sort(), ['', '.staged.tmp', 'a.ini'], 'no owner file left, nothing renamed');
    assert.equal(after.get('')?.mtime, T0, "the root's mtime is as it was");
    assert.deepEqual(await readdir(stateDir), [], 'no journal');
    await rm(base, { recursive: true, force: true });
  });
});
