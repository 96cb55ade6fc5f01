/**
 * Hashing and mixing for the balancers, written so a pick allocates nothing:
 * strings are hashed over charCodeAt (no Buffer, no encoder), integers are
 * mixed with Math.imul, and random numbers come from a per-instance xorshift
 * state instead of Math.random (which would also do, but is slower and cannot
 * be seeded, and seeded streams keep the distribution tests deterministic).
 */

import { fmix32 as mix32 } from '../shared/hash'

const FNV_OFFSET_BASIS = 0x811c9dc5
const FNV_PRIME = 0x01000193

/**
 * FNV-1a over the UTF-16 code units of `text`, then murmur3's finalizer.
 * FNV-1a alone mixes its last characters poorly into the high bits, and keys
 * here are short and alike ("10.0.0.1", "10.0.0.2"), so the finalizer is what
 * spreads neighbours over the ring. For ASCII text this is byte-wise FNV-1a;
 * a non-ASCII code unit is folded in whole (still deterministic, which is all
 * the balancers need). Returns a uint32.
 */
export function hashString (text: string): number {
  let h = FNV_OFFSET_BASIS | 0
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, FNV_PRIME)
  }
  return fmix32(h)
}

/** src/shared/hash.ts's finaliser as a uint32 (the ring and the hash picks compare unsigned). */
export function fmix32 (h: number): number {
  return mix32(h) >>> 0
}

/**
 * The next value of a deterministic pseudo-random chain started from `h`
 * (splitmix's step: add the golden gamma 2^32/phi, remix). Lets a pick turn
 * its cursor value or key hash into further well-spread draws with no state.
 * Returns a uint32.
 */
export function remix (h: number): number {
  return fmix32((h + 0x9e3779b9) | 0)
}

/**
 * One step of Marsaglia's xorshift32. A non-zero state never becomes zero;
 * the period is 2^32 - 1, plenty for choosing among at most 64 upstreams.
 */
export function xorshift32 (state: number): number {
  state ^= state << 13
  state ^= state >>> 17
  state ^= state << 5
  return state | 0
}

/** A non-zero seed for xorshift32. */
export function randomSeed (): number {
  return ((Math.random() * 0xffffffff) | 0) || 1
}

/**
 * Map a 32-bit random value onto [0, n) by its high bits (multiply, not
 * modulo: xorshift's low bits are its weakest). Exact in a double for n < 2^21.
 */
export function scaleToRange (random32: number, n: number): number {
  return Math.floor((random32 >>> 0) * n / 4294967296)
}
