#!/usr/bin/env -S node --max-semi-space-size=2
import { readFileSync } from 'node:fs';
/**
 * xroad-sync command line. The interpreter line caps V8's young generation:
 * a large initial sync streams tens of MB through short-lived Buffers, and
 * the default semi-space lets RSS reach ~140 MB where 2 MB keeps it near 100.
 * The same flags are the executable's execArgv (scripts/build-exe.sh;
 * test/system/package.test.ts compares them).
 * (coreutils env -S: Debian 10+, RHEL 8+.) Each command loads only the modules it needs, so
 * the every-minute `sync` does not pay for the daemon, server or demo code.
 */
import { Command } from 'commander';
import { exitCodeHelp } from '../errors.js';
import { DEFAULT_EXCLUDES } from '../filter/types.js';
import { CHECK_DEFAULTS } from '../health/limits.js';
import { SERVE_DEFAULTS } from '../serve/defaults.js';
import { DEFAULTS } from '../settings/pass-settings.js';
import { reportError } from '../util/output.js';
import { nameThisProcess } from '../util/process-name.js';
import { addIntervalOption, addPassOptions, addSettingsOption, addWaitOption, collect } from './options.js';
import { addReplicaCheckOptions, addReplicaOptions, addReplicaWaitOption } from './replica-options.js';
import { applySettings, SettingOrigins } from './settings.js';

nameThisProcess('xroad-sync');

const EXIT_CODES = exitCodeHelp();

/** What every command gets besides its options. */
export interface CommandContext {
  /** Where each option's value came from (flag, environment, settings file, default). */
  readonly origins: SettingOrigins;
}

type CommandFn = (opts: any, ctx: CommandContext) => Promise<number>;

/** The action of a lazily loaded command: settings file applied first, then the command; its code is the exit code. */
function act(load: () => Promise<CommandFn>, opts = { settings: true }) {
  return async (_opts: unknown, cmd: Command): Promise<void> => {
    // serve and demo are not slave commands: the slave's settings file is not theirs.
    const origins = opts.settings ? applySettings(cmd) : new SettingOrigins();
    const command = await load();
    process.exitCode = await command(cmd.opts(), { origins });
  };
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function buildProgram(): Command {
  const program = new Command('xroad-sync')
    .description("Mirror an X-Road master's /etc/xroad to this slave over SFTP: all-or-nothing, rsync's excludes and log format.")
    .version(version(), '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', EXIT_CODES);

  addSettingsOption(
    addWaitOption(
      addPassOptions(
        program
          .command('sync')
          .description('run one pass now (what the systemd timer runs every minute); waits for a pass in flight (--wait)')
          .option('--now', 'accepted for the manual pass before an upgrade (a pass always runs at once)'),
      ),
    ),
  )
    .addHelpText('after', EXIT_CODES)
    .action(act(async () => (await import('./sync-command.js')).syncCommand));

  addReplicaOptions(
    addSettingsOption(
      addWaitOption(
        program
          .command('pause')
          .description(
            'create the flag file, then wait for a pass in flight to finish or be abandoned before its commit: paused when it returns (rolling upgrades, IG-XLB 7.2)',
          )
          .option('--flag-file <file>', 'the flag file', DEFAULTS.flagFile)
          .option('--state-dir <dir>', 'where a running pass holds its lock (and the serverconf pause time is noted)', DEFAULTS.stateDir),
      ),
    ),
  ).action(
    act(async () => {
      const [{ pauseCommand }, { pauseWithReplica }] = await Promise.all([import('./pause-command.js'), import('./replica-commands.js')]);
      return (opts) => pauseWithReplica(opts, () => pauseCommand(opts));
    }),
  );

  addReplicaWaitOption(
    addReplicaOptions(
      addSettingsOption(
        addWaitOption(
          addPassOptions(
            program
              .command('resume')
              .description('remove the flag file; with --now also run a pass at once, waiting for one in flight (upgrade steps 4-5)')
              .option('--now', 'run a pass right after resuming'),
          ),
        ),
      ),
    ),
  ).action(
    act(async () => {
      const [{ resumeCommand }, { resumeWithReplica }] = await Promise.all([import('./pause-command.js'), import('./replica-commands.js')]);
      return (opts) => resumeWithReplica(opts, () => resumeCommand(opts));
    }),
  );

  addSettingsOption(
    addPassOptions(
      addIntervalOption(
        program
          .command('daemon')
          .description('keep running: a pass at start, then every --interval over one kept-open SSH session; pauses live on the flag file; one per state dir'),
      ),
    ),
  ).action(act(async () => (await import('./daemon-command.js')).daemonCommand));

  addReplicaOptions(
    addSettingsOption(
      addPassOptions(
        program
          .command('check')
          .description(
            'show where each setting came from; check identity, known_hosts, target, log, state dir and flag file, each problem with its fix; then connect and show what a pass would change',
          ),
      ),
    ),
  ).action(
    act(async () => {
      const { checkCommand, checkReplicaCommand } = await import('./check-command.js');
      return async (opts, ctx) => {
        const config = await checkCommand(opts, ctx);
        const replica = await checkReplicaCommand(opts); // reported even when the config half failed
        return config || replica;
      };
    }),
  );

  addReplicaCheckOptions(
    addReplicaOptions(
      addSettingsOption(
        program
          .command('status')
          .description('paused or not, the last pass, the last success, whether a daemon runs')
          .option('--json', 'print JSON: {paused, pausedSince, lastPass, lastSuccessAt, daemonPid, interruptedCommit, digest} (+ serverconf with the replica)')
          .option('--check', 'monitoring probe: one line, exit 0 OK / 1 WARNING / 2 CRITICAL (Nagios, Zabbix)')
          .option(
            '--max-age <duration>',
            'with --check: critical when the last success is older than this: seconds, or 30s/5m/1h',
            String(CHECK_DEFAULTS.maxAgeS),
          )
          .option('--fail-if-paused', 'with --check: a pause is a warning (otherwise only reported)')
          .option('--state-dir <dir>', 'where passes record their status', DEFAULTS.stateDir)
          .option('--flag-file <file>', 'the pause flag file', DEFAULTS.flagFile),
      ),
    ),
  ).action(act(async () => (await import('./status-command.js')).statusCommand));

  addSettingsOption(
    program
      .command('digest')
      .description("the digest of a local tree's synced state (run it on the master): equal to a slave's status digest when the slave mirrors it")
      .argument('[dir]', 'the tree', '/etc/xroad')
      .option('--exclude <pattern>', "rsync exclude pattern, repeatable; added to the defaults (use the slave's)", collect)
      .option('--no-default-excludes', `do not apply the default excludes (${DEFAULT_EXCLUDES.join(' ')})`),
  ).action(async (dir: string, _opts: unknown, cmd: Command) => {
    applySettings(cmd); // XROAD_SYNC_OPTS's excludes, as a pass takes them
    process.exitCode = await (await import('./digest-command.js')).digestCommand(dir, cmd.opts());
  });

  program
    .command('serve')
    .description('the embedded read-only SFTP master, for trying things out (a production master runs OpenSSH: see sshd_config.d-xroad-slave.conf)')
    .requiredOption('--root <dir>', 'directory to serve; clients use the same absolute paths below it')
    .option('--port <n>', 'TCP port, 0 = any free port', String(SERVE_DEFAULTS.port))
    .option('--host <addr>', 'listen address', SERVE_DEFAULTS.host)
    .option('--host-key <file>', 'host private key (OpenSSH or PEM, unencrypted); default: an ed25519 key generated for this run')
    .option('--authorized-keys <file>', 'public keys allowed in, one per line; default: a client key generated for this run (its path is printed)')
    .option('--user <name>', 'only this user name may log in (default: any)')
    .action(act(async () => (await import('./serve-command.js')).serveCommand, { settings: false }));

  program
    .command('demo')
    .description('a self-contained tour on 127.0.0.1 in a temp dir: embedded master, a pass, status, the daemon, pause/resume')
    .action(act(async () => (await import('./demo-command.js')).demoCommand, { settings: false }));

  return program;
}

/**
 * The one exit path: a command returns its code or throws; only here is an
 * error printed (message, cause, hint) and turned into the exit code. An
 * error that is not ours is a bug: its stack is printed, exit 70.
 */
function fail(err: unknown): void {
  process.exitCode = reportError(err);
}

buildProgram()
  .parseAsync(process.argv)
  .catch(fail)
  // Every handle should be closed by now; if one was not (a library's watcher or socket), do not hang on it.
  .finally(() => setTimeout(() => process.exit(), 1000).unref());
