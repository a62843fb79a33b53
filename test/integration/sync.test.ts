/**
 * `xroad-sync sync` end to end, as operators run it: the compiled CLI as a
 * child process against a real OpenSSH master on 127.0.0.1 (see
 * helpers/sshd.ts). Mirror, excludes, convergence, idle passes, log format.
 * Failure modes and guards are in sync-edge.test.ts.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, utimes } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  assertLogFormat,
  describeRun,
  itemLines,
  logMessages,
  obj,
  onlyPaths,
  type RunSyncOptions,
  runSync,
  type SyncRun,
  statTree,
  totalSize,
  withoutPaths,
} from '../helpers/run-sync.js';
import { makeTempDir, readTree, suiteMaster, type TestMaster, type TreeSpec, writeTree } from '../helpers/sshd.js';

const T = { timeout: 90_000 };
/** Fixed mtimes (whole seconds, as SFTP v3 carries them). */
const T0 = 1_700_000_000;

/** What the default excludes remove from xroadTree(): never transferred. */
const XROAD_EXCLUDED = [
  'db.properties',
  'conf.d/node.ini',
  'conf.d/addons/db.properties',
  'signer/tmpconf1234567890.tmp',
  'postgresql',
  'nginx',
  'globalconf',
  'jetty',
  'gpghome',
];

/** A 7.x security server's /etc/xroad, after README §2.2 (sizes and modes as the packages leave them). */
function xroadTree(): TreeSpec {
  const keyconf = `<?xml version="1.0" encoding="UTF-8"?>\n<keyConf>\n${'  <device><deviceType>softToken</deviceType><key active="true"><keyId>0123456789abcdef0123456789abcdef01234567</keyId></key></device>\n'.repeat(100)}</keyConf>\n`;
  const keyId = 'a'.repeat(8) + '0123456789abcdef0123456789abcdef';
  const file = (content: string | Buffer, mode: number, dt: number) => ({ content, mode, mtime: T0 + dt });
  return {
    '': { mode: 0o751, mtime: T0 + 900 },
    'conf.d/': { mode: 0o750, mtime: T0 + 100 },
    'conf.d/local.ini': file('[proxy]\nhealth-check-port=5588\n', 0o640, 1),
    'conf.d/proxy.ini': file('; proxy\n'.repeat(643), 0o640, 2),
    'conf.d/signer.ini': file('x'.repeat(828), 0o640, 3),
    'conf.d/node.ini': file('[node]\ntype = master\n', 0o640, 4),
    'conf.d/link.ini': { symlink: 'local.ini', mtime: T0 + 5 },
    'conf.d/addons/': { mode: 0o750, mtime: T0 + 101 },
    'conf.d/addons/message-log.ini': file('m'.repeat(2486), 0o640, 6),
    'conf.d/addons/db.properties': file('deep db.properties is excluded too\n', 0o640, 7),
    'services/': { mode: 0o750, mtime: T0 + 102 },
    'services/global.conf': file('g'.repeat(2121), 0o640, 8),
    'services/local.properties': file('', 0o640, 9),
    'signer/': { mode: 0o750, mtime: T0 + 103 },
    'signer/keyconf.xml': file(keyconf, 0o640, 10),
    'signer/tmpconf1234567890.tmp': file(keyconf.slice(0, 100), 0o660, 11),
    'signer/softtoken/': { mode: 0o750, mtime: T0 + 104 },
    'signer/softtoken/.softtoken.p12': file(randomBytes(2514), 0o640, 12),
    [`signer/softtoken/${keyId}.p12`]: file(randomBytes(2653), 0o640, 13),
    'ssl/': { mode: 0o750, mtime: T0 + 105 },
    'ssl/openssl.cnf': file('o'.repeat(983), 0o640, 14),
    'ssl/internal.crt': file('-----BEGIN CERTIFICATE-----\n' + 'c'.repeat(1200), 0o660, 15),
    'ssl/internal.key': file('-----BEGIN PRIVATE KEY-----\n' + 'k'.repeat(1700), 0o660, 16),
    'ssl/internal.p12': file(randomBytes(2600), 0o660, 17),
    'backup.d/': { mode: 0o750, mtime: T0 + 106 },
    'backup.d/00_xroad-confclient': file('', 0o440, 18),
    'backup.d/10_xroad-signer': file('', 0o440, 19),
    'backup.d/30_xroad-proxy': file('', 0o440, 20),
    'messagelog/': { mode: 0o700, mtime: T0 + 107 },
    'messagelog/messagelog.p12': file(randomBytes(400), 0o600, 21),
    'devices.ini': file('d'.repeat(4181), 0o640, 22),
    'configuration-anchor.xml': file('<anchor/>'.repeat(300), 0o640, 23),
    autologin: file('1234\n', 0o600, 24),
    'db.properties': file('serverconf.hibernate.connection.password=secret\n', 0o640, 25),
    'empty/': { mode: 0o755, mtime: T0 + 108 },
    'deep/': { mode: 0o750, mtime: T0 + 109 },
    'deep/empty/': { mode: 0o700, mtime: T0 + 110 },
    // Links are copied as links: never followed, whether they point at a file, a directory or nowhere.
    'hostname-link': { symlink: '/etc/hostname', mtime: T0 + 26 },
    'signer-link': { symlink: 'signer', mtime: T0 + 27 },
    'dangling-link': { symlink: '../no/such/file', mtime: T0 + 28 },
    'globalconf/instance-identifier': 'EE\n',
    'globalconf/EE/shared-params.xml': 's'.repeat(20_000),
    'gpghome/': { mode: 0o700 },
    'gpghome/pubring.kbx': 'gpg',
    'postgresql/server.key': { content: 'pg key', mode: 0o400 },
    'nginx/default-xroad.conf': 'nginx',
    'jetty/clientproxy.xml': { content: 'j'.repeat(445), mode: 0o640 },
  };
}

/** writeTree with '' meaning the root itself (writeTree wants a key). */
async function writeSpec(root: string, spec: TreeSpec): Promise<void> {
  const { '': rootSpec, ...rest } = spec;
  await writeTree(root, rest);
  if (rootSpec && typeof rootSpec === 'object' && !Buffer.isBuffer(rootSpec) && !('symlink' in rootSpec)) {
    if (rootSpec.mtime !== undefined) await utimes(root, rootSpec.mtime, rootSpec.mtime);
    if (rootSpec.mode !== undefined) await chmod(root, rootSpec.mode);
  }
}

const readAll = (root: string) => readTree(root, { includeRoot: true });

function ok(run: SyncRun): void {
  assert.equal(run.status, 0, describeRun(run));
}

describe('xroad-sync sync against an OpenSSH master', () => {
  let master!: TestMaster;
  const scratch = suiteMaster((m) => (master = m));

  async function workspace(): Promise<{ source: string; target: string; state: string; root: string }> {
    const root = await makeTempDir('xroad-sync-it-');
    scratch.push(root);
    const ws = { root, source: path.join(root, 'src'), target: path.join(root, 'dst'), state: path.join(root, 'state') };
    await Promise.all([mkdir(ws.source), mkdir(ws.target), mkdir(ws.state)]);
    return ws;
  }

  const sync = (ws: { source: string; target: string; state: string }, extra: Partial<RunSyncOptions> = {}) =>
    runSync({ master, source: ws.source, target: ws.target, stateDir: ws.state, ...extra });

  it('mirrors an X-Road /etc/xroad: contents, modes, mtimes, symlinks, empty dirs; rsync-format log', T, async () => {
    const ws = await workspace();
    await writeSpec(ws.source, xroadTree());
    const run = await sync(ws);
    ok(run);

    const expected = withoutPaths(await readAll(ws.source), XROAD_EXCLUDED);
    const got = await readAll(ws.target);
    assert.deepEqual(obj(got), obj(expected));

    // The same facts spelled out, so a failure reads as what broke.
    assert.equal(got.get('')?.mode, 0o751, 'root mode');
    assert.equal(got.get('')?.mtime, T0 + 900, 'root mtime');
    assert.equal(got.get('ssl/internal.key')?.mode, 0o660);
    assert.equal(got.get('backup.d/10_xroad-signer')?.mode, 0o440);
    assert.equal(got.get('messagelog')?.mode, 0o700);
    assert.equal(got.get('signer')?.mode, 0o750);
    assert.equal(got.get('signer/keyconf.xml')?.mtime, T0 + 10);
    assert.ok((got.get('signer/keyconf.xml')?.size ?? 0) > 10_000);
    assert.equal(got.get('signer')?.mtime, T0 + 103, "directory mtimes are the master's");
    assert.deepEqual([got.get('deep/empty')?.type, got.get('empty')?.type], ['dir', 'dir']);
    assert.deepEqual(
      ['hostname-link', 'signer-link', 'dangling-link', 'conf.d/link.ini'].map((p) => [got.get(p)?.type, got.get(p)?.linkTarget]),
      [
        ['symlink', '/etc/hostname'],
        ['symlink', 'signer'],
        ['symlink', '../no/such/file'],
        ['symlink', 'local.ini'],
      ],
    );
    for (const p of XROAD_EXCLUDED) assert.equal(got.has(p), false, `${p} is excluded but was transferred`);

    const total = assertLogFormat(run.log, { code: 0 });
    assert.equal(total, totalSize(expected), 'total size = file bytes + symlink target lengths after excludes');
    const items = itemLines(run.log);
    for (const line of [
      'cd+++++++++ conf.d/',
      'cL+++++++++ conf.d/link.ini -> local.ini',
      '>f+++++++++ conf.d/local.ini',
      'cd+++++++++ signer/',
      '>f+++++++++ signer/keyconf.xml',
      'cd+++++++++ signer/softtoken/',
      '>f+++++++++ backup.d/00_xroad-confclient',
      'cL+++++++++ signer-link -> signer',
      'cd+++++++++ deep/empty/',
    ]) {
      assert.ok(items.includes(line), `missing log line ${JSON.stringify(line)}:\n${run.log}`);
    }
    // rsync's file-list order: a directory's files, then its subdirectories, each followed by its subtree.
    const at = (l: string) => items.indexOf(l);
    assert.ok(at('cd+++++++++ signer/') < at('>f+++++++++ signer/keyconf.xml'), 'signer/ before its files');
    assert.ok(at('>f+++++++++ signer/keyconf.xml') < at('cd+++++++++ signer/softtoken/'), 'files before subdirectories');
    assert.ok(at('>f+++++++++ devices.ini') < at('cd+++++++++ backup.d/'), 'top-level files before top-level dirs');
    assert.ok(!items.some((l) => /db\.properties|node\.ini|\.tmp|postgresql|nginx|globalconf|jetty|gpghome/.test(l)), 'an excluded path itemized');

    assert.equal(passRecord(run).result, 'ok');
  });

  it("never transfers the default excludes, and leaves the target's own excluded files alone", T, async () => {
    const ws = await workspace();
    await writeTree(ws.source, {
      'db.properties': 'master db',
      'conf.d/local.ini': 'local',
      'conf.d/db.properties': 'deeper db',
      'sub/conf.d/node.ini': 'anchored pattern: not excluded here',
      'sub/postgresql/keep': 'anchored pattern: not excluded here',
      'db.properties.bak': 'not an exact name match: transferred',
      'x.tmpl': 'not *.tmp: transferred',
      'signer/tmpconf42.tmp': 'atomic save in progress',
      'x.tmp/inner.ini': 'a directory named *.tmp is excluded whole',
      'nginx/site': 'legacy',
      'globalconf/instance-identifier': 'EE',
      'gpghome/': { mode: 0o700 },
      'gpghome/pubring.kbx': 'master gpg',
      'signer/keyconf.xml': '<keyConf/>',
    });
    // The slave's own excluded state; the master has none of these paths (or other content under them).
    const slaveOwn: TreeSpec = {
      'db.properties': { content: 'slave db password', mtime: T0 },
      'conf.d/node.ini': { content: '[node]\ntype = slave\n', mode: 0o640, mtime: T0 + 1 },
      'postgresql/': { mode: 0o755 },
      'postgresql/server.key': { content: 'slave pg key', mode: 0o400, mtime: T0 + 2 },
      'jetty/clientproxy.xml': { content: 'slave jetty', mtime: T0 + 3 },
      'gpghome/trustdb.gpg': { content: 'slave gpg', mtime: T0 + 4 },
      'signer/tmpconf99.tmp': { content: 'slave temp', mtime: T0 + 5 },
      'old/db.properties': { content: 'keeps old/ alive', mtime: T0 + 6 },
      'old/stale.ini': 'master lacks old/: deleted',
    };
    await writeTree(ws.target, slaveOwn);
    const protectedPaths = ['db.properties', 'conf.d/node.ini', 'postgresql', 'jetty', 'gpghome', 'signer/tmpconf99.tmp', 'old/db.properties'];
    const before = onlyPaths(await readTree(ws.target), protectedPaths);
    const beforeStat = onlyPaths(await statTree(ws.target), protectedPaths);

    const run = await sync(ws);
    ok(run);
    assertLogFormat(run.log, { code: 0 });

    const got = await readTree(ws.target);
    assert.deepEqual(obj(onlyPaths(got, protectedPaths)), obj(before), "the slave's excluded files changed");
    const afterStat = onlyPaths(await statTree(ws.target), protectedPaths);
    for (const [p, st] of beforeStat) {
      if (st.type === 'dir') continue; // a directory's ctime/mtime may move when a sibling is added; its files are checked
      assert.deepEqual(afterStat.get(p), st, `${p} was rewritten (inode/mtime/ctime)`);
    }
    assert.equal(got.get('db.properties')?.content, 'slave db password');
    assert.equal(got.has('conf.d/db.properties'), false, 'db.properties at depth must not be transferred');
    assert.equal(got.has('x.tmp'), false, 'a directory named x.tmp must not be transferred');
    assert.equal(got.has('signer/tmpconf42.tmp'), false);
    assert.equal(got.has('nginx'), false);
    assert.equal(got.has('globalconf'), false);
    assert.equal(got.has('gpghome/pubring.kbx'), false);
    for (const p of ['sub/conf.d/node.ini', 'sub/postgresql/keep', 'db.properties.bak', 'x.tmpl', 'conf.d/local.ini', 'signer/keyconf.xml']) {
      assert.equal(got.get(p)?.type, 'file', `${p} should be transferred`);
    }
    // rsync: the directory holding a protected file is not deleted, its other content is.
    assert.equal(got.has('old/stale.ini'), false, 'old/stale.ini should be deleted');
    assert.equal(got.get('old')?.type, 'dir');
    const messages = logMessages(run.log);
    assert.ok(messages.includes('*deleting   old/stale.ini'), run.log);
    assert.ok(messages.includes('cannot delete non-empty directory: old'), run.log);
    assert.ok(!messages.some((m) => m.startsWith('*deleting') && /db\.properties|node\.ini|postgresql|jetty|gpghome|tmpconf99/.test(m)), run.log);
  });

  it('--exclude adds to the defaults; --no-default-excludes drops them', T, async () => {
    const ws = await workspace();
    await writeTree(ws.source, {
      'db.properties': 'db',
      'conf.d/node.ini': 'node',
      'conf.d/local.ini': 'local',
      'conf.d/keep.xml': 'xml',
      'x.tmp/f': 'tmp dir',
      'jetty/clientproxy.xml': 'jetty',
    });
    const added = await sync(ws, { args: ['--exclude', '*.ini'] });
    ok(added);
    const a = await readTree(ws.target);
    assert.deepEqual([...a.keys()], ['conf.d', 'conf.d/keep.xml'], 'defaults plus *.ini');

    const ws2 = await workspace();
    await writeTree(ws2.source, await specOf(ws.source));
    await writeTree(ws2.target, { 'jetty/slave-only.xml': 'not protected without the defaults' });
    const none = await sync({ ...ws2 }, { args: ['--no-default-excludes'] });
    ok(none);
    assert.deepEqual(obj(await readAll(ws2.target)), obj(await readAll(ws2.source)), 'everything is transferred, the unprotected extra deleted');

    const ws3 = await workspace();
    await writeTree(ws3.source, await specOf(ws.source));
    const only = await sync(ws3, { args: ['--no-default-excludes', '--exclude', 'db.properties'] });
    ok(only);
    assert.deepEqual(
      [...(await readTree(ws3.target)).keys()],
      ['conf.d', 'conf.d/keep.xml', 'conf.d/local.ini', 'conf.d/node.ini', 'jetty', 'jetty/clientproxy.xml', 'x.tmp', 'x.tmp/f'],
    );
  });

  /** Pass 1 from `v1`, then pass 2 from a second master tree `v2` into the same target. */
  async function twoPasses(v1: TreeSpec, v2: TreeSpec): Promise<{ run: SyncRun; target: string; src2: string }> {
    const ws = await workspace();
    const filler: TreeSpec = { '': { mtime: T0 } };
    for (let i = 0; i < 20; i++) filler[`filler/f${String(i).padStart(2, '0')}.ini`] = { content: `filler ${i}`, mtime: T0 };
    await writeSpec(ws.source, { ...filler, ...v1 });
    ok(await sync(ws));
    assert.deepEqual(obj(await readAll(ws.target)), obj(await readAll(ws.source)), 'first pass');
    const src2 = path.join(ws.root, 'src2');
    await mkdir(src2);
    await writeSpec(src2, { ...filler, '': { mtime: T0 + 7 }, ...v2 });
    const run = await sync({ ...ws, source: src2 }, { logFile: path.join(ws.state, 'second.log') });
    ok(run);
    assertLogFormat(run.log, { code: 0 });
    return { run, target: ws.target, src2 };
  }

  function assertItems(run: SyncRun, expected: readonly string[]): string[] {
    const items = itemLines(run.log);
    for (const line of expected) assert.ok(items.includes(line), `missing ${JSON.stringify(line)} in:\n${run.log}`);
    return items;
  }

  it('converges in one pass: modify, add, delete, file->dir, file<->symlink, retarget, chmod-only, mtime-only', T, async () => {
    const { run, target, src2 } = await twoPasses(
      {
        'same-size.ini': { content: 'aaaa', mtime: T0 },
        'other-size.ini': { content: 'short', mtime: T0 },
        'deleted.ini': 'goes away',
        f2d: 'file becoming a directory',
        f2l: 'file becoming a symlink',
        l2f: { symlink: 'filler/f00.ini', mtime: T0 },
        retarget: { symlink: 'filler/f01.ini', mtime: T0 },
        'chmod-only.ini': { content: 'perm', mode: 0o640, mtime: T0 },
        'mtime-only.ini': { content: 'same bytes', mtime: T0 },
        'dirmode/': { mode: 0o755, mtime: T0 },
      },
      {
        'same-size.ini': { content: 'bbbb', mtime: T0 + 60 },
        'other-size.ini': { content: 'a good deal longer', mtime: T0 + 1 },
        'added.ini': 'new',
        'f2d/inner.ini': 'now a directory',
        f2l: { symlink: 'filler/f02.ini', mtime: T0 },
        l2f: 'now a file',
        retarget: { symlink: 'filler/f03.ini', mtime: T0 + 5 },
        'chmod-only.ini': { content: 'perm', mode: 0o600, mtime: T0 },
        'mtime-only.ini': { content: 'same bytes', mtime: T0 + 3600 },
        'dirmode/': { mode: 0o750, mtime: T0 },
      },
    );
    assert.deepEqual(obj(await readAll(target)), obj(await readAll(src2)), 'target == master after one pass');
    const items = assertItems(run, [
      '.d..t...... ./',
      '>f..t...... same-size.ini',
      '>f.st...... other-size.ini',
      '>f..t...... mtime-only.ini',
      '>f+++++++++ added.ini',
      '*deleting   deleted.ini',
      'cd+++++++++ f2d/',
      '>f+++++++++ f2d/inner.ini',
      'cL+++++++++ f2l -> filler/f02.ini',
      '>f+++++++++ l2f',
      'cLc.t...... retarget -> filler/f03.ini',
      '.d...p..... dirmode/',
    ]);
    assert.ok(!items.some((l) => l.endsWith(' chmod-only.ini')), 'rsync logs nothing for a perms-only file change');
    assert.ok(items.indexOf('>f+++++++++ added.ini') < items.indexOf('*deleting   deleted.ini'), 'deletions come after transfers');
    assert.equal(run.stderr, '', 'no notices for a clean pass');
  });

  it('converges in one pass: a vanished directory tree, dir->file, dir->symlink', {
    ...T,
  }, async () => {
    const { run, target, src2 } = await twoPasses(
      {
        'gone-dir/': { mtime: T0 },
        'gone-dir/a': 'x',
        'gone-dir/sub/': { mtime: T0 },
        'gone-dir/sub/b': 'y',
        'd2f/': { mtime: T0 },
        'd2f/x': 'directory becoming a file',
        'd2l/': { mtime: T0 },
        'd2l/x': 'directory becoming a symlink',
      },
      { d2f: 'now a file', d2l: { symlink: 'filler/f04.ini', mtime: T0 } },
    );
    const items = itemLines(run.log);
    assert.equal(run.stderr, '', 'nothing changed on this slave during the pass, yet a notice was printed');
    assert.deepEqual(obj(await readAll(target)), obj(await readAll(src2)), 'target == master after one pass');
    assertItems(run, ['>f+++++++++ d2f', 'cL+++++++++ d2l -> filler/f04.ini', '*deleting   gone-dir/']);
    // Depth-first deletion of a vanished directory, contents before the directory (README 3b).
    const order = ['*deleting   gone-dir/sub/b', '*deleting   gone-dir/sub/', '*deleting   gone-dir/a', '*deleting   gone-dir/'].map((l) => items.indexOf(l));
    assert.ok(
      order.every((i, k) => i >= 0 && (k === 0 || i > order[k - 1]!)),
      `deletion order:\n${items.join('\n')}`,
    );
  });

  it('a pass with nothing to do rewrites nothing and logs only the two bracketing lines', T, async () => {
    const ws = await workspace();
    await writeSpec(ws.source, xroadTree());
    ok(await sync(ws));
    const before = await statTree(ws.target);
    const treeBefore = await readAll(ws.target);

    const run = await sync(ws, { logFile: path.join(ws.state, 'idle.log') });
    ok(run);
    const after = await statTree(ws.target);
    assert.deepEqual(obj(after), obj(before), 'inode, mtime or ctime of a target entry changed');
    assert.deepEqual(obj(await readAll(ws.target)), obj(treeBefore));

    const messages = logMessages(run.log);
    assert.equal(messages.length, 2, run.log);
    assert.equal(messages[0], 'receiving file list');
    const expectedTotal = totalSize(withoutPaths(await readAll(ws.source), XROAD_EXCLUDED));
    assert.equal(assertLogFormat(run.log, { code: 0 }), expectedTotal, run.log);
    const record = passRecord(run);
    assert.deepEqual([record.result, record.changed, record.deleted], ['ok', 0, 0]);
  });
});

/** The JSON `pass` record among the structured lines on stdout. */
function passRecord(run: SyncRun): { result: string; changed: number; deleted: number } {
  const records = run.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg?: string; result: string; changed: number; deleted: number })
    .filter((r) => r.msg === 'pass');
  assert.equal(records.length, 1, `expected one pass record on stdout:\n${run.stdout}`);
  return records[0]!;
}

/** A source tree read back as a spec (files only), to build a second identical source. */
async function specOf(root: string): Promise<TreeSpec> {
  const spec: TreeSpec = {};
  for (const [p, e] of await readTree(root)) {
    if (e.type === 'file') spec[p] = await readFile(path.join(root, p));
  }
  return spec;
}
