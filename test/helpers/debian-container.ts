/**
 * A stock Debian root (scripts/debian-test-root.sh: debootstrap minbase with
 * systemd, cached as a tar per suite) unpacked into a temp dir, given what
 * xroad-base would create, and booted under its own systemd with
 * `systemd-nspawn --boot --register=no --keep-unit`. The container shares the
 * host's network, so a test sshd on 127.0.0.1 is reachable from inside.
 * Commands run inside through `nsenter -t <container PID 1> -a`. Every wait
 * is bounded.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CommandRun, runCommand } from './command.js';

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const NONINTERACTIVE_ENV = { PATH: SYSTEM_PATH, DEBIAN_FRONTEND: 'noninteractive', LANG: 'C.UTF-8' };

export type DebianSuite = 'bullseye' | 'bookworm' | 'trixie';

export function run(cmd: string, args: readonly string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<CommandRun> {
  return runCommand(cmd, args, { cwd: opts.cwd ?? '/', env: opts.env ?? { PATH: SYSTEM_PATH, LANG: 'C.UTF-8' }, timeoutMs: opts.timeoutMs });
}

export function shown(what: string, r: CommandRun): string {
  return `${what}: exit ${r.status}${r.signal ? ` (signal ${r.signal})` : ''}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
}

export async function ok(what: string, p: Promise<CommandRun>): Promise<CommandRun> {
  const r = await p;
  assert.equal(r.status, 0, shown(what, r));
  return r;
}

function onPath(cmd: string): boolean {
  return SYSTEM_PATH.split(':').some((d) => existsSync(path.join(d, cmd)));
}

/** Why these tests cannot run here, or false. */
export function containerSkipReason(): string | false {
  if (process.platform !== 'linux' || process.arch !== 'x64') return `the package is built for linux-x64 (this is ${process.platform}-${process.arch})`;
  if (process.getuid?.() !== 0) return 'not root: debootstrap, chroot and systemd-nspawn need root (sudo npm test)';
  for (const [cmd, pkg] of [
    ['systemd-nspawn', 'systemd-container'],
    ['debootstrap', 'debootstrap'],
    ['nsenter', 'util-linux'],
    ['dpkg-deb', 'dpkg'],
  ]) {
    if (!onPath(cmd!)) return `${cmd} not found (Debian package ${pkg})`;
  }
  return false;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a value (not undefined), at most `ms`; fails naming `what` and the last state. */
export async function waitFor<T>(what: string, ms: number, check: () => Promise<T | undefined>, state?: () => Promise<string>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms / 1000} s${state ? `\n${await state()}` : ''}`);
    await sleep(250);
  }
}

/**
 * Unpacks the cached root of `suite` into `dir` and adds what xroad-base would create (its postinst:
 * adduser --system --group --home /var/lib/xroad xroad; /etc/xroad, /var/log/xroad 1770 xroad:adm,
 * /var/tmp/xroad), a host name and /etc/resolv.conf for apt.
 */
export async function unpackDebianRoot(suite: DebianSuite, dir: string, hostname: string): Promise<void> {
  const tar = (
    await ok(`debian-test-root.sh ${suite}`, run('bash', [path.join(REPO, 'scripts/debian-test-root.sh'), suite], { timeoutMs: 900_000 }))
  ).stdout.trim();
  await fs.mkdir(dir, { recursive: true });
  await ok('tar -x', run('tar', ['-C', dir, '--numeric-owner', '-xf', tar], { timeoutMs: 120_000 }));
  await fs.copyFile('/etc/resolv.conf', path.join(dir, 'etc/resolv.conf')).catch(() => undefined);
  await ok(
    'xroad-base look-alike',
    run('chroot', [
      dir,
      '/bin/sh',
      '-ec',
      [
        'groupadd --system xroad',
        'useradd --system --gid xroad --home-dir /var/lib/xroad --shell /bin/bash xroad',
        'install -d -m 0700 -o xroad -g xroad /var/lib/xroad /var/lib/xroad/.ssh',
        'install -d -m 0751 -o xroad -g xroad /etc/xroad',
        'install -d -m 1770 -o xroad -g adm /var/log/xroad',
        'install -d -m 0750 -o xroad -g xroad /var/tmp/xroad',
        `echo ${hostname} > /etc/hostname`,
        `printf '127.0.0.1 localhost\\n127.0.1.1 ${hostname}\\n' > /etc/hosts`,
      ].join('\n'),
    ]),
  );
}

/** `apt-get install -y ./DEB` in the (not booted) root, non-interactive, stdin closed: a prompt fails it. */
export async function aptInstallInRoot(dir: string, deb: string): Promise<CommandRun> {
  await fs.copyFile(deb, path.join(dir, 'tmp', path.basename(deb)));
  return run('chroot', [dir, 'apt-get', 'install', '-y', '--no-install-recommends', `/tmp/${path.basename(deb)}`], {
    timeoutMs: 180_000,
    env: NONINTERACTIVE_ENV,
  });
}

export interface Container {
  readonly pid1: number;
  /** A command inside, as root, with the container's PATH. */
  inside(args: readonly string[], timeoutMs?: number, env?: Record<string, string>): Promise<CommandRun>;
  sh(script: string, timeoutMs?: number): Promise<CommandRun>;
  show(unit: string, props: string[]): Promise<Record<string, string>>;
  journal(unit: string): Promise<string>;
  stop(): Promise<void>;
}

/** Boots `dir` with systemd-nspawn and waits until `systemctl is-system-running` says running or degraded. */
export async function bootContainer(dir: string, machine: string, consoleLogPath: string): Promise<Container> {
  const consoleLog = await fs.open(consoleLogPath, 'w');
  const nspawn: ChildProcess = spawn('systemd-nspawn', ['-q', '-D', dir, '--boot', '--register=no', '--keep-unit', '-M', machine, '--console=passive'], {
    stdio: ['ignore', consoleLog.fd, consoleLog.fd],
    env: { PATH: SYSTEM_PATH },
  });
  const exited = new Promise<void>((resolve) => nspawn.once('exit', () => resolve()));
  void consoleLog.close();
  const nspawnPid = nspawn.pid!;
  let pid1 = 0;
  const inside = (args: readonly string[], timeoutMs = 60_000, env: Record<string, string> = {}) =>
    run('nsenter', ['-t', String(pid1), '-a', 'env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...args], { timeoutMs });
  const container: Container = {
    get pid1() {
      return pid1;
    },
    inside,
    sh: (script, timeoutMs = 60_000) => inside(['/bin/sh', '-c', script], timeoutMs),
    async show(unit, props) {
      const r = await ok(`systemctl show ${unit}`, inside(['systemctl', 'show', unit, ...props.map((p) => `--property=${p}`)]));
      return Object.fromEntries(
        r.stdout
          .trim()
          .split('\n')
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      );
    },
    journal: async (unit) => (await inside(['journalctl', '--no-pager', '-n', '80', '-u', unit])).stdout,
    async stop() {
      if (nspawn.exitCode !== null) return;
      if (pid1) await inside(['systemctl', 'poweroff'], 10_000).catch(() => undefined);
      const done = await Promise.race([exited.then(() => true), sleep(20_000).then(() => false)]);
      if (!done) {
        nspawn.kill('SIGKILL');
        await Promise.race([exited, sleep(5_000)]);
      }
    },
  };
  try {
    pid1 = await waitFor(
      "the container's systemd to start",
      30_000,
      async () => {
        if (nspawn.exitCode !== null) assert.fail(`systemd-nspawn exited ${nspawn.exitCode}:\n${readFileSync(consoleLogPath, 'utf8')}`);
        for (const task of readdirSync(`/proc/${nspawnPid}/task`)) {
          for (const child of readFileSync(`/proc/${nspawnPid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) {
            if (readFileSync(`/proc/${child}/comm`, 'utf8').trim() === 'systemd') return Number(child);
          }
        }
        return undefined;
      },
      async () => readFileSync(consoleLogPath, 'utf8'),
    );
    const state = await waitFor(
      'systemctl is-system-running: running or degraded',
      90_000,
      async () => {
        const s = (await inside(['systemctl', 'is-system-running']).catch(() => undefined))?.stdout.trim();
        return s === 'running' || s === 'degraded' ? s : undefined;
      },
      async () => (await inside(['systemctl', '--failed', '--no-pager'])).stdout,
    );
    if (state === 'degraded') console.log(`systemd in ${machine}: degraded:\n${(await inside(['systemctl', '--failed', '--no-pager'])).stdout}`);
  } catch (err) {
    await container.stop();
    throw err;
  }
  return container;
}
