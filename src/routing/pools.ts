/**
 * Named upstream pools. `pools: { NAME: { upstreams, balancing, healthCheck } }`,
 * and the top-level `upstreams` / `balancing` / `healthCheck`, which form the
 * pool named "default" (so every lb.json written before pools keeps working).
 *
 * The one module that owns pool state; per-pool features of other modules
 * hang off PoolRuntime (this thread's view of a pool) or use the spare words
 * of the pool's shared block (src/shared/layout.ts, P_*).
 *
 * Shared memory: upstream slots stay one global array (an address in two
 * pools is two entries, two slots, separate health and counters); each pool
 * also has one block in the pool region (its round-robin cursor, counters),
 * kept across reloads while its name stays, as an upstream keeps its slot
 * while its pool and address stay.
 */
import type { Config, PoolConfig, UpstreamConfig } from '../config/types'
import type { SharedState, UpstreamEntry } from '../shared/state'
import type { Balancer } from '../balancer/types'
import type { StickyHook } from '../proxy/context'
import { createBalancer } from '../balancer/index'
import { createSticky } from '../sticky/index'
import { MAX_POOLS, P_IN_USE } from '../shared/layout'
import { PoolGate } from '../proxy/pool-gate'
import { RequestQueue } from '../proxy/request-queue'

export const DEFAULT_POOL = 'default'

/** One configured pool, in the order the table lists them ("default" first when present). */
export interface PoolSpec extends PoolConfig {
  readonly name: string
}

/** The pools a config defines: the top-level upstreams as "default", then `pools` in file order. */
export function poolSpecs (config: Config): PoolSpec[] {
  const specs: PoolSpec[] = []
  if (config.upstreams !== undefined) {
    specs.push({ name: DEFAULT_POOL, upstreams: config.upstreams, balancing: config.balancing, healthCheck: config.healthCheck, queue: config.queue })
  }
  for (const [name, pool] of Object.entries(config.pools ?? {})) specs.push({ name, ...pool })
  return specs
}

/** The key an upstream keeps its shared slot by: its pool and its address. */
function slotKey (pool: string, address: string): string {
  return pool + '\0' + address
}

/**
 * The pool slots for `specs` (primary only): a pool that stays keeps its slot,
 * a new one gets a free slot (zeroed), a pool that left frees its slot.
 */
export function assignPoolSlots (specs: readonly PoolSpec[], state: SharedState, previous: readonly UpstreamEntry[] | null): Map<string, number> {
  const kept = new Map<string, number>()
  for (const entry of previous ?? []) kept.set(entry.pool, entry.poolSlot)
  const slots = new Map<string, number>()
  const taken = new Set<number>()
  for (const spec of specs) {
    const slot = kept.get(spec.name)
    if (slot !== undefined) { slots.set(spec.name, slot); taken.add(slot) }
  }
  for (const spec of specs) {
    if (slots.has(spec.name)) continue
    let slot = -1
    for (let s = 0; s < MAX_POOLS; s++) {
      if (!taken.has(s) && state.pool(s, P_IN_USE) === 0) { slot = s; break }
    }
    if (slot === -1) throw new Error('no free pool slot in shared state')
    state.initPoolSlot(slot)
    slots.set(spec.name, slot)
    taken.add(slot)
  }
  for (const slot of kept.values()) if (!taken.has(slot)) state.storePool(slot, P_IN_USE, 0)
  return slots
}

export { slotKey as upstreamSlotKey }

/**
 * How the admin API, metrics totals and logs name an upstream: its address in
 * pool "default" (as before pools), `pool/address` in another pool.
 */
export function upstreamKey (entry: { readonly pool: string, readonly address: string }): string {
  return entry.pool === DEFAULT_POOL ? entry.address : entry.pool + '/' + entry.address
}

/**
 * One pool as a thread sees it: its upstreams (a slice of the global table,
 * in the pool's order: a balancer's index is an index into `table`), its
 * balancer over the pool's own shared cursor, its sticky ids, its hash key.
 * Rebuilt whole on reload; a request in flight keeps the one it started with.
 */
export class PoolRuntime {
  readonly name: string
  /** The pool's block in the shared pool region. */
  readonly slot: number
  readonly config: PoolConfig
  readonly table: readonly UpstreamEntry[]
  readonly balancer: Balancer
  /** Who the balancer may pick (panic mode, backups, caps, slow start) and the pool's queue (src/proxy/pool-gate.ts). */
  readonly gate: PoolGate
  readonly sticky: StickyHook | null
  /** Lower-case header name whose value is the balancing hash key, or null. */
  readonly hashHeader: string | null
  /** Cookie name whose value is the balancing hash key, or null. */
  readonly hashCookie: string | null

  constructor (name: string, slot: number, config: PoolConfig, table: readonly UpstreamEntry[], state: SharedState, stickyConfig: Config['stickySessions'], stickySecret: string | null) {
    this.name = name
    this.slot = slot
    this.config = config
    this.table = table
    this.gate = new PoolGate({ name, index: slot, panicThresholdPercent: config.healthCheck.panicThresholdPercent }, state, table)
    if (config.queue !== undefined) this.gate.queue = new RequestQueue(config.queue.maxSize, config.queue.timeoutMs, state, slot)
    this.balancer = createBalancer(config.balancing, table, this.gate)
    // the default pool's ids are those of switchyard before pools (cookies survive the upgrade);
    // another pool's are keyed by pool and address, so a cookie of one pool means nothing in another
    const idTable = name === DEFAULT_POOL ? table : table.map((e) => ({ ...e, address: name + '/' + e.address }))
    this.sticky = stickyConfig !== undefined ? createSticky(stickyConfig, idTable, stickySecret ?? undefined) : null
    const hk = config.balancing.hashKey
    this.hashHeader = hk.source === 'header' && hk.name !== undefined ? hk.name.toLowerCase() : null
    this.hashCookie = hk.source === 'cookie' && hk.name !== undefined ? hk.name : null
  }
}

/** Every pool of a config, by name; `fallback` is "default" when it exists (unrouted requests go there). */
export class PoolSet {
  readonly list: readonly PoolRuntime[]
  readonly byName: ReadonlyMap<string, PoolRuntime>
  readonly fallback: PoolRuntime | null

  constructor (list: PoolRuntime[]) {
    this.list = list
    this.byName = new Map(list.map((p) => [p.name, p]))
    this.fallback = this.byName.get(DEFAULT_POOL) ?? null
  }
}

/** This thread's pools for `config` over the global upstream table the primary built. */
export function buildPools (config: Config, table: readonly UpstreamEntry[], state: SharedState, stickySecret: string | null): PoolSet {
  const list: PoolRuntime[] = []
  for (const spec of poolSpecs(config)) {
    const entries = table.filter((e) => e.pool === spec.name)
    const slot = entries.length > 0 ? entries[0].poolSlot : -1
    if (slot === -1) continue // cannot happen: a pool has at least one upstream
    list.push(new PoolRuntime(spec.name, slot, spec, entries, state, config.stickySessions, stickySecret))
  }
  return new PoolSet(list)
}

/** Every upstream of every pool, for checks that count them together (shared slots). */
export function allUpstreams (config: Config): Array<{ pool: string, upstream: UpstreamConfig, path: string }> {
  const out: Array<{ pool: string, upstream: UpstreamConfig, path: string }> = []
  config.upstreams?.forEach((u, i) => out.push({ pool: DEFAULT_POOL, upstream: u, path: `/upstreams/${i}` }))
  for (const [name, pool] of Object.entries(config.pools ?? {})) {
    pool.upstreams.forEach((u, i) => out.push({ pool: name, upstream: u, path: `/pools/${name}/upstreams/${i}` }))
  }
  return out
}
