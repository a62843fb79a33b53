/**
 * The serverconf replica against real PostgreSQL: a primary and a streaming
 * standby made by pg_basebackup -R (test/helpers/postgres.ts), the CLI run as
 * an unprivileged OS user that reaches the standby over its Unix socket with
 * peer authentication and exactly the one-time setup the README documents
 * (leastPrivilegeSetup: a role with EXECUTE on the replay functions and
 * pg_monitor, granted on the primary; a pg_ident.conf map and a pg_hba.conf
 * line on the standby). resume --now also runs a pass against OpenSSH's sshd.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { compareLsn } from '../../src/replica/functions.js';
import { pausedMarkerPath } from '../../src/replica/paused-marker.js';
import { leastPrivilegeSetup } from '../../src/replica/setup.js';
import { passArgs, sleep, waitFor, type CliRun } from '../helpers/cli.js';
import { ensureOsUser, postgresTestSkipReason, runCliAs, startPgPair, type PgPair } from '../helpers/postgres.js';
import { freePort, makeTempDir, startMaster, writeTree, type TestMaster } from '../helpers/sshd.js';

const OS_USER = 'xroad-sync-pgtest';
const skip = postgresTestSkipReason();
if (skip && process.env.CI === 'true') throw new Error(`serverconf replica tests cannot run under CI: ${skip}`);
const T = { timeout: 120_000, skip };
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const show = (r: CliRun): string => `exit ${r.status}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
const lastLine = (text: string): string => text.trimEnd().split('\n').at(-1) ?? '';

interface Node {
  pair: PgPair;
  versionNum: number;
  base: string;
  stateDir: string;
  flagFile: string;
  /** --serverconf and where the standby's socket is. */
  replicaArgs: string[];
}

/** A primary + standby with the documented setup for `role` applied (grants on the primary, peer map on the standby). */
async function node(t: TestContext, roles: Array<{ role: string; grants: boolean }> = [{ role: 'xroad_sync', grants: true }]): Promise<Node> {
  ensureOsUser(OS_USER);
  const pair = await startPgPair();
  t.after(() => pair.stop());
  const versionNum = Number((await pair.primary("SELECT current_setting('server_version_num') AS v"))[0]!.v);
  const ident: string[] = [];
  const hba: string[] = [];
  for (const { role, grants } of roles) {
    const setup = leastPrivilegeSetup({ role, osUser: OS_USER, versionNum });
    // On the PRIMARY: the standby is read-only; role and grants arrive by replication.
    for (const sql of grants ? setup.primarySql : setup.primarySql.slice(0, 1)) await pair.primary(sql);
    ident.push(setup.identLine);
    hba.push(setup.hbaLine);
    await waitFor(async () => (await pair.standby(`SELECT count(*)::int AS n FROM pg_roles WHERE rolname = '${role}'`))[0]!.n === 1, 15_000, `role ${role} on the standby`);
  }
  await pair.configureStandbyAuth(ident, hba);
  const base = await makeTempDir('xroad-sync-replica-');
  t.after(() => fs.rm(base, { recursive: true, force: true }));
  const stateDir = path.join(base, 'state');
  const flagFile = path.join(base, 'flag', 'sync-disabled');
  await fs.mkdir(path.dirname(flagFile));
  await fs.mkdir(path.join(base, 'target'));
  chownToUser(base);
  return { pair, versionNum, base, stateDir, flagFile, replicaArgs: ['--serverconf', '--serverconf-socket-dir', pair.socketDir, '--serverconf-port', String(pair.standbyPort)] };
}

function chownToUser(dir: string): void {
  const r = spawnSync('chown', ['-R', `${OS_USER}:`, dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

/** An sshd master, its key and known_hosts copied for the test OS user, and the pass flags. */
async function master(t: TestContext, n: Node): Promise<string[]> {
  const m: TestMaster = await startMaster();
  t.after(() => m.stop());
  const source = path.join(n.base, 'master');
  await writeTree(source, { 'conf.d/local.ini': '[signer]\n', 'serverconf.xml': '<conf/>\n' });
  const identity = path.join(n.base, 'id_ed25519');
  const knownHosts = path.join(n.base, 'known_hosts');
  await fs.copyFile(m.identity, identity);
  await fs.copyFile(m.knownHosts, knownHosts);
  chownToUser(n.base);
  await fs.chmod(identity, 0o600);
  return passArgs(m, { source, target: path.join(n.base, 'target'), stateDir: n.stateDir, flagFile: n.flagFile, logFile: path.join(n.base, 'slave-sync.log'), identity, knownHosts });
}

const pause = (n: Node, extra: string[] = []) => runCliAs(OS_USER, ['pause', '--flag-file', n.flagFile, '--state-dir', n.stateDir, ...n.replicaArgs, ...extra]);
const statusArgs = (n: Node) => ['--state-dir', n.stateDir, '--flag-file', n.flagFile, ...n.replicaArgs];

async function statusJson(n: Node): Promise<Record<string, any>> {
  const r = await runCliAs(OS_USER, ['status', '--json', ...statusArgs(n)]);
  assert.equal(r.status, 0, show(r));
  return JSON.parse(r.stdout);
}

/** Inserts on the primary until stopped (bounded by the caller's finally). */
function startWriter(pair: PgPair): () => Promise<void> {
  let stop = false;
  const done = (async () => {
    await pair.primary('CREATE TABLE IF NOT EXISTS w (id serial, v text)');
    while (!stop) {
      await pair.primary("INSERT INTO w (v) SELECT repeat('x', 500) FROM generate_series(1, 50)");
      await sleep(20);
    }
  })();
  return async () => {
    stop = true;
    await done;
  };
}

const standbyLsns = async (pair: PgPair) =>
  (await pair.standby('SELECT pg_last_wal_receive_lsn()::text AS receive, pg_last_wal_replay_lsn()::text AS replay'))[0] as { receive: string; replay: string };

test('pause while the primary writes: replay stops, receive moves on, status shows the lag; pause is idempotent', T, async (t) => {
  const n = await node(t);
  const p = await pause(n);
  assert.equal(p.status, 0, show(p));
  assert.match(p.stdout, /^Sync paused: false => true\b/m);
  assert.match(p.stdout, /^serverconf replay: running => paused \(xroad_sync@.*\.s\.PGSQL\.\d+, PostgreSQL 1\d\.\d+\)$/m);
  assert.match(await fs.readFile(pausedMarkerPath(n.stateDir), 'utf8'), /^\d{4}-/);

  const stopWriter = startWriter(n.pair);
  try {
    const at = await standbyLsns(n.pair);
    await waitFor(async () => compareLsn((await standbyLsns(n.pair)).receive, at.receive) > 0, 20_000, 'the standby to receive more WAL');
    const later = await standbyLsns(n.pair);
    assert.equal(later.replay, at.replay, 'replay must not move while paused');

    const s = (await statusJson(n)).serverconf;
    assert.equal(s.error, null);
    assert.equal(s.inRecovery, true);
    assert.equal(s.replay, 'paused');
    assert.equal(s.streaming, true);
    assert.equal(s.receiver, 'streaming');
    assert.match(s.pausedSince, ISO);
    assert.ok(s.lagBytes > 0, `lagBytes ${s.lagBytes}`);
    assert.ok(compareLsn(s.receiveLsn, s.replayLsn) > 0, `received ${s.receiveLsn} replayed ${s.replayLsn}`);
    assert.equal(s.replayLsn, at.replay);

    const text = await runCliAs(OS_USER, ['status', ...statusArgs(n)]);
    assert.equal(text.status, 0, show(text));
    assert.match(text.stdout, /^ {2}replay: {6}paused, since \d{4}-/m);
    assert.match(text.stdout, /^ {2}lag: {9}[1-9]\d* bytes/m);

    const again = await pause(n);
    assert.equal(again.status, 0, show(again));
    assert.match(again.stdout, /^Sync paused: true => true\b/m);
    assert.match(again.stdout, /^serverconf replay: paused => paused\b/m);

    // Both halves paused on purpose, but longer than the limit allows.
    const old = new Date(Date.now() - 3 * 3600_000).toISOString();
    await fs.writeFile(pausedMarkerPath(n.stateDir), old + '\n');
    const late = await runCliAs(OS_USER, ['status', '--check', '--max-replay-pause', '3600', ...statusArgs(n)]);
    assert.equal(late.status, 2, show(late));
    assert.match(late.stdout, /^XROAD-SYNC CRITICAL - .*serverconf replay paused for \d+ s \(limit 3600 s\)/);
  } finally {
    await stopWriter();
  }
});

test('resume --now: replay resumed, flag removed, a pass, then ready only once the replica caught up; a forgotten resume is CRITICAL', T, async (t) => {
  const n = await node(t);
  const pass = await master(t, n);
  // Each commit is applied 3 s after it was made: replay cannot catch up during the pass, so a
  // resume --now that did not wait would report an LSN below the primary's.
  await n.pair.configureStandby(["recovery_min_apply_delay = '3s'"]);
  assert.equal((await pause(n)).status, 0);
  const stopWriter = startWriter(n.pair);
  try {
    await waitFor(async () => ((await statusJson(n)).serverconf.lagBytes ?? 0) > 100_000, 20_000, 'a lag to build up');
  } finally {
    await stopWriter();
  }
  const flushed = (await n.pair.primary('SELECT pg_current_wal_flush_lsn()::text AS lsn'))[0]!.lsn as string;

  const r = await runCliAs(OS_USER, ['resume', '--now', ...pass, ...n.replicaArgs, '--state-dir', n.stateDir]);
  assert.equal(r.status, 0, show(r));
  assert.match(r.stdout, /^serverconf replay: paused => running\b/m);
  assert.match(r.stdout, /^Sync paused: true => false\b/m);
  const ready = /^node ready to upgrade: config synced, serverconf replica caught up at (\S+), streaming$/.exec(lastLine(r.stdout));
  assert.ok(ready, show(r));
  assert.ok(compareLsn(ready[1]!, flushed) >= 0, `ready at ${ready[1]} but the primary had flushed ${flushed} before the call`);
  assert.equal(existsSync(n.flagFile), false);
  assert.equal(existsSync(pausedMarkerPath(n.stateDir)), false);
  assert.ok(existsSync(path.join(n.base, 'target', 'serverconf.xml')), 'the pass ran');

  // The setting makes --serverconf the default: the same check via SERVERCONF_* only.
  const env = { SERVERCONF_REPLICA: 'yes', SERVERCONF_SOCKET_DIR: n.pair.socketDir, SERVERCONF_PORT: String(n.pair.standbyPort) };
  const ok = await runCliAs(OS_USER, ['status', '--check', '--state-dir', n.stateDir, '--flag-file', n.flagFile], { env });
  assert.equal(ok.status, 0, show(ok));
  assert.match(ok.stdout, /^XROAD-SYNC OK - last success \d+ s ago; serverconf replay lag 0 s, 0 bytes, streaming \| age=\d+s;;300;0 replay_lag=0s;60;300;0 replay_lag_bytes=0B;;;0$/m);

  // The forgotten resume: both paused, then only the flag removed (as `rm` in the guide would).
  assert.equal((await pause(n)).status, 0);
  const half = await runCliAs(OS_USER, ['resume', '--no-serverconf', '--flag-file', n.flagFile], { env });
  assert.equal(half.status, 0, show(half));
  assert.doesNotMatch(half.stdout, /serverconf/);
  const forgotten = await runCliAs(OS_USER, ['status', '--check', '--state-dir', n.stateDir, '--flag-file', n.flagFile], { env });
  assert.equal(forgotten.status, 2, show(forgotten));
  assert.match(forgotten.stdout, /^XROAD-SYNC CRITICAL - serverconf replay paused since \S+ while config sync is not paused: forgotten resume\?/);
});

test('resume --now while replay cannot catch up in time: "not ready", how far behind, non-zero exit', T, async (t) => {
  const n = await node(t);
  const pass = await master(t, n);
  await n.pair.configureStandby(["recovery_min_apply_delay = '10min'"]);
  await n.pair.primary('CREATE TABLE late (v int)');
  await n.pair.primary('INSERT INTO late VALUES (1)');
  await waitFor(async () => ((await statusJson(n)).serverconf.lagBytes ?? 0) > 0, 20_000, 'the delayed commit to be received, not applied');
  const r = await runCliAs(OS_USER, ['resume', '--now', '--ready-timeout', '2', ...pass, ...n.replicaArgs, '--state-dir', n.stateDir]);
  assert.equal(r.signal, null, show(r));
  assert.equal(r.status, 69, show(r));
  assert.match(r.stdout, /^Sync paused: false => false\b/m);
  assert.match(lastLine(r.stdout), /^node NOT ready to upgrade: serverconf replay at \S+ is [1-9]\d* bytes behind what it received \(\S+\)$/);
});

test('resume --now when the pass fails: replay is still resumed and reported, "not ready" names the pass and its exit code', T, async (t) => {
  const n = await node(t);
  const pass = await master(t, n);
  assert.equal((await pause(n)).status, 0);
  const r = await runCliAs(OS_USER, ['resume', '--now', ...pass, '--port', String(await freePort()), ...n.replicaArgs, '--state-dir', n.stateDir]);
  assert.equal(r.status, 255, show(r));
  assert.match(r.stdout, /^serverconf replay: paused => running\b/m);
  assert.match(r.stdout, /^Sync paused: true => false\b/m);
  assert.equal(lastLine(r.stdout), 'node NOT ready to upgrade: the config pass failed (exit 255)');
  assert.equal((await n.pair.standby('SELECT pg_is_wal_replay_paused() AS p'))[0]!.p, false);
});

test('resume --now with the primary stopped: "not ready" within --ready-timeout and a non-zero exit', T, async (t) => {
  const n = await node(t);
  const pass = await master(t, n);
  assert.equal((await pause(n)).status, 0);
  await n.pair.stopPrimary();
  await waitFor(async () => (await n.pair.standby("SELECT count(*)::int AS n FROM pg_stat_wal_receiver WHERE status = 'streaming'"))[0]!.n === 0, 20_000, 'the standby to notice');
  const r = await runCliAs(OS_USER, ['resume', '--now', '--ready-timeout', '3', ...pass, ...n.replicaArgs, '--state-dir', n.stateDir]);
  assert.equal(r.signal, null, show(r));
  assert.equal(r.status, 69, show(r));
  assert.match(r.stdout, /^serverconf replay: paused => running\b/m);
  assert.match(lastLine(r.stdout), /^node NOT ready to upgrade: the serverconf WAL receiver is not streaming \(\w+\): is the master's PostgreSQL up and reachable\?$/);
  assert.match(r.stderr, /waiting for the serverconf replica \(\d+ s left\)/);
  const check = await runCliAs(OS_USER, ['status', '--check', ...statusArgs(n)]);
  assert.match(check.stdout, /serverconf WAL receiver not streaming/);
});

test('least privilege: check passes with the documented setup; a role without the grants is told exactly which GRANT to run', T, async (t) => {
  const n = await node(t, [{ role: 'xroad_sync', grants: true }, { role: 'xroad_nogrant', grants: false }]);
  const su = await n.pair.standby("SELECT rolsuper FROM pg_roles WHERE rolname = 'xroad_sync'");
  assert.equal(su[0]!.rolsuper, false, 'the role is no superuser');
  const checkArgs = ['check', '--master', '127.0.0.1', '--port', '1', '--identity', '/nonexistent', ...n.replicaArgs];
  const good = await runCliAs(OS_USER, checkArgs);
  assert.match(good.stdout, /^ok {3}serverconf replica xroad_sync@\S+: logged in \(PostgreSQL/m);
  assert.match(good.stdout, /^ok {3}role xroad_sync may run pg_wal_replay_pause\(\), pg_wal_replay_resume\(\) and read pg_stat_wal_receiver$/m);
  assert.match(good.stdout, /^ok {3}serverconf replica: replay running, receiver streaming/m);

  const bad = await runCliAs(OS_USER, [...checkArgs, '--serverconf-role', 'xroad_nogrant']);
  assert.equal(bad.status, 1, show(bad)); // the config half's usage error comes first; the replica's lines follow
  assert.match(bad.stdout, /^FAIL role xroad_nogrant may not run pg_wal_replay_pause\(\)\n {5}fix: on the master .*'GRANT EXECUTE ON FUNCTION pg_wal_replay_pause\(\) TO xroad_nogrant;'$/m);
  assert.match(bad.stdout, /'GRANT EXECUTE ON FUNCTION pg_wal_replay_resume\(\) TO xroad_nogrant;'/);
  assert.match(bad.stdout, /'GRANT pg_monitor TO xroad_nogrant;'/);

  const p = await pause(n, ['--serverconf-role', 'xroad_nogrant']);
  assert.equal(p.status, 77, show(p));
  assert.match(p.stdout, /^Sync paused: false => true\b/m, 'the config half is done and reported');
  assert.match(p.stdout, /^serverconf replay: not paused\b/m);
  assert.match(p.stderr, /permission denied for function pg_wal_replay_pause .*on the master \(the replication primary.*'GRANT EXECUTE ON FUNCTION pg_wal_replay_pause\(\) TO xroad_nogrant;'/);
  assert.equal(existsSync(pausedMarkerPath(n.stateDir)), false);
  assert.equal((await n.pair.standby('SELECT pg_is_wal_replay_paused() AS p'))[0]!.p, false);

  // Exactly the statement the hint names, run where it says (the primary), is all that was missing.
  const grant = /'(GRANT EXECUTE ON FUNCTION pg_wal_replay_pause\(\) TO xroad_nogrant;)'/.exec(p.stderr)![1]!;
  await n.pair.primary(grant);
  await waitFor(async () => (await n.pair.standby("SELECT has_function_privilege('xroad_nogrant', 'pg_wal_replay_pause()', 'EXECUTE') AS ok"))[0]!.ok === true, 15_000, 'the grant on the standby');
  const granted = await pause(n, ['--serverconf-role', 'xroad_nogrant']);
  assert.equal(granted.status, 0, show(granted));
  assert.match(granted.stdout, /^serverconf replay: running => paused\b/m);

  // A role the OS user is not mapped to: the peer login fails, and the hint gives the map lines.
  const unmapped = await pause(n, ['--serverconf-role', 'xroad_other']);
  assert.equal(unmapped.status, 77, show(unmapped));
  assert.match(unmapped.stderr, /Peer authentication failed .*pg_ident\.conf/);
});
