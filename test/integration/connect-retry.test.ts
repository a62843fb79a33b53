/**
 * openSession against a busy master: a relay in front of a real OpenSSH sshd
 * turns away the first connections the ways sshd does under load (MaxStartups'
 * "Exceeded MaxStartups" line and close, a TCP reset, a close during key
 * exchange); the session must still open, within the connect timeout. What
 * is an answer rather than a busy master (authentication refused) is not
 * retried, and a closed port still fails within about a second.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConnectionError } from '../../src/errors.js';
import { openSession, type SessionOptions } from '../../src/remote/session.js';
import { freePort, sshdAvailable, startMaster, type TestMaster } from '../helpers/sshd.js';

const CI = process.env.CI === 'true';
const T = { timeout: 60_000, skip: !CI && !sshdAvailable() && 'needs /usr/sbin/sshd' };

type Refusal = 'maxstartups' | 'reset' | 'kex';

/** Relay to `targetPort` that turns away the first `refuse` connections in the given way; counts connections. */
async function busyRelay(targetPort: number, refuse: number, how: Refusal) {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('error', () => {});
    const n = ++connections;
    if (n <= refuse && how === 'maxstartups') return void client.end('Exceeded MaxStartups\r\n');
    if (n <= refuse && how === 'reset') return void client.resetAndDestroy();
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(upstream);
    upstream.on('error', () => {});
    let banner = '';
    upstream.on('data', (d: Buffer) => {
      if (n > refuse) return void client.write(d);
      // 'kex': pass the banner line only, then hang up in the middle of the key exchange.
      if (banner.includes('\n')) return;
      banner += d.toString('latin1');
      const eol = banner.indexOf('\n');
      if (eol < 0) return;
      client.write(banner.slice(0, eol + 1), 'latin1');
      setTimeout(() => (client.destroy(), upstream.destroy()), 50);
    });
    client.on('data', (d) => upstream.write(d));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => connections,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('openSession retries a busy master', () => {
  let master: TestMaster;
  before(async () => {
    master = await startMaster();
  });
  after(async () => {
    await master?.stop();
  });

  async function options(port: number, overrides: Partial<SessionOptions> = {}): Promise<SessionOptions> {
    // known_hosts pins the master's key under the relay's port.
    const knownHostsFile = path.join(master.dir, `known_hosts.${port}`);
    await writeFile(knownHostsFile, `[127.0.0.1]:${port} ${master.hostPublicKey}\n`);
    return {
      host: '127.0.0.1',
      port,
      user: master.user,
      identityFile: master.identity,
      knownHostsFile,
      connectTimeoutMs: 15_000,
      idleTimeoutMs: 5_000,
      ...overrides,
    };
  }

  for (const how of ['maxstartups', 'reset', 'kex'] as const) {
    it(`connects after 3 connections were turned away (${how})`, T, async () => {
      const relay = await busyRelay(master.port, 3, how);
      try {
        const session = await openSession(await options(relay.port));
        assert.ok(session.isAlive());
        const home = await session.request<string>((sftp, settle) => sftp.realpath('.', settle));
        assert.ok(home.startsWith('/'));
        await session.close();
        assert.equal(relay.connections(), 4);
      } finally {
        await relay.stop();
      }
    });
  }

  it('gives up at the connect timeout, saying how often it tried and why', T, async () => {
    const relay = await busyRelay(master.port, Number.MAX_SAFE_INTEGER, 'maxstartups');
    try {
      const err = await openSession(await options(relay.port, { connectTimeoutMs: 1500 })).then(
        () => assert.fail('connected through a relay that refuses everything'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof ConnectionError, String(err));
      assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${relay.port}.*\\(\\d+ attempts in \\d+\\.\\d s\\)`));
      assert.match(err.hint ?? '', /MaxStartups/);
      assert.ok(relay.connections() >= 2, `${relay.connections()} connection(s)`);
    } finally {
      await relay.stop();
    }
  });

  it('does not retry a refused login', T, async () => {
    const relay = await busyRelay(master.port, 0, 'reset');
    try {
      const err = await openSession(await options(relay.port, { user: 'nobody-xroad-sync-test' })).then(
        () => assert.fail('logged in as a user that does not exist'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof ConnectionError, String(err));
      assert.match(err.message, /authentication failed/);
      assert.equal(relay.connections(), 1);
    } finally {
      await relay.stop();
    }
  });

  it('still fails within about a second on a closed port', T, async () => {
    const port = await freePort();
    const started = Date.now();
    const err = await openSession(await options(port)).then(
      () => assert.fail('connected to a closed port'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ConnectionError, String(err));
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}: ECONNREFUSED`));
    assert.ok(Date.now() - started < 10_000, 'well inside the 15 s connect timeout');
  });
});
