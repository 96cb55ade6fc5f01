/**
 * PROXY protocol (HAProxy, "The PROXY protocol", versions 1 and 2): the
 * header an L4 balancer in front of us sends first on a connection, naming
 * the client it accepted. Parsed with the care of the HTTP parser: bytes, not
 * strings, resumable across reads (split anywhere, one byte at a time), hard
 * size limits, and a status code instead of exceptions.
 *
 *   v1: "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n"   (at most 107 bytes, §2.1)
 *   v2: 12-byte signature, ver/cmd, family, length (BE16), addresses, TLVs (§2.2)
 *
 * The header is at most V1_MAX_BYTES or 16 + MAX_V2_LENGTH bytes, so it is
 * gathered into a small buffer owned by the parser and decoded once complete.
 */
import { isIPv4, isIPv6, SocketAddress } from 'node:net'

/** §2.1: "the maximum line lengths the receiver must support including the CRLF are: TCP/UDP over IPv4 and IPv6: 107 characters". */
export const V1_MAX_BYTES = 107
/** v2 address block + TLVs we accept (the declared length is read exactly, never past it). */
export const MAX_V2_LENGTH = 1024
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
const V1_PREFIX = Buffer.from('PROXY ', 'latin1')

export const PP_INCOMPLETE = -1
export const PP_ERROR = -2

const CR = 0x0d
const LF = 0x0a

export class ProxyHeaderParser {
  /** Bytes of the header so far. */
  private readonly head = Buffer.allocUnsafe(16 + MAX_V2_LENGTH)
  private length = 0
  /** 0 undecided, 1 or 2 once the first byte says which. */
  version = 0
  /** Why the header was refused (PP_ERROR). */
  error = ''
  /** The connection's real client, when the header names one (PROXY command, TCP over IPv4/IPv6). */
  sourceAddress = ''
  sourcePort = 0
  destinationAddress = ''
  destinationPort = 0
  /** LOCAL (v2) or UNKNOWN (v1): the sender's own connection (health check): keep the socket's peer. */
  local = false

  /**
   * Feed buf[start, end). Returns the offset in `buf` just past the header
   * (the rest is the client's first bytes), PP_INCOMPLETE, or PP_ERROR.
   */
  execute (buf: Buffer, start: number, end: number): number {
    let i = start
    while (i < end) {
      const b = buf[i++]
      const n = this.length
      if (n === 0) {
        if (b === 0x50) this.version = 1 // 'P'
        else if (b === 0x0d) this.version = 2
        else return this.fail('the connection does not start with a PROXY protocol header')
      }
      this.head[this.length++] = b
      if (this.version === 1) {
        if (n < V1_PREFIX.length) {
          if (b !== V1_PREFIX[n]) return this.fail('not a PROXY protocol v1 header')
          continue
        }
        if (b === LF) {
          if (this.head[n - 1] !== CR) return this.fail('v1 header line must end with CRLF')
          return this.decodeV1() ? i : PP_ERROR
        }
        if (this.length >= V1_MAX_BYTES) return this.fail(`v1 header longer than ${V1_MAX_BYTES} bytes`)
      } else {
        if (n < 12) {
          if (b !== V2_SIGNATURE[n]) return this.fail('not a PROXY protocol v2 signature')
          continue
        }
        if (n === 12 && (b >> 4) !== 2) return this.fail(`v2 version ${b >> 4} is not 2`)
        if (n === 15) {
          const declared = this.head.readUInt16BE(14)
          if (declared > MAX_V2_LENGTH) return this.fail(`v2 header declares ${declared} bytes, over ${MAX_V2_LENGTH}`)
        }
        if (this.length >= 16 && this.length === 16 + this.head.readUInt16BE(14)) return this.decodeV2() ? i : PP_ERROR
      }
    }
    return PP_INCOMPLETE
  }

  private fail (reason: string): number {
    this.error = reason
    return PP_ERROR
  }

  /** "PROXY" SP ("TCP4" | "TCP6" | "UNKNOWN") [SP src SP dst SP sport SP dport] CRLF */
  private decodeV1 (): boolean {
    const line = this.head.latin1Slice(V1_PREFIX.length, this.length - 2)
    const parts = line.split(' ')
    if (parts[0] === 'UNKNOWN') { this.local = true; return true } // §2.1: the rest of the line is ignored
    if (parts.length !== 5) { this.error = 'v1 header needs protocol, two addresses and two ports'; return false }
    const [proto, src, dst, sport, dport] = parts
    const family = proto === 'TCP4' ? isIPv4 : proto === 'TCP6' ? isIPv6 : null
    if (family === null) { this.error = `v1 protocol "${proto}" is not TCP4, TCP6 or UNKNOWN`; return false }
    if (!family(src) || !family(dst)) { this.error = `v1 addresses are not ${proto} addresses`; return false }
    const sp = port(sport)
    const dp = port(dport)
    if (sp < 0 || dp < 0) { this.error = 'v1 ports must be decimal 0-65535 without leading zeros'; return false }
    this.sourceAddress = proto === 'TCP6' ? canonicalIpv6(src) : src
    this.destinationAddress = proto === 'TCP6' ? canonicalIpv6(dst) : dst
    this.sourcePort = sp
    this.destinationPort = dp
    return true
  }

  private decodeV2 (): boolean {
    const h = this.head
    const command = h[12] & 0x0f
    const family = h[13]
    const length = h.readUInt16BE(14)
    if (command === 0) { this.local = true; return true } // LOCAL: §2.2 "the receiver must accept this connection as valid and must use the real connection endpoints"
    if (command !== 1) { this.error = `v2 command ${command} is neither LOCAL nor PROXY`; return false }
    if (family === 0x11) { // TCP over IPv4
      if (length < 12) { this.error = 'v2 TCP4 address block shorter than 12 bytes'; return false }
      this.sourceAddress = `${h[16]}.${h[17]}.${h[18]}.${h[19]}`
      this.destinationAddress = `${h[20]}.${h[21]}.${h[22]}.${h[23]}`
      this.sourcePort = h.readUInt16BE(24)
      this.destinationPort = h.readUInt16BE(26)
      return true
    }
    if (family === 0x21) { // TCP over IPv6
      if (length < 36) { this.error = 'v2 TCP6 address block shorter than 36 bytes'; return false }
      this.sourceAddress = ipv6(h, 16)
      this.destinationAddress = ipv6(h, 32)
      this.sourcePort = h.readUInt16BE(48)
      this.destinationPort = h.readUInt16BE(50)
      return true
    }
    if (family === 0x00) { this.local = true; return true } // UNSPEC: keep the real endpoints
    this.error = `v2 family 0x${family.toString(16).padStart(2, '0')} is not TCP over IPv4 or IPv6`
    return false
  }
}

function port (text: string): number {
  if (text.length === 0 || text.length > 5 || (text.length > 1 && text.charCodeAt(0) === 0x30)) return -1
  let n = 0
  for (let i = 0; i < text.length; i++) {
    const d = text.charCodeAt(i) - 0x30
    if (d < 0 || d > 9) return -1
    n = n * 10 + d
  }
  return n <= 65535 ? n : -1
}

function ipv6 (h: Buffer, at: number): string {
  const groups: string[] = []
  for (let g = 0; g < 8; g++) groups.push(h.readUInt16BE(at + g * 2).toString(16))
  return canonicalIpv6(groups.join(':'))
}

/**
 * An IPv6 address as node reports a peer's (RFC 5952: `::1`, `2001:db8::1`), whatever spelling the header
 * used, so one client is one client for the rate limit, the connection caps, ip-hash and the logs; an
 * IPv4-mapped one is the IPv4 client (how the rest of switchyard writes it).
 */
function canonicalIpv6 (text: string): string {
  const canonical = new SocketAddress({ address: text, family: 'ipv6' }).address
  return canonical.startsWith('::ffff:') && canonical.includes('.') ? canonical.slice(7) : canonical
}

/** Build a header (upstreams[].proxyProtocol, tests). Addresses as node reports them. */
export function encodeProxyHeader (version: 'v1' | 'v2', src: string, dst: string, sport: number, dport: number): Buffer {
  const v4 = isIPv4(src) && isIPv4(dst)
  const v6 = !v4 && isIPv6(src) && isIPv6(dst)
  if (version === 'v1') {
    return Buffer.from(v4 || v6 ? `PROXY ${v4 ? 'TCP4' : 'TCP6'} ${src} ${dst} ${sport} ${dport}\r\n` : 'PROXY UNKNOWN\r\n', 'latin1')
  }
  if (!v4 && !v6) return Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]) // LOCAL
  const length = v4 ? 12 : 36
  const out = Buffer.alloc(16 + length)
  V2_SIGNATURE.copy(out, 0)
  out[12] = 0x21
  out[13] = v4 ? 0x11 : 0x21
  out.writeUInt16BE(length, 14)
  if (v4) {
    src.split('.').forEach((b, i) => { out[16 + i] = Number(b) })
    dst.split('.').forEach((b, i) => { out[20 + i] = Number(b) })
    out.writeUInt16BE(sport, 24)
    out.writeUInt16BE(dport, 26)
  } else {
    ipv6Bytes(src).copy(out, 16)
    ipv6Bytes(dst).copy(out, 32)
    out.writeUInt16BE(sport, 48)
    out.writeUInt16BE(dport, 50)
  }
  return out
}

function ipv6Bytes (address: string): Buffer {
  const out = Buffer.alloc(16)
  const [head, tail] = address.includes('::') ? address.split('::') : [address, '']
  const h = head === '' ? [] : head.split(':')
  const t = tail === '' ? [] : tail.split(':')
  const groups = [...h, ...new Array(8 - h.length - t.length).fill('0'), ...t]
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2))
  return out
}
