/**
 * The daemon's side of systemd's notify protocol (Type=notify): READY=1 once
 * the first pass has ended, STATUS= naming the last pass, WATCHDOG=1 from a
 * timer, so a daemon whose event loop hangs stops pinging and is restarted.
 *
 * Node has no AF_UNIX datagram sockets, so each message is one run of
 * systemd-notify(1). It is a short-lived child, not the main process: the unit
 * needs NotifyAccess=all, and systemd-notify (since systemd 246, without
 * --no-block) waits until PID 1 has processed the message, so it is still alive
 * to be attributed to the unit. --pid is never passed: it would send MAINPID=.
 *
 * Cost: a message is sent when the kind of the last pass changes (ok, changed,
 * failed with another error, paused) and otherwise at most every refresh
 * period (half the watchdog period, or 30 s without a watchdog), never per
 * pass. Without NOTIFY_SOCKET (a daemon started by hand) nothing is sent.
 */
import { execFile } from 'node:child_process';
import { describeError, exitCodeOf } from '../errors.js';
import type { PassResult } from '../pass/types.js';
import type { Logger } from '../report/logger.js';

/** Without a watchdog, STATUS= is refreshed (only when its text changed) this often. */
const STATUS_REFRESH_MS = 30_000;
/** systemd-notify waits for PID 1 up to 5 s; a child that takes longer is killed and the message dropped. */
const SEND_TIMEOUT_MS = 10_000;

export type LastPass =
  | { readonly kind: 'ok'; readonly at: Date; readonly durationMs: number; readonly changed: number }
  | { readonly kind: 'failed'; readonly at: Date; readonly exitCode: number; readonly error: string }
  | { readonly kind: 'paused'; readonly at: Date; readonly flagFile: string }
  | { readonly kind: 'skipped'; readonly at: Date; readonly why: string };

/** A pass's result, or what it threw, as the status shows it. */
export function lastPassOf(result: PassResult | { readonly thrown: unknown }): LastPass {
  if ('thrown' in result) return { kind: 'failed', at: new Date(), exitCode: exitCodeOf(result.thrown), error: describeError(result.thrown) };
  if (result.result === 'ok') {
    return { kind: 'ok', at: result.finishedAt, durationMs: result.finishedAt.getTime() - result.startedAt.getTime(), changed: result.changedPaths.length };
  }
  return { kind: 'failed', at: result.finishedAt, exitCode: result.exitCode, error: describeError(result.error) };
}

/** One line for `systemctl status`: the last pass, and the last good one when that was not it. */
export function describeLastPass(last: LastPass, lastOkAt: Date | undefined): string {
  const at = isoSeconds(last.at);
  const lastOk = lastOkAt ? `last ok pass at ${isoSeconds(lastOkAt)}` : 'no pass ok yet';
  switch (last.kind) {
    case 'ok':
      return `last pass ok at ${at} (${(last.durationMs / 1000).toFixed(1)} s), ${last.changed} changed`;
    case 'failed':
      return oneLine(`last pass failed at ${at} (exit ${last.exitCode}): ${last.error}; ${lastOk}`);
    case 'paused':
      return oneLine(`sync paused (flag file ${last.flagFile}), seen at ${at}; ${lastOk}`);
    case 'skipped':
      return oneLine(`last pass skipped at ${at}: ${last.why}; ${lastOk}`);
  }
}

/** What makes a new status worth a message at once rather than at the next refresh. */
function kindOf(last: LastPass): string {
  if (last.kind === 'ok') return last.changed > 0 ? 'ok, changed' : 'ok';
  if (last.kind === 'failed') return `failed ${last.exitCode} ${last.error}`;
  return last.kind === 'paused' ? 'paused' : `skipped ${last.why}`;
}

function isoSeconds(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** STATUS= is one line of printable text: an error message must not forge a second field. */
function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f]+/g, ' ').slice(0, 400);
}

export interface NotifyEnv {
  readonly NOTIFY_SOCKET?: string;
  readonly WATCHDOG_USEC?: string;
  readonly WATCHDOG_PID?: string;
}

/** The ping period: half of WatchdogSec=, as sd_watchdog_enabled(3) advises; undefined when not for this process. */
export function watchdogPingMs(env: NotifyEnv, pid = process.pid): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isFinite(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== pid) return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}

/**
 * The notify variables, taken out of this process's environment (as
 * sd_notify's unset_environment does): an --on-change command must not
 * inherit them, or what it runs could set our unit's status or readiness.
 */
export function takeNotifyEnv(env: NodeJS.ProcessEnv = process.env): NotifyEnv {
  const taken = { NOTIFY_SOCKET: env.NOTIFY_SOCKET, WATCHDOG_USEC: env.WATCHDOG_USEC, WATCHDOG_PID: env.WATCHDOG_PID };
  delete env.NOTIFY_SOCKET;
  delete env.WATCHDOG_USEC;
  delete env.WATCHDOG_PID;
  return taken;
}

type Send = (fields: readonly string[], socket: string) => Promise<void>;

/** Runs `systemd-notify FIELD=VALUE…` with NOTIFY_SOCKET in its environment only. */
const sendWithSystemdNotify: Send = (fields, socket) =>
  new Promise((resolve, reject) => {
    const env = { ...process.env, NOTIFY_SOCKET: socket };
    execFile('systemd-notify', [...fields], { env, timeout: SEND_TIMEOUT_MS, killSignal: 'SIGKILL' }, (error, _stdout, stderr) =>
      error ? reject(new Error(`systemd-notify ${fields.map((f) => f.split('=')[0]).join(' ')}: ${stderr.trim() || error.message}`)) : resolve(),
    );
  });

export class SystemdNotifier {
  private last: LastPass | undefined;
  private lastOkAt: Date | undefined;
  private sentKind: string | undefined;
  private sentStatus: string | undefined;
  private ready = false;
  private stopped = false;
  /** One systemd-notify at a time; fields asked for meanwhile go out together after it. */
  private inFlight: Promise<void> | undefined;
  private pending = new Map<string, string>();
  private refreshTimer: NodeJS.Timeout | undefined;
  private warned = false;
  readonly enabled: boolean;
  private readonly socket: string;
  readonly pingMs: number | undefined;
  /** Messages sent so far (runs of systemd-notify). */
  sent = 0;

  constructor(
    private readonly logger: Logger,
    env: NotifyEnv = process.env,
    private readonly send: Send = sendWithSystemdNotify,
  ) {
    this.socket = env.NOTIFY_SOCKET ?? '';
    this.enabled = this.socket !== '';
    this.pingMs = this.enabled ? watchdogPingMs(env) : undefined;
  }

  /** Says the first pass is running and starts the watchdog pings. */
  start(): void {
    if (!this.enabled) return;
    this.queue({ STATUS: 'first pass running' });
    const every = this.pingMs ?? STATUS_REFRESH_MS;
    this.refreshTimer = setInterval(() => this.refresh(), every);
    this.refreshTimer.unref();
  }

  /** After each pass (or skipped pass): READY=1 after the first, STATUS= when its kind changed. */
  passEnded(last: LastPass): void {
    this.last = last;
    if (last.kind === 'ok') this.lastOkAt = last.at;
    if (!this.enabled || this.stopped) return;
    const kind = kindOf(last);
    if (this.ready && kind === this.sentKind) return; // the refresh timer brings the new time
    const fields: Record<string, string> = { STATUS: describeLastPass(last, this.lastOkAt) };
    if (!this.ready) fields.READY = '1';
    this.ready = true;
    this.sentKind = kind;
    this.queue(fields);
  }

  /** STOPPING=1; no more messages after it. */
  async stop(): Promise<void> {
    clearInterval(this.refreshTimer);
    if (!this.enabled || this.stopped) return;
    this.queue({ STOPPING: '1', STATUS: 'stopping' });
    this.stopped = true;
    await this.inFlight;
  }

  private refresh(): void {
    const fields: Record<string, string> = {};
    if (this.pingMs !== undefined) fields.WATCHDOG = '1';
    if (this.last) {
      const status = describeLastPass(this.last, this.lastOkAt);
      if (status !== this.sentStatus) fields.STATUS = status;
    }
    if (Object.keys(fields).length > 0) this.queue(fields);
  }

  private queue(fields: Record<string, string>): void {
    if (this.stopped) return;
    for (const [name, value] of Object.entries(fields)) this.pending.set(name, value);
    if (!this.inFlight) this.inFlight = this.drain();
  }

  private async drain(): Promise<void> {
    while (this.pending.size > 0) {
      const fields = [...this.pending].map(([name, value]) => `${name}=${value}`);
      const status = this.pending.get('STATUS');
      this.pending.clear();
      if (status !== undefined) this.sentStatus = status;
      this.sent++;
      await this.send(fields, this.socket).catch((error: unknown) => this.warnOnce(error));
    }
    this.inFlight = undefined;
  }

  private warnOnce(error: unknown): void {
    if (this.warned) return;
    this.warned = true;
    // With WatchdogSec= set, systemd restarts the daemon when pings cannot be sent: say why, once.
    this.logger.warn({
      msg: 'cannot notify systemd (NOTIFY_SOCKET is set); status and watchdog pings are lost',
      error: error instanceof Error ? error.message : String(error),
    });
  }
}
