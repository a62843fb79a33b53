/**
 * The master side of docs/design.md "Master side: SFTP only, no shell": a real
 * OpenSSH sshd started with exactly service/sshd_config.d-xroad-slave.conf
 * (its Match user set to the user the tests log in as: root in CI, since a
 * non-root sshd can only log in its own user). Checks that a pass works, that
 * `ssh ... id` runs no command (the session is forced into internal-sftp),
 * that SFTP writes and TCP forwarding are refused; and, as a control, that
 * the same probes do detect a shell and writes on a master without the block.
 *
 * The harness runs sshd with `StrictModes no` because its authorized_keys
 * sits in a temp dir; on a real master keep StrictModes on and authorized_keys
 * owned by root (see the snippet's comments). Needs /usr/sbin/sshd (Debian
 * package openssh-server) and, for the `ssh` probes, /usr/bin/ssh
 * (openssh-client); without them the tests are skipped with the reason.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants as fsConstants, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { SFTPWrapper, Client as SshClient } from 'ssh2';
import ssh2 from 'ssh2';
import { SAMPLE_EXCLUDED, writeSampleTree } from '../../src/serve/sample-tree.js';
import { skipUnlessCI } from '../helpers/components.js';
import { describeRun, obj, runSync, withoutPaths } from '../helpers/run-sync.js';
import { makeTempDir, readTree, sshdAvailable, startMaster, type TestMaster, within } from '../helpers/sshd.js';

const SNIPPET = fileURLToPath(new URL('../../../service/sshd_config.d-xroad-slave.conf', import.meta.url));
const SSH = '/usr/bin/ssh';
const SSHD = '/usr/sbin/sshd';
const T = { timeout: 45_000 };
const STATUS_PERMISSION_DENIED = 3;

function executable(file: string): boolean {
  try {
    accessSync(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

const noSshd = skipUnlessCI(sshdAvailable() ? false : `${SSHD} not found (Debian: apt-get install openssh-server)`);
const noSsh = noSshd || skipUnlessCI(executable(SSH) ? false : `${SSH} not found (Debian: apt-get install openssh-client)`);

/** The snippet's directives (comments and blank lines dropped), its Match user replaced by `user`. */
function snippetFor(user: string): string[] {
  const lines = readFileSync(SNIPPET, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  assert.equal(lines[0], 'Match User xroad-slave', `the snippet must start its directives with the Match line:\n${lines.join('\n')}`);
  return [`Match User ${user}`, ...lines.slice(1)];
}

interface Probe {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** `ssh ... USER@127.0.0.1 COMMAND` with the master's identity and known_hosts, no user config; SIGKILLed after 15 s. */
function sshCommand(master: TestMaster, command: string): Promise<Probe> {
  const args = [
    '-F',
    '/dev/null',
    '-i',
    master.identity,
    '-p',
    String(master.port),
    '-o',
    `UserKnownHostsFile=${master.knownHosts}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'ConnectTimeout=5',
    `${master.user}@127.0.0.1`,
    command,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(SSH, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, 15_000);
    child.once('error', (err) => (clearTimeout(timer), reject(err)));
    child.once('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, timedOut });
    });
  });
}

/** What a shell would print for the probe command below; never printed by internal-sftp. */
const PROBE = 'echo shell-ran-$((6*7)); id';
const SHELL_RAN = /shell-ran-42|uid=\d+/;

async function logins(master: TestMaster): Promise<number> {
  const log = await fs.readFile(master.logPath!, 'utf8');
  return log.split('\n').filter((l) => l.includes('Accepted publickey for ')).length;
}

/** sshd writes its log from the forked child: poll until the count reaches `n` (bounded). */
async function waitForLogins(master: TestMaster, n: number): Promise<number> {
  const deadline = Date.now() + 5_000;
  let seen = await logins(master);
  while (seen < n && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    seen = await logins(master);
  }
  return seen;
}

interface Session {
  client: SshClient;
  sftp: SFTPWrapper;
}

function login(master: TestMaster): Promise<Session> {
  const expected = (ssh2.utils.parseKey(master.hostPublicKey) as ssh2.ParsedKey).getPublicSSH();
  const client = new ssh2.Client();
  const ready = new Promise<Session>((resolve, reject) => {
    client.on('error', reject);
    client.on('ready', () => client.sftp((err, sftp) => (err ? reject(err) : resolve({ client, sftp }))));
  });
  client.connect({
    host: master.host,
    port: master.port,
    username: master.user,
    privateKey: readFileSync(master.identity),
    readyTimeout: 5_000,
    hostVerifier: (key: Buffer) => key.equals(expected),
  });
  return within(10_000, 'login', ready).catch((err) => {
    client.end();
    throw err;
  });
}

/** The SFTP status code of a failed call, or 'ok' when it succeeded. */
async function outcome(what: string, fn: (cb: (err: (Error & { code?: unknown }) | null | undefined) => void) => void): Promise<number | 'ok' | string> {
  return within(
    5_000,
    what,
    new Promise<number | 'ok' | string>((resolve) =>
      fn((err) => resolve(err ? (typeof err.code === 'number' ? err.code : String(err.code ?? err.message)) : 'ok')),
    ),
  );
}

/** Tries every kind of write the slave account must not be able to do; returns what each gave. */
async function tryWrites(sftp: SFTPWrapper, dir: string): Promise<Record<string, number | 'ok' | string>> {
  return {
    'open(w) new file': await outcome('open w', (cb) =>
      sftp.open(path.join(dir, 'planted.ini'), 'w', (err, handle) => {
        if (!err) sftp.close(handle, () => cb(null));
        else cb(err);
      }),
    ),
    'open(w) existing file': await outcome('open existing', (cb) =>
      sftp.open(path.join(dir, 'conf.d/local.ini'), 'r+', (err, handle) => {
        if (!err) sftp.close(handle, () => cb(null));
        else cb(err);
      }),
    ),
    mkdir: await outcome('mkdir', (cb) => sftp.mkdir(path.join(dir, 'planted.d'), cb)),
    rename: await outcome('rename', (cb) => sftp.rename(path.join(dir, 'devices.ini'), path.join(dir, 'devices.ini.old'), cb)),
    unlink: await outcome('unlink', (cb) => sftp.unlink(path.join(dir, 'devices.ini'), cb)),
    chmod: await outcome('chmod', (cb) => sftp.chmod(path.join(dir, 'devices.ini'), 0o666, cb)),
    symlink: await outcome('symlink', (cb) => sftp.symlink('/etc/shadow', path.join(dir, 'planted-link'), cb)),
  };
}

function forwardOut(client: SshClient, port: number): Promise<string> {
  return within(
    5_000,
    'forwardOut',
    new Promise<string>((resolve) =>
      client.forwardOut('127.0.0.1', 40000, '127.0.0.1', port, (err, stream) => {
        if (err) return resolve(`refused: ${err.message}`);
        stream.destroy();
        resolve('opened');
      }),
    ),
  );
}

describe('SFTP-only master: sshd with service/sshd_config.d-xroad-slave.conf', { skip: noSshd }, () => {
  let master: TestMaster;
  let work: string;
  let source: string;

  before(async () => {
    work = await makeTempDir('xroad-sync-sftp-only-');
    source = path.join(work, 'master', 'etc', 'xroad');
    await writeSampleTree(source);
    // The harness logs in as the user running the tests (root in CI).
    master = await startMaster({ extraConfig: snippetFor(os.userInfo().username) });
  });
  after(async () => {
    await master?.stop();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  it('the snippet is the documented block and sshd applies it to the Match user', T, async () => {
    const lines = snippetFor('xroad-slave');
    assert.deepEqual(lines, ['Match User xroad-slave', 'ForceCommand internal-sftp -R', 'AllowTcpForwarding no', 'X11Forwarding no', 'PermitTTY no']);
    assert.match(readFileSync(SNIPPET, 'utf8'), /^\s*#ChrootDirectory /m, 'ChrootDirectory is offered, commented out');
    // sshd -T: the effective settings for the test user, from the config the harness wrote.
    const r = spawnSync(SSHD, ['-T', '-f', path.join(master.dir, 'sshd_config'), '-C', `user=${master.user},host=slave,addr=127.0.0.1`], {
      encoding: 'utf8',
      timeout: 10_000,
    });
    assert.equal(r.status, 0, `sshd -T failed: ${r.error?.message ?? r.stderr}`);
    const effective = new Map(r.stdout.split('\n').map((l) => [l.split(' ')[0]!, l.slice(l.indexOf(' ') + 1)] as [string, string]));
    assert.equal(effective.get('forcecommand'), 'internal-sftp -R');
    assert.equal(effective.get('allowtcpforwarding'), 'no');
    assert.equal(effective.get('x11forwarding'), 'no');
    assert.equal(effective.get('permittty'), 'no');
  });

  it('a sync pass works through the forced read-only internal-sftp', T, async () => {
    const target = path.join(work, 'slave', 'etc', 'xroad');
    const state = path.join(work, 'slave', 'state');
    await fs.mkdir(target, { recursive: true });
    await fs.mkdir(state, { recursive: true });
    const run = await runSync({ master, source, target, stateDir: state, timeoutMs: 30_000 });
    assert.equal(run.status, 0, describeRun(run));
    const expected = withoutPaths(await readTree(source), SAMPLE_EXCLUDED);
    assert.deepEqual(obj(await readTree(target)), obj(expected));
    assert.ok(expected.has('signer/keyconf.xml') && expected.has('ssl/proxy-ui-api.crt'), 'the sample tree has what this test relies on');
  });

  it('`ssh ... id` logs in but runs no command: the session is forced into sftp', { ...T, skip: noSsh }, async () => {
    const before = await logins(master);
    const probe = await sshCommand(master, PROBE);
    assert.equal(probe.timedOut, false, `ssh did not finish within 15 s\n${probe.stderr}`);
    assert.doesNotMatch(probe.stdout, SHELL_RAN, `the command ran on the master:\n${probe.stdout}`);
    assert.doesNotMatch(probe.stderr, SHELL_RAN);
    // Authentication itself succeeded, so it is the ForceCommand, not a failed login, that kept the command from running.
    assert.equal(await waitForLogins(master, before + 1), before + 1, `sshd logged no "Accepted publickey" for the probe\nssh stderr: ${probe.stderr}`);
  });

  it('SFTP writes of every kind and TCP forwarding are refused; reads work', T, async () => {
    const { client, sftp } = await login(master);
    try {
      const keyconf = await within(
        5_000,
        'readFile',
        new Promise<Buffer>((resolve, reject) => sftp.readFile(path.join(source, 'signer/keyconf.xml'), (err, data) => (err ? reject(err) : resolve(data)))),
      );
      assert.deepEqual(keyconf, await fs.readFile(path.join(source, 'signer/keyconf.xml')));
      const results = await tryWrites(sftp, source);
      for (const [what, result] of Object.entries(results)) {
        assert.equal(result, STATUS_PERMISSION_DENIED, `${what}: expected SSH_FX_PERMISSION_DENIED, got ${result}`);
      }
      assert.match(await forwardOut(client, master.port), /^refused/);
    } finally {
      client.end();
    }
    // Nothing changed on the master.
    const after = await readTree(source);
    assert.equal(after.has('planted.ini') || after.has('planted.d') || after.has('planted-link') || after.has('devices.ini.old'), false);
    assert.equal(after.get('devices.ini')?.mode, 0o640);
  });
});

describe('control: the same probes on a master WITHOUT the block', { skip: noSsh }, () => {
  let master: TestMaster;
  let work: string;

  before(async () => {
    work = await makeTempDir('xroad-sync-sftp-control-');
    await writeSampleTree(work);
    master = await startMaster();
  });
  after(async () => {
    await master?.stop();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  it('`ssh ... id` does print the uid and an SFTP write succeeds, so the probes above can fail', T, async () => {
    const probe = await sshCommand(master, PROBE);
    assert.match(probe.stdout, /shell-ran-42/, `no shell output from the control master:\n${probe.stdout}\n${probe.stderr}`);
    assert.match(probe.stdout, /uid=\d+/);
    const { client, sftp } = await login(master);
    try {
      assert.equal(await outcome('mkdir', (cb) => sftp.mkdir(path.join(work, 'planted.d'), cb)), 'ok');
      assert.match(await forwardOut(client, master.port), /^opened$/);
    } finally {
      client.end();
    }
  });
});
