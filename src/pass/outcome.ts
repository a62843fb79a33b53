/**
 * How a pass ended: the word in status.json, the JSON pass record, the
 * metrics and the daemon's schedule. It sits beside the pass (a PassResult,
 * in pass/types.ts, is the whole of what a pass returns) but in the lowest
 * layer, so report/ and state/ can name it too.
 */
export type PassOutcome = 'ok' | 'failed' | 'skipped';
