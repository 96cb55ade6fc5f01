/**
 * pick() for every algorithm over 4 upstreams (one down, so the skip paths
 * run too), each next to the naive way of writing it: filter the healthy
 * upstreams into a fresh array per request, hash with md5, scan linearly.
 * The gap is what "no allocation on the data path" and "precompute at table
 * build" buy.
 */
import { createHash } from 'node:crypto'
import {
  ConsistentHashBalancer,
  IpHashBalancer,
  LeastConnectionsBalancer,
  PickContext,
  PowerOfTwoChoicesBalancer,
  RandomBalancer,
  RoundRobinBalancer,
  WeightedRoundRobinBalancer,
} from '../../src/balancer/index'
import { U_ACTIVE_REQUESTS, U_HEALTHY } from '../../src/shared/layout'
import { SharedState, type UpstreamEntry } from '../../src/shared/state'
import type { MicroCase, MicroSuite } from './types'

const state = SharedState.create(0)
const table: UpstreamEntry[] = [1, 2, 3, 4].map((n, i) => ({
  slot: i, index: i, pool: 'default', poolSlot: 0, address: `10.0.0.${n}:8080`, host: `10.0.0.${n}`, port: 8080, weight: n, id: `u${i}`,
}))
for (const e of table) state.initUpstreamSlot(e.slot)
state.storeUpstream(table[2].slot, U_HEALTHY, 0)
;[3, 1, 0, 2].forEach((active, i) => state.storeUpstream(table[i].slot, U_ACTIVE_REQUESTS, active))

const keys = Array.from({ length: 1024 }, (_, i) => `192.168.${i >> 8}.${i & 255}`)
const ctx = new PickContext()
let keyCursor = 0
/** Written by every case so the JIT cannot drop the pick. */
export let sink = 0

function nextKey (): void {
  ctx.clientIp = keys[keyCursor++ & 1023]
}

// ---- naive alternatives -------------------------------------------------------

const available = (e: UpstreamEntry): boolean => state.isAvailable(e.slot)
const active = (e: UpstreamEntry): number => state.upstream(e.slot, U_ACTIVE_REQUESTS)
let naiveCursor = 0

function md5u32 (text: string): number {
  return createHash('md5').update(text).digest().readUInt32LE(0)
}

/** nginx's per-process smooth WRR: O(n) per pick, and smooth only within one thread. */
const nginxCurrent = new Float64Array(table.length)
function nginxWeighted (): number {
  let total = 0
  let best = -1
  for (let i = 0; i < table.length; i++) {
    if (!available(table[i])) continue
    nginxCurrent[i] += table[i].weight
    total += table[i].weight
    if (best === -1 || nginxCurrent[i] > nginxCurrent[best]) best = i
  }
  if (best !== -1) nginxCurrent[best] -= total
  return best
}

/** ketama as commonly hand-written: md5 points in a sorted array of objects, found by linear scan. */
const naiveRing = table.flatMap((e, index) =>
  Array.from({ length: 160 * e.weight }, (_, n) => ({ hash: md5u32(`${e.address}-${n}`), index })))
  .sort((a, b) => a.hash - b.hash)
function naiveConsistent (key: string): number {
  const h = md5u32(key)
  let start = naiveRing.findIndex((p) => p.hash >= h)
  if (start === -1) start = 0
  for (let k = 0; k < naiveRing.length; k++) {
    const p = naiveRing[(start + k) % naiveRing.length]
    if (available(table[p.index])) return p.index
  }
  return -1
}

const naive: MicroCase[] = [
  { name: 'naive round-robin (filter + i++ % n)', fn: () => { const up = table.filter(available); sink += up[naiveCursor++ % up.length].index } },
  { name: 'naive weighted-round-robin (nginx per-thread loop)', fn: () => { sink += nginxWeighted() } },
  { name: 'naive least-connections (filter + sort)', fn: () => { sink += table.filter(available).sort((a, b) => active(a) / a.weight - active(b) / b.weight)[0].index } },
  {
    name: 'naive power-of-two-choices (filter + Math.random)',
    fn: () => {
      const up = table.filter(available)
      const a = up[Math.floor(Math.random() * up.length)]
      const b = up[Math.floor(Math.random() * up.length)]
      sink += (active(a) <= active(b) ? a : b).index
    },
  },
  { name: 'naive random (filter + Math.random)', fn: () => { const up = table.filter(available); sink += up[Math.floor(Math.random() * up.length)].index } },
  { name: 'naive ip-hash (md5 % available)', fn: () => { nextKey(); const up = table.filter(available); sink += up[md5u32(ctx.clientIp) % up.length].index } },
  { name: 'naive consistent-hash (md5 + linear scan of sorted objects)', fn: () => { nextKey(); sink += naiveConsistent(ctx.clientIp) } },
]

// One function literal per case: a shared `balancer.pick(ctx)` call site
// would see seven classes and go megamorphic, which the proxy (one algorithm
// per table) never does.
const roundRobin = new RoundRobinBalancer(table, state)
const weightedRoundRobin = new WeightedRoundRobinBalancer(table, state)
const leastConnections = new LeastConnectionsBalancer(table, state)
const powerOfTwo = new PowerOfTwoChoicesBalancer(table, state)
const random = new RandomBalancer(table, state)
const ipHash = new IpHashBalancer(table, state)
const consistentHash = new ConsistentHashBalancer(table, state)

const ours: MicroCase[] = [
  { name: 'round-robin', fn: () => { sink += roundRobin.pick(ctx) } },
  { name: 'weighted-round-robin', fn: () => { sink += weightedRoundRobin.pick(ctx) } },
  { name: 'least-connections', fn: () => { sink += leastConnections.pick(ctx) } },
  { name: 'power-of-two-choices', fn: () => { sink += powerOfTwo.pick(ctx) } },
  { name: 'random', fn: () => { sink += random.pick(ctx) } },
  { name: 'ip-hash', fn: () => { nextKey(); sink += ipHash.pick(ctx) } },
  { name: 'consistent-hash', fn: () => { nextKey(); sink += consistentHash.pick(ctx) } },
]

export const suites: MicroSuite[] = [
  { name: 'pick()', cases: [...ours, ...naive] },
]
