/**
 * Leases in shared memory: the part of a client's global allowance this
 * instance holds, spent by every thread with Atomics, written by the
 * primary's LeaseManager when Redis grants more (./leases.ts).
 *
 * The slots live in the same table as the local limiters' (src/ratelimit/table.ts
 * owns probing and claiming), as a second family: the key seed is salted, so a
 * client's lease slot is never its local-count slot.
 *
 *   slot  | KEY_HI | KEY_LO | STATE_A = [period tag | leased, unspent] | STATE_B = denied until |
 *
 *   period   floor(redisNow / windowMs): the window the lease was granted in (fixed
 *            and sliding window), or the lease period of a token bucket. A lease
 *            is spent only in its own period (or while this thread's clock still
 *            reads the one before); after it, what is left is the primary's to
 *            hand back (leftover on the next grant, or the sweep).
 *   denied   negative cache: SharedState.now() ms until which Redis said "no"
 *            (the window's end, or when the bucket has a token again); 0 = not denied.
 *            Every thread refuses locally until then, without asking.
 *
 * Who writes: workers and the primary (sequential mode) decrement STATE_A;
 * the primary's LeaseManager adds grants, takes unspent leases back and sets
 * STATE_B. All through compareExchange, so a lease unit is spent once: the
 * instance never admits more than Redis granted it.
 */
import type { RateLimitConfig } from '../config/types'
import type { SharedState } from '../shared/state'
import { H_CLUSTER_CLOCK_OFFSET } from '../shared/layout'
import { type RateDecision, ceilSeconds } from '../ratelimit/decision'
import { CAS_ATTEMPTS, S_STATE_A, S_STATE_B, SlotTable } from '../ratelimit/table'
import { WindowTags } from '../ratelimit/window'

/** Salt of the lease slots' key seed ("LEAS"). */
const LEASE_SALT = 0x4c454153

function policyHash (policy: string): number {
  let h = 0
  for (let i = 0; i < policy.length; i++) h = Math.imul(h ^ policy.charCodeAt(i), 0x01000193)
  return h
}

export class LeaseSlots extends SlotTable {
  /** Largest lease a slot can hold in one period. */
  readonly capacity: number
  readonly periodMs: number
  private readonly tags: WindowTags
  private readonly state: SharedState
  /** This check's period (on Redis's clock), its tag, and SharedState.now(). */
  private period = 0
  private tag = 0
  private stateNow = 0
  private redisNow = 0

  /** `policy` names the limit ('' = the top-level one): each limit has its own lease slots. */
  constructor (config: RateLimitConfig, state: SharedState, policy = '') {
    super(config, state, LEASE_SALT ^ policyHash(policy))
    // a token bucket may lease its burst and the refill of one whole period
    this.capacity = config.algorithm === 'token-bucket'
      ? Math.min((1 << 24) - 1, (config.burst ?? config.maxRequests) + config.maxRequests)
      : config.maxRequests
    this.periodMs = config.windowMs
    this.tags = new WindowTags(config.windowMs, this.capacity)
    this.state = state
  }

  protected prepare (nowMs: number): void {
    this.redisNow = nowMs + Atomics.load(this.state.i32, H_CLUSTER_CLOCK_OFFSET)
    this.period = Math.floor(this.redisNow / this.periodMs)
    this.tag = this.tags.tagOf(this.period)
    this.stateNow = (nowMs - this.state.epochMs) | 0
  }

  protected isStale (base: number): boolean {
    const word = Atomics.load(this.table, base + S_STATE_A)
    if (this.tags.tagIn(word) === this.tag && this.tags.countIn(word) > 0) return false
    return !this.deniedAt(base)
  }

  protected usage (base: number): number {
    const word = Atomics.load(this.table, base + S_STATE_A)
    return this.tags.tagIn(word) === this.tag ? this.tags.countIn(word) : 0
  }

  private deniedAt (base: number): boolean {
    const until = Atomics.load(this.table, base + S_STATE_B)
    return until !== 0 && ((until - this.stateNow) | 0) > 0
  }

  /**
   * Spend one leased unit: allowed; or refused by the negative cache; or
   * `out.pending` (nothing leased here: ask the primary).
   */
  protected consume (base: number, _nowMs: number, out: RateDecision): boolean {
    const table = this.table
    const index = base + S_STATE_A
    const tags = this.tags
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const word = Atomics.load(table, index)
      const count = tags.countIn(word)
      // a lease of the next period is spendable too: this thread's estimate of Redis's clock may
      // lag by a little, and Redis counted those units in that period whenever they are spent
      const tag = tags.tagIn(word)
      if ((tag !== this.tag && !tags.isAhead(tag, this.tag)) || count === 0) break
      if (Atomics.compareExchange(table, index, word, word - 1) === word) return this.answer(true, count - 1, 0, out)
    }
    const until = Atomics.load(table, base + S_STATE_B)
    const wait = (until - this.stateNow) | 0
    if (until !== 0 && wait > 0) return this.answer(false, 0, wait, out)
    out.allowed = false
    out.pending = true
    return false
  }

  protected refuse (_nowMs: number, out: RateDecision): boolean {
    // no slot could be had (the table is saturated): nowhere to keep a lease
    return this.answer(false, 0, this.periodMs, out)
  }

  private answer (allowed: boolean, remaining: number, waitMs: number, out: RateDecision): boolean {
    out.allowed = allowed
    out.pending = false
    out.limit = this.config.algorithm === 'token-bucket' ? (this.config.burst ?? this.config.maxRequests) : this.config.maxRequests
    // what this instance still holds: a lower bound of what the cluster has left
    out.remaining = remaining
    const periodEnd = ceilSeconds((this.period + 1) * this.periodMs - this.redisNow)
    out.resetSeconds = allowed ? periodEnd : ceilSeconds(waitMs)
    out.retryAfterSeconds = allowed ? 0 : ceilSeconds(waitMs)
    return allowed
  }

  // ---- the primary's side (LeaseManager) ---------------------------------------

  /**
   * Add `granted` units leased in `period` to `clientIp`'s slot, or, when
   * granted is 0, deny it until `deniedForMs` from now. Returns the units
   * left over from an older period (to hand back to Redis), or -1 when no slot
   * could be had (the grant is then not held here: hand it all back).
   */
  grant (clientIp: string, nowMs: number, period: number, granted: number, deniedForMs: number): number {
    const base = this.slotOf(clientIp, nowMs)
    if (base < 0) return -1
    const table = this.table
    const tags = this.tags
    const tag = tags.tagOf(period)
    let leftover = 0
    if (granted > 0) {
      for (;;) {
        const word = Atomics.load(table, base + S_STATE_A)
        const same = tags.tagIn(word) === tag
        const held = same ? tags.countIn(word) : 0
        const total = Math.min(tags.countMask, held + granted)
        if (Atomics.compareExchange(table, base + S_STATE_A, word, tags.pack(tag, total)) === word) {
          leftover = (same ? 0 : tags.countIn(word)) + (held + granted - total)
          break
        }
      }
      Atomics.store(table, base + S_STATE_B, 0)
    } else {
      Atomics.store(table, base + S_STATE_B, (this.stateNow + Math.max(1, deniedForMs)) | 0 || 1)
    }
    return leftover
  }

  /** Take back what `clientIp` holds unspent in `period` (the client went quiet). */
  takeBack (clientIp: string, nowMs: number, period: number): number {
    const base = this.slotOf(clientIp, nowMs)
    if (base < 0) return 0
    const tags = this.tags
    const tag = tags.tagOf(period)
    for (;;) {
      const word = Atomics.load(this.table, base + S_STATE_A)
      if (tags.tagIn(word) !== tag || tags.countIn(word) === 0) return 0
      if (Atomics.compareExchange(this.table, base + S_STATE_A, word, tags.pack(tag, 0)) === word) return tags.countIn(word)
    }
  }

  /** Clear `clientIp`'s negative cache (units came back to Redis). */
  forgetDenial (clientIp: string, nowMs: number): void {
    const base = this.slotOf(clientIp, nowMs)
    if (base >= 0) Atomics.store(this.table, base + S_STATE_B, 0)
  }

  /** Units `clientIp` holds unspent in `period`. */
  held (clientIp: string, nowMs: number, period: number): number {
    const base = this.slotOf(clientIp, nowMs)
    if (base < 0) return 0
    const word = Atomics.load(this.table, base + S_STATE_A)
    return this.tags.tagIn(word) === this.tags.tagOf(period) ? this.tags.countIn(word) : 0
  }
}
