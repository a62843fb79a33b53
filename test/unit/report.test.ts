import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { ConnectionError, ExitCode, LocalIoError } from '../../src/errors.js';
import { countChanges } from '../../src/plan/plan.js';
import type { Change, Ownership } from '../../src/plan/types.js';
import { treeDigest } from '../../src/report/digest.js';
import { errorLines, itemize, itemizePlan, totalSizeLine } from '../../src/report/itemize.js';
import { createLogger, passRecord } from '../../src/report/logger.js';
import { agePerfdata, checkLine, escapeCheckText, replicaPerfdata } from '../../src/report/nagios.js';
import { formatTimestamp, RsyncLogFile } from '../../src/report/rsync-log.js';
import { onChangeInput } from '../../src/run/on-change.js';
import type { Entry, Tree } from '../../src/tree.js';
import { escapeControls } from '../../src/util/output.js';

const T0 = 1_700_000_000;

function file(path: string, over: Partial<Entry> = {}): Entry {
  return { path, type: 'file', mode: 0o640, size: 100, mtime: T0, uid: 999, gid: 999, ...over };
}
function dir(path: string, over: Partial<Entry> = {}): Entry {
  return { path, type: 'dir', mode: 0o750, size: 4096, mtime: T0, uid: 999, gid: 999, ...over };
}
function link(path: string, linkTarget: string, over: Partial<Entry> = {}): Entry {
  return { path, type: 'symlink', mode: 0o777, size: linkTarget.length, mtime: T0, uid: 999, gid: 999, linkTarget, ...over };
}
function attrs(source: Entry, target: Entry, owner: Ownership = {}): Change {
  return {
    kind: 'attrs',
    path: source.path,
    source,
    target,
    owner,
    mode: source.mode !== target.mode,
    mtime: source.mtime !== target.mtime,
    uid: owner.uid !== undefined && owner.uid !== target.uid,
    gid: owner.gid !== undefined && owner.gid !== target.gid,
  };
}
const fetch = (source: Entry, target?: Entry, owner: Ownership = {}): Change => ({ kind: 'fetch', path: source.path, source, target, owner });
const mkdir = (source: Entry, target?: Entry): Change => ({ kind: 'mkdir', path: source.path, source, target, owner: {} });
const symlink = (source: Entry, target?: Entry): Change => ({ kind: 'symlink', path: source.path, source, target, owner: {} });
const del = (target: Entry, forReplace = false): Change => ({ kind: 'delete', path: target.path, target, forReplace });

describe('itemize: the README §3c table', () => {
  it('new file, also when empty', () => {
    assert.equal(itemize(fetch(file('conf.d/local.ini'))), '>f+++++++++ conf.d/local.ini');
    assert.equal(itemize(fetch(file('services/local.properties', { size: 0 }))), '>f+++++++++ services/local.properties');
  });
  it('changed size and time, time only', () => {
    const old = file('signer/keyconf.xml');
    assert.equal(itemize(fetch(file('signer/keyconf.xml', { size: 8115, mtime: T0 + 60 }), old)), '>f.st...... signer/keyconf.xml');
    assert.equal(itemize(fetch(file('x', { mtime: T0 + 1 }), file('x'))), '>f..t...... x');
  });
  it('a re-sent file also shows perms and, when set, group and owner', () => {
    const src = file('x', { mtime: T0 + 1, mode: 0o660, uid: 0, gid: 5 });
    assert.equal(itemize(fetch(src, file('x'), { gid: 5 })), '>f..tp.g... x');
    assert.equal(itemize(fetch(src, file('x'), { uid: 0, gid: 5 })), '>f..tpog... x');
    // Non-root and not a member: neither is set, so neither is shown.
    assert.equal(itemize(fetch(src, file('x'), {})), '>f..tp..... x');
  });
  it('new directory, directory time, directory perms, root', () => {
    assert.equal(itemize(mkdir(dir('conf.d/addons'))), 'cd+++++++++ conf.d/addons/');
    assert.equal(itemize(attrs(dir('signer', { mtime: T0 + 5 }), dir('signer'))), '.d..t...... signer/');
    assert.equal(itemize(attrs(dir('ssl', { mode: 0o751 }), dir('ssl'))), '.d...p..... ssl/');
    assert.equal(itemize(attrs(dir('', { mtime: T0 + 5 }), dir(''))), '.d..t...... ./');
  });
  it('directory group change only when the group is set', () => {
    assert.equal(itemize(attrs(dir('d', { gid: 5 }), dir('d'), { gid: 5 })), '.d.....g... d/');
    assert.equal(itemize(attrs(dir('d', { gid: 5 }), dir('d'), {})), null);
  });
  it('new symlink, changed symlink', () => {
    assert.equal(itemize(symlink(link('link', 'target'))), 'cL+++++++++ link -> target');
    const changed = symlink(link('link', 'newtarget', { mtime: T0 + 9 }), link('link', 'target'));
    assert.equal(itemize(changed), 'cLc.t...... link -> newtarget');
  });
  it('deletion of a file, a symlink and a directory', () => {
    assert.equal(itemize(del(file('conf.d/old.ini'))), '*deleting   conf.d/old.ini');
    assert.equal(itemize(del(link('l', 't'))), '*deleting   l');
    assert.equal(itemize(del(dir('extra/sub'))), '*deleting   extra/sub/');
  });
  it('file perms or group only: nothing, as rsync', () => {
    assert.equal(itemize(attrs(file('ssl/internal.key', { mode: 0o660 }), file('ssl/internal.key'))), null);
    assert.equal(itemize(attrs(file('f', { gid: 5 }), file('f'), { gid: 5 })), null);
    assert.equal(itemize(attrs(link('l', 't', { mtime: T0 + 1 }), link('l', 't'))), null);
  });
});

describe('itemize: replacements', () => {
  it('an entry replacing one of another type is new', () => {
    assert.equal(itemize(fetch(file('x'), link('x', 'y'))), '>f+++++++++ x');
    assert.equal(itemize(fetch(file('x'), dir('x'))), '>f+++++++++ x');
    assert.equal(itemize(mkdir(dir('x'), file('x'))), 'cd+++++++++ x/');
    assert.equal(itemize(symlink(link('x', 'y'), file('x'))), 'cL+++++++++ x -> y');
  });
  it('a directory replaced by a file: its contents are logged, the directory itself is not', () => {
    const plan = [del(file('x/a'), true), del(dir('x/sub'), true), del(dir('x'), true), fetch(file('x'), dir('x'))];
    assert.deepEqual(itemizePlan(plan), ['*deleting   x/a', '*deleting   x/sub/', '>f+++++++++ x']);
    // Alone, a make-room deletion is taken for the replaced entry itself.
    assert.equal(itemize(del(dir('x'), true)), null);
  });
  it('itemizePlan drops what rsync does not log', () => {
    const plan = [attrs(file('f', { mode: 0o600 }), file('f')), fetch(file('g')), del(file('h'))];
    assert.deepEqual(itemizePlan(plan), ['>f+++++++++ g', '*deleting   h']);
  });
});

describe('final and error lines', () => {
  it('total size line: plain integers, two spaces', () => {
    assert.equal(totalSizeLine(264, 1886, 65346), 'sent 264 bytes  received 1886 bytes  total size 65346');
  });
  it('error lines name the subject and keep "rsync error:"', () => {
    const err = new ConnectionError('connect ECONNREFUSED 10.0.0.1:22', { subject: 'xroad-slave@master' });
    assert.deepEqual(errorLines(err, ExitCode.CONNECTION, '1.2.3'), [
      'xroad-sync: [receiver] "xroad-slave@master": connect ECONNREFUSED 10.0.0.1:22',
      'rsync error: unexplained error (code 255) at xroad-sync [receiver=xroad-sync 1.2.3]',
    ]);
    const local = new LocalIoError('cannot write /etc/xroad/x', { subject: '/etc/xroad/x' });
    assert.equal(errorLines(local, ExitCode.LOCAL_IO, '1')[0], 'xroad-sync: [receiver] cannot write /etc/xroad/x');
    assert.match(
      errorLines(new Error('boom'), ExitCode.TIMEOUT)[1]!,
      /^rsync error: timeout in data send\/receive \(code 30\) at xroad-sync \[receiver=xroad-sync \S+\]$/,
    );
  });
});

describe('log line format', () => {
  it('prefix is local time', () => {
    assert.equal(formatTimestamp(new Date(2017, 2, 10, 11, 42, 1)), '2017/03/10 11:42:01');
    const saved = process.env.TZ;
    try {
      process.env.TZ = 'Asia/Kolkata'; // UTC+5:30 all year
      assert.equal(formatTimestamp(new Date(Date.UTC(2017, 2, 10, 6, 12, 1))), '2017/03/10 11:42:01');
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });
  it('control characters are escaped as \\#ooo', () => {
    assert.equal(escapeControls('evil\n2017/03/10 11:42:01 [1] >f+++++++++ x'), 'evil\\#0122017/03/10 11:42:01 [1] >f+++++++++ x');
    assert.equal(escapeControls('a\tb\rc\x7f\u0085é'), 'a\tb\\#015c\\#177\\#302\\#205é');
    assert.equal(escapeControls('lit\\#012'), 'lit\\#134#012');
  });
  it('the check line: one line, "|" escaped before the performance data', () => {
    assert.equal(checkLine('XROAD-SYNC CRITICAL - a\nb | c=1', ['age=3s;;;0']), 'XROAD-SYNC CRITICAL - a\\#012b \\#174 c=1 | age=3s;;;0');
    assert.equal(escapeCheckText('\\#174|'), '\\#134#174\\#174');
  });
  it('performance data: the age against --max-age, the replica lag against its limits, U when unknown', () => {
    const now = new Date('2026-12-01T12:00:10Z');
    assert.equal(agePerfdata('2026-12-01T12:00:00.400Z', 300, now), 'age=10s;;300;0');
    assert.equal(agePerfdata(null, 300, now), 'age=U;;300;0');
    assert.equal(agePerfdata('2026-12-01T12:05:00Z', 300, now), 'age=U;;300;0', 'a success in the future: the age is unknown');
    assert.deepEqual(replicaPerfdata({ lagSeconds: 3, lagBytes: 1024 }, { warnLagS: 60, maxLagS: 300 }), [
      'replay_lag=3s;60;300;0',
      'replay_lag_bytes=1024B;;;0',
    ]);
    assert.deepEqual(replicaPerfdata(null, { warnLagS: 60, maxLagS: 300 }), ['replay_lag=U;60;300;0', 'replay_lag_bytes=U;;;0']);
  });
  it('the digest: every field counts, the order of the listing does not, the root has no owner', () => {
    const entry = (path: string, extra: Record<string, unknown> = {}) =>
      [path, { path, type: 'file', mode: 0o644, size: 3, mtime: 100, uid: 0, gid: 0, owner: 'root', group: 'xroad', ...extra }] as const;
    const base = new Map([entry('', { type: 'dir', owner: undefined, group: undefined }), entry('a'), entry('b')]) as unknown as Tree;
    const d = treeDigest(base);
    assert.match(d, /^[0-9a-f]{16}$/);
    assert.equal(treeDigest(new Map([...base].reverse()) as Tree), d, 'the listing order does not matter');
    assert.equal(treeDigest(new Map([...base, entry('', { type: 'dir', owner: 'x', group: 'y' })]) as unknown as Tree), d, "the root's owner does not count");
    for (const change of [{ mode: 0o600 }, { size: 4 }, { mtime: 101 }, { owner: 'xroad' }, { group: 'root' }, { type: 'symlink', linkTarget: 'b' }]) {
      assert.notEqual(treeDigest(new Map([...base, entry('a', change)]) as unknown as Tree), d, JSON.stringify(change));
    }
  });
  it('--on-change input: each path NUL-terminated, the root as "."', () => {
    assert.equal(onChangeInput(['', 'a\nb', 'c']), '.\0a\nb\0c\0');
  });
});

async function withTempDir(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'xroad-sync-report-'));
  try {
    await run(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const fixedClock = { now: () => new Date(2017, 2, 10, 11, 42, 1), pid: 10505, version: '9.9.9' };

describe('RsyncLogFile', () => {
  it('writes a pass in rsync format', async () => {
    await withTempDir(async (d) => {
      const path = join(d, 'slave-sync.log');
      const log = await RsyncLogFile.open(path, fixedClock);
      assert.equal(log.warning, undefined);
      log.receivingFileList();
      log.items([
        attrs(dir('signer', { mtime: T0 + 1 }), dir('signer')),
        fetch(file('signer/keyconf.xml', { mtime: T0 + 1 }), file('signer/keyconf.xml')),
        attrs(file('f', { mode: 0o600 }), file('f')), // not logged
        fetch(file('bad\nname')),
      ]);
      log.success(264, 1886, 65346);
      await log.close();
      assert.equal(
        await readFile(path, 'utf8'),
        [
          '2017/03/10 11:42:01 [10505] receiving file list',
          '2017/03/10 11:42:01 [10505] .d..t...... signer/',
          '2017/03/10 11:42:01 [10505] >f..t...... signer/keyconf.xml',
          '2017/03/10 11:42:01 [10505] >f+++++++++ bad\\#012name',
          '2017/03/10 11:42:01 [10505] sent 264 bytes  received 1886 bytes  total size 65346',
          '',
        ].join('\n'),
      );
    });
  });
  it('appends: a second pass keeps what was there', async () => {
    await withTempDir(async (d) => {
      const path = join(d, 'slave-sync.log');
      await writeFile(path, 'older line\n');
      for (const reason of ['one', 'two']) {
        const log = await RsyncLogFile.open(path, fixedClock);
        log.skipped(reason);
        await log.close();
      }
      const text = await readFile(path, 'utf8');
      assert.equal(text, 'older line\n2017/03/10 11:42:01 [10505] sync skipped: one\n2017/03/10 11:42:01 [10505] sync skipped: two\n');
    });
  });
  it('failure writes the cause and the rsync error line', async () => {
    await withTempDir(async (d) => {
      const path = join(d, 'slave-sync.log');
      const log = await RsyncLogFile.open(path, fixedClock);
      log.failure(new ConnectionError('timed out', { subject: 'master' }), ExitCode.CONNECTION);
      await log.close();
      const lines = (await readFile(path, 'utf8')).trimEnd().split('\n');
      assert.deepEqual(lines, [
        '2017/03/10 11:42:01 [10505] xroad-sync: [receiver] "master": timed out',
        '2017/03/10 11:42:01 [10505] rsync error: unexplained error (code 255) at xroad-sync [receiver=xroad-sync 9.9.9]',
      ]);
    });
  });
  it('an unopenable log gives a warning, not an exception', async () => {
    await withTempDir(async (d) => {
      const warnings: string[] = [];
      const path = join(d, 'missing-dir', 'slave-sync.log');
      const log = await RsyncLogFile.open(path, { ...fixedClock, onWarning: (m) => warnings.push(m) });
      assert.match(log.warning ?? '', /failed to open log-file .*missing-dir.*ENOENT/);
      assert.equal(warnings.length, 1);
      log.receivingFileList();
      log.success(1, 2, 3);
      await log.close();
    });
  });
  it('creates the log 0644 (before umask) when missing', async () => {
    await withTempDir(async (d) => {
      const path = join(d, 'slave-sync.log');
      const log = await RsyncLogFile.open(path, fixedClock);
      await log.close();
      const mode = (await stat(path)).mode & 0o777;
      assert.equal(mode, 0o644 & ~process.umask());
    });
  });
});

describe('pino logger and pass record', () => {
  it('writes one JSON line per record, level as a label, no pid/hostname', () => {
    const chunks: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        chunks.push(String(chunk));
        done();
      },
    });
    const logger = createLogger({ destination: sink, level: 'info' });
    const counts = countChanges([fetch(file('a')), del(file('b')), del(dir('c'), true), mkdir(dir('c'), dir('c'))]);
    assert.deepEqual(counts, { changed: 2, deleted: 1 });
    logger.info(passRecord({ result: 'ok', ...counts, bytesReceived: 10, bytesSent: 5, durationMs: 12.4 }));
    logger.error(passRecord({ result: 'failed', durationMs: 3, error: new ConnectionError('refused', { subject: 'm' }) }));
    const [ok, failed] = chunks.map((c) => JSON.parse(c) as Record<string, unknown>);
    assert.equal(ok!.msg, 'pass');
    assert.equal(ok!.level, 'info');
    assert.equal(ok!.durationMs, 12);
    assert.equal(ok!.changed, 2);
    assert.equal('pid' in ok!, false);
    assert.equal(failed!.result, 'failed');
    assert.equal(failed!.error, 'refused');
    assert.equal(failed!.exitCode, 255);
  });
});
