/**
 * Sliding window (two-window weighted count, as Cloudflare and nginx-style
 * limiters approximate it): a request at fraction f into window w is allowed
 * when
 *
 *     count(w) + 1 + count(w - 1) * (1 - f)  <=  maxRequests
 *
 * STATE_A is [tag | count] of the current window, STATE_B is [tag | count of
 * the window before the tagged one]. Lock-free and exact:
 *  - counting is one compareExchange on STATE_A (as in the fixed window);
 *  - rolling STATE_A from window w - 1 into w first publishes its final count
 *    to STATE_B tagged w (a compareExchange "max", so a thread that saw an
 *    older, smaller count cannot lower it), then swaps STATE_A. Whoever sees
 *    STATE_A tagged w therefore finds the previous count already in STATE_B.
 *    Counts of w - 1 cannot grow after the swap, and the swap fails if one
 *    arrived before it, so the published count is the final one.
 */
import { type RateDecision, ceilSeconds } from './decision'
import { CAS_ATTEMPTS, S_STATE_A, S_STATE_B } from './table'
import { WindowLimiter } from './window'

export class SlidingWindowLimiter extends WindowLimiter {
  /** The previous window's tag and its weight (1 - f) for this check. */
  private previousTag = 0
  private previousWeight = 0

  protected override prepare (nowMs: number): void {
    super.prepare(nowMs)
    const window = this.window
    this.previousTag = this.tags.tagOf(window - 1)
    this.previousWeight = ((window + 1) * this.windowMs - nowMs) / this.windowMs
  }

  protected isStale (base: number): boolean {
    const tag = this.tags.tagIn(Atomics.load(this.table, base + S_STATE_A))
    return tag !== this.tag && tag !== this.previousTag && !this.tags.isAhead(tag, this.tag)
  }

  protected usage (base: number): number {
    const word = Atomics.load(this.table, base + S_STATE_A)
    const tag = this.tags.tagIn(word)
    const count = this.tags.countIn(word)
    if (tag === this.previousTag) return count * this.previousWeight
    if (tag === this.tag) return count + this.previousCount(base, tag) * this.previousWeight
    return count
  }

  protected consume (base: number, nowMs: number, out: RateDecision): boolean {
    const table = this.table
    const tags = this.tags
    const max = this.maxRequests
    const index = base + S_STATE_A
    let tag = this.tag
    let window = this.window
    let weight = this.previousWeight
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const word = Atomics.load(table, index)
      const wordTag = tags.tagIn(word)
      if (wordTag === tag) {
        const count = tags.countIn(word)
        const weighted = this.previousCount(base, tag) * weight
        if (count + 1 + weighted > max) return this.answer(false, count, weighted, window, nowMs, out)
        if (Atomics.compareExchange(table, index, word, word + 1) === word) return this.answer(true, count + 1, weighted, window, nowMs, out)
        continue
      }
      if (tags.isAhead(wordTag, tag)) {
        // another thread's clock is already in a later window, which has barely
        // begun: count there, with the previous window at full weight
        window += tags.ahead(wordTag, tag)
        tag = wordTag
        weight = 1
        continue
      }
      // roll into our window; STATE_A's count carries over as "previous" only
      // if it belongs to the window just before ours
      const carried = wordTag !== 0 && tags.ahead(tag, wordTag) === 1 ? tags.countIn(word) : 0
      if (carried > 0) this.publishPrevious(base, tag, carried)
      const weighted = carried * weight
      const fits = 1 + weighted <= max
      if (Atomics.compareExchange(table, index, word, tags.pack(tag, fits ? 1 : 0)) === word) {
        return this.answer(fits, fits ? 1 : 0, weighted, window, nowMs, out)
      }
    }
    return this.answer(false, max, 0, window, nowMs, out)
  }

  protected refuse (nowMs: number, out: RateDecision): boolean {
    return this.answer(false, this.maxRequests, 0, this.window, nowMs, out)
  }

  /** The previous window's count for the window tagged `tag` (0 if none was published). */
  private previousCount (base: number, tag: number): number {
    const word = Atomics.load(this.table, base + S_STATE_B)
    return this.tags.tagIn(word) === tag ? this.tags.countIn(word) : 0
  }

  /** Make STATE_B say "before the window tagged `tag` came `count` requests" (or more). */
  private publishPrevious (base: number, tag: number, count: number): void {
    const table = this.table
    const tags = this.tags
    const index = base + S_STATE_B
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const word = Atomics.load(table, index)
      const wordTag = tags.tagIn(word)
      if (wordTag === tag && tags.countIn(word) >= count) return
      if (tags.isAhead(wordTag, tag)) return // the slot has moved on; our roll will fail
      if (Atomics.compareExchange(table, index, word, tags.pack(tag, count)) === word) return
    }
  }

  /**
   * Fill `out`. `count` is this window's count after the request, `weighted`
   * the previous window's weighted share.
   */
  private answer (allowed: boolean, count: number, weighted: number, window: number, nowMs: number, out: RateDecision): boolean {
    const max = this.maxRequests
    const untilEndMs = (window + 1) * this.windowMs - nowMs
    out.allowed = allowed
    out.limit = max
    out.resetSeconds = ceilSeconds(untilEndMs)
    if (allowed) {
      out.remaining = Math.max(0, Math.floor(max - count - weighted))
      out.retryAfterSeconds = 0
    } else {
      out.remaining = 0
      const retry = ceilSeconds(this.waitMs(count, weighted, untilEndMs))
      out.retryAfterSeconds = retry
      if (retry > out.resetSeconds) out.resetSeconds = retry
    }
    return allowed
  }

  /** How long until one more request fits, if nobody sends any meanwhile. */
  private waitMs (count: number, weighted: number, untilEndMs: number): number {
    const max = this.maxRequests
    const windowMs = this.windowMs
    if (count + 1 <= max && weighted > 0) {
      // the previous window's share blocks: wait until it has decayed enough
      const previous = weighted * windowMs / untilEndMs
      return untilEndMs - (max - 1 - count) * windowMs / previous
    }
    // this window is spent: in the next one its count becomes the previous one
    if (count === 0) return untilEndMs
    return untilEndMs + windowMs - (max - 1) * windowMs / count
  }
}
