/**
 * rsync's `--exclude PATTERN` semantics (rule `- PATTERN`), reproduced from
 * rsync 3.x `exclude.c` add_rule()/rule_matches() and `lib/wildmatch.c`, and
 * checked against real rsync (test/fixtures/exclude-vectors.json).
 *
 * Why not micromatch for the wildcard part: micromatch.makeRe (even with
 * {dot: true}) disagrees with wildmatch on nearly every construct, measured
 * with micromatch 4.0.8:
 *   - `**` is a globstar only as a whole segment: `**.txt` does not cross `/`;
 *     `a/**` also matches `a`; `a/**` + `/b` matches `a/b`. In rsync `**` is just
 *     "any characters including /", wherever it stands.
 *   - `a/***` does not match `a/x/y`.
 *   - an unmatched class falls back to a literal: `weird[1].txt` matches the
 *     file `weird[1].txt`; rsync leaves it out of nothing (a real vector).
 *   - `[!a]` becomes a literal; `{a,b}`, `+(a)`, `!(a)`, a leading `!` and
 *     `(...)` are syntax to micromatch but plain characters to rsync.
 *   - every regex accepts an optional trailing `/`.
 * What is left where they agree (`*` -> `[^/]*`, `?` -> `[^/]`, literals) is
 * three lines, smaller than the guards needed to route around the above, so
 * the translation below is hand-written against wildmatch's dowild().
 *
 * Matching is on bytes, as in rsync: a non-ASCII path or pattern is turned
 * into its UTF-8 bytes (one char per byte), so `?` matches one byte and `é`
 * needs `??`, and [[:alpha:]] is ASCII-only (C/UTF-8 locale).
 */
import { ConfigError } from '../errors.js';
import type { Filter } from './types.js';

/** One compiled rule: does it match this path (already in byte form)? */
type RuleTest = (path: string, isDir: boolean) => boolean;

export function compileFilter(patterns: readonly string[]): Filter {
  const given = Object.freeze([...patterns]);
  const rules = given.map(compileRule);

  // All rules are excludes, so "first match wins" reduces to "any rule matches".
  const matchesAny = (bytes: string, isDir: boolean): boolean => {
    for (const rule of rules) if (rule(bytes, isDir)) return true;
    return false;
  };

  return {
    patterns: given,
    isExcluded(path: string, isDir: boolean): boolean {
      // rule_matches(): an empty name never matches.
      return path !== '' && matchesAny(toBytes(path), isDir);
    },
    isExcludedPath(path: string, isDir: boolean): boolean {
      if (path === '') return false;
      const bytes = toBytes(path);
      // rsync never looks inside an excluded directory, so an excluded ancestor
      // hides the path whatever the rules say about the path itself.
      for (let i = bytes.indexOf('/', 1); i !== -1; i = bytes.indexOf('/', i + 1)) {
        if (matchesAny(bytes.slice(0, i), true)) return true;
      }
      return matchesAny(bytes, isDir);
    },
  };
}

const NON_ASCII = /[^\x00-\x7f]/;

/** The UTF-8 bytes of `s`, one char (0-255) per byte; ASCII is returned as is. */
function toBytes(s: string): string {
  return NON_ASCII.test(s) ? Buffer.from(s, 'utf8').toString('latin1') : s;
}

function reject(pattern: string, why: string, hint?: string): never {
  throw new ConfigError(`invalid exclude pattern ${JSON.stringify(pattern)}: ${why}`, { subject: pattern, hint });
}

/**
 * `--exclude` is parsed with XFLG_OLD_PREFIXES: a leading "- " is stripped
 * (still an exclude), "+ " would turn it into an include and a lone "!" would
 * clear the rules before it. This filter holds excludes only, so the last two
 * are refused rather than silently read as file names.
 */
function patternBody(given: string): string {
  if (given.includes('\0')) reject(given, 'it contains a NUL byte');
  if (given.startsWith('+ ')) reject(given, 'include rules ("+ ") are not supported', 'list only excludes');
  if (given === '!') reject(given, 'the list-clearing rule "!" is not supported', 'remove it and the rules it would clear');
  const body = given.startsWith('- ') ? given.slice(2) : given;
  if (body === '') reject(given, 'it is empty');
  return body;
}

function compileRule(given: string): RuleTest {
  let pattern = toBytes(patternBody(given));

  // add_rule(): one trailing slash (not a lone "/") makes a directory-only rule
  // and is not counted as a slash.
  let dirOnly = false;
  if (pattern.length > 1 && pattern.endsWith('/')) {
    pattern = pattern.slice(0, -1);
    dirOnly = true;
  }
  const slashCount = pattern.split('/').length - 1; // includes a leading one
  const wild = /[*?[]/.test(pattern);
  const wild2 = wild && pattern.includes('**');
  const wild2Prefix = wild2 && pattern.startsWith('**');
  const wild3Suffix = wild2 && pattern.endsWith('***');
  const anchored = pattern.startsWith('/');
  const body = anchored ? pattern.slice(1) : pattern;
  // No slash and no "**": only the final component is matched, at any depth.
  const basenameOnly = slashCount === 0 && !wild2;

  if (!wild) {
    // Literal compare, backslashes included: exact for an anchored pattern,
    // otherwise a suffix starting at a "/" boundary (which for a slash-free
    // pattern is the same as comparing the final component).
    if (anchored) return (path, isDir) => (isDir || !dirOnly) && path === body;
    const suffix = '/' + body;
    return (path, isDir) => (isDir || !dirOnly) && (path === body || path.endsWith(suffix));
  }

  // rule_matches() slash_handling: an unanchored slash without "**" matches
  // the last slashCount+1 components; an unanchored "**" not at the start may
  // begin after any slash; anything else must match from the start.
  const lastN = !anchored && slashCount > 0 && !wild2 ? slashCount + 1 : 0;
  const afterAnySlash = !anchored && wild2 && !wild2Prefix;
  const source = wildmatchSource(body);
  const re = new RegExp(`^${afterAnySlash ? '(?:.*/)?' : ''}(?:${source ?? '(?!)'})$`, 's');

  return (path, isDir) => {
    if (dirOnly && !isDir) return false;
    let subject: string | undefined = basenameOnly ? path.slice(path.lastIndexOf('/') + 1) : path;
    if (lastN) {
      subject = lastComponents(subject, lastN);
      if (subject === undefined) return false;
    }
    // "**" + "/" may match at the very start: rsync prepends a "/" to the name.
    if (wild2Prefix) subject = '/' + subject;
    // A trailing "/***" also matches the directory itself: rsync appends "/".
    if (isDir && wild3Suffix) subject += '/';
    return re.test(subject);
  };
}

/**
 * wildmatch's trailing_N_elements(): the last `n` components of `path`, or
 * undefined when it has fewer (then the rule cannot match).
 */
function lastComponents(path: string, n: number): string | undefined {
  let left = n;
  for (let end = path.length; ; ) {
    const slash = end > 0 ? path.lastIndexOf('/', end - 1) : -1;
    if (slash < 0) return left === 1 ? path : undefined; // exactly n components
    if (--left === 0) return path.slice(slash + 1);
    end = slash;
  }
}

/**
 * RegExp source for a wildmatch pattern (byte string), or undefined when
 * wildmatch would return ABORT_ALL on reaching it (a bad `[` class or a
 * trailing lone backslash): then the pattern matches nothing. wildmatch's
 * ABORT_TO_STARSTAR/ABORT_ALL shortcuts only prune a backtracking search, so
 * a backtracking RegExp gives the same answers.
 */
function wildmatchSource(p: string): string | undefined {
  let out = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === '\\') {
      // Backslash: the next character literally; at the end it matches nothing.
      if (++i >= p.length) return undefined;
      out += literal(p[i]);
    } else if (c === '?') {
      out += '[^/]';
    } else if (c === '*') {
      const single = p[i + 1] !== '*';
      while (p[i + 1] === '*') i++;
      out += single ? '[^/]*' : '.*'; // "**" (and "***") cross "/", "*" does not
    } else if (c === '[') {
      const cls = bracketClass(p, i);
      if (!cls) return undefined;
      out += cls.source;
      i = cls.end;
    } else {
      out += literal(c);
    }
  }
  return out;
}

// A Map, not an object literal: "[[:constructor:]]" must not find Object's.
const POSIX_CLASSES = new Map<string, string>(
  Object.entries({
    alnum: '0-9A-Za-z',
    alpha: 'A-Za-z',
    blank: ' \\t',
    cntrl: '\\x00-\\x1f\\x7f',
    digit: '0-9',
    graph: '\\x21-\\x7e',
    lower: 'a-z',
    print: '\\x20-\\x7e',
    punct: '\\x21-\\x2f\\x3a-\\x40\\x5b-\\x60\\x7b-\\x7e',
    space: '\\t\\n\\x0b\\x0c\\r ',
    upper: 'A-Z',
    xdigit: '0-9A-Fa-f',
  }),
);

/**
 * dowild()'s `[` case, starting at p[open] === '['. Returns the RegExp for the
 * class and the index of its closing `]`, or undefined for ABORT_ALL. Quirks
 * kept: the first member may be `]`; `^` negates like `!`; `-` is a range only
 * between a previous single character and a next one that is not `]`; `[:x`
 * without `:]` is a literal `[`; an unknown [:name:] aborts; no class ever
 * matches `/`.
 */
function bracketClass(p: string, open: number): { source: string; end: number } | undefined {
  let i = open + 1;
  const negated = p[i] === '!' || p[i] === '^';
  if (negated) i++;
  let members = '';
  let prev = ''; // the previous single character, '' after a range or [:class:]
  for (let first = true; first || p[i] !== ']'; first = false, i++) {
    let ch = p[i];
    if (ch === undefined) return undefined;
    if (ch === '\\') {
      ch = p[++i];
      if (ch === undefined) return undefined;
      members += literal(ch);
    } else if (ch === '-' && prev !== '' && p[i + 1] !== undefined && p[i + 1] !== ']') {
      let hi = p[++i];
      if (hi === '\\') {
        hi = p[++i];
        if (hi === undefined) return undefined;
      }
      // A reversed range matches nothing (and would be a RegExp syntax error).
      if (prev <= hi) members += `${literal(prev)}-${literal(hi)}`;
      prev = '';
      continue;
    } else if (ch === '[' && p[i + 1] === ':') {
      const close = p.indexOf(']', i + 2);
      if (close < 0) return undefined;
      if (close - (i + 2) >= 1 && p[close - 1] === ':') {
        const set = POSIX_CLASSES.get(p.slice(i + 2, close - 1));
        if (set === undefined) return undefined; // malformed [:class:]
        members += set;
        i = close;
        prev = '';
        continue;
      }
      members += literal('['); // no ":]": the "[" is an ordinary member
    } else {
      members += literal(ch);
    }
    prev = ch;
  }
  const source = negated ? `[^/${members}]` : `(?!/)[${members}]`;
  return { source, end: i };
}

/** A RegExp-safe form of one byte-char, usable inside and outside a class. */
function literal(ch: string): string {
  return /[A-Za-z0-9_]/.test(ch) ? ch : `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`;
}
