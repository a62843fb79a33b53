#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * xroad-sync command line. The interpreter line caps V8's young generation:
 * a large initial sync streams tens of MB through short-lived Buffers, and
 * the default semi-space lets RSS reach ~140 MB where 2 MB keeps it near 100.
 * (coreutils env -S: Debian 10+, RHEL 8+.) Each command loads only the modules it needs, so
 * the every-minute `sync` does not pay for the daemon, server or demo code.
 */
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { DEFAULTS } from '../config.js';
import { addPassOptions } from './options.js';
import { addReplicaOptionsTo } from './replica-options.js';

const EXIT_CODES = `
Exit codes (same number as rsync where the meaning is the same):
    0  done, nothing to do, or skipped because sync is paused
    1  usage or configuration error (bad flag, missing file)
   11  local file I/O error (target not writable, disk full)
   12  the master sent invalid data (bad names, sizes that do not match)
   20  stopped by SIGTERM/SIGINT before commit (nothing changed)
   23  a master file or directory could not be read (nothing changed)
   25  refused by the safety valve (empty master, too many deletions)
   30  timeout: no progress from the master for --timeout seconds
   69  serverconf replica unreachable, not a standby, or not caught up (--serverconf)
   75  another pass holds the lock
   77  serverconf replica refused us: a peer map or GRANT is missing (--serverconf)
  254  the master's host key is unknown, changed or revoked
  255  connection or authentication failure`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function buildProgram(): Command {
  const program = new Command('xroad-sync')
    .description('Mirror an X-Road master\'s /etc/xroad to this slave over SFTP: all-or-nothing, rsync\'s excludes and log format.')
    .version(version(), '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', EXIT_CODES);

  addPassOptions(
    program
      .command('sync')
      .description('run one pass now (what the systemd timer runs every minute)')
      .option('--now', 'accepted for the manual pass before an upgrade (a pass always runs at once)'),
  )
    .addHelpText('after', EXIT_CODES)
    .action(async (opts) => {
      const { syncCommand } = await import('./sync-command.js');
      process.exitCode = await syncCommand(opts);
    });

  program
    .command('pause')
    .description('create the flag file: every pass is skipped until resume (rolling upgrades, IG-XLB 7.2)')
    .option('--flag-file <file>', 'the flag file', DEFAULTS.flagFile)
    .action(async (opts) => {
      const { pauseCommand } = await import('./pause-command.js');
      const { pauseWithReplica } = await import('./replica-commands.js');
      process.exitCode = await pauseWithReplica(opts, () => pauseCommand(opts));
    });

  addPassOptions(
    program
      .command('resume')
      .description('remove the flag file; with --now also run a pass at once (upgrade steps 4-5)')
      .option('--now', 'run a pass right after resuming'),
  ).action(async (opts) => {
    const { resumeCommand } = await import('./pause-command.js');
    const { resumeWithReplica } = await import('./replica-commands.js');
    process.exitCode = await resumeWithReplica(opts, () => resumeCommand(opts));
  });

  addPassOptions(
    program
      .command('daemon')
      .description('keep running: a pass at start, then every --interval seconds over one kept-open SSH session; pauses live on the flag file')
      .option('--interval <s>', 'seconds between passes (a little random jitter is added)', '60'),
  ).action(async (opts) => {
    const { daemonCommand } = await import('./daemon-command.js');
    process.exitCode = await daemonCommand(opts);
  });

  addPassOptions(
    program
      .command('check')
      .description('check identity, known_hosts, target, log, state dir and flag file, each problem with its fix; then connect and show what a pass would change'),
  ).action(async (opts) => {
    const { checkCommand } = await import('./check-command.js');
    const { checkReplicaAccess } = await import('./replica-commands.js');
    const config = await checkCommand(opts);
    const replica = await checkReplicaAccess(opts); // reported even when the config half failed
    process.exitCode = config || replica;
  });

  program
    .command('status')
    .description('paused or not, the last pass, the last success, whether a daemon runs')
    .option('--json', 'print JSON: {paused, pausedSince, lastPass, lastSuccessAt, daemonPid}')
    .option('--check', 'monitoring probe: one line, exit 0 OK / 1 WARNING / 2 CRITICAL (Nagios, Zabbix)')
    .option('--max-age <s>', 'with --check: critical when the last success is older than this', '300')
    .option('--fail-if-paused', 'with --check: a pause is a warning (otherwise only reported)')
    .option('--state-dir <dir>', 'where passes record their status', DEFAULTS.stateDir)
    .option('--flag-file <file>', 'the pause flag file', DEFAULTS.flagFile)
    .action(async (opts) => {
      const { statusWithReplica } = await import('./replica-status.js');
      process.exitCode = await statusWithReplica(opts);
    });

  program
    .command('serve')
    .description('the embedded read-only SFTP master, for trying things out (a production master runs OpenSSH: see sshd_config.d-xroad-slave.conf)')
    .requiredOption('--root <dir>', 'directory to serve; clients use the same absolute paths below it')
    .option('--port <n>', 'TCP port, 0 = any free port', '0')
    .option('--host <addr>', 'listen address', '127.0.0.1')
    .option('--host-key <file>', 'host private key (OpenSSH or PEM, unencrypted); default: an ed25519 key generated for this run')
    .option('--authorized-keys <file>', 'public keys allowed in, one per line; default: a client key generated for this run (its path is printed)')
    .option('--user <name>', 'only this user name may log in (default: any)')
    .action(async (opts) => {
      const { serveCommand } = await import('./serve-command.js');
      process.exitCode = await serveCommand(opts);
    });

  program
    .command('demo')
    .description('a self-contained tour on 127.0.0.1 in a temp dir: embedded master, a pass, status, the daemon, pause/resume')
    .action(async () => {
      const { demoCommand } = await import('./demo-command.js');
      process.exitCode = await demoCommand();
    });

  addReplicaOptionsTo(program);
  return program;
}

buildProgram()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    process.stderr.write(`xroad-sync: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
