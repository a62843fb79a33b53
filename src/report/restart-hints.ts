/**
 * Which X-Road services must be restarted before a synced change takes effect.
 * IG-XLB 5.2: "only modifications to the signer keyconf will be applied when
 * the system is running. Changes to any other configuration files, like
 * local.ini, require restarting the services, which is not automatic."
 * First matching rule wins; paths are relative to /etc/xroad.
 */

const ALL = ['xroad-proxy', 'xroad-signer', 'xroad-confclient', 'xroad-proxy-ui-api'];

interface HintRule {
  readonly pattern: RegExp;
  /** Empty: applied live, no restart. */
  readonly services: readonly string[];
}

export const RESTART_RULES: readonly HintRule[] = [
  // The signer watches keyconf.xml on slaves and reloads it (and the keys it names) live.
  { pattern: /^signer\/(keyconf\.xml|softtoken\/.*|[^/]+\.p12)$/, services: [] },
  { pattern: /^(backup\.d\/|autologin$|backupkeys\/)/, services: [] },
  { pattern: /^conf\.d\/(local|common)\.ini$|^services\/(global\.conf|local\.properties)$/, services: ALL },
  { pattern: /^conf\.d\/(proxy\.ini|proxy-logback\.xml|addons\/message-log\.ini|addons\/messagelog-archiver-logback\.xml)$|^services\/proxy\.conf$|^ssl\/internal\./, services: ['xroad-proxy'] },
  { pattern: /^conf\.d\/signer(-console)?(\.ini|-logback\.xml)$|^services\/signer(-console)?\.conf$|^(signer\/)?devices\.ini$/, services: ['xroad-signer'] },
  { pattern: /^conf\.d\/confclient-logback.*\.xml$|^services\/confclient\.conf$|^configuration-anchor\.xml$/, services: ['xroad-confclient'] },
  { pattern: /^conf\.d\/proxy-ui-api.*$|^services\/proxy-ui-api\.conf$|^ssl\/proxy-ui-api\./, services: ['xroad-proxy-ui-api'] },
  { pattern: /^conf\.d\/op-monitor.*$|^services\/opmonitor\.conf$/, services: ['xroad-opmonitor'] },
  { pattern: /^conf\.d\/addons\/monitor.*$|^services\/monitor\.conf$/, services: ['xroad-monitor'] },
  { pattern: /^jetty\//, services: ['xroad-jetty'] },
  { pattern: /^conf\.d\//, services: ALL },
];

/** Service → the changed paths that need it restarted. Paths no rule knows are listed under "unknown". */
export function restartsNeeded(changedPaths: readonly string[]): Map<string, string[]> {
  const needed = new Map<string, string[]>();
  for (const path of changedPaths) {
    if (path === '') continue;
    const rule = RESTART_RULES.find((r) => r.pattern.test(path));
    for (const service of rule ? rule.services : ['unknown']) {
      const list = needed.get(service) ?? [];
      list.push(path);
      needed.set(service, list);
    }
  }
  return needed;
}

/** One line per set of services, e.g. "restart xroad-proxy, xroad-signer to apply conf.d/local.ini". */
export function restartHintLines(changedPaths: readonly string[]): string[] {
  const servicesByPaths = new Map<string, string[]>();
  for (const [service, paths] of restartsNeeded(changedPaths)) {
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
