/**
 * The response cache on the request path (RFC 9111, as a shared cache):
 * lookup before balancing, hits served without an upstream, stale entries
 * revalidated with the stored validators, cacheable misses captured and stored
 * once for every thread (src/cache/store.ts), and concurrent misses for one
 * key collapsed so one request goes upstream while the others wait for the
 * entry. Only responses with a Content-Length body (or none) are stored; a
 * chunked response passes through uncached.
 */
import type { Writable } from 'node:stream'
import type { CacheConfig } from '../config/types'
import { SharedCacheStore, CacheEntry, BUSY } from '../cache/store'
import {
  requestCacheMode, responseFreshness, correctedInitialAgeSec, freshEnoughForRequest, conditionalMatches, varyNames,
  parseHttpDate, staleAllowed, CacheControl, CACHE_BYPASS, CACHE_LOOKUP,
} from '../cache/policy'
import { mergeNotModified, StoredHeadView } from '../cache/stored-head'
import { CachedResponse, renderStored, cacheStatusHit, ONLY_IF_CACHED_HEAD, ONLY_IF_CACHED_BODY } from '../cache/render'
import { primaryKey, varyValues } from '../cache/key'
import { HeadView } from '../cache/head-view'
import type { HeadParser } from '../http/head-parser'
import { BODY_NONE, BODY_LENGTH } from '../http/head-parser'
import { H_AUTHORIZATION } from '../http/header-names'
import { buildStoredHead } from '../http/serialize'
import { H_CACHE_HITS, H_CACHE_MISSES } from '../shared/layout'

/** How long a request waits for another thread's fill of the same key before going upstream itself. */
const FILL_WAIT_MS_MAX = 10_000
const WAITER_POLL_MS = 5
/** How long a URL whose response could not be stored skips coalescing. */
const PASS_MS = 10_000
const PASS_MARKS_MAX = 10_000

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
    for (let spin = 0; spin < (attempt === 0 ? 64 : 1); spin++) {
      if (this.store.tryRemove(key) !== BUSY) return
    }
    if (attempt >= 10) return
    setTimeout(invalidateLater, 5, this, key, attempt + 1).unref()
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
}

/**
 * The cache phase's decision: `hit` (answer with CacheState.response, which
 * may also be a 304 or an only-if-cached 504), `wait` (another request is
 * filling this key: the connection parks and is nudged), `forward` (go
 * upstream; the response may be captured for the store).
 */
export type CacheDecision = 'hit' | 'wait' | 'forward'

export { CachedResponse }

/** Per-connection cache state for the current request (monomorphic, reset per request). */
export class CacheState {
  readonly hook: CacheHook
  readonly view: HeadView
  /** The upstream response's fields, re-pointed at each response's parser. */
  private readonly responseView: HeadView
  readonly requestCc = new CacheControl()
  /** The directives of the response being captured (or of a 304's merged head). */
  readonly responseCc = new CacheControl()
  readonly entry = new CacheEntry()
  key = ''
  /** An unsafe request's URL: a non-error response to it invalidates what is stored there. */
  invalidateKey = ''
  mode = CACHE_BYPASS
  /** A stored entry is being revalidated: the upstream got our validators. */
  revalidating = false
  /** This request holds the key's fill claim. */
  filling = false
  isHead = false
  waitingSince = 0
  hasAuthorization = false
  requestSentAt = 0
  /** Capture of a storable response: head to store and body chunks. */
  storedHead: Buffer | null = null
  chunks: Buffer[] = []
  capturedBytes = 0
  expectedBytes = 0
  freshForMs = 0
  initialAgeSec = 0
  responseDateMs = 0
  etag: string | null = null
  lastModified: string | null = null
  varyNames: string[] | null = null
  /** X-Cache value for the relayed response, '' when the cache was not consulted. */
  xCache = ''
  /**
   * Cache-Status (RFC 9211) `fwd` reason of a forwarded request: 'uri-miss'
   * (nothing stored for the URL), 'vary-miss' (stored, not for these request
   * fields), 'stale' (stored, not fresh), 'request' (the request asked to
   * revalidate), 'miss' (the URL is known uncacheable), 'bypass', 'method';
   * '' when the cache was not consulted.
   */
  fwd = ''
  /** Waited for another request's fill (RFC 9211 collapsed). */
  collapsed = false
  /** X-Cache and Cache-Status lines for a relayed response, set by onResponseHead. */
  relayFields = ''
  readonly response = new CachedResponse()

  readonly user: CacheUser

  constructor (hook: CacheHook, user: CacheUser) {
    this.hook = hook
    this.user = user
    this.view = new HeadView(user.parser)
    this.responseView = new HeadView(user.parser)
  }

  reset (): void {
    if (this.filling) { this.hook.store.releaseFill(this.key); this.filling = false }
    if (this.waitingSince !== 0) this.hook.unpark(this.user)
    this.key = ''
    this.invalidateKey = ''
    this.mode = CACHE_BYPASS
    this.revalidating = false
    this.waitingSince = 0
    this.storedHead = null
    this.chunks = []
    this.capturedBytes = 0
    this.xCache = ''
    this.fwd = ''
    this.collapsed = false
    this.relayFields = ''
  }

  /**
   * The cache phase, before balancing. The key is the authority the request
   * is for (an absolute-form target's, never a conflicting Host: RFC 9112
   * §3.2.2) and the target in origin-form.
   */
  onRequest (isHead: boolean, bodyless: boolean): CacheDecision {
    this.reset()
    const p = this.user.parser
    const method = p.method
    this.isHead = isHead
    if (method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS' && method !== 'TRACE') {
      // RFC 9111 §4.4: remember the target; invalidated if the response is not an error
      this.invalidateKey = primaryKey(p.host(), p.path())
      this.fwd = 'method'
      return 'forward'
    }
    if (method !== 'GET' && method !== 'HEAD') { this.fwd = 'method'; return 'forward' }
    this.fwd = 'bypass'
    if (!bodyless) return 'forward'
    this.mode = requestCacheMode(this.view, this.hook.config.cacheAuthorized, this.requestCc)
    if (this.mode === CACHE_BYPASS) return 'forward'
    this.hasAuthorization = p.headerOfKind(H_AUTHORIZATION) !== null
    this.key = primaryKey(p.host(), p.path())
    return this.lookup(Date.now())
  }

  private lookup (now: number): CacheDecision {
    const store = this.hook.store
    const entry = this.entry
    this.revalidating = false
    // counted once per request when its outcome is decided (a waiting request looks up every few ms)
    if (store.lookup(this.key, now, entry, this.view, false)) {
      if (entry.fresh && this.mode === CACHE_LOOKUP && freshEnoughForRequest(this.requestCc, entry.currentAgeMs, entry.freshForMs)) {
        this.hook.count(H_CACHE_HITS)
        this.serve('HIT', cacheStatusHit(entry, this.collapsed))
        return 'hit'
      }
      this.fwd = this.mode !== CACHE_LOOKUP ? 'request' : entry.fresh ? 'request' : 'stale'
      // stale, or the client asked for revalidation: ask the upstream with our validators,
      // unless the client brings its own (then its answer is for it, not for us)
      const clientConditional = this.view.header('if-none-match') !== null || this.view.header('if-modified-since') !== null
      if ((entry.etag !== null || entry.lastModified !== null) && !clientConditional && entry.status === 200) this.revalidating = true
    } else this.fwd = entry.varyNames !== null ? 'vary-miss' : 'uri-miss'
    if (this.requestCc.onlyIfCached && !this.revalidating) {
      // RFC 9111 §5.2.1.7: nothing stored that we may use: 504
      this.hook.count(H_CACHE_MISSES)
      const r = this.response
      r.status = 504
      r.head = ONLY_IF_CACHED_HEAD
      r.body = ONLY_IF_CACHED_BODY
      return 'hit'
    }
    if (this.hook.isPass(this.key, now)) {
      // known uncacheable: straight upstream, in parallel with every other request for it
      this.xCache = 'MISS'
      if (this.fwd === 'uri-miss') this.fwd = 'miss'
      this.hook.count(H_CACHE_MISSES)
      return 'forward'
    }
    if (store.tryClaimFill(this.key, now, this.hook.fillTtlMs)) {
      this.filling = true
      this.xCache = this.revalidating ? 'REVALIDATED' : 'MISS'
      this.hook.count(H_CACHE_MISSES)
      return 'forward'
    }
    // another request (any thread) is fetching this key: wait for its entry
    if (this.waitingSince === 0) this.waitingSince = now
    this.collapsed = true
    if (now - this.waitingSince > this.hook.fillTtlMs) {
      this.xCache = 'MISS'
      this.hook.count(H_CACHE_MISSES)
      return 'forward'
    }
    this.hook.park(this.user)
    return 'wait'
  }

  /** Parked: look again (the connection calls this when nudged by the thread's poll timer). */
  lookupAgain (now: number): CacheDecision {
    this.hook.unpark(this.user) // lookup parks it again if it must keep waiting
    return this.lookup(now)
  }

  /** Our validators for the forwarded request ('' when not revalidating). */
  conditionalFields (): string {
    if (!this.revalidating) return ''
    const e = this.entry
    return (e.etag !== null ? `If-None-Match: ${e.etag}\r\n` : '') +
      (e.lastModified !== null ? `If-Modified-Since: ${e.lastModified}\r\n` : '')
  }

  /** Answer from the stored entry: 304 when the client's own validators match, else the entry. */
  private serve (xCache: string, cacheStatus: string): void {
    const e = this.entry
    const notModified = e.status === 200 && conditionalMatches(this.view, e.etag, e.lastModified)
    renderStored(e, xCache, cacheStatus, notModified, this.isHead, this.response)
  }

  /** X-Cache and Cache-Status (RFC 9211) of a response relayed from the upstream. */
  private setRelayFields (status: number, stored: boolean): void {
    if (this.fwd === '') { this.relayFields = ''; return }
    this.relayFields = (this.xCache !== '' ? 'X-Cache: ' + this.xCache + '\r\n' : '') +
      'Cache-Status: switchyard; fwd=' + this.fwd + '; fwd-status=' + status + (stored ? '; stored' : '') +
      (this.collapsed ? '; collapsed' : '') + '\r\n'
  }

  /**
   * The response head arrived. Returns the response to send instead (a
   * revalidated entry), or null to relay the upstream's response.
   */
  onResponseHead (res: HeadParser): CachedResponse | null {
    if (this.invalidateKey !== '') {
      // RFC 9111 §4.4: before the client can see this response (and send its next GET)
      if (res.status >= 200 && res.status < 400) this.hook.invalidate(this.invalidateKey)
      this.invalidateKey = ''
    }
    if (this.key === '') { this.setRelayFields(res.status, false); return null }
    const now = Date.now()
    if (this.revalidating && res.status === 304) return this.onNotModified(res, now)
    if (this.revalidating) this.xCache = 'MISS' // the upstream sent a new response instead
    this.storedHead = null
    if (this.isHead || res.status < 200) { this.setRelayFields(res.status, false); return null }
    const view = this.responseView
    view.parser = res
    const config = this.hook.config
    const freshFor = responseFreshness(view, this.mode, this.hasAuthorization, config.cacheAuthorized, now, this.responseCc, this.hook.targetedField)
    const framing = res.bodyKind
    const names = freshFor < 0 ? null : varyNames(view)
    if (freshFor < 0 || !(framing === BODY_NONE || (framing === BODY_LENGTH && res.contentLength <= this.hook.store.maxEntryBytes)) ||
        (names !== null && names.includes('*'))) {
      // not storable: remember it for a while (Varnish's hit-for-pass) so that requests for
      // this URL stop queueing behind one another's fills, and let the waiters go now
      this.hook.markPass(this.key, now)
      this.release()
      this.setRelayFields(res.status, false)
      return null
    }
    this.setRelayFields(res.status, true)
    this.storedHead = buildStoredHead(res)
    this.expectedBytes = framing === BODY_LENGTH ? res.contentLength : 0
    this.freshForMs = freshFor
    this.initialAgeSec = correctedInitialAgeSec(view, this.requestSentAt, now)
    this.responseDateMs = dateOf(view, now)
    this.etag = view.header('etag')
    this.lastModified = view.header('last-modified')
    this.varyNames = names
    this.chunks = []
    this.capturedBytes = 0
    return null
  }

  /**
   * Our revalidation got a 304 (RFC 9111 §4.3.4): the stored head takes the
   * 304's fields (stored-head.ts mergeNotModified), its freshness is computed
   * from the merged head, and the result goes both to this client and into
   * the store for the next hit. A merged head that may no longer be stored
   * (no-store, private now) is served once and removed.
   */
  private onNotModified (res: HeadParser, now: number): CachedResponse {
    const e = this.entry
    const config = this.hook.config
    const head = mergeNotModified(e.head, res)
    const merged = new StoredHeadView(head, e.status)
    const responseView = this.responseView
    responseView.parser = res
    const cc = this.responseCc
    const freshFor = responseFreshness(merged, this.mode, this.hasAuthorization, config.cacheAuthorized, now, cc, this.hook.targetedField)
    e.head = head
    e.etag = merged.header('etag')
    e.lastModified = merged.header('last-modified')
    e.storedAtMs = now
    e.responseDateMs = dateOf(responseView, now)
    e.initialAgeSec = correctedInitialAgeSec(responseView, this.requestSentAt, now)
    e.currentAgeMs = e.initialAgeSec * 1000
    e.freshForMs = Math.max(0, freshFor)
    if (freshFor >= 0) {
      this.hook.store.store(this.key, {
        status: e.status,
        head,
        body: e.body,
        storedAtMs: now,
        responseDateMs: e.responseDateMs,
        initialAgeSec: e.initialAgeSec,
        freshForMs: freshFor,
        etag: e.etag,
        lastModified: e.lastModified,
        varyNames: e.varyNames,
        varyValues: e.varyNames === null ? null : varyValues(e.varyNames, this.view),
        staleWhileRevalidateSec: cc.staleWhileRevalidateSec,
        staleIfErrorSec: cc.staleIfErrorSec,
        neverStale: !staleAllowed(cc),
      })
    } else this.hook.invalidate(this.key)
    this.release()
    const notModified = conditionalMatches(this.view, e.etag, e.lastModified, now)
    const ttl = Math.floor((e.freshForMs - e.currentAgeMs) / 1000)
    return renderStored(e, 'REVALIDATED', 'switchyard; fwd=stale; fwd-status=304; ttl=' + ttl + (freshFor >= 0 ? '; stored' : ''),
      notModified, this.isHead, this.response)
  }

  /** Called before the bytes go to the client, so the entry is stored before the client has the whole response. */
  onResponseBody (chunk: Buffer, start: number, end: number, status: number): void {
    if (this.storedHead === null) return
    this.chunks.push(chunk.subarray(start, end))
    this.capturedBytes += end - start
    if (this.capturedBytes === this.expectedBytes) this.commit(status)
  }

  /** The response is complete: store what was captured (a bodiless one), then let waiters in. */
  onResponseEnd (status: number): void {
    if (this.storedHead !== null && this.capturedBytes === this.expectedBytes) this.commit(status)
    this.storedHead = null
    this.chunks = []
    this.release()
  }

  private commit (status: number): void {
    this.hook.store.store(this.key, {
      status,
      head: this.storedHead as Buffer,
      body: this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.capturedBytes),
      storedAtMs: Date.now(),
      responseDateMs: this.responseDateMs,
      initialAgeSec: this.initialAgeSec,
      freshForMs: this.freshForMs,
      etag: this.etag,
      lastModified: this.lastModified,
      varyNames: this.varyNames,
      varyValues: this.varyNames === null ? null : varyValues(this.varyNames, this.view),
      staleWhileRevalidateSec: this.responseCc.staleWhileRevalidateSec,
      staleIfErrorSec: this.responseCc.staleIfErrorSec,
      neverStale: !staleAllowed(this.responseCc),
    })
    this.storedHead = null
    this.chunks = []
    // waiters may take it from here; the fill is done
    this.release()
  }

  /** Give up the fill claim (failure, abort, or done). */
  release (): void {
    if (this.filling) {
      this.hook.store.releaseFill(this.key)
      this.filling = false
    }
  }
}

function dateOf (view: HeadView, now: number): number {
  const date = view.header('date')
  const ms = date === null ? -1 : parseHttpDate(date, now)
  return ms >= 0 ? ms : now
}

/** A cached response's bytes as they go to the client: its head, our Via and Connection, the body. */
export function renderCachedResponse (response: CachedResponse, via: string, closing: boolean, http10: boolean): Buffer {
  const head = cachedHead(response, via, closing, http10)
  const body = response.body
  const out = Buffer.allocUnsafe(head.length + (body === null ? 0 : body.length))
  const o = out.latin1Write(head, 0)
  if (body !== null) body.copy(out, o)
  return out
}

/** Bodies past this go out as their own buffer (the lookup's copy), not copied again next to the head. */
const COPY_BODY_BYTES = 16 * 1024

/**
 * Write a cached response to `socket`: small ones in one buffer, large ones as
 * head + the body the lookup already copied out of shared memory (one writev,
 * no second copy: a client that does not read holds one copy of it, not two).
 * Returns the bytes written.
 */
export function writeCachedResponse (socket: Writable, response: CachedResponse, via: string, closing: boolean, http10: boolean): number {
  const body = response.body
  if (body === null || body.length <= COPY_BODY_BYTES) {
    const out = renderCachedResponse(response, via, closing, http10)
    socket.write(out)
    return out.length
  }
  const head = Buffer.from(cachedHead(response, via, closing, http10), 'latin1')
  socket.cork()
  socket.write(head)
  socket.write(body)
  socket.uncork()
  return head.length + body.length
}

function cachedHead (response: CachedResponse, via: string, closing: boolean, http10: boolean): string {
  const connection = closing ? 'Connection: close\r\n' : (http10 ? 'Connection: keep-alive\r\n' : '')
  return response.head + 'Via: 1.1 ' + via + '\r\n' + connection + '\r\n'
}

export { SharedCacheStore }
