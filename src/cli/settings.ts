/**
 * Settings from the same place as the units: /etc/default/xroad-sync
 * (Debian/Ubuntu) and /etc/sysconfig/xroad-sync (RHEL), read like systemd's
 * EnvironmentFile=, so `sudo -u xroad xroad-sync resume --now` uses the
 * MASTER, XROAD_USER and XROAD_SYNC_OPTS the operator set there.
 *
 * Precedence, highest first: a flag on the command line; the environment
 * (MASTER, XROAD_USER, XROAD_SYNC_OPTS); the settings file (XROAD_SYNC_OPTS
 * over its MASTER/XROAD_USER, as in the units' ExecStart=); the default.
 * `--settings FILE` or XROAD_SYNC_SETTINGS (empty: none) reads another file.
 */
import { Command, type Option } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import { environmentOf, parseEnvironmentFile, splitWords } from '../settings/env-file.js';
import { addPassOptions, addWaitOption } from './options.js';

const SETTINGS_FILES = ['/etc/default/xroad-sync', '/etc/sysconfig/xroad-sync'] as const;

/** Option name (commander attribute) → where its value came from, for `check`. */
export type SettingOrigins = Map<string, string>;

interface Layer {
  readonly origin: (flag: string) => string;
  readonly values: Map<string, unknown>;
}

/** Fill `cmd`'s options that no flag set from the environment and the settings file; returns each option's origin. */
export function applySettings(cmd: Command, env: NodeJS.ProcessEnv = process.env): SettingOrigins {
  const explicit = cmd.getOptionValueSource('settings') === 'cli' ? String(cmd.getOptionValue('settings')) : undefined;
  const files = settingsFiles(explicit, env);
  const layers: Layer[] = [];
  if (env.XROAD_SYNC_OPTS) layers.push(optsLayer(env.XROAD_SYNC_OPTS, 'XROAD_SYNC_OPTS in the environment'));
  // Later files override earlier ones, as with the units' two EnvironmentFile= lines.
  const vars = new Map<string, { value: string; file: string }>();
  for (const file of files) {
    for (const [key, value] of environmentOf(readSettingsFile(file).entries)) vars.set(key, { value, file });
  }
  exportSettingVariables(vars, env);
  const wordVars = cmd.name() === 'daemon' ? ['XROAD_SYNC_DAEMON_OPTS', 'XROAD_SYNC_OPTS'] : ['XROAD_SYNC_OPTS'];
  for (const name of wordVars) {
    const v = vars.get(name);
    if (v?.value) layers.push(optsLayer(v.value, `${name} in ${v.file}`, name === 'XROAD_SYNC_DAEMON_OPTS'));
  }
  for (const [name, option] of [['MASTER', 'master'], ['XROAD_USER', 'user'], ['XROAD_SYNC_METRICS_FILE', 'metricsFile']] as const) {
    const v = vars.get(name);
    if (v?.value) layers.push({ origin: () => `${name} in ${v.file}`, values: new Map([[option, v.value]]) });
  }

  const origins: SettingOrigins = new Map();
  for (const option of cmd.options as readonly Option[]) {
    const key = option.attributeName();
    if (key === 'settings') continue;
    const source = cmd.getOptionValueSource(key);
    if (source === 'cli') {
      origins.set(key, 'flag');
      continue;
    }
    if (source === 'env') {
      origins.set(key, `environment ${option.envVar}`);
      continue;
    }
    const layer = layers.find((l) => l.values.has(key));
    if (layer) {
      cmd.setOptionValueWithSource(key, layer.values.get(key), 'config');
      origins.set(key, layer.origin(option.long ?? key));
    } else {
      origins.set(key, 'default');
    }
  }
  return origins;
}

/**
 * Settings that modules read by name rather than as flags (the serverconf
 * replica's SERVERCONF_*, the operator's XROAD_SYNC_RESTART_RULES): the file's value reaches them through the
 * environment, unless the environment already sets that name (it wins).
 */
const VARIABLES_READ_BY_NAME = /^(SERVERCONF_[A-Z_]+|XROAD_SYNC_RESTART_RULES)$/;

function exportSettingVariables(vars: ReadonlyMap<string, { value: string }>, env: NodeJS.ProcessEnv): void {
  for (const [name, { value }] of vars) {
    if (VARIABLES_READ_BY_NAME.test(name) && env[name] === undefined) env[name] = value;
  }
}

function settingsFiles(explicit: string | undefined, env: NodeJS.ProcessEnv): string[] {
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

function readSettingsFile(file: string): ReturnType<typeof parseEnvironmentFile> {
  try {
    return parseEnvironmentFile(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new ConfigError(`cannot read the settings file ${file}`, { subject: file, cause, hint: 'it must be readable by the user running xroad-sync (mode 0644)' });
  }
}

/** The flags in XROAD_SYNC_OPTS, split as systemd splits an unquoted $XROAD_SYNC_OPTS. */
function optsLayer(text: string, where: string, daemonOnly = false): Layer {
  // What `sync $XROAD_SYNC_OPTS` accepts (the units pass it to sync too); --interval only in the daemon's variable.
  const parser = addWaitOption(addPassOptions(new Command('settings'))).option('--now');
  if (daemonOnly) parser.option('--interval <duration>');
  parser
    .exitOverride()
    .configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  try {
    parser.parse(splitWords(text), { from: 'user' });
  } catch (cause) {
    throw new ConfigError(`${where}: ${cause instanceof Error ? cause.message.replace(/^error: /, '') : String(cause)}`, {
      subject: where,
      hint: 'XROAD_SYNC_OPTS holds sync options only (see xroad-sync sync --help); daemon options go in XROAD_SYNC_DAEMON_OPTS',
    });
  }
  if (parser.args.length > 0) throw new ConfigError(`${where}: unexpected argument "${parser.args[0]}"`, { subject: where });
  const values = new Map<string, unknown>();
  for (const [key, value] of Object.entries(parser.opts())) {
    if (parser.getOptionValueSource(key) === 'cli') values.set(key, value);
  }
  return { origin: () => where, values };
}
