/**
 * A token bucket on a caller-supplied clock (milliseconds), as the server's rate
 * limiter works (`proto/src/bucket.rs`): the client paces what it sends below the
 * limits the server announces in `Welcome.limits`, so a replay after a reconnect is
 * never refused.
 */
export class TokenBucket {
  #tokens: number;
  #at: number;

  /** `rate` tokens per second, at most `burst`; starts full at `nowMs`. */
  constructor(
    readonly rate: number,
    readonly burst: number,
    nowMs: number,
  ) {
    this.#tokens = burst;
    this.#at = nowMs;
  }

  #refill(nowMs: number): void {
    if (nowMs > this.#at) {
      this.#tokens = Math.min(this.burst, this.#tokens + ((nowMs - this.#at) / 1000) * this.rate);
      this.#at = nowMs;
    }
  }

  /** Holds no more than `earlier` does at `nowMs` (a bucket that replaces it does not start full). */
  noFullerThan(earlier: TokenBucket, nowMs: number): void {
    this.#refill(nowMs);
    earlier.#refill(nowMs);
    this.#tokens = Math.min(this.#tokens, earlier.#tokens);
  }

  /** Takes `n` tokens if there are that many. */
  tryTake(n: number, nowMs: number): boolean {
    this.#refill(nowMs);
    if (this.#tokens < n) return false;
    this.#tokens -= n;
    return true;
  }

  /** Gives back tokens taken but not used. */
  giveBack(n: number): void {
    this.#tokens = Math.min(this.burst, this.#tokens + n);
  }

  /** Milliseconds until `n` tokens are there (0: now); `n` above the burst waits for a full bucket. */
  waitFor(n: number, nowMs: number): number {
    this.#refill(nowMs);
    const missing = Math.min(n, this.burst) - this.#tokens;
    return missing <= 0 ? 0 : (missing / this.rate) * 1000;
  }
}

/**
 * Reconnection delays: exponential (`initialMs`, doubling up to `maxMs`) with full
 * jitter, so many clients dropped at once do not come back at once; give up after
 * `maxAttempts` failed attempts in a row (`Infinity`: never).
 */
export interface Backoff {
  initialMs: number;
  maxMs: number;
  maxAttempts: number;
}

/** 1 s, 2 s, 4 s … 30 s, ten attempts: as the Rust client. */
export const DEFAULT_BACKOFF: Backoff = { initialMs: 1000, maxMs: 30_000, maxAttempts: 10 };

/** The delay before retry number `attempt` (1-based), given a uniform `random` in [0, 1). */
export function backoffDelay(backoff: Backoff, attempt: number, random: number): number {
  const ceiling = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(attempt - 1, 16));
  return ceiling * random;
}
