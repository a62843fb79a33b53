/**
 * Requests issued together leave in few SSH packets (remote/coalesced-requests.ts):
 * fetching many small files at once from a real OpenSSH master, counted at
 * ssh2's cipher, and every file still arrives whole.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { SFTPWrapper } from 'ssh2';
import { compileFilter } from '../../src/filter/rsync-filter.js';
import { openSession, type SftpSession } from '../../src/remote/session.js';
import { SftpSource } from '../../src/remote/sftp-source.js';
import { makeTempDir, sessionOptionsFor, startMaster, type TestMaster } from '../helpers/sshd.js';

const FILES = 40;

describe('SFTP requests issued together (real sshd)', () => {
  let master: TestMaster;
  let session: SftpSession;
  let root: string;

  before(async () => {
    master = await startMaster();
    root = await makeTempDir('xs-coalesced-');
    await mkdir(path.join(root, 'many'));
    for (let i = 0; i < FILES; i++) await writeFile(path.join(root, 'many', `f${i}.ini`), `value=${i}\n`.repeat(i + 1));
    session = await openSession(sessionOptionsFor(master, { connectTimeoutMs: 10_000, idleTimeoutMs: 10_000 }));
  });
  after(async () => {
    await session?.close();
    await master?.stop();
  });

  it('40 small files fetched at once: their 160 requests leave in at most half as many packets, every file whole', { timeout: 60_000 }, async () => {
    const source = new SftpSource(session, `${root}/`);
    const tree = await source.scan(compileFilter([]));
    const sftp = await session.request<SFTPWrapper>((s, settle) => settle(undefined, s));
    const cipher = (sftp as unknown as { _protocol: { _cipher: { encrypt: (...args: unknown[]) => unknown } } })._protocol._cipher;
    const encrypt = cipher.encrypt;
    let packets = 0;
    cipher.encrypt = (...args: unknown[]) => {
      packets++;
      return encrypt.apply(cipher, args);
    };
    try {
      const files = [...tree.values()].filter((e) => e.type === 'file');
      assert.equal(files.length, FILES);
      const contents = await Promise.all(
        files.map(async (entry) => {
          const chunks: Buffer[] = [];
          await source.fetch(entry, { write: async (chunk) => void chunks.push(Buffer.from(chunk)) });
          return [entry.path, Buffer.concat(chunks).toString()] as const;
        }),
      );
      for (const [p, text] of contents) {
        const i = Number(/f(\d+)\.ini$/.exec(p)![1]);
        assert.equal(text, `value=${i}\n`.repeat(i + 1), p);
      }
      // OPEN, READ, FSTAT and CLOSE per file: one packet each without coalescing (160). With it, however
      // the replies trickle in on a loaded machine, the OPENs leave together and each file's READ and
      // FSTAT together: at most one packet for the OPENs and two per file.
      assert.ok(packets <= 1 + 2 * FILES, `${packets} SSH packets for ${FILES * 4} requests`);
    } finally {
      cipher.encrypt = encrypt;
    }
  });
});
