/**
 * What a cache entry is filed under (RFC 9111 §2: "the primary cache key
 * consists of the request method and target URI"; §4.1: a response with Vary
 * is further keyed by the request's values of the listed fields), and the
 * 64-bit hash the shared index files it by.
 *
 * Keys are latin1 strings (the parser hands out header values and targets as
 * latin1), so the store can keep and compare them byte for byte. Only GET (and
 * HEAD served from a GET entry) is cached, so the method is not in the key.
 *
 *   primary:  <host> SP <target>                 e.g. "example.com /a?b=1"
 *   variant:  <primary> LF <generation> LF <values>
 *
 * A primary key never holds LF (neither a host nor a target may: RFC 9112
 * §3.2, RFC 3986), so no variant key can equal a primary key; field values
 * hold no LF or NUL either (RFC 9110 §5.5), so LF separates values and NUL
 * marks an absent field unambiguously.
 */
import { fmix32 } from '../shared/hash'

/** The request headers the key needs; see policy.ts RequestView. */
export interface HeaderSource {
  header (lowerName: string): string | null
}

const ABSENT = '\x00'

/**
 * The primary key for a request to `host` (the Host field) and `target` (the
 * request-target). An absolute-form target (RFC 9112 §3.2.2) carries its own
 * authority, which wins over Host. The host is case-insensitive and the
 * default port of http is the same origin as no port (RFC 9110 §4.2.3), so
 * both are normalised; the path and query are kept byte for byte.
 */
export function primaryKey (host: string, target: string): string {
  let authority = host
  let path = target
  if (target.length > 7 && target.charCodeAt(0) !== 0x2f && target.slice(0, 7).toLowerCase() === 'http://') {
    const slash = target.indexOf('/', 7)
    authority = slash < 0 ? target.slice(7) : target.slice(7, slash)
    path = slash < 0 ? '/' : target.slice(slash)
  }
  let end = authority.length
  if (end > 3 && authority.endsWith(':80')) end -= 3
  return (end === authority.length ? authority : authority.slice(0, end)).toLowerCase() + ' ' + path
}

/**
 * The request's values of the fields a response varies on, normalised as
 * RFC 9111 §4.1 allows ("removing whitespace, combining multiple field
 * lines"): OWS around commas and at the ends is dropped. `header` must return
 * every line of a field joined with ", " for this to be exact. An absent field
 * only matches an absent field (§4.1), hence its own marker.
 */
export function varyValues (varyNames: readonly string[], req: HeaderSource): string {
  let out = ''
  for (let i = 0; i < varyNames.length; i++) {
    if (i > 0) out += '\n'
    const value = req.header(varyNames[i])
    out += value === null ? ABSENT : normaliseValue(value)
  }
  return out
}

/**
 * The key of one variant of `primary`. `generation` comes from the marker
 * stored under the primary key: purging or replacing the marker changes it,
 * which makes every older variant unreachable at once.
 */
export function variantKey (primary: string, generation: number, values: string): string {
  return primary + '\n' + (generation >>> 0).toString(36) + '\n' + values
}

function normaliseValue (value: string): string {
  let out = ''
  let pendingSpace = false
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c === 0x20 || c === 0x09) { pendingSpace = out.length > 0; continue }
    if (c === 0x2c) { out += ','; pendingSpace = false; continue }
    if (pendingSpace && out.charCodeAt(out.length - 1) !== 0x2c) out += ' '
    pendingSpace = false
    out += value[i]
  }
  return out
}

/** True when every code unit fits a byte, so the key can be stored as latin1. */
export function isLatin1 (key: string): boolean {
  for (let i = 0; i < key.length; i++) if (key.charCodeAt(i) > 0xff) return false
  return true
}

/**
 * Hash `key` into out[0] (high word, never 0: 0 marks an empty index slot)
 * and out[1] (low word: the home slot). Two independent lanes over the char
 * codes, seeded per buffer so nobody can aim URLs at one probe neighbourhood;
 * no allocation. `bits` < 64 keeps only that many bits in total, which tests
 * use to force full-hash collisions (the store then tells keys apart by their
 * stored bytes).
 */
export function hashKey (key: string, seed: number, bits: number, out: Int32Array): void {
  let a = (0x811c9dc5 ^ seed) | 0
  let b = (0x9e3779b9 + Math.imul(seed, 0x85ebca6b)) | 0
  const n = key.length
  for (let i = 0; i < n; i++) {
    const c = key.charCodeAt(i)
    a = Math.imul(a ^ c, 0x01000193)
    b = Math.imul(b ^ c, 0x5bd1e995)
    b ^= b >>> 15
  }
  a = fmix32(a ^ n)
  b = fmix32((b + n) | 0)
  if (bits < 64) {
    // keep the low `bits` of the pair: hi loses its bits first
    if (bits <= 32) { a = 0; b = bits === 32 ? b : b & ((1 << bits) - 1) } else a &= (1 << (bits - 32)) - 1
  }
  out[0] = a === 0 ? 1 : a
  out[1] = b
}
