/**
 * Everything one thread's request path needs, built once per thread (and
 * rebuilt on reload): config, shared state, the upstream table and its
 * balancer, the connection pool, the deadline sweeper, and the policy hooks.
 * An off feature is `null` and costs one branch per request.
 */
import type { Config } from '../config/types'
import type { SharedState, UpstreamEntry } from '../shared/state'
import type { PoolSet } from '../routing/pools'
import type { Router } from '../routing/router'
import { DeadlineSweeper } from './sweeper'
import type { UpstreamPool } from './pool'
import type { HeadLimits } from '../http/head-parser'
import type { FirewallRequest } from '../firewall/types'
import { compileRetryPolicy, type RetryPolicy } from './retry'

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
  /** Every upstream of every pool (the primary's table); a request uses its pool's slice (pools). */
  table: readonly UpstreamEntry[]
  /** The pools, each with its balancer, sticky ids and hash key (src/routing/pools.ts). */
  pools: PoolSet
  /** The compiled route table; null without routes (every request goes to pool "default"). */
  router: Router | null = null
  /** retries, retryOn and the rest, compiled (src/proxy/retry.ts). */
  retry: RetryPolicy
  readonly pool: UpstreamPool
  readonly sweeper: DeadlineSweeper
  headLimits: HeadLimits
  firewall: FirewallHook | null = null
  limiter: RateLimitHook | null = null
  /** The shared response cache (config.cache), null when off. */
  cache: CacheHook | null = null
  resolveClientIp: ClientIpResolver | null = null
  /** Request IDs (config.requestId), null when off. */
  requestIds: RequestIds | null = null
  /** Tracing (config.tracing), null when off. */
  tracing: RequestTracer | null = null
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

  constructor (config: Config, state: SharedState, table: readonly UpstreamEntry[], pools: PoolSet, pool: UpstreamPool) {
    this.config = config
    this.state = state
    this.table = table
    this.pools = pools
    this.retry = compileRetryPolicy(config)
    this.pool = pool
    this.headLimits = limitsOf(config)
    this.sweeper = new DeadlineSweeper(DeadlineSweeper.tickFor(shortestTimeout(config)))
    this.sweeper.start()
  }

  setConfig (config: Config): void {
    this.config = config
    this.retry = compileRetryPolicy(config)
    this.headLimits = limitsOf(config)
    this.sweeper.setTick(DeadlineSweeper.tickFor(shortestTimeout(config)))
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
  let shortest = Math.min(t.connectMs, t.responseMs, t.upstreamIdleMs, t.clientHeaderMs, t.clientIdleMs, t.tunnelIdleMs)
  // a route's own timeouts are deadlines on the same sweeper
  for (const r of config.routes ?? []) shortest = Math.min(shortest, r.timeouts?.responseMs ?? shortest, r.timeouts?.upstreamIdleMs ?? shortest, r.timeouts?.tunnelIdleMs ?? shortest)
  return shortest
}
