/**
 * Window bookkeeping shared by the fixed and sliding windows: one int32 holds
 * a window's tag and its count, so "roll into the new window" and "count one
 * more" are each a single compareExchange, and no thread can count into a
 * window another thread is resetting.
 *
 *   [ tag: 32 - countBits | count: countBits ]      countBits = bits of maxRequests
 *
 * Window number w = floor(nowMs / windowMs); tag(w) = (w mod M) + 1 with
 * M = 2^tagBits - 1, so tag 0 never names a window and a zeroed slot reads as
 * "no window yet". A count never exceeds maxRequests (a refused request writes
 * nothing), so it cannot carry into the tag.
 *
 * Tags repeat every M windows: a slot left idle for exactly a multiple of M
 * windows would look current and its old count would apply for one window (a
 * refusal too many, never one too few). With maxRequests <= 2^24 - 1 there are
 * at least 8 tag bits (M >= 255); a typical maxRequests of 100 leaves 25 bits.
 *
 * Threads read the clock at slightly different moments, so one may still be in
 * window w - 1 when another has rolled the slot into w. A tag up to
 * `skewWindows` ahead of ours is taken as the current window (never rolled
 * back): a late thread counts into the newer window instead of erasing it.
 */
import type { RateLimitConfig } from '../config/types'
import type { SharedState } from '../shared/state'
import { SwitchyardError } from '../errors'
import { SlotTable } from './table'

/** How far apart (ms) two threads' clocks may be when they check the same slot. */
export const CLOCK_SKEW_MS = 1000
/** maxRequests must leave at least 8 tag bits. */
export const MAX_WINDOW_COUNT = (1 << 24) - 1

export class WindowTags {
  readonly windowMs: number
  readonly countBits: number
  readonly countMask: number
  /** M: tags run 1..M. */
  readonly modulus: number
  /** A tag this many windows ahead of ours (or fewer) is the current window. */
  readonly skewWindows: number

  constructor (windowMs: number, maxRequests: number) {
    if (!(maxRequests >= 1 && maxRequests <= MAX_WINDOW_COUNT)) {
      throw new SwitchyardError('SWY_ERR_CONFIG_INVALID', `rateLimit.maxRequests must be 1-${MAX_WINDOW_COUNT} for window algorithms (got ${maxRequests})`)
    }
    this.windowMs = windowMs
    this.countBits = 32 - Math.clz32(maxRequests)
    this.countMask = (2 ** this.countBits) - 1
    this.modulus = (2 ** (32 - this.countBits)) - 1
    const skew = Math.ceil(CLOCK_SKEW_MS / windowMs)
    this.skewWindows = Math.max(1, Math.min(skew, Math.floor((this.modulus - 1) / 2)))
  }

  windowOf (nowMs: number): number {
    return Math.floor(nowMs / this.windowMs)
  }

  tagOf (window: number): number {
    const r = window % this.modulus
    return (r < 0 ? r + this.modulus : r) + 1
  }

  /** How many windows `tag` is ahead of `current` (0 = the same), 0..M-1. */
  ahead (tag: number, current: number): number {
    const d = tag - current
    return d < 0 ? d + this.modulus : d
  }

  /** `tag` names a window up to skewWindows ahead of `current` (not `current` itself). */
  isAhead (tag: number, current: number): boolean {
    if (tag === 0) return false
    const d = this.ahead(tag, current)
    return d !== 0 && d <= this.skewWindows
  }

  /** The state word for `count` requests in the window tagged `tag`. */
  pack (tag: number, count: number): number {
    return (tag << this.countBits) | count
  }

  tagIn (word: number): number {
    return word >>> this.countBits
  }

  countIn (word: number): number {
    return word & this.countMask
  }
}

/** What the fixed and the sliding window share: the quota, the tags, and this check's window. */
export abstract class WindowLimiter extends SlotTable {
  protected readonly maxRequests: number
  protected readonly windowMs: number
  protected readonly tags: WindowTags
  /** This check's window and its tag (set by prepare). */
  protected window = 0
  protected tag = 0

  constructor (config: RateLimitConfig, state: SharedState) {
    super(config, state)
    this.maxRequests = config.maxRequests
    this.windowMs = config.windowMs
    this.tags = new WindowTags(config.windowMs, config.maxRequests)
  }

  protected prepare (nowMs: number): void {
    this.window = this.tags.windowOf(nowMs)
    this.tag = this.tags.tagOf(this.window)
  }
}
