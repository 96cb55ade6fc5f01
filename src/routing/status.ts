/**
 * The routing part of /api/status and /metrics: pools with their upstreams
 * and counters, routes with their hit counts, read from shared memory.
 * Counters are uint32 in shared memory (read with `>>> 0`; they wrap after 2^32).
 */
import type { Config } from '../config/types'
import type { SharedState, UpstreamEntry } from '../shared/state'
import { P_NO_UPSTREAM, P_REQUESTS } from '../shared/layout'
import { DEFAULT_POOL, poolSpecs, upstreamKey } from './pools'
import type { SwitchyardMetrics } from '../admin/prometheus'

export interface PoolStatus {
  name: string
  algorithm: string
  /** The upstreams' keys (address, or pool/address), in the pool's order. */
  upstreams: string[]
  /** Requests routed to the pool. */
  requests: number
  /** Requests answered 502 because no upstream of the pool was available. */
  noUpstream: number
}

export interface RouteStatus {
  index: number
  name: string
  /** Where it sends requests: a pool name, or "redirect" / "respond". */
  target: string
  hits: number
}

export function poolStatus (config: Config, state: SharedState, table: readonly UpstreamEntry[]): PoolStatus[] {
  return poolSpecs(config).map((spec) => {
    const entries = table.filter((e) => e.pool === spec.name)
    const slot = entries.length > 0 ? entries[0].poolSlot : -1
    return {
      name: spec.name,
      algorithm: spec.balancing.algorithm,
      upstreams: entries.map(upstreamKey),
      requests: slot === -1 ? 0 : state.pool(slot, P_REQUESTS) >>> 0,
      noUpstream: slot === -1 ? 0 : state.pool(slot, P_NO_UPSTREAM) >>> 0,
    }
  })
}

export function routeStatus (config: Config, state: SharedState): RouteStatus[] {
  return (config.routes ?? []).map((route, index) => ({
    index,
    name: route.name ?? `#${index}`,
    target: route.redirect !== undefined ? 'redirect' : route.respond !== undefined ? 'respond' : route.pool ?? DEFAULT_POOL,
    hits: state.routeHits(index),
  }))
}

/** The routing families of /metrics, read from shared memory at scrape time (src/admin/prometheus.ts). */
export function registerRoutingMetrics (m: SwitchyardMetrics, lb: { poolStatus (): PoolStatus[], routeStatus (): RouteStatus[] }): void {
  m.counter('switchyard_route_requests_total', 'Requests matched by each route.', ['route'], (_v, emit) => {
    for (const r of lb.routeStatus()) emit({ route: r.name }, r.hits)
  })
  m.counter('switchyard_pool_requests_total', 'Requests routed to each pool.', ['pool'], (_v, emit) => {
    for (const p of lb.poolStatus()) emit({ pool: p.name }, p.requests)
  })
  m.counter('switchyard_pool_no_upstream_total', 'Requests answered 502 because no upstream of the pool was available.', ['pool'], (_v, emit) => {
    for (const p of lb.poolStatus()) emit({ pool: p.name }, p.noUpstream)
  })
}
