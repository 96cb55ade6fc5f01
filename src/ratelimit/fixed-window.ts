/**
 * Fixed window: at most maxRequests per client in each window
 * [w * windowMs, (w + 1) * windowMs). STATE_A is [tag | count] (./window);
 * both rolling into a new window and counting are one compareExchange on it,
 * so the count is exact across threads: with maxRequests = 5, five requests
 * are allowed per window however many threads serve the client.
 */
import { type RateDecision, ceilSeconds } from './decision'
import { CAS_ATTEMPTS, S_STATE_A } from './table'
import { WindowLimiter } from './window'

export class FixedWindowLimiter extends WindowLimiter {
  protected isStale (base: number): boolean {
    const tag = this.tags.tagIn(Atomics.load(this.table, base + S_STATE_A))
    return tag !== this.tag && !this.tags.isAhead(tag, this.tag)
  }

  protected usage (base: number): number {
    return this.tags.countIn(Atomics.load(this.table, base + S_STATE_A))
  }

  protected consume (base: number, nowMs: number, out: RateDecision): boolean {
    const table = this.table
    const tags = this.tags
    const index = base + S_STATE_A
    let tag = this.tag
    let window = this.window
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const word = Atomics.load(table, index)
      const wordTag = tags.tagIn(word)
      if (wordTag === tag) {
        const count = tags.countIn(word)
        if (count >= this.maxRequests) return this.answer(false, count, window, nowMs, out)
        if (Atomics.compareExchange(table, index, word, word + 1) === word) return this.answer(true, count + 1, window, nowMs, out)
        continue
      }
      if (tags.isAhead(wordTag, tag)) {
        // another thread's clock is already in a later window: count there
        window += tags.ahead(wordTag, tag)
        tag = wordTag
        continue
      }
      // an older window (or none): roll into ours, counting this request
      if (Atomics.compareExchange(table, index, word, tags.pack(tag, 1)) === word) return this.answer(true, 1, window, nowMs, out)
    }
    return this.answer(false, this.maxRequests, window, nowMs, out)
  }

  protected refuse (nowMs: number, out: RateDecision): boolean {
    return this.answer(false, this.maxRequests, this.window, nowMs, out)
  }

  private answer (allowed: boolean, count: number, window: number, nowMs: number, out: RateDecision): boolean {
    const reset = ceilSeconds((window + 1) * this.windowMs - nowMs)
    out.allowed = allowed
    out.limit = this.maxRequests
    out.remaining = allowed ? this.maxRequests - count : 0
    out.resetSeconds = reset
    out.retryAfterSeconds = allowed ? 0 : reset
    return allowed
  }
}
