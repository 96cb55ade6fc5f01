/**
 * Passive health (Envoy's outlier detection, HAProxy's `observe layer4`): the
 * thread that saw a request to an upstream fail or succeed records it in shared
 * memory, and `maxFailures` consecutive failures eject the upstream for every
 * thread at once.
 *
 * recordUpstreamFailure / recordUpstreamSuccess run on the data path in any
 * thread: Atomics only, no allocation, no logging (the caller logs when told it
 * did the ejection). PassiveReviver runs on the primary and puts ejected
 * upstreams back after `cooldownMs` when no active check is configured, and
 * upstreams held out by a Retry-After (src/health/retry-after.ts) when it ends.
 *
 * Fields written here (see shared/layout): U_FAILURES, U_CONSECUTIVE_FAILURES,
 * U_HEALTHY, U_EJECTED_AT, U_HEALTH_TRANSITIONS.
 */
import type { PassiveHealthConfig } from '../config/types'
import {
  U_CONSECUTIVE_FAILURES, U_EJECTED_AT, U_FAILURES, U_HEALTHY, U_LAST_RESPONSE_AT, U_LAST_FAILED_CLIENT, EJECT_PASSIVE,
  U_EJECT_SOURCE, U_HOLD_UNTIL, EJECT_RETRY_AFTER,
} from '../shared/layout'
import { SharedState, type UpstreamEntry } from '../shared/state'
import { fmix32 } from '../shared/hash'
import { logger } from '../log'

/**
 * Count a failed request (connect failure, reset, timeout) against `slot`.
 * Returns true only for the one call, across all threads, that ejected the
 * upstream, so exactly one thread logs the ejection.
 */
export function recordUpstreamFailure (state: SharedState, slot: number, passive: PassiveHealthConfig, nowMs: number): boolean {
  state.addUpstream(slot, U_FAILURES, 1)
  const consecutive = state.addUpstream(slot, U_CONSECUTIVE_FAILURES, 1) + 1
  if (consecutive < passive.maxFailures) return false
  // Already out (ejected by another thread or by the active prober): leave its
  // ejection time alone so late failures of in-flight requests do not extend it.
  if (state.upstream(slot, U_HEALTHY) !== 1) return false
  // The time goes in before the flip (state.eject): the reviver must never see
  // HEALTHY = 0 next to the stale time of an earlier ejection and revive at once.
  // Threads racing here all store "now", so the loser's store only moves it by a hair.
  return state.eject(slot, EJECT_PASSIVE, nowMs)
}

/**
 * A request failed after it reached the upstream (a reset, a timeout, a
 * malformed or stalled response). Unlike a refused connection, such failures
 * can be provoked by the request itself (a slow endpoint, a path that crashes
 * the app, a header it reflects badly), so one client must not be able to
 * eject a healthy upstream with them. A request failure counts toward
 * ejection only when
 *   - the upstream has sent no response head at all since this request was
 *     sent (`sentAtMs`, state.now() units): an upstream that answers others
 *     is alive, and
 *   - it comes from another client (`clientHash`) than the last one counted:
 *     consecutive failures of one client count once.
 * A hung or crashing upstream still gets ejected: it answers nobody, and the
 * failures of distinct clients count. Returns true for the call that ejected it.
 */
export function recordRequestFailure (state: SharedState, slot: number, passive: PassiveHealthConfig, nowMs: number, sentAtMs: number, clientHash: number): boolean {
  const answeredSince = SharedState.elapsed(state.upstream(slot, U_LAST_RESPONSE_AT), sentAtMs) >= 0
  if (answeredSince || state.upstream(slot, U_LAST_FAILED_CLIENT) === clientHash) {
    state.addUpstream(slot, U_FAILURES, 1) // still a failure in the counters, not in the streak
    return false
  }
  state.storeUpstream(slot, U_LAST_FAILED_CLIENT, clientHash)
  return recordUpstreamFailure(state, slot, passive, nowMs)
}

/** Identifies a client for the same-client rule of recordRequestFailure (never 0, which means none). */
export function clientHash (ip: string): number {
  let h = 0x811c9dc5 // FNV-1a, then murmur's finaliser
  for (let i = 0; i < ip.length; i++) h = Math.imul(h ^ ip.charCodeAt(i), 0x01000193)
  return fmix32(h) | 1
}

/** A request got a response head: the failure streak is over. `nowMs` from state.now(). */
export function recordUpstreamSuccess (state: SharedState, slot: number, nowMs: number): void {
  // Load first: a store on every request would bounce the cache line between
  // cores for nothing when nothing changes (the common case: the streak is 0,
  // and the time moves once a millisecond).
  if (state.upstream(slot, U_CONSECUTIVE_FAILURES) !== 0) state.storeUpstream(slot, U_CONSECUTIVE_FAILURES, 0)
  if (state.upstream(slot, U_LAST_RESPONSE_AT) !== nowMs) state.storeUpstream(slot, U_LAST_RESPONSE_AT, nowMs)
  if (state.upstream(slot, U_LAST_FAILED_CLIENT) !== 0) state.storeUpstream(slot, U_LAST_FAILED_CLIENT, 0)
}

/** What health code logs with: pino's Logger fits, and tests pass a recorder. */
export interface HealthLogger {
  info: (bindings: object, message: string) => void
  warn: (bindings: object, message: string) => void
}

const MIN_POLL_MS = 10
/** How late at most an upstream held out by Retry-After comes back. */
const RETRY_AFTER_POLL_MS = 100
const MAX_POLL_MS = 1000

/** How often to look for expired ejections: a quarter of the cooldown, within [10 ms, 1 s]. */
export function reviverPollMs (cooldownMs: number): number {
  return Math.min(MAX_POLL_MS, Math.max(MIN_POLL_MS, Math.floor(cooldownMs / 4)))
}

/**
 * Primary only. Without active checks nothing else would ever mark an ejected
 * upstream healthy again, so after `cooldownMs` it goes back "half-open":
 * healthy, with its failure streak one short of `maxFailures`, so one more
 * failure ejects it again at once while one success closes the streak.
 * With active checks on it stays idle: the prober decides when to revive.
 */
export class PassiveReviver {
  private passive: PassiveHealthConfig
  private readonly state: SharedState
  private table: readonly UpstreamEntry[]
  private activeEnabled: boolean
  private readonly log: HealthLogger
  private timer: NodeJS.Timeout | null = null
  private running = false

  constructor (passive: PassiveHealthConfig, state: SharedState, table: readonly UpstreamEntry[], activeEnabled: boolean, log: HealthLogger = logger) {
    this.passive = passive
    this.state = state
    this.table = table
    this.activeEnabled = activeEnabled
    this.log = log
    this.poll = this.poll.bind(this)
  }

  start (): void {
    this.running = true
    this.schedule()
  }

  stop (): void {
    this.running = false
    this.unschedule()
  }

  setTable (table: readonly UpstreamEntry[]): void {
    this.table = table
  }

  /** Hot reload: new cooldown / maxFailures, or active checks turned on or off. */
  setConfig (passive: PassiveHealthConfig, activeEnabled: boolean): void {
    this.passive = passive
    this.activeEnabled = activeEnabled
    this.unschedule()
    if (this.running) this.schedule()
  }

  /** One pass over the table (exposed for tests and for a final sweep). */
  poll (): void {
    const state = this.state
    const now = state.now()
    const cooldownMs = this.passive.cooldownMs
    for (const entry of this.table) {
      const slot = entry.slot
      if (state.upstream(slot, U_HEALTHY) !== 0) continue
      if (state.upstream(slot, U_EJECT_SOURCE) === EJECT_RETRY_AFTER) {
        // out for as long as the upstream asked (Retry-After), then straight back, active checks or not
        const leftMs = SharedState.elapsed(state.upstream(slot, U_HOLD_UNTIL), now)
        if (leftMs > 0 || !state.revive(slot)) continue
        this.log.info({ upstream: entry.address, id: entry.id, heldForMs: SharedState.elapsed(now, state.upstream(slot, U_EJECTED_AT)) }, 'upstream back in rotation after its Retry-After')
        continue
      }
      if (this.activeEnabled) continue
      const ejectedForMs = SharedState.elapsed(now, state.upstream(slot, U_EJECTED_AT))
      if (ejectedForMs < cooldownMs) continue
      // Streak first, then the flip: a thread that sees the upstream healthy
      // again must also see the half-open streak, not the old one.
      state.storeUpstream(slot, U_CONSECUTIVE_FAILURES, this.passive.maxFailures - 1)
      if (!state.revive(slot)) continue
      this.log.info({ upstream: entry.address, id: entry.id, ejectedForMs, cooldownMs }, 'upstream back in rotation after passive ejection cooldown (half-open)')
    }
  }

  private schedule (): void {
    const retryAfter = this.passive.honorRetryAfter
    if ((this.activeEnabled && !retryAfter) || this.timer !== null) return
    // Retry-After holds end on time (within RETRY_AFTER_POLL_MS), whatever the cooldown
    const pollMs = reviverPollMs(this.passive.cooldownMs)
    this.timer = setInterval(this.poll, retryAfter ? Math.min(RETRY_AFTER_POLL_MS, pollMs) : pollMs)
    this.timer.unref()
  }

  private unschedule (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }
}
