/**
 * Live master soak: a writer process rewrites files on a real
 * OpenSSH master in place (truncate + write, and same-size overwrite), by
 * rename, deletes and re-creates them, while many passes run over one warm
 * session (as the daemon runs them). The writer records every version's
 * hash before that version can be seen on the master. Then:
 *   - every pass that exited 0 committed only contents that existed on the
 *     master at some instant (a recorded version), and left no temp or journal;
 *   - after the writer stops, two passes make the slave byte-identical.
 * XROAD_SYNC_LIVE_PASSES sets the number of passes (default 200); it counts
 * passes, not time, and each is bounded by the pass's own timeouts.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { leftoverTemps } from '../../helpers/run-sync.js';
import { suiteMaster, type TestMaster } from '../../helpers/sshd.js';
import { differences, inProcessPasses, journalOf, quickSnapshot, Scratch, withoutExcluded } from './helpers.js';

const PASSES = Math.max(1, Number(process.env.XROAD_SYNC_LIVE_PASSES ?? 200));
const T = { timeout: 120_000 };
const FILES = ['a/f0', 'a/f1', 'a/f2', 'a/f3', 'b/f4', 'b/f5', 'b/f6', 'c/keyconf.xml', 'c/f8', 'c/f9', 'top.ini', 'big.bin'];
/** Upper bound on the writer's life, whatever happens to the test. */
const WRITER_MAX_MS = 90_000;

/**
 * The writer, run as its own process so its writes really race the passes.
 * Each version is "<path> v<n>" plus filler, unique; its SHA-1 is appended to
 * the versions log before the version is written. A truncate + write also
 * shows the empty file for a moment: recorded too, it did exist.
 */
const WRITER = `
const fs = require('fs'), path = require('path'), crypto = require('crypto');
const [root, log, stop, filesJson, maxMs] = process.argv.slice(1);
const files = JSON.parse(filesJson);
const end = Date.now() + Number(maxMs);
const sha = (b) => crypto.createHash('sha1').update(b).digest('hex');
const record = (rel, b) => fs.appendFileSync(log, rel + '\\t' + sha(b) + '\\n');
let n = 0, ops = 0;
const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const content = (rel, size) => {
  const head = Buffer.from(rel + ' v' + (++n) + '\\n');
  const len = size ?? (rel === 'big.bin' ? 128 * 1024 : 50 + Math.floor(Math.random() * 3000));
  const b = Buffer.alloc(Math.max(len, head.length), 'x'.charCodeAt(0) + (n % 20));
  head.copy(b);
  return b;
};
while (!fs.existsSync(stop) && Date.now() < end) {
  const rel = files[Math.floor(Math.random() * files.length)];
  const abs = path.join(root, rel);
  const exists = fs.existsSync(abs);
  const r = Math.random();
  try {
    if (!exists || r < 0.3) {
      // By rename: the writer's temp is excluded (*.tmp) on the slave.
      const b = content(rel);
      record(rel, b);
      const tmp = abs + '.' + process.pid + '.tmp';
      fs.writeFileSync(tmp, b);
      fs.renameSync(tmp, abs);
    } else if (r < 0.55) {
      const b = content(rel);
      record(rel, Buffer.alloc(0));
      record(rel, b);
      fs.writeFileSync(abs, b); // in place: truncate, then one write
    } else if (r < 0.85) {
      const size = fs.statSync(abs).size;
      const b = content(rel, size);
      if (b.length !== size) continue;
      record(rel, b);
      const fd = fs.openSync(abs, 'r+'); // in place, same size, mtime moves within the second
      fs.writeSync(fd, b, 0, b.length, 0);
      fs.closeSync(fd);
    } else if (rel !== 'c/keyconf.xml') {
      fs.unlinkSync(abs);
    }
  } catch (e) {
    if (e.code !== 'ENOENT') throw e;
  }
  ops++;
  sleep(2 + Math.floor(Math.random() * 8));
}
process.stdout.write(String(ops));
`;

describe('faults: live master', () => {
  let master!: TestMaster;
  const scratch = new Scratch();
  suiteMaster((m) => (master = m), { afterAll: () => scratch.cleanup() });

  it(`${PASSES} passes while a writer rewrites, renames and deletes master files; then two quiet passes converge`, T, async () => {
    const ws = await scratch.workspace('xroad-sync-live-');
    const versionsLog = path.join(ws.root, 'versions.log');
    const stopFile = path.join(ws.root, 'stop');
    await writeFile(versionsLog, '');
    for (const d of ['a', 'b', 'c']) await mkdir(path.join(ws.source, d));
    const writer = spawn(process.execPath, ['-e', WRITER, ws.source, versionsLog, stopFile, JSON.stringify(FILES), String(WRITER_MAX_MS)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let writerOut = '';
    let writerErr = '';
    writer.stdout.setEncoding('utf8').on('data', (c: string) => (writerOut += c));
    writer.stderr.setEncoding('utf8').on('data', (c: string) => (writerErr += c));
    const writerDone = new Promise<number | null>((resolve) => writer.once('exit', resolve));

    // The writer deletes at random: under load many deletions fall between two passes and would trip the
    // half-the-tree safety valve, which is not what this test judges (limits.test.ts does).
    const passes = inProcessPasses(master, ws, { maxDelete: 1_000_000 });
    const codes = new Map<number, number>();
    const violations: string[] = [];
    const started = Date.now();
    try {
      // Let the writer create the tree first.
      for (let i = 0; i < 200 && FILES.some((f) => !existsSync(path.join(ws.source, f))); i++) await new Promise((r) => setTimeout(r, 10));
      for (let i = 0; i < PASSES; i++) {
        const r = await passes.run();
        codes.set(r.exitCode, (codes.get(r.exitCode) ?? 0) + 1);
        if (r.exitCode !== 0 && r.exitCode !== 24) violations.push(`pass ${i}: exit ${r.exitCode}: ${passes.notices.join('; ')}`);
        if (r.exitCode !== 0) continue;
        violations.push(...(await committedUnknownContent(ws.target, versionsLog)).map((v) => `pass ${i}: ${v}`));
        const temps = await leftoverTemps(ws.target);
        if (temps.length > 0) violations.push(`pass ${i}: temp files left: ${temps.join(', ')}`);
        if (existsSync(journalOf(ws.state))) violations.push(`pass ${i}: journal left`);
        if (violations.length > 5) break;
      }
    } finally {
      await writeFile(stopFile, '');
      await writerDone;
    }
    const underWriter = Date.now() - started;
    assert.equal(writerErr, '', `the writer failed: ${writerErr}`);
    try {
      assert.deepEqual(violations, []);
      for (let i = 0; i < 2; i++) {
        const r = await passes.run();
        assert.equal(r.exitCode, 0, `quiet pass ${i + 1}: ${passes.notices.join('; ')}`);
      }
      const [want, got] = await Promise.all([quickSnapshot(ws.source, 'hash'), quickSnapshot(ws.target, 'hash')]);
      assert.deepEqual(differences(withoutExcluded(want), got), [], 'the slave is not byte-identical to the master after two quiet passes');
    } finally {
      await passes.close();
    }
    console.log(
      `faults/live-master: ${PASSES} passes in ${underWriter} ms under ${writerOut || '?'} writer ops; exit codes ${[...codes].map(([c, n]) => `${c}×${n}`).join(', ')}`,
    );
    assert.ok((codes.get(0) ?? 0) > 0, 'no pass under the writer succeeded: nothing was checked');
  });
});

/** Files in the target whose bytes are no version the writer ever put on the master. */
async function committedUnknownContent(target: string, versionsLog: string): Promise<string[]> {
  const snapshot = await quickSnapshot(target, 'none');
  // Read after the snapshot: a version is logged before it can exist on the master, so it is in here.
  const known = new Set(readFileSync(versionsLog, 'utf8').split('\n'));
  const out: string[] = [];
  for (const [rel, e] of snapshot) {
    if (e.type !== 'file') continue;
    const hash = createHash('sha1')
      .update(readFileSync(path.join(target, rel)))
      .digest('hex');
    if (!known.has(`${rel}\t${hash}`)) out.push(`${rel} holds content the master never had (${e.size} bytes)`);
  }
  return out;
}
