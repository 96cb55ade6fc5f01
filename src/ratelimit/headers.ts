/**
 * Header lines for a 429, in the structured-field form of
 * draft-ietf-httpapi-ratelimit-headers (-08 to -11):
 *
 *   Retry-After: 42                         RFC 9110 §10.2.3 (RFC 6585 §4: a 429 MAY carry it)
 *   RateLimit-Policy: "default";q=5;w=60    draft §3: quota q per window w seconds
 *   RateLimit: "default";r=0;t=42           draft §4: r remaining, t seconds until restored
 *
 * The draft's windows are whole seconds (§3.1.3: no sub-second precision), so
 * a window that is not a whole number of seconds is advertised over the next
 * whole second, with the quota scaled to that span and rounded down. The token bucket advertises its capacity over the time
 * an empty bucket takes to refill. Per §6, Retry-After is never earlier than
 * the end of the effective window, so `t` is raised to it on a refusal.
 */
import type { RateLimitConfig } from '../config/types'
import type { RateDecision } from './decision'

/** The one policy switchyard applies; the draft requires a name (§3.1). */
export const POLICY_NAME = '"default"'

/** A 429's header lines, each ending in CRLF. */
export function rateLimitHeaders (decision: RateDecision, config: RateLimitConfig): string {
  const t = decision.retryAfterSeconds > decision.resetSeconds ? decision.retryAfterSeconds : decision.resetSeconds
  const retry = decision.allowed ? '' : 'Retry-After: ' + String(decision.retryAfterSeconds) + '\r\n'
  return retry + policyLine(config) + 'RateLimit: ' + POLICY_NAME + ';r=' + String(decision.remaining) + ';t=' + String(t) + '\r\n'
}

// a config is frozen and lives for a reload cycle: remember the last one's line
let cachedConfig: RateLimitConfig | null = null
let cachedPolicyLine = ''

/** `RateLimit-Policy: ...\r\n` for `config`. */
export function policyLine (config: RateLimitConfig): string {
  if (config === cachedConfig) return cachedPolicyLine
  let quota = config.maxRequests
  let spanMs = config.windowMs
  if (config.algorithm === 'token-bucket') {
    quota = config.burst ?? config.maxRequests
    spanMs = config.windowMs * quota / config.maxRequests
  }
  const seconds = Math.max(1, Math.ceil(spanMs / 1000))
  const q = seconds * 1000 === spanMs ? quota : Math.max(1, Math.floor(quota * seconds * 1000 / spanMs))
  cachedConfig = config
  cachedPolicyLine = 'RateLimit-Policy: ' + POLICY_NAME + ';q=' + String(q) + ';w=' + String(seconds) + '\r\n'
  return cachedPolicyLine
}
