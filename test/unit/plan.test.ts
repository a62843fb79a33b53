import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SafetyValveError, TransferError } from '../../src/errors.js';
import { enforceSafetyValve } from '../../src/pass/plan-pass.js';
import { desiredOwnership } from '../../src/plan/ownership.js';
import { planChanges } from '../../src/plan/plan.js';
import type { Change, IdMapping } from '../../src/plan/types.js';
import { compareNames, type Entry, rsyncOrder, type Tree } from '../../src/tree.js';

const NON_ROOT: IdMapping = { asRoot: false, uidByName: new Map(), gidByName: new Map([['xroad', 999]]), memberGids: new Set([999]) };
const ROOT: IdMapping = {
  asRoot: true,
  uidByName: new Map([
    ['xroad', 1001],
    ['postgres', 1002],
  ]),
  gidByName: new Map([['xroad', 1001]]),
  memberGids: new Set([0]),
};

type Spec = Partial<Entry> & { type?: Entry['type'] };
function tree(spec: Record<string, Spec>): Tree {
  const map = new Map<string, Entry>();
  map.set('', { path: '', type: 'dir', mode: 0o751, size: 0, mtime: 100, uid: 999, gid: 999, owner: 'xroad', group: 'xroad' });
  for (const [path, s] of Object.entries(spec)) {
    const type = s.type ?? (path.endsWith('/') ? 'dir' : 'file');
    const clean = path.replace(/\/$/, '');
    map.set(clean, {
      path: clean,
      type,
      mode: type === 'dir' ? 0o750 : 0o640,
      size: 10,
      mtime: 1000,
      uid: 999,
      gid: 999,
      owner: 'xroad',
      group: 'xroad',
      ...s,
    });
  }
  return map;
}
const summary = (changes: readonly Change[]) => changes.map((c) => `${c.kind}${c.kind === 'delete' && c.forReplace ? '!' : ''} ${c.path}`);
const plan = (source: Tree, target: Tree, ids = NON_ROOT, excluded: string[] = []) => planChanges({ source, target, targetExcluded: new Set(excluded), ids });

describe('planner', () => {
  it('orders a fresh mirror like rsync: files before dirs, each dir followed by its subtree', () => {
    const src = tree({ 'z.ini': {}, 'b/': {}, 'b/x': {}, 'a/': {}, 'a/y': {}, 'a/link': { type: 'symlink', linkTarget: 'y' } });
    const p = plan(src, tree({}));
    assert.deepEqual(summary(p.changes), ['fetch z.ini', 'mkdir a', 'symlink a/link', 'fetch a/y', 'mkdir b', 'fetch b/x']);
    assert.equal(p.totalSize, 10 * 3 + 1);
  });

  it('a suspect file (taken while racy) whose quick check matches is fetched to verify, carrying any attribute change', () => {
    const src = tree({ 'a.ini': {}, 'b.ini': { mode: 0o600 }, 'c.ini': {} });
    const dst = tree({ 'a.ini': {}, 'b.ini': {}, 'c.ini': {} });
    const p = planChanges({ source: src, target: dst, targetExcluded: new Set(), ids: NON_ROOT, suspect: (path) => path !== 'c.ini' });
    assert.deepEqual(summary(p.changes), ['fetch a.ini', 'fetch b.ini']);
    const [a, b] = p.changes as Extract<Change, { kind: 'fetch' }>[];
    assert.equal(a!.verify, true);
    assert.equal(a!.ifIdentical, undefined);
    assert.equal(b!.verify, true);
    assert.equal(b!.ifIdentical?.kind, 'attrs');
    assert.equal(b!.ifIdentical?.mode, true);
  });

  it('plans nothing when both trees agree', () => {
    const t = tree({ 'a/': {}, 'a/f': {}, l: { type: 'symlink', linkTarget: 'a/f' } });
    assert.deepEqual(plan(t, t).changes, []);
  });

  it('the in-step shortcut (no sorting) agrees with the full planner at its edges', () => {
    // As many entries on each side, but not the same paths: a fetch and a deletion, not "in step".
    assert.deepEqual(summary(plan(tree({ 'a.ini': {} }), tree({ 'b.ini': {} })).changes), ['fetch a.ini', 'delete b.ini']);
    // A master special (skipped) where the slave has a file: nothing to do, and the file is not deleted.
    const special = plan(tree({ fifo: { type: 'other' }, 'x.ini': {} }), tree({ fifo: {}, 'x.ini': {} }));
    assert.deepEqual(special.changes, []);
    assert.equal(special.sourceFiles, 1);
    assert.equal(special.targetFiles, 2);
    // A type change alone, same paths and sizes: replaced.
    assert.deepEqual(summary(plan(tree({ d: { type: 'dir' } }), tree({ d: {} })).changes), ['delete! d', 'mkdir d']);
    // An in-step tree's summary counts are those of the full plan.
    const t = tree({ 'a/': {}, 'a/f': { size: 7 }, l: { type: 'symlink', linkTarget: 'a/f' } });
    assert.deepEqual({ ...plan(t, t), changes: undefined }, { changes: undefined, totalSize: 7 + 3, sourceFiles: 1, targetFiles: 1, keptNonEmpty: [] });
  });

  it('fetches on size or mtime difference (quick check) and only sets attributes otherwise', () => {
    const src = tree({ size: { size: 11 }, time: { mtime: 2000 }, perm: { mode: 0o600 }, same: {} });
    const dst = tree({ size: {}, time: {}, perm: {}, same: {} });
    const p = plan(src, dst);
    assert.deepEqual(summary(p.changes), ['attrs perm', 'fetch size', 'fetch time']);
    const attrs = p.changes[0] as Extract<Change, { kind: 'attrs' }>;
    assert.equal(attrs.mode, true);
    assert.equal(attrs.mtime, false);
  });

  it('deletes extraneous entries in reverse order, a directory after its contents', () => {
    const src = tree({ 'keep/': {} });
    const dst = tree({ 'keep/': {}, 'extra/': {}, 'extra/sub/': {}, 'extra/sub/f': {}, 'zzz.ini': {}, 'keep/old': {} });
    const p = plan(src, dst, NON_ROOT);
    assert.deepEqual(summary(p.changes), ['delete zzz.ini', 'delete extra/sub/f', 'delete extra/sub', 'delete extra', 'delete keep/old']);
  });

  it('keeps a doomed directory that holds an excluded path, deleting the rest', () => {
    const src = tree({});
    const dst = tree({ 'jetty/': {}, 'jetty/old.xml': {} });
    const p = plan(src, dst, NON_ROOT, ['jetty/foo.tmp']);
    assert.deepEqual(summary(p.changes), ['delete jetty/old.xml']);
    assert.deepEqual(p.keptNonEmpty, ['jetty']);
  });

  it('replaces across types: dir→file removes the subtree first, file→symlink is a single rename', () => {
    const src = tree({ d: {}, f: { type: 'symlink', linkTarget: 'd' }, 'x/': {} });
    const dst = tree({ 'd/': {}, 'd/inner': {}, f: {}, x: {} });
    const p = plan(src, dst);
    assert.deepEqual(summary(p.changes), ['delete! d/inner', 'delete! d', 'fetch d', 'symlink f', 'delete! x', 'mkdir x']);
  });

  it('refuses to replace a directory that holds excluded files', () => {
    const src = tree({ conf: {} });
    const dst = tree({ 'conf/': {} });
    assert.throws(() => plan(src, dst, NON_ROOT, ['conf/node.ini']), TransferError);
  });

  it('changes a symlink whose target differs, and skips devices and specials', () => {
    const src = tree({ l: { type: 'symlink', linkTarget: 'new' }, fifo: { type: 'other' } });
    const dst = tree({ l: { type: 'symlink', linkTarget: 'old' } });
    assert.deepEqual(summary(plan(src, dst).changes), ['symlink l']);
  });

  it('owner and group like rsync -a: by name as root, group only if member otherwise', () => {
    const e: Entry = { path: 'k', type: 'file', mode: 0o400, size: 1, mtime: 1, uid: 26, gid: 26, owner: 'postgres', group: 'nosuchgroup' };
    assert.deepEqual(desiredOwnership(e, ROOT), { uid: 1002, gid: 26 });
    assert.deepEqual(desiredOwnership({ ...e, uid: 0, owner: 'xroad' }, ROOT), { uid: 0, gid: 26 });
    assert.deepEqual(desiredOwnership({ ...e, group: 'xroad', gid: 5 }, NON_ROOT), { gid: 999 });
    assert.deepEqual(desiredOwnership(e, NON_ROOT), {});
    const p = plan(tree({ f: { owner: 'postgres', uid: 26 } }), tree({ f: { uid: 999 } }), ROOT);
    const f = p.changes.find((c) => c.path === 'f');
    assert.equal(f?.kind, 'attrs');
    assert.deepEqual(f.kind === 'attrs' && [f.uid, f.gid, f.owner.uid, f.owner.gid], [true, true, 1002, 1001]);
  });
});

describe('safety valve', () => {
  const settings = { force: false, maxDelete: undefined, sourceDir: '/etc/xroad' };
  it('refuses an empty master when the slave has files', () => {
    const p = plan(tree({}), tree({ a: {}, b: {} }));
    assert.throws(() => enforceSafetyValve(p, 1, settings), SafetyValveError);
    assert.doesNotThrow(() => enforceSafetyValve(p, 1, { ...settings, force: true }));
  });
  it('refuses deleting more than half of the files by default, or more than --max-delete', () => {
    const dst = tree({ a: {}, b: {}, c: {}, d: {} });
    const three = plan(tree({ a: {} }), dst);
    assert.throws(() => enforceSafetyValve(three, 2, settings), /refusing to delete 3 files .*\(limit 2/);
    const two = plan(tree({ a: {}, b: {} }), dst);
    assert.doesNotThrow(() => enforceSafetyValve(two, 3, settings));
    assert.throws(() => enforceSafetyValve(two, 3, { ...settings, maxDelete: 1 }), SafetyValveError);
  });
  it('names the files it would delete as existing only on this slave, and how to protect or allow them', () => {
    const dst = tree({ 'a.ini': {}, 'local/': {}, 'local/x.conf': {}, 'local/y.conf': {}, 'local/z.conf': {}, 'v.conf': {}, 'w.conf': {}, 'u.conf': {} });
    const p = plan(tree({ 'a.ini': {} }), dst);
    assert.throws(
      () => enforceSafetyValve(p, 2, settings),
      (err: SafetyValveError) => {
        assert.match(
          err.message,
          /^refusing to delete 6 files that exist only on this slave, not on the master's \/etc\/xroad \(limit 3: half of the synced files\): /,
        );
        assert.match(err.message, /\/local\/x\.conf, \/local\/y\.conf, \/local\/z\.conf, \/u\.conf, \/v\.conf and 1 more$/);
        assert.match(err.hint ?? '', /files of this slave: protect them with --exclude \(e\.g\. --exclude \/local\/x\.conf\) in XROAD_SYNC_OPTS/);
        assert.match(err.hint ?? '', /--force/);
        assert.match(err.hint ?? '', /--max-delete/);
        return true;
      },
    );
  });
});

describe('rsyncOrder', () => {
  it('sorts names bytewise (uppercase and dots before lowercase)', () => {
    const paths = ['', 'b', 'B', '.x', 'a.ini'];
    assert.deepEqual(
      rsyncOrder(paths, () => false),
      ['', '.x', 'B', 'a.ini', 'b'],
    );
  });
});

describe('compareNames', () => {
  it('orders like unsigned UTF-8 bytes, also past U+D800', () => {
    const names = ['b', 'a', '\u{1F600}', '\uFF21', 'é', 'Z', '.x'];
    const bytewise = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    assert.deepEqual([...names].sort(compareNames), bytewise);
  });
});
