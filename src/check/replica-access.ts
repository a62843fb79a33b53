/**
 * `check`'s replica diagnostics: can we log in, is it a standby, may we
 * pause, resume and see the WAL receiver; each problem with its fix.
 */
import { describeError, ExitCode, exitCodeOf, SyncError } from '../errors.js';
import { monitorHint, onPrimary } from '../replica/errors.js';
import type { Replica, ReplicaStatus } from '../replica/replica.js';
import { grantExecute } from '../replica/setup.js';
import { describeEndpoint, type ReplicaSettings } from '../settings/replica-settings.js';
import type { CheckOutput, Outcome } from './checks.js';

/** `check`'s replica lines: can we log in, is it a standby, may we pause, resume and see the receiver. */
export async function checkReplicaAccess(settings: ReplicaSettings, out: CheckOutput): Promise<number> {
  const print = (o: Outcome): void => out.outcome(o);
  const where = describeEndpoint(settings);
  let replica: Replica;
  try {
    const { Replica } = await import('../replica/replica.js');
    replica = await Replica.connect(settings);
  } catch (err) {
    const e = err instanceof SyncError ? err : null;
    print({ ok: false, text: `serverconf replica ${where}: ${e?.message ?? describeError(err)}`, fix: e?.hint });
    return exitCodeOf(err);
  }
  try {
    print({ ok: true, text: `serverconf replica ${where}: logged in (PostgreSQL ${replica.server})` });
    const status = await replica.status();
    if (!status.inRecovery) {
      print({
        ok: false,
        text: `serverconf database on port ${settings.port} is not a standby (not in recovery)`,
        fix: 'point --serverconf-port at the replica, or rebuild a promoted one (pg_basebackup -R)',
      });
      return ExitCode.REPLICA_UNAVAILABLE;
    }
    const p = await replica.privileges();
    const missing: Outcome[] = [];
    const fns = replica.fns;
    for (const [fn, ok] of [
      [fns.pause, p.pause],
      [fns.resume, p.resume],
    ] as const) {
      if (!ok) missing.push({ ok: false, text: `role ${settings.role} may not run ${fn}()`, fix: onPrimary(settings, grantExecute(fn, settings.role)) });
    }
    if (!p.superuser && p.monitor !== true) {
      missing.push({ ok: false, text: `role ${settings.role} cannot see pg_stat_wal_receiver (whether the replica streams)`, fix: monitorHint(fns, settings) });
    }
    if (missing.length > 0) {
      missing.forEach(print);
      return ExitCode.REPLICA_PERMISSION;
    }
    print({
      ok: true,
      text: `role ${settings.role} may run ${fns.pause}(), ${fns.resume}() and read pg_stat_wal_receiver${p.superuser ? ' (superuser: the one-time setup in the README needs less)' : ''}`,
    });
    print({ ok: true, text: `serverconf replica: ${summarize(status)}` });
    return ExitCode.OK;
  } catch (err) {
    const e = err instanceof SyncError ? err : null;
    print({ ok: false, text: `serverconf replica ${where}: ${e?.message ?? describeError(err)}`, fix: e?.hint });
    return exitCodeOf(err);
  } finally {
    await replica.close();
  }
}

function summarize(s: ReplicaStatus): string {
  if (!s.inRecovery) return 'not in recovery (not a standby)';
  const receiver = s.streaming === null ? 'receiver unknown (needs pg_monitor)' : `receiver ${s.receiver}`;
  const lag = s.lagBytes === null ? 'lag unknown' : `lag ${s.lagBytes} bytes${s.lagSeconds === null ? '' : `, ${s.lagSeconds} s`}`;
  return `replay ${s.replay}, ${receiver}, received ${s.receiveLsn ?? '-'}, replayed ${s.replayLsn ?? '-'}, ${lag}`;
}
