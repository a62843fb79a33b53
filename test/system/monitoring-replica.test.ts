/**
 * --metrics-file with the serverconf replica (SERVERCONF_REPLICA=yes): the
 * standby's replay state, lag and WAL receiver in the textfile, against a
 * real PostgreSQL primary and streaming standby (test/helpers/postgres.ts),
 * the CLI run as an unprivileged OS user with the README's least-privilege
 * setup, passes against OpenSSH's sshd.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { leastPrivilegeSetup } from '../../src/replica/setup.js';
import { type CliRun, passArgs, waitFor } from '../helpers/cli.js';
import { ensureOsUser, postgresTestSkipReason, runCliAs, startPgPair } from '../helpers/postgres.js';
import { makeTempDir, startMaster, writeTree } from '../helpers/sshd.js';

const OS_USER = 'xroad-sync-pgtest';
const skip = postgresTestSkipReason();
if (skip && process.env.CI === 'true') throw new Error(`serverconf replica tests cannot run under CI: ${skip}`);
const T = { timeout: 120_000, skip };
const show = (r: CliRun): string => `exit ${r.status}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;

function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

test('the metrics file carries the serverconf replica: streaming, replay paused 0 then 1, lag in bytes and seconds; promtool accepts it', T, async (t) => {
  ensureOsUser(OS_USER);
  const pair = await startPgPair();
  t.after(() => pair.stop());
  const versionNum = Number((await pair.primary("SELECT current_setting('server_version_num') AS v"))[0]!.v);
  const setup = leastPrivilegeSetup({ role: 'xroad_sync', osUser: OS_USER, versionNum });
  for (const sql of setup.primarySql) await pair.primary(sql);
  await waitFor(
    async () => (await pair.standby("SELECT count(*)::int AS n FROM pg_roles WHERE rolname = 'xroad_sync'"))[0]!.n === 1,
    15_000,
    'the role on the standby',
  );
  await pair.configureStandbyAuth([setup.identLine], [setup.hbaLine]);

  const base = await makeTempDir('xs-monitoring-replica-');
  t.after(() => fs.rm(base, { recursive: true, force: true }));
  await fs.chmod(base, 0o755);
  const m = await startMaster();
  t.after(() => m.stop());
  const source = path.join(base, 'master');
  await writeTree(source, { 'conf.d/local.ini': '[signer]\n' });
  const d = {
    source,
    target: path.join(base, 'target'),
    stateDir: path.join(base, 'state'),
    flagFile: path.join(base, 'flag', 'sync-disabled'),
    logFile: path.join(base, 'slave-sync.log'),
  };
  await Promise.all([d.target, path.dirname(d.flagFile), path.join(base, 'textfile')].map((dir) => fs.mkdir(dir)));
  const identity = path.join(base, 'id_ed25519');
  const knownHosts = path.join(base, 'known_hosts');
  await fs.copyFile(m.identity, identity);
  await fs.copyFile(m.knownHosts, knownHosts);
  assert.equal(spawnSync('chown', ['-R', `${OS_USER}:`, base]).status, 0);
  await fs.chmod(identity, 0o600);
  const metricsFile = path.join(base, 'textfile', 'xroad-sync.prom');
  const env = { SERVERCONF_REPLICA: 'yes', SERVERCONF_SOCKET_DIR: pair.socketDir, SERVERCONF_PORT: String(pair.standbyPort), XROAD_SYNC_SETTINGS: '' };
  const sync = () => runCliAs(OS_USER, ['sync', ...passArgs(m, { ...d, identity, knownHosts }), '--metrics-file', metricsFile], { env });
  const read = async () => {
    const text = await fs.readFile(metricsFile, 'utf8');
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 20_000 });
    assert.equal(lint.status, 0, `promtool: ${lint.stdout}${lint.stderr}\n${text}`);
    return samples(text);
  };

  const ok = await sync();
  assert.equal(ok.status, 0, show(ok));
  const running = await read();
  assert.equal(running.get('xroad_sync_serverconf_up'), 1);
  assert.equal(running.get('xroad_sync_serverconf_replay_paused'), 0);
  assert.equal(running.get('xroad_sync_serverconf_streaming'), 1);
  assert.ok(running.get('xroad_sync_serverconf_replay_lag_bytes')! >= 0);
  assert.ok(running.get('xroad_sync_serverconf_replay_lag_seconds')! >= 0);

  const paused = await runCliAs(OS_USER, ['pause', '--flag-file', d.flagFile, '--state-dir', d.stateDir], { env });
  assert.equal(paused.status, 0, show(paused));
  const skipped = await sync();
  assert.equal(skipped.status, 0, show(skipped));
  const m2 = await read();
  assert.equal(m2.get('xroad_sync_paused'), 1);
  assert.equal(m2.get('xroad_sync_serverconf_replay_paused'), 1);
});
