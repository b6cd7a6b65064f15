/**
 * Delays between reconnection attempts: capped exponential with jitter, as txpostgres's
 * `defaultBackoff`. Pure: the random source is injectable.
 *
 * @example
 * for (const delay of backoff({ maxDelayMs: 5000, maxRetries: 5 })) { await sleep(delay); if (await tryIt()) break; }
 */
export interface BackoffOptions {
  /** The first delay. Default: 0 (the first retry goes at once). */
  initialDelayMs?: number;
  /** Where the exponential growth starts when `initialDelayMs` is 0. Default: 100. */
  baseDelayMs?: number;
  /** No delay exceeds this. Default: 10 000. */
  maxDelayMs?: number;
  /** Growth per attempt. Default: 2. */
  factor?: number;
  /** Each delay varies by up to this fraction either way (0.2: ±20 %). Default: 0.2. */
  jitter?: number;
  /** Stop after this many delays. Default: Infinity (retry forever). */
  maxRetries?: number;
  /** Random source in [0, 1). Default: Math.random. */
  random?: () => number;
}

export const BACKOFF_DEFAULTS = {
  initialDelayMs: 0,
  baseDelayMs: 100,
  maxDelayMs: 10_000,
  factor: 2,
  jitter: 0.2,
  maxRetries: Infinity,
} as const;

export function* backoff(options: BackoffOptions = {}): Generator<number, void, undefined> {
  const o = { ...BACKOFF_DEFAULTS, random: Math.random, ...options };
  let step = o.initialDelayMs > 0 ? o.initialDelayMs : o.baseDelayMs;
  for (let attempt = 0; attempt < o.maxRetries; attempt++) {
    if (attempt === 0 && o.initialDelayMs <= 0) {
      yield 0;
      continue;
    }
    const jittered = step * (1 + o.jitter * (2 * o.random() - 1));
    yield Math.round(Math.min(o.maxDelayMs, Math.max(0, jittered)));
    step = Math.min(o.maxDelayMs, step * o.factor);
  }
}
