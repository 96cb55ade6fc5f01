/**
 * A snapshot of every configured upstream for the admin API: health, last
 * active check, load and counters, read from shared memory. Counters are
 * uint32 that wrap (see shared/layout), so they are read with `>>> 0`; the
 * primary's sampler is the place for 64-bit totals.
 */
import {
  ADMIN_DRAINING, U_ACTIVE_REQUESTS, U_ADMIN_STATE, U_CONSECUTIVE_FAILURES, U_FAILURES,
  U_HEALTH_TRANSITIONS, U_HEALTHY, U_LAST_CHECK_AT, U_LAST_CHECK_LATENCY_US, U_LAST_CHECK_STATUS,
  U_OPEN_SOCKETS, U_REQUESTS, U_STATUS_1XX,
} from '../shared/layout'
import { SharedState, type UpstreamEntry } from '../shared/state'
import { describeCheckStatus } from './reason'
import { upstreamKey } from '../routing/pools'

export interface LastCheck {
  /** HTTP status of the last active check; null when it got none (refused, timeout, ...). */
  status: number | null
  /** "status 200", "connection refused", "timeout", "connection reset", "bad response". */
  reason: string | null
  latencyMs: number | null
  /** How long ago the last check finished. */
  ageMs: number | null
}

export interface ResponsesByClass {
  '1xx': number
  '2xx': number
  '3xx': number
  '4xx': number
  '5xx': number
}

export interface UpstreamStatus {
  id: string
  /** The pool it belongs to, and how the admin API names it (address, or pool/address outside pool "default"). */
  pool: string
  key: string
  address: string
  weight: number
  healthy: boolean
  draining: boolean
  consecutiveFailures: number
  /** null when no active check has completed (or active checks are off). */
  lastCheck: LastCheck | null
  activeRequests: number
  openSockets: number
  requests: number
  failures: number
  healthTransitions: number
  responses: ResponsesByClass
}

export function upstreamStatus (state: SharedState, table: readonly UpstreamEntry[]): UpstreamStatus[] {
  const now = state.now()
  return table.map((entry) => {
    const slot = entry.slot
    const u = (field: number): number => state.upstream(slot, field)
    return {
      id: entry.id,
      pool: entry.pool,
      key: upstreamKey(entry),
      address: entry.address,
      weight: entry.weight,
      healthy: u(U_HEALTHY) === 1,
      draining: u(U_ADMIN_STATE) === ADMIN_DRAINING,
      consecutiveFailures: u(U_CONSECUTIVE_FAILURES) >>> 0,
      lastCheck: lastCheck(state, slot, now),
      // Gauges: a transiently negative value (decrement seen before its
      // increment) must not read as 4 billion.
      activeRequests: Math.max(0, u(U_ACTIVE_REQUESTS)),
      openSockets: Math.max(0, u(U_OPEN_SOCKETS)),
      requests: u(U_REQUESTS) >>> 0,
      failures: u(U_FAILURES) >>> 0,
      healthTransitions: u(U_HEALTH_TRANSITIONS) >>> 0,
      responses: {
        '1xx': u(U_STATUS_1XX) >>> 0,
        '2xx': u(U_STATUS_1XX + 1) >>> 0,
        '3xx': u(U_STATUS_1XX + 2) >>> 0,
        '4xx': u(U_STATUS_1XX + 3) >>> 0,
        '5xx': u(U_STATUS_1XX + 4) >>> 0,
      },
    }
  })
}

function lastCheck (state: SharedState, slot: number, now: number): LastCheck | null {
  const status = state.upstream(slot, U_LAST_CHECK_STATUS)
  if (status === 0) return null // never checked
  return {
    status: status > 0 ? status : null,
    reason: describeCheckStatus(status),
    latencyMs: (state.upstream(slot, U_LAST_CHECK_LATENCY_US) >>> 0) / 1000,
    ageMs: Math.max(0, SharedState.elapsed(now, state.upstream(slot, U_LAST_CHECK_AT))),
  }
}
