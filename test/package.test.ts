/**
 * Packaging, end to end: the single-file bundle, the .deb (built, linted,
 * installed with dpkg, used for a real pass, removed), the RPM, and the npm
 * tarball (`npm pack`, installed into a temp prefix, `npx xroad-sync --help`).
 *
 * Each part is skipped, with the reason printed, when its tool is missing:
 * esbuild (npm ci), dpkg-deb (Debian package dpkg), lintian, rpmbuild
 * (package rpm), npm. The .deb is installed only as root (CI runs as root)
 * and only when no xroad-sync is installed already. Every child process is
 * bounded; the whole file takes well under 90 s.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { accessSync, constants as fsConstants, existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { SAMPLE_EXCLUDED, writeSampleTree } from '../src/serve/sample-tree.js';
import { obj, syncArgs, withoutPaths } from './helpers/run-sync.js';
import { makeTempDir, readTree, startMaster, type TestMaster } from './helpers/sshd.js';

/** dist/test/package.test.js → the repository root. */
const REPO = fileURLToPath(new URL('../../', import.meta.url));
const VERSION = (JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const BUNDLE = path.join(REPO, 'dist', 'bundle', 'xroad-sync.cjs');
const DEB = path.join(REPO, 'dist', 'packages', `xroad-sync_${VERSION}_all.deb`);
const RPM = path.join(REPO, 'dist', 'packages', `xroad-sync-${VERSION}-1.noarch.rpm`);
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
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd ?? REPO, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.once('error', (err) => (clearTimeout(timer), reject(new Error(`${cmd}: ${err.message}`))));
    child.once('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
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
const noBundle = haveEsbuild ? false : 'esbuild is not installed (npm ci installs it as a devDependency)';
const noDeb = noBundle || (which('dpkg-deb') ? false : 'dpkg-deb not found (Debian package dpkg)');
const noRpm = noBundle || (which('rpmbuild') ? false : 'rpmbuild not found (Debian package rpm)');
const noNpm = which('npm') ? false : 'npm not found';

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
  async function passWith(cmd: string, prefix: string[]): Promise<void> {
    const n = ++passNo;
    const target = path.join(work, `target-${n}`);
    const stateDir = path.join(work, `state-${n}`);
    await fs.mkdir(target);
    await fs.mkdir(stateDir);
    const env = { ...process.env };
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
    const notices = await fs.readFile(path.join(REPO, 'dist', 'bundle', 'THIRD-PARTY-LICENSES.txt'), 'utf8');
    for (const dep of ['ssh2', 'chokidar', 'commander', 'pino']) assert.match(notices, new RegExp(`^  ${dep} \\d`, 'm'));
    // The demo from the lone bundle: the embedded master (ssh2's server side) and every command, bundled.
    const demo = await run(process.execPath, [lone, 'demo'], { cwd: path.dirname(lone), timeoutMs: 45_000 });
    assert.equal(demo.status, 0, describeRunOf('demo', demo));
    assert.match(demo.stdout, /^demo finished in [\d.]+ s$/m);
    t.diagnostic(demo.stdout.trim().split('\n').at(-1)!);
  });

  it('.deb: build, lintian, dpkg -i, --version, a pass with /usr/bin/xroad-sync, dpkg -r, dpkg -P', { ...T, skip: noDeb }, async (t) => {
    const built = await ok('build-deb.sh', run('bash', ['scripts/build-deb.sh'], { env: { ...process.env, LINTIAN: 'no' }, timeoutMs: 90_000 }));
    t.diagnostic(built.stdout.trim().split('\n').at(-5) ?? '');
    const info = await ok('dpkg-deb --info', run('dpkg-deb', ['--info', DEB]));
    assert.match(info.stdout, /^ Package: xroad-sync$/m);
    assert.match(info.stdout, /^ Architecture: all$/m);
    assert.match(info.stdout, /^ Depends: nodejs \(>= 20\)$/m);
    const contents = (await ok('dpkg-deb -c', run('dpkg-deb', ['-c', DEB]))).stdout;
    for (const f of [
      './usr/bin/xroad-sync',
      './lib/systemd/system/xroad-sync.service',
      './lib/systemd/system/xroad-sync.timer',
      './lib/systemd/system/xroad-sync-daemon.service',
      './etc/logrotate.d/xroad-slave-sync',
      './etc/default/xroad-sync',
      './usr/share/doc/xroad-sync/copyright',
      './usr/share/doc/xroad-sync/changelog.gz',
      './usr/share/doc/xroad-sync/examples/xroad-sync.cron',
      './usr/share/doc/xroad-sync/examples/sshd_config.d-xroad-slave.conf',
    ]) {
      assert.match(contents, new RegExp(` root/root .* ${f.replace(/[.]/g, '\\.')}$`, 'm'), `${f} in the .deb, owned by root`);
    }
    assert.match(contents, /^-rwxr-xr-x root\/root .* \.\/usr\/bin\/xroad-sync$/m);
    assert.doesNotMatch(contents, /\/etc\/cron\.d\//, 'the cron file is only an example');

    const lintian = which('lintian');
    if (!lintian) {
      t.diagnostic('lintian not found (Debian package lintian): not checked');
    } else {
      const l = await run(lintian, ['--tag-display-limit', '0', DEB], { timeoutMs: 90_000 });
      const lines = (l.stdout + l.stderr).split('\n');
      const errors = lines.filter((x) => x.startsWith('E:'));
      for (const w of lines.filter((x) => x.startsWith('W:'))) t.diagnostic(`lintian ${w}`);
      assert.deepEqual(errors, [], `lintian errors:\n${l.stdout}${l.stderr}`);
      assert.notEqual(l.signal, 'SIGKILL', 'lintian timed out');
    }

    // Installing needs root, and must not clobber an xroad-sync the host already has.
    const skipInstall = !isRoot
      ? 'not root: dpkg -i skipped'
      : (await run('dpkg-query', ['-W', '-f=${Status}', 'xroad-sync'])).stdout.includes('installed')
        ? 'xroad-sync is already installed on this host: dpkg -i skipped'
        : existsSync(INSTALLED)
          ? `${INSTALLED} exists (not from dpkg): dpkg -i skipped`
          : false;
    if (skipInstall) {
      t.diagnostic(skipInstall);
      return;
    }
    const dpkgArgs = ['-i'];
    if (!(await nodejsPackageSatisfies())) {
      // e.g. node from a tarball or nvm: the Depends cannot be met by dpkg, the binary can still be tried.
      t.diagnostic('no Debian package nodejs (>= 20) installed: dpkg -i --force-depends');
      dpkgArgs.unshift('--force-depends');
    }
    t.after(async () => {
      await run('dpkg', ['--purge', '--force-depends', 'xroad-sync'], { timeoutMs: 60_000 });
    });
    await ok('dpkg -i', run('dpkg', [...dpkgArgs, DEB], { timeoutMs: 60_000 }));
    const conffiles = (await ok('dpkg-query', run('dpkg-query', ['-W', '-f=${Conffiles}', 'xroad-sync']))).stdout;
    assert.match(conffiles, /\/etc\/default\/xroad-sync [0-9a-f]{32}/);
    assert.match(conffiles, /\/etc\/logrotate\.d\/xroad-slave-sync [0-9a-f]{32}/);
    // Run the installed program itself: its #!/usr/bin/env node line, its mode, no node_modules.
    const v = await ok(`${INSTALLED} --version`, run(INSTALLED, ['--version'], { cwd: '/' }));
    assert.equal(v.stdout.trim(), VERSION);
    await passWith(INSTALLED, []);

    await ok('dpkg -r', run('dpkg', ['-r', 'xroad-sync'], { timeoutMs: 60_000 }));
    assert.equal(existsSync(INSTALLED), false, 'dpkg -r removes the program');
    assert.equal(existsSync('/lib/systemd/system/xroad-sync.service'), false, 'dpkg -r removes the units');
    assert.equal(existsSync('/etc/default/xroad-sync'), true, 'dpkg -r keeps the conffile');
    await ok('dpkg -P', run('dpkg', ['--purge', 'xroad-sync'], { timeoutMs: 60_000 }));
    assert.equal(existsSync('/etc/default/xroad-sync'), false, 'dpkg -P removes the conffile');
  });

  it('RPM: rpmbuild from the same bundle; files, %config(noreplace), the program runs', { ...T, skip: noRpm }, async (t) => {
    await ok('build-rpm.sh', run('bash', ['scripts/build-rpm.sh'], { timeoutMs: 90_000 }));
    const files = (await ok('rpm -qlp', run('rpm', ['-qlp', RPM]))).stdout.split('\n');
    for (const f of [
      '/usr/bin/xroad-sync',
      '/usr/lib/systemd/system/xroad-sync.service',
      '/usr/lib/systemd/system/xroad-sync.timer',
      '/usr/lib/systemd/system/xroad-sync-daemon.service',
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
    assert.match(requires, /^nodejs >= 1:20$/m);

    // Unpack the payload and run the program from it.
    const rpm2cpio = which('rpm2cpio');
    const cpio = which('cpio');
    if (!rpm2cpio || !cpio) {
      t.diagnostic('rpm2cpio or cpio not found: the payload was not run');
      return;
    }
    const root = path.join(work, 'rpm-root');
    await fs.mkdir(root);
    await ok('rpm2cpio | cpio', run('sh', ['-c', `"${rpm2cpio}" "${RPM}" | "${cpio}" -idm --quiet`], { cwd: root }));
    const v = await ok('--version', run(process.execPath, [path.join(root, 'usr/bin/xroad-sync'), '--version']));
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
    for (const f of ['package.json', 'README.md', 'dist/src/cli/main.js', 'dist/src/cli/serve-command.js', 'dist/src/serve/sample-tree.js', 'service/sshd_config.d-xroad-slave.conf']) {
      assert.ok(names.includes(f), `${f} in the tarball`);
    }
    assert.equal(names.filter((f) => f.startsWith('dist/test/') || f.startsWith('test/') || f.startsWith('node_modules/')).length, 0, 'no tests or node_modules in the tarball');
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
      t.diagnostic(`npm install --offline failed (exit ${install.status}: ${why}); installing the extracted tarball with the repository's node_modules instead`);
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

/** Whether dpkg knows a nodejs package >= 20 (what the .deb's Depends asks for). */
async function nodejsPackageSatisfies(): Promise<boolean> {
  const q = await run('dpkg-query', ['-W', '-f=${Status} ${Version}', 'nodejs']).catch(() => null);
  if (!q || q.status !== 0 || !q.stdout.startsWith('install ok installed')) return false;
  const version = q.stdout.split(' ').at(-1)!;
  return (await run('dpkg', ['--compare-versions', version, 'ge', '20'])).status === 0;
}

