/**
 * What an idle daemon costs, from its system calls (strace -f -y attached to
 * a real daemon polling a real sshd), not from its own hooks: a no-change
 * pass lists the master, but neither scans the target nor writes
 * slave-sync.log or status.json (nothing is done that nothing
 * asked for). Not timed: the passes are counted, not clocked.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { passArgs, type RunningCli, sleep, startCli, waitFor } from '../helpers/cli.js';
import { skipUnlessCI } from '../helpers/components.js';
import { makeTempDir, startMaster, type TestMaster, writeTree } from '../helpers/sshd.js';
import { type Call, fdPath, parseTrace, quoted } from '../helpers/strace.js';

const straceAvailable = spawnSync('strace', ['-V']).status === 0;
const T = { timeout: 90_000, skip: skipUnlessCI(!straceAvailable && 'strace is not installed (apt-get install strace)') };
const T0 = 1_700_000_000;

/** Every path a call names: quoted arguments and, with -y, its fd arguments. */
function pathsOf(call: Call): string[] {
  const fds = [...call.args.matchAll(/\d+<([^>]*)>/g)].map((m) => m[1]!);
  return [...quoted(call.args), ...fds, fdPath(call.args) ?? ''].filter(Boolean);
}

describe('an idle daemon, from its system calls', () => {
  let master: TestMaster;
  let work: string;
  let daemon: RunningCli | undefined;

  before(async () => {
    master = await startMaster();
    work = await makeTempDir('xroad-sync-idle-');
  });
  after(async () => {
    await daemon?.stop();
    await master?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('no-change passes list the master but do not scan the target or write slave-sync.log, status.json or the metrics file', T, async () => {
    const source = path.join(work, 'master');
    const target = path.join(work, 'target');
    const stateDir = path.join(work, 'state');
    const logFile = path.join(work, 'slave-sync.log');
    const file = (content: string, dt: number) => ({ content, mode: 0o640, mtime: T0 + dt });
    await writeTree(source, { 'conf.d/local.ini': file('[proxy]\n', 1), 'signer/keyconf.xml': file('<keyConf/>\n', 2), 'ssl/internal.crt': file('crt', 3) });
    await writeTree(work, { 'flag/.keep': file('', 0), 'target/.keep': file('', 0), 'textfile/.keep': file('', 0) });
    const metricsDir = path.join(work, 'textfile');
    daemon = startCli([
      'daemon',
      '--interval',
      '1',
      ...passArgs(master, { source, target, stateDir, logFile, flagFile: path.join(work, 'flag', 'sync-disabled') }),
      '--metrics-file',
      path.join(metricsDir, 'xroad-sync.prom'),
    ]);
    const passes = (): number => daemon!.records().filter((r) => r.msg === 'pass' && r.result === 'ok').length;
    // The first pass copies the tree; the second scans the target once more (the first one wrote it); later ones are idle.
    await waitFor(() => passes() >= 3 || daemon!.child.exitCode !== null, 60_000, 'three daemon passes');
    assert.equal(daemon.child.exitCode, null, daemon.stderr());

    const traceFile = path.join(work, 'trace');
    const before = passes();
    // Asynchronously: the daemon's records must go on being read. strace detaches on SIGTERM; the daemon goes on.
    const strace = spawn('strace', ['-f', '-y', '-qq', '-o', traceFile, '-p', String(daemon.child.pid)], { stdio: 'ignore' });
    const detached = new Promise((resolve) => strace.once('close', resolve));
    await sleep(4_500);
    strace.kill('SIGTERM');
    await Promise.race([detached, sleep(5_000)]);
    const traced = passes() - before;
    const calls = parseTrace(await readFile(traceFile, 'utf8'));

    const lockTakes = calls.filter((c) => c.ok && c.name === 'link' && quoted(c.args).some((p) => p.endsWith('/sync.lock')));
    assert.ok(lockTakes.length >= 2 && traced >= 2, `passes while traced: ${lockTakes.length} lock takes, ${traced} pass records`);
    const socketWrites = calls.filter((c) => c.ok && (c.name === 'writev' || c.name === 'write') && /^\d+<(TCP|socket)/.test(c.args));
    assert.ok(socketWrites.length >= lockTakes.length, 'each pass sends its listing requests to the master');

    const touching = (root: string) => calls.filter((c) => pathsOf(c).some((p) => p === root || p.startsWith(`${root}/`)));
    assert.deepEqual(
      touching(target).map((c) => `${c.name}(${c.args.slice(0, 120)})`),
      [],
      'an idle pass scanned or touched the target',
    );
    assert.deepEqual(
      touching(logFile).map((c) => c.name),
      [],
      'an idle pass wrote slave-sync.log',
    );
    assert.deepEqual(
      touching(metricsDir).map((c) => c.name),
      [],
      'an idle pass wrote the --metrics-file',
    );
    const status = calls.filter((c) => pathsOf(c).some((p) => path.basename(p).startsWith('status.json')));
    assert.deepEqual(
      status.map((c) => c.name),
      [],
      'an idle pass rewrote status.json',
    );
  });
});
