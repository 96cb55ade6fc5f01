/**
 * The cache index: open addressing with linear probing over `slots` int32
 * words (INDEX_INTS per slot, see ./layout), home slot = KEY_LO & mask.
 *
 * Written only by the thread holding the store's write lock; read lock-free
 * by every thread. A slot's four words are not written atomically as a unit,
 * so a reader may see a torn slot: that is harmless because a reader trusts
 * nothing it reads here. It follows OFFSET only if the record there still
 * carries ID, and serves it only if the record's own key bytes equal its key
 * (./store). The write order narrows the windows anyway: a new slot gets
 * KEY_HI (the "occupied" word) last, a cleared slot loses it first.
 *
 * Deletion is Knuth's backward shift (TAOCP 6.4 Algorithm R), so there are no
 * tombstones and probe runs never grow with churn. A reader racing a shift
 * may stop at the hole and miss an entry that is present: a spurious miss,
 * never a wrong hit, and one the store's find() does not trust while a writer
 * was at work (it looks again once the writer is done).
 */
import { I_KEY_HI, I_KEY_LO, I_OFFSET, I_ID, INDEX_INTS, MAX_PROBE } from './layout'

/** First empty slot on `lo`'s probe run within MAX_PROBE, or -1. */
export function emptySlotFor (index: Int32Array, mask: number, lo: number): number {
  const home = lo & mask
  for (let p = 0; p < MAX_PROBE && p <= mask; p++) {
    const slot = (home + p) & mask
    if (Atomics.load(index, slot * INDEX_INTS + I_KEY_HI) === 0) return slot
  }
  return -1
}

/** Fill an empty slot; KEY_HI last, so a reader never takes a half-written slot as occupied. */
export function fillSlot (index: Int32Array, refs: Uint8Array, slot: number, hi: number, lo: number, offset: number, id: number): void {
  const base = slot * INDEX_INTS
  Atomics.store(index, base + I_ID, id)
  Atomics.store(index, base + I_OFFSET, offset)
  Atomics.store(index, base + I_KEY_LO, lo)
  Atomics.store(refs, slot, 0)
  Atomics.store(index, base + I_KEY_HI, hi)
}

/**
 * Point an occupied slot at a record's new place. OFFSET before ID: a reader
 * that sees the new offset with the old id (or the reverse) finds no record
 * carrying that id there, and reads the slot again, or the record at the new
 * offset by its own id when the writer stalls between the two (the store's probe).
 */
export function repointSlot (index: Int32Array, slot: number, offset: number, id: number): void {
  const base = slot * INDEX_INTS
  Atomics.store(index, base + I_OFFSET, offset)
  Atomics.store(index, base + I_ID, id)
}

/** The slot pointing at the record (offset, id), found from its key hash; -1 if none does. */
export function slotOfRecord (index: Int32Array, mask: number, hi: number, lo: number, offset: number, id: number): number {
  const home = lo & mask
  for (let p = 0; p < MAX_PROBE && p <= mask; p++) {
    const slot = (home + p) & mask
    const base = slot * INDEX_INTS
    const slotHi = Atomics.load(index, base + I_KEY_HI)
    if (slotHi === 0) return -1
    if (slotHi === hi && Atomics.load(index, base + I_KEY_LO) === lo &&
      Atomics.load(index, base + I_OFFSET) === offset && Atomics.load(index, base + I_ID) === id) return slot
  }
  return -1
}

/** Empty `slot` and shift later members of its run back into the hole (Algorithm R). */
export function clearSlot (index: Int32Array, refs: Uint8Array, mask: number, slot: number): void {
  Atomics.store(index, slot * INDEX_INTS + I_KEY_HI, 0)
  let hole = slot
  let j = slot
  for (let step = 0; step < mask; step++) {
    j = (j + 1) & mask
    const base = j * INDEX_INTS
    const hi = Atomics.load(index, base + I_KEY_HI)
    if (hi === 0) return
    const home = Atomics.load(index, base + I_KEY_LO) & mask
    // j may move to the hole unless its home lies cyclically in (hole, j]
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      fillSlot(index, refs, hole, hi, Atomics.load(index, base + I_KEY_LO), Atomics.load(index, base + I_OFFSET), Atomics.load(index, base + I_ID))
      Atomics.store(refs, hole, Atomics.load(refs, j))
      Atomics.store(index, base + I_KEY_HI, 0)
      hole = j
    }
  }
}
