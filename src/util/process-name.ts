/**
 * The process's name as the kernel shows it (/proc/<pid>/comm): what `ps -C`,
 * `pgrep -x`, `top` and `systemctl status` print. Node names its main thread
 * "MainThread" at start, which hides xroad-sync from `pgrep -x xroad-sync`.
 *
 * Written to /proc/self/comm rather than set through process.title: Node's
 * process.title overwrites the argument area too, and `ps -f` and
 * `systemctl status` would lose "daemon --interval 60". A failure (no /proc,
 * another OS) leaves the name as it was: it is cosmetic.
 */
import { writeFileSync } from 'node:fs';

/** The kernel keeps 15 bytes of a thread's name. */
const COMM_LENGTH = 15;

export function nameThisProcess(name: string): void {
  if (process.platform !== 'linux') return;
  try {
    writeFileSync('/proc/self/comm', name.slice(0, COMM_LENGTH));
  } catch {
    // cosmetic only
  }
}
