/**
 * The response cache on the request path (RFC 9111, as a shared cache):
 * lookup before balancing, hits served without an upstream, stale entries
 * revalidated with the stored validators, cacheable misses captured and stored
 * once for every thread (src/cache/store.ts), and concurrent misses for one
 * key collapsed so one request goes upstream while the others wait for the
 * entry. Only responses with a Content-Length body (or none) are stored; a
 * chunked response passes through uncached.
 *
 * Stale entries (RFC 5861): within stale-while-revalidate one is answered at
 * once and refreshed in the background by whichever request wins its fill
 * claim (./cache-revalidate.ts); within stale-if-error (or
 * cache.staleIfErrorMs) it is kept at hand while the request goes upstream
 * and answered instead of the error when the upstream is unreachable, times
 * out, closes, or answers 500/502/503/504. A Range GET for a complete stored
 * 200 is answered 206 (or 416) from it (RFC 9110 §14).
 *
 * Every response the cache saw carries X-Cache and Cache-Status (RFC 9211).
 */
import { owned } from '../net/read-arena'
import type * as net from 'node:net'
import { writeDirect, writeSpans } from '../net/direct-write'
import { SharedCacheStore, CacheEntry } from '../cache/store'
import { CacheHook, type CacheUser } from './cache-hook'
import {
  requestCacheMode, responseFreshness, correctedInitialAgeSec, freshEnoughForRequest, staleAcceptedByRequest, conditionalMatches, varyNames,
  parseHttpDate, staleAllowed, staleUse, currentAgeMs, CacheControl, CACHE_BYPASS, CACHE_LOOKUP, STALE_NEVER, STALE_REVALIDATE,
} from '../cache/policy'
import { mergeNotModified, fieldsOfParser, FieldsView } from '../cache/stored-head'
import { CachedResponse, renderStored, renderPartial, cacheStatusHit, renderOnlyIfCached } from '../cache/render'
import { ByteRange, parseRange, ifRangeAllows, RANGE_SATISFIABLE, RANGE_UNSATISFIABLE } from '../cache/range'
import { Revalidation, revalidateInBackground } from './cache-revalidate'
import type { ErrorCode } from '../errors'
import { primaryKey, varyValues } from '../cache/key'
import { HeadView } from '../cache/head-view'
import type { HeadParser } from '../http/head-parser'
import { BODY_NONE, BODY_LENGTH } from '../http/head-parser'
import { H_AUTHORIZATION } from '../http/header-names'
import { buildStoredHead } from '../http/serialize'
import { H_CACHE_HITS, H_CACHE_MISSES } from '../shared/layout'

/** Upstream failures after which a stale-if-error entry is answered instead (RFC 5861 §4: "would result in a 500, 502, 503, or 504"). */
const STALE_IF_ERROR_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'SWY_ERR_NO_HEALTHY_UPSTREAM', 'SWY_ERR_UPSTREAM_CONNECT', 'SWY_ERR_UPSTREAM_RESET', 'SWY_ERR_UPSTREAM_PROTOCOL',
  'SWY_ERR_UPSTREAM_TIMEOUT', 'SWY_ERR_UPSTREAM_IDLE',
])

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
  /** `entry` is stale but may be answered if the upstream fails (RFC 5861 §4). */
  staleOnError = false
  readonly range = new ByteRange()
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
    this.staleOnError = false
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
      this.staleOnError = false
      if (!entry.fresh && this.mode === CACHE_LOOKUP) {
        const use = staleUse(entry.neverStale, entry.staleWhileRevalidateSec, entry.staleIfErrorSec, this.hook.config.staleIfErrorMs,
          entry.currentAgeMs - entry.freshForMs)
        if (use === STALE_REVALIDATE) {
          // RFC 5861 §3: answer at once; one background revalidation per entry across all
          // threads (the fill claim), the others (and later requests) keep getting this entry
          if (store.tryClaimFill(this.key, now, this.hook.fillTtlMs)) {
            const upstream = this.user.revalidationUpstream()
            if (upstream !== null) revalidateInBackground(this.hook, new Revalidation(this.key, upstream, this.user.parser, entry))
            else store.releaseFill(this.key)
          }
          this.hook.count(H_CACHE_HITS)
          this.serve('STALE', this.staleStatus('', 'stale-while-revalidate'))
          return 'hit'
        }
        if (!entry.neverStale && staleAcceptedByRequest(this.requestCc, entry.currentAgeMs, entry.freshForMs)) {
          // RFC 9111 §5.2.1.2: the client takes it stale, as it is; the next request without
          // max-stale revalidates it
          this.hook.count(H_CACHE_HITS)
          this.serve('STALE', this.staleStatus('', 'max-stale'))
          return 'hit'
        }
        this.staleOnError = use !== STALE_NEVER
      }
      // stale, or the client asked for revalidation: ask the upstream with our validators,
      // unless the client brings its own (then its answer is for it, not for us)
      const clientConditional = this.view.header('if-none-match') !== null || this.view.header('if-modified-since') !== null
      if ((entry.etag !== null || entry.lastModified !== null) && !clientConditional && entry.status === 200) this.revalidating = true
    } else this.fwd = entry.varyNames !== null ? 'vary-miss' : 'uri-miss'
    if (this.requestCc.onlyIfCached) {
      // RFC 9111 §5.2.1.7: the client wants a stored response or nothing, and nothing stored may be used
      // as it is (a stale one would need the upstream to revalidate it): 504
      this.hook.count(H_CACHE_MISSES)
      renderOnlyIfCached(this.isHead, this.response)
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

  /**
   * Answer from the stored entry: 304 when the client's own validators
   * match, a 206 / 416 for a single Range of a stored 200 (RFC 9110 §14.2:
   * GET only), else the entry.
   */
  private serve (xCache: string, cacheStatus: string): void {
    const e = this.entry
    const notModified = e.status === 200 && conditionalMatches(this.view, e.etag, e.lastModified)
    if (!notModified && !this.isHead && e.status === 200) {
      const range = this.view.header('range')
      if (range !== null && ifRangeAllows(this.view.header('if-range'), e.etag, e.lastModified)) {
        const r = parseRange(range, e.body.length, this.range)
        if (r === RANGE_SATISFIABLE) { renderPartial(e, this.range, xCache, cacheStatus, this.response); return }
        if (r === RANGE_UNSATISFIABLE) { renderPartial(e, null, xCache, cacheStatus, this.response); return }
      }
    }
    renderStored(e, xCache, cacheStatus, notModified, this.isHead, this.response)
  }

  /** Cache-Status of a stale answer: a hit with a negative ttl, or a forward whose failure it covers (RFC 9211 §2). */
  private staleStatus (fwdStatus: string, detail: string): string {
    const e = this.entry
    const ttl = Math.floor((e.freshForMs - e.currentAgeMs) / 1000)
    return detail !== 'stale-if-error'
      ? 'switchyard; hit; ttl=' + ttl + '; detail=' + detail
      : 'switchyard; fwd=stale' + (fwdStatus !== '' ? '; fwd-status=' + fwdStatus : '') + '; ttl=' + ttl + '; detail=' + detail
  }

  /**
   * The upstream failed before any response (unreachable, refused, reset,
   * closed on purpose, timed out): answer with the stale entry when
   * stale-if-error allows it (RFC 5861 §4). true when this.response holds it.
   */
  serveStaleOnError (code: ErrorCode): boolean {
    if (!this.staleOnError || !STALE_IF_ERROR_CODES.has(code)) return false
    this.answerStale('')
    return true
  }

  private answerStale (fwdStatus: string): CachedResponse {
    this.staleOnError = false
    this.storedHead = null
    this.release()
    const e = this.entry
    e.currentAgeMs = currentAgeMs(e.initialAgeSec, e.storedAtMs, Date.now())
    this.serve('STALE', this.staleStatus(fwdStatus, 'stale-if-error'))
    return this.response
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
    const status = res.status
    // RFC 5861 §4: an error answer with a stale-if-error entry at hand: the entry instead
    if (this.staleOnError && (status === 500 || status === 502 || status === 503 || status === 504)) return this.answerStale(String(status))
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
      // this URL stop queueing behind one another's fills, and let the waiters go now.
      // A 206 says nothing of the URL (it answered a Range), so it marks nothing.
      if (status !== 206) this.hook.markPass(this.key, now)
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
    const head = mergeNotModified(e.head, fieldsOfParser(res))
    const merged = FieldsView.ofStored(head, e.status)
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
      this.hook.commit(this.key, {
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
      }, this.filling)
      this.filling = false // the claim went with the entry
    } else this.hook.invalidate(this.key)
    this.release()
    const notModified = conditionalMatches(this.view, e.etag, e.lastModified, now)
    const ttl = Math.floor((e.freshForMs - e.currentAgeMs) / 1000)
    return renderStored(e, 'REVALIDATED', 'switchyard; fwd=stale; fwd-status=304; ttl=' + ttl + (freshFor >= 0 ? '; stored' : ''),
      notModified, this.isHead, this.response)
  }

  /** A response body's bytes as they go to the client: captured for the store (committed at onResponseEnd). */
  onResponseBody (chunk: Buffer, start: number, end: number): void {
    if (this.storedHead === null) return
    this.chunks.push(owned(chunk.subarray(start, end))) // kept past this read (read-arena.ts)
    this.capturedBytes += end - start
  }

  /**
   * What was captured of this response is not to be stored (onResponseEnd then stores nothing), and the URL is
   * marked uncacheable for a while, as for any response that cannot be stored, so requests waiting for this
   * fill go upstream together rather than one after another. (Its Cache-Status went out saying `stored`
   * with the head.) false when nothing was being captured.
   */
  dropCapture (): boolean {
    if (this.storedHead === null) return false
    this.storedHead = null
    this.chunks = []
    this.hook.markPass(this.key, Date.now())
    return true
  }

  /**
   * The response is complete (in the read that brought its last byte, so nothing waits longer): store what
   * was captured, then let waiters in. Not before: bytes behind the response (dropCapture) forbid storing it.
   */
  onResponseEnd (status: number): void {
    if (this.storedHead !== null && this.capturedBytes === this.expectedBytes) this.commit(status)
    this.storedHead = null
    this.chunks = []
    this.release()
  }

  private commit (status: number): void {
    this.hook.commit(this.key, {
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
    }, this.filling)
    this.filling = false // the claim went with the entry (released once it is stored)
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
export function renderCachedResponse (response: CachedResponse, via: string, closing: boolean, http10: boolean, extra = ''): Buffer {
  const head = cachedHead(response, via, closing, http10, extra)
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
export function writeCachedResponse (socket: net.Socket, fd: number, response: CachedResponse, via: string, closing: boolean, http10: boolean, extra = ''): number {
  const body = response.body
  if (body === null || body.length <= COPY_BODY_BYTES) {
    const out = renderCachedResponse(response, via, closing, http10, extra)
    writeDirect(socket, fd, out)
    return out.length
  }
  const head = Buffer.from(cachedHead(response, via, closing, http10, extra), 'latin1')
  writeSpans(socket, fd, head, 0, head.length, body, 0, body.length)
  return head.length + body.length
}

/** `extra`: field lines of this answer only (a request ID), never stored. */
function cachedHead (response: CachedResponse, via: string, closing: boolean, http10: boolean, extra: string): string {
  const connection = closing ? 'Connection: close\r\n' : (http10 ? 'Connection: keep-alive\r\n' : '')
  return response.head + extra + 'Via: 1.1 ' + via + '\r\n' + connection + '\r\n'
}

export { SharedCacheStore, CacheHook, type CacheUser }
