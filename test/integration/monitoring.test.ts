/**
 * What monitoring reads, against a real OpenSSH master: the `status --check`
 * line (one line, names escaped), stderr (what the journal gets), the
 * --on-change list, hostile master file names in each of them.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type CliRun, passArgs, runCli, startCli, waitFor } from '../helpers/cli.js';
import { type SlaveDirs, slaveDirs } from '../helpers/slave.js';
import { suiteMaster, type TestMaster } from '../helpers/sshd.js';

const T = { timeout: 60_000 };
const show = (r: CliRun) => `exit ${r.status}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
const statusArgs = (d: SlaveDirs) => ['--state-dir', d.stateDir, '--flag-file', d.flagFile];

/** The samples of a Prometheus text file: `name{labels}` → value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** promtool check metrics (Debian package prometheus): the exposition format and Prometheus naming. */
function promtoolAccepts(text: string): void {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.error, undefined, `promtool: ${r.error?.message} (scripts/test-setup.sh installs the prometheus package)`);
  assert.equal(r.status, 0, `promtool check metrics:\n${r.stdout}${r.stderr}\n--- file\n${text}`);
  assert.equal((r.stdout + r.stderr).trim(), '', `promtool lint findings:\n${r.stdout}${r.stderr}`);
}

/**
 * The Zabbix items docs/monitoring.md documents: key, JSONPath, JSON type, read from its table
 * so the document and this test cannot drift apart.
 */
async function zabbixItems(): Promise<Array<{ key: string; jsonPath: string; type: string }>> {
  const monitoring = await fs.readFile(fileURLToPath(new URL('../../../docs/monitoring.md', import.meta.url)), 'utf8');
  assert.ok(monitoring.includes('## Zabbix'), 'docs/monitoring.md has a Zabbix section');
  const section = monitoring.slice(monitoring.indexOf('## Zabbix'));
  const rows = [...section.matchAll(/^\| `(xroad\.sync\.[a-z_]+)` \| `([^`]+)` \| ([^|]+) \|/gm)];
  return rows.map(([, key, jsonPath, type]) => ({ key: key!, jsonPath: jsonPath!, type: type!.trim() }));
}

/** Zabbix's JSONPath for the dotted paths used here: `$.a.b`; undefined when a step is missing. */
function jsonPath(doc: unknown, expr: string): unknown {
  assert.match(expr, /^\$(\.[A-Za-z]+)+$/, `a JSONPath this test understands: ${expr}`);
  let value: unknown = doc;
  for (const step of expr.slice(2).split('.')) {
    if (value === null || typeof value !== 'object' || !(step in value)) return undefined;
    value = (value as Record<string, unknown>)[step];
  }
  return value;
}

/** The documented JSON type ("boolean", "number", "string (…) or null") admits `value`. */
function hasDocumentedType(value: unknown, documented: string): boolean {
  const nullable = /\bor null$/.test(documented);
  if (value === null) return nullable;
  const base = documented.split(' ')[0];
  if (base === 'string' && /ISO 8601/.test(documented)) return typeof value === 'string' && Number.isFinite(Date.parse(value));
  return typeof value === base;
}

/** A master file name that, printed raw, forges an rsync error line and Nagios performance data. */
const HOSTILE = 'sub/evil\nrsync error: forged (code 0) | forged=1';

describe('monitoring output (real sshd)', () => {
  let master!: TestMaster;
  const scratch = suiteMaster((m) => (master = m));
  const dirs = async (tree?: Record<string, string>) => {
    const d = await slaveDirs(() => undefined, 'xs-monitoring-', tree);
    scratch.push(d.base);
    return d;
  };

  it('a master name with a newline and a "|" reaches the check line, stderr and the dry run escaped, each one line', T, async () => {
    const d = await dirs({ 'ok.ini': 'x\n', [HOSTILE]: 'more than ten bytes\n' });
    const failed = await runCli(['sync', ...passArgs(master, d), '--max-file-size', '10']);
    assert.equal(failed.status, 25, show(failed));
    assert.equal(failed.stderr.split('\n').filter((l) => l !== '').length, 1, `stderr is one line per message\n${show(failed)}`);
    assert.doesNotMatch(failed.stderr, /^rsync error:/m, show(failed));
    assert.match(failed.stderr, /sub\/evil\\#012rsync error: forged \(code 0\) \| forged=1 is \d+ bytes/, show(failed));

    const check = await runCli(['status', '--check', ...statusArgs(d)]);
    assert.equal(check.status, 2, show(check));
    assert.equal(check.stdout.indexOf('\n'), check.stdout.length - 1, `the check is one line\n${show(check)}`);
    const [text = '', perfdata] = check.stdout.trimEnd().split(' | ');
    assert.ok(!text.includes('|'), `no "|" in the text before the performance data: ${check.stdout}`);
    assert.ok(perfdata === undefined || !perfdata.includes('forged'), `the name leaked into the performance data: ${check.stdout}`);
    assert.match(text, /^XROAD-SYNC CRITICAL - last pass failed at \S+: sub\/evil\\#012rsync error: forged \(code 0\) \\#174 forged=1 is/);

    const dry = await runCli(['sync', ...passArgs(master, d), '--dry-run']);
    assert.equal(dry.status, 0, show(dry));
    assert.doesNotMatch(dry.stdout, /^rsync error:/m, show(dry));
    assert.match(dry.stdout, /^>f\+{9} sub\/evil\\#012rsync error: forged \(code 0\) \| forged=1$/m, show(dry));

    const checked = await runCli(['check', ...passArgs(master, d)]);
    assert.doesNotMatch(checked.stdout, /^rsync error:/m, show(checked));
    assert.match(checked.stdout, /^>f\+{9} sub\/evil\\#012rsync error: forged/m, show(checked));
  });

  it('--on-change gets the changed paths NUL-terminated, a newline inside a name kept, the root as "."', T, async () => {
    const d = await dirs({ 'ok.ini': 'x\n', [HOSTILE]: 'content\n' });
    await fs.chmod(d.target, 0o700); // the master's root is 0755: the pass changes the root too
    const hookOut = path.join(d.base, 'hook.out');
    const run = await runCli(['sync', ...passArgs(master, d), '--on-change', `cat > '${hookOut}'`]);
    assert.equal(run.status, 0, show(run));
    const raw = await fs.readFile(hookOut, 'utf8');
    assert.ok(raw.endsWith('\0'), `every path ends with NUL: ${JSON.stringify(raw)}`);
    const paths = raw.slice(0, -1).split('\0');
    assert.ok(paths.includes(HOSTILE), JSON.stringify(paths));
    assert.ok(paths.includes('ok.ini') && paths.includes('sub') && paths.includes('.'), JSON.stringify(paths));
    assert.ok(!paths.includes(''), `an empty path: ${JSON.stringify(paths)}`);
    assert.ok(!paths.some((p) => p.startsWith('rsync error')), JSON.stringify(paths));
  });

  it('status --check: Nagios performance data after " | ": the age of the last success against --max-age', T, async () => {
    const d = await dirs();
    const none = await runCli(['status', '--check', ...statusArgs(d)]);
    assert.equal(none.status, 2, show(none));
    assert.match(none.stdout, /^XROAD-SYNC CRITICAL - no successful pass recorded \| age=U;;300;0\n$/, show(none));
    const ok = await runCli(['sync', ...passArgs(master, d)]);
    assert.equal(ok.status, 0, show(ok));
    const check = await runCli(['status', '--check', '--max-age', '5m', ...statusArgs(d)]);
    assert.equal(check.status, 0, show(check));
    const [, inText, inPerf] = /^XROAD-SYNC OK - last success (\d+) s ago \| age=(\d+)s;;300;0\n$/.exec(check.stdout) ?? [];
    assert.ok(inText !== undefined, show(check));
    assert.equal(inPerf, inText, 'the same age in the text and the performance data');
  });

  it('--metrics-file: a node_exporter textfile after every pass, skipped pass too; counters add up across runs; promtool accepts it', T, async () => {
    const d = await dirs();
    const metricsFile = path.join(d.base, 'textfile', 'xroad-sync.prom');
    await fs.mkdir(path.dirname(metricsFile));
    const args = [...passArgs(master, d), '--metrics-file', metricsFile];
    const read = async () => {
      const text = await fs.readFile(metricsFile, 'utf8');
      promtoolAccepts(text);
      return samples(text);
    };
    const before = Date.now() / 1000;
    const first = await runCli(['sync', ...args]);
    assert.equal(first.status, 0, show(first));
    const m1 = await read();
    assert.equal(m1.get('xroad_sync_last_pass_exit_code'), 0);
    assert.equal(m1.get('xroad_sync_paused'), 0);
    assert.equal(m1.get('xroad_sync_daemon_up'), 0);
    assert.equal(m1.get('xroad_sync_crash_journal_pending'), 0);
    assert.equal(m1.get('xroad_sync_passes_total{result="ok"}'), 1);
    assert.ok(m1.get('xroad_sync_last_success_timestamp_seconds')! >= Math.floor(before), String(m1.get('xroad_sync_last_success_timestamp_seconds')));
    assert.ok(m1.get('xroad_sync_changed_files_total')! >= 2, String(m1.get('xroad_sync_changed_files_total')));
    assert.ok(m1.get('xroad_sync_received_bytes_total')! > 0);
    assert.ok(m1.get('xroad_sync_last_pass_duration_seconds')! > 0);
    assert.deepEqual((await fs.readdir(path.dirname(metricsFile))).sort(), ['xroad-sync.prom'], 'no temp file left beside it');
    const digest = JSON.parse((await runCli(['status', '--json', ...statusArgs(d)])).stdout).digest;
    assert.equal(m1.get(`xroad_sync_master_state_info{digest="${digest}"}`), 1, 'the digest as an info metric');

    await fs.writeFile(path.join(d.source, 'serverconf.xml'), '<conf changed="1"/>\n');
    const failed = await runCli(['sync', ...args, '--max-file-size', '5']);
    assert.equal(failed.status, 25, show(failed));
    const m2 = await read();
    assert.equal(m2.get('xroad_sync_last_pass_exit_code'), 25);
    assert.equal(m2.get('xroad_sync_last_success_timestamp_seconds'), m1.get('xroad_sync_last_success_timestamp_seconds'), 'set only by a success');
    assert.equal(m2.get('xroad_sync_passes_total{result="failed"}'), 1);

    // XROAD_SYNC_METRICS_FILE in the settings file names the same file.
    const settings = path.join(d.base, 'xroad-sync.default');
    await fs.writeFile(settings, `XROAD_SYNC_METRICS_FILE=${metricsFile}\n`);
    const second = await runCli(['sync', ...passArgs(master, d)], { env: { XROAD_SYNC_SETTINGS: settings } });
    assert.equal(second.status, 0, show(second));
    const m3 = await read();
    assert.equal(m3.get('xroad_sync_passes_total{result="ok"}'), 2, 'the counters went on from the file');
    assert.equal(m3.get('xroad_sync_changed_files_total'), m1.get('xroad_sync_changed_files_total')! + 1);
    assert.ok(m3.get('xroad_sync_received_bytes_total')! > m1.get('xroad_sync_received_bytes_total')!);

    await runCli(['pause', '--flag-file', d.flagFile, '--state-dir', d.stateDir]);
    const skipped = await runCli(['sync', ...args]);
    assert.equal(skipped.status, 0, show(skipped));
    const m4 = await read();
    assert.equal(m4.get('xroad_sync_paused'), 1);
    assert.equal(m4.get('xroad_sync_passes_total{result="skipped"}'), 1);
  });

  it('--metrics-file under the daemon: daemon_up while it runs, a pause shows at once, quiet passes do not rewrite it, 0 after SIGTERM', T, async () => {
    const d = await dirs();
    const metricsFile = path.join(d.base, 'textfile', 'xroad-sync.prom');
    await fs.mkdir(path.dirname(metricsFile));
    const daemon = startCli(['daemon', '--interval', '0.2', ...passArgs(master, d), '--metrics-file', metricsFile]);
    try {
      const current = async () => (existsSync(metricsFile) ? samples(await fs.readFile(metricsFile, 'utf8')) : new Map<string, number>());
      const okPasses = () => daemon.records().filter((r) => r.msg === 'pass' && r.result === 'ok').length;
      await waitFor(
        async () => (await current()).get('xroad_sync_daemon_up') === 1 && okPasses() >= 1,
        30_000,
        'daemon_up 1 after the first pass',
        () => daemon.stdout() + daemon.stderr(),
      );
      await waitFor(
        () => okPasses() >= 3,
        30_000,
        'two quiet passes',
        () => daemon.stdout(),
      );
      const quietFrom = (await fs.stat(metricsFile)).ino;
      const passesBefore = okPasses();
      await waitFor(
        () => okPasses() >= passesBefore + 3,
        30_000,
        'three more quiet passes',
        () => daemon.stdout(),
      );
      assert.equal((await fs.stat(metricsFile)).ino, quietFrom, 'a quiet pass rewrote the metrics file');

      await fs.writeFile(d.flagFile, '');
      await waitFor(
        async () => (await current()).get('xroad_sync_paused') === 1,
        15_000,
        'paused 1 after the flag appeared',
        () => daemon.stdout(),
      );
      promtoolAccepts(await fs.readFile(metricsFile, 'utf8'));
    } finally {
      const run = await daemon.stop();
      assert.equal(run.status, 0, show(run));
    }
    const after = samples(await fs.readFile(metricsFile, 'utf8'));
    assert.equal(after.get('xroad_sync_daemon_up'), 0);
  });

  it(
    'digest: status --json shows the digest of the master state the slave mirrors; `digest DIR` on the master tree gives the same, with the same excludes; a change changes it',
    T,
    async () => {
      const d = await dirs({ 'conf.d/local.ini': '[signer]\n', 'serverconf.xml': '<conf/>\n', 'db.properties': 'password=1\n', 'old.bak': 'x\n', link: '' });
      await fs.rm(path.join(d.source, 'link'));
      await fs.symlink('conf.d/local.ini', path.join(d.source, 'link'));
      const exclude = ['--exclude', '*.bak'];
      const digestOf = async (...extra: string[]) => {
        const r = await runCli(['digest', d.source, ...exclude, ...extra]);
        assert.equal(r.status, 0, show(r));
        assert.match(r.stdout, /^[0-9a-f]{16}\n$/, show(r));
        return r.stdout.trim();
      };
      const statusDigest = async () => {
        const r = await runCli(['status', '--json', ...statusArgs(d)]);
        assert.equal(r.status, 0, show(r));
        return JSON.parse(r.stdout).digest as unknown;
      };
      assert.equal(await statusDigest(), null, 'no pass yet');
      const sync = async () => {
        const r = await runCli(['sync', ...passArgs(master, d), ...exclude]);
        assert.equal(r.status, 0, show(r));
      };
      await sync();
      const onMaster = await digestOf();
      assert.equal(await statusDigest(), onMaster);
      assert.notEqual(await digestOf('--no-default-excludes'), onMaster, 'db.properties counts without the default excludes');

      await fs.writeFile(path.join(d.source, 'db.properties'), 'password=2\n');
      await fs.writeFile(path.join(d.source, 'old.bak'), 'y\n');
      assert.equal(await digestOf(), onMaster, 'excluded files do not count');

      await fs.writeFile(path.join(d.source, 'serverconf.xml'), '<conf changed="yes"/>\n');
      const changed = await digestOf();
      assert.notEqual(changed, onMaster);
      await sync();
      assert.equal(await statusDigest(), changed);
    },
  );

  it('Zabbix: every item docs/monitoring.md documents on status --json exists with its documented type, before and after passes', T, async () => {
    const items = await zabbixItems();
    assert.ok(items.length >= 6 && items.some((i) => i.jsonPath === '$.digest'), `docs/monitoring.md's Zabbix table: ${JSON.stringify(items)}`);
    const d = await dirs();
    const check = async (when: string, nullAllowed: boolean) => {
      const r = await runCli(['status', '--json', ...statusArgs(d)]);
      assert.equal(r.status, 0, show(r));
      const doc = JSON.parse(r.stdout) as unknown;
      for (const item of items) {
        const value = jsonPath(doc, item.jsonPath);
        if (value === undefined && nullAllowed && item.jsonPath.startsWith('$.lastPass.')) continue; // no pass yet: Zabbix marks it not supported
        assert.notEqual(value, undefined, `${when}: ${item.key} ${item.jsonPath} missing in ${r.stdout}`);
        assert.ok(hasDocumentedType(value, item.type), `${when}: ${item.key} ${item.jsonPath} = ${JSON.stringify(value)} is not ${item.type}`);
      }
    };
    await check('before any pass', true);
    const ok = await runCli(['sync', ...passArgs(master, d)]);
    assert.equal(ok.status, 0, show(ok));
    await check('after an ok pass', false);
    const failed = await runCli(['sync', ...passArgs(master, d), '--max-files', '1']);
    assert.notEqual(failed.status, 0, show(failed));
    await check('after a failed pass', false);
  });

  it('--metrics-file shared by the daemon and a by-hand sync: counters never go down (a drop reads as a reset and a rate spike)', T, async () => {
    const d = await dirs();
    const metricsFile = path.join(d.base, 'textfile', 'xroad-sync.prom');
    await fs.mkdir(path.dirname(metricsFile));
    const daemon = startCli(['daemon', '--interval', '0.3', ...passArgs(master, d), '--metrics-file', metricsFile]);
    try {
      const current = async () => (existsSync(metricsFile) ? samples(await fs.readFile(metricsFile, 'utf8')) : new Map<string, number>());
      await waitFor(
        async () => ((await current()).get('xroad_sync_passes_total{result="ok"}') ?? 0) >= 1,
        30_000,
        "the daemon's first pass in the file",
        () => daemon.stdout() + daemon.stderr(),
      );
      // A by-hand pass the daemon does not make: it fails (a limit of one file).
      const byHand = await runCli(['sync', ...passArgs(master, d), '--metrics-file', metricsFile, '--max-files', '1']);
      assert.equal(byHand.status, 25, show(byHand));
      const failedKey = 'xroad_sync_passes_total{result="failed"}';
      assert.equal((await current()).get(failedKey), 1, 'the by-hand pass counted');
      await fs.writeFile(d.flagFile, ''); // the daemon rewrites the file at once
      await waitFor(
        async () => (await current()).get('xroad_sync_paused') === 1,
        15_000,
        "the daemon's write after the pause",
        () => daemon.stdout(),
      );
      assert.equal((await current()).get(failedKey), 1, `${failedKey} went down after the daemon's write: a counter reset`);
    } finally {
      const run = await daemon.stop();
      assert.equal(run.status, 0, show(run));
    }
  });

  it('--metrics-file in a directory that cannot be written: the pass still succeeds and stderr names the file', T, async () => {
    const d = await dirs();
    const metricsFile = path.join(d.base, 'no-such-dir', 'xroad-sync.prom');
    const run = await runCli(['sync', ...passArgs(master, d), '--metrics-file', metricsFile]);
    assert.equal(run.status, 0, show(run));
    assert.match(run.stderr, /cannot write --metrics-file .*no-such-dir\/xroad-sync\.prom: .*ENOENT/, show(run));
    assert.equal(JSON.parse((await runCli(['status', '--json', ...statusArgs(d)])).stdout).lastPass.result, 'ok');
  });
});
