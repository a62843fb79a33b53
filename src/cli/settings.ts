/**
 * The settings layers (settings/layers.ts) wired into commander: fills a
 * command's options that no flag set, and parses the flags inside
 * XROAD_SYNC_OPTS with the same option definitions `sync` has.
 */
import { Command, type Option } from 'commander';
import { ConfigError } from '../errors.js';
import { splitWords } from '../settings/env-file.js';
import {
  exportVariablesReadByName,
  type GivenValue,
  layeredValue,
  readSettingsVariables,
  SettingOrigins,
  settingLayers,
  settingsFiles,
} from '../settings/layers.js';
import { addIntervalOption, addPassOptions, addWaitOption, isRepeatable } from './options.js';

export { SettingOrigins };

/** Fill `cmd`'s options from the environment and the settings file; returns each option's origin. */
export function applySettings(cmd: Command, env: NodeJS.ProcessEnv = process.env): SettingOrigins {
  const explicit = cmd.getOptionValueSource('settings') === 'cli' ? String(cmd.getOptionValue('settings')) : undefined;
  const vars = readSettingsVariables(settingsFiles(explicit, env));
  exportVariablesReadByName(vars, env);
  const layers = settingLayers(cmd.name(), env, vars, parseOptionWords);

  const origins = new SettingOrigins();
  for (const option of cmd.options as readonly Option[]) {
    const key = option.attributeName();
    if (key === 'settings') continue;
    const found = layeredValue(key, isRepeatable(option), givenValue(cmd, option), layers);
    if (!found) {
      origins.set(key, 'default');
      continue;
    }
    if (found.fromLayers) cmd.setOptionValueWithSource(key, found.value, 'config');
    origins.set(key, found.origin);
    if (found.items) origins.items.set(key, found.items);
  }
  return origins;
}

/** The value a flag or the option's own environment variable (MASTER, XROAD_USER) gave, if any. */
function givenValue(cmd: Command, option: Option): GivenValue | undefined {
  const key = option.attributeName();
  const source = cmd.getOptionValueSource(key);
  if (source === 'cli') return { value: cmd.getOptionValue(key), origin: 'flag' };
  if (source === 'env') return { value: cmd.getOptionValue(key), origin: `environment ${option.envVar}` };
  return undefined;
}

/** The flags in XROAD_SYNC_OPTS, split as systemd splits an unquoted $XROAD_SYNC_OPTS. */
function parseOptionWords(text: string, where: string, daemonOnly: boolean): Map<string, unknown> {
  // What `sync $XROAD_SYNC_OPTS` accepts (the units pass it to sync too); --interval only in the daemon's variable.
  const parser = addWaitOption(addPassOptions(new Command('settings'))).option('--now');
  if (daemonOnly) addIntervalOption(parser);
  parser.exitOverride().configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
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
  return values;
}
