import assert from 'node:assert/strict';
import { chmod, lstat, mkdir, mkdtemp, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalIoError } from '../../src/errors.js';
import type { Filter } from '../../src/filter/types.js';
import { loadIdNames, loadLocalIds, parseIdFile } from '../../src/local/ids.js';
import { scanTarget } from '../../src/local/scan.js';
import { isTempName, ownerTag, TEMP_NAME_RE, tempName } from '../../src/local/temp-names.js';

/** A stand-in for the rsync matcher: `/globalconf`, `/conf.d/node.ini`, `*.tmp`, `db.properties`. */
function fakeFilter(): Filter & { calls: Array<[string, boolean]> } {
  const calls: Array<[string, boolean]> = [];
  const isExcluded = (path: string, isDir: boolean): boolean => {
    calls.push([path, isDir]);
    const name = path.slice(path.lastIndexOf('/') + 1);
    return path === 'globalconf' || path === 'conf.d/node.ini' || name.endsWith('.tmp') || name === 'db.properties';
  };
  return {
    calls,
    patterns: ['/globalconf', '/conf.d/node.ini', '*.tmp', 'db.properties'],
    isExcluded,
    isExcludedPath: (path, isDir) => path.split('/').some((_, i, parts) => isExcluded(parts.slice(0, i + 1).join('/'), i < parts.length - 1 || isDir)),
  };
}

const NAMES = {
  userById: new Map([[process.getuid!(), 'me']]),
  groupById: new Map([[process.getgid!(), 'mygroup']]),
};
const MTIME = 1_700_000_000;

describe('scanTarget', () => {
  let base: string;
  let root: string;
  let outside: string;

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'xroad-sync-scan-'));
    root = join(base, 'etc-xroad');
    outside = join(base, 'outside');
    await mkdir(join(outside, 'secret-dir'), { recursive: true });
    await writeFile(join(outside, 'secret-dir', 'secret'), 'x');
    await mkdir(join(root, 'conf.d', 'addons'), { recursive: true });
    await mkdir(join(root, 'conf.d', 'empty.d'));
    await mkdir(join(root, 'globalconf', 'EE'), { recursive: true });
    await mkdir(join(root, 'signer'));
    await mkdir(join(root, 'x.tmp'));
    await writeFile(join(root, 'x.tmp', 'inside'), 'x');
    await writeFile(join(root, 'conf.d', 'local.ini'), '[proxy]\n');
    await writeFile(join(root, 'conf.d', 'node.ini'), '[node]\ntype = slave\n');
    await writeFile(join(root, 'conf.d', 'addons', 'db.properties'), 'secret');
    await writeFile(join(root, 'globalconf', 'EE', 'shared-params.xml'), '<x/>');
    await writeFile(join(root, 'signer', 'keyconf.xml'), 'k'.repeat(8115));
    await writeFile(join(root, 'signer', '.xroad-sync.0123456789ab.tmp'), 'half');
    await writeFile(join(root, '.xroad-sync.ffffffffffff.tmp'), 'half');
    await writeFile(join(root, 'backup.0440'), '');
    await symlink(join(outside, 'secret-dir'), join(root, 'escape'));
    await symlink('local.ini', join(root, 'conf.d', 'link.ini'));
    await chmod(join(root, 'backup.0440'), 0o440);
    await chmod(join(root, 'signer'), 0o750);
    await chmod(join(root, 'conf.d', 'local.ini'), 0o640);
    await utimes(join(root, 'signer', 'keyconf.xml'), MTIME, MTIME + 0.9);
    await utimes(join(root, 'signer'), MTIME, MTIME + 7);
  });
  after(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('lists files, directories, empty directories and symlinks relative to the root', async () => {
    const { tree } = await scanTarget(root, fakeFilter(), { names: NAMES });
    assert.deepEqual(
      [...tree.keys()],
      ['', 'backup.0440', 'conf.d', 'conf.d/addons', 'conf.d/empty.d', 'conf.d/link.ini', 'conf.d/local.ini', 'escape', 'signer', 'signer/keyconf.xml'],
    );
    assert.equal(tree.get('')!.type, 'dir');
    assert.equal(tree.get('conf.d/empty.d')!.type, 'dir');
    assert.equal(tree.get('conf.d/local.ini')!.size, 8);
  });

  it('never follows symlinks', async () => {
    const { tree } = await scanTarget(root, fakeFilter(), { names: NAMES });
    const escaping = tree.get('escape')!;
    assert.equal(escaping.type, 'symlink');
    assert.equal(escaping.linkTarget, join(outside, 'secret-dir'));
    assert.equal(
      [...tree.keys()].some((p) => p.startsWith('escape/')),
      false,
    );
    assert.equal(tree.get('conf.d/link.ini')!.linkTarget, 'local.ini');
  });

  it('reports excluded paths without descending into them', async () => {
    const filter = fakeFilter();
    const { tree, excluded } = await scanTarget(root, filter, { names: NAMES });
    assert.deepEqual([...excluded].sort(), ['conf.d/addons/db.properties', 'conf.d/node.ini', 'globalconf', 'x.tmp']);
    assert.equal(
      filter.calls.some(([p]) => p.startsWith('globalconf/') || p.startsWith('x.tmp/')),
      false,
    );
    assert.deepEqual(
      filter.calls.find(([p]) => p === 'globalconf'),
      ['globalconf', true],
    );
    assert.deepEqual(
      filter.calls.find(([p]) => p === 'conf.d/node.ini'),
      ['conf.d/node.ini', false],
    );
    for (const p of excluded) assert.equal(tree.has(p), false);
  });

  it('finds our temp files, keeps them out of the tree and out of the excluded set', async () => {
    const { tree, excluded, tempFiles } = await scanTarget(root, fakeFilter(), { names: NAMES });
    assert.deepEqual(tempFiles, ['.xroad-sync.ffffffffffff.tmp', 'signer/.xroad-sync.0123456789ab.tmp']);
    for (const t of tempFiles) {
      assert.equal(tree.has(t), false);
      assert.equal(excluded.has(t), false);
    }
  });

  it('fills modes, whole-second mtimes, ids, names, inode and device', async () => {
    const { tree } = await scanTarget(root, fakeFilter(), { names: NAMES });
    assert.equal(tree.get('backup.0440')!.mode, 0o440);
    assert.equal(tree.get('signer')!.mode, 0o750);
    assert.equal(tree.get('conf.d/local.ini')!.mode, 0o640);
    assert.equal(tree.get('signer/keyconf.xml')!.mtime, MTIME);
    assert.equal(tree.get('signer')!.mtime, MTIME + 7);
    const key = tree.get('signer/keyconf.xml')!;
    const st = await lstat(join(root, 'signer', 'keyconf.xml'));
    assert.equal(key.size, 8115);
    assert.equal(key.uid, st.uid);
    assert.equal(key.gid, st.gid);
    assert.equal(key.ino, st.ino);
    assert.equal(key.dev, st.dev);
    assert.equal(key.owner, 'me');
    assert.equal(key.group, 'mygroup');
  });

  it('gives the same, sorted tree on every scan', async () => {
    const one = await scanTarget(root, fakeFilter(), { names: NAMES });
    const two = await scanTarget(root, fakeFilter(), { names: NAMES });
    assert.deepEqual([...one.tree.entries()], [...two.tree.entries()]);
    const paths = [...one.tree.keys()];
    assert.deepEqual(paths, [...paths].sort());
  });

  it('a missing root is a LocalIoError naming it', async () => {
    const missing = join(base, 'nope');
    await assert.rejects(scanTarget(missing, fakeFilter(), { names: NAMES }), (err: unknown) => {
      assert.ok(err instanceof LocalIoError);
      assert.equal(err.subject, missing);
      assert.match(err.message, /does not exist/);
      assert.ok(err.hint);
      return true;
    });
    await assert.rejects(scanTarget(join(root, 'backup.0440'), fakeFilter(), { names: NAMES }), LocalIoError);
  });
});

describe('temp names', () => {
  it('generated names match the pattern; others do not', () => {
    const name = tempName(ownerTag('/var/lib/xroad-sync'));
    assert.match(name, TEMP_NAME_RE);
    assert.notEqual(tempName(ownerTag('/var/lib/xroad-sync')), name);
    assert.equal(isTempName('tmpconf123.tmp'), false);
    assert.equal(isTempName('.xroad-sync.0123456789AB.tmp'), false);
    assert.equal(isTempName('a/.xroad-sync.0123456789ab.tmp'), false);
  });
});

describe('ids', () => {
  it('parses passwd/group lines, first entry wins, junk skipped', () => {
    const t = parseIdFile(
      'root:x:0:0::/root:/bin/bash\n#c:x:1:1\n+nis::::\nxroad:x:999:999::/var/lib/xroad:/bin/sh\ndup:x:999:1\nxroad:x:5:5\nbad:x:abc:1\n\n',
    );
    assert.equal(t.byName.get('xroad'), 999);
    assert.equal(t.byName.get('dup'), 999);
    assert.equal(t.byId.get(999), 'xroad');
    assert.equal(t.byName.has('bad'), false);
    assert.equal(t.byName.has('+nis'), false);
  });
  it('sees a changed, replaced or removed passwd file at the next load (it is parsed again only when it changes)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'xroad-sync-ids-'));
    try {
      const passwd = join(dir, 'passwd');
      const group = join(dir, 'group');
      await writeFile(group, 'xroad:x:999:\n');
      await writeFile(passwd, 'xroad:x:999:999::/:/bin/sh\n');
      const uidOf = async (name: string) => (await loadLocalIds({ passwd, group })).mapping.uidByName.get(name);
      assert.equal(await uidOf('xroad'), 999);
      // Same size, rewritten in place within the same jiffy (same timestamps): still seen.
      await writeFile(passwd, 'xroad:x:998:999::/:/bin/sh\n');
      assert.equal(await uidOf('xroad'), 998);
      // Replaced by rename, as vipw and shadow-utils do.
      await writeFile(`${passwd}+`, 'xroad:x:997:999::/:/bin/sh\nnew:x:1000:1000::/:/bin/sh\n');
      await rename(`${passwd}+`, passwd);
      assert.equal(await uidOf('new'), 1000);
      await rm(passwd);
      assert.equal(await uidOf('xroad'), undefined);
      assert.equal((await loadLocalIds({ passwd, group })).mapping.gidByName.get('xroad'), 999);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  it('tolerates missing files and knows our groups', async () => {
    const { mapping: ids } = await loadLocalIds({ passwd: '/nonexistent/passwd', group: '/nonexistent/group' });
    assert.equal(ids.uidByName.size, 0);
    assert.equal(ids.asRoot, process.getuid!() === 0);
    assert.ok(ids.memberGids.has(process.getegid!()));
    const names = await loadIdNames();
    if (process.getuid!() === 0) assert.equal(names.userById.get(0), 'root');
  });
});
