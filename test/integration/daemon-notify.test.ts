/**
 * The daemon's systemd notify messages, against a real sshd, with a stand-in
 * systemd-notify on PATH that records its arguments (the real one under real
 * systemd is in test/system/systemd.test.ts): READY=1 once, after the first
 * pass; idle passes send nothing (the budget: no process spawned per pass); a
 * pass that changes files says so at once; STOPPING=1 on SIGTERM; no
 * NOTIFY_SOCKET, no systemd-notify at all.
 */
import assert from 'node:assert/strict';
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { passArgs, startCli, waitFor } from '../helpers/cli.js';
import { makeTempDir, startMaster, type TestMaster, writeTree } from '../helpers/sshd.js';

const T0 = 1_700_000_000;
const T = { timeout: 90_000 };

describe('the daemon notifies systemd through systemd-notify', () => {
  let master: TestMaster;
  let work: string;

  before(async () => {
    master = await startMaster();
    work = await makeTempDir('xroad-sync-notify-');
    // The stand-in: one line per argument, a "--" line per call.
    await writeTree(work, { 'bin/.keep': { content: '', mode: 0o644, mtime: T0 } });
    await writeFile(path.join(work, 'bin/systemd-notify'), `#!/bin/sh\nprintf '%s\\n' "$@" -- >> "${path.join(work, 'notify.log')}"\n`);
    await chmod(path.join(work, 'bin/systemd-notify'), 0o755);
  });
  after(async () => {
    await master?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** The messages so far, each as its FIELD=VALUE lines. */
  const messages = async (): Promise<string[][]> => {
    const text = await readFile(path.join(work, 'notify.log'), 'utf8').catch(() => '');
    return text
      .split('--\n')
      .filter(Boolean)
      .map((m) => m.trim().split('\n'));
  };

  const startDaemon = async (name: string, env: NodeJS.ProcessEnv) => {
    const dir = path.join(work, name);
    const source = path.join(dir, 'master');
    const file = (content: string, dt: number) => ({ content, mode: 0o640, mtime: T0 + dt });
    await writeTree(source, { 'conf.d/local.ini': file('[proxy]\n', 1), 'signer/keyconf.xml': file('<keyConf/>\n', 2) });
    await writeTree(dir, { 'flag/.keep': file('', 0), 'target/.keep': file('', 0) });
    const paths = { source, target: path.join(dir, 'target'), stateDir: path.join(dir, 'state'), flagFile: path.join(dir, 'flag', 'sync-disabled') };
    // The hook records its environment: the notify variables are the daemon's alone.
    const hookEnv = path.join(dir, 'hook-env');
    const daemon = startCli(['daemon', '--interval', '0.2', ...passArgs(master, paths), '--on-change', `env > ${hookEnv}`], {
      env: { ...env, PATH: `${path.join(work, 'bin')}:${process.env.PATH}` },
    });
    const passes = (): number => daemon.records().filter((r) => r.msg === 'pass').length;
    return { daemon, passes, source, hookEnv };
  };

  it('READY=1 after the first pass, then nothing for idle passes; a change at once; STOPPING=1 on SIGTERM', T, async () => {
    // A watchdog period far beyond the test: any message during the idle passes would be a per-pass one.
    const { daemon, passes, source, hookEnv } = await startDaemon('notify', { NOTIFY_SOCKET: '/run/systemd/notify', WATCHDOG_USEC: '600000000' });
    try {
      await waitFor(async () => (await messages()).some((m) => m.includes('READY=1')) || daemon.child.exitCode !== null, 30_000, 'READY=1');
      const ready = await messages();
      assert.deepEqual(ready[0], ['STATUS=first pass running']);
      assert.equal(ready.length, 2, JSON.stringify(ready));
      assert.match(ready[1]!.find((f) => f.startsWith('STATUS='))!, /^STATUS=last pass ok at \S+Z \(\d+\.\d s\), [1-9]\d* changed$/);
      const atReady = passes();
      await waitFor(() => passes() >= atReady + 10 || daemon.child.exitCode !== null, 60_000, 'ten idle passes');
      // The first pass changed files, the second none: one message for the new kind ("0 changed"), then silence.
      const idle = await messages();
      assert.ok(idle.length <= 3, `messages during ${passes() - atReady} idle passes: ${JSON.stringify(idle.slice(2))}`);
      assert.equal(idle.filter((m) => m.includes('READY=1')).length, 1);

      await writeFile(path.join(source, 'conf.d/local.ini'), '[proxy]\nchanged=1\n');
      await waitFor(async () => (await messages()).some((m) => m.some((f) => / 1 changed$/.test(f))), 30_000, 'the status naming the changed file');
      const inherited = await readFile(hookEnv, 'utf8');
      assert.match(inherited, /^PATH=/m, 'the --on-change command ran');
      assert.doesNotMatch(inherited, /^(NOTIFY_SOCKET|WATCHDOG_USEC|WATCHDOG_PID)=/m, 'an --on-change command inherits no notify variable');
      const stopped = await daemon.stop();
      assert.equal(stopped.status, 0, stopped.stderr);
      assert.deepEqual((await messages()).at(-1)?.toSorted(), ['STATUS=stopping', 'STOPPING=1']);
    } finally {
      await daemon.stop();
    }
  });

  it('without NOTIFY_SOCKET (started by hand) systemd-notify is never run', T, async () => {
    await rm(path.join(work, 'notify.log'), { force: true });
    const { daemon, passes } = await startDaemon('by-hand', { NOTIFY_SOCKET: undefined, WATCHDOG_USEC: undefined });
    try {
      await waitFor(() => passes() >= 3 || daemon.child.exitCode !== null, 30_000, 'three passes');
      assert.equal(daemon.child.exitCode, null, daemon.stderr());
    } finally {
      const stopped = await daemon.stop();
      assert.equal(stopped.status, 0, stopped.stderr);
    }
    assert.deepEqual(await messages(), []);
  });
});
