/**
 * What a *shared* cache may store and reuse (RFC 9111), as pure functions
 * over a request or response view. The store (./store) knows nothing of HTTP
 * semantics; this module knows nothing of memory.
 *
 * Decisions taken here, beyond the RFC's MUSTs:
 * - No heuristic freshness (RFC 9111 §4.2.2 allows it, we don't): a response
 *   without s-maxage, max-age or Expires is stored only when its status is
 *   cacheable by default (RFC 9110 §15.1) or it is marked public, and then
 *   with lifetime 0 (every use is revalidated), which is worth storing only
 *   when it carries a validator (ETag or Last-Modified).
 * - Stale responses are served only as RFC 5861 allows (stale-while-revalidate,
 *   stale-if-error, or the configured stale-if-error default) or a request's
 *   max-stale allows (RFC 9111 §5.2.1.2), and never when mustRevalidate() or
 *   no-cache forbids it (RFC 9111 §4.2.4); see staleAllowed().
 * - As a CDN-like shared cache we obey targeted fields (RFC 9213): the
 *   configured one (cache.targetedField), then CDN-Cache-Control; the first
 *   valid one replaces Cache-Control and Expires (responseCacheControl).
 * - Responses with Set-Cookie are never stored (RFC 9111 §7.3 leaves it to
 *   the cache; one user's cookie must not be replayed to another).
 * - Qualified no-cache="f" / private="f" are treated as unqualified (§5.2.2.4
 *   and §5.2.2.7 allow it): revalidate always / never store.
 * - Only 2xx..5xx final responses other than 206 (no range support) and 304
 *   (it updates an entry, it is not one) are candidates.
 *
 * Views: `header(lowerName)` must return every line of a field joined with
 * ", " (RFC 9110 §5.3) for the list-valued fields read here: Cache-Control,
 * Pragma, Vary, If-None-Match. For the rest (Authorization, Date, Expires,
 * Age, ETag, Last-Modified, If-Modified-Since, Set-Cookie) the first line is
 * enough. ./head-view adapts a HeadParser.
 */
import { CacheControl, parseCacheControl, ABSENT, DELTA_SECONDS_MAX } from './cache-control'
import { isValidDictionary } from './structured-field'
import { parseHttpDate } from './http-date'

export { CacheControl, parseCacheControl } from './cache-control'
export { parseHttpDate } from './http-date'

export interface RequestView {
  method: string
  header (lowerName: string): string | null
}

export interface ResponseView {
  status: number
  header (lowerName: string): string | null
}

/** Forward to the upstream, neither look up nor store. */
export const CACHE_BYPASS = 0
/** Serve a fresh stored response; otherwise fetch (conditionally if one is stored) and store. */
export const CACHE_LOOKUP = 1
/** A stored response must be validated with the upstream before it is used (§5.2.1.4, §5.2.1.1 max-age=0). */
export const CACHE_REVALIDATE = 2

/** Status codes cacheable by default (RFC 9110 §15.1): storable without explicit freshness. */
const DEFAULT_CACHEABLE = (() => {
  const t = new Uint8Array(600)
  for (const s of [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]) t[s] = 1
  return t
})()

// Scratch parse targets: each thread runs one call at a time to completion.
const requestScratch = new CacheControl()
const responseScratch = new CacheControl()

/**
 * How a request may use the cache. `cc` (optional) receives the request's
 * Cache-Control so the caller can check max-age / min-fresh / only-if-cached
 * later (freshEnoughForRequest) without parsing again.
 */
export function requestCacheMode (req: RequestView, cacheAuthorized: boolean, cc: CacheControl = requestScratch): number {
  const method = req.method
  // RFC 9111 §2: only methods whose responses we understand how to store; GET
  // entries also answer HEAD (RFC 9110 §9.3.2)
  if (method !== 'GET' && method !== 'HEAD') { cc.reset(); return CACHE_BYPASS }
  const value = req.header('cache-control')
  if (value !== null) parseCacheControl(value, cc)
  else cc.reset()
  // RFC 9111 §3.5: a shared cache MUST NOT use a response to a request with
  // Authorization unless it says so; we don't even look unless configured to
  if (!cacheAuthorized && req.header('authorization') !== null) return CACHE_BYPASS
  // §5.2.1.5: no part of this request or its response may be stored
  if (cc.noStore) return CACHE_BYPASS
  if (cc.noCache || cc.maxAgeSec === 0) return CACHE_REVALIDATE
  // §5.4: Pragma: no-cache counts only when there is no Cache-Control
  if (value === null) {
    const pragma = req.header('pragma')
    if (pragma !== null && hasToken(pragma, 'no-cache')) return CACHE_REVALIDATE
  }
  return CACHE_LOOKUP
}

/**
 * May this response be stored, and for how long is it fresh? -1 = do not
 * store; otherwise the freshness lifetime in ms (RFC 9111 §4.2.1), 0 meaning
 * storable but to be revalidated on every use. Ages are not subtracted here:
 * store correctedInitialAgeSec() with the entry and compare at reuse time
 * (remainingFreshMs). `nowMs` is the time the response was received.
 *
 * Only for responses to GET: a response to HEAD has no body to store.
 */
export function responseFreshness (res: ResponseView, requestCacheMode: number, requestHasAuthorization: boolean,
  cacheAuthorized: boolean, nowMs: number, cc: CacheControl = responseScratch, targetedField = ''): number {
  if (requestCacheMode === CACHE_BYPASS) { cc.reset(); return -1 }
  const status = res.status
  const targeted = responseCacheControl(res, cc, targetedField)
  if (status < 200 || status > 599 || status === 206 || status === 304) return -1
  // §5.2.2.5 no-store; §5.2.2.7 a shared cache MUST NOT store a private response
  if (cc.noStore || cc.isPrivate) return -1
  if (res.header('set-cookie') !== null) return -1
  // §4.1: Vary: * never matches, so storing it is pointless
  const vary = res.header('vary')
  if (vary !== null && hasToken(vary, '*')) return -1
  // §3.5: a response to an authenticated request only when it says a shared cache may
  if (requestHasAuthorization && (!cacheAuthorized || !(cc.isPublic || cc.sMaxAgeSec !== ABSENT || cc.mustRevalidate))) return -1

  const dateMs = receivedDateMs(res, nowMs)
  let lifetimeMs: number
  // §4.2.1: s-maxage (shared caches) over max-age over Expires - Date
  if (cc.sMaxAgeSec !== ABSENT) lifetimeMs = cc.sMaxAgeSec * 1000
  else if (cc.maxAgeSec !== ABSENT) lifetimeMs = cc.maxAgeSec * 1000
  else {
    // RFC 9213 §2.1: a targeted field in effect makes the cache ignore Expires too
    const expires = targeted ? null : res.header('expires')
    if (expires !== null) {
      const expiresMs = parseHttpDate(expires, nowMs)
      // §5.3: an invalid Expires ("0" especially) is in the past
      lifetimeMs = Number.isNaN(expiresMs) ? 0 : Math.max(0, expiresMs - dateMs)
    } else {
      // no explicit freshness and no heuristics: a validator-only entry, if allowed at all (§3)
      if (status >= 600 || (DEFAULT_CACHEABLE[status] === 0 && !cc.isPublic)) return -1
      lifetimeMs = 0
    }
  }
  // §5.2.2.4: no-cache: store, but validate before every reuse
  if (cc.noCache) lifetimeMs = 0
  const hasValidator = res.header('etag') !== null || res.header('last-modified') !== null
  if (!hasValidator) {
    // stale on arrival and nothing to revalidate with: useless
    const ageAtReceiptMs = Math.max(ageHeaderSec(res) * 1000, nowMs - dateMs)
    if (lifetimeMs <= ageAtReceiptMs) return -1
  }
  return lifetimeMs
}

/**
 * The response's caching directives into `cc` (reset first). RFC 9213 §2.1: a
 * cache with a target list (here: `targetedField` when configured, lower-case,
 * then CDN-Cache-Control) uses the first listed field with a valid, non-empty
 * value (a Structured Fields Dictionary, RFC 8941 §3.2) and ignores
 * Cache-Control and Expires; an invalid one is as if absent. true when a
 * targeted field was used. The targeted field itself is passed on unchanged.
 */
export function responseCacheControl (res: ResponseView, cc: CacheControl, targetedField = ''): boolean {
  if (targetedField !== '' && useTargeted(res.header(targetedField), cc)) return true
  if (useTargeted(res.header('cdn-cache-control'), cc)) return true
  const value = res.header('cache-control')
  if (value !== null) parseCacheControl(value, cc)
  else cc.reset()
  return false
}

function useTargeted (value: string | null, cc: CacheControl): boolean {
  if (value === null || !isValidDictionary(value)) return false
  parseCacheControl(value, cc)
  return true
}

/**
 * corrected_initial_age (RFC 9111 §4.2.3), in whole seconds rounded down, for a
 * response requested at `requestTimeMs` and received at `responseTimeMs`. Down,
 * because HTTP dates have whole-second resolution: the sub-second part of "now
 * minus Date" is an artefact of truncating the Date, and rounding it up would
 * make every response a second old on arrival (max-age=1 stale at once).
 */
export function correctedInitialAgeSec (res: ResponseView, requestTimeMs: number, responseTimeMs: number): number {
  const dateMs = receivedDateMs(res, responseTimeMs)
  // an HTTP date names a whole second: the response was generated somewhere in
  // [date, date + 1 s), so take the latest instant (else a response crossing a
  // second boundary in flight would look a second old)
  const apparentAgeMs = Math.max(0, responseTimeMs - dateMs - 999)
  const responseDelayMs = Math.max(0, responseTimeMs - requestTimeMs)
  const correctedAgeValueMs = ageHeaderSec(res) * 1000 + responseDelayMs
  return Math.min(Math.floor(Math.max(apparentAgeMs, correctedAgeValueMs) / 1000), 2147483647)
}

/** current_age (RFC 9111 §4.2.3): corrected_initial_age + resident_time, ms. */
export function currentAgeMs (initialAgeSec: number, storedAtMs: number, nowMs: number): number {
  return initialAgeSec * 1000 + Math.max(0, nowMs - storedAtMs)
}

/** freshness_lifetime - current_age (RFC 9111 §4.2): > 0 while fresh. */
export function remainingFreshMs (freshForMs: number, initialAgeSec: number, storedAtMs: number, nowMs: number): number {
  return freshForMs - currentAgeMs(initialAgeSec, storedAtMs, nowMs)
}

/**
 * A fresh entry may still be too old for this request: max-age (§5.2.1.1,
 * "unwilling to accept a response whose age is greater") and min-fresh
 * (§5.2.1.3, "wants a response that will still be fresh for at least").
 * `cc` is the one requestCacheMode filled.
 */
export function freshEnoughForRequest (cc: CacheControl, ageMs: number, freshForMs: number): boolean {
  if (cc.maxAgeSec !== ABSENT && ageMs > cc.maxAgeSec * 1000) return false
  if (cc.minFreshSec !== ABSENT && freshForMs - ageMs < cc.minFreshSec * 1000) return false
  return true
}

/**
 * A stale entry the client takes as it is: its max-stale (§5.2.1.2) covers how
 * long the entry has been stale, counted in whole seconds as the Age it will
 * read, and its max-age still holds (min-fresh never does for a stale entry).
 * The caller checks first that the entry may be served stale at all
 * (staleAllowed() at store time).
 */
export function staleAcceptedByRequest (cc: CacheControl, ageMs: number, freshForMs: number): boolean {
  if (cc.maxStaleSec === ABSENT || cc.minFreshSec !== ABSENT || ageMs < freshForMs) return false
  if (cc.maxAgeSec !== ABSENT && ageMs > cc.maxAgeSec * 1000) return false
  return Math.floor((ageMs - freshForMs) / 1000) <= cc.maxStaleSec
}

/**
 * must-revalidate (§5.2.2.2), proxy-revalidate (§5.2.2.8) or s-maxage, which
 * implies proxy-revalidate (§5.2.2.10): once stale, the response must not be
 * used without successful validation; if the upstream cannot be reached the
 * answer is an error, not the stale response.
 */
export function mustRevalidate (cc: CacheControl): boolean {
  return cc.mustRevalidate || cc.proxyRevalidate || cc.sMaxAgeSec !== ABSENT
}

/**
 * May this response ever be served stale? RFC 9111 §4.2.4: "A cache MUST NOT
 * generate a stale response if it is prohibited by an explicit in-protocol
 * directive (e.g., by a no-cache response directive, a must-revalidate
 * response directive, or an applicable s-maxage or proxy-revalidate response
 * directive)". stale-while-revalidate / stale-if-error do not lift that.
 */
export function staleAllowed (cc: CacheControl): boolean {
  return !cc.noCache && !mustRevalidate(cc)
}

/**
 * How an entry `staleMs` past its freshness may be used when stale (RFC 5861):
 * STALE_REVALIDATE when within stale-while-revalidate (serve it now, refresh
 * in the background), else STALE_IF_ERROR when within stale-if-error (or the
 * configured default `defaultIfErrorMs` when the response names none: serve it
 * only if the upstream fails), else STALE_NEVER. Never anything but
 * STALE_NEVER when `neverStale` (staleAllowed() was false at store time).
 */
export function staleUse (neverStale: boolean, swrSec: number, sieSec: number, defaultIfErrorMs: number, staleMs: number): number {
  if (neverStale || staleMs < 0) return STALE_NEVER
  if (swrSec !== ABSENT && staleMs <= swrSec * 1000) return STALE_REVALIDATE
  const ifErrorMs = sieSec !== ABSENT ? sieSec * 1000 : defaultIfErrorMs
  return staleMs <= ifErrorMs ? STALE_IF_ERROR : STALE_NEVER
}

export const STALE_NEVER = 0
export const STALE_IF_ERROR = 1
export const STALE_REVALIDATE = 2

/**
 * The field names a response varies on (RFC 9111 §4.1), lower-cased, in the
 * order given: null when there is no Vary (or it lists nothing), ['*'] when
 * it holds "*" (never stored).
 */
export function varyNames (res: ResponseView): string[] | null {
  const value = res.header('vary')
  if (value === null) return null
  let names: string[] | null = null
  const n = value.length
  let i = 0
  while (i < n) {
    while (i < n && isListSeparator(value.charCodeAt(i))) i++
    const start = i
    while (i < n && !isListSeparator(value.charCodeAt(i))) i++
    if (i === start) break
    const name = value.slice(start, i).toLowerCase()
    if (name === '*') return ['*']
    if (names === null) names = [name]
    else if (!names.includes(name)) names.push(name)
  }
  return names
}

/**
 * Would the origin answer this request 304 given the stored validators?
 * (RFC 9110 §13.2.2: If-None-Match first; If-Modified-Since only when there
 * is no If-None-Match (§13.1.3), only for GET/HEAD, and only with a valid date.)
 * If-None-Match uses the weak comparison (§8.8.3.2, §13.1.2); "*" matches any
 * stored representation. The caller answers 304 only for a stored 200.
 */
export function conditionalMatches (req: RequestView, etag: string | null, lastModified: string | null, nowMs: number = Date.now()): boolean {
  const noneMatch = req.header('if-none-match')
  if (noneMatch !== null) return noneMatchHits(noneMatch, etag)
  if (req.method !== 'GET' && req.method !== 'HEAD') return false
  const since = req.header('if-modified-since')
  if (since === null || lastModified === null) return false
  // RFC 9110 §5.6.7: a two-digit rfc850 year is read against the current time
  const sinceMs = parseHttpDate(since, nowMs)
  const modifiedMs = parseHttpDate(lastModified, nowMs)
  // NaN compares false: an invalid date is ignored (§13.1.3)
  return modifiedMs <= sinceMs
}

// ---- helpers -------------------------------------------------------------------

function noneMatchHits (list: string, etag: string | null): boolean {
  const n = list.length
  let i = 0
  while (i < n && isOws(list.charCodeAt(i))) i++
  if (i < n && list.charCodeAt(i) === 0x2a) return true // "*"
  if (etag === null) return false
  // the stored tag's opaque part, quotes included: weak comparison ignores W/
  const tagStart = etag.startsWith('W/') ? 2 : 0
  const tagLength = etag.length - tagStart
  while (i < n) {
    const c = list.charCodeAt(i)
    if (c === 0x2c || isOws(c)) { i++; continue }
    if (c === 0x57 && list.charCodeAt(i + 1) === 0x2f) i += 2 // W/
    if (list.charCodeAt(i) !== 0x22) { while (i < n && list.charCodeAt(i) !== 0x2c) i++; continue }
    const start = i
    const close = list.indexOf('"', i + 1)
    if (close < 0) return false
    i = close + 1
    if (i - start === tagLength && sameChars(list, start, etag, tagStart, tagLength)) return true
  }
  return false
}

function sameChars (a: string, aStart: number, b: string, bStart: number, length: number): boolean {
  for (let j = 0; j < length; j++) if (a.charCodeAt(aStart + j) !== b.charCodeAt(bStart + j)) return false
  return true
}

/** The response's Date, or its receipt time when absent or invalid (RFC 9110 §6.6.1). */
function receivedDateMs (res: ResponseView, receivedMs: number): number {
  const date = res.header('date')
  if (date === null) return receivedMs
  const ms = parseHttpDate(date, receivedMs)
  return Number.isNaN(ms) ? receivedMs : ms
}

/**
 * The Age a response carries, in seconds: 0 when absent; when present but
 * without any valid value, DELTA_SECONDS_MAX, so the response is stale (we
 * cannot tell how old it is, and an unreadable age must not make it fresh).
 */
function ageHeaderSec (res: ResponseView): number {
  const value = res.header('age')
  if (value === null) return 0
  const n = parseAge(value)
  return n < 0 ? DELTA_SECONDS_MAX : n
}

/**
 * Age (RFC 9111 §5.1: `Age = delta-seconds`, §1.2.2: 1*DIGIT, capped at
 * 2^31) from a field value in which several lines arrive joined by ", "
 * (RFC 9110 §5.3), or sent as a list (`Age: 7200, 0`). Age is a singleton, so
 * the first valid member counts: 7200 in both cases, never the joined text
 * read as 0. A member with anything but digits and surrounding whitespace is
 * invalid (`7200;foo=bar`, `7200.0`, `-1`, `abc`). ABSENT when no member is valid.
 */
export function parseAge (value: string): number {
  const n = value.length
  let i = 0
  while (i < n) {
    while (i < n && isOws(value.charCodeAt(i))) i++
    let age = 0
    let digits = 0
    let valid = true
    while (i < n) {
      const c = value.charCodeAt(i)
      if (c === 0x2c) break
      const d = c - 0x30
      if (d >= 0 && d <= 9 && valid) {
        if (digits > 0 && isOws(value.charCodeAt(i - 1))) valid = false // "72 00"
        age = Math.min(age * 10 + d, DELTA_SECONDS_MAX)
        digits++
      } else if (!isOws(c)) valid = false
      i++
    }
    if (valid && digits > 0) return age
    i++ // past the comma
  }
  return ABSENT
}

function hasToken (list: string, lowerToken: string): boolean {
  const n = list.length
  const m = lowerToken.length
  let i = 0
  while (i < n) {
    while (i < n && isListSeparator(list.charCodeAt(i))) i++
    const start = i
    while (i < n && !isListSeparator(list.charCodeAt(i))) i++
    if (i - start !== m) continue
    let same = true
    for (let j = 0; j < m; j++) {
      let c = list.charCodeAt(start + j)
      if (c >= 0x41 && c <= 0x5a) c |= 0x20
      if (c !== lowerToken.charCodeAt(j)) { same = false; break }
    }
    if (same) return true
  }
  return false
}

function isOws (c: number): boolean {
  return c === 0x20 || c === 0x09
}

function isListSeparator (c: number): boolean {
  return c === 0x2c || c === 0x20 || c === 0x09
}
