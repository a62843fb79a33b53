/**
 * The thundering herd: 20 one-shot `xroad-sync sync` processes
 * started in the same instant against an OpenSSH sshd with its default
 * `MaxStartups 10:30:100` (written explicitly). Past 10 unauthenticated
 * connections sshd drops new ones at random (30 % rising to 100 %) before
 * the banner; every pass must still succeed, by retrying such drops with
 * jittered backoff inside its connect timeout. Starting 20 node processes
 * takes seconds of CPU, which would spread their connections out; a gate
 * in front of sshd holds the first 20 connections and lets them through
 * together, so sshd sees the herd as it would from 20 slaves. Not timed:
 * only exit codes and the synced trees are asserted.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { passArgs, startCli } from '../helpers/cli.js';
import { makeTempDir, readTree, sshdAvailable, startMaster, writeTree } from '../helpers/sshd.js';

const HERD = 20;
const CI = process.env.CI === 'true';
const T = { timeout: 180_000, skip: !CI && !sshdAvailable() && 'needs /usr/sbin/sshd (MaxStartups is an OpenSSH setting)' };

/**
 * TCP relay to sshd that holds connections until `herd` have arrived (or `maxHoldMs` passed), then
 * lets them all through at once; later ones (retries) pass straight away.
 */
async function herdGate(targetPort: number, herd: number, maxHoldMs: number) {
  const sockets = new Set<net.Socket>();
  const held: Array<() => void> = [];
  let open = false;
  let admitted = 0;
  const release = (): void => {
    open = true;
    for (const forward of held.splice(0)) forward();
  };
  const timer = setTimeout(release, maxHoldMs);
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('error', () => {});
    client.pause(); // the client's SSH ident waits in the kernel until the gate opens
    const forward = (): void => {
      admitted++;
      const upstream = net.connect(targetPort, '127.0.0.1');
      sockets.add(upstream);
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.pipe(upstream);
      upstream.pipe(client);
    };
    if (open) return forward();
    held.push(forward);
    if (held.length >= herd) release();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    admitted: () => admitted,
    stop: () =>
      new Promise<void>((resolve) => {
        clearTimeout(timer);
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

test('20 simultaneous one-shot passes against MaxStartups 10:30:100 all exit 0', T, async (t) => {
  const master = await startMaster({ extraConfig: ['MaxStartups 10:30:100'] });
  const base = await makeTempDir('xroad-sync-herd-');
  t.after(async () => {
    await master.stop();
    await fs.rm(base, { recursive: true, force: true });
  });
  assert.equal(master.kind, 'openssh');
  const source = path.join(base, 'master');
  await writeTree(source, {
    'conf.d/local.ini': '[signer]\nport=5558\n',
    'signer/keyconf.xml': '<keyconf/>\n',
    'signer/softtoken/a.p12': Buffer.alloc(2048, 7),
    'serverconf.xml': '<conf/>\n',
  });
  const slaves = Array.from({ length: HERD }, (_, i) => {
    const dir = path.join(base, `slave${i}`);
    return { target: path.join(dir, 'target'), stateDir: path.join(dir, 'state'), flagFile: path.join(dir, 'sync-disabled') };
  });
  await Promise.all(slaves.flatMap((s) => [fs.mkdir(s.target, { recursive: true }), fs.mkdir(s.stateDir, { recursive: true })]));
  const gate = await herdGate(master.port, HERD, 30_000);
  t.after(() => gate.stop());
  const knownHosts = path.join(base, 'known_hosts');
  await fs.writeFile(knownHosts, `[127.0.0.1]:${gate.port} ${master.hostPublicKey}\n`);

  // --connect-timeout covers the wait at the gate too (up to 30 s while the slowest process starts).
  const runs = slaves.map((s) =>
    startCli(['sync', ...passArgs(master, { source, ...s, port: gate.port, knownHosts }), '--connect-timeout', '60'], { timeoutMs: 150_000 }),
  );
  const results = await Promise.all(runs.map((r) => r.done));

  const failed = results
    .map((r, i) => ({ i, r }))
    .filter(({ r }) => r.status !== 0)
    .map(({ i, r }) => `slave${i}: exit ${r.status ?? r.signal}: ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`);
  const log = await fs.readFile(master.logPath!, 'utf8').catch(() => '');
  const drops = log.split('\n').filter((l) => /drop connection|beginning MaxStartups throttling/.test(l)).length;
  assert.deepEqual(failed, [], `${failed.length} of ${HERD} passes failed (sshd logged ${drops} MaxStartups lines)`);
  const expected = await readTree(source);
  for (const s of slaves) assert.deepEqual(await readTree(s.target), expected, `${s.target} equals the master`);
  t.diagnostic(`sshd logged ${drops} MaxStartups drop/throttle lines; ${gate.admitted()} connections for ${HERD} passes`);
});
