/**
 * /etc/default/xroad-sync as systemd reads it: EnvironmentFile= parsing
 * (systemd's env-file.c state machine) and the splitting of an unquoted
 * `$VAR` in ExecStart=. By-hand commands read the file the same way, so a
 * setting means the same to `sudo -u xroad xroad-sync …` as to the units.
 */

const WHITESPACE = ' \t\n\r';
const NEWLINE = '\n\r';
const COMMENTS = '#;';
/** Characters a backslash escapes inside double quotes, as in a POSIX shell. */
const SHELL_NEED_ESCAPE = '"\\`$';
const VALID_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

type State = 'PRE_KEY' | 'KEY' | 'PRE_VALUE' | 'VALUE' | 'VALUE_ESCAPE' | 'SINGLE' | 'DOUBLE' | 'DOUBLE_ESCAPE' | 'COMMENT' | 'COMMENT_ESCAPE';

export interface EnvFileEntry {
  readonly key: string;
  readonly value: string;
  readonly line: number;
}

/**
 * Comments start with # or ; at the start of a line; KEY=VALUE with whitespace
 * around both trimmed; unquoted values keep interior whitespace and take
 * backslash escapes and continuation lines; '…' is verbatim and may span
 * lines; "…" knows \" \\ \` \$ and continuation. Quotes may be mixed with
 * plain text ("a"b). Lines without "=" and invalid names (e.g. `export X=1`)
 * are ignored, as systemd ignores them. Later assignments win.
 */
export function parseEnvironmentFile(text: string): { entries: EnvFileEntry[]; ignored: number[] } {
  const entries: EnvFileEntry[] = [];
  const ignored: number[] = [];
  let state: State = 'PRE_KEY';
  let key = '';
  let value: string | null = null;
  let line = 1;
  let keyLine = 1;
  let lastValueWhitespace = -1;

  const push = (): void => {
    const name = key.trimEnd();
    if (VALID_NAME.test(name)) entries.push({ key: name, value: value ?? '', line: keyLine });
    else ignored.push(keyLine);
    key = '';
    value = null;
  };
  const append = (c: string): void => void (value = (value ?? '') + c);

  for (const c of text) {
    switch (state) {
      case 'PRE_KEY':
        if (COMMENTS.includes(c)) state = 'COMMENT';
        else if (!WHITESPACE.includes(c)) {
          state = 'KEY';
          key = c;
          keyLine = line;
        } else if (c === '\n') line++;
        break;
      case 'KEY':
        if (NEWLINE.includes(c)) {
          ignored.push(keyLine); // no "="
          key = '';
          state = 'PRE_KEY';
          if (c === '\n') line++;
        } else if (c === '=') {
          state = 'PRE_VALUE';
          lastValueWhitespace = -1;
        } else key += c;
        break;
      case 'PRE_VALUE':
        if (NEWLINE.includes(c)) {
          push();
          state = 'PRE_KEY';
          if (c === '\n') line++;
        } else if (c === "'") state = 'SINGLE';
        else if (c === '"') state = 'DOUBLE';
        else if (c === '\\') state = 'VALUE_ESCAPE';
        else if (!WHITESPACE.includes(c)) {
          state = 'VALUE';
          append(c);
        }
        if (value === null && (state === 'SINGLE' || state === 'DOUBLE')) value = '';
        break;
      case 'VALUE':
        if (NEWLINE.includes(c)) {
          if (lastValueWhitespace >= 0) value = value!.slice(0, lastValueWhitespace);
          push();
          state = 'PRE_KEY';
          if (c === '\n') line++;
        } else if (c === '\\') {
          state = 'VALUE_ESCAPE';
          lastValueWhitespace = -1;
        } else {
          if (!WHITESPACE.includes(c)) lastValueWhitespace = -1;
          else if (lastValueWhitespace < 0) lastValueWhitespace = (value ?? '').length;
          append(c);
        }
        break;
      case 'VALUE_ESCAPE':
        state = 'VALUE';
        if (!NEWLINE.includes(c)) append(c);
        else if (c === '\n') line++; // a continuation line: the newline is eaten
        break;
      case 'SINGLE':
        if (c === "'") state = 'PRE_VALUE';
        else {
          append(c);
          if (c === '\n') line++;
        }
        break;
      case 'DOUBLE':
        if (c === '"') state = 'PRE_VALUE';
        else if (c === '\\') state = 'DOUBLE_ESCAPE';
        else {
          append(c);
          if (c === '\n') line++;
        }
        break;
      case 'DOUBLE_ESCAPE':
        state = 'DOUBLE';
        if (SHELL_NEED_ESCAPE.includes(c)) append(c);
        else if (c !== '\n') append('\\' + c);
        else line++;
        break;
      case 'COMMENT':
        if (c === '\\') state = 'COMMENT_ESCAPE';
        else if (NEWLINE.includes(c)) {
          state = 'PRE_KEY';
          if (c === '\n') line++;
        }
        break;
      case 'COMMENT_ESCAPE':
        // systemd ≥ 254: a backslash at the end of a comment no longer continues it.
        state = NEWLINE.includes(c) ? 'PRE_KEY' : 'COMMENT';
        if (c === '\n') line++;
        break;
    }
  }
  if (['PRE_VALUE', 'VALUE', 'VALUE_ESCAPE', 'SINGLE', 'DOUBLE', 'DOUBLE_ESCAPE'].includes(state)) {
    if (state === 'VALUE' && lastValueWhitespace >= 0) value = value!.slice(0, lastValueWhitespace);
    push();
  } else if (state === 'KEY') ignored.push(keyLine);
  return { entries, ignored };
}

/** The variables of a parsed file, later assignments winning. */
export function environmentOf(entries: readonly EnvFileEntry[]): Map<string, string> {
  return new Map(entries.map((e) => [e.key, e.value]));
}

/**
 * An unquoted `$VAR` in ExecStart=: split at whitespace into words; quotes
 * group ('…' verbatim, "…" with backslash escapes) and a backslash outside
 * quotes keeps the next character (systemd's EXTRACT_UNQUOTE|EXTRACT_RELAX).
 */
export function splitWords(text: string): string[] {
  const words: string[] = [];
  let word: string | null = null;
  let quote: "'" | '"' | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote === "'") {
      if (c === "'") quote = null;
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === '\\' && i + 1 < text.length) word += text[++i];
      else word += c;
    } else if (WHITESPACE.includes(c)) {
      if (word !== null) words.push(word);
      word = null;
    } else if (c === "'" || c === '"') {
      quote = c;
      word ??= '';
    } else if (c === '\\' && i + 1 < text.length) word = (word ?? '') + text[++i];
    else word = (word ?? '') + c;
  }
  if (word !== null) words.push(word);
  return words;
}
