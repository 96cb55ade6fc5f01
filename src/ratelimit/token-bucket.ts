/**
 * Token bucket: capacity `burst` (default maxRequests), refilled at
 * maxRequests per windowMs. Kept in the GCRA form (ATM Forum's generic cell
 * rate algorithm, as in Redis' redis-cell): one number per client, the
 * theoretical arrival time TAT, instead of (tokens, last refill), so a check
 * is a single compareExchange and is exact across threads.
 *
 *   T   = windowMs / maxRequests          time one token takes to refill
 *   tau = (burst - 1) * T                 how far TAT may run ahead of now
 *   allow iff max(TAT, now) - now <= tau;  then TAT = max(TAT, now) + T
 *
 * Time is fixed-point int32 "units" of 1/R ms, R a power of two chosen so that
 * a full bucket's span (burst * T) fits in 2^28 units, with R <= 1024 (so T
 * keeps at least 10 bits when T >= 1 ms). int32 time wraps (every 70 minutes
 * at R = 1024), so TAT alone
 * cannot tell "long ago" from "soon": STATE_B holds the epoch
 * (floor(units / 2^28)) of the last update, stored BEFORE the TAT
 * compareExchange. A reader that sees STATE_B three or more epochs old knows
 * every TAT written since is already in the past (a full bucket), whatever the
 * bits say.
 */
import type { RateLimitConfig } from '../config/types'
import type { SharedState } from '../shared/state'
import { SwitchyardError } from '../errors'
import { type RateDecision, ceilSeconds } from './decision'
import { CAS_ATTEMPTS, S_STATE_A, S_STATE_B, SlotTable } from './table'
import { CLOCK_SKEW_MS, MAX_WINDOW_COUNT } from './window'

const EPOCH_UNITS = 2 ** 28
// 1024 units/ms keeps Date.now() * R exact in a double (< 2^53) until the year 2248
const MAX_UNITS_PER_MS = 1024
const MIN_UNITS_PER_MS = 2 ** -30
/** STATE_B this many epochs behind (or more) means the bucket is full. */
const STALE_EPOCHS = 3

export class TokenBucketLimiter extends SlotTable {
  private readonly burst: number
  /** R: time units per millisecond. */
  private readonly unitsPerMs: number
  /** T in units. */
  private readonly interval: number
  /** tau in units. */
  private readonly tolerance: number
  /** Largest legitimate TAT - now (a full bucket's span plus clock skew), in units. */
  private readonly maxAhead: number
  /** This check's clock: now in units (int32, wraps) and its epoch. */
  private now = 0
  private epoch = 0

  constructor (config: RateLimitConfig, state: SharedState) {
    super(config, state)
    const burst = config.burst ?? config.maxRequests
    if (!(burst >= 1 && burst <= MAX_WINDOW_COUNT)) {
      throw new SwitchyardError('SWY_ERR_CONFIG_INVALID', `rateLimit.burst must be 1-${MAX_WINDOW_COUNT} (got ${burst})`)
    }
    this.burst = burst
    const intervalMs = config.windowMs / config.maxRequests
    // the finest clock (up to 1024 units/ms) whose full-bucket span, plus skew, fits one epoch
    let r = MAX_UNITS_PER_MS
    while (r > MIN_UNITS_PER_MS && burst * Math.max(1, Math.round(intervalMs * r)) + CLOCK_SKEW_MS * r > EPOCH_UNITS) r /= 2
    this.unitsPerMs = r
    this.interval = Math.max(1, Math.round(intervalMs * r))
    this.tolerance = (burst - 1) * this.interval
    this.maxAhead = this.tolerance + this.interval + Math.ceil(CLOCK_SKEW_MS * r)
  }

  protected prepare (nowMs: number): void {
    const units = Math.floor(nowMs * this.unitsPerMs)
    this.now = units | 0
    this.epoch = Math.floor(units / EPOCH_UNITS) | 0
  }

  /** How far this slot's TAT runs ahead of now (0 = full bucket), from words read in this order. */
  private debtOf (tat: number, lastEpoch: number): number {
    const age = (this.epoch - lastEpoch) | 0
    if (age >= STALE_EPOCHS || age < -1) return 0
    const ahead = (tat - this.now) | 0
    // a value beyond any legitimate TAT is an old one read while another
    // thread was updating the epoch: the bucket is full
    return ahead > 0 && ahead <= this.maxAhead ? ahead : 0
  }

  protected isStale (base: number): boolean {
    return this.usage(base) === 0
  }

  protected usage (base: number): number {
    const tat = Atomics.load(this.table, base + S_STATE_A)
    return this.debtOf(tat, Atomics.load(this.table, base + S_STATE_B))
  }

  protected consume (base: number, _nowMs: number, out: RateDecision): boolean {
    const table = this.table
    const tatIndex = base + S_STATE_A
    const epochIndex = base + S_STATE_B
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      // TAT first, then the epoch: the epoch a writer stored before its TAT is then visible
      const tat = Atomics.load(table, tatIndex)
      const lastEpoch = Atomics.load(table, epochIndex)
      const debt = this.debtOf(tat, lastEpoch)
      if (debt > this.tolerance) return this.answer(false, debt, out)
      if (lastEpoch !== this.epoch) Atomics.store(table, epochIndex, this.epoch)
      const next = (this.now + debt + this.interval) | 0
      if (Atomics.compareExchange(table, tatIndex, tat, next) === tat) return this.answer(true, debt + this.interval, out)
    }
    return this.answer(false, this.tolerance + this.interval, out)
  }

  protected refuse (_nowMs: number, out: RateDecision): boolean {
    return this.answer(false, this.tolerance + this.interval, out)
  }

  /** Fill `out`; `debt` is TAT - now after the request (allowed) or as found (refused). */
  private answer (allowed: boolean, debt: number, out: RateDecision): boolean {
    const msPerUnit = 1 / this.unitsPerMs
    out.allowed = allowed
    out.limit = this.burst
    if (allowed) {
      out.remaining = Math.floor((this.tolerance + this.interval - debt) / this.interval)
      out.resetSeconds = ceilSeconds(debt * msPerUnit)
      out.retryAfterSeconds = 0
    } else {
      // the next token is due when TAT - now falls back to tau
      const retry = ceilSeconds((debt - this.tolerance) * msPerUnit)
      out.remaining = 0
      out.resetSeconds = retry
      out.retryAfterSeconds = retry
    }
    return allowed
  }
}
