/**
 * The cache's per-thread side (one CacheHook per thread): the shared store,
 * the requests parked while another request (any thread) fills their key,
 * hit-for-pass marks, invalidation with retries, and the commit of an entry
 * to the store, which does not give up when the write lock is taken (see
 * commit). The per-request phase is ./cache-path.ts.
 */
import type { CacheConfig } from '../config/types'
import { type SharedCacheStore, BUSY, type CacheEntryInput } from '../cache/store'
import type { HeadParser } from '../http/head-parser'
import type { UpstreamEntry } from '../shared/state'
import { logger } from '../log'

/** How long a request waits for another thread's fill of the same key before going upstream itself. */
const FILL_WAIT_MS_MAX = 10_000
const WAITER_POLL_MS = 5
/** How long a URL whose response could not be stored skips coalescing. */
const PASS_MS = 10_000
const PASS_MARKS_MAX = 10_000
/**
 * How long a store spins for the write lock before it is deferred to a later
 * turn of the event loop (store.ts, write-lock.ts). Critical sections are a
 * record copy: microseconds, unless the holder's thread is descheduled.
 */
const STORE_SPIN_MS = 0.5
const DEFERRED_RETRY_MS = 1
const DEFERRED_MAX = 1024
/** A store that found the write lock taken past its spin: retried later, with its fill claim (if any) still held. */
interface DeferredStore {
  key: string
  entry: CacheEntryInput
  claimed: boolean
  since: number
}

/** One per thread: the store and the requests waiting for a fill. */
export class CacheHook {
  readonly store: SharedCacheStore
  private cacheConfig!: CacheConfig
  /** cache.targetedField lower-cased ('' = none): the field name the policy asks the response for. */
  targetedField = ''
  readonly waiters = new Set<CacheUser>()
  private timer: NodeJS.Timeout | null = null
  /** Responses arrive within responseMs, so a fill claim older than that is abandoned. */
  fillTtlMs: number
  /** URLs whose last response could not be stored, until when (ms): no coalescing for them. */
  private readonly passUntil = new Map<string, number>()
  private readonly deferred: DeferredStore[] = []
  private deferredTimer: NodeJS.Timeout | null = null
  /** Stores given up after waiting for the write lock for a whole fill TTL (also counted in the store's skippedStores). */
  givenUpStores = 0

  constructor (store: SharedCacheStore, config: CacheConfig, responseMs: number) {
    this.store = store
    this.config = config
    this.fillTtlMs = Math.min(FILL_WAIT_MS_MAX, responseMs + 1000)
  }

  get config (): CacheConfig { return this.cacheConfig }

  /** A reload swaps the policy (the memory stays). */
  set config (config: CacheConfig) {
    this.cacheConfig = config
    this.targetedField = config.targetedField.toLowerCase()
  }

  /**
   * Remove `key` (RFC 9111 §4.4 invalidation). remove() is also false when
   * another thread holds the write lock, so try a few times, a few ms apart.
   */
  invalidate (key: string, attempt = 0): void {
    // the write lock is held for a copy at most: a short bounded spin nearly always gets it,
    // so the entry is gone before the response that caused it is relayed
    if (this.store.tryRemove(key, attempt === 0 ? STORE_SPIN_MS : 0) !== BUSY) return
    if (attempt >= 10) return
    setTimeout(invalidateLater, 5, this, key, attempt + 1).unref()
  }

  /**
   * Store `entry` under `key` for every thread. `claimed`: the caller holds
   * the key's fill claim, which goes with the entry and is released once it
   * is stored (or refused). The write lock is spun for briefly; a store that
   * still finds it taken is retried on later turns of the loop with the claim
   * held, so requests for the key on any thread wait for the entry instead of
   * missing (issue #16: the cache must not depend on thread timing). Only
   * after a whole fill TTL is it given up: counted and logged.
   */
  commit (key: string, entry: CacheEntryInput, claimed: boolean): void {
    if (this.store.tryStore(key, entry, STORE_SPIN_MS) === BUSY) {
      if (this.deferred.length < DEFERRED_MAX) {
        this.deferred.push({ key, entry, claimed, since: Date.now() })
        if (this.deferredTimer === null) this.deferredTimer = setTimeout(retryDeferred, DEFERRED_RETRY_MS, this)
        return
      }
      this.giveUp(key, 0)
    }
    if (claimed) this.store.releaseFill(key)
  }

  /** A store not done because the write lock stayed taken: counted (the store's skippedStores) and logged. */
  private giveUp (key: string, waitedMs: number): void {
    this.store.countSkippedStore()
    this.givenUpStores++
    logger.warn({ key, waitedMs, deferred: this.deferred.length }, 'cache: response not stored, the write lock stayed taken')
  }

  /** Retry the deferred stores (the timer's callback). */
  retryDeferred (): void {
    this.deferredTimer = null
    const now = Date.now()
    const pending = this.deferred.splice(0)
    for (const d of pending) {
      if (this.store.tryStore(d.key, d.entry, 0) !== BUSY) {
        if (d.claimed) this.store.releaseFill(d.key)
      } else if (now - d.since >= this.fillTtlMs - DEFERRED_RETRY_MS * 10) {
        // its claim is about to expire: another request may fetch the URL again now
        if (d.claimed) this.store.releaseFill(d.key)
        this.giveUp(d.key, now - d.since)
      } else this.deferred.push(d)
    }
    if (this.deferred.length > 0) this.deferredTimer = setTimeout(retryDeferred, DEFERRED_RETRY_MS, this)
  }

  markPass (key: string, now: number): void {
    // bounded: a flood of distinct uncacheable URLs only forgets the marks early
    if (this.passUntil.size >= PASS_MARKS_MAX) this.passUntil.clear()
    this.passUntil.set(key, now + PASS_MS)
  }

  isPass (key: string, now: number): boolean {
    const until = this.passUntil.get(key)
    if (until === undefined) return false
    if (until > now) return true
    this.passUntil.delete(key)
    return false
  }

  count (field: number): void {
    this.store.countRequest(field)
  }

  park (user: CacheUser): void {
    this.waiters.add(user)
    if (this.timer === null) {
      this.timer = setInterval(pollWaiters, WAITER_POLL_MS, this)
      this.timer.unref()
    }
  }

  unpark (user: CacheUser): void {
    this.waiters.delete(user)
    if (this.waiters.size === 0 && this.timer !== null) {
      clearInterval(this.timer)
      this.timer = null
    }
  }
}

function retryDeferred (hook: CacheHook): void {
  hook.retryDeferred()
}

function invalidateLater (hook: CacheHook, key: string, attempt: number): void {
  hook.invalidate(key, attempt)
}

function pollWaiters (hook: CacheHook): void {
  const now = Date.now()
  // a snapshot: retry() takes a waiter out and may put it back, which a live Set
  // iteration would visit again, forever
  const waiting = Array.from(hook.waiters)
  for (const user of waiting) user.onCacheWaitTick(now)
}

/** What the cache needs of a client connection: its parser, and a nudge while it waits for a fill. */
export interface CacheUser {
  readonly parser: HeadParser
  /** Parked for a fill: look again (CacheState.lookupAgain) and act on the decision. */
  onCacheWaitTick (now: number): void
  /**
   * Where a stale-while-revalidate background request for the current
   * request goes (./cache-revalidate.ts): the upstream the balancer would
   * send the request to now, reached as the request path reaches it (TLS,
   * a PROXY header); null when there is none (then the entry is not
   * refreshed in the background).
   */
  revalidationUpstream (): RevalidationTarget | null
}

/** An upstream to revalidate at, and the PROXY protocol header its connection opens with (null: none). */
export interface RevalidationTarget {
  readonly entry: UpstreamEntry
  readonly prefix: Buffer | null
}
