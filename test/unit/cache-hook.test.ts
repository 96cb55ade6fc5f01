/**
 * CacheHook.commit (src/proxy/cache-path.ts), issue #16 item 5: a store that
 * finds the write lock taken is not dropped. It is retried on later turns of
 * the loop with the URL's fill claim still held (so requests for the URL on
 * any thread wait for the entry instead of missing), and only given up,
 * counted and logged, when its claim is about to expire. The lock is held
 * here by writing its word, as a thread stuck inside it would.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { SharedCacheStore, CacheEntry, type CacheEntryInput } from '../../src/cache/store'
import { SharedState } from '../../src/shared/state'
import { C_LOCK, lockToken } from '../../src/cache/layout'
import { CacheHook } from '../../src/proxy/cache-hook'
import { waitFor } from '../helpers'

const NOW = Date.now()

function entry (body: string): CacheEntryInput {
  const bytes = Buffer.from(body)
  return {
    status: 200,
    head: Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${bytes.length}\r\n\r\n`, 'latin1'),
    body: bytes,
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

function setup (): { hook: CacheHook, other: SharedCacheStore, ctl: Int32Array } {
  const init = SharedCacheStore.allocate(1 << 20, 1 << 16)
  const state = SharedState.create(0)
  const store = new SharedCacheStore(init, state)
  store.setOwner(1)
  const other = new SharedCacheStore(init, state)
  other.setOwner(2)
  const hook = new CacheHook(store, { maxBytes: 1 << 20, maxEntryBytes: 1 << 16, cacheAuthorized: false, targetedField: '', staleIfErrorMs: 0 }, 1000)
  return { hook, other, ctl: new Int32Array(init.buffer) }
}

describe('CacheHook.commit: a cacheable response is stored whatever the thread timing', () => {
  it('the lock held past the spin: stored on a later turn, the fill claim held until then', async () => {
    const { hook, other, ctl } = setup()
    assert.equal(hook.store.tryClaimFill('h /a', Date.now(), 5000), true)
    Atomics.store(ctl, C_LOCK, lockToken(Date.now()))
    hook.commit('h /a', entry('a'), true)
    const out = new CacheEntry()
    assert.equal(other.lookup('h /a', Date.now(), out), false, 'not stored while the lock is held')
    assert.equal(other.tryClaimFill('h /a', Date.now(), 5000), false, 'another thread waits for the entry instead of fetching')
    Atomics.store(ctl, C_LOCK, 0)
    await waitFor(() => other.lookup('h /a', Date.now(), out), 2000, 'the deferred store')
    assert.equal(out.body.toString(), 'a')
    assert.equal(other.tryClaimFill('h /a', Date.now(), 5000), true, 'the claim went with the store')
    assert.equal(hook.store.stats().skippedStores, 0)
    assert.equal(hook.givenUpStores, 0)
  })

  it('given up (counted, claim released) only when its claim is about to expire', async () => {
    const { hook, other, ctl } = setup()
    hook.fillTtlMs = 60
    assert.equal(hook.store.tryClaimFill('h /b', Date.now(), hook.fillTtlMs), true)
    Atomics.store(ctl, C_LOCK, lockToken(Date.now()))
    hook.commit('h /b', entry('b'), true)
    await waitFor(() => hook.givenUpStores === 1, 2000, 'the store to be given up')
    assert.equal(hook.store.stats().skippedStores, 1)
    assert.equal(other.tryClaimFill('h /b', Date.now(), 5000), true, 'the claim was released')
    Atomics.store(ctl, C_LOCK, 0)
  })
})
