/**
 * What a worker holds in shared memory, and how the primary takes it back when
 * the worker dies: fill claims carry their owner (and only that owner's go),
 * the cache write lock names its holder (recovered at once, never stolen from
 * a live holder), and each worker's share of the upstreams' in-flight gauges
 * is kept apart so it can be subtracted. One thread, no sleeping: a "dead"
 * worker is a store or slot that simply never runs again.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { SharedCacheStore, CacheEntry, type CacheEntryInput } from '../../src/cache/store'
import {
  packClaim, claimTagOf, claimOwnerOf, claimExpiresAt, claimTag, MAX_CLAIM_OWNER,
} from '../../src/cache/fill-claims'
import * as C from '../../src/cache/layout'
import { SharedState } from '../../src/shared/state'
import * as L from '../../src/shared/layout'

const NOW = 1_760_000_000_000

function cache (): { init: ReturnType<typeof SharedCacheStore.allocate>, state: SharedState, storeAs: (owner: number) => SharedCacheStore } {
  const state = SharedState.create(0)
  const init = SharedCacheStore.allocate(1 << 20, 1 << 16)
  return {
    init,
    state,
    storeAs: (owner) => {
      const store = new SharedCacheStore(init, state)
      store.setOwner(owner)
      return store
    },
  }
}

function fillWords (init: { buffer: SharedArrayBuffer }): bigint[] {
  return Array.from(new BigInt64Array(init.buffer, C.FILL_OFFSET, C.FILL_SLOTS)).filter((w) => w !== 0n)
}

function entry (body: string): CacheEntryInput {
  return {
    status: 200,
    head: Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`, 'latin1'),
    body: Buffer.from(body, 'latin1'),
    storedAtMs: NOW,
    responseDateMs: NOW,
    initialAgeSec: 0,
    freshForMs: 60_000,
    etag: null,
    lastModified: null,
    varyNames: null,
    varyValues: null,
  }
}

/** Take the write lock the way store() does, and never let go: a worker terminated inside it. */
function dieHoldingLock (store: SharedCacheStore): void {
  assert.equal((store as unknown as { lock: () => boolean }).lock(), true)
}

describe('fill claims: the owner in the claim word', () => {
  it('tag, owner and expiry pack into [0 | tag:14 | owner:7 | expires:42] without bleeding into one another', () => {
    const cases: Array<[number, number, number]> = [
      [1, 0, 0],
      [0x3fff, MAX_CLAIM_OWNER, 2 ** 42 - 1],
      [0x2aaa, 65, NOW + 5000],
      [claimTag(-1), 1, NOW],
    ]
    for (const [tag, owner, expires] of cases) {
      const word = packClaim(tag, owner, expires)
      assert.ok(word > 0n, 'the sign bit stays 0 and a claim is never the free word')
      assert.equal(claimTagOf(word), tag)
      assert.equal(claimOwnerOf(word), owner)
      assert.equal(claimExpiresAt(word), expires)
    }
    assert.equal(MAX_CLAIM_OWNER, 127)
    assert.ok(L.MAX_WORKER_SLOTS + 1 <= MAX_CLAIM_OWNER, 'every worker slot has an owner id')
    for (const hi of [0, -1, 0x7fffffff, 0x40000, 0x12345678]) {
      const tag = claimTag(hi)
      assert.ok(tag >= 1 && tag <= 0x3fff, `tag of ${hi}`)
    }
  })

  it('a store claims as its owner: 0 by default, the one set after', () => {
    const { init, storeAs } = cache()
    const primary = new SharedCacheStore(init, SharedState.create(0))
    assert.equal(primary.owner, 0)
    assert.equal(primary.tryClaimFill('h /p', NOW, 1000), true)
    const worker = storeAs(6)
    assert.equal(worker.tryClaimFill('h /w', NOW, 1000), true)
    const owners = fillWords(init).map(claimOwnerOf).sort((a, b) => a - b)
    assert.deepEqual(owners, [0, 6])
    for (const w of fillWords(init)) assert.equal(claimExpiresAt(w), NOW + 1000)
    assert.throws(() => worker.setOwner(MAX_CLAIM_OWNER + 1), RangeError)
    assert.throws(() => worker.setOwner(-1), RangeError)
    assert.throws(() => worker.setOwner(1.5), RangeError)
  })

  it('releaseFillsOf(owner) frees exactly that owner\'s claims, expired or not', () => {
    const { init, storeAs } = cache()
    const dead = storeAs(3)
    const live = storeAs(4)
    for (let i = 0; i < 20; i++) assert.equal(dead.tryClaimFill(`h /dead/${i}`, NOW, 1000), true)
    assert.equal(dead.tryClaimFill('h /dead/short', NOW, 1), true) // expires at once
    for (let i = 0; i < 20; i++) assert.equal(live.tryClaimFill(`h /live/${i}`, NOW, 1000), true)
    assert.equal(live.tryClaimFill('h /dead/0', NOW, 1000), false, 'coalesces behind the claim')

    const primary = storeAs(0)
    assert.equal(primary.releaseFillsOf(3), 21)
    assert.equal(primary.releaseFillsOf(3), 0, 'nothing left the second time')
    assert.equal(primary.releaseFillsOf(9), 0, 'an owner that held nothing')
    assert.deepEqual([...new Set(fillWords(init).map(claimOwnerOf))], [4], 'the live owner\'s claims stay')
    // the waiters of the dead filler can claim now, long before the claim would have expired
    assert.equal(live.tryClaimFill('h /dead/0', NOW + 10, 1000), true)
    for (let i = 0; i < 20; i++) assert.equal(dead.tryClaimFill(`h /live/${i}`, NOW + 10, 1000), false, `live claim ${i} kept`)
  })

  it('releaseFill frees only the caller\'s own claim on the key', () => {
    const { storeAs } = cache()
    const a = storeAs(1)
    const b = storeAs(2)
    assert.equal(a.tryClaimFill('h /k', NOW, 100), true)
    // a's claim expired and b took it over; a's late release must not free b's
    assert.equal(b.tryClaimFill('h /k', NOW + 200, 1000), true)
    a.releaseFill('h /k')
    assert.equal(a.tryClaimFill('h /k', NOW + 210, 1000), false)
    b.releaseFill('h /k')
    assert.equal(a.tryClaimFill('h /k', NOW + 220, 1000), true)
  })
})

describe('the cache write lock: its holder recorded, recovered when that holder dies', () => {
  it('a lock taken and freed leaves no owner behind', () => {
    const { init, storeAs } = cache()
    const ctl = new Int32Array(init.buffer, 0, C.CTL_INTS)
    assert.equal(storeAs(5).store('h /a', entry('a')), true)
    assert.equal(Atomics.load(ctl, C.C_LOCK), 0)
    assert.equal(Atomics.load(ctl, C.C_LOCK_OWNER), 0)
  })

  it('the lock names its holder; the primary recovers a dead holder\'s lock at once and resets the cache', () => {
    const { init, state, storeAs } = cache()
    const ctl = new Int32Array(init.buffer, 0, C.CTL_INTS)
    const dead = storeAs(7)
    const live = storeAs(8)
    const primary = storeAs(0)
    assert.equal(live.store('h /before', entry('before')), true)
    dieHoldingLock(dead)
    const token = Atomics.load(ctl, C.C_LOCK)
    assert.equal(Atomics.load(ctl, C.C_LOCK_OWNER), C.lockOwnerWord(token, 7))
    assert.equal(live.store('h /blocked', entry('x')), false, 'held: others skip their stores')

    assert.equal(primary.recoverLockOf(8), false, 'not the holder: nothing happens')
    assert.equal(primary.stats().lockTakeovers, 0)
    assert.equal(primary.recoverLockOf(7), true)
    assert.equal(primary.stats().lockTakeovers, 1)
    assert.equal(Atomics.load(ctl, C.C_LOCK), 0, 'the lock is free again')
    assert.equal(Atomics.load(ctl, C.C_LOCK_OWNER), 0)
    // whatever the dead holder was writing is half-written: everything went
    const out = new CacheEntry()
    assert.equal(live.lookup('h /before', NOW, out, null, false), false)
    assert.equal(state.header(L.H_CACHE_ENTRIES), 0)
    assert.equal(live.store('h /after', entry('after')), true)
    assert.equal(live.lookup('h /after', NOW, out, null, false), true)
    assert.equal(primary.recoverLockOf(7), false, 'only once')
  })

  it('a thread that took the lock over by lease and has not yet written its owner word is not robbed', () => {
    const { init, storeAs } = cache()
    const ctl = new Int32Array(init.buffer, 0, C.CTL_INTS)
    const primary = storeAs(0)
    // the dead holder's word is still there, but C_LOCK already carries the new holder's token
    const oldToken = C.lockToken(Date.now() - 60_000)
    const newToken = C.lockToken(Date.now())
    Atomics.store(ctl, C.C_LOCK, newToken)
    Atomics.store(ctl, C.C_LOCK_OWNER, C.lockOwnerWord(oldToken, 7))
    assert.equal(primary.recoverLockOf(7), false)
    assert.equal(Atomics.load(ctl, C.C_LOCK), newToken)
    assert.equal(primary.stats().lockTakeovers, 0)
  })

  it('a holder killed before it wrote its owner word is left to the lease', () => {
    const { init, storeAs } = cache()
    const ctl = new Int32Array(init.buffer, 0, C.CTL_INTS)
    Atomics.store(ctl, C.C_LOCK, C.lockToken(Date.now()))
    assert.equal(storeAs(0).recoverLockOf(7), false)
    assert.notEqual(Atomics.load(ctl, C.C_LOCK), 0)
  })

  it('the owner word fits an int32 for every token and owner', () => {
    for (const token of [1, 0x40000000, 0xffffff, 0x1000000, 12345]) {
      for (const owner of [0, 1, 65, 127]) {
        const word = C.lockOwnerWord(token, owner)
        assert.ok(word >= 0 && word <= 0x7fffffff && word === (word | 0), `${token}/${owner}`)
        assert.equal(word & 0x7f, owner)
      }
    }
  })
})

describe('holdings: a worker\'s share of the upstreams\' in-flight gauges', () => {
  it('addHeld moves the gauge and the worker\'s cell together; -1 moves only the gauge', () => {
    const state = SharedState.create(0)
    state.addHeld(0, 5, L.U_ACTIVE_REQUESTS, 1)
    state.addHeld(0, 5, L.U_ACTIVE_REQUESTS, 1)
    state.addHeld(3, 5, L.U_ACTIVE_REQUESTS, 1)
    state.addHeld(3, 5, L.U_OPEN_SOCKETS, 2)
    state.addHeld(3, 7, L.U_OPEN_SOCKETS, 1)
    state.addHeld(-1, 5, L.U_ACTIVE_REQUESTS, 1)
    state.addHeld(0, 5, L.U_ACTIVE_REQUESTS, -1)
    assert.equal(state.upstream(5, L.U_ACTIVE_REQUESTS), 3)
    assert.equal(state.upstream(5, L.U_OPEN_SOCKETS), 2)
    assert.equal(state.upstream(7, L.U_OPEN_SOCKETS), 1)
    assert.equal(state.held(0, 5, L.U_ACTIVE_REQUESTS), 1)
    assert.equal(state.held(3, 5, L.U_ACTIVE_REQUESTS), 1)
    assert.equal(state.held(3, 5, L.U_OPEN_SOCKETS), 2)
    assert.equal(state.held(3, 7, L.U_OPEN_SOCKETS), 1)
    assert.equal(state.held(3, 7, L.U_ACTIVE_REQUESTS), 0)
    // nothing else in the upstream's block moved
    for (let f = 0; f < L.UPSTREAM_INTS; f++) {
      if (f !== L.U_ACTIVE_REQUESTS && f !== L.U_OPEN_SOCKETS) assert.equal(state.upstream(5, f), 0, `field ${f}`)
    }
  })

  it('releaseWorkerHoldings subtracts exactly the dead worker\'s share and zeroes it', () => {
    const state = SharedState.create(0)
    state.addUpstream(2, L.U_ACTIVE_REQUESTS, 4) // counted the old way (addUpstream): nobody's holding
    for (let i = 0; i < 5; i++) state.addHeld(1, 2, L.U_ACTIVE_REQUESTS, 1)
    for (let i = 0; i < 3; i++) state.addHeld(1, 2, L.U_OPEN_SOCKETS, 1)
    state.addHeld(1, L.MAX_UPSTREAMS - 1, L.U_OPEN_SOCKETS, 1)
    state.addHeld(2, 2, L.U_ACTIVE_REQUESTS, 2)
    state.addHeld(2, 2, L.U_OPEN_SOCKETS, 1)
    assert.equal(state.upstream(2, L.U_ACTIVE_REQUESTS), 11)

    assert.deepEqual(state.releaseWorkerHoldings(1), { activeRequests: 5, openSockets: 4 })
    assert.equal(state.upstream(2, L.U_ACTIVE_REQUESTS), 6, '4 uncounted + 2 of the live worker')
    assert.equal(state.upstream(2, L.U_OPEN_SOCKETS), 1)
    assert.equal(state.upstream(L.MAX_UPSTREAMS - 1, L.U_OPEN_SOCKETS), 0)
    assert.equal(state.held(1, 2, L.U_ACTIVE_REQUESTS), 0)
    assert.equal(state.held(1, 2, L.U_OPEN_SOCKETS), 0)
    assert.equal(state.held(2, 2, L.U_ACTIVE_REQUESTS), 2, 'the live worker\'s share stays')
    assert.deepEqual(state.releaseWorkerHoldings(1), { activeRequests: 0, openSockets: 0 }, 'idempotent')
    assert.deepEqual(state.releaseWorkerHoldings(-1), { activeRequests: 0, openSockets: 0 })

    // the live worker finishes what it had: the gauge drops to what nobody holds
    state.addHeld(2, 2, L.U_ACTIVE_REQUESTS, -2)
    state.addHeld(2, 2, L.U_OPEN_SOCKETS, -1)
    assert.equal(state.upstream(2, L.U_ACTIVE_REQUESTS), 4)
    assert.equal(state.upstream(2, L.U_OPEN_SOCKETS), 0)
  })

  it('a negative share (more -1s than +1s recorded) is given back too: the arithmetic is signed', () => {
    const state = SharedState.create(0)
    state.addUpstream(0, L.U_ACTIVE_REQUESTS, 1)
    state.addHeld(4, 0, L.U_ACTIVE_REQUESTS, -1)
    assert.deepEqual(state.releaseWorkerHoldings(4), { activeRequests: -1, openSockets: 0 })
    assert.equal(state.upstream(0, L.U_ACTIVE_REQUESTS), 1)
  })

  it('the holdings region sits between the firewall counters and the rate-limit table, and overlaps neither', () => {
    assert.equal(L.HOLDINGS_OFFSET, L.FIREWALL_OFFSET + L.MAX_FIREWALL_RULES)
    const holdingsEnd = L.HOLDINGS_OFFSET + L.MAX_WORKER_SLOTS * L.MAX_UPSTREAMS * L.HOLDING_INTS
    // regions added later (tracing, ...) sit between the holdings and the rate-limit table
    assert.ok(L.RATE_OFFSET >= holdingsEnd)
    const state = SharedState.create(16)
    state.addHeld(L.MAX_WORKER_SLOTS - 1, L.MAX_UPSTREAMS - 1, L.U_OPEN_SOCKETS, 1)
    state.addFirewallHit(L.MAX_FIREWALL_RULES - 1)
    assert.equal(state.rateTable[0], 0, 'the last holding cell is not the rate table\'s first word')
    assert.equal(state.i32[holdingsEnd - 1], 1)
    assert.equal(state.i32[holdingsEnd], 0, 'the last holding cell is the last word of its region')
    assert.equal(state.i32[L.HOLDINGS_OFFSET], 0, 'the last firewall counter is not the first holding cell')
  })

  it('workerSlotOf finds a claimed slot and never a free one', () => {
    const state = SharedState.create(0)
    const slot = state.claimWorkerSlot(77)
    assert.equal(state.workerSlotOf(77), slot)
    assert.equal(state.workerSlotOf(0), -1)
    assert.equal(state.workerSlotOf(78), -1)
    assert.equal(state.releaseWorkerSlot(77), slot)
    assert.equal(state.workerSlotOf(77), -1)
  })
})
