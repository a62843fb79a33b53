/** The sync options shared by `sync`, `daemon` and `check`, with help that answers the usual questions. */
import { type Command, Option } from 'commander';
import { DEFAULT_EXCLUDES } from '../filter/types.js';
import { DEFAULTS } from '../settings/pass-settings.js';

/** A repeatable option's parser: each occurrence adds a value. */
export const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** Whether an option is repeatable; its values then add up across flags, environment and settings file. */
export function isRepeatable(option: Option): boolean {
  return option.parseArg === collect;
}

export function addPassOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--master <host>', 'the master security server (rsync: ${MASTER})').env('MASTER'))
    .option('--port <n>', 'SSH port on the master', String(DEFAULTS.port))
    .addOption(new Option('--user <name>', 'SSH user on the master (rsync: ${XROAD_USER}@)').env('XROAD_USER').default(DEFAULTS.user))
    .option('--identity <file>', 'private key for the master (default: first of ~/.ssh/id_ed25519, id_ecdsa, id_rsa)')
    .option('--known-hosts <file>', "OpenSSH known_hosts that must hold the master's host key (default: ~/.ssh/known_hosts)")
    .option('--source <dir>', 'directory on the master (rsync: :/etc/xroad/)', DEFAULTS.sourceDir)
    .option('--target <dir>', 'local directory to mirror into', DEFAULTS.targetDir)
    .option('--exclude <pattern>', 'rsync exclude pattern, repeatable; added to the defaults and to the excludes in XROAD_SYNC_OPTS', collect)
    .option(
      '--no-default-excludes',
      `do not apply the default excludes (${DEFAULT_EXCLUDES.join(' ')}): IG-XLB 1.29's six, plus 1.3's /nginx and /jetty, which X-Road 7 no longer has (excluding an absent path changes nothing)`,
    )
    .option('--flag-file <file>', 'while this file exists every pass is skipped (exit 0)', DEFAULTS.flagFile)
    .option('--log-file <file>', 'rsync-format log, appended per pass (rsync: --log-file)', DEFAULTS.logFile)
    .option('--no-log-file', 'do not write the rsync-format log')
    .option('--state-dir <dir>', 'lock, status and crash journal', DEFAULTS.stateDir)
    .option(
      '--connect-timeout <duration>',
      'handshake must finish within this: seconds, or 30s/5m/1h (rsync: ssh -o ConnectTimeout=5)',
      String(DEFAULTS.connectTimeoutS),
    )
    .option(
      '--timeout <duration>',
      'abort when the master makes no progress for this long: seconds, or 30s/5m/1h (rsync: --timeout=10)',
      String(DEFAULTS.timeoutS),
    )
    .option('--max-delete <n>', 'refuse a pass that deletes more files (default: half of the synced files)')
    .option('--force', 'override the safety valve (empty master, too many deletions)')
    .option('--max-file-size <size>', 'fail the pass (before any change) if a master file is larger', DEFAULTS.maxFileSize)
    .option('--max-total-bytes <size>', 'fail the pass if it would fetch more than this', DEFAULTS.maxTotalBytes)
    .option('--max-files <n>', 'fail the pass if the master lists more files', String(DEFAULTS.maxFiles))
    .option('--concurrency <n>', 'files fetched at once', String(DEFAULTS.concurrency))
    .option('--on-change <cmd>', 'shell command run after a pass that changed files; the changed paths arrive on stdin, each followed by a NUL byte (xargs -0)')
    .option('--dry-run', 'print what would change (rsync itemized format) and change nothing')
    .addOption(
      new Option(
        '--metrics-file <file>',
        "Prometheus textfile (node_exporter's textfile directory, e.g. /var/lib/prometheus/node-exporter/xroad-sync.prom), rewritten after each pass",
      ).env('XROAD_SYNC_METRICS_FILE'),
    );
}

/** How long a by-hand command waits for a pass in flight (another command's, or the daemon's). */
export function addWaitOption(cmd: Command): Command {
  return cmd.option('--wait <duration>', 'wait this long for a pass in flight before giving up with exit 75: seconds, or 30s/5m/1h', `${DEFAULTS.lockWaitS}s`);
}

/** The daemon's time between passes, and the CPU its polling may use (both also accepted in XROAD_SYNC_DAEMON_OPTS). */
export function addIntervalOption(cmd: Command): Command {
  return cmd
    .option('--interval <duration>', 'time between passes: seconds, or 30s/5m/1h (a little random jitter is added)', String(DEFAULTS.intervalS))
    .option(
      '--poll-cpu <percent>',
      'most of one CPU core that passes over an unchanged master may use: where one costs more than this share of --interval (a tree of tens of thousands of entries), passes are spaced further apart, up to a minute; local edits and resume still start a pass at once; 100: always every --interval',
      String(DEFAULTS.pollCpuPercent),
    );
}

/** Where the units' settings come from; every command reads them. */
export function addSettingsOption(cmd: Command): Command {
  return cmd.option(
    '--settings <file>',
    'read MASTER, XROAD_USER and XROAD_SYNC_OPTS from this file (default: /etc/default/xroad-sync, /etc/sysconfig/xroad-sync; env XROAD_SYNC_SETTINGS)',
  );
}
