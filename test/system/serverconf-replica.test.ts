/**
 * The serverconf replica against real PostgreSQL: a primary and a streaming
 * standby made by pg_basebackup -R (test/helpers/postgres.ts), the CLI run as
 * an unprivileged OS user that reaches the standby over its Unix socket with
 * peer authentication and exactly the one-time setup the README documents
 * (leastPrivilegeSetup: a role with EXECUTE on the replay functions and
 * pg_monitor, granted on the primary; a pg_ident.conf map and a pg_hba.conf
 * line on the standby). resume --now also runs a pass against OpenSSH's sshd.
 * The whole suite runs once per PostgreSQL major: the host's (15 on Debian 12)
 * and those of Debian roots (13 from bullseye, 17 from trixie; see
 * replicaTestServers), covering both the before-14 and the 14+ pause names.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { compareLsn } from '../../src/replica/functions.js';
import { pausedMarkerPath } from '../../src/replica/paused-marker.js';
import { leastPrivilegeSetup } from '../../src/replica/setup.js';
import { type CliRun, passArgs, sleep, waitFor } from '../helpers/cli.js';
import { ensureOsUser, type PgPair, type PgServer, replicaTestServers, runCliAs, startPgPair } from '../helpers/postgres.js';
import { freePort, makeTempDir, startMaster, type TestMaster, writeTree } from '../helpers/sshd.js';

const OS_USER = 'xroad-sync-pgtest';
const T = { timeout: 120_000 };
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
async function node(
  t: TestContext,
  server: PgServer | null,
  roles: Array<{ role: string; grants: boolean }> = [{ role: 'xroad_sync', grants: true }],
): Promise<Node> {
  ensureOsUser(OS_USER);
  const pair = await startPgPair(server);
  t.after(() => pair.stop());
  await pair.knowOsUser(OS_USER);
  const versionNum = Number((await pair.primary("SELECT current_setting('server_version_num') AS v"))[0]!.v);
  if (server) assert.equal(Math.floor(versionNum / 10000), server.major, `${server.label} runs ${versionNum}`);
  const ident: string[] = [];
  const hba: string[] = [];
  for (const { role, grants } of roles) {
    const setup = leastPrivilegeSetup({ role, osUser: OS_USER, versionNum });
    // On the PRIMARY: the standby is read-only; role and grants arrive by replication.
    for (const sql of grants ? setup.primarySql : setup.primarySql.slice(0, 1)) await pair.primary(sql);
    ident.push(setup.identLine);
    hba.push(setup.hbaLine);
    await waitFor(
      async () => (await pair.standby(`SELECT count(*)::int AS n FROM pg_roles WHERE rolname = '${role}'`))[0]!.n === 1,
      15_000,
      `role ${role} on the standby`,
    );
  }
  await pair.configureStandbyAuth(ident, hba);
  const base = await makeTempDir('xroad-sync-replica-');
  t.after(() => fs.rm(base, { recursive: true, force: true }));
  const stateDir = path.join(base, 'state');
  const flagFile = path.join(base, 'flag', 'sync-disabled');
  await fs.mkdir(path.dirname(flagFile));
  await fs.mkdir(path.join(base, 'target'));
  chownToUser(base);
  return {
    pair,
    versionNum,
    base,
    stateDir,
    flagFile,
    replicaArgs: ['--serverconf', '--serverconf-socket-dir', pair.socketDir, '--serverconf-port', String(pair.standbyPort)],
  };
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
  return passArgs(m, {
    source,
    target: path.join(n.base, 'target'),
    stateDir: n.stateDir,
    flagFile: n.flagFile,
    logFile: path.join(n.base, 'slave-sync.log'),
    identity,
    knownHosts,
  });
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

/** The suite, once per server: the host's PostgreSQL and the Debian roots' (see replicaTestServers). */
function replicaSuite(server: PgServer | null): void {
  test('pause while the primary writes: replay stops, receive moves on, status shows the lag; pause is idempotent', T, async (t) => {
    const n = await node(t, server);
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
    const n = await node(t, server);
    const pass = await master(t, n);
    // Each commit is applied 3 s after it was made: replay cannot catch up during the pass, so a
    // resume --now that did not wait would report an LSN below the primary's.
    await n.pair.configureStandby(["recovery_min_apply_delay = '3s'"]);
    assert.equal((await pause(n)).status, 0);
    const stopWriter = startWriter(n.pair);
    try {
      await waitFor(async () => ((await statusJson(n)).serverconf.lagBytes ?? 0) > 100_000, 60_000, 'a lag to build up');
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
    assert.match(
      ok.stdout,
      /^XROAD-SYNC OK - last success \d+ s ago; serverconf replay lag 0 s, 0 bytes, streaming \| age=\d+s;;300;0 replay_lag=0s;60;300;0 replay_lag_bytes=0B;;;0$/m,
    );

    // The forgotten resume: both paused, then only the flag removed (as `rm` in the guide would).
    assert.equal((await pause(n)).status, 0);
    const half = await runCliAs(OS_USER, ['resume', '--no-serverconf', '--flag-file', n.flagFile], { env });
    assert.equal(half.status, 0, show(half));
    assert.doesNotMatch(half.stdout, /serverconf/);
    const forgotten = await runCliAs(OS_USER, ['status', '--check', '--state-dir', n.stateDir, '--flag-file', n.flagFile], { env });
    assert.equal(forgotten.status, 2, show(forgotten));
    assert.match(forgotten.stdout, /^XROAD-SYNC CRITICAL - serverconf replay paused since \S+ while config sync is not paused: forgotten resume\?/);
  });

  test('a standby restarted while paused replays again: status --check is CRITICAL and names the fix; pause --serverconf restores the pause', T, async (t) => {
    const n = await node(t, server);
    const pass = await master(t, n);
    const synced = await runCliAs(OS_USER, ['sync', ...pass]);
    assert.equal(synced.status, 0, show(synced));
    const paused = await pause(n);
    assert.equal(paused.status, 0, show(paused));
    const askedAt = (await fs.readFile(pausedMarkerPath(n.stateDir), 'utf8')).trim();

    // PostgreSQL keeps no pause across a restart (an upgrade's restart, a reboot): replay runs again.
    await n.pair.restartStandby();
    assert.equal((await n.pair.standby('SELECT pg_is_wal_replay_paused() AS p'))[0]!.p, false, 'the restart resumed replay');
    const check = await runCliAs(OS_USER, ['status', '--check', ...statusArgs(n)]);
    assert.equal(check.status, 2, show(check));
    assert.match(
      check.stdout,
      new RegExp(
        `^XROAD-SYNC CRITICAL - serverconf replay running, but pause --serverconf asked for it paused at ${askedAt.replace(/\./g, '\\.')} \\(a standby restart resumes replay\\): run xroad-sync pause --serverconf to pause it again`,
      ),
    );
    const text = await runCliAs(OS_USER, ['status', ...statusArgs(n)]);
    assert.match(text.stdout, /^ {2}replay: {6}running, NOT as asked: paused by pause --serverconf at \S+$/m);
    assert.equal((await statusJson(n)).serverconf.pauseAskedAt, askedAt);

    const again = await pause(n);
    assert.equal(again.status, 0, show(again));
    assert.match(again.stdout, /^serverconf replay: running => paused\b/m);
    assert.equal((await n.pair.standby('SELECT pg_is_wal_replay_paused() AS p'))[0]!.p, true);
    const ok = await runCliAs(OS_USER, ['status', '--check', ...statusArgs(n)]);
    assert.equal(ok.status, 0, show(ok));
    assert.match(
      ok.stdout,
      new RegExp(`serverconf replay paused since ${askedAt.replace(/\./g, '\\.')} \\| `, 'm'),
      "the first pause's time is kept (the performance data follows)",
    );
  });

  test(
    "pause --serverconf when the flag cannot be created: the replica half is still tried and reported; the exit code is the flag's failure; an unrecordable pause fails too",
    T,
    async (t) => {
      const n = await node(t, server);
      await fs.chmod(path.dirname(n.flagFile), 0o555);
      const r = await pause(n);
      assert.equal(r.status, 11, show(r));
      assert.match(r.stdout, /^Sync paused: failed, not paused \(\S+sync-disabled\)$/m);
      assert.match(r.stderr, /cannot create the flag file \S+sync-disabled/);
      assert.match(r.stdout, /^serverconf replay: running => paused\b/m);
      assert.equal((await n.pair.standby('SELECT pg_is_wal_replay_paused() AS p'))[0]!.p, true);
      assert.equal(existsSync(n.flagFile), false);

      // The other way round: the pause holds, but a state dir it cannot be recorded in is a failure (monitoring would be blind to a restart).
      await fs.chmod(path.dirname(n.flagFile), 0o755);
      const resumed = await runCliAs(OS_USER, ['resume', '--serverconf-only', '--flag-file', n.flagFile, '--state-dir', n.stateDir, ...n.replicaArgs]);
      assert.equal(resumed.status, 0, show(resumed));
      await fs.chmod(n.stateDir, 0o555);
      const unrecorded = await pause(n);
      assert.equal(unrecorded.status, 11, show(unrecorded));
      assert.match(unrecorded.stdout, /^Sync paused: false => true\b/m);
      assert.match(unrecorded.stdout, /^serverconf replay: running => paused\b/m);
      assert.match(unrecorded.stderr, /serverconf replay paused, but the pause could not be recorded in \S+serverconf-replay-paused/);
      assert.equal((await n.pair.standby('SELECT pg_is_wal_replay_paused() AS p'))[0]!.p, true);
    },
  );

  test(
    "the current guide's rolling upgrade by hand (IG-XLB 1.29 §7.2.3): replica resumed and caught up, config sync paused through the package upgrade, then the flag goes, a pass, ready",
    T,
    async (t) => {
      const n = await node(t, server);
      const pass = await master(t, n);
      const source = path.join(n.base, 'master');
      const target = path.join(n.base, 'target');
      const read = (p: string) => fs.readFile(path.join(target, p), 'utf8').catch(() => null);
      const synced = await runCliAs(OS_USER, ['sync', ...pass]);
      assert.equal(synced.status, 0, show(synced));

      // 7.2.1, every secondary: pause both.
      const paused = await pause(n);
      assert.equal(paused.status, 0, show(paused));
      // 7.2.2, the primary upgraded: its database and its configuration change.
      await n.pair.primary('CREATE TABLE upgraded (v int)');
      await n.pair.primary('INSERT INTO upgraded VALUES (2)');
      await writeTree(source, { 'serverconf.xml': '<conf version="2"/>\n', 'services/version.ini': 'version=2\n' });
      chownToUser(source);
      const primaryEnd = (await n.pair.primary('SELECT pg_current_wal_flush_lsn()::text AS lsn'))[0]!.lsn as string;

      // 7.2.3 on this secondary, step 1: resume the replay and check it caught up, one command; the flag stays.
      const replicaStep = await runCliAs(OS_USER, ['resume', '--serverconf-only', '--flag-file', n.flagFile, '--state-dir', n.stateDir, ...n.replicaArgs]);
      assert.equal(replicaStep.status, 0, show(replicaStep));
      assert.match(replicaStep.stdout, /^serverconf replay: paused => running\b/m);
      assert.match(replicaStep.stdout, /^Sync paused: true \(\S+, left as it is\)$/m);
      const ready =
        /^serverconf replica ready to upgrade: caught up at (\S+), streaming; config sync paused until xroad-sync resume --now after the upgrade$/.exec(
          lastLine(replicaStep.stdout),
        );
      assert.ok(ready, show(replicaStep));
      assert.ok(compareLsn(ready[1]!, primaryEnd) >= 0, `ready at ${ready[1]} below the primary's ${primaryEnd}`);
      assert.deepEqual(await n.pair.standby('SELECT v FROM upgraded'), [{ v: 2 }]);
      assert.ok(existsSync(n.flagFile), 'the config sync stays paused');
      assert.equal(existsSync(pausedMarkerPath(n.stateDir)), false, 'the replica runs as asked now');

      // Step 2, the package upgrade: the package writes its files on this slave; a scheduled pass meanwhile changes nothing.
      await writeTree(target, { 'services/version.ini': 'version=2\n' });
      chownToUser(target);
      const during = await runCliAs(OS_USER, ['sync', ...pass]);
      assert.equal(during.status, 0, show(during));
      assert.equal(await read('serverconf.xml'), '<conf/>\n', "the master's change must not land before the flag is removed");
      const duringCheck = await runCliAs(OS_USER, ['status', '--check', ...statusArgs(n)]);
      assert.equal(duringCheck.status, 0, show(duringCheck));

      // Steps 3-4: remove the flag and force a sync, one command; its last line says the node is ready for its restart.
      const configStep = await runCliAs(OS_USER, ['resume', '--now', ...pass, ...n.replicaArgs]);
      assert.equal(configStep.status, 0, show(configStep));
      assert.match(configStep.stdout, /^serverconf replay: running => running\b/m);
      assert.match(configStep.stdout, /^Sync paused: true => false\b/m);
      assert.match(lastLine(configStep.stdout), /^node ready: config synced, serverconf replica caught up at \S+, streaming$/);
      assert.equal(await read('serverconf.xml'), '<conf version="2"/>\n');
      assert.equal(await read('services/version.ini'), 'version=2\n');
      assert.equal(existsSync(n.flagFile), false);
      const after = await runCliAs(OS_USER, ['status', '--check', ...statusArgs(n)]);
      assert.equal(after.status, 0, show(after));
      assert.match(
        after.stdout,
        /^XROAD-SYNC OK - last success \d+ s ago; serverconf replay lag \d+ s, \d+ bytes, streaming \| age=\d+s;;300;0 replay_lag=\d+s;60;300;0 replay_lag_bytes=\d+B;;;0$/m,
      );
    },
  );

  test('resume --now while replay cannot catch up in time: "not ready", how far behind, non-zero exit', T, async (t) => {
    const n = await node(t, server);
    const pass = await master(t, n);
    await n.pair.configureStandby(["recovery_min_apply_delay = '10min'"]);
    await n.pair.primary('CREATE TABLE late (v int)');
    // The standby's startup process takes the new delay when it reads the reloaded configuration, not at
    // pg_reload_conf(): a commit made before that is applied at once. Commit until one is held back.
    await waitFor(
      async () => {
        await n.pair.primary('INSERT INTO late VALUES (1)');
        return ((await statusJson(n)).serverconf.lagBytes ?? 0) > 0;
      },
      60_000,
      'a commit to be received, not applied',
    );
    const r = await runCliAs(OS_USER, ['resume', '--now', '--ready-timeout', '2', ...pass, ...n.replicaArgs, '--state-dir', n.stateDir]);
    assert.equal(r.signal, null, show(r));
    assert.equal(r.status, 69, show(r));
    assert.match(r.stdout, /^Sync paused: false => false\b/m);
    const only = await runCliAs(OS_USER, [
      'resume',
      '--serverconf-only',
      '--ready-timeout',
      '2',
      '--flag-file',
      n.flagFile,
      ...n.replicaArgs,
      '--state-dir',
      n.stateDir,
    ]);
    assert.equal(only.status, 69, show(only));
    assert.match(
      lastLine(only.stdout),
      /^serverconf replica NOT ready to upgrade: serverconf replay at \S+ is [1-9]\d* bytes behind what it received \(\S+\)$/,
    );
    const both = await runCliAs(OS_USER, ['resume', '--serverconf-only', '--now', '--flag-file', n.flagFile, ...n.replicaArgs]);
    assert.equal(both.status, 1, show(both));
    assert.match(both.stderr, /--serverconf-only leaves the config sync paused; --now would run a pass/);
    // Nothing was paused: no "to upgrade" (that is for the command that resumes both halves before one).
    assert.match(lastLine(r.stdout), /^node NOT ready: serverconf replay at \S+ is [1-9]\d* bytes behind what it received \(\S+\)$/);
  });

  test('resume --now when the pass fails: replay is still resumed and reported, "not ready" names the pass and its exit code', T, async (t) => {
    const n = await node(t, server);
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
    const n = await node(t, server);
    const pass = await master(t, n);
    assert.equal((await pause(n)).status, 0);
    await n.pair.stopPrimary();
    await waitFor(
      async () => (await n.pair.standby("SELECT count(*)::int AS n FROM pg_stat_wal_receiver WHERE status = 'streaming'"))[0]!.n === 0,
      20_000,
      'the standby to notice',
    );
    const r = await runCliAs(OS_USER, ['resume', '--now', '--ready-timeout', '3', ...pass, ...n.replicaArgs, '--state-dir', n.stateDir]);
    assert.equal(r.signal, null, show(r));
    assert.equal(r.status, 69, show(r));
    assert.match(r.stdout, /^serverconf replay: paused => running\b/m);
    assert.match(
      lastLine(r.stdout),
      /^node NOT ready to upgrade: the serverconf WAL receiver is not streaming \(\w+\): is the master's PostgreSQL up and reachable\?$/,
    );
    assert.match(r.stderr, /waiting for the serverconf replica \(\d+ s left\)/);
    const check = await runCliAs(OS_USER, ['status', '--check', ...statusArgs(n)]);
    assert.match(check.stdout, /serverconf WAL receiver not streaming/);
  });

  test('least privilege: check passes with the documented setup; a role without the grants is told exactly which GRANT to run', T, async (t) => {
    const n = await node(t, server, [
      { role: 'xroad_sync', grants: true },
      { role: 'xroad_nogrant', grants: false },
    ]);
    const su = await n.pair.standby("SELECT rolsuper FROM pg_roles WHERE rolname = 'xroad_sync'");
    assert.equal(su[0]!.rolsuper, false, 'the role is no superuser');
    const checkArgs = ['check', '--master', '127.0.0.1', '--port', '1', '--identity', '/nonexistent', ...n.replicaArgs];
    const good = await runCliAs(OS_USER, checkArgs);
    assert.match(good.stdout, /^ok {3}serverconf replica xroad_sync@\S+: logged in \(PostgreSQL/m);
    assert.match(good.stdout, /^ok {3}role xroad_sync may run pg_wal_replay_pause\(\), pg_wal_replay_resume\(\) and read pg_stat_wal_receiver$/m);
    assert.match(good.stdout, /^ok {3}serverconf replica: replay running, receiver streaming/m);

    const bad = await runCliAs(OS_USER, [...checkArgs, '--serverconf-role', 'xroad_nogrant']);
    assert.equal(bad.status, 1, show(bad)); // the config half's usage error comes first; the replica's lines follow
    assert.match(
      bad.stdout,
      /^FAIL role xroad_nogrant may not run pg_wal_replay_pause\(\)\n {5}fix: on the master .*'GRANT EXECUTE ON FUNCTION pg_wal_replay_pause\(\) TO xroad_nogrant;'$/m,
    );
    assert.match(bad.stdout, /'GRANT EXECUTE ON FUNCTION pg_wal_replay_resume\(\) TO xroad_nogrant;'/);
    assert.match(bad.stdout, /'GRANT pg_monitor TO xroad_nogrant;'/);

    const p = await pause(n, ['--serverconf-role', 'xroad_nogrant']);
    assert.equal(p.status, 77, show(p));
    assert.match(p.stdout, /^Sync paused: false => true\b/m, 'the config half is done and reported');
    assert.match(p.stdout, /^serverconf replay: not paused\b/m);
    assert.match(
      p.stderr,
      /permission denied for function pg_wal_replay_pause .*on the master \(the replication primary.*'GRANT EXECUTE ON FUNCTION pg_wal_replay_pause\(\) TO xroad_nogrant;'/,
    );
    assert.equal(existsSync(pausedMarkerPath(n.stateDir)), false);
    assert.equal((await n.pair.standby('SELECT pg_is_wal_replay_paused() AS p'))[0]!.p, false);

    // Exactly the statement the hint names, run where it says (the primary), is all that was missing.
    const grant = /'(GRANT EXECUTE ON FUNCTION pg_wal_replay_pause\(\) TO xroad_nogrant;)'/.exec(p.stderr)![1]!;
    await n.pair.primary(grant);
    await waitFor(
      async () => (await n.pair.standby("SELECT has_function_privilege('xroad_nogrant', 'pg_wal_replay_pause()', 'EXECUTE') AS ok"))[0]!.ok === true,
      15_000,
      'the grant on the standby',
    );
    const granted = await pause(n, ['--serverconf-role', 'xroad_nogrant']);
    assert.equal(granted.status, 0, show(granted));
    assert.match(granted.stdout, /^serverconf replay: running => paused\b/m);

    // A role the OS user is not mapped to: the peer login fails, and the hint gives the map lines.
    const unmapped = await pause(n, ['--serverconf-role', 'xroad_other']);
    assert.equal(unmapped.status, 77, show(unmapped));
    assert.match(unmapped.stderr, /Peer authentication failed .*pg_ident\.conf/);
  });
}

// An explicit suite timeout: nine tests of at most T.timeout each.
for (const { label, server, skip } of replicaTestServers()) describe(label, { skip, timeout: 9 * T.timeout + 60_000 }, () => replicaSuite(server));
