/**
 * Shared health's choice of probers (rendezvous hashing): every instance
 * computes the same k probers for an upstream from the live ids alone, the
 * probes spread over the instances, and an instance leaving only moves the
 * upstreams it was probing.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { probersOf } from '../../src/cluster/shared-health'

const IDS = ['edge-a', 'edge-b', 'edge-c', 'edge-d', 'edge-e']
const ADDRESSES = Array.from({ length: 64 }, (_, i) => `10.0.${i >> 4}.${i & 15}:8080`)

describe('cluster shared health: rendezvous choice of probers', () => {
  it('k distinct live ids, the same whatever order the ids come in', () => {
    for (const address of ADDRESSES) {
      const chosen = probersOf(address, IDS, 2)
      assert.equal(chosen.length, 2)
      assert.notEqual(chosen[0], chosen[1])
      assert.deepEqual(probersOf(address, [...IDS].reverse(), 2), chosen)
    }
    assert.deepEqual(probersOf(ADDRESSES[0], ['only'], 2), ['only'])
  })

  it('spreads the probing over the instances', () => {
    const load = new Map<string, number>()
    for (const address of ADDRESSES) for (const id of probersOf(address, IDS, 2)) load.set(id, (load.get(id) ?? 0) + 1)
    // 128 probe duties over 5 instances: ~25.6 each
    for (const id of IDS) assert.ok((load.get(id) ?? 0) >= 12 && (load.get(id) ?? 0) <= 40, `${id} probes ${load.get(id)}`)
  })

  it('an instance leaving moves only the upstreams it probed', () => {
    const without = IDS.filter((id) => id !== 'edge-c')
    for (const address of ADDRESSES) {
      const before = probersOf(address, IDS, 2)
      const after = probersOf(address, without, 2)
      if (!before.includes('edge-c')) assert.deepEqual(after, before, address)
      else assert.ok(after.includes(before.find((id) => id !== 'edge-c') as string), address)
    }
  })
})
