/**
 * `xroad-sync sync` end to end, the guards and failure modes: flag file,
 * host keys, unreachable master, all-or-nothing on a read error, owner
 * mapping, local symlinks, the safety valve, dry run, the lock. The compiled
 * CLI runs as a child process against a real OpenSSH master on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, chown, copyFile, lchown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { skipOrFailInCI } from '../helpers/components.js';
import {
  assertLogFormat,
  closedPort,
  describeRun,
  heldAt,
  itemLines,
  LOG_PREFIX,
  leftoverTemps,
  logMessages,
  obj,
  type RunSyncOptions,
  runSync,
  type StatSnapshot,
  type SyncRun,
  startHeldAt,
  startSync,
  statTree,
} from '../helpers/run-sync.js';
import { makeTempDir, readTree, startMaster, suiteMaster, type TestMaster, type TreeSpec, writeTree } from '../helpers/sshd.js';
import { sleep, waitFor } from '../helpers/wait.js';

const T = { timeout: 90_000 };
const T0 = 1_700_000_000;
const asRoot = process.getuid?.() === 0;

interface Workspace {
  root: string;
  source: string;
  target: string;
  state: string;
}

const readAll = (root: string) => readTree(root, { includeRoot: true });

function ok(run: SyncRun): void {
  assert.equal(run.status, 0, describeRun(run));
}

function exits(run: SyncRun, code: number): void {
  assert.equal(run.status, code, describeRun(run));
}

/** Everything about a tree that "untouched" means: contents, modes, mtimes, inodes, ctimes. */
async function snapshot(root: string): Promise<{ tree: Awaited<ReturnType<typeof readAll>>; stats: Map<string, StatSnapshot> }> {
  return { tree: await readAll(root), stats: await statTree(root) };
}

/**
 * `strict`: not even a ctime moved (nothing was staged). Otherwise directories
 * may show a new ctime (a temp file was created and removed in them, and their
 * mtime put back) but inode and mtime must hold; files and links fully.
 */
async function assertUntouched(root: string, before: Awaited<ReturnType<typeof snapshot>>, strict = true): Promise<void> {
  const now = await snapshot(root);
  assert.deepEqual(obj(now.tree), obj(before.tree), `${root} changed`);
  const relax = (m: Map<string, StatSnapshot>) => new Map([...m].map(([p, s]) => [p, strict || s.type !== 'dir' ? s : { ...s, ctimeMs: 0 }]));
  assert.deepEqual(obj(relax(now.stats)), obj(relax(before.stats)), `${root}: an entry was rewritten (inode, mtime or ctime)`);
  assert.deepEqual(await leftoverTemps(root), [], 'temp files left in the target');
}

function passRecord(run: SyncRun): { result: string; exitCode?: number } {
  const line = run.stdout.split('\n').find((l) => l.includes('"msg":"pass"'));
  assert.ok(line, `no pass record on stdout:\n${run.stdout}`);
  return JSON.parse(line) as { result: string; exitCode?: number };
}

function uidOf(name: string, file = '/etc/passwd'): number | undefined {
  const line = readFileSync(file, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`));
  return line === undefined ? undefined : Number(line.split(':')[2]);
}

/** "ssh-ed25519 AAAA..." of some key that is not the master's host key. */
function otherKey(master: TestMaster): string {
  const [type, blob] = readFileSync(`${master.identity}.pub`, 'utf8').trim().split(/\s+/);
  return `${type} ${blob}`;
}

const BASE: TreeSpec = {
  'conf.d/local.ini': { content: 'v1 local', mode: 0o640, mtime: T0 },
  'signer/keyconf.xml': { content: '<keyConf>v1</keyConf>', mode: 0o640, mtime: T0 },
  'old.ini': { content: 'old', mtime: T0 },
  'filler/a': 'a',
  'filler/b': 'b',
  'filler/c': 'c',
  'filler/d': 'd',
};

describe('xroad-sync sync: guards and failures', () => {
  let master!: TestMaster;
  const scratch = suiteMaster((m) => (master = m));

  async function workspace(spec?: { source?: TreeSpec; target?: TreeSpec }): Promise<Workspace> {
    const root = await makeTempDir('xroad-sync-edge-');
    scratch.push(root);
    const ws = { root, source: path.join(root, 'src'), target: path.join(root, 'dst'), state: path.join(root, 'state') };
    await Promise.all([mkdir(ws.source), mkdir(ws.target), mkdir(ws.state)]);
    if (spec?.source) await writeTree(ws.source, spec.source);
    if (spec?.target) await writeTree(ws.target, spec.target);
    return ws;
  }

  /** A second master tree beside the workspace's, for the pass after the first. */
  async function sourceTree(ws: Workspace, name: string, spec: TreeSpec): Promise<string> {
    const dir = path.join(ws.root, name);
    await mkdir(dir);
    await writeTree(dir, spec);
    return dir;
  }

  const sync = (ws: Workspace, extra: Partial<RunSyncOptions> = {}) => runSync({ master, source: ws.source, target: ws.target, stateDir: ws.state, ...extra });

  it('flag file: skips without connecting, exit 0, "sync skipped" logged, target untouched', T, async () => {
    const ws = await workspace({ source: BASE, target: { 'slave-only.ini': 'would be deleted' } });
    const before = await snapshot(ws.target);
    const flag = path.join(ws.state, 'flag');
    await writeFile(flag, '');
    const run = await sync(ws, { port: await closedPort(), flagFile: flag });
    ok(run);
    assert.equal(passRecord(run).result, 'skipped');
    for (const line of run.log.trimEnd().split('\n')) assert.match(line, LOG_PREFIX);
    const messages = logMessages(run.log);
    assert.equal(messages.length, 1, run.log);
    assert.match(messages[0]!, /^sync skipped: .*flag/);
    await assertUntouched(ws.target, before);

    await rm(flag);
    ok(await sync(ws, { flagFile: flag }));
    assert.equal((await readTree(ws.target)).has('slave-only.ini'), false, 'without the flag the pass runs');
  });

  it('host key unknown or changed: exit 254 naming host, port and fingerprint; hashed known_hosts works', T, async (t) => {
    const ws = await workspace({ source: BASE, target: { 'keep.ini': 'x' } });
    const before = await snapshot(ws.target);
    const cases = {
      // The master's key, but filed under another port; another host's key.
      unknown: `[127.0.0.1]:${master.port === 65535 ? 1 : master.port + 1} ${master.hostPublicKey}\nother.example ${otherKey(master)}\n`,
      changed: `[127.0.0.1]:${master.port} ${otherKey(master)}\n`,
    };
    for (const [name, text] of Object.entries(cases)) {
      const file = path.join(ws.state, `known_hosts.${name}`);
      await writeFile(file, text);
      const run = await sync(ws, { knownHosts: file });
      exits(run, 254);
      for (const part of ['127.0.0.1', String(master.port), master.hostKeyFingerprint]) {
        assert.ok(run.stderr.includes(part), `${name}: stderr does not name ${part}:\n${run.stderr}`);
      }
      assertLogFormat(run.log, { code: 254, connected: false });
      await assertUntouched(ws.target, before);
      await rm(path.join(ws.state, 'sync.log'), { force: true });
    }

    const hashed = path.join(ws.state, 'known_hosts.hashed');
    await copyFile(master.knownHosts, hashed);
    try {
      execFileSync('ssh-keygen', ['-H', '-f', hashed], { timeout: 10_000, stdio: 'ignore' });
    } catch (err) {
      skipOrFailInCI(t, `ssh-keygen -H unavailable: ${(err as Error).message}`);
      return;
    }
    assert.match(await readFile(hashed, 'utf8'), /^\|1\|/, 'ssh-keygen -H did not hash the file');
    ok(await sync(ws, { knownHosts: hashed }));
    assert.deepEqual(obj(await readAll(ws.target)), obj(await readAll(ws.source)));
  });

  it('a missing identity file: exit 1 naming it and how to make the key, nothing changed', T, async () => {
    const ws = await workspace({ source: BASE });
    const missing = path.join(ws.root, 'no-such-key');
    const before = obj(await readAll(ws.target));
    const run = await sync(ws, { args: ['--identity', missing] });
    exits(run, 1);
    assert.match(run.stderr, new RegExp(`cannot read identity file ${missing}.*ssh-keygen -t ed25519 -N '' -f ${missing}`), describeRun(run));
    assert.doesNotMatch(run.stderr, /ENOENT: ENOENT/, 'the cause is said once');
    assert.deepEqual(obj(await readAll(ws.target)), before, 'nothing was written');
  });

  it('unreachable master: exit 255 at once on a closed port, within --connect-timeout on a silent one', T, async () => {
    const ws = await workspace({ source: BASE, target: { 'keep.ini': 'x' } });
    const before = await snapshot(ws.target);
    const port = await closedPort();
    const refused = await sync(ws, { port, args: ['--connect-timeout', '2'] });
    exits(refused, 255);
    assert.ok(refused.elapsedMs < 10_000, `took ${refused.elapsedMs} ms`);
    assert.ok(refused.stderr.includes(`127.0.0.1:${port}`), refused.stderr);
    assertLogFormat(refused.log, { code: 255, connected: false });

    // Accepts TCP, never says a word: only the connect timeout ends it.
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((s) => (sockets.add(s), s.on('error', () => undefined)));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const silentPort = (silent.address() as net.AddressInfo).port;
      const run = await sync(ws, { port: silentPort, args: ['--connect-timeout', '2'], logFile: path.join(ws.state, 'silent.log') });
      exits(run, 255);
      assert.ok(run.elapsedMs >= 1_500 && run.elapsedMs < 10_000, `--connect-timeout 2 ended after ${run.elapsedMs} ms`);
      assert.match(run.stderr, /timed out/);
      assertLogFormat(run.log, { code: 255, connected: false });
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
    await assertUntouched(ws.target, before);
  });

  it('all-or-nothing: one unreadable master file fails the pass (23) and nothing changes', T, async (t) => {
    // Root reads everything: as root, the master's sftp logs in as nobody instead (a master of our own whose key files nobody may read).
    let m = master;
    let user = master.user;
    let own: TestMaster | undefined;
    if (asRoot) {
      if (master.kind !== 'openssh') return t.skip('root and the embedded master read every file: cannot make one unreadable');
      if (uidOf('nobody') === undefined) return t.skip('root, and no "nobody" user to run the master\'s sftp as');
      own = await startMaster();
      await chmod(own.dir, 0o755);
      await chmod(path.join(own.dir, 'authorized_keys'), 0o644);
      m = own;
      user = 'nobody';
    }
    const ws = await workspace();
    const unreadable: string[] = [];
    try {
      await chmod(ws.root, 0o755);
      await writeTree(ws.source, worldReadable(BASE));
      const first = await sync(ws, { master: m, user });
      if (asRoot && first.status === 255) return t.skip(`the master refused a login as nobody: ${first.stderr.trim()}`);
      ok(first);

      const v2: TreeSpec = {
        ...worldReadable(BASE),
        'conf.d/local.ini': { content: 'v2 local, longer', mode: 0o644, mtime: T0 + 60 },
        'signer/keyconf.xml': { content: '<keyConf>v2</keyConf>', mode: 0o644, mtime: T0 + 60 },
        'new.ini': 'new',
        'signer/softtoken/new.p12': 'a key the master cannot read',
        'signer/softtoken/other.p12': 'readable',
      };
      delete v2['old.ini'];
      const src2 = await sourceTree(ws, 'src2', v2);
      const secret = path.join(src2, 'signer/softtoken/new.p12');
      await chmod(secret, 0);
      unreadable.push(secret);
      const before = await snapshot(ws.target);

      const run = await sync({ ...ws, source: src2 }, { master: m, user, logFile: path.join(ws.state, 'fail.log') });
      exits(run, 23);
      assert.ok(run.stderr.includes('signer/softtoken/new.p12'), `stderr does not name the file:\n${run.stderr}`);
      assertLogFormat(run.log, { code: 23 });
      assert.ok(run.log.includes('signer/softtoken/new.p12'), run.log);
      assert.equal(itemLines(run.log).length, 0, `items logged for a pass that changed nothing:\n${run.log}`);
      await assertUntouched(ws.target, before, false);

      // An unreadable directory: the same.
      const src3 = await sourceTree(ws, 'src3', { ...v2, 'signer/softtoken/new.p12': 'now readable', 'locked/f': 'x' });
      await chmod(path.join(src3, 'locked'), 0);
      unreadable.push(path.join(src3, 'locked'));
      exits(await sync({ ...ws, source: src3 }, { master: m, user, logFile: path.join(ws.state, 'fail2.log') }), 23);
      await assertUntouched(ws.target, before, false);

      // Readable again: every pending change lands in one pass.
      await chmod(secret, 0o644);
      ok(await sync({ ...ws, source: src2 }, { master: m, user, logFile: path.join(ws.state, 'ok.log') }));
      assert.deepEqual(obj(await readAll(ws.target)), obj(await readAll(src2)));
    } finally {
      for (const p of unreadable) await chmod(p, 0o755).catch(() => undefined);
      await own?.stop();
    }
  });

  it('as root, owner and group map by name; ids without a name stay numeric', T, async (t) => {
    if (!asRoot) return t.skip('not root: only root can give files away (rsync -o)');
    const daemon = uidOf('daemon');
    const bin = uidOf('bin');
    const binGroup = uidOf('bin', '/etc/group');
    const daemonGroup = uidOf('daemon', '/etc/group');
    if ([daemon, bin, binGroup, daemonGroup].includes(undefined)) return t.skip('no daemon/bin user and group here');
    if (uidOf('54321') !== undefined || readFileSync('/etc/passwd', 'utf8').includes(':54321:')) return t.skip('uid 54321 has a name here');
    const ws = await workspace({
      source: { 'by-name.ini': 'n', 'by-number.ini': 'u', 'dir-by-name/f': 'f', 'link-by-name': { symlink: 'by-name.ini' } },
    });
    const at = (p: string) => path.join(ws.source, p);
    await chown(at('by-name.ini'), daemon!, binGroup!);
    await chown(at('by-number.ini'), 54321, 54322);
    await chown(at('dir-by-name'), bin!, daemonGroup!);
    await lchown(at('link-by-name'), bin!, binGroup!);
    ok(await sync(ws));
    const ids = async () => {
      const s = await statTree(ws.target);
      return Object.fromEntries(
        ['by-name.ini', 'by-number.ini', 'dir-by-name', 'dir-by-name/f', 'link-by-name'].map((p) => [p, [s.get(p)?.uid, s.get(p)?.gid]]),
      );
    };
    assert.deepEqual(await ids(), {
      'by-name.ini': [daemon, binGroup],
      'by-number.ini': [54321, 54322],
      'dir-by-name': [bin, daemonGroup],
      'dir-by-name/f': [0, 0],
      'link-by-name': [bin, binGroup],
    });

    // An owner change alone is applied in place (no re-fetch).
    const inoBefore = (await statTree(ws.target)).get('by-name.ini')?.ino;
    await chown(at('by-name.ini'), bin!, daemonGroup!);
    ok(await sync(ws, { logFile: path.join(ws.state, 'chown.log') }));
    const after = await statTree(ws.target);
    assert.deepEqual([after.get('by-name.ini')?.uid, after.get('by-name.ini')?.gid], [bin, daemonGroup]);
    assert.equal(after.get('by-name.ini')?.ino, inoBefore, 'an owner-only change re-fetched the file');
  });

  it('a local symlink where the master has a file or a directory is replaced; what it pointed to is untouched', T, async () => {
    const ws = await workspace({
      source: {
        'conf.d/local.ini': 'master local.ini',
        'signer/keyconf.xml': '<keyConf/>',
        'signer/softtoken/k.p12': 'key',
      },
    });
    const outside = path.join(ws.root, 'outside');
    await writeTree(outside, { 'victim.ini': { content: 'not yours', mtime: T0 }, 'victim-dir/existing': { content: 'keep', mtime: T0 } });
    await writeTree(ws.target, {
      'conf.d/local.ini': { symlink: path.join(outside, 'victim.ini') },
      signer: { symlink: path.join(outside, 'victim-dir') },
    });
    const outsideBefore = await snapshot(outside);
    const run = await sync(ws);
    ok(run);
    assert.deepEqual(obj(await readAll(ws.target)), obj(await readAll(ws.source)));
    await assertUntouched(outside, outsideBefore);
    assert.ok(itemLines(run.log).includes('cd+++++++++ signer/'), run.log);
  });

  it('safety valve: an empty master or too many deletions exit 25 untouched; --max-delete and --force override', T, async () => {
    const files: TreeSpec = {};
    for (const n of ['a', 'b', 'c', 'd', 'e', 'f']) files[`conf.d/${n}.ini`] = n;
    const ws = await workspace({ source: files, target: { 'db.properties': 'slave db', 'conf.d/node.ini': 'slave node' } });
    ok(await sync(ws));
    const before = await snapshot(ws.target);

    const empty = await sourceTree(ws, 'empty', {});
    const emptyRun = await sync({ ...ws, source: empty }, { logFile: path.join(ws.state, 'empty.log') });
    exits(emptyRun, 25);
    assertLogFormat(emptyRun.log, { code: 25 });
    await assertUntouched(ws.target, before);

    const onlyDir = await sourceTree(ws, 'only-dir', { 'conf.d/': null });
    exits(await sync({ ...ws, source: onlyDir }), 25);
    await assertUntouched(ws.target, before);

    // 4 of 6 files go: more than half.
    const fewer = await sourceTree(ws, 'fewer', { 'conf.d/a.ini': 'a', 'conf.d/b.ini': 'b' });
    exits(await sync({ ...ws, source: fewer }), 25);
    exits(await sync({ ...ws, source: fewer }, { args: ['--max-delete', '3'] }), 25);
    await assertUntouched(ws.target, before);
    ok(await sync({ ...ws, source: fewer }, { args: ['--max-delete', '4'] }));
    assert.deepEqual([...(await readTree(ws.target)).keys()], ['conf.d', 'conf.d/a.ini', 'conf.d/b.ini', 'conf.d/node.ini', 'db.properties']);

    const forced = await sync({ ...ws, source: empty }, { args: ['--force'], logFile: path.join(ws.state, 'force.log') });
    ok(forced);
    const left = await statTree(ws.target);
    assert.deepEqual([...left.keys()], ['', 'conf.d', 'conf.d/node.ini', 'db.properties'], 'only the excluded files (and their directory) stay');
    for (const p of ['conf.d/node.ini', 'db.properties']) assert.deepEqual(left.get(p), before.stats.get(p), `${p} was touched`);
    assert.ok(logMessages(forced.log).includes('cannot delete non-empty directory: conf.d'), forced.log);
  });

  it('--dry-run prints the itemized changes on stdout and changes nothing, log included', T, async () => {
    const ws = await workspace({ source: { ...BASE, 'changed.ini': { content: 'v1', mtime: T0 } } });
    ok(await sync(ws));
    const src2 = await sourceTree(ws, 'src2', { ...withoutOld(BASE), 'changed.ini': { content: 'v2 longer', mtime: T0 + 1 }, 'new.ini': 'new' });
    const before = await snapshot(ws.target);
    const dryLog = path.join(ws.state, 'dry.log');
    const dry = await sync({ ...ws, source: src2 }, { args: ['--dry-run'], logFile: dryLog });
    ok(dry);
    const printed = itemLines(dry.stdout);
    for (const line of ['>f+++++++++ new.ini', '>f.st...... changed.ini', '*deleting   old.ini']) {
      assert.ok(printed.includes(line), `dry run did not print ${JSON.stringify(line)}:\n${dry.stdout}`);
    }
    await assertUntouched(ws.target, before);
    assert.equal(existsSync(dryLog), false, 'a dry run wrote the log file');

    const real = await sync({ ...ws, source: src2 }, { logFile: path.join(ws.state, 'real.log') });
    ok(real);
    assert.deepEqual(itemLines(real.log), printed, 'the dry run did not predict the real pass');
  });

  it("a slave file edited mid-pass is left for the next pass, without undoing the commit's directory mtimes", {
    ...T,
  }, async () => {
    const ws = await workspace({ source: { ...BASE, 'conf.d/': { mode: 0o750, mtime: T0 } } });
    ok(await sync(ws));
    const src2 = await sourceTree(ws, 'src2', {
      ...BASE,
      'conf.d/local.ini': { content: 'v2 from the master', mode: 0o640, mtime: T0 + 60 },
      'conf.d/new.ini': { content: 'new', mtime: T0 + 60 },
      'conf.d/': { mode: 0o750, mtime: T0 + 100 },
    });
    const pass = startSync({
      master,
      source: src2,
      target: ws.target,
      stateDir: ws.state,
      env: { XROAD_SYNC_TEST_HOOK: 'pause@staged', XROAD_SYNC_TEST_PAUSE_MS: '1500' },
    });
    await heldAt(pass, 'staged');
    await writeFile(path.join(ws.target, 'conf.d/local.ini'), 'an operator edit, mid-pass');
    const run = await pass.done;
    ok(run);
    assert.match(run.stderr, /conf\.d\/local\.ini changed on this slave/);
    const got = await readTree(ws.target);
    assert.equal(got.get('conf.d/local.ini')?.content, 'an operator edit, mid-pass', 'the local edit was overwritten');
    assert.equal(got.get('conf.d/new.ini')?.content, 'new', 'the rest of the pass did not land');
    assert.deepEqual(await leftoverTemps(ws.target), []);
    assert.equal(got.get('conf.d')?.mtime, T0 + 100, 'conf.d/ lost the master mtime the commit gave it');

    const next = await sync({ ...ws, source: src2 }, { logFile: path.join(ws.state, 'next.log') });
    ok(next);
    assert.deepEqual(obj(await readAll(ws.target)), obj(await readAll(src2)), 'the next pass converges');
  });

  it('a slave edit made while the pass waited more than a second for the master is seen by that pass (the check scan is not planned against)', T, async () => {
    const ws = await workspace({ source: BASE });
    ok(await sync(ws));
    const mirrored = obj(await readAll(ws.target));
    const pass = await startHeldAt({ master, source: ws.source, target: ws.target, stateDir: ws.state }, 'connected');
    await writeFile(path.join(ws.target, 'stray.ini'), 'added on the slave\n');
    await rm(path.join(ws.target, 'conf.d', 'local.ini'));
    // What is tested is the scan's age: it must be older than the second a check's scan is reused for.
    await sleep(1_100);
    ok(await pass.release());
    assert.deepEqual(obj(await readAll(ws.target)), mirrored, 'the pass put back what was edited while it waited for the master');
  });

  it(
    'pause while many staged files are being flushed: the pass is abandoned before its journal, nothing changes, no owner file or temp is left',
    T,
    async () => {
      const ws = await workspace({ source: BASE });
      const before = obj(await readAll(ws.target));
      const flag = path.join(ws.state, 'flag');
      // One flush for all staged files (as a pass of 1,000 or more), held back until released.
      const pass = await startHeldAt({ master, source: ws.source, target: ws.target, stateDir: ws.state, env: { XROAD_SYNC_FLUSH: 'filesystem' } }, 'flush');
      await writeFile(flag, '');
      const run = await pass.release();
      ok(run);
      assert.match(run.stderr, /appeared during the pass: abandoned before its commit, nothing changed/);
      assert.deepEqual(obj(await readAll(ws.target)), before, 'the target changed');
      assert.deepEqual(await leftoverTemps(ws.target), []);
      assert.equal(existsSync(path.join(ws.state, 'commit-journal.json')), false, 'a journal was written');
    },
  );

  it(
    'lock: a second pass while one runs waits for it (exit 75 only when --wait runs out, not logged as a failed pass); a stale lock of a dead pid is taken over',
    T,
    async () => {
      const ws = await workspace({ source: BASE });
      const first = startSync({
        master,
        source: ws.source,
        target: ws.target,
        stateDir: ws.state,
        // Paused until released (SIGUSR2) once the second pass says it waits: no guessed pause length.
        env: { XROAD_SYNC_TEST_HOOK: 'pause@staged', XROAD_SYNC_TEST_PAUSE_MS: '60000' },
      });
      await heldAt(first, 'staged');
      const impatient = await sync(ws, { logFile: path.join(ws.state, 'impatient.log'), args: ['--wait', '0.5'] });
      exits(impatient, 75);
      assert.match(impatient.stderr, /lock/);
      assert.doesNotMatch(impatient.log, /rsync error/, 'a lock wait is not a failed pass in slave-sync.log');
      const waiting = startSync({ master, source: ws.source, target: ws.target, stateDir: ws.state, logFile: path.join(ws.state, 'second.log') });
      await waitFor(
        () => /waiting for the running pass \(pid \d+\)/.test(waiting.stderrSoFar()) || waiting.child.exitCode !== null,
        30_000,
        'the second pass to say it waits',
      );
      first.child.kill('SIGUSR2');
      const firstRun = await first.done;
      const second = await waiting.done;
      ok(firstRun);
      ok(second);
      assert.match(second.stderr, /waiting for the running pass \(pid \d+\)/);
      assert.deepEqual(obj(await readAll(ws.target)), obj(await readAll(ws.source)), 'the first pass completed');

      const lock = path.join(ws.state, 'sync.lock');
      assert.equal(existsSync(lock), false, 'lock left behind');
      const dead = spawnSync(process.execPath, ['-e', '0'], { timeout: 10_000 }).pid;
      await writeFile(lock, `${dead}\nsync\n`);
      const stale = await sync(ws, { logFile: path.join(ws.state, 'stale.log') });
      ok(stale);
      assert.equal(existsSync(lock), false, 'stale lock not released after the pass');
    },
  );

  it('lock: a lock path that cannot be read (a directory there) is an error naming it, not an endless retry', T, async () => {
    const ws = await workspace({ source: BASE });
    const lock = path.join(ws.state, 'sync.lock');
    await mkdir(lock, { recursive: true });
    const run = await sync(ws, { timeoutMs: 20_000 });
    assert.notEqual(run.status, null, 'the pass never ended (killed at the timeout)');
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /cannot read the lock file .*sync\.lock/);
  });
});

/** The master's sftp may run as nobody: every mode gets o+r (and o+x for directories). */
function worldReadable(spec: TreeSpec): TreeSpec {
  return Object.fromEntries(
    Object.entries(spec).map(([p, v]) => {
      if (v && typeof v === 'object' && !Buffer.isBuffer(v) && !('symlink' in v) && v.mode !== undefined) {
        return [p, { ...v, mode: v.mode | (p.endsWith('/') ? 0o005 : 0o004) }];
      }
      return [p, v];
    }),
  );
}

function withoutOld(spec: TreeSpec): TreeSpec {
  const copy = { ...spec };
  delete copy['old.ini'];
  return copy;
}
