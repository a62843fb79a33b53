/**
 * The daemon's target watcher against the real file system: one inotify
 * watch per directory, never per file, and every change a synced file can
 * undergo reported by its path.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { LocalIoError } from '../../src/errors.js';
import { type TargetWatcher, watchTarget } from '../../src/local/target-watcher.js';
import { isTempName } from '../../src/local/temp-names.js';
import { passArgs, startCli, waitFor } from '../helpers/cli.js';
import { deferrer, slaveDirs } from '../helpers/slave.js';
import { makeTempDir, sshdAvailable, startMaster, type TreeSpec, writeTree } from '../helpers/sshd.js';

const T = { timeout: 120_000, skip: !sshdAvailable() && 'needs /usr/sbin/sshd' };

/** Three directories (the root, a, a/b) and 1,000 files. */
function wideTree(): TreeSpec {
  const tree: TreeSpec = {};
  for (let i = 0; i < 1000; i++) tree[`${i % 2 ? 'a' : 'a/b'}/f${i}.ini`] = `n=${i}\n`;
  return tree;
}

test('the daemon holds one inotify watch per target directory, not one per file', T, async (t: TestContext) => {
  const defer = deferrer(t);
  const tree = wideTree();
  const dirs = await slaveDirs(defer, 'xroad-sync-watch-', tree);
  await writeTree(dirs.target, tree);
  const master = await startMaster();
  defer(() => master.stop());
  const d = startCli(['daemon', ...passArgs(master, dirs), '--interval', '60']);
  defer(() => d.stop(2_000));
  const output = () => `--- daemon stdout\n${d.stdout()}--- daemon stderr\n${d.stderr()}`;
  await waitFor(() => d.records().some((r) => r.msg === 'daemon started'), 30_000, 'the daemon to start', output);
  const started = d.records().find((r) => r.msg === 'daemon started');
  // 3 for the target, and the flag watcher's one or two (its empty directory and, at most, its parent).
  const watches = Number(started?.inotifyWatches);
  t.diagnostic(`inotify watches for 3 directories and 1,000 files: ${watches}`);
  assert.ok(watches >= 3 && watches <= 5, `expected 3 target watches plus the flag watcher's, got ${watches}\n${output()}`);
  assert.equal(started?.watchedDirectories, 3, output());
});

/** inotify watches this process holds now (Linux /proc/self/fdinfo). */
function inotifyWatches(): number {
  let count = 0;
  for (const fd of readdirSync('/proc/self/fdinfo')) {
    let info = '';
    try {
      info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      // the fd readdir used is gone by now
    }
    count += info.split('\n').filter((line) => line.startsWith('inotify wd:')).length;
  }
  return count;
}

interface Watched {
  readonly root: string;
  readonly watcher: TargetWatcher;
  /** Every path reported so far, with whether it was reported as a directory. */
  readonly paths: Map<string, boolean>;
  events(): number;
  readonly errors: LocalIoError[];
  /** Waits until each of `rels` has been reported (since the last `forget`). */
  sees(rels: string[], what: string): Promise<number>;
  forget(): void;
}

async function watched(t: TestContext, tree: TreeSpec = {}, { rootIsSymlink = false } = {}): Promise<Watched> {
  const base = await makeTempDir('xroad-sync-target-watcher-');
  const root = path.join(base, 'target');
  await fs.mkdir(rootIsSymlink ? path.join(base, 'real-target') : root);
  if (rootIsSymlink) await fs.symlink(path.join(base, 'real-target'), root);
  await writeTree(root, tree);
  const paths = new Map<string, boolean>();
  const errors: LocalIoError[] = [];
  let events = 0;
  const watcher = watchTarget(root, {
    ignoredName: isTempName,
    onPath: (rel, isDirectory) => paths.set(rel, isDirectory),
    onEvent: () => events++,
    onError: (err) => errors.push(err),
  });
  t.after(async () => {
    await watcher.close();
    await fs.rm(base, { recursive: true, force: true });
  });
  const sees = (rels: string[], what: string) =>
    waitFor(
      () => rels.every((r) => paths.has(r)),
      10_000,
      what,
      () => `reported: ${[...paths.keys()].join(' ')}`,
    );
  return { root, watcher, paths, events: () => events, errors, sees, forget: () => paths.clear() };
}

test('a 1,000-file tree of 3 directories costs 3 watches, and none once closed', async (t) => {
  const before = inotifyWatches();
  const w = await watched(t, wideTree());
  assert.equal(w.watcher.watchedDirectories, 3);
  assert.equal(inotifyWatches() - before, 3, 'watches the kernel holds for the watcher');
  await w.watcher.close();
  assert.equal(inotifyWatches(), before, 'watches left after close');
  assert.deepEqual([...w.paths.keys()], [], 'nothing that existed at start is reported');
});

test('files created, written, chmod-ed, renamed and deleted are reported by path; temp files are not', async (t) => {
  const w = await watched(t, { 'conf.d/local.ini': 'a=1\n', 'serverconf.xml': '<conf/>\n' });
  await fs.writeFile(path.join(w.root, 'conf.d', 'new.ini'), 'n=1\n');
  await w.sees(['conf.d/new.ini'], 'a created file');
  w.forget();
  await fs.appendFile(path.join(w.root, 'serverconf.xml'), '<more/>\n');
  await w.sees(['serverconf.xml'], 'a written file');
  w.forget();
  const eventsBefore = w.events();
  await fs.chmod(path.join(w.root, 'conf.d', 'local.ini'), 0o600);
  await w.sees(['conf.d/local.ini'], 'a chmod');
  assert.ok(w.events() > eventsBefore, 'a chmod is an event');
  w.forget();
  await fs.rename(path.join(w.root, 'conf.d', 'local.ini'), path.join(w.root, 'conf.d', 'renamed.ini'));
  await w.sees(['conf.d/local.ini', 'conf.d/renamed.ini'], 'both names of a rename');
  w.forget();
  await fs.unlink(path.join(w.root, 'serverconf.xml'));
  await w.sees(['serverconf.xml'], 'a deleted file');
  w.forget();
  // A temp file's life (a pass's staging) is no report; the marker after it shows the events were read.
  await fs.writeFile(path.join(w.root, '.xroad-sync.0123456789ab.tmp'), 'x');
  await fs.rename(path.join(w.root, '.xroad-sync.0123456789ab.tmp'), path.join(w.root, '.xroad-sync.ba9876543210.tmp'));
  await fs.unlink(path.join(w.root, '.xroad-sync.ba9876543210.tmp'));
  await fs.writeFile(path.join(w.root, 'marker'), '');
  await w.sees(['marker'], 'the marker');
  assert.deepEqual([...w.paths.keys()], ['marker']);
  assert.equal(w.paths.get('marker'), false);
  assert.deepEqual(w.errors, []);
});

test('a new directory: it and what it held before its watch landed are reported, and it is watched from then on', async (t) => {
  const w = await watched(t);
  // Created and filled at once, so its files are written before the watcher can have added its watch.
  await fs.mkdir(path.join(w.root, 'new', 'deeper'), { recursive: true });
  await Promise.all(Array.from({ length: 20 }, (_, i) => fs.writeFile(path.join(w.root, 'new', i % 2 ? 'deeper' : '', `f${i}.ini`), 'x')));
  const expected = ['new', 'new/deeper', ...Array.from({ length: 20 }, (_, i) => (i % 2 ? `new/deeper/f${i}.ini` : `new/f${i}.ini`))];
  await w.sees(expected, 'the new directories and every file in them');
  assert.equal(w.paths.get('new'), true);
  assert.equal(w.paths.get('new/deeper'), true);
  assert.equal(w.watcher.watchedDirectories, 3);
  w.forget();
  await fs.writeFile(path.join(w.root, 'new', 'deeper', 'later.ini'), 'x');
  await w.sees(['new/deeper/later.ini'], 'a file written in the new directory later');
});

test('a directory removed and created again: reported each time, watched once, its new files seen', async (t) => {
  const before = inotifyWatches();
  const w = await watched(t, { 'a/b/one.ini': '1', 'a/two.ini': '2' });
  assert.equal(w.watcher.watchedDirectories, 3);
  await fs.rm(path.join(w.root, 'a', 'b'), { recursive: true });
  await w.sees(['a/b', 'a/b/one.ini'], 'the removal of the directory and its file');
  await waitFor(() => w.watcher.watchedDirectories === 2, 10_000, 'the removed directory unwatched');
  w.forget();
  await fs.mkdir(path.join(w.root, 'a', 'b'));
  await w.sees(['a/b'], 'the directory made again');
  await waitFor(() => w.watcher.watchedDirectories === 3, 10_000, 'the directory watched again');
  await fs.writeFile(path.join(w.root, 'a', 'b', 'three.ini'), '3');
  await w.sees(['a/b/three.ini'], 'a file in the recreated directory');
  assert.equal(inotifyWatches() - before, 3, 'no watch leaked');
});

test('a directory moved out and back in: unwatched while away (its events are not the target’s), watched again on return', async (t) => {
  const before = inotifyWatches();
  const w = await watched(t, { 'a/b/one.ini': '1', 'a/two.ini': '2' });
  const away = path.join(path.dirname(w.root), 'away');
  await fs.rename(path.join(w.root, 'a'), away);
  await w.sees(['a'], 'the directory moved out');
  await waitFor(() => w.watcher.watchedDirectories === 1, 10_000, 'the moved-out directories unwatched');
  assert.equal(inotifyWatches() - before, 1, 'the moved-out directories hold no watch');
  w.forget();
  await fs.writeFile(path.join(away, 'b', 'outside.ini'), 'x');
  await fs.rename(away, path.join(w.root, 'back'));
  await w.sees(['back', 'back/two.ini', 'back/b', 'back/b/one.ini', 'back/b/outside.ini'], 'the directory moved in, with its files');
  assert.equal(
    [...w.paths.keys()].some((p) => p.startsWith('a/') || (p.includes('outside') && !p.startsWith('back/'))),
    false,
    [...w.paths.keys()].join(' '),
  );
  await waitFor(() => w.watcher.watchedDirectories === 3, 10_000, 'the moved-in directories watched');
  w.forget();
  await fs.writeFile(path.join(w.root, 'back', 'b', 'later.ini'), 'x');
  await w.sees(['back/b/later.ini'], 'a file written in the moved-in directory');
  assert.equal(inotifyWatches() - before, 3, 'no watch leaked');
});

test('a symlink to a directory is not followed: no watch, and writes behind it are not reported', async (t) => {
  const w = await watched(t, { 'a/one.ini': '1' });
  const outside = path.join(path.dirname(w.root), 'outside');
  await fs.mkdir(outside);
  await fs.symlink(outside, path.join(w.root, 'link'));
  await w.sees(['link'], 'the symlink');
  assert.equal(w.paths.get('link'), false);
  await fs.writeFile(path.join(outside, 'behind.ini'), 'x');
  await fs.writeFile(path.join(w.root, 'marker'), '');
  await w.sees(['marker'], 'the marker');
  assert.equal(
    [...w.paths.keys()].some((p) => p.includes('behind')),
    false,
    [...w.paths.keys()].join(' '),
  );
  assert.equal(w.watcher.watchedDirectories, 2);
});

test('a target path that is a symlink to the directory is followed, as the pass follows it', async (t) => {
  const w = await watched(t, { 'a/one.ini': '1' }, { rootIsSymlink: true });
  assert.equal(w.watcher.watchedDirectories, 2);
  await fs.writeFile(path.join(w.root, 'a', 'one.ini'), '2');
  await w.sees(['a/one.ini'], 'a write below a symlinked target');
});

test('the target replaced by a restore (old one moved aside, a new one in its place) is watched afresh by recheck', async (t) => {
  const w = await watched(t, { 'a/one.ini': '1' });
  const aside = `${w.root}.old`;
  await fs.rename(w.root, aside);
  await writeTree(w.root, { 'a/one.ini': '1', 'b/two.ini': '2' });
  w.watcher.recheck();
  assert.equal(w.watcher.watchedDirectories, 3);
  w.forget();
  await fs.writeFile(path.join(aside, 'a', 'one.ini'), 'old');
  await fs.writeFile(path.join(w.root, 'b', 'two.ini'), 'new');
  await w.sees(['b/two.ini'], 'a write in the new target');
  assert.equal(w.paths.has('a/one.ini'), false, 'a write in the old, moved-aside target is not the target’s');
});

test('a directory’s own attribute change (a pass restoring its mtime) is an event, not a path; a child named like its directory is a path', async (t) => {
  const w = await watched(t, { 'conf.d/local.ini': '1', 'same/same': 'x' });
  const eventsBefore = w.events();
  await fs.utimes(path.join(w.root, 'conf.d'), 1_000_000, 1_000_000);
  await fs.chmod(path.join(w.root, 'conf.d'), 0o750);
  await fs.utimes(w.root, 1_000_000, 1_000_000);
  await fs.utimes(path.join(w.root, 'same'), 1_000_000, 1_000_000);
  await fs.writeFile(path.join(w.root, 'marker'), '');
  await w.sees(['marker'], 'the marker');
  assert.ok(w.events() > eventsBefore, 'attribute changes are events');
  assert.deepEqual(
    [...w.paths.keys()].filter((p) => p !== 'same/same'),
    ['marker'],
    'no path made up from a directory’s own name',
  );
  w.forget();
  await fs.appendFile(path.join(w.root, 'same', 'same'), 'y');
  await w.sees(['same/same'], 'a write to a file named like its directory');
});

/** A user namespace of our own whose inotify watch limit we may lower (root in it, nothing changed outside). */
const ownUserNamespace = spawnSync('unshare', ['-U', '-r', 'true']).status === 0;

test('the inotify watch limit reached: one typed error naming the directory and fs.inotify.max_user_watches, the other directories still watched', {
  skip: !ownUserNamespace && 'needs unshare -U (user namespaces)',
}, async (t) => {
  const base = await makeTempDir('xroad-sync-watch-limit-');
  t.after(() => fs.rm(base, { recursive: true, force: true }));
  await writeTree(path.join(base, 'target'), { 'a/1.ini': '1', 'b/2.ini': '2', 'c/3.ini': '3' });
  const watcherModule = fileURLToPath(new URL('../../src/local/target-watcher.js', import.meta.url));
  const script = `
      const { watchTarget } = await import(${JSON.stringify(watcherModule)});
      const errors = [];
      const w = watchTarget(${JSON.stringify(path.join(base, 'target'))}, {
        ignoredName: () => false, onPath() {}, onEvent() {},
        onError: (e) => errors.push({ type: e.constructor.name, message: e.message, hint: e.hint, code: e.cause?.code }),
      });
      console.log(JSON.stringify({ errors, watched: w.watchedDirectories }));
      await w.close();`;
  // Two watches allowed in this namespace: the root and one of the three subdirectories.
  const run = spawnSync(
    'unshare',
    ['-U', '-r', 'sh', '-c', 'echo 2 > /proc/sys/user/max_inotify_watches && exec "$0" --input-type=module -e "$1"', process.execPath, script],
    { encoding: 'utf8', timeout: 30_000 },
  );
  assert.equal(run.status, 0, run.stderr);
  const { errors, watched } = JSON.parse(run.stdout) as { errors: Array<Record<string, string>>; watched: number };
  assert.equal(watched, 2);
  assert.equal(errors.length, 1, `reported once, not per directory: ${JSON.stringify(errors)}`);
  assert.equal(errors[0]?.type, 'LocalIoError');
  assert.equal(errors[0]?.code, 'ENOSPC');
  assert.match(errors[0]?.message ?? '', /cannot watch .*target\/[abc] for local changes/);
  assert.match(errors[0]?.hint ?? '', /fs\.inotify\.max_user_watches/);
});

test(
  'the daemon: a directory made in the target, with a file written before its watch could land, is noted by the watcher and removed by a corrective pass',
  T,
  async (t) => {
    const defer = deferrer(t);
    const tree: TreeSpec = { 'conf.d/local.ini': '[signer]\n', 'serverconf.xml': '<conf/>\n' };
    const dirs = await slaveDirs(defer, 'xroad-sync-watch-', tree);
    const master = await startMaster();
    defer(() => master.stop());
    // A long interval and the production full-scan period: only the watcher can start the pass that removes it.
    const d = startCli(['daemon', ...passArgs(master, dirs), '--interval', '300']);
    defer(() => d.stop(2_000));
    const output = () => `--- daemon stdout\n${d.stdout()}--- daemon stderr\n${d.stderr()}`;
    await waitFor(() => d.records().some((r) => r.msg === 'pass' && r.result === 'ok'), 30_000, 'the first pass', output);
    const passesBefore = d.records().filter((r) => r.msg === 'pass').length;
    // Past the window in which events are taken for the first pass's own writes.
    await waitFor(() => existsSync(path.join(dirs.target, 'serverconf.xml')), 5_000, 'the first pass written');
    await new Promise((resolve) => setTimeout(resolve, 2_300));
    await fs.mkdir(path.join(dirs.target, 'stray', 'deeper'), { recursive: true });
    await fs.writeFile(path.join(dirs.target, 'stray', 'deeper', 'x.ini'), 'x=1\n');
    await waitFor(() => !existsSync(path.join(dirs.target, 'stray')), 15_000, 'the stray directory removed', output);
    const noted = d.records().filter((r) => typeof r.msg === 'string' && r.msg.startsWith('synced file changed locally'));
    assert.ok(
      noted.some((r) => r.path === 'stray' && r.detectedBy === 'watcher'),
      output(),
    );
    await waitFor(
      () => d.records().some((r) => r.path === 'stray' && (r.msg === 'local change corrected' || String(r.msg).startsWith('local change checked'))),
      10_000,
      'what became of the stray directory, logged',
      output,
    );
    t.diagnostic(`passes after the first: ${d.records().filter((r) => r.msg === 'pass').length - passesBefore}`);
  },
);
