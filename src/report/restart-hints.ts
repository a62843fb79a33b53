/**
 * Which X-Road services must be restarted before a synced change takes effect.
 * IG-XLB 5.2: "only modifications to the signer keyconf will be applied when
 * the system is running. Changes to any other configuration files, like
 * local.ini, require restarting the services, which is not automatic."
 *
 * The rules are globs (micromatch, dotfiles included) over paths relative to
 * /etc/xroad, because operators extend them: `XROAD_SYNC_RESTART_RULES` in
 * the settings file adds rules that are tried before these. First match wins.
 * micromatch is imported on first use: only a pass that changed something
 * needs it, and a timer pass that changed nothing should not pay its load.
 */

import { ConfigError } from '../errors.js';

const ALL = ['xroad-proxy', 'xroad-signer', 'xroad-confclient', 'xroad-proxy-ui-api'];

export interface RestartRule {
  readonly globs: readonly string[];
  /** Empty: applied live, no restart. */
  readonly services: readonly string[];
}

const RESTART_RULES: readonly RestartRule[] = [
  // The signer watches keyconf.xml on slaves and reloads it (and the keys it names) live.
  { globs: ['signer/keyconf.xml', 'signer/softtoken/**/*', 'signer/*.p12'], services: [] },
  { globs: ['backup.d/**/*', 'autologin', 'backupkeys/**/*'], services: [] },
  { globs: ['conf.d/{local,common}.ini', 'services/{global.conf,local.properties}'], services: ALL },
  {
    globs: ['conf.d/{proxy.ini,proxy-logback.xml}', 'conf.d/addons/{message-log.ini,messagelog-archiver-logback.xml}', 'services/proxy.conf', 'ssl/internal.*'],
    services: ['xroad-proxy'],
  },
  {
    globs: ['conf.d/{signer,signer-console}{.ini,-logback.xml}', 'services/{signer,signer-console}.conf', 'devices.ini', 'signer/devices.ini'],
    services: ['xroad-signer'],
  },
  { globs: ['conf.d/confclient-logback*.xml', 'services/confclient.conf', 'configuration-anchor.xml'], services: ['xroad-confclient'] },
  { globs: ['conf.d/proxy-ui-api*', 'services/proxy-ui-api.conf', 'ssl/proxy-ui-api.*'], services: ['xroad-proxy-ui-api'] },
  { globs: ['conf.d/op-monitor*', 'services/opmonitor.conf'], services: ['xroad-opmonitor'] },
  { globs: ['conf.d/addons/monitor*', 'services/monitor.conf'], services: ['xroad-monitor'] },
  { globs: ['jetty/**/*'], services: ['xroad-jetty'] },
  { globs: ['conf.d/**/*'], services: ALL },
];

const GLOB_OPTIONS = { dot: true } as const;

/**
 * Operator rules from one setting: `GLOB[,GLOB…]=SERVICE[ SERVICE…]` entries
 * separated by `;`, e.g. `conf.d/custom/*.ini=xroad-proxy; ssl/extra.*=`
 * (an empty service list: applied live). Throws with the entry at fault.
 */
export function parseRestartRules(text: string): RestartRule[] {
  const rules: RestartRule[] = [];
  for (const raw of text.split(';')) {
    const entry = raw.trim();
    if (entry === '') continue;
    const eq = entry.indexOf('=');
    if (eq <= 0) throw new Error(`restart rule "${entry}" is not GLOB=SERVICE…; e.g. conf.d/custom/*.ini=xroad-proxy`);
    const globs = entry
      .slice(0, eq)
      .split(',')
      .map((g) => g.trim())
      .filter((g) => g !== '');
    const services = entry
      .slice(eq + 1)
      .split(/[\s,]+/)
      .filter((s) => s !== '');
    const bad = services.find((s) => !/^[A-Za-z0-9@._-]+$/.test(s));
    if (bad !== undefined) throw new Error(`restart rule "${entry}": "${bad}" is not a unit name`);
    rules.push({ globs, services });
  }
  return rules;
}

/** The variable (environment, or the settings file through it) holding operator rules. */
const RESTART_RULES_VARIABLE = 'XROAD_SYNC_RESTART_RULES';

/** The operator's rules, tried before the built-in ones; a malformed value is a configuration error naming it. */
export function operatorRestartRules(env: NodeJS.ProcessEnv = process.env): RestartRule[] {
  try {
    return parseRestartRules(env[RESTART_RULES_VARIABLE] ?? '');
  } catch (cause) {
    throw new ConfigError(`${RESTART_RULES_VARIABLE}: ${cause instanceof Error ? cause.message : String(cause)}`, {
      subject: RESTART_RULES_VARIABLE,
      hint: 'entries GLOB[,GLOB…]=SERVICE[ SERVICE…] separated by ";", e.g. conf.d/custom/*.ini=xroad-proxy',
    });
  }
}

/** Service → the changed paths that need it restarted. Paths no rule knows are listed under "unknown". */
export async function restartsNeeded(changedPaths: readonly string[], extraRules: readonly RestartRule[] = []): Promise<Map<string, string[]>> {
  const { default: micromatch } = await import('micromatch');
  // Each rule's globs compiled once, into one regular expression (micromatch.isMatch would compile
  // them again for every path: ~70 µs per path and rule, a third of a second of CPU on a 5,000-file
  // initial sync). Compiled on first use: a pass that changed one file compiles only the rules up to its match.
  const oneRegExp = (globs: readonly string[]): RegExp => new RegExp(globs.map((g) => micromatch.makeRe(g, GLOB_OPTIONS).source).join('|'));
  const rules = [...extraRules, ...RESTART_RULES].map((r) => {
    let re: RegExp | undefined;
    // A glob equal to the path matches it as a literal name too, as micromatch's matchers do (`conf.d/x(1).ini`).
    return { services: r.services, matches: (path: string) => (re ??= oneRegExp(r.globs)).test(path) || r.globs.includes(path) };
  });
  const needed = new Map<string, string[]>();
  for (const path of changedPaths) {
    if (path === '') continue;
    const rule = rules.find((r) => r.matches(path));
    for (const service of rule ? rule.services : ['unknown']) {
      const list = needed.get(service) ?? [];
      list.push(path);
      needed.set(service, list);
    }
  }
  return needed;
}

/** One line per set of services, e.g. "restart xroad-proxy, xroad-signer to apply conf.d/local.ini". */
export async function restartHintLines(changedPaths: readonly string[], extraRules: readonly RestartRule[] = []): Promise<string[]> {
  const servicesByPaths = new Map<string, string[]>();
  for (const [service, paths] of await restartsNeeded(changedPaths, extraRules)) {
    if (service === 'unknown') continue; // new or unusual files: no advice rather than wrong advice
    const key = abbreviate(paths);
    servicesByPaths.set(key, [...(servicesByPaths.get(key) ?? []), service]);
  }
  return [...servicesByPaths].map(([paths, services]) => `restart ${services.join(', ')} to apply ${paths}`);
}

/** An initial sync changes every path: name five, count the rest. */
function abbreviate(paths: readonly string[]): string {
  return paths.length <= 5 ? paths.join(', ') : `${paths.slice(0, 5).join(', ')} and ${paths.length - 5} more`;
}
