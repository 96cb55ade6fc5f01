/**
 * MurmurHash3's 32-bit finaliser: every input bit affects every output bit.
 * Shared by the balancer, rate-limit and cache key hashes. Returns an int32.
 */
export function fmix32 (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h | 0
}
