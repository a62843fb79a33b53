/** `xroad-sync check`: the diagnostics are check/'s; here each outcome is printed as it is known. */
import { type CheckOutput, originLines, runChecks } from '../check/checks.js';
import { checkReplicaAccess } from '../check/replica-access.js';
import { ExitCode } from '../errors.js';
import type { SettingOrigins } from '../settings/layers.js';
import { type RawPassOptions, resolvePassSettings } from '../settings/pass-settings.js';
import { escapeControls, printLine, printReport } from '../util/output.js';
import { type Opts, replicaSettingsFor } from './replica-commands.js';

/** One line each, escaped as in slave-sync.log: a master file name can be in the text. */
const checkOutput: CheckOutput = {
  outcome(o) {
    printLine(`${o.ok ? 'ok  ' : 'FAIL'} ${escapeControls(o.text)}`);
    if (o.fix) printLine(`     fix: ${escapeControls(o.fix)}`);
  },
  report: printReport,
};

export async function checkCommand(raw: RawPassOptions, ctx?: { origins: SettingOrigins }): Promise<number> {
  const settings = resolvePassSettings(raw);
  if (ctx) for (const line of originLines(settings, ctx.origins)) printLine(line);
  return runChecks(settings, checkOutput);
}

/** `check`'s replica lines, printed as the config checks are. */
export async function checkReplicaCommand(opts: Opts): Promise<number> {
  const settings = replicaSettingsFor(opts);
  if (settings === null) return ExitCode.OK;
  if (typeof settings === 'number') return settings;
  return checkReplicaAccess(settings, checkOutput);
}
