/**
 * Shared active health checks (cluster.health.share). Each upstream is probed
 * by `probeReplicas` live instances, chosen by rendezvous hashing (highest
 * random weight: every instance ranks the live ids by hash(id, address) and
 * takes the top k, so all agree without talking, and an instance joining or
 * leaving moves only the upstreams it ranks high for). A fleet of N sends k
 * probes per upstream per interval instead of N.
 *
 * Probers publish each result (HSET <prefix>{cluster}:health address json,
 * time on Redis's clock); every instance reads them with its heartbeat and
 * folds them into its own health words, like a prober would:
 *  - a published "healthy" newer than the local ejection revives the upstream
 *    (a passive ejection stays local and immediate until a probe passes after it);
 *  - a new published "unhealthy" ejects it.
 * An upstream whose latest result is older than 3 intervals (its probers died
 * or lost Redis) is probed locally again until fresh results come back.
 */
import type { ActiveHealthConfig } from '../config/types'
import type { SharedState, UpstreamEntry } from '../shared/state'
import { U_CONSECUTIVE_FAILURES, U_EJECTED_AT, U_HEALTH_TRANSITIONS, U_HEALTHY } from '../shared/layout'
import { fmix32 } from '../shared/hash'
import type { Logger } from 'pino'

/** Results older than this many intervals are stale. */
export const STALE_INTERVALS = 3

export interface PublishedHealth {
  /** 1 healthy, 0 not. */
  h: number
  /** Last check status (HTTP status or CHECK_*). */
  s: number
  /** When, on Redis's clock (ms). */
  at: number
  /** Which instance probed. */
  by: string
}

/** Rendezvous weight of `instanceId` for `address`. */
export function rendezvousWeight (instanceId: string, address: string): number {
  const text = instanceId + '|' + address
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193)
  return fmix32(h) >>> 0
}

/** The `replicas` ids that probe `address` (ties broken by id). */
export function probersOf (address: string, liveIds: readonly string[], replicas: number): string[] {
  return [...liveIds]
    .map((id) => ({ id, w: rendezvousWeight(id, address) }))
    .sort((a, b) => b.w - a.w || (a.id < b.id ? -1 : 1))
    .slice(0, replicas)
    .map((x) => x.id)
}

export class SharedHealth {
  private readonly instanceId: string
  private readonly replicas: number
  private readonly state: SharedState
  private readonly log: Logger
  private active: ActiveHealthConfig | null = null
  /** Addresses this instance probes (designated, or stale elsewhere). */
  private probing = new Set<string>()
  private readonly stale = new Set<string>()
  /** Latest result time folded per address. */
  private readonly folded = new Map<string, number>()
  private liveIds: string[] = []

  constructor (instanceId: string, replicas: number, state: SharedState, log: Logger) {
    this.instanceId = instanceId
    this.replicas = replicas
    this.state = state
    this.log = log
    this.liveIds = [instanceId]
  }

  setActive (config: ActiveHealthConfig | null): void {
    this.active = config
  }

  /** The prober's filter: probe this upstream in this round? */
  shouldProbe (entry: UpstreamEntry): boolean {
    return this.probing.has(entry.address) || this.liveIds.length <= 1
  }

  get probedAddresses (): string[] {
    return [...this.probing]
  }

  /**
   * With each heartbeat: the live ids and the published results. Recomputes
   * which upstreams this instance probes and folds the others' results.
   */
  update (table: readonly UpstreamEntry[], liveIds: string[], published: Map<string, PublishedHealth>, redisNowMs: number, clockOffsetMs: number): void {
    this.liveIds = liveIds.includes(this.instanceId) ? liveIds : [...liveIds, this.instanceId]
    const active = this.active
    const next = new Set<string>()
    for (const entry of table) {
      const designated = probersOf(entry.address, this.liveIds, this.replicas).includes(this.instanceId)
      const result = published.get(entry.address)
      const fresh = result !== undefined && active !== null && redisNowMs - result.at <= STALE_INTERVALS * active.intervalMs
      if (designated) { next.add(entry.address); continue }
      if (!fresh) {
        if (!this.stale.has(entry.address)) {
          this.stale.add(entry.address)
          if (active !== null) this.log.warn({ upstream: entry.address }, 'shared health results are stale: probing this upstream locally')
        }
        next.add(entry.address)
        continue
      }
      if (this.stale.delete(entry.address)) this.log.info({ upstream: entry.address, by: result.by }, 'shared health results are fresh again: local probing stops')
      this.fold(entry, result, clockOffsetMs)
    }
    this.probing = next
  }

  private fold (entry: UpstreamEntry, result: PublishedHealth, clockOffsetMs: number): void {
    const state = this.state
    const slot = entry.slot
    const last = this.folded.get(entry.address) ?? 0
    if (result.at <= last) return
    this.folded.set(entry.address, result.at)
    const healthy = state.upstream(slot, U_HEALTHY) === 1
    if (result.h === 1 && !healthy) {
      // a check that passed after the local ejection (passive or folded) brings it back
      const ejectedAtRedis = state.epochMs + state.upstream(slot, U_EJECTED_AT) + clockOffsetMs
      if (result.at <= ejectedAtRedis) return
      state.storeUpstream(slot, U_CONSECUTIVE_FAILURES, 0)
      if (state.casUpstream(slot, U_HEALTHY, 0, 1) !== 0) return
      state.addUpstream(slot, U_HEALTH_TRANSITIONS, 1)
      this.log.info({ upstream: entry.address, id: entry.id, by: result.by }, 'upstream healthy: shared active check passed')
    } else if (result.h === 0 && healthy) {
      state.storeUpstream(slot, U_EJECTED_AT, state.now())
      if (state.casUpstream(slot, U_HEALTHY, 1, 0) !== 1) return
      state.addUpstream(slot, U_HEALTH_TRANSITIONS, 1)
      this.log.warn({ upstream: entry.address, id: entry.id, by: result.by }, 'upstream unhealthy: shared active check failed')
    }
  }
}
