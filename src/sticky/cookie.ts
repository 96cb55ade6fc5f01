/**
 * Finding one cookie in a Cookie header without regex or split: the scan
 * returns string positions, and only findCookie() makes a substring.
 *
 * RFC 6265 §4.2.1: cookie-string = cookie-pair *( ";" SP cookie-pair ),
 * cookie-pair = cookie-name "=" cookie-value, and a cookie-value may be wrapped
 * in DQUOTEs (§4.1.1), which are not part of the value. Parsing is lenient the
 * way servers are in practice (§5.4 user agents are not all strict): optional
 * whitespace around pairs, names and values is skipped, a pair without "=" is
 * ignored. Names compare case-sensitively. A name may appear more than once
 * (cookies set for different paths, §5.4 step 2): callers can continue the scan
 * from `cookieScan.next` to see each occurrence.
 */

/** Where the last successful locateCookie() found its value (one per thread: parsing is synchronous). */
export const cookieScan = {
  /** Value start (after any opening quote). */
  start: -1,
  /** Value end, exclusive (before any closing quote). */
  end: -1,
  /** Where to resume scanning for a later occurrence. */
  next: -1,
}

const DQUOTE = 0x22

/**
 * Find the cookie `name` in `header` from position `from`. Returns the value's
 * start (also in cookieScan, with its end) or -1.
 */
export function locateCookie (header: string, name: string, from: number): number {
  const length = header.length
  let i = from
  while (i < length) {
    while (i < length && isOws(header.charCodeAt(i))) i++
    let pairEnd = header.indexOf(';', i)
    if (pairEnd === -1) pairEnd = length
    const equals = header.indexOf('=', i)
    if (equals !== -1 && equals < pairEnd) {
      let nameEnd = equals
      while (nameEnd > i && isOws(header.charCodeAt(nameEnd - 1))) nameEnd--
      if (nameEnd - i === name.length && header.startsWith(name, i)) {
        let start = equals + 1
        let end = pairEnd
        while (start < end && isOws(header.charCodeAt(start))) start++
        while (end > start && isOws(header.charCodeAt(end - 1))) end--
        if (end - start >= 2 && header.charCodeAt(start) === DQUOTE && header.charCodeAt(end - 1) === DQUOTE) {
          start++
          end--
        }
        cookieScan.start = start
        cookieScan.end = end
        cookieScan.next = pairEnd + 1
        return start
      }
    }
    i = pairEnd + 1
  }
  return -1
}

/** The value of the first cookie called `name` in a Cookie header, or null. */
export function findCookie (cookieHeader: string, name: string): string | null {
  if (locateCookie(cookieHeader, name, 0) === -1) return null
  return cookieHeader.slice(cookieScan.start, cookieScan.end)
}

function isOws (c: number): boolean {
  return c === 0x20 || c === 0x09
}
