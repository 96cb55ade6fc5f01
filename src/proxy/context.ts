/**
 * Everything one thread's request path needs, built once per thread (and
 * rebuilt on reload): config, shared state, the upstream table and its
 * balancer, the connection pool, the deadline sweeper, and the policy hooks.
 * An off feature is `null` and costs one branch per request.
 */
import type { Config } from '../config/types'
import type { SharedState, UpstreamEntry } from '../shared/state'
import type { Balancer } from '../balancer/types'
import { DeadlineSweeper } from './sweeper'
import type { UpstreamPool } from './pool'
import type { HeadLimits } from '../http/head-parser'
import type { FirewallRequest } from '../firewall/types'

export type { FirewallRequest }

export interface FirewallHook {
  evaluate (req: FirewallRequest): number
  ruleName (index: number): string
}

export interface RateDecisionLike {
  allowed: boolean
  /** Not decided yet (a cluster lease is being fetched): park the request with wait(). */
  pending: boolean
  /** Set before checking again when the lease could not be had: the Redis failure mode decides. */
  fallback: boolean
}

/** A request parked for a cluster lease; woken once (failed: apply the failure mode). */
export interface LeaseWaiter {
  onLease (failed: boolean): void
}

export interface RateLimitHook<D extends RateDecisionLike = RateDecisionLike> {
  newDecision (): D
  check (clientIp: string, nowMs: number, out: D): boolean
  headers (decision: D): string
  /** Only limiters that can answer `pending` (src/cluster/global-limiter.ts). */
  wait?: (clientIp: string, waiter: LeaseWaiter) => void
}

export interface StickyHook {
  route (cookieHeader: string | null): number
  setCookieLine (index: number): string
}

export type ClientIpResolver = (socketIp: string, xForwardedFor: string | null) => string

import type { CacheHook } from './cache-path'
import type { ListenerRuntime } from '../net/accept'
import type { RequestIds } from './request-id'
import type { RequestTracer } from '../tracing/tracer'

export class ProxyContext {
  config: Config
  readonly state: SharedState
  table: readonly UpstreamEntry[]
  balancer: Balancer
  readonly pool: UpstreamPool
  readonly sweeper: DeadlineSweeper
  headLimits: HeadLimits
  firewall: FirewallHook | null = null
  limiter: RateLimitHook | null = null
  sticky: StickyHook | null = null
  /** The shared response cache (config.cache), null when off. */
  cache: CacheHook | null = null
  resolveClientIp: ClientIpResolver | null = null
  /** Request IDs (config.requestId), null when off. */
  requestIds: RequestIds | null = null
  /** Tracing (config.tracing), null when off. */
  tracing: RequestTracer | null = null
  /** Lower-case header name whose value is the balancing hash key, or null. */
  hashHeader: string | null = null
  /** Cookie name whose value is the balancing hash key, or null. */
  hashCookie: string | null = null
  workerSlot = -1
  /** This thread's listeners (TLS contexts, redirects), by the index the primary sends with a connection. */
  listeners: ListenerRuntime[] = []
  /** ACME HTTP-01 challenges in progress (token -> key authorization), from the primary; null when none ever was. */
  acmeChallenges: Map<string, string> | null = null
  /** Set while shutting down: answer in-flight requests, then close. */
  draining = false
  /** Client connections open on this thread. */
  readonly clients = new Set<{ closeIfIdle (): boolean, destroy (): void }>()
  onIdle: (() => void) | null = null

  constructor (config: Config, state: SharedState, table: readonly UpstreamEntry[], balancer: Balancer, pool: UpstreamPool) {
    this.config = config
    this.state = state
    this.table = table
    this.balancer = balancer
    this.pool = pool
    this.headLimits = limitsOf(config)
    this.sweeper = new DeadlineSweeper(DeadlineSweeper.tickFor(shortestTimeout(config)))
    this.sweeper.start()
    this.applyHashKey(config)
  }

  applyHashKey (config: Config): void {
    const hk = config.balancing.hashKey
    this.hashHeader = hk.source === 'header' && hk.name !== undefined ? hk.name.toLowerCase() : null
    this.hashCookie = hk.source === 'cookie' && hk.name !== undefined ? hk.name : null
  }

  setConfig (config: Config): void {
    this.config = config
    this.headLimits = limitsOf(config)
    this.sweeper.setTick(DeadlineSweeper.tickFor(shortestTimeout(config)))
    this.applyHashKey(config)
  }
}

function limitsOf (config: Config): HeadLimits {
  return {
    maxHeaderBytes: config.limits.maxHeaderBytes,
    maxHeaderCount: config.limits.maxHeaderCount,
    maxRequestTargetBytes: config.limits.maxRequestTargetBytes,
  }
}

function shortestTimeout (config: Config): number {
  const t = config.timeouts
  return Math.min(t.connectMs, t.responseMs, t.upstreamIdleMs, t.clientHeaderMs, t.clientIdleMs)
}
