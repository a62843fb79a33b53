/**
 * The state files' reader: "missing" and "cannot be read" are different
 * answers (a journal this user may not read is not "no journal"). Real
 * files; the permission case runs a child as nobody (root only).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { readSmallFileStrictly } from '../../src/util/small-file.js';
import { nodeForOtherUsers } from '../helpers/other-user.js';

describe('reading a small state file strictly', () => {
  let base: string;
  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'xroad-sync-small-file-'));
    await chmod(base, 0o755);
  });
  after(() => rm(base, { recursive: true, force: true }));

  it('says null for a missing file and gives the text of a present one', async () => {
    assert.equal(readSmallFileStrictly(join(base, 'absent.json')), null);
    await writeFile(join(base, 'present.json'), '{}');
    assert.equal(readSmallFileStrictly(join(base, 'present.json')), '{}');
  });

  it('throws, not null, for a file in a directory this user may not search', {
    skip: process.geteuid?.() !== 0 && 'needs root (runs a child as nobody)',
  }, async () => {
    const closed = join(base, 'state');
    await mkdir(closed, { mode: 0o700 });
    await writeFile(join(closed, 'commit-journal.json'), '{"ops":[]}');
    // A copy nobody can read, beside the test's files, run by a node nobody can run: the checkout may sit in a
    // 0700 directory (CI clones into one), and npm runs the tests with the node inside it.
    const copy = join(base, 'small-file.mjs');
    await copyFile(join(import.meta.dirname, '../../src/util/small-file.js'), copy);
    await chmod(copy, 0o644);
    const module = pathToFileURL(copy).href;
    const script = `import(${JSON.stringify(module)}).then((m) => {
      try { console.log(JSON.stringify({ text: m.readSmallFileStrictly(${JSON.stringify(join(closed, 'commit-journal.json'))}) })); }
      catch (err) { console.log(JSON.stringify({ thrown: err.code })); }
    });`;
    const child = spawnSync(nodeForOtherUsers(), ['-e', script], { uid: 65534, gid: 65534, cwd: base, encoding: 'utf8', timeout: 20_000 });
    assert.equal(child.status, 0, `${child.error ?? ''}${child.stderr}`);
    assert.deepEqual(JSON.parse(child.stdout), { thrown: 'EACCES' }, 'a journal nobody may reach was taken for "no journal"');
  });
});
