/**
 * The pure pieces behind the settings file and the by-hand commands: systemd EnvironmentFile= parsing and
 * $VAR word splitting, the one duration parser, lock holder identity, and
 * the one exit-code table (errors.ts) that --help and docs/operations.md show.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EXIT_CODE_TABLE, ExitCode, exitCodeMarkdown, exitCodeOf, LockHeldError } from '../../src/errors.js';
import { environmentOf, parseEnvironmentFile, splitWords } from '../../src/settings/env-file.js';
import { holderIsLive, parseHolder } from '../../src/state/lock.js';
import { durationOption, parseDurationMs } from '../../src/util/duration.js';
import { runCli } from '../helpers/cli.js';

const env = (text: string) => Object.fromEntries(environmentOf(parseEnvironmentFile(text).entries));

test('EnvironmentFile= rules: comments, whitespace, quotes, escapes, continuation lines, invalid names ignored', () => {
  assert.deepEqual(env('# comment\n; also a comment\n\nMASTER=primary.example\n'), { MASTER: 'primary.example' });
  assert.deepEqual(env('  KEY  =   value with  inner   space   \n'), { KEY: 'value with  inner   space' });
  assert.deepEqual(env('A="quoted # not a comment"\nB=\'single $x \\n\'\n'), { A: 'quoted # not a comment', B: 'single $x \\n' });
  assert.deepEqual(env('A="say \\"hi\\" \\$HOME \\\\ \\n"\n'), { A: 'say "hi" $HOME \\ \\n' });
  assert.deepEqual(env('A=one\\\ntwo\nB="x\\\ny"\n'), { A: 'onetwo', B: 'xy' });
  assert.deepEqual(env("A='multi\nline'\n"), { A: 'multi\nline' });
  assert.deepEqual(env('A=plain"quotes"kept\nB="a"b\n'), { A: 'plain"quotes"kept', B: 'ab' });
  assert.deepEqual(env('A=\\ lead\nEMPTY=\nQ=""\n'), { A: ' lead', EMPTY: '', Q: '' });
  assert.deepEqual(env('export MASTER=x\nNOEQUALS\n1BAD=y\nOK=z'), { OK: 'z' }, 'systemd ignores `export X=`, lines without = and invalid names');
  assert.deepEqual(env('A=1\nA=2\n'), { A: '2' }, 'later assignments win');
  assert.deepEqual(env('A=x\r\nB=y\r\n'), { A: 'x', B: 'y' });
});

test('the shipped service/xroad-sync.default parses to the variables the units use', () => {
  const text = readFileSync(fileURLToPath(new URL('../../../service/xroad-sync.default', import.meta.url)), 'utf8');
  const vars = env(text);
  assert.deepEqual(Object.keys(vars).sort(), ['MASTER', 'XROAD_SYNC_DAEMON_OPTS', 'XROAD_SYNC_OPTS', 'XROAD_USER']);
  assert.equal(vars.XROAD_USER, 'xroad-slave');
  assert.equal(vars.XROAD_SYNC_OPTS, '');
});

test('$XROAD_SYNC_OPTS splits like an unquoted $VAR in ExecStart=: whitespace, quotes, backslashes', () => {
  assert.deepEqual(splitWords(''), []);
  assert.deepEqual(splitWords('  --identity /k   --timeout 5\t'), ['--identity', '/k', '--timeout', '5']);
  assert.deepEqual(splitWords(`--exclude "/a b" --exclude '/c "d"' x\\ y`), ['--exclude', '/a b', '--exclude', '/c "d"', 'x y']);
  assert.deepEqual(splitWords('--on-change ""'), ['--on-change', '']);
});

test('durations: plain seconds and s/m/h suffixes; anything else is undefined, never NaN', () => {
  for (const [text, ms] of [
    ['300', 300_000],
    ['0.5', 500],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1h30m', 5_400_000],
    [' 2M ', 120_000],
    ['1.5m', 90_000],
  ] as const) {
    assert.equal(parseDurationMs(text), ms, text);
  }
  for (const bad of ['', '5x', 'abc', '-5', 'NaN', 'Infinity', '5 m', 'm', '1e3', '5ms', '1d']) assert.equal(parseDurationMs(bad), undefined, `"${bad}"`);
  assert.throws(() => durationOption('5x', '--max-age', { minMs: 1000, maxMs: 10_000 }), /--max-age must be a duration .* got "5x"/);
  assert.throws(() => durationOption('0', '--timeout', { minMs: 100, maxMs: 10_000 }), /--timeout/);
  assert.equal(durationOption(5, '--timeout', { minMs: 100, maxMs: 10_000 }), 5000);
});

test('lock holders: this process is live; a wrong start time, another boot or a dead pid is not; old-format locks count only for xroad-sync', async () => {
  const stat = readFileSync(`/proc/${process.pid}/stat`, 'utf8');
  const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
  const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  assert.ok(holderIsLive({ pid: process.pid, start, boot, purpose: 'sync' }));
  assert.equal(holderIsLive({ pid: process.pid, start: String(Number(start) + 1), boot, purpose: 'sync' }), false, 'pid reused by another process');
  assert.equal(holderIsLive({ pid: process.pid, start, boot: '00000000-0000-0000-0000-000000000000', purpose: 'sync' }), false, 'before a reboot');
  const child = spawn('sleep', ['5'], { stdio: 'ignore' });
  try {
    assert.equal(holderIsLive(parseHolder(`${child.pid}\nsync\n`)!), false, 'an old-format lock naming a process that is not xroad-sync');
  } finally {
    child.kill('SIGKILL');
  }
  await new Promise((resolve) => child.once('exit', resolve));
  assert.equal(holderIsLive({ pid: child.pid!, purpose: 'sync' }), false, 'a dead pid');
  assert.equal(parseHolder('garbage'), undefined);
  assert.deepEqual(parseHolder(JSON.stringify({ pid: 42, start: '7', boot: 'b', purpose: 'daemon' })), {
    pid: 42,
    start: '7',
    boot: 'b',
    purpose: 'daemon',
    since: undefined,
  });
});

test('one exit-code table: --help and docs/operations.md show exactly the rows of errors.ts; unknown errors are not 11', async () => {
  const operations = readFileSync(fileURLToPath(new URL('../../../docs/operations.md', import.meta.url)), 'utf8');
  assert.ok(operations.includes(exitCodeMarkdown()), `docs/operations.md "Exit codes" must hold exactly:\n${exitCodeMarkdown()}`);
  const help = await runCli(['--help']);
  for (const row of EXIT_CODE_TABLE) assert.match(help.stdout, new RegExp(`^ +${row.code}  ${row.meaning.replace(/[()]/g, '\\$&')}$`, 'm'));
  assert.equal(exitCodeOf(new TypeError('x is undefined')), ExitCode.INTERNAL);
  assert.notEqual(ExitCode.INTERNAL, ExitCode.LOCAL_IO);
  assert.equal(exitCodeOf(Object.assign(new Error('ENOSPC: no space left'), { code: 'ENOSPC', syscall: 'write' })), ExitCode.LOCAL_IO);
  assert.equal(exitCodeOf(new LockHeldError('held')), 75);
});

test('precedence: flag > environment > settings file (XROAD_SYNC_OPTS over MASTER) > default; origins name the source', async () => {
  const { Command } = await import('commander');
  const { addPassOptions, addSettingsOption, addWaitOption } = await import('../../src/cli/options.js');
  const { applySettings } = await import('../../src/cli/settings.js');
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const dir = mkdtempSync('/tmp/xroad-sync-settings-');
  try {
    const file = `${dir}/xroad-sync`;
    writeFileSync(file, 'MASTER=from-file\nXROAD_USER=file-user\nXROAD_SYNC_OPTS="--timeout 7 --target \'/t dir\' --state-dir /from-opts"\n');
    const parse = (args: string[], env: NodeJS.ProcessEnv) => {
      const cmd = addSettingsOption(addWaitOption(addPassOptions(new Command('sync')))).exitOverride();
      // commander reads MASTER/XROAD_USER from process.env while parsing
      const saved = { MASTER: process.env.MASTER, XROAD_USER: process.env.XROAD_USER };
      Object.assign(process.env, { MASTER: env.MASTER, XROAD_USER: env.XROAD_USER });
      for (const k of ['MASTER', 'XROAD_USER'] as const) if (env[k] === undefined) delete process.env[k];
      try {
        cmd.parse(args, { from: 'user' });
      } finally {
        for (const k of ['MASTER', 'XROAD_USER'] as const)
          if (saved[k] === undefined) delete process.env[k];
          else process.env[k] = saved[k];
      }
      const origins = applySettings(cmd, { ...env, XROAD_SYNC_SETTINGS: file });
      return { opts: cmd.opts(), origins };
    };
    let r = parse([], {});
    assert.equal(r.opts.master, 'from-file');
    assert.equal(r.origins.get('master'), `MASTER in ${file}`);
    assert.equal(r.opts.user, 'file-user');
    assert.equal(r.opts.timeout, '7');
    assert.equal(r.opts.target, '/t dir');
    assert.equal(r.origins.get('timeout'), `XROAD_SYNC_OPTS in ${file}`);
    assert.equal(r.origins.get('port'), 'default');

    r = parse(['--timeout', '3'], { MASTER: 'from-env', XROAD_SYNC_OPTS: '--state-dir /from-env-opts' });
    assert.equal(r.opts.master, 'from-env');
    assert.equal(r.origins.get('master'), 'environment MASTER');
    assert.equal(r.opts.timeout, '3');
    assert.equal(r.origins.get('timeout'), 'flag');
    assert.equal(r.opts.stateDir, '/from-env-opts', 'XROAD_SYNC_OPTS in the environment beats the file');
    assert.equal(r.opts.target, '/t dir');

    writeFileSync(file, 'XROAD_SYNC_OPTS="--master opts-master --interval 5"\nMASTER=var-master\n');
    assert.throws(() => parse([], {}), /XROAD_SYNC_OPTS in .*unknown option '--interval'/);
    writeFileSync(file, 'XROAD_SYNC_OPTS="--master opts-master"\nMASTER=var-master\n');
    assert.equal(parse([], {}).opts.master, 'opts-master', 'as in ExecStart=: the flags in XROAD_SYNC_OPTS beat MASTER=');

    // Settings read by name (the serverconf replica's) reach their module through the environment; the environment wins.
    writeFileSync(file, 'MASTER=m\nSERVERCONF_REPLICA=yes\nSERVERCONF_PORT=5444\nXROAD_SYNC_LOG_LEVEL=debug\nOTHER=x\n');
    const cmd = addSettingsOption(addWaitOption(addPassOptions(new Command('sync')))).exitOverride();
    cmd.parse([], { from: 'user' });
    const exported: NodeJS.ProcessEnv = { SERVERCONF_PORT: '5499', XROAD_SYNC_SETTINGS: file };
    applySettings(cmd, exported);
    assert.equal(exported.SERVERCONF_REPLICA, 'yes');
    assert.equal(exported.SERVERCONF_PORT, '5499');
    assert.equal(exported.XROAD_SYNC_LOG_LEVEL, 'debug', 'the log level reaches by-hand commands and the cron job, as the units export it');
    assert.equal(exported.OTHER, undefined, 'only the names xroad-sync reads');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('repeatable options add up across flag, environment and settings file; each value once, with every origin', async () => {
  const { Command } = await import('commander');
  const { addIntervalOption, addPassOptions, addSettingsOption, addWaitOption } = await import('../../src/cli/options.js');
  const { applySettings } = await import('../../src/cli/settings.js');
  const { resolvePassSettings } = await import('../../src/settings/pass-settings.js');
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const dir = mkdtempSync('/tmp/xroad-sync-settings-');
  try {
    const file = `${dir}/xroad-sync`;
    writeFileSync(
      file,
      'MASTER=m\nXROAD_SYNC_OPTS="--exclude /file-a --exclude \'/both b\' --timeout 7"\nXROAD_SYNC_DAEMON_OPTS="--exclude /daemon-c --timeout 9"\n',
    );
    const parse = (name: string, args: string[], env: NodeJS.ProcessEnv = {}) => {
      const cmd = addSettingsOption(addWaitOption(addPassOptions(name === 'daemon' ? addIntervalOption(new Command(name)) : new Command(name)))).exitOverride();
      cmd.parse(args, { from: 'user' });
      const origins = applySettings(cmd, { ...env, XROAD_SYNC_SETTINGS: file });
      return { opts: cmd.opts(), origins };
    };
    const from = (origins: ReturnType<typeof parse>['origins']) =>
      Object.fromEntries((origins.items.get('exclude') ?? []).map((i) => [i.value, i.from.join(' + ')]));

    let r = parse('sync', ['--exclude', '*.bak', '--exclude', '/both b']);
    assert.deepEqual(r.opts.exclude, ['*.bak', '/both b', '/file-a']);
    assert.deepEqual(from(r.origins), { '*.bak': 'flag', '/both b': `flag + XROAD_SYNC_OPTS in ${file}`, '/file-a': `XROAD_SYNC_OPTS in ${file}` });
    assert.equal(r.opts.timeout, '7', 'a single-valued option still takes the highest layer');
    const settings = resolvePassSettings(r.opts);
    for (const p of ['db.properties', '*.bak', '/both b', '/file-a']) assert.ok(settings.excludes.includes(p), `${p} is an effective exclude`);

    r = parse('sync', [], { XROAD_SYNC_OPTS: '--exclude /env-d' });
    assert.deepEqual(r.opts.exclude, ['/env-d', '/file-a', '/both b'], 'the environment adds to the file, not instead of it');

    r = parse('daemon', ['--exclude', '*.bak']);
    assert.deepEqual(r.opts.exclude, ['*.bak', '/daemon-c', '/file-a', '/both b'], 'as the daemon unit passes $XROAD_SYNC_OPTS $XROAD_SYNC_DAEMON_OPTS');
    assert.equal(r.opts.timeout, '9', 'XROAD_SYNC_DAEMON_OPTS wins for a single-valued option, as it comes last in ExecStart=');

    // The defaults stay unless --no-default-excludes says otherwise, in any layer.
    writeFileSync(file, 'MASTER=m\nXROAD_SYNC_OPTS="--no-default-excludes --exclude /only"\n');
    r = parse('sync', ['--exclude', '*.bak']);
    assert.deepEqual(resolvePassSettings(r.opts).excludes, ['*.bak', '/only']);
    assert.equal(r.origins.get('defaultExcludes'), `XROAD_SYNC_OPTS in ${file}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pass lock: 12 contenders at once take it one at a time, each waiting its turn; a stale lock is taken over with one notice', async () => {
  const { acquireLock } = await import('../../src/state/lock.js');
  const { mkdtempSync, rmSync, writeFileSync, existsSync } = await import('node:fs');
  const dir = mkdtempSync('/tmp/xroad-sync-lock-');
  try {
    let inside = 0;
    let most = 0;
    await Promise.all(
      Array.from({ length: 12 }, async () => {
        const lock = await acquireLock(dir, 'sync', { waitMs: 20_000 });
        most = Math.max(most, ++inside);
        await new Promise((r) => setTimeout(r, 10));
        inside--;
        await lock.release();
      }),
    );
    assert.equal(most, 1, 'two contenders held the lock at once');
    assert.equal(existsSync(`${dir}/sync.lock`), false);

    writeFileSync(`${dir}/sync.lock`, JSON.stringify({ pid: process.pid, start: '1', boot: 'x', purpose: 'sync' }));
    const notices: string[] = [];
    const lock = await acquireLock(dir, 'sync', { waitMs: 0, onTakeover: (n) => notices.push(n) });
    await lock.release();
    assert.equal(notices.length, 1, notices.join('\n'));
    assert.match(notices[0]!, /took over .*sync\.lock from pid \d+/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
