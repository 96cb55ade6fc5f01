/**
 * SharedCacheStore on one thread: round trips, Vary variants and purges,
 * eviction under a stream of large entries (byte bound, recency, second
 * chance), refusals, forced hash collisions, fill claims and the write lock.
 * Clocks are injected; nothing sleeps.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { SharedCacheStore, CacheEntry, type CacheEntryInput, type SharedCacheOptions } from '../../src/cache/store'
import { primaryKey, varyValues, type HeaderSource } from '../../src/cache/key'
import { SharedState } from '../../src/shared/state'
import * as L from '../../src/shared/layout'
import * as C from '../../src/cache/layout'
import { C_LOCK, lockToken } from '../../src/cache/layout'

const NOW = 1_760_000_000_000
const KB = 1024

function open (maxBytes: number, maxEntryBytes = 1 << 20, options: SharedCacheOptions = {}): { store: SharedCacheStore, state: SharedState, buffer: SharedArrayBuffer } {
  const state = SharedState.create(0)
  const init = SharedCacheStore.allocate(maxBytes, maxEntryBytes, options)
  return { store: new SharedCacheStore(init, state), state, buffer: init.buffer }
}

/** A body that says which key it belongs to, `size` bytes long. */
function bodyFor (key: string, size: number): Buffer {
  const body = Buffer.alloc(size)
  const tag = Buffer.from(`<${key}>`, 'latin1')
  for (let i = 0; i < size; i += tag.length) tag.copy(body, i, 0, Math.min(tag.length, size - i))
  return body
}

function entry (key: string, size: number, extra: Partial<CacheEntryInput> = {}): CacheEntryInput {
  return {
    status: 200,
    head: Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${size}\r\nX-Key: ${key}\r\n\r\n`, 'latin1'),
    body: bodyFor(key, size),
    storedAtMs: NOW,
    responseDateMs: NOW - 1000,
    initialAgeSec: 1,
    freshForMs: 60_000,
    etag: `"${key}"`,
    lastModified: null,
    varyNames: null,
    varyValues: null,
    ...extra,
  }
}

/**
 * Walk the ring from tail to head through the raw buffer and check the
 * store's books: USED is the bytes walked, the live records are exactly the
 * ones the index points at, and LIVE_BYTES / LIVE_RECORDS add up.
 */
function checkRing (buffer: SharedArrayBuffer): void {
  const ctl = new Int32Array(buffer, 0, C.CTL_INTS)
  const layout = C.cacheBufferLayout(ctl[C.C_INDEX_SLOTS], ctl[C.C_ARENA_BYTES])
  const words = new Int32Array(buffer, layout.arenaOffset, layout.arenaBytes >> 2)
  const index = new Int32Array(buffer, layout.indexOffset, layout.indexSlots * C.INDEX_INTS)
  const indexed = new Set<string>()
  for (let slot = 0; slot < layout.indexSlots; slot++) {
    const base = slot * C.INDEX_INTS
    if (index[base + C.I_KEY_HI] !== 0) indexed.add(`${index[base + C.I_OFFSET]}:${index[base + C.I_ID]}`)
  }
  let at = ctl[C.C_TAIL]
  let walked = 0
  let liveBytes = 0
  let live = 0
  while (walked < ctl[C.C_USED]) {
    const size = words[(at + C.R_SIZE) >> 2]
    assert.ok(size >= 8 && size % 8 === 0 && at + size <= layout.arenaBytes, `record at ${at} size ${size}`)
    const id = words[at >> 2]
    if (id !== 0) {
      assert.ok(indexed.has(`${at}:${id}`), `live record at ${at} is indexed`)
      liveBytes += size
      live++
    }
    walked += size
    at += size
    if (at === layout.arenaBytes) at = 0
  }
  assert.equal(walked, ctl[C.C_USED])
  assert.equal(at, ctl[C.C_USED] === 0 ? at : ctl[C.C_HEAD])
  assert.equal(live, indexed.size, 'every indexed record is live and in the ring')
  assert.equal(live, ctl[C.C_LIVE_RECORDS])
  assert.equal(liveBytes, ctl[C.C_LIVE_BYTES])
}

function headers (fields: Record<string, string>): HeaderSource {
  return { header: (name) => fields[name] ?? null }
}

describe('SharedCacheStore: round trip', () => {
  it('stores and copies an entry out, with every field and the shared counters', () => {
    const { store, state } = open(1 << 20)
    const key = primaryKey('example.com', '/a')
    const input = entry(key, 1000, { lastModified: 'Wed, 15 Jan 2025 10:00:00 GMT', status: 203 })
    assert.equal(store.store(key, input), true)
    const out = new CacheEntry()
    assert.equal(store.lookup(key, NOW + 5000, out), true)
    assert.equal(out.status, 203)
    assert.deepEqual(out.head, input.head)
    assert.deepEqual(out.body, input.body)
    assert.equal(out.etag, `"${key}"`)
    assert.equal(out.lastModified, 'Wed, 15 Jan 2025 10:00:00 GMT')
    assert.equal(out.varyNames, null)
    // copies, never views of the shared arena
    assert.ok(!(out.body.buffer instanceof SharedArrayBuffer))
    assert.ok(!(out.head.buffer instanceof SharedArrayBuffer))
    assert.equal(state.header(L.H_CACHE_ENTRIES), 1)
    assert.ok(state.header(L.H_CACHE_BYTES) > 1000)
    assert.equal(state.header(L.H_CACHE_HITS), 1)
    assert.equal(store.lookup(primaryKey('example.com', '/b'), NOW, out), false)
    assert.equal(state.header(L.H_CACHE_MISSES), 1)
  })

  it('expiry data round-trips and lookup judges freshness at its clock (RFC 9111 §4.2.3)', () => {
    const { store, state } = open(1 << 20)
    const key = 'h /fresh'
    store.store(key, entry(key, 10, { storedAtMs: NOW + 0.5, responseDateMs: NOW - 2500, initialAgeSec: 7, freshForMs: 30_000 }))
    const out = new CacheEntry()
    assert.equal(store.lookup(key, NOW + 10_000, out), true)
    assert.equal(out.storedAtMs, NOW + 0.5)
    assert.equal(out.responseDateMs, NOW - 2500)
    assert.equal(out.initialAgeSec, 7)
    assert.equal(out.freshForMs, 30_000)
    assert.equal(out.currentAgeMs, 7000 + 9999.5)
    assert.equal(out.fresh, true)
    // 7 s initial age + 23 s resident = 30 s: stale, still returned for revalidation
    assert.equal(store.lookup(key, NOW + 23_001, out), true)
    assert.equal(out.fresh, false)
    assert.equal(state.header(L.H_CACHE_HITS), 1)
    assert.equal(state.header(L.H_CACHE_MISSES), 1)
  })

  it('replaces an entry stored again under the same key; remove purges it', () => {
    const { store, state } = open(1 << 20)
    store.store('h /x', entry('h /x', 100))
    const bytesOne = state.header(L.H_CACHE_BYTES)
    store.store('h /x', entry('h /x', 100, { body: Buffer.alloc(100, 0x41) }))
    const out = new CacheEntry()
    assert.equal(store.lookup('h /x', NOW, out), true)
    assert.deepEqual(out.body, Buffer.alloc(100, 0x41))
    assert.equal(state.header(L.H_CACHE_ENTRIES), 1)
    assert.equal(state.header(L.H_CACHE_BYTES), bytesOne)
    assert.equal(store.remove('h /x'), true)
    assert.equal(store.remove('h /x'), false)
    assert.equal(store.lookup('h /x', NOW, out), false)
    assert.equal(state.header(L.H_CACHE_ENTRIES), 0)
    assert.equal(state.header(L.H_CACHE_BYTES), 0)
  })

  it('heads and bodies at every source alignment round-trip (the body keeps its phase mod 8)', () => {
    const { store, buffer } = open(1 << 20)
    const out = new CacheEntry()
    const backing = Buffer.alloc(4096)
    for (let i = 0; i < backing.length; i++) backing[i] = (i * 31 + 7) & 0xff
    for (let bodyPhase = 0; bodyPhase < 8; bodyPhase++) {
      for (let headLength = 17; headLength < 25; headLength++) {
        const key = `h /align/${bodyPhase}/${headLength}/${'k'.repeat(headLength % 5)}`
        const head = backing.subarray(3, 3 + headLength)
        const body = backing.subarray(64 + bodyPhase, 64 + bodyPhase + 333 + headLength)
        assert.equal(store.store(key, entry(key, 0, { head, body, etag: headLength % 2 === 0 ? null : '"e"' })), true)
        assert.equal(store.lookup(key, NOW, out), true)
        assert.deepEqual(out.head, head)
        assert.deepEqual(out.body, body)
      }
    }
    checkRing(buffer)
  })

  it('an empty body and a null validator round-trip', () => {
    const { store } = open(4096)
    store.store('h /204', entry('h /204', 0, { status: 204, etag: null }))
    const out = new CacheEntry()
    assert.equal(store.lookup('h /204', NOW, out), true)
    assert.equal(out.status, 204)
    assert.equal(out.body.length, 0)
    assert.equal(out.etag, null)
  })
})

describe('SharedCacheStore: Vary (RFC 9111 §4.1)', () => {
  const names = ['accept-encoding']
  const gzip = headers({ 'accept-encoding': 'gzip' })
  const identity = headers({ 'accept-encoding': 'identity' })
  const key = primaryKey('example.com', '/v')

  function storeVariant (store: SharedCacheStore, req: HeaderSource, label: string, varyOn = names): boolean {
    return store.store(key, entry(`${key}|${label}`, 500, { varyNames: varyOn, varyValues: varyValues(varyOn, req) }))
  }

  it('keeps variants apart and resolves marker -> variant', () => {
    const { store, state } = open(1 << 20)
    assert.equal(storeVariant(store, gzip, 'gzip'), true)
    assert.equal(storeVariant(store, identity, 'identity'), true)
    const out = new CacheEntry()
    assert.equal(store.lookup(key, NOW, out, gzip), true)
    assert.deepEqual(out.body, bodyFor(`${key}|gzip`, 500))
    assert.deepEqual(out.varyNames, names)
    assert.equal(store.lookup(key, NOW, out, identity), true)
    assert.deepEqual(out.body, bodyFor(`${key}|identity`, 500))
    assert.equal(store.lookup(key, NOW, out, headers({ 'accept-encoding': 'br' })), false)
    assert.equal(store.lookup(key, NOW, out, headers({})), false)
    assert.equal(store.lookup(key, NOW, out), false, 'no request headers, no variant')
    assert.equal(state.header(L.H_CACHE_ENTRIES), 2, 'markers are not entries')
  })

  it('purging the primary key makes every variant unreachable, and new variants start clean', () => {
    const { store } = open(1 << 20)
    storeVariant(store, gzip, 'gzip')
    storeVariant(store, identity, 'identity')
    assert.equal(store.remove(key), true)
    const out = new CacheEntry()
    assert.equal(store.lookup(key, NOW, out, gzip), false)
    assert.equal(store.lookup(key, NOW, out, identity), false)
    storeVariant(store, gzip, 'gzip-2')
    assert.equal(store.lookup(key, NOW, out, gzip), true)
    assert.deepEqual(out.body, bodyFor(`${key}|gzip-2`, 500))
    assert.equal(store.lookup(key, NOW, out, identity), false, 'the purged identity variant stays dead')
  })

  it('a response that varies on other fields replaces the marker and orphans the old variants', () => {
    const { store } = open(1 << 20)
    storeVariant(store, gzip, 'gzip')
    const both = ['accept-encoding', 'accept-language']
    const gzipEn = headers({ 'accept-encoding': 'gzip', 'accept-language': 'en' })
    storeVariant(store, gzipEn, 'gzip-en', both)
    const out = new CacheEntry()
    assert.equal(store.lookup(key, NOW, out, gzipEn), true)
    assert.deepEqual(out.body, bodyFor(`${key}|gzip-en`, 500))
    assert.equal(store.lookup(key, NOW, out, headers({ 'accept-encoding': 'gzip', 'accept-language': 'fr' })), false)
  })

  it('a plain entry replaces a marker, and Vary: * is refused', () => {
    const { store } = open(1 << 20)
    storeVariant(store, gzip, 'gzip')
    store.store(key, entry(key, 10))
    const out = new CacheEntry()
    assert.equal(store.lookup(key, NOW, out, gzip), true)
    assert.deepEqual(out.body, bodyFor(key, 10))
    assert.equal(store.store(key, entry(key, 10, { varyNames: ['*'], varyValues: '' })), false)
  })
})

describe('SharedCacheStore: eviction', () => {
  it('a stream of distinct 100 KB entries: never over maxBytes, the most recent survive', () => {
    const maxBytes = 1 << 20
    const { store, state, buffer } = open(maxBytes)
    const out = new CacheEntry()
    const keys: string[] = []
    for (let i = 0; i < 60; i++) {
      const key = primaryKey('example.com', `/big/${i}`)
      keys.push(key)
      assert.equal(store.store(key, entry(key, 100 * KB)), true, `store ${i}`)
      assert.ok(state.header(L.H_CACHE_BYTES) <= maxBytes, `bytes after ${i}`)
      assert.equal(state.header(L.H_CACHE_BYTES), store.stats().liveBytes)
    }
    // 1 MiB holds 9 of these records (100 KB + ~150 B each) with room to spare for the pad
    assert.ok(state.header(L.H_CACHE_ENTRIES) >= 8, `entries ${state.header(L.H_CACHE_ENTRIES)}`)
    for (const key of keys.slice(-8)) {
      assert.equal(store.lookup(key, NOW, out), true, key)
      assert.deepEqual(out.body, bodyFor(key, 100 * KB))
    }
    for (const key of keys.slice(0, 40)) assert.equal(store.lookup(key, NOW, out), false, key)
    assert.ok(store.stats().evictions >= 50)
    checkRing(buffer)
  })

  it('an entry hit between stores gets a second chance (CLOCK) and outlives the stream', () => {
    const { store, buffer } = open(1 << 20)
    const out = new CacheEntry()
    const hot = 'h /hot'
    store.store(hot, entry(hot, 100 * KB))
    for (let i = 0; i < 40; i++) {
      assert.equal(store.lookup(hot, NOW, out), true, `hot entry gone after ${i} cold stores`)
      assert.deepEqual(out.body, bodyFor(hot, 100 * KB))
      store.store(`h /cold/${i}`, entry(`h /cold/${i}`, 100 * KB))
    }
    assert.ok(store.stats().reinsertions > 0)
    assert.equal(store.lookup('h /cold/0', NOW, out), false)
    checkRing(buffer)
  })

  it('mixed sizes wrap the ring many times and every hit is intact', () => {
    const maxBytes = 256 * KB
    const { store, state, buffer } = open(maxBytes, 64 * KB)
    const out = new CacheEntry()
    let seed = 12345
    for (let i = 0; i < 400; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
      const size = seed % (60 * KB)
      const key = `h /mixed/${i % 97}`
      store.store(key, entry(key, size))
      assert.ok(state.header(L.H_CACHE_BYTES) <= maxBytes)
      const probe = `h /mixed/${(seed >>> 8) % 97}`
      if (store.lookup(probe, NOW, out)) {
        assert.equal(out.body.length, Number(/Content-Length: (\d+)/.exec(out.head.toString('latin1'))?.[1]))
        assert.deepEqual(out.body, bodyFor(probe, out.body.length))
      }
      if (i % 50 === 0) store.remove(`h /mixed/${(seed >>> 4) % 97}`)
      if (i % 20 === 0) checkRing(buffer)
    }
    checkRing(buffer)
  })

  it('the index load limit evicts too: a small index holds its capacity, the newest first', () => {
    const { store, state, buffer } = open(1 << 20, 1 << 20, { indexSlots: 8 })
    const out = new CacheEntry()
    for (let i = 0; i < 30; i++) assert.equal(store.store(`h /s/${i}`, entry(`h /s/${i}`, 10)), true)
    checkRing(buffer)
    assert.equal(state.header(L.H_CACHE_ENTRIES), 6) // 3/4 of 8 slots
    for (let i = 24; i < 30; i++) assert.equal(store.lookup(`h /s/${i}`, NOW, out), true, `${i}`)
  })
})

describe('SharedCacheStore: refusals and collisions', () => {
  it('refuses entries over maxEntryBytes, over half the arena, and non-latin1 keys', () => {
    const { store, state } = open(1 << 20, 10 * KB)
    assert.equal(store.maxEntryBytes, 10 * KB)
    assert.equal(store.store('h /big', entry('h /big', 10 * KB + 1)), false)
    assert.equal(store.store('h /ok', entry('h /ok', 9 * KB)), true)
    assert.equal(store.store('h /\u0101', entry('h /x', 10)), false)
    assert.equal(store.stats().refusedStores, 2)
    const small = open(4096, 1 << 20)
    assert.equal(small.store.maxEntryBytes, 2048)
    assert.equal(small.store.store('h /half', entry('h /half', 2000)), false, 'record over half the arena')
    assert.equal(state.header(L.H_CACHE_ENTRIES), 1)
  })

  it('keys whose whole 64-bit hash collides are told apart by their bytes', () => {
    // 2 hash bits: 4 distinct hashes for 12 keys, in a 16-slot index
    const { store, buffer } = open(1 << 20, 1 << 20, { indexSlots: 16, hashBits: 2 })
    const out = new CacheEntry()
    const keys = Array.from({ length: 12 }, (_, i) => `h /collide/${i}`)
    for (const key of keys) assert.equal(store.store(key, entry(key, 50)), true, key)
    for (const key of keys) {
      assert.equal(store.lookup(key, NOW, out), true, key)
      assert.deepEqual(out.body, bodyFor(key, 50))
    }
    assert.equal(store.lookup('h /collide/never', NOW, out), false)
    assert.equal(store.remove(keys[3]), true)
    assert.equal(store.lookup(keys[3], NOW, out), false)
    for (const key of keys.filter((_, i) => i !== 3)) {
      assert.equal(store.lookup(key, NOW, out), true, `${key} after a backward shift`)
      assert.deepEqual(out.body, bodyFor(key, 50))
    }
    checkRing(buffer)
  })
})

describe('SharedCacheStore: fill claims', () => {
  it('one claim per key until released or expired', () => {
    const { store } = open(4096)
    assert.equal(store.tryClaimFill('h /f', NOW, 1000), true)
    assert.equal(store.tryClaimFill('h /f', NOW + 10, 1000), false)
    assert.equal(store.tryClaimFill('h /g', NOW + 10, 1000), true, 'other keys are independent')
    store.releaseFill('h /f')
    assert.equal(store.tryClaimFill('h /f', NOW + 20, 1000), true)
    assert.equal(store.tryClaimFill('h /f', NOW + 1019, 1000), false)
    assert.equal(store.tryClaimFill('h /f', NOW + 1021, 1000), true, 'expired claims are taken over')
  })

  it('claims are shared by every instance attached to the buffer', () => {
    const state = SharedState.create(0)
    const init = SharedCacheStore.allocate(4096, 1024)
    const a = new SharedCacheStore(init, state)
    const b = new SharedCacheStore(init, state)
    assert.equal(a.tryClaimFill('h /c', NOW, 500), true)
    assert.equal(b.tryClaimFill('h /c', NOW, 500), false)
    a.releaseFill('h /c')
    assert.equal(b.tryClaimFill('h /c', NOW, 500), true)
  })
})

describe('SharedCacheStore: the write lock', () => {
  it('a held lock skips the store without waiting; reads go on', () => {
    const { store, buffer } = open(1 << 20)
    store.store('h /r', entry('h /r', 10))
    const ctl = new Int32Array(buffer)
    Atomics.store(ctl, C_LOCK, lockToken(Date.now()))
    assert.equal(store.store('h /w', entry('h /w', 10)), false)
    assert.equal(store.remove('h /r'), false)
    assert.equal(store.stats().skippedStores, 1)
    const out = new CacheEntry()
    assert.equal(store.lookup('h /r', NOW, out), true)
    Atomics.store(ctl, C_LOCK, 0)
    assert.equal(store.store('h /w', entry('h /w', 10)), true)
  })

  it('a lock taken just after this thread read its clock is not mistaken for an expired one', () => {
    const { store, buffer } = open(1 << 20, 1 << 20, { lockLeaseMs: 1000 })
    Atomics.store(new Int32Array(buffer), C_LOCK, lockToken(Date.now() + 50))
    assert.equal(store.store('h /w', entry('h /w', 10)), false)
    assert.equal(store.stats().lockTakeovers, 0)
    assert.equal(C.lockHeldMs(lockToken(NOW), NOW + 1500), 1500)
    assert.equal(C.lockHeldMs(lockToken(NOW + 20), NOW), -20)
    // across the 2^30 ms wrap of the token
    const wrap = 0x40000000 * 1700
    assert.equal(C.lockHeldMs(lockToken(wrap - 10), wrap + 10), 20)
  })

  it('C_WRITES is odd exactly while a writer holds the lock; a holder overtaken after its lease does not end the new holder\'s section', () => {
    const { store: a, state, buffer } = open(1 << 20, 1 << 20, { lockLeaseMs: 1000 })
    const b = new SharedCacheStore({ buffer }, state) // another thread's view of the same cache
    const ctl = new Int32Array(buffer)
    const writes = (): number => Atomics.load(ctl, C.C_WRITES)
    const inside = (s: SharedCacheStore): { lock (spinMs?: number): boolean, unlock (): void } => s as unknown as { lock (spinMs?: number): boolean, unlock (): void }
    assert.equal(writes() & 1, 0)
    const before = writes()
    assert.equal(a.store('h /w', entry('h /w', 10)), true)
    assert.equal(writes(), before + 2, 'one section: odd, then even again')
    assert.equal(inside(a).lock(), true)
    const aSection = writes()
    assert.equal(aSection & 1, 1)
    // A stalls past its lease; B takes the lock over (and resets the cache)
    Atomics.store(ctl, C_LOCK, lockToken(Date.now() - 60_000))
    assert.equal(inside(b).lock(), true)
    const bSection = writes()
    assert.equal(bSection & 1, 1)
    assert.notEqual(bSection, aSection, 'a new section, so a reader that began in A\'s looks again')
    inside(a).unlock() // A wakes up and lets go: B is still writing
    assert.equal(writes(), bSection)
    inside(b).unlock()
    assert.equal(writes(), (bSection + 1) | 0)
    assert.equal(b.stats().lockTakeovers, 1)
  })

  it('a lock held past its lease (a thread killed mid-write) is taken over and the cache reset', () => {
    const { store, state, buffer } = open(1 << 20, 1 << 20, { lockLeaseMs: 1000 })
    store.store('h /old', entry('h /old', 10))
    Atomics.store(new Int32Array(buffer), C_LOCK, lockToken(Date.now() - 60_000))
    assert.equal(store.store('h /new', entry('h /new', 10)), true)
    assert.equal(store.stats().lockTakeovers, 1)
    const out = new CacheEntry()
    assert.equal(store.lookup('h /old', NOW, out), false)
    assert.equal(store.lookup('h /new', NOW, out), true)
    assert.equal(state.header(L.H_CACHE_ENTRIES), 1)
  })
})
