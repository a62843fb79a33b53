/**
 * The .deb upgrades like a Debian daemon package, on stock Debian 12 and 13
 * roots booted under systemd (systemd-nspawn), and installs on Debian 11.
 *
 * The previous release is built from a copy of this tree with a lower version
 * (`<version>~previous`) and defaults that differ from this release's (as a
 * real previous release's would); XROAD_SYNC_PREVIOUS_REF=<git ref> builds it
 * from that commit instead (e.g. the last release). Installed with apt, the
 * operator edits /etc/default/xroad-sync and enables the daemon; then this
 * release is installed over it with `apt-get install ./….deb`,
 * non-interactively with stdin closed (a dpkg conffile prompt fails it). The
 * daemon must then run the new executable (its /proc/<pid>/exe not
 * "(deleted)", the new --version), under its own name, with the edit kept.
 *
 * Needs root, systemd-nspawn, debootstrap, x86-64 (skipped without them, except
 * under CI=true). Every wait is bounded.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SAMPLE_CHANGED_FILE, writeSampleTree } from '../../src/serve/sample-tree.js';
import { skipUnlessCI } from '../helpers/components.js';
import {
  aptInstallInRoot,
  bootContainer,
  type Container,
  containerSkipReason,
  type DebianSuite,
  NONINTERACTIVE_ENV,
  ok,
  REPO,
  run,
  shown,
  unpackDebianRoot,
  waitFor,
} from '../helpers/debian-container.js';
import { makeTempDir, startMaster, type TestMaster } from '../helpers/sshd.js';

const VERSION = (JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const PREVIOUS_VERSION = `${VERSION}~previous`;
const FAST_DEB = { LINTIAN: 'no', DEB_COMPRESSION: '-Zxz -z1' };
const skip = skipUnlessCI(containerSkipReason());

/** What the previous release is built from: the files a release build reads. */
const TREE_FILES = ['src', 'scripts', 'service', 'packaging', 'README.md', 'docs', 'package.json', 'tsconfig.json'];

/** This release's .deb, built once for the file. */
let newDeb: Promise<string> | undefined;
function buildNewDeb(): Promise<string> {
  newDeb ??= (async () => {
    await ok('build-exe.sh', run('bash', [path.join(REPO, 'scripts/build-exe.sh')], { timeoutMs: 300_000, env: process.env, cwd: REPO }));
    await ok(
      'build-deb.sh',
      run('bash', [path.join(REPO, 'scripts/build-deb.sh')], {
        timeoutMs: 300_000,
        cwd: REPO,
        env: { ...process.env, ...FAST_DEB, XROAD_SYNC_EXE: path.join(REPO, 'dist/exe/xroad-sync') },
      }),
    );
    return path.join(REPO, 'dist', 'packages', `xroad-sync_${VERSION}_amd64.deb`);
  })();
  return newDeb;
}

/** The previous release's .deb: this tree (or XROAD_SYNC_PREVIOUS_REF's) with a lower version and older defaults. */
let previousDeb: Promise<string> | undefined;
function buildPreviousDeb(work: string): Promise<string> {
  previousDeb ??= (async () => {
    const tree = path.join(work, 'previous-tree');
    await fs.mkdir(tree);
    const ref = process.env.XROAD_SYNC_PREVIOUS_REF;
    if (ref) {
      await ok(
        `git archive ${ref}`,
        run('sh', ['-c', `git -C "${REPO}" archive "${ref}" ${TREE_FILES.join(' ')} | tar -x -C "${tree}"`], { timeoutMs: 60_000 }),
      );
    } else {
      for (const f of TREE_FILES) await fs.cp(path.join(REPO, f), path.join(tree, f), { recursive: true });
      // A release's defaults change between versions; the upgrade must not stop at a prompt for that.
      await fs.appendFile(path.join(tree, 'service/xroad-sync.default'), "\n# The previous release's defaults ended here.\n");
    }
    await fs.symlink(path.join(REPO, 'node_modules'), path.join(tree, 'node_modules'));
    const pkgFile = path.join(tree, 'package.json');
    const pkg = JSON.parse(await fs.readFile(pkgFile, 'utf8')) as { version: string };
    pkg.version = PREVIOUS_VERSION;
    await fs.writeFile(pkgFile, `${JSON.stringify(pkg, null, 2)}\n`);
    await ok('previous build-exe.sh', run('bash', [path.join(tree, 'scripts/build-exe.sh')], { timeoutMs: 300_000, env: process.env, cwd: tree }));
    await ok(
      'previous build-deb.sh',
      run('bash', [path.join(tree, 'scripts/build-deb.sh')], {
        timeoutMs: 300_000,
        cwd: tree,
        env: { ...process.env, ...FAST_DEB, XROAD_SYNC_EXE: path.join(tree, 'dist/exe/xroad-sync') },
      }),
    );
    return path.join(tree, 'dist', 'packages', `xroad-sync_${PREVIOUS_VERSION}_amd64.deb`);
  })();
  return previousDeb;
}

let work: string;
let master: TestMaster;
let source: string;

before(async () => {
  if (skip) return;
  work = await makeTempDir('xroad-sync-upgrade-');
  source = path.join(work, 'master', 'etc', 'xroad');
  await writeSampleTree(source);
  master = await startMaster();
});
after(async () => {
  await master?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

/** The settings as an operator edits them: the master, its account, and a line of their own. */
function operatorsSettings(shipped: string): string {
  return `${shipped
    .replace(/^MASTER=.*$/m, 'MASTER=127.0.0.1')
    .replace(/^XROAD_USER=.*$/m, `XROAD_USER=${master.user}`)
    .replace(/^XROAD_SYNC_OPTS=.*$/m, `XROAD_SYNC_OPTS="--port ${master.port} --source ${source}/"`)
    .replace(/^XROAD_SYNC_DAEMON_OPTS=.*$/m, 'XROAD_SYNC_DAEMON_OPTS="--interval 2"')}# edited by the operator\n`;
}

for (const [suite, name] of [
  ['bookworm', 'Debian 12'],
  ['trixie', 'Debian 13'],
] as Array<[DebianSuite, string]>) {
  describe(`upgrade over a running daemon on ${name} under systemd`, { timeout: 1_200_000, skip }, () => {
    let root: string;
    let box: Container | undefined;
    let settings: string;
    let changes = 0;
    const inRoot = (p: string) => path.join(root, p);
    /** A new size and mtime each time, so the quick check sees every change. */
    const changeMaster = async (): Promise<string> => {
      const text = `changed by the upgrade test, change ${++changes} ${'+'.repeat(changes)}\n`;
      const file = path.join(source, SAMPLE_CHANGED_FILE);
      await fs.writeFile(file, text);
      await fs.utimes(file, 1_700_000_000 + changes * 60, 1_700_000_000 + changes * 60);
      return text;
    };
    const targetText = () => fs.readFile(inRoot(path.join('/etc/xroad', SAMPLE_CHANGED_FILE)), 'utf8').catch(() => '');
    const daemon = async () => box!.show('xroad-sync-daemon.service', ['ActiveState', 'MainPID', 'ExecMainStartTimestampMonotonic']);
    /**
     * The daemon's main process once it runs xroad-sync: with Type=simple the unit is active from the fork,
     * and until the exec /proc/<pid>/exe is systemd's (or systemd-executor's, systemd >= 255).
     */
    const runningDaemon = (what: string, notPid?: string) =>
      waitFor(
        what,
        90_000,
        async () => {
          const d = await daemon();
          if (d.ActiveState !== 'active' || d.MainPID === '0' || d.MainPID === notPid) return undefined;
          const exe = (await box!.inside(['readlink', `/proc/${d.MainPID}/exe`])).stdout.trim();
          return exe.startsWith('/usr/bin/xroad-sync') ? d.MainPID! : undefined;
        },
        async () => {
          const d = await daemon();
          const exe = (await box!.inside(['readlink', `/proc/${d.MainPID}/exe`])).stdout.trim();
          return `${JSON.stringify(d)}; /proc/${d.MainPID}/exe -> ${exe}\n${await box!.journal('xroad-sync-daemon.service')}`;
        },
      );
    /** The running daemon's executable, name and version, as `ps`/`systemctl status` and the kernel see them. */
    const processOf = async (pid: string) => ({
      exe: (await ok('readlink exe', box!.inside(['readlink', `/proc/${pid}/exe`]))).stdout.trim(),
      comm: await nameOf(pid),
      version: (await ok('exe --version', box!.inside([`/proc/${pid}/exe`, '--version']))).stdout.trim(),
    });
    /** The kernel's name for the process once the program has started (Node calls it MainThread until then). */
    const nameOf = async (pid: string) => {
      const comm = async () => (await ok('comm', box!.inside(['cat', `/proc/${pid}/comm`]))).stdout.trim();
      return waitFor('the process to name itself', 20_000, async () => ((await comm()) === 'xroad-sync' ? 'xroad-sync' : undefined)).catch(comm);
    };

    const machine = `xs-upgrade-${suite}-${process.pid}`;
    let boots = 0;
    const reboot = async () => {
      await box?.stop();
      box = await bootContainer(root, machine, path.join(work, `nspawn-${suite}-${++boots}.log`));
    };

    before(
      async () => {
        const [previous] = await Promise.all([buildPreviousDeb(work), buildNewDeb()]);
        root = path.join(work, `root-${suite}`);
        await unpackDebianRoot(suite, root, machine);
        await fs.copyFile(master.identity, inRoot('/var/lib/xroad/.ssh/id_ed25519'));
        await fs.copyFile(master.knownHosts, inRoot('/var/lib/xroad/.ssh/known_hosts'));
        await ok('chown keys', run('chroot', [root, '/bin/sh', '-ec', 'chown xroad:xroad /var/lib/xroad/.ssh/* && chmod 0600 /var/lib/xroad/.ssh/id_ed25519']));
        await ok('apt-get install the previous release', aptInstallInRoot(root, previous));
        settings = operatorsSettings(await fs.readFile(inRoot('/etc/default/xroad-sync'), 'utf8'));
        await fs.writeFile(inRoot('/etc/default/xroad-sync'), settings);
        // X-Road's proxy, as far as ordering goes: it records the synced file it starts with.
        await fs.writeFile(
          inRoot('/etc/systemd/system/xroad-proxy.service'),
          [
            '[Unit]',
            "Description=stands in for X-Road's proxy: records the configuration it starts with",
            '[Service]',
            'Type=oneshot',
            'RemainAfterExit=yes',
            `ExecStart=/bin/sh -c 'cat /etc/xroad/${SAMPLE_CHANGED_FILE} > /run/proxy-started-with 2>/dev/null || true'`,
            '[Install]',
            'WantedBy=multi-user.target',
            '',
          ].join('\n'),
        );
        await ok('enable the stand-in proxy', run('chroot', [root, 'systemctl', 'enable', 'xroad-proxy.service']));
        await reboot();
      },
      { timeout: 1_200_000 },
    );
    after(
      async () => {
        await box?.stop();
      },
      { timeout: 60_000 },
    );

    it("the previous release's daemon runs, named xroad-sync, and syncs", { timeout: 180_000 }, async () => {
      await ok('enable --now the daemon', box!.inside(['systemctl', 'enable', '--now', 'xroad-sync-daemon.service'], 150_000));
      const pid = await runningDaemon('the daemon running');
      const text = await changeMaster();
      await waitFor(
        'the daemon to apply a master change',
        60_000,
        async () => ((await targetText()) === text ? true : undefined),
        () => box!.journal('xroad-sync-daemon.service'),
      );
      const p = await processOf(pid);
      assert.equal(p.version, PREVIOUS_VERSION);
      assert.equal(p.exe, '/usr/bin/xroad-sync');
    });

    it('apt-get install of this release over it: no prompt, the daemon restarted on the new executable, the edit kept', { timeout: 300_000 }, async () => {
      const before = await runningDaemon("the previous release's daemon running");
      const deb = await buildNewDeb();
      // Not /tmp: the booted container has its own tmpfs there.
      await fs.copyFile(deb, inRoot(`/root/${path.basename(deb)}`));
      // As unattended-upgrades or a configuration-management run would: no terminal, no --force-conf*.
      const upgrade = await box!.inside(['apt-get', 'install', '-y', '--no-install-recommends', `/root/${path.basename(deb)}`], 240_000, NONINTERACTIVE_ENV);
      assert.equal(upgrade.status, 0, shown('apt-get install (upgrade)', upgrade));
      assert.match(
        upgrade.stdout,
        new RegExp(`Unpacking xroad-sync \\(${VERSION.replace(/\./g, '\\.')}\\) over \\(${PREVIOUS_VERSION.replace(/\./g, '\\.')}\\)`),
        upgrade.stdout,
      );
      assert.doesNotMatch(upgrade.stdout + upgrade.stderr, /Configuration file '\/etc\/default\/xroad-sync'/);

      const p = await processOf(await runningDaemon('the daemon restarted: a new main process', before));
      assert.equal(p.exe, '/usr/bin/xroad-sync', 'the daemon runs the installed file, not a deleted one');
      assert.equal(p.version, VERSION);
      assert.equal(p.comm, 'xroad-sync', 'ps -C xroad-sync, pgrep -x xroad-sync and systemctl status show it by name');
      assert.equal(await fs.readFile(inRoot('/etc/default/xroad-sync'), 'utf8'), settings, "the operator's settings are kept as edited");
      const conffiles = (await ok('dpkg-query Conffiles', box!.inside(['dpkg-query', '-W', '-f=${Conffiles}', 'xroad-sync']))).stdout;
      assert.doesNotMatch(conffiles, /^ \/etc\/default\/xroad-sync [0-9a-f]{32}$/m, 'the settings file is not a conffile dpkg could prompt for');
      // And it still syncs, with those settings.
      const text = await changeMaster();
      await waitFor(
        'the upgraded daemon to apply a master change',
        60_000,
        async () => ((await targetText()) === text ? true : undefined),
        () => box!.journal('xroad-sync-daemon.service'),
      );
    });

    it('units in /usr/lib/systemd/system; RemoveIPC; /var/tmp/xroad made by tmpfiles.d and exempt from ageing', { timeout: 120_000 }, async () => {
      const files = (await ok('dpkg -L', box!.inside(['dpkg', '-L', 'xroad-sync']))).stdout.split('\n');
      for (const f of [
        '/usr/lib/systemd/system/xroad-sync.service',
        '/usr/lib/systemd/system/xroad-sync.timer',
        '/usr/lib/systemd/system/xroad-sync-daemon.service',
        '/usr/lib/tmpfiles.d/xroad-sync.conf',
      ]) {
        assert.ok(files.includes(f), `${f} in the package:\n${files.join('\n')}`);
      }
      assert.ok(!files.some((f) => f.startsWith('/lib/')), 'nothing under /lib (merged /usr)');
      const sandbox = await box!.show('xroad-sync-daemon.service', ['ProtectProc', 'RemoveIPC']);
      // ProtectProc= would give the daemon a /proc of its own, with the kernel's boot id instead of the
      // container's: the pass lock of a by-hand pass would look like one from before a reboot.
      assert.deepEqual(sandbox, { ProtectProc: 'default', RemoveIPC: 'yes' });
      // X-Road's owner and mode, restored at boot by systemd-tmpfiles-setup.
      await ok('chmod', box!.inside(['chmod', '0700', '/var/tmp/xroad']));
      await ok('systemd-tmpfiles --create', box!.inside(['systemd-tmpfiles', '--create', '/usr/lib/tmpfiles.d/xroad-sync.conf']));
      assert.equal((await ok('stat', box!.inside(['stat', '-c', '%a %U:%G', '/var/tmp/xroad']))).stdout.trim(), '1750 xroad:xroad');
      // RHEL ages /var/tmp (30 days); here a 1 s rule stands in for it. A pause flag left that long must not vanish.
      await fs.mkdir(inRoot('/etc/tmpfiles.d'), { recursive: true });
      await fs.writeFile(inRoot('/etc/tmpfiles.d/tmp.conf'), 'q /var/tmp 1777 root root 1s\n');
      await ok('touch the flag', box!.inside(['runuser', '-u', 'xroad', '--', 'touch', '/var/tmp/xroad/sync-disabled']));
      await ok('touch a control file', box!.inside(['touch', '/var/tmp/aged-control']));
      try {
        await waitFor('systemd-tmpfiles --clean to remove an aged file from /var/tmp', 30_000, async () => {
          await box!.inside(['systemd-tmpfiles', '--clean']);
          return (await box!.inside(['test', '-e', '/var/tmp/aged-control'])).status !== 0 ? true : undefined;
        });
        assert.equal((await box!.inside(['test', '-e', '/var/tmp/xroad/sync-disabled'])).status, 0, "the pause flag outlives /var/tmp's ageing");
      } finally {
        await fs.rm(inRoot('/etc/tmpfiles.d/tmp.conf'), { force: true });
        await box!.inside(['rm', '-f', '/var/tmp/xroad/sync-disabled']);
      }
    });

    // Under systemd-nspawn with systemd 252 a unit with ProtectKernelTunables= (or ProtectControlGroups=, ProtectProc=)
    // reads the kernel's boot id and everything else the container's (nspawn mounts its own over it): the daemon then
    // takes a by-hand pass's lock for one left before a reboot. systemd 257 keeps the container's.
    it("a pass run as root (by mistake) holds the lock: the daemon waits for it, then takes the dead holder's lock over", {
      timeout: 180_000,
      todo: suite === 'bookworm' ? "Debian 12 under systemd-nspawn: the daemon sees the kernel's boot id, by-hand passes the container's" : false,
    }, async () => {
      await ok('a root process', box!.inside(['systemd-run', '--unit=root-lock-holder', '--', 'sleep', '600']));
      const holder = await waitFor("the root process's pid", 30_000, async () => {
        const pid = (await box!.show('root-lock-holder.service', ['MainPID'])).MainPID;
        return pid && pid !== '0' ? pid : undefined;
      });
      // The lock a pass of this root process would write (src/state/lock.ts: pid, start time, boot id).
      const written = await ok(
        "write a root pass's lock",
        box!.sh(
          [
            `pid=${holder}`,
            'start=$(cut -d" " -f22 /proc/$pid/stat); boot=$(cat /proc/sys/kernel/random/boot_id)',
            'printf \'{"pid":%s,"start":"%s","boot":"%s","purpose":"sync"}\\n\' "$pid" "$start" "$boot" > /var/lib/xroad-sync/root-pass.tmp',
            'for i in $(seq 100); do ln /var/lib/xroad-sync/root-pass.tmp /var/lib/xroad-sync/sync.lock 2>/dev/null && break; sleep 0.1; done',
            'rm /var/lib/xroad-sync/root-pass.tmp; cat /var/lib/xroad-sync/sync.lock',
          ].join('\n'),
        ),
      );
      const heldText = await changeMaster();
      const waiting = new RegExp(`waiting for a pass run by hand","pid":${holder}\\b`);
      const tookOver = new RegExp(`took over \\S+ from pid ${holder}\\b`);
      try {
        const log = await waitFor(
          "the daemon to wait for the root pass's lock (or take it over)",
          60_000,
          async () => {
            const j = await box!.journal('xroad-sync-daemon.service');
            return waiting.test(j) || tookOver.test(j) ? j : undefined;
          },
          async () => `lock written: ${written.stdout}\n${await box!.journal('xroad-sync-daemon.service')}`,
        );
        assert.doesNotMatch(log, tookOver, `the daemon took a live root pass's lock over\nlock written: ${written.stdout}\n${log}`);
        assert.notEqual(await targetText(), heldText, 'no pass while the lock is held');
      } finally {
        await ok('the root pass ends', box!.inside(['systemctl', 'stop', 'root-lock-holder.service']));
      }
      await waitFor(
        "the daemon to take over the dead holder's lock and sync",
        90_000,
        async () => ((await targetText()) === heldText ? true : undefined),
        () => box!.journal('xroad-sync-daemon.service'),
      );
    });

    it("the README's timer steps: at boot a pass completes before xroad-proxy.service starts", { timeout: 300_000 }, async () => {
      await ok('disable --now the daemon', box!.inside(['systemctl', 'disable', '--now', 'xroad-sync-daemon.service'], 60_000));
      await ok('the README: enable --now the timer', box!.inside(['systemctl', 'enable', '--now', 'xroad-sync.timer'], 150_000));
      await box!.stop();
      const text = await changeMaster(); // only a pass at boot can bring it
      await reboot();
      const proxy = await waitFor(
        'the stand-in proxy started',
        120_000,
        async () => {
          const p = await box!.show('xroad-proxy.service', ['ActiveState', 'ExecMainStartTimestampMonotonic']);
          return p.ActiveState === 'active' ? p : undefined;
        },
        () => box!.journal('xroad-proxy.service'),
      );
      const sync = await box!.show('xroad-sync.service', ['Result', 'ExecMainExitTimestampMonotonic', 'ExecMainStatus']);
      const startedWith = (await box!.inside(['cat', '/run/proxy-started-with'])).stdout;
      assert.equal(
        startedWith,
        text,
        `xroad-proxy started with the master's configuration\n${JSON.stringify(sync)}\n${await box!.journal('xroad-sync.service')}`,
      );
      assert.equal(sync.Result, 'success');
      assert.ok(
        Number(sync.ExecMainExitTimestampMonotonic) > 0 && Number(sync.ExecMainExitTimestampMonotonic) <= Number(proxy.ExecMainStartTimestampMonotonic),
        `the pass ended (${sync.ExecMainExitTimestampMonotonic}) before the proxy started (${proxy.ExecMainStartTimestampMonotonic})`,
      );
    });

    it('timer and daemon both enabled: the package warns, and at boot the daemon runs, the timer does not', { timeout: 300_000 }, async () => {
      await ok('enable the daemon too', box!.inside(['systemctl', 'enable', 'xroad-sync-daemon.service']));
      const deb = await buildNewDeb();
      const reinstall = await box!.inside(['apt-get', 'install', '--reinstall', '-y', `/root/${path.basename(deb)}`], 240_000, NONINTERACTIVE_ENV);
      assert.equal(reinstall.status, 0, shown('apt-get install --reinstall', reinstall));
      assert.match(reinstall.stdout + reinstall.stderr, /xroad-sync: warning: both xroad-sync\.timer and xroad-sync-daemon\.service are enabled/);
      await box!.stop();
      const text = await changeMaster();
      await reboot();
      const pid = await runningDaemon('the daemon running after boot');
      assert.equal((await box!.show('xroad-sync.timer', ['ActiveState'])).ActiveState, 'inactive', 'the daemon wins: its Conflicts= keeps the timer stopped');
      assert.equal((await box!.inside(['cat', '/run/proxy-started-with'])).stdout, text, "the daemon's boot pass ran before the proxy");
      assert.equal((await processOf(pid)).comm, 'xroad-sync');
    });
  });
}

describe('the .deb installs on Debian 11 (apt resolves its Depends from bullseye)', { timeout: 1_200_000, skip }, () => {
  it('apt-get install ./….deb in a bullseye root; the program runs there', { timeout: 1_200_000 }, async () => {
    const deb = await buildNewDeb();
    const root = path.join(work, 'root-bullseye');
    await unpackDebianRoot('bullseye', root, `xs-bullseye-${process.pid}`);
    const install = await aptInstallInRoot(root, deb);
    assert.equal(install.status, 0, shown('apt-get install on Debian 11', install));
    const v = await ok(
      'xroad-sync --version on Debian 11',
      run('systemd-nspawn', ['-q', '-D', root, '--register=no', '--keep-unit', '/usr/bin/xroad-sync', '--version'], { timeoutMs: 60_000 }),
    );
    assert.equal(v.stdout.trim(), VERSION);
  });
});
