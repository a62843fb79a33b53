/**
 * The one way user-facing text reaches stdout and stderr. Errors, warnings
 * and notices go to stderr as one `xroad-sync: ` line each, escaped as in
 * slave-sync.log: stderr is the journal, and a message can name a master
 * file whose name must not start a line of its own. Results (reports,
 * verdicts, itemized changes) go to stdout.
 */
import { describeError, ExitCode, type ExitCodeValue, exitCodeOf, SyncError } from '../errors.js';

/** Control characters (C0 but tab, DEL, C1) and a backslash that would read as an escape. */
const NEEDS_ESCAPE = /[\x00-\x08\x0a-\x1f\x7f-\x9f]|\\(?=#[0-9]{3})/gu;

/**
 * rsync 3.5's `\#ooo` escaping (octal of each UTF-8 byte), so a hostile file
 * name cannot start a forged log line. A literal `\#ddd` already in the
 * text gets its backslash escaped too, so the escaping stays unambiguous.
 */
export function escapeControls(text: string): string {
  return text.replace(NEEDS_ESCAPE, (ch) => Array.from(Buffer.from(ch, 'utf8'), (byte) => `\\#${byte.toString(8).padStart(3, '0')}`).join(''));
}

/** The program's name on stderr; a sub-tool (serve, demo) adds its own after it. */
function prefix(tool?: string): string {
  return tool ? `xroad-sync ${tool}: ` : 'xroad-sync: ';
}

/** A notice or warning on stderr: one escaped, prefixed line. One argument, so it can be handed on as a callback. */
export function notice(text: string): void {
  noticeFrom(undefined, text);
}

/** A notice of a sub-tool (serve, demo): `xroad-sync serve: …`. */
export function noticeFrom(tool: string | undefined, text: string): void {
  process.stderr.write(`${prefix(tool)}${escapeControls(text)}\n`);
}

/** A warning: a notice that begins with `warning: `. */
export function warn(text: string): void {
  notice(`warning: ${text}`);
}

/**
 * An error the command ends with: its message, cause and hint on one line;
 * an error that is not ours is a bug, so its stack follows. Returns the exit code.
 */
export function reportError(err: unknown): ExitCodeValue {
  notice(describeError(err));
  const code = exitCodeOf(err);
  if (code === ExitCode.INTERNAL && !(err instanceof SyncError) && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  return code;
}

/** A failure report that spans lines (the demo's failed step): prefixed once, written as it is, set apart by a blank line if asked. */
export function reportBlock(text: string, tool?: string, opts: { blankBefore?: boolean } = {}): void {
  process.stderr.write(`${opts.blankBefore ? '\n' : ''}${prefix(tool)}${text}\n`);
}

/** One result line on stdout; a line naming master files is escaped by its maker (escapeControls), once. */
export function printLine(line = ''): void {
  process.stdout.write(`${line}\n`);
}

/** Result text on stdout as it is: a report already formatted (and escaped where it names files). */
export function printReport(text: string): void {
  process.stdout.write(text);
}
