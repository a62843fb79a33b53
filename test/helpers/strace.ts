/**
 * strace -f -y output, parsed: what tests that judge a process by its
 * system calls (commit durability, an idle daemon) read.
 */

export interface Call {
  readonly index: number;
  readonly name: string;
  readonly args: string;
  readonly ok: boolean;
}

/**
 * strace -f output as calls in completion order. A call interrupted by
 * another thread shows as `<unfinished ...>` and later `<... NAME resumed>`:
 * its arguments come from the first line, its place from the second, so an
 * fsync counts as done only where it returned.
 */
export function parseTrace(text: string): Call[] {
  const pending = new Map<string, { name: string; args: string }>();
  const calls: Call[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const [, pid, rest] = m;
    const started = /^(\w+)\((.*) <unfinished \.\.\.>$/.exec(rest!);
    if (started) {
      pending.set(pid!, { name: started[1]!, args: started[2]! });
      continue;
    }
    const resumed = /^<\.\.\. (\w+) resumed>(.*)\)\s+= (-?\d+)/.exec(rest!);
    if (resumed) {
      const p = pending.get(pid!);
      pending.delete(pid!);
      if (p) calls.push({ index: calls.length, name: p.name, args: p.args + resumed[2], ok: resumed[3] !== '-1' });
      continue;
    }
    const whole = /^(\w+)\((.*)\)\s+= (-?\d+)/.exec(rest!);
    if (whole) calls.push({ index: calls.length, name: whole[1]!, args: whole[2]!, ok: whole[3] !== '-1' });
  }
  return calls;
}

/** The path strace -y prints for an fd argument: `21</a/b>` → `/a/b`. */
export function fdPath(args: string): string | undefined {
  return /^\d+<(.*)>/.exec(args)?.[1];
}

/** Quoted path arguments in order (rename's old and new, unlink's one; the *at forms print AT_FDCWD first). */
export function quoted(args: string): string[] {
  return [...args.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!);
}
