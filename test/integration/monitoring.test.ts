/**
 * What monitoring reads, against a real OpenSSH master: the `status --check`
 * line (one line, names escaped), stderr (what the journal gets), the
 * --on-change list, hostile master file names in each of them.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { passArgs, runCli, type CliRun } from '../helpers/cli.js';
import { suiteMaster, type TestMaster } from '../helpers/sshd.js';
import { slaveDirs, type SlaveDirs } from '../helpers/slave.js';

const T = { timeout: 60_000 };
const show = (r: CliRun) => `exit ${r.status}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
const statusArgs = (d: SlaveDirs) => ['--state-dir', d.stateDir, '--flag-file', d.flagFile];

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
});
