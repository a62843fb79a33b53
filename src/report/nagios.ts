/**
 * The `status --check` line as Nagios, Icinga and Zabbix read it: one line,
 * `XROAD-SYNC <STATE> - <text>`, then performance data after ` | ` (Monitoring
 * Plugins guidelines). A master file name can reach the text (in a pass's
 * error); escaped, it can neither start a second line nor a forged
 * performance-data section.
 */
import { escapeControls } from '../util/output.js';

/**
 * slave-sync.log's `\#ooo` escaping of control characters (rsync 3.5), and
 * `|` as `\#174`: Nagios reads everything after the first `|` as performance data.
 */
export function escapeCheckText(text: string): string {
  return escapeControls(text).replaceAll('|', '\\#174');
}

/** The line to print: the verdict's text escaped, then the performance data, if any. */
export function checkLine(line: string, perfdata: readonly string[] = []): string {
  const text = escapeCheckText(line);
  return perfdata.length === 0 ? text : `${text} | ${perfdata.join(' ')}`;
}

/** A last success this far ahead of the clock is the same second, not a clock stepped back. */
export const CLOCK_SLACK_MS = 2000;

/** One performance datum, `label=value[UOM];[warn];[crit];[min];[max]`; an unknown value is `U`. */
interface Perfdatum {
  readonly label: string;
  readonly value: number | null;
  readonly uom: '' | 's' | 'B';
  readonly warn?: number;
  readonly crit?: number;
  readonly min?: number;
}

function formatPerfdatum(d: Perfdatum): string {
  const n = (x: number | undefined): string => (x === undefined ? '' : String(x));
  return `${d.label}=${d.value === null ? 'U' : `${d.value}${d.uom}`};${n(d.warn)};${n(d.crit)};${n(d.min)}`;
}

/** Seconds since the last success; null when there is none or it lies in the future (a clock stepped back). */
function lastSuccessAgeS(lastSuccessAt: string | null, now: Date): number | null {
  if (lastSuccessAt === null) return null;
  const ageMs = now.getTime() - Date.parse(lastSuccessAt);
  if (!Number.isFinite(ageMs) || ageMs < -CLOCK_SLACK_MS) return null;
  return Math.max(0, Math.round(ageMs / 1000));
}

/** `age`: the last success's age against --max-age (no warning band). */
export function agePerfdata(lastSuccessAt: string | null, maxAgeS: number, now: Date): string {
  return formatPerfdatum({ label: 'age', value: lastSuccessAgeS(lastSuccessAt, now), uom: 's', crit: maxAgeS, min: 0 });
}

/** The serverconf replica's replay lag, in seconds against its limits and in bytes; U when it cannot be read. */
export function replicaPerfdata(lag: { lagSeconds: number | null; lagBytes: number | null } | null, limits: { warnLagS: number; maxLagS: number }): string[] {
  return [
    formatPerfdatum({ label: 'replay_lag', value: lag?.lagSeconds ?? null, uom: 's', warn: limits.warnLagS, crit: limits.maxLagS, min: 0 }),
    formatPerfdatum({ label: 'replay_lag_bytes', value: lag?.lagBytes ?? null, uom: 'B', min: 0 }),
  ];
}
