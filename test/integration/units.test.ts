// Checks the files in service/: the systemd units (systemd-analyze verify and an
// offline security score), the logrotate snippet (logrotate -d) and the cron.d file
// (parsed, syntax-checked with /bin/sh -n, then run against stubs).
//
// External tools: systemd-analyze (Debian package "systemd"), logrotate (package
// "logrotate"), flock (util-linux). A test whose tool is missing is skipped and
// prints the reason. CI installs them, so a skip there is a CI setup problem.

import assert from 'node:assert/strict';
import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { accessSync, chmodSync, existsSync, constants as fsConstants, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { skipOrFailInCI } from '../helpers/components.js';

// dist/test/units.test.js -> <repo>/service/
const SERVICE_DIR = fileURLToPath(new URL('../../../service/', import.meta.url));
const UNIT_FILES = ['xroad-sync.service', 'xroad-sync.timer', 'xroad-sync-daemon.service'] as const;
const PROGRAM = '/usr/bin/xroad-sync';
const FLAG_FILE = '/var/tmp/xroad/sync-disabled';

function readService(name: string): string {
  return readFileSync(path.join(SERVICE_DIR, name), 'utf8');
}

/** Finds an executable in PATH plus the sbin directories, which a non-root PATH often lacks. */
function which(cmd: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = path.join(dir, cmd);
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // try the next directory
    }
  }
  return undefined;
}

function tempDir(t: TestContext, prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `xroad-sync-${prefix}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, input?: string): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, input, timeout: 60_000 });
  if (r.error) throw r.error;
  return r;
}

/** Reads every "Key=value" assignment of a unit file (comments and sections dropped; no line continuations used). */
function directives(unitText: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const raw of unitText.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';') || line.startsWith('[')) continue;
    const eq = line.indexOf('=');
    if (eq > 0) out.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return out;
}
function values(unitText: string, key: string): string[] {
  return directives(unitText)
    .filter(([k]) => k === key)
    .map(([, v]) => v);
}

// ---------------------------------------------------------------------------
// systemd-analyze verify
// ---------------------------------------------------------------------------

const SYSTEMD_ANALYZE = which('systemd-analyze');
const TRUE_BIN = which('true') ?? '/bin/true';

// Warnings from our own units that are accepted:
//  - missing units that are only ordering/install targets (the X-Road services do not exist on a build host);
//  - hardening directives newer than the local systemd (older systemd ignores them: "Unknown key").
const ACCEPTED: RegExp[] = [
  /\bxroad-(proxy|signer|confclient|proxy-ui-api|jetty)\.service\b.*\bnot found\b/i,
  /Unknown (key name|key|lvalue) '(ProtectKernelLogs|ProtectClock|ProtectHostname|RestrictSUIDSGID)'/,
];

interface VerifyResult {
  status: number | null;
  output: string;
  /** Lines about our unit files that are not in ACCEPTED. */
  problems: string[];
  accepted: string[];
  /** Lines about other units or the environment (printed for information, not fatal). */
  foreign: string[];
}

let analyzeHelp: string | undefined;
function analyzeSupports(option: string): boolean {
  if (!SYSTEMD_ANALYZE) return false;
  analyzeHelp ??= run(SYSTEMD_ANALYZE, ['--help']).stdout;
  return analyzeHelp.includes(option);
}

/**
 * Copies the units into a temp dir, replacing /usr/bin/xroad-sync (not installed here) with an
 * existing executable so that "Command ... is not executable" does not hide real problems.
 * `mutate` can corrupt a copy to prove that the check catches errors.
 */
function stageUnits(dir: string, mutate: (name: string, text: string) => string = (_n, s) => s): string[] {
  return UNIT_FILES.map((name) => {
    const text = readService(name).split(PROGRAM).join(TRUE_BIN);
    const file = path.join(dir, name);
    writeFileSync(file, mutate(name, text));
    return file;
  });
}

function verify(dir: string, files: string[]): VerifyResult {
  assert.ok(SYSTEMD_ANALYZE);
  const args = ['verify'];
  // "no": report problems of the given units only, not of every unit they pull in.
  if (analyzeSupports('--recursive-errors')) args.push('--recursive-errors=no');
  if (analyzeSupports('--man')) args.push('--man=no');
  args.push(...files);
  const r = run(SYSTEMD_ANALYZE, args, {
    ...process.env,
    SYSTEMD_LOG_LEVEL: 'warning',
    SYSTEMD_LOG_COLOR: '0',
    SYSTEMD_PAGER: 'cat',
    LC_ALL: 'C',
  });
  const output = `${r.stdout}${r.stderr}`;
  const ours = new RegExp(`(${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}|^(${UNIT_FILES.join('|').replace(/\./g, '\\.')})\\b)`);
  const res: VerifyResult = { status: r.status, output, problems: [], accepted: [], foreign: [] };
  for (const line of output.split('\n').map((l) => l.trimEnd())) {
    if (!line) continue;
    if (!ours.test(line)) res.foreign.push(line);
    else if (ACCEPTED.some((re) => re.test(line))) res.accepted.push(line);
    else res.problems.push(line);
  }
  // A non-zero exit without any line we could attribute is a failure too (unless explained by accepted lines).
  if (r.status !== 0 && res.problems.length === 0 && res.accepted.length === 0) {
    res.problems.push(`systemd-analyze verify exited with ${r.status}: ${output.trim() || '(no output)'}`);
  }
  return res;
}

test('systemd units pass systemd-analyze verify', (t) => {
  if (!SYSTEMD_ANALYZE) {
    skipOrFailInCI(t, 'systemd-analyze not found (Debian package "systemd")');
    return;
  }
  const dir = tempDir(t, 'units');
  const res = verify(dir, stageUnits(dir));
  for (const l of res.foreign) t.diagnostic(`ignored (not our unit): ${l}`);
  for (const l of res.accepted) t.diagnostic(`accepted: ${l}`);
  assert.deepEqual(res.problems, [], `systemd-analyze verify reported:\n${res.output}`);
});

test('systemd-analyze verify catches broken copies of the units', (t) => {
  if (!SYSTEMD_ANALYZE) {
    skipOrFailInCI(t, 'systemd-analyze not found (Debian package "systemd")');
    return;
  }
  const dir = tempDir(t, 'units-broken');
  // [original line, corrupted line, token the report must mention]
  const broken: Record<string, [string, string, string]> = {
    'xroad-sync.service': ['Type=oneshot', 'Type=oneshoot', 'oneshoot'], // bad value
    'xroad-sync-daemon.service': ['ProtectSystem=strict', 'ProtectSystem=bogus', 'bogus'], // bad value
    'xroad-sync.timer': ['OnUnitActiveSec=60', 'OnUnitActivSec=60', 'OnUnitActivSec'], // unknown key
  };
  const files = stageUnits(dir, (name, text) => {
    const [from, to] = broken[name]!;
    assert.ok(text.includes(`\n${from}\n`), `${name} should contain ${from}`);
    return text.replace(`\n${from}\n`, `\n${to}\n`);
  });
  const res = verify(dir, files);
  t.diagnostic(`systemd-analyze verify on broken copies (exit ${res.status}):`);
  for (const l of res.output.trim().split('\n')) t.diagnostic(`  ${l}`);
  for (const [name, [, to, token]] of Object.entries(broken)) {
    assert.ok(
      res.problems.some((l) => l.includes(name) && l.includes(token)),
      `expected a reported problem for ${name} (${to}); got:\n${res.problems.join('\n')}`,
    );
  }
});

test('systemd units keep their sandboxing (systemd-analyze security --offline)', (t) => {
  if (!SYSTEMD_ANALYZE || !analyzeSupports('--offline') || !analyzeSupports('--threshold')) {
    t.skip('systemd-analyze without "security --offline/--threshold" (needs systemd >= 250)');
    return;
  }
  const dir = tempDir(t, 'units-security');
  const files = stageUnits(dir);
  for (const file of files.filter((f) => f.endsWith('.service'))) {
    // Exposure is printed as 0.0-10.0; --threshold is in tenths. Currently 2.0 ("OK").
    const r = run(SYSTEMD_ANALYZE, ['security', '--offline=true', '--threshold=40', '--no-pager', file], {
      ...process.env,
      SYSTEMD_LOG_COLOR: '0',
      SYSTEMD_PAGER: 'cat',
      LC_ALL: 'C',
    });
    const summary = `${r.stdout}${r.stderr}`.split('\n').find((l) => l.includes('Overall exposure level')) ?? '';
    t.diagnostic(summary.trim());
    assert.equal(r.status, 0, `${path.basename(file)}: exposure above 4.0\n${r.stdout}${r.stderr}`);
  }
});

test("unit policy: pause via Condition, flag file seen by path in the host's /var/tmp, one-or-the-other", () => {
  const oneshot = readService('xroad-sync.service');
  const daemon = readService('xroad-sync-daemon.service');
  const timer = readService('xroad-sync.timer');

  assert.deepEqual(values(oneshot, 'ConditionPathExists'), [`!${FLAG_FILE}`]);
  assert.ok(!values(oneshot, 'ExecStartPre').some((v) => v.includes('test')), 'no ExecStartPre=test (fails the unit)');
  assert.deepEqual(values(oneshot, 'Type'), ['oneshot']);
  assert.deepEqual(values(oneshot, 'ExecStart'), [`${PROGRAM} sync $XROAD_SYNC_OPTS`]);
  for (const b of ['xroad-proxy', 'xroad-signer', 'xroad-confclient', 'xroad-proxy-ui-api', 'xroad-jetty']) {
    assert.ok(values(oneshot, 'Before').includes(`${b}.service`), `Before=${b}.service`);
  }
  assert.deepEqual(values(oneshot, 'WantedBy').sort(), ['multi-user.target', 'xroad-proxy.service']);

  assert.deepEqual(values(timer, 'OnBootSec'), ['60']);
  assert.deepEqual(values(timer, 'OnUnitActiveSec'), ['60']);
  assert.deepEqual(values(timer, 'RandomizedDelaySec'), ['10'], 'slaves started together must not reach the master in one instant');
  assert.deepEqual(values(timer, 'WantedBy'), ['timers.target']);
  assert.deepEqual(values(timer, 'Also'), ['xroad-sync.service'], 'enabling the timer enables the boot pass before xroad-proxy');

  assert.ok(values(daemon, 'ExecStart')[0]!.startsWith(`${PROGRAM} daemon $XROAD_SYNC_OPTS`));
  // Started means the first pass ended (READY=1), so Before= orders a finished pass without an ExecStartPre pass;
  // the messages come from systemd-notify, a child (NotifyAccess=all); a hung event loop is restarted.
  assert.deepEqual(values(daemon, 'Type'), ['notify']);
  assert.deepEqual(values(daemon, 'NotifyAccess'), ['all']);
  assert.equal(values(daemon, 'WatchdogSec').length, 1, 'WatchdogSec=');
  assert.deepEqual(values(daemon, 'ExecStartPre'), [], "no second pass before the daemon's first");
  assert.ok(values(daemon, 'Restart').includes('on-failure'), 'a watchdog kill is restarted');
  assert.deepEqual(values(daemon, 'ExecReload'), ['/bin/kill -HUP $MAINPID']);
  assert.deepEqual(values(daemon, 'Conflicts').join(' ').split(/\s+/).sort(), ['xroad-sync.service', 'xroad-sync.timer']);
  assert.equal(values(daemon, 'ConditionPathExists').length, 0, 'the daemon must keep running while paused');
  assert.deepEqual(values(daemon, 'Environment'), ['MALLOC_ARENA_MAX=2'], 'the daemon caps glibc malloc arenas (docs/performance.md, Daemon memory)');

  for (const [name, text] of [
    ['xroad-sync.service', oneshot],
    ['xroad-sync-daemon.service', daemon],
  ] as const) {
    for (const f of ['/etc/default/xroad-sync', '/etc/sysconfig/xroad-sync']) {
      assert.ok(values(text, 'EnvironmentFile').includes(`-${f}`), `${name}: EnvironmentFile=-${f}`);
    }
    assert.deepEqual(values(text, 'User'), ['xroad']);
    assert.deepEqual(values(text, 'ProtectSystem'), ['strict']);
    // The flag file is looked up by path in the host's /var/tmp: a private /var/tmp hides it, and a
    // bind of /var/tmp/xroad pins the directory as it was at start (once it is replaced, a pause never
    // arrives; while it is missing, the start fails with 226/NAMESPACE).
    assert.ok(!values(text, 'PrivateTmp').includes('yes'), `${name}: PrivateTmp=yes hides /var/tmp/xroad`);
    assert.ok(!values(text, 'TemporaryFileSystem').join(' ').includes('/var/tmp'), `${name}: a private /var/tmp`);
    const binds = [...values(text, 'BindPaths'), ...values(text, 'BindReadOnlyPaths'), ...values(text, 'ReadWritePaths')].join(' ');
    assert.ok(!binds.includes('/var/tmp'), `${name}: /var/tmp bound or listed (pins the flag directory)`);
    const rw = values(text, 'ReadWritePaths').join(' ').split(/\s+/);
    assert.ok(rw.includes('/etc/xroad') && rw.includes('/var/log/xroad'), `${name}: ReadWritePaths`);
    assert.deepEqual(values(text, 'StateDirectory'), ['xroad-sync']);
    assert.ok(!values(text, 'MemoryDenyWriteExecute').includes('yes'), `${name}: MDWE breaks the V8 JIT`);
    assert.equal(values(text, 'LogsDirectory').length, 0, `${name}: LogsDirectory would chown /var/log/xroad`);
  }
});

// ---------------------------------------------------------------------------
// logrotate
// ---------------------------------------------------------------------------

const LOGROTATE = which('logrotate');

function groupName(): string {
  const r = spawnSync('id', ['-gn'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : String(userInfo().gid);
}

/** The snippet rewritten to a temp log; `su` set to the current user (or dropped). */
function stageLogrotate(dir: string, su: string | null): { conf: string; state: string; logDir: string } {
  const logDir = path.join(dir, 'log');
  mkdirSync(logDir);
  writeFileSync(path.join(logDir, 'slave-sync.log'), 'line\n');
  const text = readService('logrotate');
  assert.ok(text.includes('/var/log/xroad/slave-sync.log {'), 'snippet names the guide log');
  assert.match(text, /^\s*su xroad xroad$/m);
  const staged = text
    .replace('/var/log/xroad/slave-sync.log', path.join(logDir, 'slave-sync.log'))
    .replace(/^(\s*)su xroad xroad$/m, su === null ? '' : `$1su ${su}`);
  const conf = path.join(dir, 'xroad-slave-sync');
  writeFileSync(conf, staged, { mode: 0o644 });
  return { conf, state: path.join(dir, 'state'), logDir };
}

function logrotateDebug(conf: string, state: string): { status: number | null; output: string; errors: string[] } {
  assert.ok(LOGROTATE);
  // -d: dry run with debug output (scripts are not run); -f: force, so the rotation path
  // including postrotate is exercised even though the state file is new.
  const r = run(LOGROTATE, ['-d', '-f', '-s', state, conf], { ...process.env, LC_ALL: 'C' });
  const output = `${r.stdout}${r.stderr}`;
  return { status: r.status, output, errors: output.split('\n').filter((l) => /^error:/i.test(l.trim())) };
}

test('logrotate snippet is the guide block plus a postrotate HUP', () => {
  const text = readService('logrotate');
  const body = text.slice(text.indexOf('/var/log/xroad/slave-sync.log {'));
  const lines = body
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  assert.deepEqual(lines.slice(0, 7), ['/var/log/xroad/slave-sync.log {', 'daily', 'rotate 7', 'missingok', 'compress', 'su xroad xroad', 'nocreate']);
  assert.ok(lines.includes('sharedscripts'));
  const script = body.slice(body.indexOf('postrotate') + 'postrotate'.length, body.indexOf('endscript'));
  assert.match(script, /systemctl kill -s HUP --kill-who=main xroad-sync-daemon\.service .*\|\| true/);
});

test('logrotate -d accepts the snippet', (t) => {
  if (!LOGROTATE) {
    skipOrFailInCI(t, 'logrotate not found (Debian package "logrotate")');
    return;
  }
  const dir = tempDir(t, 'logrotate');
  const { conf, state, logDir } = stageLogrotate(dir, `${userInfo().username} ${groupName()}`);
  if (process.getuid?.() === 0) {
    // Same shape as /var/log/xroad: sticky, group-writable by a non-root group.
    spawnSync('chgrp', ['adm', logDir]);
    chmodSync(logDir, 0o1770);
  }
  const r = logrotateDebug(conf, state);
  for (const l of r.output.split('\n').filter((l) => /rotating log|postrotate|error:/i.test(l))) t.diagnostic(l);
  assert.deepEqual(r.errors, [], r.output);
  assert.equal(r.status, 0, r.output);
  assert.match(r.output, /running postrotate script/);
});

test('logrotate refuses /var/log/xroad-like permissions without "su" (why su matters)', (t) => {
  if (!LOGROTATE) {
    skipOrFailInCI(t, 'logrotate not found (Debian package "logrotate")');
    return;
  }
  // logrotate only performs the parent-directory check when running as root.
  if (process.getuid?.() !== 0) {
    t.skip('needs root: logrotate checks parent-directory permissions only when run as root');
    return;
  }
  const dir = tempDir(t, 'logrotate-nosu');
  const { conf, state, logDir } = stageLogrotate(dir, null);
  const g = spawnSync('chgrp', ['adm', logDir]);
  if (g.status !== 0) {
    t.skip('no "adm" group to reproduce 1770 xroad:adm');
    return;
  }
  chmodSync(logDir, 0o1770);
  const r = logrotateDebug(conf, state);
  assert.ok(
    r.errors.some((l) => /insecure permissions/.test(l)),
    `expected logrotate to refuse the group-writable directory:\n${r.output}`,
  );
});

// ---------------------------------------------------------------------------
// cron.d file and the EnvironmentFile template
// ---------------------------------------------------------------------------

interface CronJob {
  fields: string[];
  user: string;
  command: string;
}

const CRON_RANGES: Array<[number, number]> = [
  [0, 59], // minute
  [0, 23], // hour
  [1, 31], // day of month
  [1, 12], // month
  [0, 7], // day of week
];

function validCronField(field: string, [lo, hi]: [number, number]): boolean {
  return field.split(',').every((part) => {
    const m = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
    if (!m) return false;
    if (m[4] !== undefined && Number(m[4]) < 1) return false;
    if (m[1] === '*') return true;
    const a = Number(m[2]);
    const b = m[3] === undefined ? a : Number(m[3]);
    return a >= lo && b <= hi && a <= b;
  });
}

function parseCronD(text: string): CronJob[] {
  const jobs: CronJob[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    if (/^[A-Za-z_][A-Za-z0-9_]*\s*=/.test(line)) continue; // environment assignment (MAILTO=, PATH=)
    const m = /^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(.+)$/.exec(line);
    assert.ok(m, `cron line needs 5 time fields, a user and a command: ${line}`);
    const fields = m.slice(1, 6);
    for (const [i, f] of fields.entries()) assert.ok(validCronField(f, CRON_RANGES[i]!), `bad cron field ${i + 1} "${f}" in: ${line}`);
    jobs.push({ fields, user: m[6]!, command: m[7]! });
  }
  return jobs;
}

test('cron.d file: 5 time fields + user + command that honours the flag file', () => {
  const text = readService('xroad-sync.cron');
  assert.ok(text.endsWith('\n'), 'cron ignores a last line without a newline');
  const jobs = parseCronD(text);
  assert.equal(jobs.length, 1);
  const job = jobs[0]!;
  assert.deepEqual(job.fields, ['*', '*', '*', '*', '*']);
  assert.equal(job.user, 'xroad');
  assert.ok(job.command.includes(FLAG_FILE), 'command names the flag file');
  assert.ok(job.command.includes(`${PROGRAM} sync`), 'command runs one sync pass');
  assert.ok(!job.command.includes('%'), '"%" is a newline in crontab commands');
  const syntax = spawnSync('/bin/sh', ['-n', '-c', job.command], { encoding: 'utf8' });
  assert.equal(syntax.status, 0, `/bin/sh -n: ${syntax.stderr}`);
});

test('EnvironmentFile template uses only syntax that both systemd and /bin/sh read the same way', () => {
  const text = readService('xroad-sync.default');
  const seen = new Set<string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    assert.match(line, /^[A-Z_][A-Z0-9_]*=("[^"$`\\]*"|[^"'$`\\\s]*)$/, `unportable line: ${line}`);
    seen.add(line.slice(0, line.indexOf('=')));
  }
  for (const k of ['MASTER', 'XROAD_USER', 'XROAD_SYNC_OPTS']) assert.ok(seen.has(k), `${k}= present`);
  assert.match(text, /^XROAD_USER=xroad-slave$/m);
});

test('cron command: skips while paused, runs sync with no shell-split options (the program reads the settings file), logs output', (t) => {
  const flock = which('flock');
  if (!flock) {
    skipOrFailInCI(t, 'flock not found (Debian package "util-linux")');
    return;
  }
  const dir = tempDir(t, 'cron');
  const out = path.join(dir, 'program.out');
  const logged = path.join(dir, 'logger.out');
  const flag = path.join(dir, 'sync-disabled');
  const stub = path.join(dir, 'xroad-sync');
  writeFileSync(
    stub,
    `#!/bin/sh\n{ for a in "$@"; do echo "arg=$a"; done; echo "MASTER=$MASTER"; echo "XROAD_USER=$XROAD_USER"; } > '${out}'\necho "stub stderr" >&2\n`,
    { mode: 0o755 },
  );
  const logger = path.join(dir, 'logger');
  writeFileSync(logger, `#!/bin/sh\ncat > '${logged}'\n`, { mode: 0o755 });
  const job = parseCronD(readService('xroad-sync.cron'))[0]!;
  const replacements: Array<[string, string]> = [
    [FLAG_FILE, flag],
    ['/var/tmp/xroad/xroad-sync-cron.lock', path.join(dir, 'cron.lock')],
    [PROGRAM, stub],
    ['/usr/bin/logger', logger],
    ['/usr/bin/flock', flock],
  ];
  let command = job.command;
  for (const [from, to] of replacements) {
    assert.ok(command.includes(from), `cron command uses ${from}`);
    command = command.split(from).join(to);
  }
  // cron's environment: no MASTER etc.; /bin/sh -c.
  const cronEnv = { HOME: dir, LOGNAME: userInfo().username, PATH: '/usr/bin:/bin', SHELL: '/bin/sh' };
  const runJob = (cmd: string) => spawnSync('/bin/sh', ['-c', cmd], { encoding: 'utf8', env: cronEnv, timeout: 30_000 });

  // 1. Not paused: the program runs `sync` alone; it reads MASTER and XROAD_SYNC_OPTS from the settings file
  // itself, as systemd parses them (no /bin/sh sourcing or word splitting of a quoted value).
  assert.doesNotMatch(command, /\/etc\/(default|sysconfig)\/xroad-sync|XROAD_SYNC_OPTS/, 'the shell neither sources the settings nor splits XROAD_SYNC_OPTS');
  let r = runJob(command);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(readFileSync(out, 'utf8').trim().split('\n'), ['arg=sync', 'MASTER=', 'XROAD_USER=']);
  assert.match(readFileSync(logged, 'utf8'), /stub stderr/, 'stderr goes to logger');
  rmSync(out);

  // 2. Paused: the program is not started.
  writeFileSync(flag, '');
  r = runJob(command);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(existsSync(out), false, 'program must not run while the flag file exists');
  rmSync(flag);

  // 3. A previous pass still holds the lock: this minute is skipped.
  r = spawnSync(flock, [path.join(dir, 'cron.lock'), '/bin/sh', '-c', command], { encoding: 'utf8', env: cronEnv });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(existsSync(out), false, 'program must not run while the lock is held');
});
