/**
 * The daemon's notify messages on their own (a fake sender in place of
 * systemd-notify): READY=1 once, after the first pass; idle passes send
 * nothing; a change of kind sends STATUS= at once; the watchdog timer pings
 * at half WATCHDOG_USEC with the refreshed status; no NOTIFY_SOCKET, no
 * messages. The real systemd side is in test/system/systemd.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeLastPass, type LastPass, SystemdNotifier, watchdogPingMs } from '../../src/daemon/systemd-notify.js';
import type { Logger } from '../../src/report/logger.js';

const warnings: unknown[] = [];
const logger = { warn: (o: unknown) => warnings.push(o), info: () => undefined, debug: () => undefined, error: () => undefined } as unknown as Logger;
const at = new Date('2026-12-07T04:01:02.345Z');
const ok = (changed = 0): LastPass => ({ kind: 'ok', at, durationMs: 400, changed });
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function recording(env: Record<string, string> = { NOTIFY_SOCKET: '/run/systemd/notify' }): { notifier: SystemdNotifier; messages: string[][] } {
  const messages: string[][] = [];
  const notifier = new SystemdNotifier(logger, env, async (fields) => {
    messages.push([...fields]);
  });
  return { notifier, messages };
}

describe('systemd notify', () => {
  it('names the last pass in one line; a failure names its error and the last good pass', () => {
    assert.equal(describeLastPass(ok(), at), 'last pass ok at 2026-12-07T04:01:02Z (0.4 s), 0 changed');
    const failed: LastPass = { kind: 'failed', at, exitCode: 12, error: 'connect ECONNREFUSED\nSTATUS=forged' };
    assert.equal(
      describeLastPass(failed, new Date('2026-12-07T03:00:00Z')),
      'last pass failed at 2026-12-07T04:01:02Z (exit 12): connect ECONNREFUSED STATUS=forged; last ok pass at 2026-12-07T03:00:00Z',
    );
    assert.match(describeLastPass(failed, undefined), /; no pass ok yet$/);
    assert.match(
      describeLastPass({ kind: 'paused', at, flagFile: '/var/tmp/xroad/sync-disabled' }, undefined),
      /^sync paused \(flag file \/var\/tmp\/xroad\/sync-disabled\)/,
    );
  });

  it('pings at half WATCHDOG_USEC, only when WATCHDOG_PID is this process (or unset)', () => {
    assert.equal(watchdogPingMs({ WATCHDOG_USEC: '60000000' }), 30_000);
    assert.equal(watchdogPingMs({ WATCHDOG_USEC: '60000000', WATCHDOG_PID: String(process.pid) }), 30_000);
    assert.equal(watchdogPingMs({ WATCHDOG_USEC: '60000000', WATCHDOG_PID: '1' }), undefined);
    assert.equal(watchdogPingMs({}), undefined);
    assert.equal(watchdogPingMs({ WATCHDOG_USEC: 'x' }), undefined);
  });

  it('READY=1 with the first pass only; idle passes send nothing; a new kind of pass is sent at once', async () => {
    const { notifier, messages } = recording();
    notifier.start();
    notifier.passEnded(ok());
    for (let i = 0; i < 100; i++) notifier.passEnded(ok());
    await tick();
    assert.deepEqual(messages, [['STATUS=first pass running'], ['STATUS=last pass ok at 2026-12-07T04:01:02Z (0.4 s), 0 changed', 'READY=1']]);
    notifier.passEnded(ok(3));
    notifier.passEnded({ kind: 'failed', at, exitCode: 12, error: 'down' });
    notifier.passEnded({ kind: 'failed', at, exitCode: 12, error: 'down' });
    await tick();
    await notifier.stop();
    assert.equal(messages.filter((m) => m.includes('READY=1')).length, 1);
    assert.ok(
      messages.some((m) => m.some((f) => f.endsWith('3 changed'))),
      JSON.stringify(messages),
    );
    assert.ok(
      messages.some((m) => m.some((f) => f.startsWith('STATUS=last pass failed'))),
      JSON.stringify(messages),
    );
    assert.deepEqual(messages.at(-1)?.toSorted(), ['STATUS=stopping', 'STOPPING=1']);
    assert.ok(notifier.sent <= 6, `messages: ${notifier.sent}`);
    notifier.passEnded(ok());
    await tick();
    assert.deepEqual(messages.at(-1)?.toSorted(), ['STATUS=stopping', 'STOPPING=1'], 'nothing after STOPPING=1');
  });

  it('the watchdog timer pings WATCHDOG=1 with the refreshed status', async () => {
    const { notifier, messages } = recording({ NOTIFY_SOCKET: '@notify', WATCHDOG_USEC: '40000' });
    assert.equal(notifier.pingMs, 20);
    notifier.start();
    notifier.passEnded(ok());
    notifier.passEnded({ ...ok(), at: new Date(at.getTime() + 1000) } as LastPass);
    const deadline = performance.now() + 10_000;
    while (!messages.some((m) => m.includes('WATCHDOG=1')) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await notifier.stop();
    const ping = messages.find((m) => m.includes('WATCHDOG=1'));
    assert.deepEqual(ping, ['WATCHDOG=1', 'STATUS=last pass ok at 2026-12-07T04:01:03Z (0.4 s), 0 changed'], JSON.stringify(messages));
  });

  it('without NOTIFY_SOCKET (a daemon started by hand) nothing is sent', async () => {
    const { notifier, messages } = recording({});
    notifier.start();
    notifier.passEnded(ok());
    await notifier.stop();
    assert.deepEqual(messages, []);
    assert.equal(notifier.enabled, false);
  });

  it('a failing systemd-notify is logged once, and the daemon goes on', async () => {
    warnings.length = 0;
    const notifier = new SystemdNotifier(logger, { NOTIFY_SOCKET: '/run/systemd/notify' }, async () => {
      throw new Error('spawn systemd-notify ENOENT');
    });
    notifier.start();
    notifier.passEnded(ok());
    notifier.passEnded(ok(1));
    await notifier.stop();
    assert.equal(warnings.length, 1);
  });
});
