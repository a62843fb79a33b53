/**
 * `xroad-sync serve`: the embedded read-only SFTP master, for trying things
 * out without an X-Road master (or an sshd). Prints what a slave needs (the
 * port, the known_hosts line, the host key's fingerprint and a ready `sync`
 * command) and serves until SIGINT/SIGTERM. Not meant for production: use
 * OpenSSH with service/sshd_config.d-xroad-slave.conf there.
 */
import { mkdtemp, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { hostLookupName as knownHostsHost, fingerprint as sha256Fingerprint } from '../remote/known-hosts.js';
import { SERVE_DEFAULTS } from '../serve/defaults.js';
import { generateEd25519, publicKeyOf } from '../serve/keys.js';
import { startEmbeddedMaster } from '../serve/sftp-server.js';
import { noticeFrom, printLine } from '../util/output.js';

export interface ServeOptions {
  root: string;
  port?: string;
  host?: string;
  hostKey?: string;
  authorizedKeys?: string;
  user?: string;
}

/** Resolves on the first SIGINT or SIGTERM with its name. */
function waitForStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', on).off('SIGTERM', on);
      resolve(signal);
    };
    process.on('SIGINT', on).on('SIGTERM', on);
  });
}

async function isDirectory(p: string): Promise<boolean> {
  return stat(p).then(
    (st) => st.isDirectory(),
    () => false,
  );
}

function parsePort(raw: string | undefined): number {
  const port = Number(raw ?? SERVE_DEFAULTS.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be 0 (any free port) to 65535, got "${raw}"`);
  return port;
}

export async function serveCommand(opts: ServeOptions): Promise<number> {
  const out = printLine;
  let scratch: string | undefined;
  try {
    const port = parsePort(opts.port);
    const host = opts.host ?? SERVE_DEFAULTS.host;
    const root = await realpath(path.resolve(opts.root)).catch((err: NodeJS.ErrnoException) => {
      throw new Error(`--root ${opts.root}: ${err.code ?? err.message}`);
    });
    // Generated keys and the known_hosts file live here for the run only.
    scratch = await mkdtemp(path.join(os.tmpdir(), 'xroad-sync-serve-'));

    let hostKey: string;
    let hostKeyNote: string;
    if (opts.hostKey) {
      hostKey = await readFile(opts.hostKey, 'utf8');
      hostKeyNote = opts.hostKey;
    } else {
      hostKey = generateEd25519('xroad-sync serve host key').private;
      hostKeyNote = 'generated for this run';
    }
    const hostPub = publicKeyOf(hostKey, opts.hostKey ?? 'generated host key');

    let authorized: string[];
    let identity: string | undefined;
    if (opts.authorizedKeys) {
      authorized = (await readFile(opts.authorizedKeys, 'utf8')).split('\n');
    } else {
      const client = generateEd25519('xroad-sync serve client key');
      identity = path.join(scratch, 'id_ed25519');
      await writeFile(identity, client.private, { mode: 0o600 });
      await writeFile(`${identity}.pub`, `${client.public}\n`, { mode: 0o644 });
      authorized = [client.public];
    }

    const server = await startEmbeddedMaster({
      root,
      host,
      port,
      hostKey,
      authorizedKeys: authorized,
      user: opts.user,
      log: (msg) => noticeFrom('serve', msg),
    });
    const hostField = knownHostsHost(host, server.port);
    const knownHostsLine = `${hostField} ${hostPub.type} ${hostPub.blob.toString('base64')}`;
    const knownHosts = path.join(scratch, 'known_hosts');
    await writeFile(knownHosts, `${knownHostsLine}\n`, { mode: 0o644 });

    out('xroad-sync serve: embedded read-only SFTP master (for trying things out; not for production)');
    out(`port:        ${server.port}`);
    out(`listening:   ${host}:${server.port}`);
    out(`serving:     ${root} (clients see the same absolute paths; writes are refused)`);
    out(`user:        ${opts.user ?? 'any name'} (public key authentication only)`);
    out(`host key:    ${sha256Fingerprint(hostPub.blob)} (${hostPub.type}, ${hostKeyNote})`);
    out(`known_hosts: ${knownHosts}`);
    out(knownHostsLine);
    if (identity) out(`identity:    ${identity} (client key generated for this run; the only key allowed in)`);
    else out(`authorized:  ${opts.authorizedKeys}`);
    out();
    // A root laid out like a master's file system serves its etc/xroad; otherwise the root itself.
    const source = (await isDirectory(path.join(root, 'etc', 'xroad'))) ? path.join(root, 'etc', 'xroad') : root;
    out('Try a pass into a scratch directory:');
    out('  mkdir -p /tmp/xroad-target &&');
    out(
      `  xroad-sync sync --master ${host} --port ${server.port} --user ${opts.user ?? os.userInfo().username}` +
        ` --identity ${identity ?? 'YOUR_KEY'} --known-hosts ${knownHosts} --source ${source}/` +
        ' --target /tmp/xroad-target --state-dir /tmp/xroad-state --log-file /tmp/xroad-target.log --flag-file /tmp/xroad-sync-disabled',
    );
    out();
    out('Stop with Ctrl-C (SIGINT) or SIGTERM. Generated keys are removed then.');

    const signal = await waitForStopSignal();
    noticeFrom('serve', `${signal}, stopping`);
    await Promise.race([server.close(), new Promise((resolve) => setTimeout(resolve, 3_000).unref())]);
    return 0;
  } catch (err) {
    noticeFrom('serve', err instanceof Error ? err.message : String(err));
    return 1;
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}
