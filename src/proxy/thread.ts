/**
 * Sets up the request path on one thread (the primary in sequential mode, or
 * a worker): the ProxyContext with its balancer and policy hooks, and the
 * per-thread stats. `attachConnection` is all a caller needs for a connected
 * socket; it needs nothing else from the caller.
 */
import type * as net from 'node:net'
import { isMainThread } from 'node:worker_threads'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import type { Config } from '../config/types'
import type { SharedState, UpstreamEntry } from '../shared/state'
import { getHeapStatistics } from 'node:v8'
import { W_LOOP_LAG_US, W_HEAP_USED_KB } from '../shared/layout'
import { createBalancer } from '../balancer/index'
import { ProxyContext } from './context'
import { UpstreamPool } from './pool'
import { ClientConnection } from './client'
import { installPolicies } from './policies'
import { CacheHook } from './cache-path'
import { SharedCacheStore, type SharedCacheInit } from '../cache/store'
import { ownerOfWorkerSlot } from '../cache/fill-claims'
import { listenersOf } from '../config/listeners'
import { installListeners } from '../net/accept'
import type { TlsMaterial } from '../tls/terminator'
import { requestIdsFor } from './request-id'
import { tracingFor } from '../tracing/index'
import type { LeaseBroker } from '../cluster/global-limiter'

export interface ThreadOptions {
  /** Shared secret for sticky cookies, generated once by the primary. */
  stickySecret: string | null
  /** The shared cache's memory, allocated once by the primary when config.cache is set. */
  cache: SharedCacheInit | null
  /** Certificates and ticket keys from the primary; null when no listener has TLS. */
  tls: TlsMaterial | null
  /** The bound port of the first TLS listener (httpsRedirect's target), 0 when none. */
  tlsPort: number
  /** This thread's way to the primary's cluster leases (config.cluster), null when off. */
  leases?: LeaseBroker | null
}

export function createThreadProxy (config: Config, state: SharedState, table: readonly UpstreamEntry[], options: ThreadOptions): ProxyContext {
  const pool = new UpstreamPool(config.pool.maxIdlePerUpstream)
  const ctx = new ProxyContext(config, state, table, createBalancer(config.balancing, table, state), pool)
  installPolicies(ctx, config, table, options.stickySecret, options.leases ?? null)
  installCache(ctx, config, options.cache)
  installListeners(ctx, listenersOf(config), options.tls, options.tlsPort)
  ctx.requestIds = requestIdsFor(config.requestId, null)
  ctx.tracing = tracingFor(config.tracing, null, state)
  return ctx
}

/** The cache hook: its memory is fixed at start, its policy follows the config (off when the section goes). */
function installCache (ctx: ProxyContext, config: Config, init: SharedCacheInit | null): void {
  if (config.cache === undefined || init === null) { ctx.cache = null; return }
  if (ctx.cache === null) {
    const store = new SharedCacheStore(init, ctx.state)
    store.setOwner(cacheOwner(ctx))
    ctx.cache = new CacheHook(store, config.cache, config.timeouts.responseMs)
  } else {
    ctx.cache.config = config.cache
    ctx.cache.fillTtlMs = Math.min(10_000, config.timeouts.responseMs + 1000)
  }
}

/**
 * Who this thread's fill claims and cache lock belong to, so the primary can
 * free them if this thread dies (src/cache/store.ts, Ownership): a worker is
 * its slot + 1; the primary (sequential mode) is 0, as is a worker without a
 * slot (its claims then only expire).
 */
function cacheOwner (ctx: ProxyContext): number {
  return isMainThread ? 0 : ownerOfWorkerSlot(ctx.workerSlot)
}

/**
 * A worker claims its shared-state slot after its context is built: record
 * the slot, and make the cache store's owner follow it (before any request).
 */
export function setWorkerSlot (ctx: ProxyContext, slot: number): void {
  ctx.workerSlot = slot
  if (ctx.cache !== null) ctx.cache.store.setOwner(cacheOwner(ctx))
}

/** Hot reload: swap config, table and balancer; in-flight requests keep what they had. */
export function applyConfig (ctx: ProxyContext, config: Config, table: readonly UpstreamEntry[], options: ThreadOptions): void {
  const oldSlots = new Set(ctx.table.map((e) => e.slot))
  ctx.setConfig(config)
  ctx.table = table
  ctx.balancer = createBalancer(config.balancing, table, ctx.state)
  ctx.pool.maxIdlePerUpstream = config.pool.maxIdlePerUpstream
  installPolicies(ctx, config, table, options.stickySecret, options.leases ?? null)
  installCache(ctx, config, options.cache)
  installListeners(ctx, listenersOf(config), null, options.tlsPort)
  ctx.requestIds = requestIdsFor(config.requestId, ctx.requestIds)
  ctx.tracing = tracingFor(config.tracing, ctx.tracing, ctx.state)
  for (const e of table) oldSlots.delete(e.slot)
  for (const slot of oldSlots) ctx.pool.drain(slot) // idle sockets to upstreams that left
}

/** A connected socket without a listener's steps (no TLS, no PROXY header): straight to the request path. */
export function attachConnection (ctx: ProxyContext, socket: net.Socket, peerIp: string): ClientConnection {
  return new ClientConnection(ctx, socket, peerIp, ctx.listeners[0] ?? null)
}

/** Sampling interval of the loop-delay monitor. */
const LOOP_LAG_RESOLUTION_MS = 20

/**
 * The true lag from a monitorEventLoopDelay percentile (ns): the monitor's
 * timer fires every `resolution` ms and records the whole time between two
 * firings, so an idle loop reads the interval itself (20 ms), not 0.
 * Subtract it; clamp at 0. Result in µs.
 */
export function trueLoopLagUs (percentileNs: number, resolutionMs: number): number {
  const us = Math.round(percentileNs / 1000) - resolutionMs * 1000
  return Math.min(2 ** 31 - 1, Math.max(0, us))
}

/** Start accounting loop lag for this thread's worker slot (unref'd). */
export function startThreadStats (ctx: ProxyContext): () => void {
  if (ctx.workerSlot === -1) return () => {}
  const histogram = monitorEventLoopDelay({ resolution: LOOP_LAG_RESOLUTION_MS })
  histogram.enable()
  const timer = setInterval(() => {
    ctx.state.storeWorker(ctx.workerSlot, W_LOOP_LAG_US, trueLoopLagUs(histogram.percentile(99), LOOP_LAG_RESOLUTION_MS))
    // prom-client's nodejs_heap_* describe the primary only: each thread's own isolate is here
    ctx.state.storeWorker(ctx.workerSlot, W_HEAP_USED_KB, Math.min(2 ** 31 - 1, Math.round(getHeapStatistics().used_heap_size / 1024)))
    histogram.reset()
  }, 1000)
  timer.unref()
  return () => { clearInterval(timer); histogram.disable() }
}

/** Graceful shutdown on this thread: close idle connections, let the others finish. */
export function drainThread (ctx: ProxyContext): void {
  ctx.draining = true
  for (const client of ctx.clients) client.closeIfIdle()
  ctx.pool.drain()
  if (ctx.tracing !== null) void ctx.tracing.flush()
}
