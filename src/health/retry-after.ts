/**
 * Retry-After as a health signal (healthCheck.passive.honorRetryAfter): an
 * upstream that answers 503 (Service Unavailable) or 429 (Too Many Requests)
 * with Retry-After says when it wants traffic again (RFC 9110 §10.2.3,
 * §15.6.4; RFC 6585 §4). It is taken out of rotation until then, capped by
 * maxRetryAfterMs, on every thread at once (U_HEALTHY with EJECT_RETRY_AFTER
 * and U_HOLD_UNTIL in shared memory), and the primary's reviver
 * (./passive.ts) puts it back when the time is up, active checks or not.
 */
import { EJECT_RETRY_AFTER, U_HOLD_UNTIL, U_HEALTHY } from '../shared/layout'
import type { SharedState } from '../shared/state'
import { parseHttpDate } from '../cache/http-date'

/**
 * Retry-After's value as milliseconds from `nowMs` (Date.now()): delay-seconds
 * (1*DIGIT) or an HTTP-date (RFC 9110 §10.2.3). -1 when it is neither; 0 for
 * a date in the past.
 */
export function parseRetryAfter (value: string, nowMs: number): number {
  let s = 0
  let e = value.length
  while (s < e && (value.charCodeAt(s) === 0x20 || value.charCodeAt(s) === 0x09)) s++
  while (e > s && (value.charCodeAt(e - 1) === 0x20 || value.charCodeAt(e - 1) === 0x09)) e--
  if (s === e) return -1
  const first = value.charCodeAt(s)
  if (first >= 0x30 && first <= 0x39) {
    let seconds = 0
    for (let i = s; i < e; i++) {
      const c = value.charCodeAt(i)
      if (c < 0x30 || c > 0x39) return -1
      seconds = seconds * 10 + (c - 0x30)
      if (seconds > 1e9) seconds = 1e9 // anything this long is capped by maxRetryAfterMs anyway
    }
    return seconds * 1000
  }
  const at = parseHttpDate(value.slice(s, e), nowMs)
  if (Number.isNaN(at)) return -1
  return Math.max(0, at - nowMs)
}

/** Does this response ask for a pause? RFC 9110 gives Retry-After that meaning on 503 and RFC 6585 on 429. */
export function isBackOffStatus (status: number): boolean {
  return status === 503 || status === 429
}

/**
 * Take `slot` out for `holdMs` (already capped) from `nowMs` (state.now()).
 * An upstream already out keeps its ejection, but a longer Retry-After
 * extends a Retry-After hold. true for the caller that took it out.
 */
export function holdForRetryAfter (state: SharedState, slot: number, holdMs: number, nowMs: number): boolean {
  if (holdMs <= 0) return false
  const until = (nowMs + holdMs) | 0
  if (state.upstream(slot, U_HEALTHY) !== 1) return false
  // the end goes in before the flip (state.eject): the reviver never sees the hold without its end
  state.storeUpstream(slot, U_HOLD_UNTIL, until)
  return state.eject(slot, EJECT_RETRY_AFTER, nowMs)
}
