/**
 * The daemon's bookkeeping of local edits, on a temp dir and a fake pass
 * result: what the content check notes, and that each noted path gets one
 * true record after an ok pass and none after a failed or skipped one.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { WallClockSteps } from '../../src/daemon/wall-clock.js';
import { compileFilter } from '../../src/filter/rsync-filter.js';
import { contentHasher, hashFile } from '../../src/local/content-hashes.js';
import { loadIdNames } from '../../src/local/ids.js';
import { KnownTarget } from '../../src/local/known-target.js';
import type { PassResult } from '../../src/pass/types.js';
import type { Logger } from '../../src/report/logger.js';
import { LOCAL_EDIT_MESSAGES, LocalEdits, type LocalEditsOptions } from '../../src/run/local-edits.js';
import { stateFilePath } from '../../src/util/state-files.js';
import { writeKeepingSizeAndMtime } from '../helpers/local-edit.js';

const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

/** Two minutes on: every file in the temp dir has settled, its stat identity is trusted. */
const settledClock = () => Date.now() + 120_000;

async function setup(extra: Partial<LocalEditsOptions> = {}) {
  const base = await mkdtemp(join(tmpdir(), 'xroad-sync-local-edits-'));
  dirs.push(base);
  const dir = join(base, 'target');
  const stateDir = join(base, 'state');
  await mkdir(dir);
  await mkdir(stateDir);
  await writeFile(join(dir, 'a.ini'), 'a=1\n');
  await writeFile(join(dir, 'excluded.tmp'), 'x\n');
  const records: Array<Record<string, unknown>> = [];
  const logger = {
    info: (r: object) => records.push({ level: 'info', ...r }),
    warn: (r: object) => records.push({ level: 'warn', ...r }),
  } as unknown as Logger;
  let now = 0;
  // Which files the content check read, in order.
  const reads: string[] = [];
  const countingHash = (abs: string) => {
    reads.push(abs.slice(dir.length + 1));
    return hashFile(abs);
  };
  const start = () =>
    new LocalEdits({
      targetDir: dir,
      stateDir,
      filter: compileFilter(['*.tmp']),
      logger,
      contentCheckEveryMs: 60_000,
      now: () => now,
      hashFile: countingHash,
      ...extra,
    });
  return { dir, stateDir, records, reads, edits: start(), start, advance: (ms: number) => (now += ms) };
}

function passResult(result: PassResult['result'], changedPaths: string[] = []): PassResult {
  const at = new Date();
  return {
    result,
    changedPaths,
    exitCode: 0,
    startedAt: at,
    finishedAt: at,
    changed: changedPaths.length,
    deleted: 0,
    bytesReceived: 0,
    bytesSent: 0,
    totalSize: 0,
  };
}

describe('LocalEdits', () => {
  it('the content check notes a same-size, same-mtime rewrite, a deletion and an addition, but nothing on its first run or in excluded files', async () => {
    const { dir, records, edits, advance } = await setup();
    assert.equal(edits.contentCheckDue(), true);
    assert.equal(await edits.checkContent(), 0, 'the first check only records');
    assert.equal(edits.contentCheckDue(), false);
    await writeFile(join(dir, 'a.ini'), 'a=2\n');
    await utimes(join(dir, 'a.ini'), 1_000_000, 1_000_000);
    await writeFile(join(dir, 'excluded.tmp'), 'changed\n');
    await writeFile(join(dir, 'new.ini'), 'n\n');
    advance(60_000);
    assert.equal(edits.contentCheckDue(), true);
    assert.equal(await edits.checkContent(), 2);
    await unlink(join(dir, 'new.ini'));
    assert.equal(await edits.checkContent(), 0, 'new.ini is already noted');
    assert.deepEqual(
      records.map((r) => [r.level, r.msg, r.path, r.detectedBy]),
      [
        ['warn', LOCAL_EDIT_MESSAGES.noted, 'a.ini', 'content check'],
        ['warn', LOCAL_EDIT_MESSAGES.noted, 'new.ini', 'content check'],
      ],
    );
    assert.deepEqual([...edits.startPass()].sort(), ['a.ini', 'new.ini']);
  });

  it('a content record that is there but cannot be used (garbage, truncated by a crash) is said, naming the file; a missing one is not', async () => {
    const { stateDir, records, start } = await setup();
    const record = stateFilePath(stateDir, 'contentHashes');
    await start().checkContent(); // a missing record: the first check, nothing to say
    assert.deepEqual(
      records.filter((r) => String(r.msg).includes('cannot be used')),
      [],
    );
    for (const garbage of ['{"version":2,"target":', '']) {
      records.length = 0;
      await writeFile(record, garbage);
      await start().checkContent();
      const said = records.filter((r) => String(r.msg).includes('cannot be used'));
      assert.equal(said.length, 1, `${JSON.stringify(garbage)}: ${JSON.stringify(records)}`);
      assert.equal(said[0]!.level, 'warn');
      assert.match(String(said[0]!.msg), new RegExp(`^content record ${record} cannot be used`));
    }
  });

  it('a content record that cannot be saved is said once, naming the file and the fix, until a save succeeds again', async () => {
    const { dir, stateDir, records, edits, advance } = await setup({ oneShot: true });
    const record = stateFilePath(stateDir, 'contentHashes');
    await mkdir(record); // a directory where the record goes: every save fails
    await edits.checkContent();
    await writeFile(join(dir, 'b.ini'), 'b=1\n');
    advance(60_000);
    edits.startPass();
    await edits.endPass(passResult('ok', ['b.ini']));
    const said = records.filter((r) => String(r.msg).startsWith('cannot save the content record'));
    assert.equal(said.length, 1, JSON.stringify(records));
    assert.match(String(said[0]!.msg), new RegExp(`${record}: .*make the path a writable file \\(or remove it\\)`));
    await rm(record, { recursive: true });
    edits.startPass();
    await writeFile(join(dir, 'c.ini'), 'c=1\n');
    await edits.endPass(passResult('ok', ['c.ini']));
    assert.ok(JSON.parse(await readFile(record, 'utf8')).files['c.ini'], 'saved once the path is a file again');
  });

  it('a check that finds many changes (a restored target) lists 20 paths and counts the rest in one record', async () => {
    const { dir, records, edits } = await setup();
    const names = Array.from({ length: 25 }, (_, i) => `f${String(i).padStart(2, '0')}.ini`);
    for (const name of names) await writeFile(join(dir, name), 'old\n');
    await edits.checkContent();
    for (const name of names) await writeFile(join(dir, name), 'new\n');
    assert.equal(await edits.checkContent(), 25);
    assert.equal(records.filter((r) => r.msg === LOCAL_EDIT_MESSAGES.noted).length, 20);
    const summary = records.filter((r) => r.count !== undefined);
    assert.deepEqual(
      summary.map((r) => [r.level, r.msg, r.count]),
      [['warn', `${LOCAL_EDIT_MESSAGES.noted} (and 5 more paths, not listed)`, 5]],
    );
    assert.equal(edits.startPass().size, 25, 'every path is compared, listed or not');
  });

  it('the record survives a restart: an edit made while the daemon was stopped is found by its first check', async () => {
    const { dir, records, edits, start } = await setup();
    assert.equal(await edits.checkContent(), 0);
    await writeFile(join(dir, 'a.ini'), 'a=3\n');
    await utimes(join(dir, 'a.ini'), 1_000_000, 1_000_000);
    assert.equal(await start().checkContent(), 1);
    assert.deepEqual(
      records.map((r) => [r.msg, r.path]),
      [[LOCAL_EDIT_MESSAGES.noted, 'a.ini']],
    );
  });

  it('a file whose stat identity is unchanged is not read again; an in-place edit with size and mtime put back is read and noted', async () => {
    const { dir, records, reads, edits } = await setup({ wallNow: settledClock });
    await writeFile(join(dir, 'b.ini'), 'b=1\n');
    assert.equal(await edits.checkContent(), 0);
    assert.deepEqual(reads.splice(0).sort(), ['a.ini', 'b.ini'], 'the first check reads every synced file');
    assert.equal(await edits.checkContent(), 0);
    assert.deepEqual(reads.splice(0), [], 'unchanged files are not read again');
    await writeKeepingSizeAndMtime(join(dir, 'a.ini'), 'a=9\n');
    assert.equal(await edits.checkContent(), 1);
    assert.deepEqual(reads.splice(0), ['a.ini'], 'only the edited file is read');
    assert.deepEqual(
      records.map((r) => [r.msg, r.path, r.detectedBy]),
      [[LOCAL_EDIT_MESSAGES.noted, 'a.ini', 'content check']],
    );
  });

  it('a write through a shared mmap (no inotify event, size kept) moves the stat identity: the file is read and noted', async () => {
    const { dir, reads, edits } = await setup({ wallNow: settledClock });
    await edits.checkContent();
    reads.splice(0);
    execFileSync('python3', [
      '-c',
      'import mmap,sys\nwith open(sys.argv[1], "r+b") as f:\n m = mmap.mmap(f.fileno(), 0)\n m[2:3] = b"7"\n m.close()',
      join(dir, 'a.ini'),
    ]);
    assert.equal(await readFile(join(dir, 'a.ini'), 'utf8'), 'a=7\n');
    assert.equal(await edits.checkContent(), 1);
    assert.deepEqual(reads, ['a.ini']);
  });

  it('the daemon’s check hands its scan, owner names included, to the next pass: the target is scanned once', async () => {
    const { edits } = await setup();
    const known = new KnownTarget(60_000);
    known.forget();
    await edits.checkContent(known);
    const scan = known.reusable();
    assert.ok(scan?.tree.has('a.ini'), 'the check’s scan is kept for the pass');
    assert.equal(scan?.tree.has('excluded.tmp'), false);
    const names = await loadIdNames();
    assert.equal(scan?.tree.get('a.ini')?.owner, names.userById.get(process.getuid?.() ?? 0));
  });

  it('a file changed within the last minute is read at every check until it has settled, then no more', async () => {
    let wall = Date.now();
    const { reads, edits } = await setup({ wallNow: () => wall });
    await edits.checkContent();
    await edits.checkContent();
    assert.deepEqual(reads.splice(0), ['a.ini', 'a.ini'], 'just written: its identity could hide a change in the same clock tick');
    wall += 61_000;
    await edits.checkContent();
    assert.deepEqual(reads.splice(0), ['a.ini'], 'settled: read once more, its identity recorded');
    await edits.checkContent();
    assert.deepEqual(reads.splice(0), [], 'then not read again');
  });

  it('after a restart an unchanged file is not read, and an edit made meanwhile with size and mtime kept is found', async () => {
    const { dir, records, reads, edits, start } = await setup({ wallNow: settledClock });
    await writeFile(join(dir, 'b.ini'), 'b=1\n');
    await edits.checkContent();
    reads.splice(0);
    await writeKeepingSizeAndMtime(join(dir, 'b.ini'), 'b=2\n');
    assert.equal(await start().checkContent(), 1);
    assert.deepEqual(reads, ['b.ini']);
    assert.deepEqual(
      records.map((r) => [r.msg, r.path]),
      [[LOCAL_EDIT_MESSAGES.noted, 'b.ini']],
    );
  });

  it('a record of an earlier version (hashes only) is used: every file is read once, nothing is noted, and it is saved in the new form', async () => {
    const { stateDir, records, reads, edits, start } = await setup({ wallNow: settledClock });
    await edits.checkContent();
    const file = stateFilePath(stateDir, 'contentHashes');
    const saved = JSON.parse(await readFile(file, 'utf8')) as { version: number; target: string; files: Record<string, [string, ...number[]]> };
    assert.equal(saved.version, 2);
    assert.equal(saved.files['a.ini']?.length, 6, 'the stat identity is saved');
    const hashesOnly = Object.fromEntries(Object.entries(saved.files).map(([path, [hash]]) => [path, hash]));
    await writeFile(file, JSON.stringify({ version: 1, target: saved.target, files: hashesOnly }));
    reads.splice(0);
    const next = start();
    assert.equal(await next.checkContent(), 0, 'the same content is no change');
    assert.deepEqual(reads.splice(0), ['a.ini'], 'read once, having no identity on record');
    assert.equal(await next.checkContent(), 0);
    assert.deepEqual(reads, [], 'then not again');
    assert.equal(JSON.parse(await readFile(file, 'utf8')).version, 2);
    assert.deepEqual(records, []);
  });

  it('a path noted by a pass that failed or was killed is noted again by the next process; once settled, it is not', async () => {
    const { dir, records, edits, start } = await setup();
    assert.equal(await edits.checkContent(), 0);
    await writeFile(join(dir, 'a.ini'), 'a=4\n');
    await utimes(join(dir, 'a.ini'), 1_000_000, 1_000_000);
    assert.equal(await edits.checkContent(), 1);
    edits.startPass();
    await edits.endPass(passResult('failed'));
    const next = start(); // the next one-shot pass, or the daemon after a restart
    assert.equal(await next.checkContent(), 1, 'still in question');
    next.startPass();
    await next.endPass(passResult('ok'));
    assert.equal(await start().checkContent(), 0, 'matched the master: settled in the saved record');
    assert.deepEqual(
      records.map((r) => [r.msg, r.path]),
      [
        [LOCAL_EDIT_MESSAGES.noted, 'a.ini'],
        [LOCAL_EDIT_MESSAGES.noted, 'a.ini'],
        [LOCAL_EDIT_MESSAGES.matched, 'a.ini'],
      ],
    );
  });

  it('after an ok pass: "corrected" only for what it wrote, "matches" for the rest; a failed or skipped pass claims nothing and keeps them', async () => {
    const { records, edits } = await setup();
    assert.equal(edits.watcherSaw('a.ini'), true);
    assert.equal(edits.watcherSaw('b.ini'), true);
    edits.startPass();
    assert.equal(await edits.endPass(passResult('skipped')), false);
    edits.startPass();
    assert.equal(await edits.endPass(undefined), false, 'a pass that threw');
    assert.deepEqual([...edits.startPass()].sort(), ['a.ini', 'b.ini'], 'still to compare');
    assert.equal(await edits.endPass(passResult('ok', ['a.ini'])), false);
    assert.deepEqual(
      records.map((r) => [r.msg, r.path]),
      [
        [LOCAL_EDIT_MESSAGES.noted, 'a.ini'],
        [LOCAL_EDIT_MESSAGES.noted, 'b.ini'],
        [LOCAL_EDIT_MESSAGES.corrected, 'a.ini'],
        [LOCAL_EDIT_MESSAGES.matched, 'b.ini'],
      ],
    );
  });

  it('events during a pass: the pass’s own writes are dropped, any other path is noted and asks for another pass', async () => {
    const { records, edits } = await setup();
    edits.watcherSaw('a.ini');
    edits.startPass();
    assert.equal(edits.watcherSaw('written-by-the-pass.ini'), false);
    assert.equal(edits.watcherSaw('a.ini'), false, 'edited again while the pass ran');
    assert.equal(edits.watcherSaw('other.ini'), false);
    assert.equal(await edits.endPass(passResult('ok', ['written-by-the-pass.ini'])), true);
    assert.deepEqual([...edits.startPass()].sort(), ['a.ini', 'other.ini']);
    assert.equal(records.filter((r) => r.msg === LOCAL_EDIT_MESSAGES.corrected || r.msg === LOCAL_EDIT_MESSAGES.matched).length, 0, 'no claim about a.ini yet');
  });
});

describe('LocalEdits: the record of what a pass wrote', () => {
  const hashOf = (text: string): string => {
    const h = contentHasher();
    h.update(Buffer.from(text));
    return h.digest();
  };

  it('is the hash of the bytes the pass staged: the files it wrote are not read back', async () => {
    const { dir, reads, edits } = await setup();
    await edits.checkContent();
    reads.length = 0;
    await writeFile(join(dir, 'b.ini'), 'b=master\n');
    edits.startPass();
    await edits.endPass({ ...passResult('ok', ['b.ini']), fetchedContent: new Map([['b.ini', hashOf('b=master\n')]]) });
    assert.deepEqual(reads, []);
  });

  it('an edit made right after the commit is noted by the next check, not recorded as the master’s content', async () => {
    const { dir, records, edits, advance } = await setup({ wallNow: settledClock });
    await edits.checkContent();
    await writeFile(join(dir, 'b.ini'), 'b=edited by an operator after the commit\n');
    edits.startPass();
    await edits.endPass({ ...passResult('ok', ['b.ini']), fetchedContent: new Map([['b.ini', hashOf('b=master\n')]]) });
    advance(60_000);
    assert.equal(await edits.checkContent(), 1);
    assert.deepEqual(
      records.filter((r) => r.msg === LOCAL_EDIT_MESSAGES.noted).map((r) => r.path),
      ['b.ini'],
    );
  });

  it('a file the pass wrote that is gone before the record is noted by the next check', async () => {
    const { edits, advance } = await setup();
    await edits.checkContent();
    edits.startPass();
    await edits.endPass({ ...passResult('ok', ['gone.ini']), fetchedContent: new Map([['gone.ini', hashOf('g=1\n')]]) });
    advance(60_000);
    assert.equal(await edits.checkContent(), 1);
    assert.deepEqual([...edits.startPass()], ['gone.ini']);
  });

  it('a file the pass wrote without a staged hash (a completed journal) is read and recorded', async () => {
    const { dir, reads, edits, advance } = await setup();
    await edits.checkContent();
    reads.length = 0;
    await writeFile(join(dir, 'c.ini'), 'c=1\n');
    edits.startPass();
    await edits.endPass(passResult('ok', ['c.ini']));
    assert.deepEqual(reads, ['c.ini']);
    advance(60_000);
    assert.equal(await edits.checkContent(), 0, 'recorded: nothing to note');
  });
});

describe('LocalEdits: what a commit cut short was writing', () => {
  const hashOf = (text: string): string => {
    const h = contentHasher();
    h.update(Buffer.from(text));
    return h.digest();
  };

  /** A target of three recorded files, and a commit announced (written to the record) that rewrites a.ini, adds b.ini and deletes c.ini. */
  async function announced() {
    const t = await setup();
    await writeFile(join(t.dir, 'c.ini'), 'c=1\n');
    await t.edits.checkContent();
    t.edits.startPass();
    await t.edits.recordIncoming(
      new Map([
        ['a.ini', hashOf('a=master\n')],
        ['b.ini', hashOf('b=master\n')],
        ['c.ini', null],
      ]),
    );
    return t;
  }

  it('a kill anywhere in the commit: each file holding its recorded or its incoming content is no local edit, a deletion neither', async () => {
    const { dir, records, start } = await announced();
    // Killed part-way: a.ini renamed, b.ini not yet, c.ini deleted.
    await writeFile(join(dir, 'a.ini'), 'a=master\n');
    await unlink(join(dir, 'c.ini'));
    const next = start();
    assert.equal(await next.checkContent(), 0);
    // The journal rolled forward: b.ini arrives.
    await writeFile(join(dir, 'b.ini'), 'b=master\n');
    assert.equal(await next.checkContent(), 0);
    assert.deepEqual(records, []);
  });

  it('what is neither recorded nor incoming is noted: real edits made after the kill', async () => {
    const { dir, records, start } = await announced();
    await writeFile(join(dir, 'a.ini'), 'a=edited on the slave\n');
    await writeFile(join(dir, 'b.ini'), 'b=edited on the slave\n');
    const next = start();
    assert.equal(await next.checkContent(), 2);
    assert.deepEqual(
      records.map((r) => r.path),
      ['a.ini', 'b.ini'],
    );
  });

  it('is dropped from the record by the pass’s end, and a pass that writes nothing does not save the record', async () => {
    const { dir, stateDir, edits } = await announced();
    const file = stateFilePath(stateDir, 'contentHashes');
    assert.equal(Object.keys(JSON.parse(await readFile(file, 'utf8')).incoming).length, 3, 'saved before the commit');
    await writeFile(join(dir, 'a.ini'), 'a=master\n');
    await writeFile(join(dir, 'b.ini'), 'b=master\n');
    await unlink(join(dir, 'c.ini'));
    await edits.endPass({ ...passResult('ok', ['a.ini', 'b.ini', 'c.ini']), fetchedContent: new Map([['a.ini', hashOf('a=master\n')]]) });
    const saved = JSON.parse(await readFile(file, 'utf8'));
    assert.equal(saved.incoming, undefined);
    assert.deepEqual(Object.keys(saved.files).sort(), ['a.ini', 'b.ini']);
    await utimes(file, 1_000_000, 1_000_000);
    edits.startPass();
    await edits.endPass(passResult('ok'));
    assert.equal((await stat(file)).mtimeMs, 1_000_000_000, 'not rewritten');
  });

  it('a noted path the commit corrects stays out of it: noted again after a kill, so its correction is reported', async () => {
    const { dir, records, edits, start } = await setup();
    await edits.checkContent();
    await writeFile(join(dir, 'a.ini'), 'a=edited\n');
    assert.equal(edits.watcherSaw('a.ini'), true);
    edits.startPass();
    await edits.recordIncoming(new Map([['a.ini', hashOf('a=1\n')]]));
    await writeFile(join(dir, 'a.ini'), 'a=1\n'); // the commit corrected it, and the pass was killed
    assert.equal(await start().checkContent(), 1);
    assert.deepEqual(
      records.map((r) => r.path),
      ['a.ini', 'a.ini'],
    );
  });
});

describe('WallClockSteps', () => {
  it('reports a step of the wall clock against the monotonic one, not drift', () => {
    let wall = 1_000_000;
    let mono = 0;
    const steps = new WallClockSteps(
      () => wall,
      () => mono,
    );
    [wall, mono] = [wall + 1_000, mono + 1_000];
    assert.equal(steps.step(), 0);
    [wall, mono] = [wall + 1_500, mono + 1_000];
    assert.equal(steps.step(), 0, 'half a second: slewing, not a step');
    [wall, mono] = [wall - 600_000, mono + 1_000];
    assert.equal(steps.step(), -601_000);
    [wall, mono] = [wall + 3_600_000, mono + 1_000];
    assert.equal(steps.step(), 3_599_000);
    assert.equal(steps.step(), 0);
  });
});
