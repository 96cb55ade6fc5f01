/**
 * A pool's view of its upstreams, one per pool per thread: which upstreams a
 * pick may choose. Balancers read it instead of SharedState (it implements
 * BalancerState), so every algorithm gets the same pool-level policies:
 *
 *   mode     who is eligible                          when
 *   normal   healthy, enabled primaries               healthy primaries >= panicThresholdPercent of the enabled ones
 *   backup   healthy, enabled backups                 no primary is healthy, some backup is (HAProxy / nginx `backup`)
 *   panic    every enabled upstream, health ignored   below the threshold otherwise (Envoy's panic threshold)
 *   last     the pool's only enabled upstream          threshold 0, and it was ejected passively (nginx never
 *                                                     marks the only server of a group unavailable)
 *   none     nobody                                   everything drained, or threshold 0 and all ejected
 *
 * Panic ignores active verdicts too, as Envoy does: when too few upstreams
 * look healthy the health signal is more likely wrong than the upstreams (a
 * broken health endpoint, a network blip), and spreading over all of them
 * beats piling the whole load onto the few left. A request still fails only
 * when connecting to every candidate fails. Drained upstreams never count.
 *
 * The mask is recomputed only when the shared health generation moves
 * (SharedState.healthChanged, bumped after every health or drain change), so a
 * pick reads one shared word plus a byte per candidate. The first thread that
 * sees the pool enter or leave panic flips P_PANIC (compare-and-swap) and logs
 * it, so the switch is logged and counted once.
 *
 * Also here: connection caps (upstreams[].maxConnections: an upstream at its
 * cap is not available; `acquire` takes a slot with a compare-and-swap on the
 * shared in-flight count, exact across threads) and slow start (an upstream
 * that became healthy is admitted on its turn with probability
 * factor / max factor, factor ramping linearly from RAMP_MIN to 1 over its
 * slowStartMs from U_RAMP_START in shared memory; see pick.ts).
 *
 * State is keyed by this object, not module globals: one gate per pool, so a
 * pool table (named pools) is a list of gates.
 */
import * as L from '../shared/layout'
import { SharedState, type UpstreamEntry } from '../shared/state'
import type { BalancerState } from '../balancer/types'
import { randomSeed, xorshift32 } from '../balancer/hash'
import { logger } from '../log'
import type { RequestQueue } from './request-queue'
import { budgetAllows } from './retry'

export type PoolMode = 'normal' | 'backup' | 'panic' | 'last' | 'none'

/** Share of its weight a slow-starting upstream gets at the start of its ramp. */
export const RAMP_MIN = 0.1
/** How often the ramp factors are recomputed while a pick needs them. */
const RAMP_TICK_MS = 20
/** A ramp factor at least this share of the largest counts as the largest (no ramp between them). */
const SAME_START = 0.99

export interface PoolSettings {
  /** Name in logs, metrics and /api/status ('default' for top-level upstreams). */
  name: string
  /** Index of the pool's block in the shared state (L.POOLS_OFFSET); 0 for the default pool. */
  index: number
  panicThresholdPercent: number
}

export interface PoolLogger {
  info: (bindings: object, message: string) => void
  warn: (bindings: object, message: string) => void
}

/** The slow start factor of an upstream `elapsedMs` into a ramp of `rampMs` (1 = full weight). */
export function rampFactor (elapsedMs: number, rampMs: number): number {
  if (rampMs <= 0 || elapsedMs < 0 || elapsedMs >= rampMs) return 1
  return RAMP_MIN + (1 - RAMP_MIN) * elapsedMs / rampMs
}

export class PoolGate implements BalancerState {
  readonly name: string
  readonly index: number
  readonly state: SharedState
  readonly table: readonly UpstreamEntry[]
  readonly panicThresholdPercent: number
  mode: PoolMode = 'none'
  /** Some upstream has a connection cap. */
  readonly capped: boolean
  /** Some upstream has a slow start. */
  readonly slowStart: boolean
  /** A slow start ramp is under way: picks consult admitTurn. */
  ramping = false
  /** During the current pick, an upstream was refused only because it was at its cap. */
  sawFull = false
  /** Requests waiting for a connection slot on this thread (config `queue`), null without a queue. */
  queue: RequestQueue | null = null
  private readonly log: PoolLogger
  /** eligible[slot] = 1: the mode lets a pick choose it. */
  private readonly eligible = new Uint8Array(L.MAX_UPSTREAMS)
  /** excluded[slot] = 1 for the rest of the current pick (lost a cap race, refused by slow start). */
  private readonly excluded = new Uint8Array(L.MAX_UPSTREAMS)
  private excludedAny = false
  private readonly caps = new Int32Array(L.MAX_UPSTREAMS)
  private readonly rampMs = new Int32Array(L.MAX_UPSTREAMS)
  /** admit[slot]: probability that its turn is kept (its ramp factor over the largest one). */
  private readonly admit = new Float64Array(L.MAX_UPSTREAMS)
  private generation = -1
  private rampCheckedAt = 0
  private rng = randomSeed()

  constructor (settings: PoolSettings, state: SharedState, table: readonly UpstreamEntry[], log: PoolLogger = logger) {
    this.name = settings.name
    this.index = settings.index
    this.panicThresholdPercent = settings.panicThresholdPercent
    this.state = state
    this.table = table
    this.log = log
    let capped = false
    let slowStart = false
    for (const entry of table) {
      this.caps[entry.slot] = entry.maxConnections ?? 0
      this.rampMs[entry.slot] = entry.slowStartMs ?? 0
      if (this.caps[entry.slot] > 0) capped = true
      if (this.rampMs[entry.slot] > 0) slowStart = true
    }
    this.capped = capped
    this.slowStart = slowStart
    this.admit.fill(1)
  }

  // ---- BalancerState ----------------------------------------------------------

  isAvailable (slot: number): boolean {
    if (this.eligible[slot] === 0) return false
    if (this.excludedAny && this.excluded[slot] === 1) return false
    const cap = this.caps[slot]
    if (cap > 0 && this.state.upstream(slot, L.U_ACTIVE_REQUESTS) >= cap) {
      this.sawFull = true
      return false
    }
    return true
  }

  upstream (slot: number, field: number): number { return this.state.upstream(slot, field) }
  nextCursor (poolSlot?: number): number { return this.state.nextCursor(poolSlot) }

  // ---- the pick phase ---------------------------------------------------------

  /** Before a pick: bring the mask up to date (`nowMs`: a coarse Date.now(), e.g. the sweeper's). */
  beginPick (nowMs: number): void {
    if (this.state.header(L.H_HEALTH_GENERATION) !== this.generation) this.recompute()
    if (this.slowStart && nowMs - this.rampCheckedAt >= RAMP_TICK_MS) {
      this.rampCheckedAt = nowMs
      this.updateRamp()
    }
    if (this.excludedAny) { this.excluded.fill(0); this.excludedAny = false }
    this.sawFull = false
  }

  /** Leave `slot` out for the rest of this pick. */
  exclude (slot: number): void {
    this.excluded[slot] = 1
    this.excludedAny = true
  }

  /** Slow start: keep this turn of `slot`? Always true for an upstream not ramping. */
  admitTurn (slot: number): boolean {
    const p = this.admit[slot]
    if (p >= 1) return true
    this.rng = xorshift32(this.rng)
    return (this.rng >>> 0) / 4294967296 < p
  }

  /**
   * Count a request in flight to `slot` (U_ACTIVE_REQUESTS, held by this
   * worker). Under a cap only while below it: false when another thread took
   * the last connection slot first.
   */
  acquire (workerSlot: number, slot: number): boolean {
    const cap = this.caps[slot]
    if (cap === 0) {
      this.state.addHeld(workerSlot, slot, L.U_ACTIVE_REQUESTS, 1)
      return true
    }
    return this.state.tryAddActiveBelow(workerSlot, slot, cap)
  }

  /**
   * The retry budget (Envoy's): retries in flight to the pool's upstreams
   * below `percent` of its requests in flight (MIN_RETRY_BUDGET at least).
   * Read only when a retry is considered, so it sums the pool's gauges.
   */
  retryBudgetAllows (percent: number): boolean {
    let retries = 0
    let active = 0
    for (const entry of this.table) {
      retries += this.state.upstream(entry.slot, L.U_RETRIES_ACTIVE)
      active += this.state.upstream(entry.slot, L.U_ACTIVE_REQUESTS)
    }
    return budgetAllows(percent, retries, active)
  }

  /** Eligible under the current mode (tests, status). */
  isEligible (slot: number): boolean { return this.eligible[slot] === 1 }

  /** The ramp admission probability of `slot` (tests, status). */
  admitProbability (slot: number): number { return this.admit[slot] }

  // ---- recomputation (when health changes) ------------------------------------

  /** Recompute the mode and the mask from shared health and drain state. */
  recompute (): void {
    const state = this.state
    // read the generation first: a change after this read moves it again, and the next pick recomputes
    this.generation = state.header(L.H_HEALTH_GENERATION)
    let primaries = 0
    let healthyPrimaries = 0
    let healthyBackups = 0
    let enabled = 0
    let only = -1
    for (const entry of this.table) {
      const slot = entry.slot
      if (state.upstream(slot, L.U_ADMIN_STATE) !== L.ADMIN_ENABLED) continue
      enabled++
      only = slot
      const healthy = state.upstream(slot, L.U_HEALTHY) === 1
      if (entry.backup === true) {
        if (healthy) healthyBackups++
      } else {
        primaries++
        if (healthy) healthyPrimaries++
      }
    }
    const threshold = this.panicThresholdPercent
    let mode: PoolMode
    if (enabled === 0) mode = 'none'
    else if (healthyPrimaries > 0 && healthyPrimaries * 100 >= threshold * primaries) mode = 'normal'
    else if (healthyPrimaries === 0 && healthyBackups > 0) mode = 'backup'
    else if (threshold > 0) mode = 'panic'
    else if (enabled === 1 && state.upstream(only, L.U_EJECT_SOURCE) === L.EJECT_PASSIVE) mode = 'last'
    else mode = 'none'

    this.eligible.fill(0)
    for (const entry of this.table) {
      const slot = entry.slot
      if (state.upstream(slot, L.U_ADMIN_STATE) !== L.ADMIN_ENABLED) continue
      const healthy = state.upstream(slot, L.U_HEALTHY) === 1
      const backup = entry.backup === true
      let ok: boolean
      switch (mode) {
        case 'normal': ok = healthy && !backup; break
        case 'backup': ok = healthy && backup; break
        case 'panic': case 'last': ok = true; break
        default: ok = false
      }
      this.eligible[slot] = ok ? 1 : 0
    }
    const previous = this.mode
    this.mode = mode
    if (this.slowStart) this.updateRamp()
    this.notePanic(mode === 'panic', previous, healthyPrimaries, primaries)
  }

  /** Flip the pool's shared panic word; the thread that flips it logs and counts the switch. */
  private notePanic (panic: boolean, previous: PoolMode, healthy: number, primaries: number): void {
    const want = panic ? 1 : 0
    if (this.state.casPool(this.index, L.P_PANIC, 1 - want, want) !== 1 - want) return
    this.state.addPool(this.index, L.P_PANIC_TRANSITIONS, 1)
    const bindings = { pool: this.name, healthy, primaries, thresholdPercent: this.panicThresholdPercent, previousMode: previous, mode: this.mode }
    if (panic) this.log.warn(bindings, 'pool in panic mode: too few healthy upstreams, balancing over all of them')
    else this.log.info(bindings, 'pool out of panic mode')
  }

  /** Recompute each eligible upstream's slow start admission probability. */
  private updateRamp (): void {
    const state = this.state
    const now = state.now()
    let max = 0
    let any = false
    for (const entry of this.table) {
      const slot = entry.slot
      const factor = rampFactor(SharedState.elapsed(now, state.upstream(slot, L.U_RAMP_START)), this.rampMs[slot])
      this.admit[slot] = factor
      if (this.eligible[slot] === 0) continue
      if (factor > max) max = factor
      if (factor < 1) any = true
    }
    // relative to the largest factor: upstreams that all ramp together keep equal shares
    let ramping = false
    for (const entry of this.table) {
      const slot = entry.slot
      const relative = any && max > 0 ? Math.min(1, this.admit[slot] / max) : 1
      // within 1% of the largest is the same start (upstreams set up a millisecond apart): full share
      const p = relative >= SAME_START ? 1 : relative
      this.admit[slot] = p
      if (p < 1 && this.eligible[slot] === 1) ramping = true
    }
    this.ramping = ramping
  }
}
