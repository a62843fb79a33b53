/**
 * The serverconf replica's pure parts: function names by server version,
 * LSN order, readiness, the --check bands, settings, and the hints a failed
 * call turns into. Behaviour against a real server: serverconf-replica.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkReplica, combineChecks, type ReplicaReport } from '../../src/health/replica.js';
import { toReplicaError } from '../../src/replica/errors.js';
import { compareLsn, replayFunctions, versionText } from '../../src/replica/functions.js';
import { type ReplicaStatus, readiness } from '../../src/replica/replica.js';
import { leastPrivilegeSetup } from '../../src/replica/setup.js';
import { replicaEnabled, resolveReplicaSettings } from '../../src/settings/replica-settings.js';

const settings = resolveReplicaSettings({}, {});
const streaming: ReplicaStatus = {
  server: '15.8',
  inRecovery: true,
  replay: 'running',
  receiver: 'streaming',
  streaming: true,
  receiveLsn: '0/3000148',
  replayLsn: '0/3000148',
  senderEndLsn: '0/3000148',
  lagBytes: 0,
  lagSeconds: 0,
  lastReplayAt: null,
};
const report = (s: Partial<ReplicaStatus> & { pausedSince?: string | null; pauseAskedAt?: string | null }): ReplicaReport => ({
  endpoint: 'e',
  error: null,
  pausedSince: null,
  ...streaming,
  ...s,
});
const limits = { maxLagS: 300, warnLagS: 60, maxPauseS: 7200, failIfPaused: false };

test("function names follow the server version: the guide's 9.x names, 10+ wal/lsn, 14+ pause state", () => {
  const v96 = replayFunctions(90624);
  assert.deepEqual(
    [v96.pause, v96.resume, v96.isPaused, v96.receiveLsn, v96.replayLsn, v96.pauseState, v96.monitorRole],
    ['pg_xlog_replay_pause', 'pg_xlog_replay_resume', 'pg_is_xlog_replay_paused', 'pg_last_xlog_receive_location', 'pg_last_xlog_replay_location', null, null],
  );
  assert.equal(replayFunctions(90500).hasWalReceiverView, false);
  const v13 = replayFunctions(130012);
  assert.deepEqual(
    [v13.pause, v13.receiveLsn, v13.replayLsn, v13.pauseState, v13.monitorRole],
    ['pg_wal_replay_pause', 'pg_last_wal_receive_lsn', 'pg_last_wal_replay_lsn', null, 'pg_monitor'],
  );
  assert.equal(replayFunctions(140000).pauseState, 'pg_get_wal_replay_pause_state');
  assert.equal(versionText(150008), '15.8');
  assert.equal(versionText(90624), '9.6.24');
});

test('LSNs compare numerically, not as text', () => {
  assert.equal(compareLsn('0/A0000000', '0/9FFFFFFF'), 1);
  assert.equal(compareLsn('1/0', '0/FFFFFFFF'), 1);
  assert.equal(compareLsn('16/B374D848', '16/B374D848'), 0);
  assert.equal(compareLsn('0/3000000', '0/3000148'), -1);
  assert.throws(() => compareLsn('x', '0/1'), /not an LSN/);
});

test('ready only when streaming, replay running and nothing received or sent is left to replay', () => {
  assert.equal(readiness(streaming).ready, true);
  assert.match(readiness({ ...streaming, replay: 'paused' }).reason, /replay is paused/);
  assert.match(readiness({ ...streaming, streaming: false, receiver: 'none' }).reason, /not streaming \(none\)/);
  assert.match(readiness({ ...streaming, streaming: null }).reason, /pg_monitor/);
  assert.match(readiness({ ...streaming, replayLsn: '0/3000000', lagBytes: 328 }).reason, /328 bytes behind/);
  assert.match(readiness({ ...streaming, senderEndLsn: '0/4000000' }).reason, /behind the master's WAL end 0\/4000000/);
  assert.match(readiness({ ...streaming, inRecovery: false }).reason, /not a standby/);
  // After a standby restart the receive LSN starts at a segment boundary below replay: still caught up.
  assert.equal(readiness({ ...streaming, receiveLsn: '0/3000000', replayLsn: '0/3000148' }).ready, true);
});

test('--check bands: forgotten resume and overlong pause CRITICAL; lag WARNING then CRITICAL; an intended pause OK unless --fail-if-paused', () => {
  const now = new Date('2026-01-01T12:00:00Z');
  const paused = report({ replay: 'paused', pausedSince: '2026-01-01T11:00:00.000Z' });
  assert.equal(checkReplica(paused, false, limits, now).code, 2);
  assert.match(checkReplica(paused, false, limits, now).text, /forgotten resume/);
  assert.equal(checkReplica(paused, true, limits, now).code, 0);
  assert.equal(checkReplica(paused, true, { ...limits, failIfPaused: true }, now).code, 1);
  assert.match(checkReplica(paused, true, { ...limits, maxPauseS: 1800 }, now).text, /paused for 3600 s \(limit 1800 s\)/);
  assert.match(checkReplica(report({ replay: 'paused' }), false, limits, now).text, /unknown time/);
  assert.equal(checkReplica(report({ lagSeconds: 61 }), false, limits).code, 1);
  assert.equal(checkReplica(report({ lagSeconds: 301 }), false, limits).code, 2);
  assert.equal(checkReplica(report({ streaming: false, receiver: 'waiting' }), false, limits).code, 1);
  assert.equal(checkReplica({ endpoint: 'e', error: 'boom', exitCode: 69 }, false, limits).code, 2);
  assert.equal(checkReplica(report({ inRecovery: false }), false, limits).code, 2);
  // Asked paused, running (the standby restarted): CRITICAL whatever the config half, with the fix.
  const restarted = checkReplica(report({ pauseAskedAt: '2026-01-01T11:00:00.000Z' }), true, limits, now);
  assert.equal(restarted.code, 2);
  assert.match(restarted.text, /running, but pause --serverconf asked for it paused at 2026-01-01T11:00:00\.000Z .*run xroad-sync pause --serverconf/);
  assert.equal(
    checkReplica(report({ replay: 'paused', pausedSince: '2026-01-01T11:00:00.000Z', pauseAskedAt: '2026-01-01T11:00:00.000Z' }), true, limits, now).code,
    0,
  );
  assert.deepEqual(combineChecks({ code: 0, line: 'XROAD-SYNC OK - last success 3 s ago' }, { code: 2, text: 'bad' }), {
    code: 2,
    line: 'XROAD-SYNC CRITICAL - bad; last success 3 s ago',
  });
  assert.deepEqual(combineChecks({ code: 1, line: 'XROAD-SYNC WARNING - w' }, { code: 0, text: 'fine' }), { code: 1, line: 'XROAD-SYNC WARNING - w; fine' });
});

test("settings: flag over SERVERCONF_* over the guide's defaults; yes/no parsed strictly", () => {
  assert.deepEqual(settings, { socketDir: '/var/run/postgresql', port: 5433, role: 'xroad_sync', database: 'postgres', connectTimeoutMs: 5000 });
  assert.equal(resolveReplicaSettings({}, { SERVERCONF_PORT: '5434' }).port, 5434);
  assert.equal(resolveReplicaSettings({ serverconfPort: '5435' }, { SERVERCONF_PORT: '5434' }).port, 5435);
  assert.throws(() => resolveReplicaSettings({ serverconfPort: 'x' }, {}), /not a port number/);
  assert.equal(replicaEnabled({}, {}), false);
  assert.equal(replicaEnabled({}, { SERVERCONF_REPLICA: 'yes' }), true);
  assert.equal(replicaEnabled({ serverconf: false }, { SERVERCONF_REPLICA: 'yes' }), false);
  assert.throws(() => replicaEnabled({}, { SERVERCONF_REPLICA: 'maybe' }), /neither yes nor no/);
});

test('the one-time setup and the hints name the exact GRANT, on the primary, and the map lines', () => {
  assert.deepEqual(leastPrivilegeSetup({ role: 'xroad_sync', osUser: 'xroad', versionNum: 150008 }), {
    primarySql: [
      'CREATE ROLE xroad_sync LOGIN;',
      'GRANT EXECUTE ON FUNCTION pg_wal_replay_pause() TO xroad_sync;',
      'GRANT EXECUTE ON FUNCTION pg_wal_replay_resume() TO xroad_sync;',
      'GRANT pg_monitor TO xroad_sync;',
    ],
    identLine: 'xroad_sync  xroad  xroad_sync',
    hbaLine: 'local  all  xroad_sync  peer  map=xroad_sync',
  });
  assert.match(
    leastPrivilegeSetup({ role: 'X-Sync', osUser: 'xroad', versionNum: 90624 }).primarySql[1]!,
    /^GRANT EXECUTE ON FUNCTION pg_xlog_replay_pause\(\) TO "X-Sync";$/,
  );
  const denied = toReplicaError(Object.assign(new Error('permission denied for function pg_wal_replay_resume'), { code: '42501' }), {
    settings,
    action: 'resume serverconf replay',
  });
  assert.equal(denied.exitCode, 77);
  assert.match(denied.hint!, /on the master \(the replication primary.*'GRANT EXECUTE ON FUNCTION pg_wal_replay_resume\(\) TO xroad_sync;'/);
  const peer = toReplicaError(Object.assign(new Error('Peer authentication failed for user "xroad_sync"'), { code: '28000' }), { settings, action: 'connect' });
  assert.match(peer.hint!, /pg_ident\.conf.*local {2}all {2}xroad_sync {2}peer {2}map=xroad_sync/);
  const password = toReplicaError(new Error('SASL: SCRAM-SERVER-FIRST-MESSAGE: client password must be a string'), { settings, action: 'connect' });
  assert.equal(password.exitCode, 77);
  assert.match(password.hint!, /pg_hba\.conf above the other local lines/);
  const gone = toReplicaError(Object.assign(new Error('connect ENOENT'), { code: 'ENOENT' }), { settings, action: 'connect' });
  assert.equal(gone.exitCode, 69);
  assert.match(gone.message, /\/var\/run\/postgresql\/\.s\.PGSQL\.5433/);
  const promoted = toReplicaError(Object.assign(new Error('recovery is not in progress'), { code: '55000' }), { settings, action: 'pause serverconf replay' });
  assert.match(promoted.message, /not a standby/);
});
