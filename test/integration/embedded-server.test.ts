/**
 * The embedded master against ssh2's real Client over 127.0.0.1: what it
 * serves, what it refuses, and that the fault hooks do what tests rely on.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FileEntry, SFTPWrapper, Client as SshClient, Stats } from 'ssh2';
import ssh2 from 'ssh2';
import { generateEd25519 } from '../../src/serve/keys.js';
import { type EmbeddedMaster, type ServerHooks, startEmbeddedMaster } from '../../src/serve/sftp-server.js';
import { makeTempDir, within, writeTree } from '../helpers/sshd.js';

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const STATUS_NO_SUCH_FILE = 2;
const STATUS_PERMISSION_DENIED = 3;
const TEST_TIMEOUT = { timeout: 20_000 };

const hostKey = generateEd25519();
const clientKey = generateEd25519();
const strangerKey = generateEd25519();

interface Session {
  client: SshClient;
  sftp: SFTPWrapper;
  closed: Promise<void>;
}

function connect(port: number, privateKey: string = clientKey.private): Promise<Session> {
  const expectedHost = (ssh2.utils.parseKey(hostKey.public) as ssh2.ParsedKey).getPublicSSH();
  const client = new ssh2.Client();
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
  const ready = new Promise<Session>((resolve, reject) => {
    client.on('error', reject);
    client.on('ready', () => {
      client.sftp((err, sftp) => (err ? reject(err) : resolve({ client, sftp, closed })));
    });
  });
  client.connect({
    host: '127.0.0.1',
    port,
    username: 'tester',
    privateKey,
    readyTimeout: 5_000,
    hostVerifier: (key: Buffer) => key.equals(expectedHost),
  });
  return within(10_000, 'connect', ready);
}

/** Promise form of an ssh2 callback call, bounded. */
function call<T>(what: string, fn: (cb: (err: Error | null | undefined, value?: T) => void) => void): Promise<T> {
  return within(5_000, what, new Promise<T>((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value as T)))));
}

/** ssh2 takes `{ full: true }` (keep `.` and `..`) but @types/ssh2 lacks that overload. */
type ReaddirWithOptions = (p: string, opts: { full: boolean }, cb: (err: Error | undefined, list: FileEntry[]) => void) => void;
const readdir = (s: SFTPWrapper, p: string): Promise<FileEntry[]> =>
  call<FileEntry[]>('readdir', (cb) => (s.readdir as unknown as ReaddirWithOptions).call(s, p, { full: true }, cb));
const lstat = (s: SFTPWrapper, p: string): Promise<Stats> => call<Stats>('lstat', (cb) => s.lstat(p, cb));
const stat = (s: SFTPWrapper, p: string): Promise<Stats> => call<Stats>('stat', (cb) => s.stat(p, cb));
const readFile = (s: SFTPWrapper, p: string): Promise<Buffer> => call<Buffer>('readFile', (cb) => s.readFile(p, cb));

async function statusOf(promise: Promise<unknown>): Promise<number | undefined> {
  try {
    await promise;
  } catch (err) {
    return (err as { code?: number }).code;
  }
  assert.fail('request succeeded but should have been refused');
}

describe('embedded SFTP master', () => {
  let root: string;
  let master: EmbeddedMaster;
  const hooks: ServerHooks = {};
  const big = randomBytes(600 * 1024);

  before(async () => {
    root = await makeTempDir('xroad-sync-embedded-');
    await writeTree(root, {
      'db.properties': { content: 'secret=1\n', mode: 0o640, mtime: 1_700_000_000 },
      'conf.d/local.ini': '[node]\n',
      'conf.d/link': { symlink: 'local.ini' },
      escape: { symlink: '/etc/passwd' },
      'emptydir/': null,
      'big.bin': big,
    });
    const many: Record<string, string> = {};
    for (let i = 0; i < 250; i++) many[`many/f${String(i).padStart(3, '0')}`] = `${i}`;
    await writeTree(root, many);
    master = await startEmbeddedMaster({
      root,
      hostKey: hostKey.private,
      authorizedKeys: [clientKey.public],
      hooks,
    });
  });

  after(async () => {
    await master?.close();
    if (root) await fs.rm(root, { recursive: true, force: true });
  });

  /** Run body with a fresh connection that is always ended. */
  async function withSession(body: (s: Session) => Promise<void>): Promise<void> {
    const session = await connect(master.port);
    try {
      await body(session);
    } finally {
      session.client.end();
      await within(5_000, 'client close', session.closed);
    }
  }

  it('lists with OpenSSH-style longnames and numeric modes', TEST_TIMEOUT, async () => {
    await withSession(async ({ sftp }) => {
      const byName = new Map((await readdir(sftp, root)).map((e) => [e.filename, e]));
      assert.ok(byName.has('.') && byName.has('..'), 'readdir passes . and .. like OpenSSH');
      const db = byName.get('db.properties')!;
      assert.equal(db.attrs.mode & S_IFMT, S_IFREG);
      assert.equal(db.attrs.mode & 0o7777, 0o640);
      assert.equal(db.attrs.size, 9);
      assert.equal(db.attrs.mtime, 1_700_000_000);
      assert.match(db.longname, /^-rw-r----- +1 \S+ +\S+ +9 Nov 1[45] {2}2023 db\.properties$/);
      assert.equal(byName.get('emptydir')!.attrs.mode & S_IFMT, S_IFDIR);
      assert.match(byName.get('emptydir')!.longname, /^drwx/);
    });
  });

  it('sends at most 100 names per READDIR reply', TEST_TIMEOUT, async () => {
    const batches: number[] = [];
    hooks.rewriteListing = (dir, entries) => {
      if (dir === 'many') batches.push(entries.length);
      return entries;
    };
    try {
      await withSession(async ({ sftp }) => {
        const names = (await readdir(sftp, path.join(root, 'many'))).map((e) => e.filename);
        assert.equal(names.length, 252); // 250 files + . and ..
      });
    } finally {
      delete hooks.rewriteListing;
    }
    assert.deepEqual(batches, [100, 100, 52]);
  });

  it('reads files, small and larger than one READ', TEST_TIMEOUT, async () => {
    await withSession(async ({ sftp }) => {
      assert.equal((await readFile(sftp, path.join(root, 'conf.d/local.ini'))).toString(), '[node]\n');
      assert.ok((await readFile(sftp, path.join(root, 'big.bin'))).equals(big));
      // Relative paths start at the root.
      assert.equal((await readFile(sftp, 'db.properties')).toString(), 'secret=1\n');
    });
  });

  it('reports symlinks as links (lstat semantics) and follows them on stat', TEST_TIMEOUT, async () => {
    await withSession(async ({ sftp }) => {
      const link = (await readdir(sftp, path.join(root, 'conf.d'))).find((e) => e.filename === 'link')!;
      assert.equal(link.attrs.mode & S_IFMT, S_IFLNK);
      assert.match(link.longname, /^lrwxrwxrwx .* link$/);
      assert.equal((await lstat(sftp, path.join(root, 'conf.d/link'))).isSymbolicLink(), true);
      assert.equal((await stat(sftp, path.join(root, 'conf.d/link'))).size, 7);
      const target = await call<string>('readlink', (cb) => sftp.readlink(path.join(root, 'conf.d/link'), cb));
      assert.equal(target, 'local.ini');
    });
  });

  it('refuses every write', TEST_TIMEOUT, async () => {
    await withSession(async ({ sftp }) => {
      const file = path.join(root, 'db.properties');
      assert.equal(await statusOf(call('open w', (cb) => sftp.open(file, 'w', cb))), STATUS_PERMISSION_DENIED);
      assert.equal(await statusOf(call('open a', (cb) => sftp.open(file, 'a', cb))), STATUS_PERMISSION_DENIED);
      assert.equal(await statusOf(call('unlink', (cb) => sftp.unlink(file, cb))), STATUS_PERMISSION_DENIED);
      assert.equal(await statusOf(call('mkdir', (cb) => sftp.mkdir(path.join(root, 'new'), cb))), STATUS_PERMISSION_DENIED);
      assert.equal(await statusOf(call('chmod', (cb) => sftp.chmod(file, 0o777, cb))), STATUS_PERMISSION_DENIED);
      assert.equal(await statusOf(call('rename', (cb) => sftp.rename(file, `${file}.x`, cb))), STATUS_PERMISSION_DENIED);
    });
    assert.equal(await fs.readFile(path.join(root, 'db.properties'), 'utf8'), 'secret=1\n');
  });

  it('refuses paths that leave the root, by .. or through a symlink', TEST_TIMEOUT, async () => {
    await withSession(async ({ sftp }) => {
      assert.equal(await statusOf(stat(sftp, `${root}/../`)), STATUS_PERMISSION_DENIED);
      assert.equal(await statusOf(readdir(sftp, '../../..')), STATUS_PERMISSION_DENIED);
      assert.equal(await statusOf(readFile(sftp, `${root}/conf.d/../../etc/passwd`)), STATUS_PERMISSION_DENIED);
      assert.equal(await statusOf(readFile(sftp, '/etc/passwd')), STATUS_PERMISSION_DENIED);
      // The link itself may be listed (lstat), but not followed out of the root.
      assert.equal((await lstat(sftp, path.join(root, 'escape'))).isSymbolicLink(), true);
      assert.equal(await statusOf(readFile(sftp, path.join(root, 'escape'))), STATUS_PERMISSION_DENIED);
      assert.equal(await statusOf(stat(sftp, path.join(root, 'missing'))), STATUS_NO_SUCH_FILE);
      const home = await call<string>('realpath', (cb) => sftp.realpath('.', cb));
      assert.equal(home, await fs.realpath(root));
    });
  });

  it('refuses a key that is not authorized', TEST_TIMEOUT, async () => {
    const before = master.connections();
    await assert.rejects(connect(master.port, strangerKey.private), /authentication methods failed/);
    assert.equal(master.connections(), before);
  });

  it('refuses exec (only the sftp subsystem is served)', TEST_TIMEOUT, async () => {
    await withSession(async ({ client }) => {
      await assert.rejects(call('exec', (cb) => client.exec('id', cb as never)));
    });
  });

  it('passes hostile listings through rewriteListing verbatim', TEST_TIMEOUT, async () => {
    const hostile = ['../x', 'a/b', '.', 'nul\0byte', 'n'.repeat(4096)];
    hooks.rewriteListing = (dir, entries) => (dir === 'emptydir' ? entries.concat(hostile.map((filename) => ({ ...entries[0]!, filename }))) : entries);
    try {
      await withSession(async ({ sftp }) => {
        const names = (await readdir(sftp, path.join(root, 'emptydir'))).map((e) => e.filename);
        for (const name of hostile) assert.ok(names.includes(name), `client received ${JSON.stringify(name.slice(0, 20))}`);
      });
    } finally {
      delete hooks.rewriteListing;
    }
  });

  it('lies about sizes through rewriteAttrs', TEST_TIMEOUT, async () => {
    hooks.rewriteAttrs = (p, attrs) => (p === 'db.properties' ? { ...attrs, size: 12345 } : attrs);
    try {
      await withSession(async ({ sftp }) => {
        assert.equal((await stat(sftp, path.join(root, 'db.properties'))).size, 12345);
      });
    } finally {
      delete hooks.rewriteAttrs;
    }
  });

  it('stalls a request when onRequest says so', TEST_TIMEOUT, async () => {
    hooks.onRequest = (op, p) => (op === 'stat' && p === 'db.properties' ? 'stall' : undefined);
    try {
      await withSession(async ({ sftp }) => {
        await assert.rejects(within(500, 'stalled stat', stat(sftp, path.join(root, 'db.properties'))), /no answer within 500 ms/);
        // The connection still serves other requests.
        assert.equal((await stat(sftp, path.join(root, 'conf.d/local.ini'))).size, 7);
      });
    } finally {
      delete hooks.onRequest;
    }
  });

  it('cuts the connection mid-read when onRead says so', TEST_TIMEOUT, async () => {
    const reads: number[] = [];
    hooks.onRead = (p, offset) => {
      if (p !== 'big.bin') return undefined;
      reads.push(offset);
      return offset > 0 ? 'cut' : undefined;
    };
    const session = await connect(master.port);
    session.client.on('error', () => {}); // the cut surfaces as ECONNRESET or similar
    try {
      const stream = session.sftp.createReadStream(path.join(root, 'big.bin'));
      const received: Buffer[] = [];
      const outcome = new Promise<string>((resolve) => {
        stream.on('data', (chunk: Buffer) => received.push(chunk));
        stream.on('error', (err: Error) => resolve(`error: ${err.message}`));
        stream.on('end', () => resolve('end'));
        session.client.once('close', () => resolve('connection closed'));
      });
      const result = await within(10_000, 'read after cut', outcome);
      assert.notEqual(result, 'end', 'the read must not complete');
      assert.ok(Buffer.concat(received).length < big.length);
      assert.ok(reads.length >= 2 && reads[0] === 0, `reads at ${reads.join(',')}`);
      await within(5_000, 'client close', session.closed);
    } finally {
      delete hooks.onRead;
      session.client.end();
    }
  });
});
