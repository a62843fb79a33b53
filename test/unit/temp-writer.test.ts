/** The staging thread: files created exclusively with their bytes, mode and mtime; a failure named with its step and temp. */
import assert from 'node:assert/strict';
import { lstat, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { contentHasher } from '../../src/local/content-hashes.js';
import { startTempWriter, TempWriteError } from '../../src/stage/temp-writer.js';

const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'xroad-sync-temp-writer-'));
  dirs.push(dir);
  return dir;
}

describe('startTempWriter', () => {
  it('writes each queued file whole, with its mode and mtime, and says when each is written', async () => {
    const dir = await tempDir();
    const writer = startTempWriter();
    const written: string[] = [];
    try {
      for (let i = 0; i < 300; i++) {
        // A Buffer of its own (handed over to the thread) and, for some, a pooled one (copied).
        const text = `file ${i}\n`.repeat(i + 1);
        const data = i % 3 ? Buffer.from(text) : Buffer.concat([Buffer.from(text)], text.length);
        const hasher = contentHasher();
        hasher.update(Buffer.from(text));
        const expected = hasher.digest();
        await writer.enqueue({ temp: join(dir, `f${i}`), data, mode: i % 2 ? 0o640 : 0o600, mtime: 1_700_000_000 + i }, (hash) => {
          assert.equal(hash, expected, `f${i}`);
          written.push(`f${i}`);
        });
      }
      await writer.settled();
    } finally {
      await writer.close();
    }
    assert.equal(written.length, 300);
    for (const i of [0, 1, 150, 299]) {
      assert.equal(await readFile(join(dir, `f${i}`), 'utf8'), `file ${i}\n`.repeat(i + 1));
      const st = await lstat(join(dir, `f${i}`));
      assert.equal(st.mode & 0o7777, i % 2 ? 0o640 : 0o600);
      assert.equal(st.mtimeMs, (1_700_000_000 + i) * 1000);
    }
  });

  it('never writes through an existing file: the failure names the step and the temp, and stops further files', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'exists'), 'operator data\n');
    const writer = startTempWriter();
    try {
      await writer.enqueue({ temp: join(dir, 'exists'), data: Buffer.from('staged'), mode: 0o600, mtime: 1 }, () => assert.fail('not written'));
      const failure = await writer.settled().then(
        () => undefined,
        (err: unknown) => err,
      );
      assert.ok(failure instanceof TempWriteError, String(failure));
      assert.equal(failure.step, 'create');
      assert.equal(failure.temp, join(dir, 'exists'));
      assert.equal((failure.cause as NodeJS.ErrnoException).code, 'EEXIST');
      assert.equal(writer.failure(), failure);
      await assert.rejects(
        writer.enqueue({ temp: join(dir, 'next'), data: Buffer.from('x'), mode: 0o600, mtime: 1 }, () => undefined),
        TempWriteError,
      );
    } finally {
      await writer.close();
    }
    assert.equal(await readFile(join(dir, 'exists'), 'utf8'), 'operator data\n');
  });
});
