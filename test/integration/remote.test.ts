/**
 * src/remote: known_hosts against files written by the real ssh-keygen, the
 * session and SftpSource against a real OpenSSH master (test/helpers/sshd.ts),
 * and a fake SFTP peer for what no honest server sends.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, readFile, symlink, utimes, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { ConfigError, ConnectionError, ExitCode, HostKeyError, MasterChangedError, ProtocolError, TimeoutError, TransferError } from '../../src/errors.js';
import type { Filter } from '../../src/filter/types.js';
import { fingerprint, parseKnownHosts, verifyHostKey } from '../../src/remote/known-hosts.js';
import { KnownMaster } from '../../src/remote/known-master.js';
import { openSession, type SftpSession } from '../../src/remote/session.js';
import { SftpSource } from '../../src/remote/sftp-source.js';
import type { Entry } from '../../src/tree.js';
import { freePort as closedPort, makeTempDir, sessionOptionsFor, startMaster, type TestMaster } from '../helpers/sshd.js';

const T = { timeout: 60_000 };

// ---------------------------------------------------------------- helpers

interface KeyPair {
  privatePath: string;
  pubLine: string; // "ssh-ed25519 AAAA... comment"
  type: string;
  blob: Buffer;
}

function keygen(dir: string, name: string, type: 'ed25519' | 'ecdsa' | 'rsa' = 'ed25519'): KeyPair {
  const privatePath = path.join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', name, '-f', privatePath], { timeout: 20_000 });
  const pubLine = execFileSync('cat', [privatePath + '.pub'])
    .toString()
    .trim();
  return { privatePath, pubLine, ...splitPub(pubLine) };
}

function splitPub(line: string): { type: string; blob: Buffer } {
  const fields = line.trim().split(/\s+/);
  const at = fields[0].startsWith('@') ? 1 : 0;
  // A known_hosts line has a host field first; a .pub line starts with the type.
  const typeIndex = /^(ssh-|ecdsa-|sk-)/.test(fields[at]) ? at : at + 1;
  return { type: fields[typeIndex], blob: Buffer.from(fields[typeIndex + 1], 'base64') };
}

const keygenType = (sshType: string): 'ed25519' | 'ecdsa' | 'rsa' => (sshType === 'ssh-ed25519' ? 'ed25519' : sshType.startsWith('ecdsa') ? 'ecdsa' : 'rsa');

const noFilter: Filter = { patterns: [], isExcluded: () => false, isExcludedPath: () => false };

function recordingFilter(excluded: string[]): Filter & { asked: string[] } {
  const asked: string[] = [];
  return {
    patterns: excluded,
    asked,
    isExcluded: (p) => (asked.push(p), excluded.includes(p)),
    isExcludedPath: (p) => excluded.some((e) => p === e || p.startsWith(e + '/')),
  };
}

function collectingSink(): { write(chunk: Buffer, position: number): Promise<void>; content(): Buffer; positions: number[] } {
  const parts: Array<[number, Buffer]> = [];
  return {
    positions: [],
    async write(chunk, position) {
      this.positions.push(position);
      parts.push([position, Buffer.from(chunk)]); // the source may reuse nothing, but copy anyway
    },
    content() {
      const size = parts.reduce((max, [pos, b]) => Math.max(max, pos + b.length), 0);
      const out = Buffer.alloc(size);
      for (const [pos, b] of parts) b.copy(out, pos);
      return out;
    },
  };
}

/** Accepts TCP and never says a word: the SSH banner never comes. */
async function silentServer(): Promise<{ port: number; stop(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => (sockets.add(s), s.on('error', () => {})));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * TCP relay to the master that can stop passing the master's bytes on, like a
 * link that went dark. Half-open allowed, so our FIN is never answered either:
 * that is how ssh2's end() hangs.
 */
async function freezableProxy(targetPort: number): Promise<{ port: number; freeze(): void; stop(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let frozen = false;
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) sockets.add(s), s.on('error', () => {});
    // Frozen: nothing passes either way, not even the master's hang-up.
    client.on('data', (d) => frozen || upstream.write(d));
    upstream.on('data', (d) => frozen || client.write(d));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => frozen || client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze: () => (frozen = true),
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const optionsFor = sessionOptionsFor;

async function expectReject<E extends Error>(promise: Promise<unknown>, type: new (...args: never[]) => E): Promise<E> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof type, `expected ${type.name}, got ${String(err)}`);
    return err;
  }
  assert.fail(`expected ${type.name}, but it resolved`);
}

// ---------------------------------------------------------------- known_hosts

describe('known_hosts', () => {
  let dir: string;
  let hostKey: KeyPair;
  let otherKey: KeyPair; // same type, different key: "changed"
  let ecdsaKey: KeyPair; // another type: "unknown", as ssh(1) treats it

  before(async () => {
    dir = await makeTempDir('xs-known-hosts-');
    hostKey = keygen(dir, 'host');
    otherKey = keygen(dir, 'other');
    ecdsaKey = keygen(dir, 'ecdsa', 'ecdsa');
  });

  const hostPart = (line: string) => line.split(' ').slice(0, 2).join(' ');

  it('matches plain, [host]:port and wildcard entries', T, () => {
    const kh = parseKnownHosts(
      [
        '# comment',
        '',
        `master.example,127.0.0.1 ${hostPart(hostKey.pubLine)}`,
        `[127.0.0.1]:2222 ${hostPart(hostKey.pubLine)} trailing comment`,
        `*.lan,!evil.lan ${hostPart(hostKey.pubLine)}`,
        'garbage line',
      ].join('\n'),
    );
    assert.deepEqual(verifyHostKey(kh, '127.0.0.1', 22, hostKey.blob), { ok: true });
    assert.deepEqual(verifyHostKey(kh, 'MASTER.example', 22, hostKey.blob), { ok: true });
    assert.deepEqual(verifyHostKey(kh, '127.0.0.1', 2222, hostKey.blob), { ok: true });
    assert.deepEqual(verifyHostKey(kh, '127.0.0.1', 2223, hostKey.blob), { ok: false, reason: 'unknown' });
    assert.deepEqual(verifyHostKey(kh, 'node1.lan', 22, hostKey.blob), { ok: true });
    assert.deepEqual(verifyHostKey(kh, 'evil.lan', 22, hostKey.blob), { ok: false, reason: 'unknown' });
    assert.deepEqual(verifyHostKey(kh, '127.0.0.2', 22, hostKey.blob), { ok: false, reason: 'unknown' });
    assert.deepEqual(verifyHostKey(kh, '127.0.0.1', 22, otherKey.blob), { ok: false, reason: 'changed' });
    assert.deepEqual(verifyHostKey(kh, '127.0.0.1', 22, ecdsaKey.blob), { ok: false, reason: 'unknown' });
  });

  it('matches entries hashed by ssh-keygen -H', T, async () => {
    const file = path.join(dir, 'hashed');
    await writeFile(file, `127.0.0.1 ${hostPart(hostKey.pubLine)}\n[127.0.0.1]:2222 ${hostPart(hostKey.pubLine)}\n`);
    execFileSync('ssh-keygen', ['-q', '-H', '-f', file], { timeout: 20_000 });
    const text = await readFile(file, 'utf8');
    assert.ok(!text.includes('127.0.0.1') && text.includes('|1|'), 'ssh-keygen -H left plain host names');
    const kh = parseKnownHosts(text, file);
    assert.equal(kh.entries.length, 2);
    assert.deepEqual(verifyHostKey(kh, '127.0.0.1', 22, hostKey.blob), { ok: true });
    assert.deepEqual(verifyHostKey(kh, '127.0.0.1', 2222, hostKey.blob), { ok: true });
    assert.deepEqual(verifyHostKey(kh, '127.0.0.1', 2222, otherKey.blob), { ok: false, reason: 'changed' });
    assert.deepEqual(verifyHostKey(kh, '127.0.0.9', 22, hostKey.blob), { ok: false, reason: 'unknown' });
  });

  it('rejects @revoked keys even when listed, and ignores @cert-authority', T, () => {
    const kh = parseKnownHosts(
      [`127.0.0.1 ${hostPart(hostKey.pubLine)}`, `@revoked * ${hostPart(hostKey.pubLine)}`, `@cert-authority 127.0.0.1 ${hostPart(otherKey.pubLine)}`].join(
        '\n',
      ),
    );
    assert.deepEqual(verifyHostKey(kh, '127.0.0.1', 22, hostKey.blob), { ok: false, reason: 'revoked' });
    assert.deepEqual(verifyHostKey(kh, '127.0.0.1', 22, otherKey.blob), { ok: false, reason: 'changed' });
  });

  it('fingerprints like ssh-keygen -lf', T, () => {
    for (const key of [hostKey, ecdsaKey]) {
      const out = execFileSync('ssh-keygen', ['-lf', key.privatePath + '.pub']).toString();
      assert.equal(fingerprint(key.blob), out.split(/\s+/)[1]);
    }
  });
});

// ---------------------------------------------------------------- session

describe('session against OpenSSH', () => {
  let master: TestMaster;
  let scratch: string;

  before(async () => {
    master = await startMaster();
    scratch = await makeTempDir('xs-remote-');
  });
  after(async () => master?.stop());

  it('connects, counts traffic and closes', T, async () => {
    const session = await openSession(optionsFor(master));
    assert.ok(session.isAlive());
    const cwd = await session.request<string>((sftp, settle) => sftp.realpath('.', settle));
    assert.ok(cwd.startsWith('/'));
    const { sent, received } = session.traffic();
    assert.ok(sent > 0 && received > 0);
    const lost: unknown[] = [];
    session.onLost((err) => lost.push(err));
    const started = Date.now();
    await session.close();
    assert.ok(Date.now() - started < 2000, 'close() is bounded');
    assert.equal(session.isAlive(), false);
    assert.deepEqual(lost, [], 'a deliberate close is not a loss');
  });

  it('refuses an unknown host key with its fingerprint and exit code 254', T, async () => {
    const empty = path.join(scratch, 'known_hosts.empty');
    await writeFile(empty, '# nothing\n');
    const err = await expectReject(openSession(optionsFor(master, { knownHostsFile: empty })), HostKeyError);
    assert.equal(err.exitCode, 254);
    assert.equal(ExitCode.HOST_KEY, 254);
    assert.match(err.message, /unknown/);
    assert.ok(err.message.includes(master.hostKeyFingerprint), err.message);
    assert.ok(err.message.includes(`${master.host}:${master.port}`));
    assert.ok(err.hint?.includes(`ssh-keyscan -p ${master.port} ${master.host} >> ${empty}`), err.hint);
    assert.equal(fingerprint(splitPub(master.hostPublicKey).blob), master.hostKeyFingerprint);
  });

  it('refuses a changed host key and a revoked one', T, async () => {
    const { type } = splitPub(master.hostPublicKey);
    const impostor = keygen(scratch, 'impostor', keygenType(type));
    const changed = path.join(scratch, 'known_hosts.changed');
    await writeFile(changed, `[${master.host}]:${master.port} ${impostor.type} ${impostor.blob.toString('base64')}\n`);
    const err = await expectReject(openSession(optionsFor(master, { knownHostsFile: changed })), HostKeyError);
    assert.match(err.message, /changed/);
    assert.ok(err.message.includes(master.hostKeyFingerprint));

    const revoked = path.join(scratch, 'known_hosts.revoked');
    const { blob } = splitPub(master.hostPublicKey);
    const revokedLine = `@revoked * ${type} ${blob.toString('base64')}`;
    await writeFile(revoked, (await readFile(master.knownHosts, 'utf8')) + '\n' + revokedLine + '\n');
    const err2 = await expectReject(openSession(optionsFor(master, { knownHostsFile: revoked })), HostKeyError);
    assert.match(err2.message, /revoked/);
  });

  it('names missing files and bad identities as ConfigError', T, async () => {
    const missing = path.join(scratch, 'no-such-file');
    const e1 = await expectReject(openSession(optionsFor(master, { knownHostsFile: missing })), ConfigError);
    assert.ok(e1.message.includes(missing));
    const e2 = await expectReject(openSession(optionsFor(master, { identityFile: missing })), ConfigError);
    assert.ok(e2.message.includes(missing));
    const encrypted = path.join(scratch, 'encrypted');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'secret', '-f', encrypted], { timeout: 20_000 });
    const e3 = await expectReject(openSession(optionsFor(master, { identityFile: encrypted })), ConfigError);
    assert.match(e3.message, /encrypted/);
  });

  it('authenticates with rsa (rsa-sha2 via server-sig-algs) and ecdsa identities', T, async (t) => {
    // The helper's sshd reads this file per login (AuthorizedKeysFile in master.dir).
    const authorized = path.join(master.dir, 'authorized_keys');
    const existing = await readFile(authorized, 'utf8').catch(() => undefined);
    if (master.kind !== 'openssh' || existing === undefined) return t.skip('needs the OpenSSH master and its authorized_keys file');
    const rsa = keygen(scratch, 'id_rsa', 'rsa');
    const ecdsa = keygen(scratch, 'id_ecdsa', 'ecdsa');
    await writeFile(authorized, `${existing.trim()}\n${rsa.pubLine}\n${ecdsa.pubLine}\n`);
    for (const key of [rsa, ecdsa]) {
      const session = await openSession(optionsFor(master, { identityFile: key.privatePath }));
      assert.ok(session.isAlive());
      await session.close();
    }
  });

  it('reports refused authentication as ConnectionError', T, async () => {
    const stranger = keygen(scratch, 'stranger');
    const err = await expectReject(openSession(optionsFor(master, { identityFile: stranger.privatePath })), ConnectionError);
    assert.equal(err.message, `authentication failed for ${master.user}@${master.host}:${master.port}`);
  });

  it('fails fast on a closed port and within the timeout on a silent one', T, async () => {
    const port = await closedPort();
    const started = Date.now();
    const err = await expectReject(openSession(optionsFor(master, { port, connectTimeoutMs: 3000 })), ConnectionError);
    assert.ok(Date.now() - started < 3000);
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}: ECONNREFUSED`));
    assert.equal(err.exitCode, 255);

    const silent = await silentServer();
    try {
      const t0 = Date.now();
      const err2 = await expectReject(openSession(optionsFor(master, { port: silent.port, connectTimeoutMs: 700 })), ConnectionError);
      const elapsed = Date.now() - t0;
      assert.ok(elapsed >= 600 && elapsed < 2500, `timed out after ${elapsed} ms`);
      assert.match(err2.message, /timed out connecting/);
    } finally {
      await silent.stop();
    }
  });

  it('times out pending requests when the master goes silent, and close() stays bounded', T, async () => {
    const proxy = await freezableProxy(master.port);
    // known_hosts names the master's port; the proxy listens elsewhere, so pin the key for the proxy's port too.
    const khFile = path.join(scratch, 'known_hosts.proxy');
    const { type, blob } = splitPub(master.hostPublicKey);
    await writeFile(khFile, `[${master.host}]:${proxy.port} ${type} ${blob.toString('base64')}\n`);
    try {
      const session = await openSession(optionsFor(master, { port: proxy.port, knownHostsFile: khFile, idleTimeoutMs: 600 }));
      const lost: Error[] = [];
      session.onLost((err) => lost.push(err));
      proxy.freeze();
      const t0 = Date.now();
      const err = await expectReject(
        session.request<string>((sftp, settle) => sftp.realpath('.', settle)),
        TimeoutError,
      );
      assert.ok(Date.now() - t0 < 3000);
      assert.equal(err.message, `no progress from ${master.host}:${proxy.port} for 0.6 s`);
      assert.equal(err.exitCode, 30);
      assert.equal(lost.length, 1);
      assert.equal(session.isAlive(), false);
      await expectReject(
        session.request<string>((sftp, settle) => sftp.realpath('.', settle)),
        TimeoutError,
      );
      const t1 = Date.now();
      await session.close();
      assert.ok(Date.now() - t1 < 1500);
    } finally {
      await proxy.stop();
    }
  });

  it('bounds close() when the master stops answering', T, async () => {
    const proxy = await freezableProxy(master.port);
    const khFile = path.join(scratch, 'known_hosts.proxy2');
    const { type, blob } = splitPub(master.hostPublicKey);
    await writeFile(khFile, `[${master.host}]:${proxy.port} ${type} ${blob.toString('base64')}\n`);
    try {
      const session = await openSession(optionsFor(master, { port: proxy.port, knownHostsFile: khFile }));
      proxy.freeze();
      const t0 = Date.now();
      await session.close();
      const elapsed = Date.now() - t0;
      assert.ok(elapsed >= 900 && elapsed < 2500, `close took ${elapsed} ms (end() gets ~1 s, then the socket is destroyed)`);
    } finally {
      await proxy.stop();
    }
  });

  it('tells onLost listeners when the connection drops', T, async () => {
    const proxy = await freezableProxy(master.port);
    const khFile = path.join(scratch, 'known_hosts.proxy3');
    const { type, blob } = splitPub(master.hostPublicKey);
    await writeFile(khFile, `[${master.host}]:${proxy.port} ${type} ${blob.toString('base64')}\n`);
    const session = await openSession(optionsFor(master, { port: proxy.port, knownHostsFile: khFile }));
    const lost = new Promise<Error>((resolve) => session.onLost(resolve));
    await proxy.stop();
    const err = await lost;
    assert.ok(err instanceof ConnectionError, String(err));
    assert.match(err.message, new RegExp(`connection to 127\\.0\\.0\\.1:${proxy.port} lost`));
    assert.equal(session.isAlive(), false);
    await expectReject(
      session.request<string>((sftp, settle) => sftp.realpath('.', settle)),
      ConnectionError,
    );
    await session.close();
  });
});

// ---------------------------------------------------------------- SftpSource

for (const kind of ['openssh', 'embedded'] as const)
  describe(`SftpSource against the ${kind} master`, () => {
    let master: TestMaster;
    let session: SftpSession;
    let root: string;
    const MTIME = 1_700_000_000;
    const big = randomBytes(1024 * 1024 + 12345);

    before(async () => {
      master = await startMaster({ forceEmbedded: kind === 'embedded' });
      session = await openSession(optionsFor(master));
      root = path.join(master.dir, 'xroad');
      await mkdir(path.join(root, 'conf.d/nested'), { recursive: true });
      await mkdir(path.join(root, 'empty'));
      await mkdir(path.join(root, 'gpghome'), { mode: 0o700 });
      await mkdir(path.join(root, 'excluded/inner'), { recursive: true });
      await mkdir(path.join(root, 'many'));
      await writeFile(path.join(root, 'a.txt'), 'hello\n');
      await writeFile(path.join(root, 'conf.d/local.ini'), '[x]\n', { mode: 0o640 });
      await writeFile(path.join(root, 'conf.d/nested/deep.txt'), 'deep');
      await writeFile(path.join(root, 'gpghome/secring'), 'secret');
      await writeFile(path.join(root, 'excluded/inner/file'), 'x');
      await writeFile(path.join(root, 'empty.bin'), '');
      await writeFile(path.join(root, 'big.bin'), big);
      for (let i = 0; i < 250; i++) await writeFile(path.join(root, 'many', `f${String(i).padStart(3, '0')}`), String(i));
      await symlink('a.txt', path.join(root, 'link'));
      execFileSync('mkfifo', [path.join(root, 'fifo')]);
      await chmod(path.join(root, 'conf.d/local.ini'), 0o640); // umask-proof
      await chmod(path.join(root, 'gpghome'), 0o700);
      await utimes(path.join(root, 'a.txt'), MTIME, MTIME);
      if (process.getuid?.() === 0) await chown(path.join(root, 'conf.d/local.ini'), 65534, 65534);
    });
    after(async () => {
      await session?.close();
      await master?.stop();
    });

    it('scans modes, sizes, mtimes, owners, links and types, skipping excluded dirs', T, async () => {
      const source = new SftpSource(session, root + '/');
      const filter = recordingFilter(['excluded']);
      const tree = await source.scan(filter);
      const get = (p: string): Entry => {
        const e = tree.get(p);
        assert.ok(e, `missing ${p}`);
        return e;
      };
      assert.equal(get('').type, 'dir');
      assert.deepEqual([get('a.txt').type, get('a.txt').size, get('a.txt').mtime], ['file', 6, MTIME]);
      assert.equal(get('conf.d/local.ini').mode, 0o640);
      assert.equal(get('conf.d/nested/deep.txt').size, 4);
      assert.equal(get('empty').type, 'dir');
      assert.deepEqual([get('gpghome').type, get('gpghome').mode], ['dir', 0o700]);
      assert.ok(tree.has('gpghome/secring'));
      assert.deepEqual([get('link').type, get('link').linkTarget], ['symlink', 'a.txt']);
      assert.equal(get('fifo').type, 'other');
      assert.equal(get('big.bin').size, big.length);
      assert.equal(get('empty.bin').size, 0);
      assert.equal([...tree.keys()].filter((p) => p.startsWith('many/')).length, 250, 'READDIR pagination');
      assert.ok(!tree.has('excluded') && !tree.has('excluded/inner'));
      assert.ok(!filter.asked.some((p) => p.startsWith('excluded/')), 'descended into an excluded directory');

      const me = execFileSync('id', ['-un']).toString().trim();
      assert.equal(get('a.txt').owner, me);
      assert.equal(get('a.txt').uid, process.getuid?.());
      if (process.getuid?.() === 0) {
        const nobody = execFileSync('id', ['-un', '65534']).toString().trim();
        assert.deepEqual([get('conf.d/local.ini').uid, get('conf.d/local.ini').owner], [65534, nobody]);
      }
    });

    it('fetches content, pipelined and in order', T, async () => {
      const source = new SftpSource(session, root, { chunkSize: 64 * 1024, readsInFlight: 4 });
      const tree = await source.scan(noFilter);
      for (const [name, expected] of [
        ['a.txt', Buffer.from('hello\n')],
        ['empty.bin', Buffer.alloc(0)],
        ['big.bin', big],
      ] as const) {
        const sink = collectingSink();
        const n = await source.fetch(tree.get(name)!, sink);
        assert.equal(n, expected.length);
        assert.ok(sink.content().equals(expected), `${name} content differs`);
        assert.deepEqual(
          sink.positions,
          [...sink.positions].sort((a, b) => a - b),
          'writes out of order',
        );
      }
      assert.ok(source.traffic().received > big.length);
    });

    it('reports a file whose open handle no longer matches the listing (size or mtime) as MasterChangedError', T, async () => {
      const source = new SftpSource(session, root);
      const a = (await source.scan(noFilter)).get('a.txt')!;
      const shrunk = await expectReject(source.fetch({ ...a, size: 10 }, collectingSink()), MasterChangedError);
      assert.equal(shrunk.message, `a.txt changed on the master while it was read (listed 10 bytes, mtime ${a.mtime}; now 6 bytes, mtime ${a.mtime})`);
      const grown = await expectReject(source.fetch({ ...a, size: 3 }, collectingSink()), MasterChangedError);
      assert.match(grown.message, /listed 3 bytes.*now 6 bytes/);
      // Same size, other mtime: rewritten between listing and read; never committed with the listed mtime.
      const retimed = await expectReject(source.fetch({ ...a, mtime: a.mtime - 5 }, collectingSink()), MasterChangedError);
      assert.match(retimed.message, /now 6 bytes, mtime/);
    });

    it('reports a vanished path as a race (no exclude hint), unreadable paths as TransferError with an exclude hint', T, async (t) => {
      const source = new SftpSource(session, root);
      const gone: Entry = { path: 'conf.d/missing.ini', type: 'file', mode: 0o640, size: 1, mtime: 0, uid: 0, gid: 0 };
      const err = await expectReject(source.fetch(gone, collectingSink()), MasterChangedError);
      assert.ok(err.message.includes('/conf.d/missing.ini'));
      assert.equal(err.hint, undefined);
      await expectReject(new SftpSource(session, path.join(master.dir, 'nope')).scan(noFilter), TransferError);

      if (process.getuid?.() === 0) {
        t.diagnostic('skipped the chmod 000 directory case: root reads it anyway');
        return;
      }
      const lockedRoot = path.join(master.dir, 'locked-root');
      await mkdir(path.join(lockedRoot, 'locked'), { recursive: true });
      await chmod(path.join(lockedRoot, 'locked'), 0o000);
      try {
        const e2 = await expectReject(new SftpSource(session, lockedRoot).scan(noFilter), TransferError);
        assert.equal(e2.hint, 'exclude it with --exclude /locked');
      } finally {
        await chmod(path.join(lockedRoot, 'locked'), 0o755);
      }
    });
  });

// ---------------------------------------------------------------- a master no honest server is

type FakeName = { filename: string; longname?: string; mode?: number; size?: number; uid?: number; gid?: number };

/** An SftpSession whose "server" answers from a table, to send what OpenSSH never would. */
function fakeSession(listing: Record<string, FakeName[]>, fileSize = 0): SftpSession & { maxOutstandingReads: number } {
  let outstandingReads = 0;
  const handles = new Map<string, { dir: string; served: boolean }>();
  const attrs = (n: FakeName) => ({ mode: n.mode ?? 0o100644, size: n.size ?? 1, uid: n.uid ?? 0, gid: n.gid ?? 0, atime: 1, mtime: 1 });
  const sftp = {
    lstat: (_p: string, cb: (e: Error | undefined, a: unknown) => void) => cb(undefined, attrs({ filename: '', mode: 0o040755 })),
    opendir: (p: string, cb: (e: Error | undefined, h: Buffer) => void) => {
      const id = String(handles.size);
      handles.set(id, { dir: p.replace(/^\/src\/?/, '').replace(/\/$/, ''), served: false });
      cb(undefined, Buffer.from(id));
    },
    // As ssh2's: (handle, [options,] callback).
    readdir: (h: Buffer, optsOrCb: unknown, maybeCb?: (e: (Error & { code?: number }) | undefined, list?: unknown[]) => void) => {
      const cb = (maybeCb ?? optsOrCb) as (e: (Error & { code?: number }) | undefined, list?: unknown[]) => void;
      const state = handles.get(h.toString())!;
      if (state.served) return setImmediate(() => cb(Object.assign(new Error('EOF'), { code: 1 })));
      state.served = true;
      const names = (listing[state.dir] ?? []).map((n) => ({ filename: n.filename, longname: n.longname ?? '', attrs: attrs(n) }));
      setImmediate(() => cb(undefined, names));
    },
    close: (_h: Buffer, cb: (e?: Error) => void) => cb(),
    readlink: (_p: string, cb: (e: Error | undefined, t: string) => void) => cb(undefined, 'target'),
    open: (_p: string, _m: string, cb: (e: Error | undefined, h: Buffer) => void) => cb(undefined, Buffer.from('f')),
    read: (_h: Buffer, buf: Buffer, off: number, len: number, pos: number, cb: (e: Error | undefined, n: number) => void) => {
      outstandingReads++;
      result.maxOutstandingReads = Math.max(result.maxOutstandingReads, outstandingReads);
      const n = Math.max(0, Math.min(len, fileSize - pos));
      buf.fill(7, off, off + n);
      setImmediate(() => (outstandingReads--, cb(undefined, n)));
    },
    fstat: (_h: Buffer, cb: (e: Error | undefined, a: unknown) => void) => cb(undefined, { size: fileSize }),
  };
  const result = {
    address: 'fake:22',
    maxOutstandingReads: 0,
    request: <R>(issue: (s: never, settle: (err: Error | null | undefined, value: R) => void) => void) =>
      new Promise<R>((resolve, reject) => issue(sftp as never, (err, value) => (err ? reject(err) : resolve(value)))),
    maxReadLength: () => 64 * 1024,
    close: async () => {},
    destroy: () => {},
    isAlive: () => true,
    traffic: () => ({ sent: 0, received: 0 }),
    onLost: () => () => {},
  };
  return result as unknown as SftpSession & { maxOutstandingReads: number };
}

describe('SftpSource against a hostile master', () => {
  for (const bad of ['..', '.', '', 'a/b', '../../etc/passwd', 'nul\0byte', 'x'.repeat(256), 'é'.repeat(128)]) {
    const verb = bad === '.' || bad === '..' ? 'ignores' : 'refuses';
    it(`${verb} the name ${JSON.stringify(bad).slice(0, 40)}`, T, async () => {
      const source = new SftpSource(fakeSession({ '': [{ filename: 'ok' }, { filename: bad }] }), '/src/');
      // OpenSSH lists them (read with ssh2's `full`); they are never entries.
      if (bad === '.' || bad === '..') {
        const tree = await source.scan(noFilter);
        assert.deepEqual([...tree.keys()].sort(), ['', 'ok']);
        return;
      }
      const err = await expectReject(source.scan(noFilter), ProtocolError);
      assert.ok(err.message.includes(JSON.stringify(bad)), err.message);
    });
  }

  it('accepts a 255-byte name and parses owner names from longname', T, async () => {
    const name = 'é'.repeat(127) + 'x';
    const source = new SftpSource(
      fakeSession({
        '': [
          { filename: name, longname: `-rw-r----- 1 xroad xroad 1 Nov 28 15:58 ${name}` },
          { filename: 'n', longname: '-rw-r----- 1 999 998 1 Nov 28 15:58 n', uid: 999, gid: 998 },
        ],
      }),
      '/src',
    );
    const tree = await source.scan(noFilter);
    assert.deepEqual([tree.get(name)?.owner, tree.get(name)?.group], ['xroad', 'xroad']);
    assert.deepEqual([tree.get('n')?.owner, tree.get('n')?.group], [undefined, undefined]);
  });

  it("takes a user or group renamed on the master (same uid and gid) into the daemon's remembered listing at once", T, async () => {
    const listing: Record<string, FakeName[]> = {
      // `.` as OpenSSH lists it: a listing without it is checked by LSTAT and never remembered.
      '': [
        { filename: '.', mode: 0o040755 },
        { filename: 'sub', mode: 0o040755, longname: 'drwxr-xr-x 2 root root 4096 Nov 28 15:58 sub' },
        { filename: 'a.ini', uid: 1000, gid: 1000, longname: '-rw-r----- 1 alice staff 1 Nov 28 15:58 a.ini' },
      ],
      sub: [
        { filename: '.', mode: 0o040755 },
        { filename: 'b.ini', uid: 1000, gid: 1000, longname: '-rw-r----- 1 alice staff 1 Nov 28 15:58 b.ini' },
        { filename: 'c.ini', uid: 0, gid: 0, longname: '-rw-r----- 1 root root 1 Nov 28 15:58 c.ini' },
      ],
    };
    const known = new KnownMaster();
    const source = new SftpSource(fakeSession(listing), '/src');
    const first = await source.scan(noFilter, undefined, known);
    assert.equal(await source.scan(noFilter, undefined, known), first, 'unchanged: the remembered tree');
    for (const name of [...listing['']!, ...listing.sub!]) name.longname = name.longname?.replace('alice staff', 'alicia staff');
    const renamed = await source.scan(noFilter, undefined, known);
    assert.deepEqual([renamed.get('a.ini')?.owner, renamed.get('sub/b.ini')?.owner, renamed.get('sub/c.ini')?.owner], ['alicia', 'alicia', 'root']);
    assert.equal(await source.scan(noFilter, undefined, known), renamed, 'remembered again after the rename');
  });

  it('bounds the number of entries', T, async () => {
    const names = Array.from({ length: 20 }, (_, i) => ({ filename: `f${i}` }));
    const err = await expectReject(new SftpSource(fakeSession({ '': names }), '/src', { maxEntries: 10 }).scan(noFilter), ProtocolError);
    assert.match(err.message, /more than 10 entries/);
  });

  it('never buffers a claimed huge file: reads stay windowed and stop at the early EOF', T, async () => {
    const session = fakeSession({}, 1024 * 1024);
    const source = new SftpSource(session, '/src', { chunkSize: 64 * 1024, readsInFlight: 4 });
    const claimed: Entry = { path: 'huge', type: 'file', mode: 0o644, size: 10 * 1024 ** 3, mtime: 1, uid: 0, gid: 0 };
    const err = await expectReject(source.fetch(claimed, collectingSink()), MasterChangedError);
    assert.match(err.message, new RegExp(`^huge changed on the master while it was read \\(listed ${10 * 1024 ** 3} bytes`));
    assert.ok(session.maxOutstandingReads <= 4 + 1, `reads in flight: ${session.maxOutstandingReads}`);
  });
});
