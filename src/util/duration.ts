/**
 * The one parser for every duration flag (--max-age, --interval, --timeout,
 * --connect-timeout): plain seconds ("90", "0.5") or whole-unit parts with
 * s/m/h suffixes ("30s", "5m", "1h30m"). Anything else is a usage error that
 * names the flag; a duration is never NaN and never silently "no limit".
 */
import { ConfigError } from '../errors.js';

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000 } as const;
const PLAIN = /^\d+(?:\.\d+)?$/;
const WITH_UNITS = /^(?:\d+(?:\.\d+)?[smh])+$/;

export interface DurationBounds {
  /** Inclusive bounds in milliseconds. */
  readonly minMs: number;
  readonly maxMs: number;
}

/** Milliseconds, or undefined when the text is not a duration. */
export function parseDurationMs(text: string): number | undefined {
  const value = text.trim().toLowerCase();
  if (PLAIN.test(value)) return Math.round(Number(value) * 1000);
  if (!WITH_UNITS.test(value)) return undefined;
  let ms = 0;
  for (const [, n, unit] of value.matchAll(/(\d+(?:\.\d+)?)([smh])/g)) ms += Number(n) * UNIT_MS[unit as keyof typeof UNIT_MS];
  return Math.round(ms);
}

/** Parse `value` for `flag`, or throw a ConfigError that says what is accepted. */
export function durationOption(value: string | number, flag: string, bounds: DurationBounds): number {
  const ms = typeof value === 'number' ? Math.round(value * 1000) : parseDurationMs(value);
  if (ms === undefined || !Number.isFinite(ms) || ms < bounds.minMs || ms > bounds.maxMs) {
    throw new ConfigError(
      `${flag} must be a duration from ${formatDuration(bounds.minMs)} to ${formatDuration(bounds.maxMs)} (seconds, or with s/m/h: 30s, 5m, 1h), got "${value}"`,
      {
        subject: flag,
      },
    );
  }
  return ms;
}

/** "1.5 s", "5 min", "2 h": for messages. */
export function formatDuration(ms: number): string {
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${Number((ms / 1000).toFixed(1))} s`;
}
