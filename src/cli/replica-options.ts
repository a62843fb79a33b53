/**
 * Flags for the serverconf replica, shared by pause, resume, status and check.
 * Each has a setting (environment / /etc/default/xroad-sync) of the same
 * meaning; SERVERCONF_REPLICA=yes makes --serverconf the default on a slave.
 */
import { type Command, Option } from 'commander';
import { CHECK_DEFAULTS } from '../health/limits.js';
import { REPLICA_DEFAULTS, REPLICA_ENV } from '../settings/replica-settings.js';

/** The replica's flags, for every command that can manage it (pause, resume, status, check). */
export function addReplicaOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--serverconf', `also the serverconf database replica (PostgreSQL standby); default when ${REPLICA_ENV.enabled}=yes`))
    .addOption(new Option('--no-serverconf', `leave the serverconf replica alone even if ${REPLICA_ENV.enabled}=yes`))
    .addOption(new Option('--serverconf-port <n>', `port of the serverconf replica (${REPLICA_ENV.port}; default ${REPLICA_DEFAULTS.port})`))
    .addOption(new Option('--serverconf-socket-dir <dir>', `its Unix socket directory (${REPLICA_ENV.socketDir}; default ${REPLICA_DEFAULTS.socketDir})`))
    .addOption(new Option('--serverconf-role <name>', `database role, peer-mapped from this OS user (${REPLICA_ENV.role}; default ${REPLICA_DEFAULTS.role})`))
    .addOption(new Option('--serverconf-database <name>', `database to connect to (${REPLICA_ENV.database}; default ${REPLICA_DEFAULTS.database})`));
}

/** resume: --serverconf-only (IG-XLB 1.29's order) and how long to wait for the replica to catch up. */
export function addReplicaWaitOption(cmd: Command): Command {
  return cmd
    .option(
      '--serverconf-only',
      'only the serverconf replica: resume replay, then wait until it caught up; the config sync stays paused. IG-XLB 1.29 §7.2.3 on each slave: ' +
        'resume --serverconf-only ("serverconf replica ready to upgrade"), upgrade the packages, then resume --now (flag removed, a pass, "node ready"), restart the services',
    )
    .option(
      '--ready-timeout <s>',
      'with --now or --serverconf-only and the replica: wait at most this long for it to catch up',
      String(REPLICA_DEFAULTS.readyTimeoutS),
    );
}

/** status --check: the replica's thresholds. */
export function addReplicaCheckOptions(cmd: Command): Command {
  return cmd
    .option('--max-replay-lag <s>', 'with --check and the replica: critical when replay lags more than this', String(CHECK_DEFAULTS.maxReplayLagS))
    .option('--warn-replay-lag <s>', 'with --check and the replica: warning when replay lags more than this', String(CHECK_DEFAULTS.warnReplayLagS))
    .option(
      '--max-replay-pause <s>',
      'with --check and the replica: critical when replay was paused (by xroad-sync) longer than this',
      String(CHECK_DEFAULTS.maxReplayPauseS),
    );
}
