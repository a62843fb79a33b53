/**
 * `status` as a monitoring agent runs it: an unprivileged OS user (runuser)
 * outside group xroad, beside the package's modes (state dir 0750, the flag's
 * directory 1750, both owned by another user). What it cannot read is
 * UNKNOWN naming the file and the fix, never a verdict about the sync. The
 * user runs node and the bundle from a directory it can reach (other-user.ts):
 * a checkout may sit under a 0700 home.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { CliRun } from '../helpers/cli.js';
import { cliForOtherUsers } from '../helpers/other-user.js';
import { ensureOsUser } from '../helpers/postgres.js';
import { makeTempDir } from '../helpers/sshd.js';

const AGENT = 'xroad-sync-nagios';
const skip = process.getuid?.() !== 0 ? 'needs root (runuser to an unprivileged user)' : false;
const T = { timeout: 60_000, skip };
const show = (r: CliRun) => `exit ${r.status}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
}

function runAs(user: string, args: readonly string[]): Promise<CliRun> {
  const cli = cliForOtherUsers();
  const started = Date.now();
  const env = { PATH: process.env.PATH, LANG: 'C.UTF-8', XROAD_SYNC_SETTINGS: '' };
  const child = spawn('runuser', ['-u', user, '--', cli.node, cli.script, ...args], { env, cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((resolve, reject) => {
    child.once('error', (err) => (clearTimeout(timer), reject(err)));
    child.once('close', (status, signal) => (clearTimeout(timer), resolve({ status, signal, stdout, stderr, elapsedMs: Date.now() - started })));
  });
}

describe('status as an unprivileged monitoring agent', { skip }, () => {
  let base = '';
  before(async () => {
    ensureOsUser(AGENT);
    base = await makeTempDir('xs-monitoring-user-');
    await fs.chmod(base, 0o755);
  });
  after(() => (base ? fs.rm(base, { recursive: true, force: true }) : undefined));

  it('an unreadable state dir or flag directory is UNKNOWN (exit 3) naming the file and the fix; readable, the verdict is OK', T, async () => {
    const stateDir = path.join(base, 'state');
    const flagDir = path.join(base, 'flagdir');
    const flagFile = path.join(flagDir, 'sync-disabled');
    await fs.mkdir(stateDir, { mode: 0o750 });
    await fs.mkdir(flagDir);
    await fs.chmod(flagDir, 0o1750);
    const now = new Date().toISOString();
    const lastPass = { startedAt: now, finishedAt: now, result: 'ok', changed: 0, bytesReceived: 10, error: null, exitCode: 0 };
    await fs.writeFile(path.join(stateDir, 'status.json'), JSON.stringify({ lastPass, lastSuccessAt: now, daemonPid: null }), { mode: 0o644 });
    const args = ['status', '--check', '--state-dir', stateDir, '--flag-file', flagFile];

    const denied = await runAs(AGENT, args);
    assert.equal(denied.status, 3, show(denied));
    assert.match(denied.stdout, /^XROAD-SYNC UNKNOWN - cannot read .*\/state\/status\.json as user xroad-sync-nagios: permission denied/, show(denied));
    assert.match(denied.stdout, /state is drwxr-x--- root:root/, show(denied));
    assert.match(denied.stdout, /usermod -aG root xroad-sync-nagios/, show(denied));
    assert.equal(denied.stdout.split('\n').length, 2, 'one line');

    const plain = await runAs(AGENT, ['status', '--state-dir', stateDir, '--flag-file', flagFile]);
    assert.equal(plain.status, 11, show(plain));
    assert.match(plain.stderr, /cannot read .*status\.json as user xroad-sync-nagios: permission denied/, show(plain));

    // As if the agent were added to the group: the state dir is readable, the flag's directory is not.
    sh('chgrp', [AGENT, stateDir]);
    const flagDenied = await runAs(AGENT, args);
    assert.equal(flagDenied.status, 3, show(flagDenied));
    assert.match(
      flagDenied.stdout,
      /^XROAD-SYNC UNKNOWN - cannot read .*\/flagdir\/sync-disabled as user xroad-sync-nagios: permission denied \(.*flagdir is drwxr-x--T root:root\)/,
      show(flagDenied),
    );

    sh('chgrp', [AGENT, flagDir]);
    const ok = await runAs(AGENT, args);
    assert.equal(ok.status, 0, show(ok));
    assert.match(ok.stdout, /^XROAD-SYNC OK - last success \d+ s ago/);
  });
});
