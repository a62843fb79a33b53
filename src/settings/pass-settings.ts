/**
 * Everything a pass needs to know, resolved once from flags, environment and
 * defaults (flags win over environment, environment over defaults). The
 * defaults are those of the X-Road load balancer guide's rsync job.
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { DEFAULT_EXCLUDES } from '../filter/types.js';
import { durationOption } from '../util/duration.js';

export interface ConnectionSettings {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly identityFile: string;
  readonly knownHostsFile: string;
  readonly connectTimeoutMs: number;
  /** No progress for this long aborts the pass (rsync --timeout). */
  readonly idleTimeoutMs: number;
}

export interface PassSettings {
  readonly connection: ConnectionSettings;
  /** Absolute directory on the master (the guide: /etc/xroad/). */
  readonly sourceDir: string;
  /** Absolute local directory, no trailing slash. */
  readonly targetDir: string;
  readonly excludes: readonly string[];
  readonly flagFile: string;
  readonly logFile: string | null;
  readonly stateDir: string;
  readonly dryRun: boolean;
  /** Refuse a pass that deletes more files than this; undefined = half of the synced files in the target. */
  readonly maxDelete: number | undefined;
  readonly force: boolean;
  /** Files fetched at once. */
  readonly concurrency: number;
  /** Limits that protect the slave's disk from a runaway or hostile master; exceeding one fails the pass before commit. */
  readonly limits: TransferLimits;
  /** Shell command run after a pass that changed something, with the changed paths on stdin. */
  readonly onChange: string | null;
  /** How long a pass waits for another pass's lock before exit 75. */
  readonly lockWaitMs: number;
  /** Prometheus textfile rewritten after each pass (--metrics-file); null: none. */
  readonly metricsFile: string | null;
}

export interface TransferLimits {
  readonly maxFileSize: number;
  readonly maxTotalBytes: number;
  readonly maxFiles: number;
}

export const DEFAULTS = {
  port: 22,
  user: 'xroad-slave',
  sourceDir: '/etc/xroad/',
  targetDir: '/etc/xroad/',
  flagFile: '/var/tmp/xroad/sync-disabled',
  logFile: '/var/log/xroad/slave-sync.log',
  stateDir: '/var/lib/xroad-sync',
  connectTimeoutS: 5,
  timeoutS: 10,
  concurrency: 16,
  /** The daemon's time between passes: a master change reaches the slave within about a second. */
  intervalS: 1,
  /** The daemon's polling of an unchanged master: at most this % of one core (README: large trees). */
  pollCpuPercent: 2,
  /** A by-hand pass waits this long for one in flight (a pass takes seconds; the oneshot unit allows 120 s). */
  lockWaitS: 120,
  /** Generous for /etc/xroad (a few hundred files, a few MB), finite for a master gone wrong. */
  maxFileSize: '1G',
  maxTotalBytes: '4G',
  maxFiles: 200_000,
} as const;

/** The options as commander hands them over (strings where the user typed them). */
export interface RawPassOptions {
  master?: string;
  port?: string | number;
  user?: string;
  identity?: string;
  knownHosts?: string;
  source?: string;
  target?: string;
  exclude?: string[];
  defaultExcludes?: boolean;
  flagFile?: string;
  logFile?: string | false;
  stateDir?: string;
  connectTimeout?: string | number;
  timeout?: string | number;
  dryRun?: boolean;
  maxDelete?: string | number;
  force?: boolean;
  concurrency?: string | number;
  onChange?: string;
  maxFileSize?: string | number;
  maxTotalBytes?: string | number;
  maxFiles?: string | number;
  wait?: string | number;
  metricsFile?: string;
}

export function resolvePassSettings(raw: RawPassOptions, env: NodeJS.ProcessEnv = process.env): PassSettings {
  const host = raw.master ?? env.MASTER;
  if (!host) throw new ConfigError('no master given', { subject: '--master', hint: 'pass --master HOST or set MASTER in /etc/default/xroad-sync' });
  // Each pattern once: the same one from the defaults and a flag is one exclude.
  const excludes = [...new Set([...(raw.defaultExcludes === false ? [] : DEFAULT_EXCLUDES), ...(raw.exclude ?? [])])];
  return {
    connection: {
      host,
      port: integer(raw.port ?? DEFAULTS.port, '--port', 1, 65535),
      user: raw.user ?? env.XROAD_USER ?? DEFAULTS.user,
      identityFile: raw.identity ? resolve(raw.identity) : defaultIdentity(),
      knownHostsFile: resolve(raw.knownHosts ?? join(homedir(), '.ssh', 'known_hosts')),
      connectTimeoutMs: durationOption(raw.connectTimeout ?? DEFAULTS.connectTimeoutS, '--connect-timeout', { minMs: 100, maxMs: 3_600_000 }),
      idleTimeoutMs: durationOption(raw.timeout ?? DEFAULTS.timeoutS, '--timeout', { minMs: 100, maxMs: 3_600_000 }),
    },
    sourceDir: remoteDir(raw.source ?? DEFAULTS.sourceDir),
    targetDir: resolve(raw.target ?? DEFAULTS.targetDir),
    excludes,
    flagFile: resolve(raw.flagFile ?? DEFAULTS.flagFile),
    logFile: raw.logFile === false ? null : resolve(raw.logFile ?? DEFAULTS.logFile),
    stateDir: resolve(raw.stateDir ?? DEFAULTS.stateDir),
    dryRun: raw.dryRun ?? false,
    maxDelete: raw.maxDelete === undefined ? undefined : integer(raw.maxDelete, '--max-delete', 0, Number.MAX_SAFE_INTEGER),
    force: raw.force ?? false,
    concurrency: integer(raw.concurrency ?? DEFAULTS.concurrency, '--concurrency', 1, 256),
    onChange: raw.onChange ?? null,
    lockWaitMs: lockWait(raw.wait),
    metricsFile: raw.metricsFile ? resolve(raw.metricsFile) : null,
    limits: {
      maxFileSize: byteSize(raw.maxFileSize ?? DEFAULTS.maxFileSize, '--max-file-size'),
      maxTotalBytes: byteSize(raw.maxTotalBytes ?? DEFAULTS.maxTotalBytes, '--max-total-bytes'),
      maxFiles: integer(raw.maxFiles ?? DEFAULTS.maxFiles, '--max-files', 1, Number.MAX_SAFE_INTEGER),
    },
  };
}

/** Like ssh: the first of id_ed25519, id_ecdsa, id_rsa in ~/.ssh that exists. */
function defaultIdentity(home = homedir()): string {
  const candidates = ['id_ed25519', 'id_ecdsa', 'id_rsa'].map((n) => join(home, '.ssh', n));
  return candidates.find((p) => existsSync(p)) ?? candidates[0]!;
}

function remoteDir(dir: string): string {
  if (!dir.startsWith('/')) throw new ConfigError(`--source must be an absolute path on the master, got "${dir}"`, { subject: '--source' });
  return dir.replace(/\/+$/, '') || '/';
}

function integer(value: string | number, flag: string, min: number, max: number): number {
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${flag} must be a whole number from ${min} to ${max}, got "${value}"`, { subject: flag });
  }
  return n;
}

/** A byte count, with an optional K, M or G suffix (powers of 1024). */
function byteSize(value: string | number, flag: string): number {
  const match = /^(\d+)([KMG]?)i?B?$/i.exec(String(value).trim());
  if (!match) throw new ConfigError(`${flag} must be a size like 500M or 2G, got "${value}"`, { subject: flag });
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[match[2]!.toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Number(match[1]) * unit;
}

/** --wait: 0 is allowed (fail at once, as before). */
export function lockWait(value: string | number | undefined): number {
  return durationOption(value ?? DEFAULTS.lockWaitS, '--wait', { minMs: 0, maxMs: 86_400_000 });
}
