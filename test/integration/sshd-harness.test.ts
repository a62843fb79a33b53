/**
 * The test master harness: a real sshd that ssh2 can log in to with the
 * generated identity, whose host key matches what the harness reports, and
 * that leaves no process behind; the embedded fallback; the tree helpers.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { FileEntry, SFTPWrapper, Client as SshClient } from 'ssh2';
import ssh2 from 'ssh2';
import { skipUnlessCI } from '../helpers/components.js';
import { descendantsOf, isAlive, makeTempDir, readTree, sshdAvailable, startMaster, type TestMaster, within, writeTree } from '../helpers/sshd.js';

const TEST_TIMEOUT = { timeout: 30_000 };

interface Login {
  client: SshClient;
  sftp: SFTPWrapper;
  offeredHostKey: Buffer;
}

/** Log in the way production does: identity file, host key checked against the harness's line. */
function login(master: TestMaster): Promise<Login> {
  const expected = (ssh2.utils.parseKey(master.hostPublicKey) as ssh2.ParsedKey).getPublicSSH();
  const client = new ssh2.Client();
  let offeredHostKey: Buffer | undefined;
  const ready = new Promise<Login>((resolve, reject) => {
    client.on('error', reject);
    client.on('ready', () => client.sftp((err, sftp) => (err ? reject(err) : resolve({ client, sftp, offeredHostKey: offeredHostKey! }))));
  });
  client.connect({
    host: master.host,
    port: master.port,
    username: master.user,
    privateKey: readFileSync(master.identity),
    readyTimeout: 5_000,
    hostVerifier: (key: Buffer) => {
      offeredHostKey = key;
      return key.equals(expected);
    },
  });
  return within(10_000, 'login', ready);
}

function readdir(sftp: SFTPWrapper, dir: string): Promise<FileEntry[]> {
  return within(5_000, 'readdir', new Promise<FileEntry[]>((resolve, reject) => sftp.readdir(dir, (err, list) => (err ? reject(err) : resolve(list)))));
}

async function listingWorks(master: TestMaster): Promise<void> {
  const src = await makeTempDir('xroad-sync-harness-');
  try {
    await writeTree(src, { 'conf.d/local.ini': 'x', 'db.properties': 'y', link: { symlink: 'db.properties' } });
    const { client, sftp } = await login(master);
    try {
      const names = (await readdir(sftp, src)).map((e) => e.filename).sort();
      assert.deepEqual(names, ['conf.d', 'db.properties', 'link']);
    } finally {
      client.end();
    }
  } finally {
    await fs.rm(src, { recursive: true, force: true });
  }
}

describe('test master harness', () => {
  it('starts OpenSSH that accepts the identity and offers the reported host key', {
    ...TEST_TIMEOUT,
    skip: skipUnlessCI(sshdAvailable() ? false : 'sshd not found (Debian: apt-get install openssh-server)'),
  }, async () => {
    const master = await startMaster();
    try {
      assert.equal(master.kind, 'openssh');
      assert.equal(master.host, '127.0.0.1');
      assert.equal(statSync(master.identity).mode & 0o777, 0o600);
      assert.match(master.hostPublicKey, /^ssh-ed25519 AAAA[0-9A-Za-z+/=]+$/);
      assert.equal(readFileSync(master.knownHosts, 'utf8'), `[127.0.0.1]:${master.port} ${master.hostPublicKey}\n`);
      // Same fingerprint as ssh-keygen prints for the known_hosts line.
      const keygen = spawnSync('ssh-keygen', ['-lf', master.knownHosts], { encoding: 'utf8', timeout: 10_000 });
      assert.equal(keygen.stdout.split(' ')[1], master.hostKeyFingerprint);

      const { client, offeredHostKey } = await login(master);
      client.end();
      const offered = `ssh-ed25519 ${offeredHostKey.toString('base64')}`;
      assert.equal(offered, master.hostPublicKey);

      await listingWorks(master);
      const log = readFileSync(master.logPath!, 'utf8');
      assert.equal(log.match(/Accepted publickey for /g)?.length, 2, log);
    } finally {
      await master.stop();
    }
  });

  it('stop() ends sshd and its per-connection children, and removes the dir', {
    ...TEST_TIMEOUT,
    skip: skipUnlessCI(sshdAvailable() ? false : 'sshd not found (Debian: apt-get install openssh-server)'),
  }, async () => {
    // extraConfig replaces a default: LogLevel VERBOSE → DEBUG1.
    const master = await startMaster({ extraConfig: ['LogLevel DEBUG1'] });
    const pid = Number(readFileSync(path.join(master.dir, 'sshd.pid'), 'utf8'));
    let client: SshClient | undefined;
    try {
      client = (await login(master)).client;
      client.on('error', () => {}); // the server goes away under this connection
      assert.match(readFileSync(master.logPath!, 'utf8'), /debug1: /);
      const children = descendantsOf(pid);
      assert.ok(children.length >= 1, 'an open connection has its own sshd process');
      const started = Date.now();
      await master.stop();
      assert.ok(Date.now() - started < 6_000, 'stop() is bounded');
      for (const p of [pid, ...children]) assert.equal(isAlive(p), false, `process ${p} still alive`);
      assert.equal(existsSync(master.dir), false);
    } finally {
      client?.end();
      await master.stop(); // idempotent
    }
  });

  it('falls back to the embedded master with the same contract', TEST_TIMEOUT, async () => {
    const master = await startMaster({ forceEmbedded: true });
    try {
      assert.equal(master.kind, 'embedded');
      assert.equal(master.logPath, undefined);
      assert.equal(readFileSync(master.knownHosts, 'utf8'), `[127.0.0.1]:${master.port} ${master.hostPublicKey}\n`);
      await listingWorks(master);
    } finally {
      await master.stop();
    }
    assert.equal(existsSync(master.dir), false);
  });

  it('writeTree builds and readTree reads back files, dirs, links, modes and mtimes', TEST_TIMEOUT, async () => {
    const root = await makeTempDir('xroad-sync-tree-');
    try {
      await writeTree(root, {
        'conf.d/local.ini': 'content',
        'emptydir/': null,
        'locked/': { mode: 0o500, mtime: 1_600_000_000 },
        'locked/inner': 'z',
        link: { symlink: 'conf.d/local.ini' },
        f: { content: 'x', mode: 0o640, mtime: 1_700_000_000 },
        bin: Buffer.from([0xff, 0x00, 0xfe]),
      });
      const tree = await readTree(root);
      assert.deepEqual([...tree.keys()], ['bin', 'conf.d', 'conf.d/local.ini', 'emptydir', 'f', 'link', 'locked', 'locked/inner']);
      assert.deepEqual(tree.get('f'), { type: 'file', mode: 0o640, size: 1, mtime: 1_700_000_000, content: 'x' });
      assert.equal(tree.get('link')?.type, 'symlink');
      assert.equal(tree.get('link')?.linkTarget, 'conf.d/local.ini');
      assert.equal(tree.get('emptydir')?.type, 'dir');
      assert.equal(tree.get('locked')?.mode, 0o500);
      assert.equal(tree.get('locked')?.mtime, 1_600_000_000);
      assert.equal(tree.get('bin')?.content, `base64:${Buffer.from([0xff, 0x00, 0xfe]).toString('base64')}`);
      assert.equal((await readTree(root, { includeRoot: true })).get('')?.type, 'dir');
    } finally {
      await fs.chmod(path.join(root, 'locked'), 0o700).catch(() => {});
      await fs.rm(root, { recursive: true, force: true });
    }
  });
});
