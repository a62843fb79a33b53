/**
 * The .deb on a stock Debian 12 under a real systemd.
 *
 * A minimal Debian 12 root (debootstrap --variant=minbase with systemd,
 * systemd-sysv, dbus, logrotate, sudo; built once and cached as a tar by
 * scripts/debian-test-root.sh, outside the clone) is copied for this run, given
 * what xroad-base would create (user and group xroad with home /var/lib/xroad,
 * /etc/xroad, /var/log/xroad 1770 xroad:adm, /var/tmp/xroad), and the .deb
 * built from the single executable is installed with `apt-get install ./….deb`
 * inside it. No Node.js anywhere in that root. It is booted with
 * `systemd-nspawn --boot --register=no --keep-unit`; the container shares the
 * host's network, so the test's OpenSSH sshd on 127.0.0.1 is the master.
 * Commands run inside through `nsenter -t <container PID 1> -a`.
 *
 * Needs root, systemd-nspawn (systemd-container), debootstrap, x86-64. Without
 * them the file is skipped, except under CI=true, where it must run. Every wait
 * is bounded; no assertion is about timing.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SAMPLE_CHANGED_FILE, SAMPLE_EXCLUDED, writeSampleTree } from '../../src/serve/sample-tree.js';
import { runCommand } from '../helpers/command.js';
import { skipUnlessCI } from '../helpers/components.js';
import { obj, withoutPaths } from '../helpers/run-sync.js';
import { makeTempDir, readTree, startMaster, type TestMaster } from '../helpers/sshd.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const VERSION = (JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const DEB = path.join(REPO, 'dist', 'packages', `xroad-sync_${VERSION}_amd64.deb`);
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const T = { timeout: 180_000 };

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: readonly string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return runCommand(cmd, args, { cwd: '/', env: opts.env ?? { PATH: SYSTEM_PATH, LANG: 'C.UTF-8' }, timeoutMs: opts.timeoutMs });
}

function shown(what: string, r: Run): string {
  return `${what}: exit ${r.status}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
}

async function ok(what: string, p: Promise<Run>): Promise<Run> {
  const r = await p;
  assert.equal(r.status, 0, shown(what, r));
  return r;
}

function onPath(cmd: string): boolean {
  return SYSTEM_PATH.split(':').some((d) => existsSync(path.join(d, cmd)));
}

function skipReason(): string | false {
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a value (not undefined), at most `ms`; fails naming `what` and the last state. */
async function waitFor<T>(what: string, ms: number, check: () => Promise<T | undefined>, state?: () => Promise<string>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms / 1000} s${state ? `\n${await state()}` : ''}`);
    await sleep(250);
  }
}

// Timeouts: the suite and its set-up may take a cold debootstrap (~70 s) and two builds; npm test's --test-timeout is lower.
describe('the .deb on a stock Debian 12 under systemd (systemd-nspawn)', { timeout: 900_000, skip: skipUnlessCI(skipReason()) }, () => {
  let work: string;
  let root: string;
  let master: TestMaster;
  let source: string;
  let nspawn: ChildProcess | undefined;
  let nspawnExited: Promise<void> | undefined;
  let pid1 = 0;
  const machine = `xroad-sync-test-${process.pid}`;

  /** A command inside the container, as root, with the container's PATH. */
  const inside = (args: readonly string[], timeoutMs = 60_000) => run('nsenter', ['-t', String(pid1), '-a', ...args], { timeoutMs });
  const sh = (script: string, timeoutMs = 60_000) => inside(['/bin/sh', '-c', script], timeoutMs);
  const show = async (unit: string, props: string[]) => {
    const r = await ok(`systemctl show ${unit}`, inside(['systemctl', 'show', unit, ...props.map((p) => `--property=${p}`)]));
    return Object.fromEntries(
      r.stdout
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
  };
  const journal = async (unit: string) => (await inside(['journalctl', '--no-pager', '-n', '60', '-u', unit])).stdout;
  const inRoot = (p: string) => path.join(root, p);
  const expectedTree = async () => obj(withoutPaths(await readTree(source), SAMPLE_EXCLUDED));
  const targetTree = async () => obj(await readTree(inRoot('/etc/xroad')));
  /**
   * Change one master file: the next pass must bring it. A new size and a distinct mtime each time, so
   * the quick check (size + whole-second mtime, as rsync) sees it even for two changes in one second.
   */
  let changes = 0;
  const changeMaster = async (): Promise<string> => {
    const text = `changed by the systemd test, change ${++changes} ${'+'.repeat(changes)}\n`;
    const file = path.join(source, SAMPLE_CHANGED_FILE);
    await fs.writeFile(file, text);
    await fs.utimes(file, 1_700_000_000 + changes * 60, 1_700_000_000 + changes * 60);
    return text;
  };
  const targetText = () => fs.readFile(inRoot(path.join('/etc/xroad', SAMPLE_CHANGED_FILE)), 'utf8').catch(() => '');

  before(
    async () => {
      work = await makeTempDir('xroad-sync-systemd-');
      source = path.join(work, 'master', 'etc', 'xroad');
      await writeSampleTree(source);
      // The package, from the executable (each build script waits for a concurrent one).
      await ok('build-exe.sh', run('bash', [path.join(REPO, 'scripts/build-exe.sh')], { timeoutMs: 180_000, env: { ...process.env } }));
      await ok(
        'build-deb.sh',
        run('bash', [path.join(REPO, 'scripts/build-deb.sh')], {
          timeoutMs: 180_000,
          env: { ...process.env, LINTIAN: 'no', DEB_COMPRESSION: '-Zxz -z1', XROAD_SYNC_EXE: path.join(REPO, 'dist/exe/xroad-sync') },
        }),
      );
      const tar = (await ok('debian-test-root.sh', run('bash', [path.join(REPO, 'scripts/debian-test-root.sh')], { timeoutMs: 600_000 }))).stdout.trim();
      root = path.join(work, 'root');
      await fs.mkdir(root);
      await ok('tar -x', run('tar', ['-C', root, '--numeric-owner', '-xf', tar], { timeoutMs: 120_000 }));
      master = await startMaster();

      // What xroad-base would create (its postinst: adduser --system --group --home /var/lib/xroad xroad).
      await ok(
        'xroad-base look-alike',
        run('chroot', [
          root,
          '/bin/sh',
          '-ec',
          [
            'groupadd --system xroad',
            'useradd --system --gid xroad --home-dir /var/lib/xroad --shell /bin/bash xroad',
            'install -d -m 0700 -o xroad -g xroad /var/lib/xroad /var/lib/xroad/.ssh',
            'install -d -m 0751 -o xroad -g xroad /etc/xroad',
            'install -d -m 1770 -o xroad -g adm /var/log/xroad',
            'install -d -m 0750 -o xroad -g xroad /var/tmp/xroad',
            `echo ${machine} > /etc/hostname`,
            `printf '127.0.0.1 localhost\\n127.0.1.1 ${machine}\\n' > /etc/hosts`,
          ].join('\n'),
        ]),
      );
      // The slave's key and the master's host key, where the package's README says: ~xroad/.ssh.
      await fs.copyFile(master.identity, inRoot('/var/lib/xroad/.ssh/id_ed25519'));
      await fs.copyFile(master.knownHosts, inRoot('/var/lib/xroad/.ssh/known_hosts'));
      await ok('chown keys', run('chroot', [root, '/bin/sh', '-ec', 'chown xroad:xroad /var/lib/xroad/.ssh/* && chmod 0600 /var/lib/xroad/.ssh/id_ed25519']));
      // The operator's settings: only /etc/default/xroad-sync (installed by the package, edited below).
      await fs.copyFile(DEB, inRoot(`/tmp/${path.basename(DEB)}`));
      const install = await ok(
        'apt-get install ./….deb',
        run('chroot', [root, 'apt-get', 'install', '-y', '--no-install-recommends', `/tmp/${path.basename(DEB)}`], {
          timeoutMs: 120_000,
          env: { PATH: SYSTEM_PATH, DEBIAN_FRONTEND: 'noninteractive', LANG: 'C.UTF-8' },
        }),
      );
      assert.match(install.stdout, /Setting up xroad-sync \(/, install.stdout);
      const defaults = await fs.readFile(inRoot('/etc/default/xroad-sync'), 'utf8');
      await fs.writeFile(
        inRoot('/etc/default/xroad-sync'),
        defaults
          .replace(/^MASTER=.*$/m, 'MASTER=127.0.0.1')
          .replace(/^XROAD_USER=.*$/m, `XROAD_USER=${master.user}`)
          .replace(/^XROAD_SYNC_OPTS=.*$/m, `XROAD_SYNC_OPTS="--port ${master.port} --source ${source}/"`)
          .replace(/^XROAD_SYNC_DAEMON_OPTS=.*$/m, 'XROAD_SYNC_DAEMON_OPTS="--interval 2"'),
      );
      // The timer fires 60 s after boot (OnBootSec=60); the test does not wait a minute for it.
      await fs.mkdir(inRoot('/etc/systemd/system/xroad-sync.timer.d'), { recursive: true });
      await fs.writeFile(inRoot('/etc/systemd/system/xroad-sync.timer.d/test.conf'), '[Timer]\nOnBootSec=\nOnBootSec=3\n');

      // Boot it.
      const consoleLog = await fs.open(path.join(work, 'nspawn.log'), 'w');
      nspawn = spawn('systemd-nspawn', ['-q', '-D', root, '--boot', '--register=no', '--keep-unit', '-M', machine, '--console=passive'], {
        stdio: ['ignore', consoleLog.fd, consoleLog.fd],
        env: { PATH: SYSTEM_PATH },
      });
      nspawnExited = new Promise((resolve) => nspawn!.once('exit', () => resolve()));
      void consoleLog.close();
      const nspawnPid = nspawn.pid!;
      pid1 = await waitFor(
        "the container's systemd to start",
        30_000,
        async () => {
          for (const task of readdirSync(`/proc/${nspawnPid}/task`)) {
            for (const child of readFileSync(`/proc/${nspawnPid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) {
              if (readFileSync(`/proc/${child}/comm`, 'utf8').trim() === 'systemd') return Number(child);
            }
          }
          return undefined;
        },
        async () => readFileSync(path.join(work, 'nspawn.log'), 'utf8'),
      );
      const state = await waitFor(
        'systemctl is-system-running: running or degraded',
        60_000,
        async () => {
          const r = await inside(['systemctl', 'is-system-running']).catch(() => undefined);
          const s = r?.stdout.trim();
          return s === 'running' || s === 'degraded' ? s : undefined;
        },
        async () => (await inside(['systemctl', '--failed', '--no-pager'])).stdout,
      );
      if (state === 'degraded') console.log(`systemd: degraded:\n${(await inside(['systemctl', '--failed', '--no-pager'])).stdout}`);
    },
    { timeout: 900_000 },
  );

  after(
    async () => {
      if (nspawn && nspawn.exitCode === null) {
        if (pid1) await inside(['systemctl', 'poweroff'], 10_000).catch(() => undefined);
        const exited = await Promise.race([nspawnExited!.then(() => true), sleep(20_000).then(() => false)]);
        if (!exited) {
          nspawn.kill('SIGKILL');
          await Promise.race([nspawnExited, sleep(5_000)]);
        }
      }
      await master?.stop();
      if (work) await fs.rm(work, { recursive: true, force: true });
    },
    { timeout: 60_000 },
  );

  it('no Node.js in the root; /usr/bin/xroad-sync is the executable and links only the C/C++ runtime', T, async () => {
    const node = await sh(
      "command -v node nodejs; ls /usr/bin/node /usr/bin/nodejs /usr/local/bin/node 2>/dev/null; dpkg-query -W -f='${Package}\\n' 'nodejs*' 'libnode*' 2>/dev/null; true",
    );
    assert.equal(node.stdout.trim(), '', `Node.js in the root:\n${node.stdout}`);
    const v = await ok('xroad-sync --version', inside(['xroad-sync', '--version']));
    assert.equal(v.stdout, `${VERSION}\n`);
    assert.equal(v.stderr, '');
    const status = await ok('dpkg -s', inside(['dpkg-query', '-W', '-f=${Status} ${Architecture}', 'xroad-sync']));
    assert.equal(status.stdout, 'install ok installed amd64');
  });

  it("the timer's first pass mirrors the master; the service ends Result=success; slave-sync.log written", T, async () => {
    await ok('enable --now the timer', inside(['systemctl', 'enable', '--now', 'xroad-sync.timer']));
    const done = await waitFor(
      'the timer to start xroad-sync.service and the pass to end',
      60_000,
      async () => {
        const s = await show('xroad-sync.service', ['ActiveState', 'Result', 'ExecMainStatus', 'ExecMainExitTimestampMonotonic']);
        return s.ExecMainExitTimestampMonotonic !== '0' && s.ActiveState !== 'activating' ? s : undefined;
      },
      () => journal('xroad-sync.service'),
    );
    assert.equal(done.Result, 'success', await journal('xroad-sync.service'));
    assert.equal(done.ExecMainStatus, '0');
    assert.deepEqual(await targetTree(), await expectedTree());
    const log = await fs.readFile(inRoot('/var/log/xroad/slave-sync.log'), 'utf8');
    assert.match(log, /\] receiving file list\n/);
    assert.match(log, /\] sent \d+ bytes {2}received \d+ bytes {2}total size \d+\n$/);
    // The rest of the test starts passes itself.
    await ok('disable --now the timer', inside(['systemctl', 'disable', '--now', 'xroad-sync.timer']));
  });

  it('with the flag present the service start is skipped by its condition: not failed, nothing changes', T, async () => {
    await ok('touch the flag', inside(['sudo', '-u', 'xroad', 'touch', '/var/tmp/xroad/sync-disabled']));
    const before = await targetTree();
    await changeMaster();
    const logBefore = await fs.readFile(inRoot('/var/log/xroad/slave-sync.log'), 'utf8');
    await ok('systemctl start xroad-sync.service', inside(['systemctl', 'start', 'xroad-sync.service']));
    const s = await show('xroad-sync.service', ['ActiveState', 'Result', 'ConditionResult']);
    assert.equal(s.ConditionResult, 'no');
    assert.notEqual(s.ActiveState, 'failed');
    assert.notEqual((await inside(['systemctl', 'is-failed', 'xroad-sync.service'])).stdout.trim(), 'failed');
    assert.deepEqual(await targetTree(), before, 'nothing changed');
    assert.equal(await fs.readFile(inRoot('/var/log/xroad/slave-sync.log'), 'utf8'), logBefore, 'no pass ran');
    await ok('rm the flag', inside(['sudo', '-u', 'xroad', 'rm', '/var/tmp/xroad/sync-disabled']));
  });

  it("the README's by-hand upgrade steps, typed as written, with the settings only in /etc/default/xroad-sync", T, async () => {
    const hand = (cmd: string) => sh(cmd, 60_000);
    const pause = await hand('sudo -u xroad xroad-sync pause');
    assert.equal(pause.status, 0, shown('pause', pause));
    assert.match(pause.stdout, /^Sync paused: false => true/);
    assert.ok(existsSync(inRoot('/var/tmp/xroad/sync-disabled')));
    const text = await changeMaster();
    const resume = await hand('sudo -u xroad xroad-sync resume --now');
    assert.equal(resume.status, 0, shown('resume --now', resume));
    assert.match(resume.stdout, /Sync paused: true => false/);
    assert.equal(await targetText(), text, 'resume --now ran a pass');
    const text2 = await changeMaster();
    const sync = await hand('sudo -u xroad xroad-sync sync --now');
    assert.equal(sync.status, 0, shown('sync --now', sync));
    assert.equal(await targetText(), text2, 'sync --now ran a pass');
    const status = await hand('sudo -u xroad xroad-sync status');
    assert.equal(status.status, 0, shown('status', status));
    assert.match(status.stdout, /paused: +no/);
    assert.match(status.stdout, /last pass: .*ok/);
  });

  it(
    'the daemon unit is Type=notify: started means the first pass ended; StatusText names the last pass; a hung event loop is restarted by the watchdog',
    T,
    async () => {
      const unit = 'xroad-sync-daemon.service';
      // A master change made while the daemon is stopped is on the slave once `systemctl start` returns:
      // the unit is started only after the daemon's first pass (READY=1), so Before=xroad-proxy.service orders a finished pass.
      const text = await changeMaster();
      await ok('start the daemon', inside(['systemctl', 'start', unit], 120_000));
      assert.equal(await targetText(), text, `the first pass ended before the start job did\n${await journal(unit)}`);
      const s = await show(unit, ['Type', 'NotifyAccess', 'WatchdogUSec', 'ActiveState', 'StatusText', 'MainPID', 'NRestarts']);
      assert.equal(s.Type, 'notify');
      assert.equal(s.NotifyAccess, 'all');
      assert.equal(s.ActiveState, 'active');
      assert.notEqual(s.WatchdogUSec, '0');
      assert.match(s.StatusText ?? '', /^last pass ok at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(\d+\.\d s\), \d+ changed$/, `StatusText=${s.StatusText}`);
      const status = await inside(['systemctl', 'status', '--no-pager', unit]);
      assert.match(status.stdout, /Status: "last pass ok at /, status.stdout);
      // A failing pass shows at once, naming why (the master's directory gone).
      await fs.rename(source, `${source}.away`);
      try {
        const failed = await waitFor(
          'StatusText to name the failed pass',
          30_000,
          async () => {
            const t = (await show(unit, ['StatusText'])).StatusText ?? '';
            return t.startsWith('last pass failed') ? t : undefined;
          },
          () => journal(unit),
        );
        assert.match(failed, /\(exit \d+\): .+; last ok pass at /);
      } finally {
        await fs.rename(`${source}.away`, source);
      }
      await waitFor(
        'StatusText ok again',
        60_000,
        async () => ((await show(unit, ['StatusText'])).StatusText?.startsWith('last pass ok') ? true : undefined),
        () => journal(unit),
      );

      // The watchdog: a short WatchdogSec= and the test hook that blocks the event loop on SIGUSR2.
      const dropIn = inRoot(`/etc/systemd/system/${unit}.d`);
      await fs.mkdir(dropIn, { recursive: true });
      await fs.writeFile(path.join(dropIn, 'watchdog-test.conf'), '[Service]\nWatchdogSec=4s\nEnvironment=XROAD_SYNC_TEST_HANG_SIGNAL=SIGUSR2\n');
      try {
        await ok('daemon-reload', inside(['systemctl', 'daemon-reload']));
        await ok('restart with the test hook', inside(['systemctl', 'restart', unit], 120_000));
        const hooked = await show(unit, ['ActiveState', 'MainPID', 'NRestarts', 'WatchdogUSec']);
        assert.equal(hooked.WatchdogUSec, '4s');
        assert.equal(hooked.ActiveState, 'active');
        // The pings arrive: systemd records each in WatchdogTimestamp; two new ones, and the same daemon.
        const pings = new Set<string>();
        await waitFor(
          'two watchdog pings',
          30_000,
          async () => {
            pings.add((await show(unit, ['WatchdogTimestampMonotonic'])).WatchdogTimestampMonotonic!);
            return pings.size >= 3 ? true : undefined;
          },
          () => journal(unit),
        );
        assert.equal((await show(unit, ['MainPID'])).MainPID, hooked.MainPID, `the pinging daemon is not restarted\n${await journal(unit)}`);
        await ok('block the event loop', sh(`kill -USR2 ${hooked.MainPID}`));
        const restarted = await waitFor(
          'the watchdog to restart the hung daemon',
          60_000,
          async () => {
            const r = await show(unit, ['ActiveState', 'MainPID', 'NRestarts']);
            return r.ActiveState === 'active' && r.MainPID !== '0' && r.MainPID !== hooked.MainPID ? r : undefined;
          },
          () => journal(unit),
        );
        assert.ok(Number(restarted.NRestarts) > Number(hooked.NRestarts), `NRestarts ${hooked.NRestarts} -> ${restarted.NRestarts}`);
        assert.match(await journal(unit), /[Ww]atchdog timeout/);
      } finally {
        await fs.rm(dropIn, { recursive: true, force: true });
        await ok('daemon-reload', inside(['systemctl', 'daemon-reload']));
      }
      await ok('stop the daemon', inside(['systemctl', 'stop', unit]));
    },
  );

  it(
    'the daemon unit: active, a master change applied, pause/resume live, also after /var/tmp/xroad was replaced or missing, logrotate, kill -9 restarts it',
    T,
    async () => {
      await ok('start the daemon', inside(['systemctl', 'start', 'xroad-sync-daemon.service'], 120_000));
      const first = await waitFor(
        'the daemon active',
        30_000,
        async () => {
          const s = await show('xroad-sync-daemon.service', ['ActiveState', 'MainPID', 'NRestarts']);
          return s.ActiveState === 'active' && s.MainPID !== '0' ? s : undefined;
        },
        () => journal('xroad-sync-daemon.service'),
      );

      // A master change arrives with the next interval (--interval 2 in XROAD_SYNC_DAEMON_OPTS).
      const text = await changeMaster();
      await waitFor(
        'the daemon to apply a master change',
        30_000,
        async () => ((await targetText()) === text ? true : undefined),
        () => journal('xroad-sync-daemon.service'),
      );

      // Pause: the flag made by the operator in the host's /var/tmp/xroad reaches the daemon.
      await ok('pause', sh('sudo -u xroad xroad-sync pause'));
      await waitFor(
        'the daemon to see the pause',
        20_000,
        async () => (/sync paused: flag file created/.test(await journal('xroad-sync-daemon.service')) ? true : undefined),
        () => journal('xroad-sync-daemon.service'),
      );
      const paused = await changeMaster();
      await sleep(5_000); // two intervals: a pass would have brought the change
      assert.notEqual(await targetText(), paused, 'no pass while paused');
      await ok('resume', sh('sudo -u xroad xroad-sync resume'));
      await waitFor(
        'the daemon to apply the change after resume',
        30_000,
        async () => ((await targetText()) === paused ? true : undefined),
        () => journal('xroad-sync-daemon.service'),
      );

      // /var/tmp/xroad replaced (tmpfiles ageing, an operator fixing its owner): pause exits 0 only
      // once the running daemon confirms it sees the flag in the new directory (76 otherwise).
      await ok('replace /var/tmp/xroad', sh('rm -rf /var/tmp/xroad && install -d -m 1750 -o xroad -g xroad /var/tmp/xroad'));
      const confirmed = await ok('pause after the replacement', sh('sudo -u xroad xroad-sync pause'));
      if (!/the daemon \(pid \d+\) sees the flag/.test(confirmed.stdout)) {
        const state = await sh('cat /var/lib/xroad-sync/daemon.lock /var/lib/xroad-sync/flag-seen.json; sudo -u xroad xroad-sync status');
        assert.fail(`${shown('pause', confirmed)}\n${shown('state', state)}\n${await journal('xroad-sync-daemon.service')}`);
      }
      const running = await ok('status', sh('sudo -u xroad xroad-sync status'));
      assert.match(running.stdout, /daemon: +running \(pid \d+\)/, shown('status beside the daemon', running));
      await ok('resume after the replacement', sh('sudo -u xroad xroad-sync resume'));
      // A start while the directory is missing (before tmpfiles ran) is not a 226/NAMESPACE failure.
      await ok('remove /var/tmp/xroad', sh('rm -rf /var/tmp/xroad'));
      await ok('restart without /var/tmp/xroad', inside(['systemctl', 'restart', 'xroad-sync-daemon.service'], 120_000));
      const moved = await waitFor(
        'the daemon active without /var/tmp/xroad',
        30_000,
        async () => {
          const s = await show('xroad-sync-daemon.service', ['ActiveState', 'MainPID']);
          return s.ActiveState === 'active' && s.MainPID !== '0' ? s : undefined;
        },
        () => journal('xroad-sync-daemon.service'),
      );
      first.MainPID = moved.MainPID; // the kill -9 below aims at the running one
      await waitFor(
        'the restarted daemon to start',
        30_000,
        async () => (new RegExp(`xroad-sync\\[${moved.MainPID}\\]: .*"daemon started"`).test(await journal('xroad-sync-daemon.service')) ? true : undefined),
        () => journal('xroad-sync-daemon.service'),
      );
      await ok('re-create /var/tmp/xroad', sh('install -d -m 1750 -o xroad -g xroad /var/tmp/xroad'));

      // logrotate (as cron.daily would run it): the old log compressed, new lines go to a fresh slave-sync.log.
      await ok('logrotate -f', inside(['logrotate', '-f', '/etc/logrotate.d/xroad-slave-sync']));
      assert.ok(existsSync(inRoot('/var/log/xroad/slave-sync.log.1.gz')), 'rotated and compressed');
      const afterRotate = await changeMaster();
      await waitFor(
        'new lines in a fresh slave-sync.log',
        30_000,
        async () => {
          const log = await fs.readFile(inRoot('/var/log/xroad/slave-sync.log'), 'utf8').catch(() => '');
          return (await targetText()) === afterRotate && /\] sent \d+ bytes/.test(log) ? true : undefined;
        },
        () => journal('xroad-sync-daemon.service'),
      );

      // kill -9 of the main process: systemd restarts it (Restart=on-failure, RestartSec=5).
      // The main pid as systemd has it now (a load-delayed watchdog or a restart would have moved it).
      first.MainPID = (await show('xroad-sync-daemon.service', ['MainPID'])).MainPID;
      await ok('kill -9', sh(`kill -9 ${first.MainPID}`)); // the shell's kill: minbase has no procps
      const restarted = await waitFor(
        'systemd to restart the daemon',
        60_000,
        async () => {
          const s = await show('xroad-sync-daemon.service', ['ActiveState', 'MainPID', 'NRestarts']);
          return s.ActiveState === 'active' && s.MainPID !== '0' && s.MainPID !== first.MainPID ? s : undefined;
        },
        () => journal('xroad-sync-daemon.service'),
      );
      assert.ok(Number(restarted.NRestarts) >= 1, `NRestarts=${restarted.NRestarts}`);
      const again = await changeMaster();
      await waitFor(
        'the restarted daemon to apply a change',
        30_000,
        async () => ((await targetText()) === again ? true : undefined),
        () => journal('xroad-sync-daemon.service'),
      );
      await ok('stop the daemon', inside(['systemctl', 'stop', 'xroad-sync-daemon.service']));
    },
  );

  it('apt-get purge removes the program and the units and leaves /etc/xroad alone', T, async () => {
    const before = await targetTree();
    assert.ok(Object.keys(before).length > 5);
    await ok('apt-get purge', inside(['env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', 'purge', '-y', 'xroad-sync'], 120_000));
    for (const f of [
      '/usr/bin/xroad-sync',
      '/usr/lib/systemd/system/xroad-sync.service',
      '/usr/lib/systemd/system/xroad-sync.timer',
      '/usr/lib/systemd/system/xroad-sync-daemon.service',
      '/etc/default/xroad-sync',
      '/etc/logrotate.d/xroad-slave-sync',
      '/var/lib/xroad-sync',
    ]) {
      assert.equal(existsSync(inRoot(f)), false, `${f} removed`);
    }
    assert.deepEqual(await targetTree(), before, '/etc/xroad untouched');
    assert.ok(existsSync(inRoot('/var/log/xroad/slave-sync.log')), 'the log is left to its readers');
    const units = await inside(['systemctl', 'list-unit-files', 'xroad-sync*', '--no-legend']);
    assert.equal(units.stdout.trim(), '', `units left:\n${units.stdout}`);
  });
});
