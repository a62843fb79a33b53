/**
 * The monitoring thresholds of status --check, in seconds: one source for
 * the flags' defaults (cli/) and the verdicts (health/). Import-free, so the
 * command line can show them without loading the checks.
 */
export const CHECK_DEFAULTS = {
  /** --max-age: critical when the last success is older. */
  maxAgeS: 300,
  /** --max-replay-lag: critical when serverconf replay lags more. */
  maxReplayLagS: 300,
  /** --warn-replay-lag: warning when serverconf replay lags more. */
  warnReplayLagS: 60,
  /** --max-replay-pause: critical when a replay pause xroad-sync made lasts longer. */
  maxReplayPauseS: 7200,
} as const;
