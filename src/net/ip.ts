/**
 * Client-address matching without allocating per request: the address is
 * parsed into a scratch buffer the caller owns and compared with ranges parsed
 * once at config time (./cidr parseCidr). Used on the data path by the
 * firewall's clientCidr rules and by CidrSet (trusted proxies).
 *
 * Same answers as ./cidr ipToBytes (the config-time parser, built on Node's
 * isIP checks): IPv4-mapped IPv6 (::ffff:a.b.c.d, how Node reports
 * IPv4 clients on a dual-stack socket) matches IPv4 ranges; a zone id
 * (fe80::1%eth0) is ignored. The address may one day come from a forwarding
 * header, so anything that is not a strict IP literal is rejected (no match).
 */
/** A parsed CIDR: 4 or 16 network bytes and the prefix length. */
export interface CidrRange {
  bytes: Uint8Array
  prefix: number
}

const COLON = 0x3a
const DOT = 0x2e

/** The 8 groups of an IPv6 address while parsing (one per module: parsing is synchronous). */
const groups = new Uint16Array(8)

/**
 * Parse `address` into `out` (at least 16 bytes). Returns 4 (IPv4, out[0..3]),
 * 16 (IPv6, out[0..15]), or 0 when `address` is not an IP literal.
 */
export function parseIpInto (address: string, out: Uint8Array): number {
  let end = address.length
  if (end === 0) return 0
  if (address.indexOf(':') === -1) return parseIpv4(address, 0, end, out, 0) ? 4 : 0
  const zone = address.indexOf('%')
  if (zone !== -1) {
    if (zone === end - 1) return 0
    end = zone
  }
  if (!parseIpv6(address, end)) return 0
  for (let g = 0; g < 8; g++) {
    out[g * 2] = groups[g] >> 8
    out[g * 2 + 1] = groups[g] & 0xff
  }
  // ::ffff:0:0/96 is IPv4 (RFC 4291 §2.5.5.2)
  if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff) {
    out[0] = out[12]; out[1] = out[13]; out[2] = out[14]; out[3] = out[15]
    return 4
  }
  return 16
}

/** Dotted quad in s[start, end): four decimal parts 0-255, no leading zeros (Node's isIPv4 rules). */
function parseIpv4 (s: string, start: number, end: number, out: Uint8Array, offset: number): boolean {
  let part = 0
  let value = 0
  let digits = 0
  for (let i = start; i <= end; i++) {
    const c = i === end ? DOT : s.charCodeAt(i)
    if (c === DOT) {
      if (digits === 0 || part > 3) return false
      out[offset + part++] = value
      value = 0
      digits = 0
      continue
    }
    if (c < 0x30 || c > 0x39) return false
    if (digits > 0 && value === 0) return false // leading zero
    value = value * 10 + (c - 0x30)
    if (value > 255) return false
    digits++
  }
  return part === 4
}

/** s[0, end) as IPv6 into `groups`: at most one '::', 1-4 hex digits per group, an optional dotted-quad tail. */
function parseIpv6 (s: string, end: number): boolean {
  let count = 0
  let gapAt = -1
  let i = 0
  if (s.charCodeAt(0) === COLON) {
    if (s.charCodeAt(1) !== COLON) return false
    gapAt = 0
    i = 2
  }
  while (i < end) {
    const groupStart = i
    let value = 0
    for (; i < end && i - groupStart < 5; i++) {
      const digit = hexValue(s.charCodeAt(i))
      if (digit === -1) break
      value = (value << 4) | digit
    }
    const digits = i - groupStart
    if (i < end && s.charCodeAt(i) === DOT) {
      // an embedded IPv4 tail takes the last two groups
      if (count > 6 || !parseIpv4(s, groupStart, end, scratch4, 0)) return false
      groups[count++] = (scratch4[0] << 8) | scratch4[1]
      groups[count++] = (scratch4[2] << 8) | scratch4[3]
      i = end
      break
    }
    if (digits === 0 || digits > 4 || count === 8) return false
    groups[count++] = value
    if (i === end) break
    if (s.charCodeAt(i) !== COLON) return false
    i++
    if (i < end && s.charCodeAt(i) === COLON) {
      if (gapAt !== -1) return false
      gapAt = count
      i++
    } else if (i === end) {
      return false // a single trailing ':'
    }
  }
  if (gapAt === -1) return count === 8
  if (count > 7) return false
  // move the groups after the gap to the end, zero the gap
  const after = count - gapAt
  for (let k = after - 1; k >= 0; k--) groups[8 - after + k] = groups[gapAt + k]
  for (let k = gapAt; k < 8 - after; k++) groups[k] = 0
  return true
}

const scratch4 = new Uint8Array(4)

function hexValue (c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  const lower = c | 0x20
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10
  return -1
}

/** Is the parsed address (`family` bytes of `bytes`) inside one of `ranges`? */
export function rangesContain (ranges: readonly CidrRange[], bytes: Uint8Array, family: number): boolean {
  for (let r = 0; r < ranges.length; r++) {
    const range = ranges[r]
    if (range.bytes.length === family && prefixMatches(range.bytes, bytes, range.prefix)) return true
  }
  return false
}

function prefixMatches (network: Uint8Array, address: Uint8Array, prefix: number): boolean {
  let i = 0
  for (; prefix >= 8; prefix -= 8, i++) if (network[i] !== address[i]) return false
  if (prefix === 0) return true
  const mask = (0xff << (8 - prefix)) & 0xff
  return (network[i] & mask) === (address[i] & mask)
}
