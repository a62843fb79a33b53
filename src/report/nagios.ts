/**
 * The `status --check` line as Nagios, Icinga and Zabbix read it: one line,
 * `XROAD-SYNC <STATE> - <text>`, then performance data after ` | ` (Monitoring
 * Plugins guidelines). A master file name can reach the text (in a pass's
 * error); escaped, it can neither start a second line nor a forged
 * performance-data section.
 */
import { escapeControls } from './rsync-log.js';

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
