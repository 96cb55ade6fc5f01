/**
 * The rate-limit table's key: two independent 32-bit hashes of the client
 * address (64 bits together), computed from the string's char codes without
 * allocating. Seeded per table (the seed lives in shared memory, see ./table)
 * so a client who can pick addresses, e.g. from an IPv6 /64, cannot aim them
 * all at one probe neighbourhood.
 *
 * Spellings of the same address that Node or a proxy may produce hash alike:
 * - IPv4-mapped IPv6 (`::ffff:192.0.2.1`, how a dual-stack socket reports an
 *   IPv4 peer) hashes as the plain IPv4 address (RFC 4291 §2.5.5.2);
 * - IPv6 hex digits are case-insensitive (RFC 5952 §4.3 recommends lower case,
 *   so fold to that).
 * Other non-canonical IPv6 spellings (leading zeros, `::` placement) are not
 * normalised: Node's socket addresses are canonical, and a trusted proxy's
 * X-Forwarded-For normally is too.
 */
import { fmix32 } from '../shared/hash'

const MAPPED_PREFIX_LENGTH = 7 // '::ffff:'

/**
 * Hash `address` into out[0] (key high word) and out[1] (key low word, also
 * the probe start). Both are non-zero: 0 marks an empty slot / a key being
 * written (see ./table).
 */
export function hashAddress (address: string, seed: number, out: Int32Array): void {
  const end = address.length
  const start = isMappedIpv4(address) ? MAPPED_PREFIX_LENGTH : 0
  // lane a: FNV-1a; lane b: a multiplicative hash with a different constant and
  // a shift, so the lanes are independent functions of the same bytes
  let a = (0x811c9dc5 ^ seed) | 0
  let b = (0x9e3779b9 + Math.imul(seed, 0x85ebca6b)) | 0
  for (let i = start; i < end; i++) {
    let c = address.charCodeAt(i)
    if (c >= 0x41 && c <= 0x46) c |= 0x20 // A-F -> a-f
    a = Math.imul(a ^ c, 0x01000193)
    b = Math.imul(b ^ c, 0x5bd1e995)
    b ^= b >>> 15
  }
  a = fmix32(a ^ (end - start))
  b = fmix32((b + end - start) | 0)
  out[0] = a === 0 ? 1 : a
  out[1] = b === 0 ? 1 : b
}

/** `::ffff:a.b.c.d` in any case. */
function isMappedIpv4 (s: string): boolean {
  return s.length > MAPPED_PREFIX_LENGTH + 6 &&
    s.charCodeAt(0) === 0x3a && s.charCodeAt(1) === 0x3a &&
    (s.charCodeAt(2) | 0x20) === 0x66 && (s.charCodeAt(3) | 0x20) === 0x66 &&
    (s.charCodeAt(4) | 0x20) === 0x66 && (s.charCodeAt(5) | 0x20) === 0x66 &&
    s.charCodeAt(6) === 0x3a &&
    s.indexOf('.', MAPPED_PREFIX_LENGTH) !== -1 && s.indexOf(':', MAPPED_PREFIX_LENGTH) === -1
}
