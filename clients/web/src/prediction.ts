/**
 * Client-side prediction with server reconciliation (Gabriel Gambetta, "Client-Side
 * Prediction and Server Reconciliation"; Glenn Fiedler): the local player's own
 * inputs take effect on screen at once, and every authoritative frame rebases the
 * prediction on the server's state by replaying the inputs the server has not applied
 * yet (those above `StateFrame.last_input_seq`). Other entities are interpolated
 * instead (`interpolation.ts`).
 *
 * No clock is read here: calls that need time take the caller's local time in ms.
 */

/**
 * The highest input sequence number: `Number.MAX_SAFE_INTEGER`, so that every one is
 * exact as a number too (the client numbers inputs from 1, one at a time).
 */
export const MAX_INPUT_SEQ = BigInt(Number.MAX_SAFE_INTEGER);

/** How a correction of the prediction is shown: faded out instead of snapped to. */
export interface Smoothing<S> {
  /** How long a correction takes to fade out, in ms. */
  readonly ms: number;
  /** The state a fraction `t` (0 to 1) of the way from `from` to `to`. */
  lerp(from: S, to: S, t: number): S;
  /**
   * How far apart two states are. An authoritative frame that moves the prediction
   * by more than 0 is a correction.
   */
  distance(a: S, b: S): number;
  /** A correction moving the visible state farther than this snaps (a respawn, a teleport); default Infinity. */
  readonly snapDistance?: number;
}

/** What a {@link Predictor} predicts with. */
export interface PredictorOptions<S, I> {
  /** The state before any input: the entity's first authoritative state, or a guess. */
  readonly initial: S;
  /**
   * The simulation step of one input, the same as the server's: pure, and it must
   * not modify `state` (the predictor replays inputs from older states).
   */
  readonly apply: (state: S, input: I) => S;
  /**
   * Most inputs kept unacknowledged (default 128, at least 1). At the bound the
   * oldest is forgotten: the prediction still includes it, but the next
   * authoritative frame that does not cover it leaves it out (a correction).
   */
  readonly maxPending?: number;
  /** Fades out corrections; without it the visible state is the prediction. */
  readonly smoothing?: Smoothing<S>;
}

/**
 * The predicted state `S` of the local player's entity, driven by inputs `I`.
 *
 * Call {@link input} with each input as the connection sends it, and
 * {@link authoritative} with the entity's state after each state frame, in tick order
 * (the `StateMirror` skips late frames), and the `lastInputSeq` of the client's
 * `state` event (a number above the inputs sent is none there, as the protocol
 * says; a frame's own may be anything), then draw {@link render}:
 *
 * ```ts
 * client.on("state", ({ room, mirror, lastInputSeq }) => {
 *   predictor.authoritative(stateOf(mirror.get(myEntity)!), lastInputSeq, performance.now());
 * });
 * ```
 *
 * States are values: `apply` and `smoothing.lerp` return new ones, and the predictor
 * hands out the ones they returned.
 */
export class Predictor<S, I> {
  readonly #apply: (state: S, input: I) => S;
  readonly #smoothing: Smoothing<S> | undefined;
  readonly maxPending: number;
  #predicted: S;
  /** Inputs not yet acknowledged, in `seq` order. */
  readonly #pending: { readonly seq: bigint; readonly input: I }[] = [];
  #acked = 0n;
  /** The highest `seq` recorded or acknowledged. */
  #lastSeq = 0n;
  /**
   * While a correction fades: the visible state when it began, moved by every input
   * since, so the player's own motion shows at full speed during the fade.
   */
  #ghost: S | undefined;
  #correctedAt = 0;

  /** Throws a `RangeError` for a `maxPending` below 1 or a negative `smoothing.ms`. */
  constructor(options: PredictorOptions<S, I>) {
    const maxPending = options.maxPending ?? 128;
    if (!(Number.isInteger(maxPending) && maxPending >= 1)) {
      throw new RangeError(`maxPending must be an integer of at least 1, got ${maxPending}`);
    }
    const ms = options.smoothing?.ms ?? 0;
    if (!(ms >= 0 && ms < Infinity)) {
      throw new RangeError(`smoothing.ms must be finite and not negative, got ${ms}`);
    }
    this.#apply = options.apply;
    this.#smoothing = options.smoothing;
    this.maxPending = maxPending;
    this.#predicted = options.initial;
  }

  /** The predicted state: the last authoritative state with every pending input applied. */
  get predicted(): S {
    return this.#predicted;
  }

  /** The last input `seq` the server reported applied. */
  get acked(): bigint {
    return this.#acked;
  }

  /** Number of inputs sent and not yet acknowledged. */
  get pending(): number {
    return this.#pending.length;
  }

  /**
   * Records an input the connection just sent with sequence number `seq` and applies
   * it to the prediction. Throws a `RangeError` if `seq` is not above every `seq`
   * recorded or acknowledged before.
   */
  input(seq: bigint, input: I): void {
    if (seq <= this.#lastSeq) {
      throw new RangeError(`input seq ${seq} is not above ${this.#lastSeq}`);
    }
    this.#lastSeq = seq;
    this.#pending.push({ seq, input });
    this.#predicted = this.#apply(this.#predicted, input);
    if (this.#ghost !== undefined) this.#ghost = this.#apply(this.#ghost, input);
    if (this.#pending.length > this.maxPending) this.#pending.shift();
  }

  /**
   * Takes `lastInputSeq` as the last input acknowledged, even below the last one the
   * server reported: a room restored from a checkpoint (cluster mode: its node died)
   * applied fewer inputs than it had acknowledged, the client sends the later ones
   * again, and its frames say so; without this they would be refused as older ones.
   * Call it with `joined.lastInputSeq` at the room's `joined` (the demo makes a new
   * predictor there instead).
   */
  rewind(lastInputSeq: bigint): void {
    if (lastInputSeq < this.#acked) this.#acked = lastInputSeq;
  }

  /**
   * Rebases the prediction on the server's `state` of the entity, which includes
   * every input up to `lastInputSeq` (`StateFrame.last_input_seq`): drops those
   * inputs and replays the rest on `state`. `nowMs` starts the fade of a correction.
   *
   * Returns false, changing nothing, when `lastInputSeq` is below one already seen
   * (an older frame), or above {@link MAX_INPUT_SEQ}: no input has such a number, and
   * taken, it would make {@link input} refuse every input after it. (The `Client`
   * reports only acknowledgements of inputs it sent.)
   */
  authoritative(state: S, lastInputSeq: bigint, nowMs: number): boolean {
    if (lastInputSeq < this.#acked || lastInputSeq > MAX_INPUT_SEQ) return false;
    this.#acked = lastInputSeq;
    if (lastInputSeq > this.#lastSeq) this.#lastSeq = lastInputSeq;
    let acked = 0;
    while (acked < this.#pending.length && this.#pending[acked]!.seq <= lastInputSeq) acked++;
    this.#pending.splice(0, acked);
    const before = this.#predicted;
    const visible = this.render(nowMs);
    let predicted = state;
    for (const { input } of this.#pending) predicted = this.#apply(predicted, input);
    this.#predicted = predicted;
    const smoothing = this.#smoothing;
    if (smoothing !== undefined && smoothing.distance(before, predicted) > 0) {
      const snap = smoothing.distance(visible, predicted) > (smoothing.snapDistance ?? Infinity);
      this.#ghost = snap ? undefined : visible;
      this.#correctedAt = nowMs;
    }
    return true;
  }

  /**
   * The state to draw at local time `nowMs`: the prediction, or while a correction
   * fades, a state moving from where the entity was shown towards it, reaching it
   * `smoothing.ms` after the correction.
   */
  render(nowMs: number): S {
    const ghost = this.#ghost;
    if (ghost === undefined) return this.#predicted;
    const smoothing = this.#smoothing!;
    const t = (nowMs - this.#correctedAt) / smoothing.ms;
    if (!(t < 1)) {
      this.#ghost = undefined;
      return this.#predicted;
    }
    return smoothing.lerp(ghost, this.#predicted, Math.max(t, 0));
  }
}
