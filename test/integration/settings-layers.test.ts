/**
 * Settings in layers, as an operator meets them: a settings file the units
 * read plus a flag typed by hand. Repeatable options (--exclude) add up
 * across the layers, so a flag never drops the excludes that protect a
 * slave-local file. The compiled CLI against a real OpenSSH master on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { CLI, type CliRun, passArgs, runCli, startCli, waitFor } from '../helpers/cli.js';
import { deferrer, type SlaveDirs, slaveDirs } from '../helpers/slave.js';
import { sshdAvailable, startMaster, type TestMaster } from '../helpers/sshd.js';

const T = { timeout: 120_000, skip: !sshdAvailable() && 'needs /usr/sbin/sshd' };
const show = (r: CliRun) => `exit ${r.status ?? r.signal}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;

const TREE = { 'serverconf.xml': '<conf/>\n', 'conf.d/local.ini': '[signer]\n', 'a.ini': 'a\n', 'b.ini': 'b\n' };

interface Setup extends SlaveDirs {
  master: TestMaster;
  settings: string;
  env: NodeJS.ProcessEnv;
  defer(step: () => Promise<unknown>): void;
}

/** A settings file as an operator writes /etc/default/xroad-sync: every path in XROAD_SYNC_OPTS, plus `opts`. */
async function setup(t: TestContext, opts: string, daemonOpts = ''): Promise<Setup> {
  const defer = deferrer(t);
  const dirs = await slaveDirs(defer, 'xroad-sync-layers-', TREE);
  const master = await startMaster();
  defer(() => master.stop());
  const settings = path.join(dirs.base, 'xroad-sync.default');
  const args = passArgs(master, dirs).map((a) => (/\s/.test(a) ? `'${a}'` : a));
  await fs.writeFile(settings, [`XROAD_SYNC_OPTS="${args.join(' ')} ${opts}"`, `XROAD_SYNC_DAEMON_OPTS="${daemonOpts}"`, ''].join('\n'));
  return { ...dirs, master, settings, defer, env: { XROAD_SYNC_SETTINGS: settings } };
}

test("sync --exclude X adds to the settings file's excludes: the slave-local file they protect survives", T, async (t) => {
  const s = await setup(t, "--exclude /local-only.conf --exclude '/site dir/'");
  const first = await runCli(['sync'], { env: s.env });
  assert.equal(first.status, 0, show(first));
  await fs.writeFile(path.join(s.target, 'local-only.conf'), 'this slave only\n');
  await fs.mkdir(path.join(s.target, 'site dir'));
  await fs.writeFile(path.join(s.target, 'site dir', 'x.conf'), 'x\n');

  const sync = await runCli(['sync', '--exclude', '*.bak'], { env: s.env });
  assert.equal(sync.status, 0, show(sync));
  assert.ok(
    existsSync(path.join(s.target, 'local-only.conf')),
    `the settings file's --exclude /local-only.conf still applies beside the flag's\n${show(sync)}`,
  );
  assert.ok(existsSync(path.join(s.target, 'site dir', 'x.conf')), 'a quoted exclude from the settings file still applies');

  // check shows the effective excludes, each with where it came from.
  const check = await runCli(['check', '--exclude', '*.bak'], { env: s.env });
  assert.equal(check.status, 0, show(check));
  const row = (pattern: string, origin: string) =>
    assert.match(check.stdout, new RegExp(`^ .*${pattern.replace(/[.*/]/g, '\\$&')} +\\(${origin.replace(/[./]/g, '\\$&')}\\)$`, 'm'), show(check));
  row('*.bak', 'flag');
  row('/local-only.conf', `XROAD_SYNC_OPTS in ${s.settings}`);
  row('db.properties', 'default');
});

test('a by-hand daemon adds XROAD_SYNC_DAEMON_OPTS excludes to XROAD_SYNC_OPTS ones, as the unit does', T, async (t) => {
  const s = await setup(t, '--exclude /from-opts.conf', '--exclude /from-daemon-opts.conf --interval 1');
  const first = await runCli(['sync'], { env: s.env });
  assert.equal(first.status, 0, show(first));
  for (const name of ['from-opts.conf', 'from-daemon-opts.conf']) await fs.writeFile(path.join(s.target, name), 'this slave only\n');

  const daemon = startCli(['daemon'], { env: s.env });
  s.defer(() => daemon.stop(2_000));
  const out = () => `--- daemon stdout\n${daemon.stdout()}--- daemon stderr\n${daemon.stderr()}`;
  await waitFor(() => daemon.records().some((r) => r.msg === 'pass' && r.result === 'ok'), 15_000, "the daemon's first pass", out);
  assert.ok(existsSync(path.join(s.target, 'from-daemon-opts.conf')), out());
  assert.ok(existsSync(path.join(s.target, 'from-opts.conf')), `XROAD_SYNC_OPTS's exclude applies beside XROAD_SYNC_DAEMON_OPTS's\n${out()}`);
});

test(
  'a handful of slave-only files trip the delete limit: the message names them as only on this slave; excluding them as it says lets the pass through',
  T,
  async (t) => {
    const s = await setup(t, '');
    const first = await runCli(['sync'], { env: s.env });
    assert.equal(first.status, 0, show(first));
    await fs.mkdir(path.join(s.target, 'site'));
    for (const name of ['one', 'two', 'three', 'four', 'five']) await fs.writeFile(path.join(s.target, 'site', `${name}.conf`), 'local\n');

    const refused = await runCli(['sync'], { env: s.env });
    assert.equal(refused.status, 25, show(refused));
    assert.match(
      refused.stderr,
      /refusing to delete 5 files that exist only on this slave, not on the master's .*: \/site\/five\.conf, \/site\/four\.conf, \/site\/one\.conf, \/site\/three\.conf, \/site\/two\.conf/,
      show(refused),
    );
    assert.doesNotMatch(refused.stderr, /if the master really lost these files, run once with --force/, 'the old hint blamed the master alone');
    assert.match(refused.stderr, /--exclude/, show(refused));

    // As the hint says: the slave's own files excluded in the settings file.
    const text = (await fs.readFile(s.settings, 'utf8')).replace(/^(XROAD_SYNC_OPTS=".*)"$/m, '$1 --exclude /site/"');
    await fs.writeFile(s.settings, text);
    const passed = await runCli(['sync'], { env: s.env });
    assert.equal(passed.status, 0, show(passed));
    assert.ok(existsSync(path.join(s.target, 'site', 'two.conf')));
  },
);

test('the cron job reads XROAD_SYNC_OPTS as the units do: a quoted value with a space works', T, async (t) => {
  const flock = ['/usr/bin/flock', '/bin/flock'].find((f) => existsSync(f));
  assert.ok(flock, 'flock (util-linux) is installed by scripts/test-setup.sh');
  const s = await setup(t, "--exclude '/site dir/'");
  await fs.mkdir(path.join(s.target, 'site dir'), { recursive: true });
  await fs.writeFile(path.join(s.target, 'site dir', 'x.conf'), 'this slave only\n');
  const program = path.join(s.base, 'xroad-sync');
  await fs.writeFile(program, `#!/bin/sh\nexec '${process.execPath}' '${CLI}' "$@"\n`, { mode: 0o755 });
  const logged = path.join(s.base, 'logger.out');
  const logger = path.join(s.base, 'logger');
  await fs.writeFile(logger, `#!/bin/sh\ncat > '${logged}'\n`, { mode: 0o755 });

  const cronFile = await fs.readFile(new URL('../../../service/xroad-sync.cron', import.meta.url), 'utf8');
  const line = cronFile.split('\n').find((l) => /^\S+ \S+ \S+ \S+ \S+ xroad /.test(l));
  assert.ok(line, 'the cron.d file has a job line');
  let command = line.replace(/^(\S+\s+){6}/, '');
  const replacements: Array<[string, string]> = [
    ['/var/tmp/xroad/sync-disabled', s.flagFile],
    ['/var/tmp/xroad/xroad-sync-cron.lock', path.join(s.base, 'cron.lock')],
    ['/usr/bin/xroad-sync', program],
    ['/usr/bin/logger', logger],
    ['/usr/bin/flock', flock],
    // Only where the job names them: the program reads its settings file itself (here through XROAD_SYNC_SETTINGS).
    ['/etc/default/xroad-sync', s.settings],
    ['/etc/sysconfig/xroad-sync', path.join(s.base, 'sysconfig-absent')],
  ];
  for (const [from, to] of replacements) command = command.split(from).join(to);
  // cron's environment: no MASTER or XROAD_SYNC_OPTS; the settings file stands where the distribution's is.
  const cronEnv = { HOME: s.base, PATH: '/usr/bin:/bin', SHELL: '/bin/sh', XROAD_SYNC_SETTINGS: s.settings, XROAD_SYNC_LOG_LEVEL: 'info' };
  const job = await runShell(command, cronEnv);
  assert.equal(job.status, 0, job.stderr);
  const log = await fs.readFile(logged, 'utf8');
  assert.ok(existsSync(path.join(s.target, 'serverconf.xml')), `the cron job ran a pass\n--- logged\n${log}`);
  assert.ok(existsSync(path.join(s.target, 'site dir', 'x.conf')), `the quoted exclude protected the slave-local file\n--- logged\n${log}`);
  assert.doesNotMatch(log, /error|unexpected|too many/i, log);
});

function runShell(command: string, env: NodeJS.ProcessEnv): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', (err) => (clearTimeout(timer), reject(err)));
    child.once('close', (status) => (clearTimeout(timer), resolve({ status, stderr })));
  });
}
