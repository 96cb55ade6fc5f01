/**
 * CIDRs for IPv4 and IPv6 client addresses, parsed once at config time; the
 * per-request matching is ./ip's (shared with the firewall). IPv4-mapped IPv6
 * addresses (::ffff:a.b.c.d, as Node reports IPv4 clients on a dual-stack
 * socket) match IPv4 ranges.
 */
import { isIPv4, isIPv6 } from 'node:net'
import { parseIpInto, rangesContain, type CidrRange } from './ip'

/** 16 bytes for IPv6, 4 for IPv4; null when `address` is not an IP literal. */
export function ipToBytes (address: string): Uint8Array | null {
  if (address.startsWith('::ffff:') && isIPv4(address.slice(7))) address = address.slice(7)
  if (isIPv4(address)) {
    const out = new Uint8Array(4)
    const parts = address.split('.')
    for (let i = 0; i < 4; i++) out[i] = Number(parts[i])
    return out
  }
  if (!isIPv6(address)) return null
  const zone = address.indexOf('%')
  if (zone !== -1) address = address.slice(0, zone)
  let groups: string[]
  // an embedded dotted quad at the end (::1.2.3.4) is two groups
  const lastColon = address.lastIndexOf(':')
  const tail = address.slice(lastColon + 1)
  if (tail.includes('.')) {
    const b = ipToBytes(tail)
    if (b === null) return null
    address = address.slice(0, lastColon + 1) + ((b[0] << 8) | b[1]).toString(16) + ':' + ((b[2] << 8) | b[3]).toString(16)
  }
  const doubleColon = address.indexOf('::')
  if (doubleColon !== -1) {
    const head = address.slice(0, doubleColon).split(':').filter((g) => g !== '')
    const rest = address.slice(doubleColon + 2).split(':').filter((g) => g !== '')
    groups = [...head, ...new Array<string>(8 - head.length - rest.length).fill('0'), ...rest]
  } else {
    groups = address.split(':')
  }
  if (groups.length !== 8) return null
  const out = new Uint8Array(16)
  for (let i = 0; i < 8; i++) {
    const v = parseInt(groups[i], 16)
    out[i * 2] = v >> 8
    out[i * 2 + 1] = v & 0xff
  }
  return out
}

/** A set of CIDRs; has() parses the address into a scratch buffer: no allocation per call. */
export class CidrSet {
  private readonly ranges: CidrRange[]
  private readonly scratch = new Uint8Array(16)
  readonly size: number

  constructor (cidrs: readonly string[]) {
    this.ranges = cidrs.map(parseCidr)
    this.size = this.ranges.length
  }

  has (address: string): boolean {
    if (this.ranges.length === 0) return false
    const family = parseIpInto(address, this.scratch)
    return family !== 0 && rangesContain(this.ranges, this.scratch, family)
  }
}

export function parseCidr (cidr: string): CidrRange {
  const slash = cidr.indexOf('/')
  const bytes = ipToBytes(slash === -1 ? cidr : cidr.slice(0, slash))
  if (bytes === null) throw new Error(`not an IP address: ${cidr}`)
  const max = bytes.length * 8
  const prefix = slash === -1 ? max : Number(cidr.slice(slash + 1))
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) throw new Error(`bad prefix length in ${cidr}`)
  return { bytes, prefix }
}
