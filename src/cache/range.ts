/**
 * A single byte range of a stored response (RFC 9110 §14). The cache answers
 * a `Range: bytes=…` GET for a complete stored 200 with a 206 of one range,
 * or a 416 when no range can be satisfied; it ignores (answers the full 200)
 * what it does not serve: other range units, several ranges (RFC 9110 §14.2:
 * a server MAY ignore Range, and MAY answer a multi-range request with the
 * whole representation), syntax errors, and an If-Range that does not match
 * (§13.1.5).
 */

/** parseRange results. */
export const RANGE_IGNORE = 0
export const RANGE_SATISFIABLE = 1
export const RANGE_UNSATISFIABLE = 2

/** The range parseRange chose: first and last byte, inclusive. */
export class ByteRange {
  first = 0
  last = 0
}

/**
 * `value` (the Range field) against a representation of `length` bytes.
 *
 *   ranges-specifier = range-unit "=" range-set            (§14.1.1)
 *   int-range        = first-pos "-" [ last-pos ]
 *   suffix-range     = "-" suffix-length
 *
 * §14.1.1: a last-pos past the end is the end; a first-pos at or past the end
 * is unsatisfiable, as is a suffix-length of 0 (§14.1.2). first > last is a
 * syntax error (ignored).
 */
export function parseRange (value: string, length: number, out: ByteRange): number {
  let i = 0
  const n = value.length
  while (i < n && isOws(value.charCodeAt(i))) i++
  // the unit is case-insensitive (§14.1)
  if (n - i < 6 || value.slice(i, i + 6).toLowerCase() !== 'bytes=') return RANGE_IGNORE
  i += 6
  let end = n
  while (end > i && isOws(value.charCodeAt(end - 1))) end--
  if (value.indexOf(',', i) >= 0) return RANGE_IGNORE // several ranges: the whole 200
  while (i < end && isOws(value.charCodeAt(i))) i++
  const dash = value.indexOf('-', i)
  if (dash < 0 || dash >= end) return RANGE_IGNORE
  const first = digitsOf(value, i, trimEnd(value, i, dash))
  const last = digitsOf(value, skipOws(value, dash + 1, end), end)
  if (first === -2 || last === -2) return RANGE_IGNORE
  if (first === -1) {
    // suffix-range: the last `last` bytes
    if (last === -1) return RANGE_IGNORE
    if (last === 0 || length === 0) return RANGE_UNSATISFIABLE
    out.first = Math.max(0, length - last)
    out.last = length - 1
    return RANGE_SATISFIABLE
  }
  if (last !== -1 && last < first) return RANGE_IGNORE
  if (first >= length) return RANGE_UNSATISFIABLE
  out.first = first
  out.last = last === -1 ? length - 1 : Math.min(last, length - 1)
  return RANGE_SATISFIABLE
}

/**
 * If-Range (RFC 9110 §13.1.5): the range applies only when the validator
 * matches the stored one: an entity-tag by strong comparison (a weak stored
 * or given tag never matches), a date only when it is exactly the stored
 * Last-Modified. Absent: the range applies.
 */
export function ifRangeAllows (ifRange: string | null, etag: string | null, lastModified: string | null): boolean {
  if (ifRange === null) return true
  const value = ifRange.trim()
  if (value.startsWith('"') || value.startsWith('W/')) {
    return etag !== null && !etag.startsWith('W/') && !value.startsWith('W/') && value === etag
  }
  return lastModified !== null && value === lastModified.trim()
}

/** Digits in v[s, e): -1 when empty, -2 when not all digits (or beyond 2^53). */
function digitsOf (v: string, s: number, e: number): number {
  if (s >= e) return -1
  let n = 0
  for (let j = s; j < e; j++) {
    const d = v.charCodeAt(j) - 0x30
    if (!(d >= 0 && d <= 9)) return -2
    n = n * 10 + d
    if (n > Number.MAX_SAFE_INTEGER) return -2
  }
  return n
}

function trimEnd (v: string, s: number, e: number): number {
  while (e > s && isOws(v.charCodeAt(e - 1))) e--
  return e
}

function skipOws (v: string, s: number, e: number): number {
  while (s < e && isOws(v.charCodeAt(s))) s++
  return s
}

function isOws (c: number): boolean {
  return c === 0x20 || c === 0x09
}
