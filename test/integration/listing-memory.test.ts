/**
 * What a pass asks a real OpenSSH master for: the requests of a listing and
 * of a small file's fetch, and the daemon's memory of the master listing
 * (remote/known-master.ts): an unchanged master gives the last tree back as it
 * is, and every kind of change on the master still reaches the tree — in a
 * directory whose listing changed, nothing stale; in the others, the same
 * entries as before.
 */
import assert from 'node:assert/strict';
import { chmod, lutimes, mkdir, rename, rm, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compileFilter } from '../../src/filter/rsync-filter.js';
import { KnownMaster } from '../../src/remote/known-master.js';
import { openSession, type SftpSession } from '../../src/remote/session.js';
import { SftpSource } from '../../src/remote/sftp-source.js';
import type { Tree } from '../../src/tree.js';
import { makeTempDir, sessionOptionsFor, startMaster, type TestMaster } from '../helpers/sshd.js';

const T = { timeout: 60_000 };
const MTIME = 1_700_000_000;

describe('master listing memory (real sshd)', () => {
  let master: TestMaster;
  let session: SftpSession;
  let root: string;
  let source: SftpSource;
  const filter = compileFilter(['/excluded']);

  before(async () => {
    master = await startMaster();
    root = await makeTempDir('xs-listing-memory-');
    session = await openSession(sessionOptionsFor(master, { connectTimeoutMs: 10_000, idleTimeoutMs: 10_000 }));
    await mkdir(path.join(root, 'conf.d/nested'), { recursive: true });
    await mkdir(path.join(root, 'many'));
    await mkdir(path.join(root, 'excluded'));
    await writeFile(path.join(root, 'a.ini'), 'a=1\n');
    await writeFile(path.join(root, 'conf.d/local.ini'), 'x=1\n');
    await writeFile(path.join(root, 'conf.d/nested/deep.txt'), 'deep');
    await writeFile(path.join(root, 'excluded/skip'), 'skip');
    // More than one READDIR batch (OpenSSH answers 100 names each).
    for (let i = 0; i < 450; i++) await writeFile(path.join(root, 'many', `f${String(i).padStart(3, '0')}`), String(i));
    await symlink('a.ini', path.join(root, 'link'));
    source = new SftpSource(session, `${root}/`);
  });
  after(async () => {
    await session?.close();
    await master?.stop();
  });

  /** Each scan with the memory must equal a scan without it (the truth), entry for entry. */
  async function scanBoth(known: KnownMaster): Promise<Tree> {
    const remembered = await source.scan(filter, undefined, known);
    const truth = await source.scan(filter);
    assert.deepEqual(new Map([...remembered].sort()), new Map([...truth].sort()), 'the remembered scan differs from a fresh one');
    return remembered;
  }

  it('gives the same tree back while nothing changed, and sees every change after', T, async () => {
    const known = new KnownMaster(60_000);
    const first = await scanBoth(known);
    assert.equal(first.get('many/f449')?.size, 3);
    assert.ok(!first.has('excluded/skip'));
    const second = await scanBoth(known);
    assert.equal(second, first, 'an unchanged master: the very same tree');

    // An in-place edit (size and mtime) in one directory: a new tree; the other directories' entries are the same objects.
    await writeFile(path.join(root, 'conf.d/local.ini'), 'x=22\n');
    await utimes(path.join(root, 'conf.d/local.ini'), MTIME, MTIME);
    const edited = await scanBoth(known);
    assert.notEqual(edited, first);
    assert.deepEqual([edited.get('conf.d/local.ini')?.size, edited.get('conf.d/local.ini')?.mtime], [5, MTIME]);
    assert.equal(edited.get('many/f000'), first.get('many/f000'), 'an unchanged directory keeps its entries');

    // A mode change alone, deep down.
    await chmod(path.join(root, 'conf.d/nested/deep.txt'), 0o600);
    assert.equal((await scanBoth(known)).get('conf.d/nested/deep.txt')?.mode, 0o600);

    // A file added in the large directory, one removed: its later batches shift.
    await writeFile(path.join(root, 'many', 'f449b'), 'new');
    await unlink(path.join(root, 'many', 'f100'));
    const shifted = await scanBoth(known);
    assert.ok(shifted.has('many/f449b') && !shifted.has('many/f100'));

    // A new directory with files, and one removed with its subtree.
    await mkdir(path.join(root, 'new.d'));
    await writeFile(path.join(root, 'new.d/b.ini'), 'b');
    await rm(path.join(root, 'conf.d/nested'), { recursive: true });
    const moved = await scanBoth(known);
    assert.ok(moved.has('new.d/b.ini'));
    assert.ok(!moved.has('conf.d/nested') && !moved.has('conf.d/nested/deep.txt'), 'a removed directory takes its subtree along');

    // A symlink pointed elsewhere (replaced, as ln -sf does), and a directory renamed.
    await unlink(path.join(root, 'link'));
    await symlink('conf.d/local.ini', path.join(root, 'link'));
    await rename(path.join(root, 'new.d'), path.join(root, 'renamed.d'));
    const relinked = await scanBoth(known);
    assert.equal(relinked.get('link')?.linkTarget, 'conf.d/local.ini');
    assert.ok(relinked.has('renamed.d/b.ini') && !relinked.has('new.d/b.ini'));

    // The root's own mode: not part of any listing.
    await chmod(root, 0o751);
    const rootMode = await scanBoth(known);
    assert.equal(rootMode.get('')?.mode, 0o751);
    assert.equal(await scanBoth(known), rootMode, 'unchanged again: the same tree');
  });

  it('sees a symlink pointed elsewhere whose listing stayed the same (same length, same second, as a restore leaves it)', T, async () => {
    const dir = await makeTempDir('xs-listing-link-');
    await mkdir(path.join(dir, 'links'));
    await symlink('target-a', path.join(dir, 'links/current'));
    await lutimes(path.join(dir, 'links/current'), MTIME, MTIME);
    await utimes(path.join(dir, 'links'), MTIME, MTIME);
    const linked = new SftpSource(session, `${dir}/`);
    const known = new KnownMaster(60_000);
    assert.equal((await linked.scan(filter, undefined, known)).get('links/current')?.linkTarget, 'target-a');
    // Another target of the same length, the link's and its directory's times put back: every listed number is the same.
    await unlink(path.join(dir, 'links/current'));
    await symlink('target-b', path.join(dir, 'links/current'));
    await lutimes(path.join(dir, 'links/current'), MTIME, MTIME);
    await utimes(path.join(dir, 'links'), MTIME, MTIME);
    const relinked = await linked.scan(filter, undefined, known);
    assert.equal(relinked.get('links/current')?.linkTarget, 'target-b', 'the remembered scan kept the old link target');
    const truth = await linked.scan(filter);
    assert.deepEqual(new Map([...relinked].sort()), new Map([...truth].sort()));
    assert.equal(await linked.scan(filter, undefined, known), relinked, 'unchanged again: the same tree');
  });

  it('lists a directory with OPENDIR, READDIRs and CLOSE only: no LSTAT per directory on every pass', T, async () => {
    const dir = await makeTempDir('xs-listing-cost-');
    for (const sub of ['a', 'b', 'c', 'c/d']) await mkdir(path.join(dir, sub));
    for (const sub of ['a', 'b', 'c/d']) await writeFile(path.join(dir, sub, 'f.ini'), 'x');
    let requests = 0;
    const counting: SftpSession = Object.assign(Object.create(session) as SftpSession, {
      request: (issue: Parameters<SftpSession['request']>[0]) => {
        requests++;
        return session.request(issue);
      },
    });
    await new SftpSource(counting, `${dir}/`).scan(filter);
    // 5 directories (the root, a, b, c, c/d): OPENDIR, two READDIRs (the second brings EOF), CLOSE; plus the root's LSTAT.
    assert.equal(requests, 1 + 5 * 4, 'requests for one scan of 5 small directories');
  });

  it('fetches a file that fits one READ with OPEN, READ, FSTAT and CLOSE only', T, async () => {
    let requests = 0;
    const counting: SftpSession = Object.assign(Object.create(session) as SftpSession, {
      request: (issue: Parameters<SftpSession['request']>[0]) => {
        requests++;
        return session.request(issue);
      },
    });
    const counted = new SftpSource(counting, `${root}/`);
    const entry = (await counted.scan(filter)).get('a.ini')!;
    requests = 0;
    const chunks: Buffer[] = [];
    const size = await counted.fetch(entry, { write: async (chunk) => void chunks.push(Buffer.from(chunk)) });
    assert.equal(Buffer.concat(chunks).toString(), 'a=1\n');
    assert.equal(size, 4);
    assert.equal(requests, 4, 'requests to fetch one small file');
  });

  it('starts from nothing with another filter, and after its maximum age', T, async () => {
    let now = 0;
    const known = new KnownMaster(60_000, () => now);
    const first = await source.scan(filter, undefined, known);
    assert.equal(await source.scan(filter, undefined, known), first);
    const other = compileFilter(['/excluded', '/many']);
    const narrowed = await source.scan(other, undefined, known);
    assert.ok(!narrowed.has('many/f000'), 'the new filter applies at once');
    assert.notEqual(narrowed, first);
    now += 60_001; // owner names are taken afresh at least this often
    const aged = await source.scan(other, undefined, known);
    assert.notEqual(aged, narrowed, 'past its age the memory is rebuilt');
    assert.deepEqual(new Map([...aged].sort()), new Map([...narrowed].sort()));
  });
});
