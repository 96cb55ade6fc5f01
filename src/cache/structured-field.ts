/**
 * Is a field value a valid Structured Fields Dictionary (RFC 8941 §3.2)? The
 * targeted cache-control fields (RFC 9213 §2.1: CDN-Cache-Control and the
 * like) are dictionaries, and "a cache that encounters a field with an invalid
 * value ... MUST ignore" it and fall back to the next field on its list. Only
 * validity is decided here; the directives are then read by the Cache-Control
 * parser, which accepts a superset of this syntax.
 *
 *   sf-dictionary  = dict-member *( OWS "," OWS dict-member )
 *   dict-member    = member-key ( parameters / ( "=" member-value ))
 *   member-key     = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )
 *   member-value   = sf-item / inner-list
 *   parameters     = *( ";" *SP param-key [ "=" bare-item ] )
 *   bare-item      = sf-integer / sf-decimal / sf-string / sf-token / sf-binary / sf-boolean
 *
 * An empty value is not a valid non-empty dictionary (§2.1 asks for "a valid,
 * non-empty value"). One pass over the char codes, no allocation.
 */

let at = 0

export function isValidDictionary (value: string): boolean {
  const n = value.length
  at = 0
  skipSp(value, n) // RFC 8941 §4.2: leading and trailing SP are discarded
  let end = n
  while (end > at && value.charCodeAt(end - 1) === 0x20) end--
  if (at >= end) return false
  for (;;) {
    if (!key(value, end)) return false
    if (at < end && value.charCodeAt(at) === 0x3d) {
      at++
      if (at < end && value.charCodeAt(at) === 0x28) { if (!innerList(value, end)) return false } else if (!bareItem(value, end)) return false
    }
    if (!parameters(value, end)) return false
    skipOws(value, end)
    if (at >= end) return true
    if (value.charCodeAt(at) !== 0x2c) return false
    at++
    skipOws(value, end)
    if (at >= end) return false // a trailing comma
  }
}

function key (v: string, end: number): boolean {
  if (at >= end) return false
  const c = v.charCodeAt(at)
  if (!((c >= 0x61 && c <= 0x7a) || c === 0x2a)) return false
  at++
  while (at < end) {
    const k = v.charCodeAt(at)
    if ((k >= 0x61 && k <= 0x7a) || (k >= 0x30 && k <= 0x39) || k === 0x5f || k === 0x2d || k === 0x2e || k === 0x2a) at++
    else break
  }
  return true
}

function parameters (v: string, end: number): boolean {
  while (at < end && v.charCodeAt(at) === 0x3b) {
    at++
    skipSp(v, end)
    if (!key(v, end)) return false
    if (at < end && v.charCodeAt(at) === 0x3d) {
      at++
      if (!bareItem(v, end)) return false
    }
  }
  return true
}

function innerList (v: string, end: number): boolean {
  at++ // "("
  for (;;) {
    skipSp(v, end)
    if (at >= end) return false
    if (v.charCodeAt(at) === 0x29) { at++; return true }
    if (!bareItem(v, end) || !parameters(v, end)) return false
    if (at < end && v.charCodeAt(at) !== 0x20 && v.charCodeAt(at) !== 0x29) return false
  }
}

function bareItem (v: string, end: number): boolean {
  if (at >= end) return false
  const c = v.charCodeAt(at)
  if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return number(v, end)
  if (c === 0x22) return string(v, end)
  if (c === 0x3f) { // ?0 / ?1
    const b = v.charCodeAt(at + 1)
    if (at + 1 < end && (b === 0x30 || b === 0x31)) { at += 2; return true }
    return false
  }
  if (c === 0x3a) { // :base64:
    at++
    while (at < end && v.charCodeAt(at) !== 0x3a) {
      const b = v.charCodeAt(at)
      if (!((b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2b || b === 0x2f || b === 0x3d)) return false
      at++
    }
    if (at >= end) return false
    at++
    return true
  }
  if ((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2a) { // token
    at++
    while (at < end && (isTchar(v.charCodeAt(at)) || v.charCodeAt(at) === 0x3a || v.charCodeAt(at) === 0x2f)) at++
    return true
  }
  return false
}

/** sf-integer (up to 15 digits) or sf-decimal (12 + 3 digits). */
function number (v: string, end: number): boolean {
  if (v.charCodeAt(at) === 0x2d) at++
  let intDigits = 0
  while (at < end && isDigit(v.charCodeAt(at))) { at++; intDigits++ }
  if (intDigits === 0) return false
  if (at < end && v.charCodeAt(at) === 0x2e) {
    if (intDigits > 12) return false
    at++
    let frac = 0
    while (at < end && isDigit(v.charCodeAt(at))) { at++; frac++ }
    return frac >= 1 && frac <= 3
  }
  return intDigits <= 15
}

function string (v: string, end: number): boolean {
  at++
  while (at < end) {
    const c = v.charCodeAt(at)
    if (c === 0x5c) {
      const e = v.charCodeAt(at + 1)
      if (at + 1 >= end || (e !== 0x22 && e !== 0x5c)) return false
      at += 2
      continue
    }
    if (c === 0x22) { at++; return true }
    if (c < 0x20 || c > 0x7e) return false
    at++
  }
  return false
}

function skipSp (v: string, end: number): void {
  while (at < end && v.charCodeAt(at) === 0x20) at++
}

function skipOws (v: string, end: number): void {
  while (at < end && (v.charCodeAt(at) === 0x20 || v.charCodeAt(at) === 0x09)) at++
}

function isDigit (c: number): boolean {
  return c >= 0x30 && c <= 0x39
}

/** RFC 9110 §5.6.2 tchar. */
function isTchar (c: number): boolean {
  if ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)) return true
  switch (c) {
    case 0x21: case 0x23: case 0x24: case 0x25: case 0x26: case 0x27: case 0x2a: case 0x2b:
    case 0x2d: case 0x2e: case 0x5e: case 0x5f: case 0x60: case 0x7c: case 0x7e:
      return true
  }
  return false
}
