/**
 * Settings from the same place as the units: /etc/default/xroad-sync
 * (Debian/Ubuntu) and /etc/sysconfig/xroad-sync (RHEL), read like systemd's
 * EnvironmentFile=, so `sudo -u xroad xroad-sync resume --now` uses the
 * MASTER, XROAD_USER and XROAD_SYNC_OPTS the operator set there.
 *
 * Precedence, highest first: a flag on the command line; the environment
 * (MASTER, XROAD_USER, XROAD_SYNC_OPTS); the settings file (for the daemon
 * XROAD_SYNC_DAEMON_OPTS, then XROAD_SYNC_OPTS, over its MASTER/XROAD_USER,
 * as in the units' ExecStart=); the default. A repeatable option (--exclude)
 * is not overridden but added up across every layer, as the units add
 * $XROAD_SYNC_OPTS and $XROAD_SYNC_DAEMON_OPTS together: a flag typed by hand
 * never drops an exclude the settings file holds.
 *
 * How the flags inside XROAD_SYNC_OPTS are parsed is the command line's
 * business (cli/settings.ts hands in a parser); this module decides which
 * layers exist, in what order, and how their values combine.
 */
import { existsSync, readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import { environmentOf, parseEnvironmentFile } from './env-file.js';

const SETTINGS_FILES = ['/etc/default/xroad-sync', '/etc/sysconfig/xroad-sync'] as const;

/** One value of a repeatable option, with every place that gave it (a pattern in both a flag and the file names both). */
export interface SettingItem {
  readonly value: string;
  readonly from: readonly string[];
}

/** Option name (commander attribute) → where its value came from, for `check`; repeatable options also per value. */
export class SettingOrigins extends Map<string, string> {
  readonly items = new Map<string, readonly SettingItem[]>();
}

/** A source of option values: the flags in one variable, or MASTER/XROAD_USER. */
export interface SettingLayer {
  readonly origin: string;
  readonly values: ReadonlyMap<string, unknown>;
}

/** Splits and parses the flags in XROAD_SYNC_OPTS (`where` names the variable for errors); returns the options it set. */
export type OptionWordsParser = (text: string, where: string, daemonOnly: boolean) => ReadonlyMap<string, unknown>;

interface FileVariable {
  readonly value: string;
  readonly file: string;
}

/**
 * The settings files to read: `explicit` (--settings), else XROAD_SYNC_SETTINGS
 * (empty: none), else the distribution's files that exist.
 */
export function settingsFiles(explicit: string | undefined, env: NodeJS.ProcessEnv): string[] {
  const named = explicit ?? env.XROAD_SYNC_SETTINGS;
  if (named === undefined) return SETTINGS_FILES.filter((f) => existsSync(f));
  if (named === '') return [];
  if (!existsSync(named)) {
    throw new ConfigError(`the settings file ${named} does not exist`, {
      subject: named,
      hint: explicit ? 'check --settings' : 'XROAD_SYNC_SETTINGS names it; set it empty to read no settings file',
    });
  }
  return [named];
}

/** The variables of the files; later files override earlier ones, as with the units' two EnvironmentFile= lines. */
export function readSettingsVariables(files: readonly string[]): Map<string, FileVariable> {
  const vars = new Map<string, FileVariable>();
  for (const file of files) {
    for (const [key, value] of environmentOf(readSettingsFile(file).entries)) vars.set(key, { value, file });
  }
  return vars;
}

function readSettingsFile(file: string): ReturnType<typeof parseEnvironmentFile> {
  try {
    return parseEnvironmentFile(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new ConfigError(`cannot read the settings file ${file}`, {
      subject: file,
      cause,
      hint: 'it must be readable by the user running xroad-sync (mode 0644)',
    });
  }
}

/**
 * Settings that modules read by name rather than as flags (the serverconf
 * replica's SERVERCONF_*, the operator's XROAD_SYNC_RESTART_RULES and
 * XROAD_SYNC_LOG_LEVEL, XROAD_SYNC_FLUSH): the file's value reaches them through the
 * environment, as the units' EnvironmentFile= exports it, unless the
 * environment already sets that name (it wins). The cron job relies on this:
 * it no longer sources the file with /bin/sh.
 */
const VARIABLES_READ_BY_NAME = /^(SERVERCONF_[A-Z_]+|XROAD_SYNC_RESTART_RULES|XROAD_SYNC_LOG_LEVEL|XROAD_SYNC_FLUSH)$/;

export function exportVariablesReadByName(vars: ReadonlyMap<string, { value: string }>, env: NodeJS.ProcessEnv): void {
  for (const [name, { value }] of vars) {
    if (VARIABLES_READ_BY_NAME.test(name) && env[name] === undefined) env[name] = value;
  }
}

/** The layers below the command line, highest first. */
const REACH_THE_DAEMON = new Set(['pause', 'resume', 'status']);

export function settingLayers(command: string, env: NodeJS.ProcessEnv, vars: ReadonlyMap<string, FileVariable>, parse: OptionWordsParser): SettingLayer[] {
  const layers: SettingLayer[] = [];
  if (env.XROAD_SYNC_OPTS) layers.push(wordsLayer(env.XROAD_SYNC_OPTS, 'XROAD_SYNC_OPTS in the environment', false, parse));
  // The daemon unit's ExecStart= puts $XROAD_SYNC_DAEMON_OPTS last: its flags win over XROAD_SYNC_OPTS's. The commands
  // that must reach a running daemon (its lock, its flag) see it as the daemon does: a `pause` looking at the timer's
  // --state-dir and --flag-file would return "paused" while the daemon goes on syncing.
  const wordVars = command === 'daemon' || REACH_THE_DAEMON.has(command) ? ['XROAD_SYNC_DAEMON_OPTS', 'XROAD_SYNC_OPTS'] : ['XROAD_SYNC_OPTS'];
  for (const name of wordVars) {
    const v = vars.get(name);
    if (v?.value) layers.push(wordsLayer(v.value, `${name} in ${v.file}`, name === 'XROAD_SYNC_DAEMON_OPTS', parse));
  }
  for (const [name, option] of [
    ['MASTER', 'master'],
    ['XROAD_USER', 'user'],
    ['XROAD_SYNC_METRICS_FILE', 'metricsFile'],
  ] as const) {
    const v = vars.get(name);
    if (v?.value) layers.push({ origin: `${name} in ${v.file}`, values: new Map([[option, v.value]]) });
  }
  return layers;
}

function wordsLayer(text: string, where: string, daemonOnly: boolean, parse: OptionWordsParser): SettingLayer {
  return { origin: where, values: parse(text, where, daemonOnly) };
}

/** An option's value as given above the layers (a flag or its own environment variable), with its origin. */
export interface GivenValue {
  readonly value: unknown;
  readonly origin: string;
}

export interface LayeredValue {
  readonly value: unknown;
  readonly origin: string;
  /** Whether a layer supplied (part of) the value, rather than only the given one. */
  readonly fromLayers: boolean;
  /** For a repeatable option: each value once, with every place that gave it. */
  readonly items?: readonly SettingItem[];
}

/**
 * One option's effective value. A single-valued option takes the given value,
 * else the highest layer that sets it. A repeatable one collects its values
 * from the given value and every layer, each value once, in that order.
 * Undefined: nothing sets it (the option's default applies).
 */
export function layeredValue(key: string, repeatable: boolean, given: GivenValue | undefined, layers: readonly SettingLayer[]): LayeredValue | undefined {
  if (!repeatable) {
    if (given) return { ...given, fromLayers: false };
    const layer = layers.find((l) => l.values.has(key));
    return layer && { value: layer.values.get(key), origin: layer.origin, fromLayers: true };
  }
  const sources = [...(given ? [given] : []), ...layers.filter((l) => l.values.has(key)).map((l) => ({ value: l.values.get(key), origin: l.origin }))];
  if (sources.length === 0) return undefined;
  const items = new Map<string, string[]>();
  for (const { value, origin } of sources) {
    for (const item of value as readonly string[]) {
      const from = items.get(item) ?? [];
      if (!from.includes(origin)) from.push(origin);
      items.set(item, from);
    }
  }
  return {
    value: [...items.keys()],
    origin: [...new Set(sources.map((s) => s.origin))].join(', '),
    fromLayers: sources.length > (given ? 1 : 0),
    items: [...items].map(([value, from]) => ({ value, from })),
  };
}
