/**
 * A worker thread's stdout lines on their way to the primary. In worker mode
 * the primary alone writes stdout: every worker slot has one ring of bytes in
 * a SharedArrayBuffer, a worker appends its lines there (the access-log
 * builder writes them in place, as into its own buffer) and the primary's
 * stdout sink writes them out with its own lines in large batches
 * (src/log-sink.ts). No message and no system call per batch in the worker,
 * and lines are whole and in order per thread: a write never takes another
 * source's bytes inside a line.
 *
 * One producer (the worker in the slot) and one consumer (the primary), each
 * owning its own words, so no lock:
 *
 *   header, Int32 words; each side's words on their own 64-byte line
 *     [0]  W  end of the committed lines                       (written by the worker)
 *     [1]  E  where the lines stop before W went back to 0     (written by the worker)
 *     [16] R  first byte the primary has not written yet       (written by the primary)
 *   data: capacity bytes
 *
 *   W >= R:  [ free .......... | R  lines  W | free ........ ]
 *   W <  R:  [ lines  W | free | R  lines  E | unused ]        (wrapped)
 *
 * A line is reserved contiguous: when it does not fit before the end, the
 * worker wraps to the front (only if the primary has left the front: R > the
 * line), recording E; W never catches up with R from behind (W === R means
 * empty), so a full ring drops the line (counted by the worker) instead of
 * growing or waiting. E is stored before W, and a worker only wraps from the
 * unwrapped state, so E is stable whenever the primary sees W < R. The
 * primary writes [R, W) or [R, E); once R reaches E it goes back to 0.
 *
 * Lines that survive their thread: what a worker committed stays in the ring
 * when the thread dies, and the primary writes it. The slot's next worker
 * (released by the primary on the thread's 'exit', src/primary/workers.ts)
 * continues at W, behind those lines.
 *
 * Resident memory: the ring is 8 MiB (the bound one thread's pending lines had
 * before, MAX_PENDING_BYTES), allocated zeroed and so only mapped, not touched:
 * one per slot is 512 MiB of address space, of which a 2-worker proxy under
 * load had ~4.5 MB resident. A worker goes back to the front early, once past
 * REWIND_AT, when the primary is within REWIND_SLACK of it; so a ring that
 * keeps up touches about REWIND_AT bytes (and stays in cache more), and only a
 * backlog (a stalled reader of stdout) uses the rest. After such an early wrap
 * the worker has R (~2 MiB) at the front while the primary writes the few
 * bytes it left behind: about 150 ms of lines at 12 MB/s, three of the
 * primary's turns (RINGS_INTERVAL_MS).
 */

export const RING_WRITE = 0
export const RING_LAP_END = 1
export const RING_READ = 16
const HEADER_BYTES = 128
/** Bytes of lines a ring holds: past this, lines are dropped and counted. */
export const RING_CAPACITY = 8 * 1024 * 1024
/** Back to the front when past this and the primary is within REWIND_SLACK of W. */
const REWIND_AT = 2 * 1024 * 1024
const REWIND_SLACK = 64 * 1024

/** One ring's memory (SharedArrayBuffers are zeroed: W = E = R = 0). */
export function allocateRing (capacity = RING_CAPACITY): SharedArrayBuffer {
  return new SharedArrayBuffer(HEADER_BYTES + capacity)
}

export function ringHeader (sab: SharedArrayBuffer): Int32Array {
  return new Int32Array(sab, 0, HEADER_BYTES >> 2)
}

export function ringData (sab: SharedArrayBuffer): Buffer {
  return Buffer.from(sab, HEADER_BYTES, sab.byteLength - HEADER_BYTES)
}

/**
 * The worker's side: where `bytes` more can go, given W = `w` (this worker's
 * own copy): `w`, or 0 to wrap (the caller stores E = w before it stores the
 * new W), or -1 when the ring is full.
 */
export function ringReserve (header: Int32Array, capacity: number, w: number, bytes: number): number {
  const r = Atomics.load(header, RING_READ)
  if (w < r) return r - w > bytes ? w : -1 // wrapped: the free bytes are [W, R)
  if (w >= REWIND_AT && w - r <= REWIND_SLACK && r > bytes) return 0
  if (capacity - w >= bytes) return w
  return r > bytes ? 0 : -1
}

/** The primary's side of one ring. */
export class LogRing {
  readonly header: Int32Array
  readonly data: Buffer
  /** The span that the next write takes, [from, to), set by span(). */
  from = 0
  to = 0
  /** Its worker pool is gone: dropped from the primary's sources once written out. */
  retired = false

  constructor (readonly sab: SharedArrayBuffer) {
    this.header = ringHeader(sab)
    this.data = ringData(sab)
  }

  /** Bytes of whole lines that can be written in one piece from `from`. */
  span (): number {
    const h = this.header
    const w = Atomics.load(h, RING_WRITE)
    let r = Atomics.load(h, RING_READ)
    if (w < r) {
      const e = Atomics.load(h, RING_LAP_END)
      if (r < e) { this.from = r; this.to = e; return e - r }
      r = 0 // the lap is written: on to the front
      Atomics.store(h, RING_READ, 0)
    }
    this.from = r
    this.to = w
    return w - r
  }

  /** The bytes before `end` (in the span last taken) are written: the worker may reuse them. */
  consumed (end: number): void {
    Atomics.store(this.header, RING_READ, end)
  }
}
