/**
 * Cache-Control (RFC 9111 §5.2) parsed into a reusable object: one pass over
 * the char codes, no regex, no split, no strings allocated. Directive names
 * are case-insensitive (§5.2); arguments may be tokens or quoted-strings, and
 * a recipient accepts both forms even where senders should use one (§5.2).
 * Unknown directives are ignored (§5.2.3).
 */

/** Largest delta-seconds (RFC 9111 §1.2.2: a larger value is taken as 2^31). */
export const DELTA_SECONDS_MAX = 2147483648
/** Directive absent. */
export const ABSENT = -1

export class CacheControl {
  noStore = false
  /** Unqualified or qualified: this cache revalidates the whole response either way (§5.2.2.4). */
  noCache = false
  /** Unqualified or qualified: a shared cache stores neither (§5.2.2.7). */
  isPrivate = false
  isPublic = false
  mustRevalidate = false
  proxyRevalidate = false
  onlyIfCached = false
  /** Seconds, or ABSENT. An invalid value reads as 0: stale (§4.2.1). */
  maxAgeSec = ABSENT
  sMaxAgeSec = ABSENT
  minFreshSec = ABSENT
  /** §5.2.1.2: seconds of staleness the client accepts, DELTA_SECONDS_MAX without a value (any), or ABSENT. */
  maxStaleSec = ABSENT
  /** RFC 5861 §3: seconds a stale response may be served while it is revalidated in the background, or ABSENT. */
  staleWhileRevalidateSec = ABSENT
  /** RFC 5861 §4: seconds a stale response may be served when the upstream fails, or ABSENT. */
  staleIfErrorSec = ABSENT

  reset (): void {
    this.noStore = false
    this.noCache = false
    this.isPrivate = false
    this.isPublic = false
    this.mustRevalidate = false
    this.proxyRevalidate = false
    this.onlyIfCached = false
    this.maxAgeSec = ABSENT
    this.sMaxAgeSec = ABSENT
    this.minFreshSec = ABSENT
    this.maxStaleSec = ABSENT
    this.staleWhileRevalidateSec = ABSENT
    this.staleIfErrorSec = ABSENT
  }
}

/**
 * Parse `value` (every Cache-Control line joined with ", ") into `out`, which
 * is reset first. When a directive repeats, the first occurrence wins
 * (§4.2.1 allows that or treating the response as stale).
 */
export function parseCacheControl (value: string, out: CacheControl): void {
  out.reset()
  const n = value.length
  let i = 0
  while (i < n) {
    // skip separators and OWS between directives
    let c = value.charCodeAt(i)
    if (c === 0x2c || c === 0x20 || c === 0x09) { i++; continue }
    const nameStart = i
    while (i < n) {
      c = value.charCodeAt(i)
      if (c === 0x3d || c === 0x2c || c === 0x20 || c === 0x09) break
      i++
    }
    const nameEnd = i
    while (i < n && (value.charCodeAt(i) === 0x20 || value.charCodeAt(i) === 0x09)) i++
    // argument: token or quoted-string; numeric ones are parsed in place
    let seconds = ABSENT
    if (i < n && value.charCodeAt(i) === 0x3d) {
      i++
      while (i < n && (value.charCodeAt(i) === 0x20 || value.charCodeAt(i) === 0x09)) i++
      let argStart = i
      let argEnd: number
      if (i < n && value.charCodeAt(i) === 0x22) {
        argStart = ++i
        while (i < n && value.charCodeAt(i) !== 0x22) i += value.charCodeAt(i) === 0x5c ? 2 : 1
        argEnd = Math.min(i, n)
        i++ // closing quote
      } else {
        while (i < n && value.charCodeAt(i) !== 0x2c && value.charCodeAt(i) !== 0x20 && value.charCodeAt(i) !== 0x09) i++
        argEnd = i
      }
      seconds = deltaSeconds(value, argStart, argEnd)
    }
    // anything up to the next comma is not ours to understand
    while (i < n && value.charCodeAt(i) !== 0x2c) i++
    apply(value, nameStart, nameEnd, seconds, out)
  }
}

function apply (v: string, s: number, e: number, seconds: number, out: CacheControl): void {
  switch (e - s) {
    case 6:
      if (nameIs(v, s, 'public')) out.isPublic = true
      break
    case 7:
      if (nameIs(v, s, 'max-age')) { if (out.maxAgeSec === ABSENT) out.maxAgeSec = seconds < 0 ? 0 : seconds } else if (nameIs(v, s, 'private')) out.isPrivate = true
      break
    case 8:
      if (nameIs(v, s, 'no-store')) out.noStore = true
      else if (nameIs(v, s, 'no-cache')) out.noCache = true
      else if (nameIs(v, s, 's-maxage')) { if (out.sMaxAgeSec === ABSENT) out.sMaxAgeSec = seconds < 0 ? 0 : seconds }
      break
    case 9:
      if (nameIs(v, s, 'min-fresh')) {
        // a min-fresh we cannot read asks for nothing
        if (out.minFreshSec === ABSENT && seconds >= 0) out.minFreshSec = seconds
      } else if (nameIs(v, s, 'max-stale')) {
        // alone it accepts any staleness (§5.2.1.2); one we cannot read accepts none
        if (out.maxStaleSec === ABSENT && seconds !== -2) out.maxStaleSec = seconds === ABSENT ? DELTA_SECONDS_MAX : seconds
      }
      break
    case 14:
      if (nameIs(v, s, 'only-if-cached')) out.onlyIfCached = true
      // an unreadable stale-if-error allows nothing (RFC 5861 §4)
      else if (nameIs(v, s, 'stale-if-error')) { if (out.staleIfErrorSec === ABSENT && seconds >= 0) out.staleIfErrorSec = seconds }
      break
    case 15:
      if (nameIs(v, s, 'must-revalidate')) out.mustRevalidate = true
      break
    case 16:
      if (nameIs(v, s, 'proxy-revalidate')) out.proxyRevalidate = true
      break
    case 22:
      if (nameIs(v, s, 'stale-while-revalidate')) { if (out.staleWhileRevalidateSec === ABSENT && seconds >= 0) out.staleWhileRevalidateSec = seconds }
      break
  }
}

/** Case-insensitive compare of v[s, s + lower.length) with a lower-case name (length already checked). */
function nameIs (v: string, s: number, lower: string): boolean {
  for (let j = 0; j < lower.length; j++) {
    let c = v.charCodeAt(s + j)
    if (c >= 0x41 && c <= 0x5a) c |= 0x20
    if (c !== lower.charCodeAt(j)) return false
  }
  return true
}

/** delta-seconds (§1.2.2): 1*DIGIT, capped at 2^31; -2 when not a number, ABSENT when empty. */
function deltaSeconds (v: string, s: number, e: number): number {
  if (s >= e) return -2
  let n = 0
  for (let j = s; j < e; j++) {
    const d = v.charCodeAt(j) - 0x30
    if (!(d >= 0 && d <= 9)) return -2
    n = n * 10 + d
    if (n > DELTA_SECONDS_MAX) n = DELTA_SECONDS_MAX
  }
  return n
}
