/**
 * The upstream table: the configured upstreams of every pool with their
 * shared-state slots. Built by the primary (at start and on reload) and sent
 * to every worker; an upstream that stays in its pool across a reload keeps
 * its slot, so its health and counters carry over. An address in two pools is
 * two entries with two slots (src/routing/pools.ts).
 */
import type { Config } from '../config/types'
import { parseHostPort } from '../config/types'
import { type SharedState, type UpstreamEntry } from './state'
import { upstreamTlsOf } from '../tls/upstream'
import { MAX_UPSTREAMS, U_IN_USE, H_UPSTREAM_GENERATION } from './layout'
import { assignPoolSlots, poolSpecs, upstreamSlotKey } from '../routing/pools'

export function buildUpstreamTable (config: Config, state: SharedState, previous: readonly UpstreamEntry[] | null): UpstreamEntry[] {
  const specs = poolSpecs(config)
  const kept = new Map<string, number>()
  for (const entry of previous ?? []) kept.set(upstreamSlotKey(entry.pool, entry.address), entry.slot)
  const taken = new Set<number>()
  for (const spec of specs) {
    for (const u of spec.upstreams) {
      const slot = kept.get(upstreamSlotKey(spec.name, u.address))
      if (slot !== undefined) taken.add(slot)
    }
  }
  const poolSlots = assignPoolSlots(specs, state, previous)
  const table: UpstreamEntry[] = []
  for (const spec of specs) {
    const poolSlot = poolSlots.get(spec.name) as number
    spec.upstreams.forEach((u, index) => {
      let slot = kept.get(upstreamSlotKey(spec.name, u.address))
      if (slot === undefined) {
        slot = -1
        for (let s = 0; s < MAX_UPSTREAMS; s++) {
          if (!taken.has(s) && state.upstream(s, U_IN_USE) === 0) { slot = s; break }
        }
        if (slot === -1) throw new Error('no free upstream slot in shared state')
        taken.add(slot)
        state.initUpstreamSlot(slot)
      }
      const { host, port } = parseHostPort(u.address)
      table.push(Object.freeze({ slot, index, pool: spec.name, poolSlot, address: u.address, host, port, weight: u.weight, id: `u${slot}`, tls: upstreamTlsOf(u), proxyProtocol: u.proxyProtocol ?? null, backup: u.backup === true, maxConnections: u.maxConnections ?? 0, slowStartMs: u.slowStartMs ?? spec.healthCheck.slowStartMs ?? 0 }))
    })
  }
  // retire the slots of upstreams that left
  for (const entry of previous ?? []) {
    if (!taken.has(entry.slot)) state.storeUpstream(entry.slot, U_IN_USE, 0)
  }
  state.addHeader(H_UPSTREAM_GENERATION, 1)
  return table
}
