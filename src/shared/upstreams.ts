/**
 * The upstream table: the configured upstreams with their shared-state slots.
 * Built by the primary (at start and on reload) and sent to every worker; an
 * upstream that stays across a reload keeps its slot, so its health and
 * counters carry over.
 */
import type { Config } from '../config/types'
import { parseHostPort } from '../config/types'
import { type SharedState, type UpstreamEntry } from './state'
import { upstreamTlsOf } from '../tls/upstream'
import { MAX_UPSTREAMS, U_IN_USE, H_UPSTREAM_GENERATION } from './layout'

export function buildUpstreamTable (config: Config, state: SharedState, previous: readonly UpstreamEntry[] | null): UpstreamEntry[] {
  const kept = new Map<string, number>()
  for (const entry of previous ?? []) kept.set(entry.address, entry.slot)
  const taken = new Set<number>()
  for (const u of config.upstreams) {
    const slot = kept.get(u.address)
    if (slot !== undefined) taken.add(slot)
  }
  const table: UpstreamEntry[] = []
  config.upstreams.forEach((u, index) => {
    let slot = kept.get(u.address)
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
    table.push(Object.freeze({ slot, index, address: u.address, host, port, weight: u.weight, id: `u${slot}`, tls: upstreamTlsOf(u), proxyProtocol: u.proxyProtocol ?? null }))
  })
  // retire the slots of upstreams that left
  for (const entry of previous ?? []) {
    if (!taken.has(entry.slot)) state.storeUpstream(entry.slot, U_IN_USE, 0)
  }
  state.addHeader(H_UPSTREAM_GENERATION, 1)
  return table
}
