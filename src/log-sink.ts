/**
 * Where a thread's log lines go: bytes appended to one preallocated buffer,
 * written out asynchronously (fs.write) when it holds `flushAt` bytes or every
 * FLUSH_INTERVAL_MS, whichever is first. One sink per destination per thread
 * (stdout, and the access-log file when `log.accessFile` is set).
 *
 *   buf: [ written | start: being written (writing bytes) | appended meanwhile ... len | free ]
 *
 * A write takes buf[start, cut) where cut ends on a line; bytes appended while
 * it is in flight land after `len`. Nothing moves while the output keeps up
 * (start and len go back to 0 when all is written); what is left is moved to
 * the front only when start passes half the buffer, so each byte moves at most
 * once, whatever the backlog. So a line costs a copy into memory, and a system
 * call is paid per batch, not per line (pino's sonic-boom does the same with a string it grows; building
 * bytes in place skips the string concatenation and its UTF-8 encoding).
 *
 * stdout has one writer, the primary thread. In worker mode a worker's stdout
 * sink appends to its slot's ring in shared memory instead (src/log-ring.ts,
 * attachRing: the same reserve/commit, two atomic word accesses more) and
 * never writes; the primary's sink writes its own lines and every ring's, one
 * write at a time: every RINGS_INTERVAL_MS (or at once when a batch's worth is
 * held) one writev gathers what each source holds, up to RINGS_BATCH_BYTES,
 * each source cut at a line end, the first source changing from write to
 * write. A write that stopped inside a line (a partial write, a line longer
 * than a batch) is followed first by the rest of that line. So lines are whole
 * and in order per thread, and stdout sees a few large writes a second
 * whatever the number of workers.
 *
 * Why: worker threads used to write stdout themselves, each in batches of at
 * most PIPE_BUF (4096) bytes so that lines from several threads could not
 * interleave in a pipe. To a pipe or socket another process reads, every batch
 * wakes that reader and every fs.write is a hop to the libuv thread pool and
 * back; on loaded cores that cost more than the line (the bench's --access-log
 * runs: +10-27 µs per request at --workers 1 and 2). bench/log-cost.js
 * --threads 2 compares the two ways.
 *
 * Sequential mode is unchanged: the primary alone writes, 64 KiB batches to a
 * pipe or socket (EXCLUSIVE_STREAM_BATCH_BYTES). To a file or /dev/null, 4 KiB
 * batches are the cheapest per line for a thread that writes its own lines
 * (the bytes are still in cache when the kernel copies them;
 * bench/log-cost.ts): about 1 µs of CPU per line in all, against 2 µs with
 * 16-256 KiB batches. `log.accessFile` keeps one such sink per thread
 * (O_APPEND: each write lands whole at the end).
 *
 * Bounded: past MAX_PENDING_BYTES (a log reader that stopped reading) lines
 * are dropped and counted, never buffered without limit (a worker's ring holds
 * as much: RING_CAPACITY); a write error (EPIPE: nobody reads stdout) drops
 * what is pending and keeps serving.
 */
import * as fs from 'node:fs'
import type { Writable } from 'node:stream'
import { LogRing, RING_LAP_END, RING_WRITE, ringData, ringHeader, ringReserve } from './log-ring'
import { optionalHandoff } from './primary/handoff'

const INITIAL_BYTES = 64 * 1024
const MAX_PENDING_BYTES = 8 * 1024 * 1024
/** Largest write, and the size that starts one (else the timer does). */
const BATCH_BYTES = 4096
/** The same to a pipe or socket this thread alone writes to (sequential mode). */
const EXCLUSIVE_STREAM_BATCH_BYTES = 64 * 1024
const FLUSH_INTERVAL_MS = 100
/** The same for the primary in worker mode, which writes every worker's ring and its own lines. */
const RINGS_BATCH_BYTES = 1024 * 1024
const RINGS_INTERVAL_MS = 50
/**
 * A pipe's buffer is grown to this when the sink writes to one (Linux, with the
 * addon; as far as /proc/sys/fs/pipe-max-size lets an unprivileged process,
 * 1 MiB by default): a whole batch of the primary's then fits while the reader
 * keeps up. With the default 64 KiB, each batch filled the pipe, and the
 * primary went back and forth with the reader a page at a time, on the core it
 * shares with a worker: twice the context switches per request at --workers 1,
 * and +2 µs per request when the reader (on the other core) reads 1 MiB at a
 * time (four runs each way; no difference to tell with node reading 64 KiB).
 */
const PIPE_BYTES = 1024 * 1024
/** EAGAIN (a non-blocking pipe that is full): try again after this long. */
const RETRY_MS = 10

/** Where a piece of a write comes from: this sink's own buffer, or a worker's ring. */
type Source = LogRing | 'own'

export class LogSink {
  buf: Buffer = Buffer.allocUnsafeSlow(INITIAL_BYTES)
  /** First byte not yet written. */
  start = 0
  /** End of the bytes held in `buf`. */
  len = 0
  /** Bytes the write in flight takes (0: none in flight). */
  private writing = 0
  /** The write in flight, piece by piece: where from, the first byte there, how many. */
  private readonly pieceSources: Source[] = []
  private readonly pieceStarts: number[] = []
  private readonly pieceBytes: number[] = []
  /** The write in flight takes bytes from `buf`: do not move them. */
  private ownInFlight = false
  /** Lines dropped because the output did not keep up or failed. */
  dropped = 0
  private fd: number
  /** The file this sink opened (closed and reopened by reopen()), or null for a descriptor it was given. */
  readonly path: string | null
  private closeAfterWrite = false
  /** Set while waiting to retry after EAGAIN. */
  retryTimer: NodeJS.Timeout | null = null
  private timer: NodeJS.Timeout | null
  private interval = FLUSH_INTERVAL_MS
  private readonly waiters: Array<() => void> = []
  /** The descriptor is a pipe or a socket (another process reads it). */
  private stream = false
  /** A pipe's buffer after growing it (PIPE_BYTES); -1: not a pipe, or not known (no addon, not Linux). */
  readonly pipeBytes: number = -1
  /** No other thread writes to the descriptor. */
  private exclusive = false
  /** Largest write, and the size that starts one. */
  private batchBytes = BATCH_BYTES
  private readonly onWritten: (err: NodeJS.ErrnoException | null, written: number) => void
  /** The primary's stdout as a libuv stream (a pipe or socket), written instead of fs.write on fd 1; null: fs.write. */
  private out: Writable | null = null
  private readonly onStreamWritten: (err?: Error | null) => void
  /** Lines are kept, not written, until attachRing() says where they go (a worker before its slot). */
  private held = false
  /** A worker's side: the header of the ring its lines go to (`buf` is the ring's data); null: not a worker's. */
  private ring: Int32Array | null = null
  /** A wrap to the ring's front reserved and not committed yet: where the lap it closes ends (-1: none). */
  private lapEnd = -1
  /** The primary's side: the workers' rings, written out with this sink's own lines. */
  private readonly rings: LogRing[] = []
  /** Round robin over [rings..., own buffer]: which source a write starts with. */
  private cursor = 0
  /** The last write stopped inside a line from this source: the next write starts with the rest of it. */
  private unfinished: Source | null = null

  /** A sink on an open descriptor (stdout: 1), or on a file opened for appending. */
  constructor (target: number | string) {
    this.path = typeof target === 'string' ? target : null
    this.fd = typeof target === 'string' ? openAppend(target) : target
    try {
      const st = fs.fstatSync(this.fd)
      this.stream = st.isFIFO() || st.isSocket()
      if (st.isFIFO()) this.pipeBytes = optionalHandoff()?.pipeSize?.(this.fd, PIPE_BYTES) ?? -1
    } catch { /* unknown: small batches */ }
    this.onWritten = (err, written) => { this.written(err, written) }
    this.onStreamWritten = (err) => {
      if (err != null) this.dropped++ // EPIPE...: what this write held is lost
      this.written(null, this.writing)
    }
    this.timer = startTimer(this, FLUSH_INTERVAL_MS)
  }

  /** No other thread writes to this descriptor (sequential mode): large batches to a pipe or socket. */
  setExclusive (exclusive: boolean): void {
    this.exclusive = exclusive
    this.setBatch()
  }

  private setBatch (): void {
    const rings = this.rings.length > 0
    this.batchBytes = rings ? RINGS_BATCH_BYTES : this.exclusive && this.stream ? EXCLUSIVE_STREAM_BATCH_BYTES : BATCH_BYTES
    const interval = rings ? RINGS_INTERVAL_MS : FLUSH_INTERVAL_MS
    if (interval !== this.interval && this.timer !== null) {
      clearInterval(this.timer)
      this.timer = startTimer(this, interval)
    }
    this.interval = interval
  }

  /**
   * Room for `bytes` more at buf[len]: returns false (and counts a dropped
   * line) when that would pass MAX_PENDING_BYTES. The caller writes into
   * `buf` from `len` and then calls commit().
   */
  reserve (bytes: number): boolean {
    if (this.ring !== null) return this.reserveInRing(this.ring, bytes)
    let need = this.len + bytes
    if (need <= this.buf.length) return true
    if (this.start > 0 && !this.ownInFlight) { // room at the front: move what is pending there
      this.compact()
      need = this.len + bytes
      if (need <= this.buf.length) return true
    }
    if (need - this.start > MAX_PENDING_BYTES || need > MAX_PENDING_BYTES + INITIAL_BYTES) { this.dropped++; return false }
    let size = this.buf.length * 2
    while (size < need) size *= 2
    const grown = Buffer.allocUnsafeSlow(Math.min(size, MAX_PENDING_BYTES + INITIAL_BYTES))
    this.buf.copy(grown, 0, 0, this.len) // a write in flight keeps the old buffer alive
    this.buf = grown
    return true
  }

  private reserveInRing (ring: Int32Array, bytes: number): boolean {
    const at = ringReserve(ring, this.buf.length, this.len, bytes)
    if (at === -1) { this.dropped++; return false }
    if (at !== this.len) { this.lapEnd = this.len; this.len = at }
    return true
  }

  /** The bytes up to `end` are complete lines: keep them, write when a batch is full. */
  commit (end: number): void {
    this.len = end
    const ring = this.ring
    if (ring !== null) { // the primary writes them; E before W (src/log-ring.ts)
      if (this.lapEnd !== -1) { Atomics.store(ring, RING_LAP_END, this.lapEnd); this.lapEnd = -1 }
      Atomics.store(ring, RING_WRITE, end)
      return
    }
    if (end - this.start >= this.batchBytes && this.writing === 0) this.flush()
  }

  /** Move the pending bytes to the front (never while a write reads them). */
  private compact (): void {
    this.buf.copyWithin(0, this.start, this.len)
    this.len -= this.start
    this.start = 0
  }

  /** A whole line (or lines) as a string: pino's destination interface. */
  write (text: string): boolean {
    if (this.reserve(text.length * 3)) this.commit(this.len + this.buf.write(text, this.len, 'utf8'))
    return true
  }

  /** A worker before it has its slot: keep lines, write nothing, until attachRing(). */
  hold (): void {
    this.held = true
  }

  /**
   * A worker's stdout from now on: its lines go to the ring in `sab`, and the
   * primary writes them; what it held goes first. null: no ring (no slot), it
   * writes them itself. Never called on the primary's sink.
   */
  attachRing (sab: SharedArrayBuffer | null): void {
    this.held = false
    if (sab === null) { this.flush(); return }
    // a write already in flight finishes on its own; the rest moves to the ring
    const pending = this.buf.subarray(this.start + this.writing, this.len)
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    this.ring = ringHeader(sab)
    this.buf = ringData(sab)
    this.start = 0
    this.len = Atomics.load(this.ring, RING_WRITE) // a previous worker in the slot may have left lines
    if (pending.length > 0 && this.reserve(pending.length)) this.commit(this.len + pending.copy(this.buf, this.len))
  }

  /**
   * The primary in worker mode: write these workers' rings out with this
   * sink's own lines. `out` is stdout as a libuv stream (process.stdout),
   * written instead of fs.write when the descriptor is a pipe or socket: once
   * a Worker exists, Node has made that descriptor non-blocking (it pipes the
   * worker's process.stdout into the primary's), so fs.write would get EAGAIN
   * whenever the reader lags and could only retry on a timer, while the stream
   * writes at once on this thread (no hop to the libuv thread pool) and waits
   * for the descriptor to become writable. One batch in flight either way.
   */
  addRings (rings: readonly SharedArrayBuffer[], out: Writable | null): void {
    for (const sab of rings) this.rings.push(new LogRing(sab))
    if (out !== null && this.stream && this.path === null && this.out === null) {
      out.on('error', () => {}) // EPIPE (nobody reads stdout): each write's callback counts it
      this.out = out
    }
    this.setBatch()
  }

  /** Their worker pool is gone: write what the rings hold, then forget them. */
  retireRings (rings: readonly SharedArrayBuffer[]): void {
    for (const ring of this.rings) if (rings.includes(ring.sab)) ring.retired = true
    this.tick()
  }

  /** The timer: forget rings that are retired and written out, start a write. */
  tick (): void {
    const rings = this.rings
    if (rings.length > 0) {
      let kept = 0
      for (const ring of rings) {
        if (ring.retired && !this.pieceSources.includes(ring) && ring.span() === 0) continue
        rings[kept++] = ring
      }
      if (kept < rings.length) {
        rings.length = kept
        this.cursor = 0
        if (kept === 0) this.setBatch()
      }
    }
    this.flush()
  }

  /**
   * Start writing what is held, up to a batch, in one write (no-op while a
   * write is in flight or nothing is held): first the rest of a line the last
   * write stopped in, then every source in turn (the first one changes from
   * write to write), each cut at its last line end that fits.
   */
  flush (): void {
    if (this.writing !== 0 || this.retryTimer !== null || this.held || this.ring !== null) return
    let budget = this.batchBytes
    const unfinished = this.unfinished
    if (unfinished !== null) budget = this.take(unfinished, budget)
    const rings = this.rings
    const n = rings.length
    for (let i = 0; i <= n && budget > 0; i++) {
      const k = (this.cursor + i) % (n + 1)
      const source = k === n ? 'own' : rings[k]
      if (source !== unfinished) budget = this.take(source, budget)
    }
    this.cursor = this.cursor >= n ? 0 : this.cursor + 1
    const count = this.pieceSources.length
    if (count === 0) return
    const total = this.batchBytes - budget
    this.writing = total
    const out = this.out
    if (out !== null) { // one writev for the pieces (corked), called back when all is written
      out.cork()
      for (let i = 0; i < count; i++) {
        const source = this.pieceSources[i]
        const from = this.pieceStarts[i]
        const piece = (source === 'own' ? this.buf : source.data).subarray(from, from + this.pieceBytes[i])
        if (i < count - 1) out.write(piece)
        else out.write(piece, this.onStreamWritten)
      }
      out.uncork()
      return
    }
    if (count === 1) {
      const source = this.pieceSources[0]
      fs.write(this.fd, source === 'own' ? this.buf : source.data, this.pieceStarts[0], total, null, this.onWritten)
      return
    }
    const views: Buffer[] = []
    for (let i = 0; i < count; i++) {
      const source = this.pieceSources[i]
      const from = this.pieceStarts[i]
      views.push((source === 'own' ? this.buf : source.data).subarray(from, from + this.pieceBytes[i]))
    }
    fs.writev(this.fd, views, null, this.onWritten)
  }

  /** Adds what `source` holds to the write being gathered, within `budget` bytes; returns the budget left. */
  private take (source: Source, budget: number): number {
    let buf: Buffer
    let from: number
    let bytes: number
    if (source === 'own') {
      buf = this.buf
      from = this.start
      bytes = this.len - from
    } else {
      bytes = source.span()
      buf = source.data
      from = source.from
    }
    if (bytes === 0) return budget
    if (bytes > budget) {
      bytes = buf.lastIndexOf(0x0a, from + budget - 1) + 1 - from
      if (bytes <= 0) {
        if (this.pieceSources.length > 0) return budget // its next line does not fit: the next write
        bytes = budget // a line longer than a batch: in pieces, nothing between them
      }
    }
    this.pieceSources.push(source)
    this.pieceStarts.push(from)
    this.pieceBytes.push(bytes)
    if (source === 'own') this.ownInFlight = true
    return budget - bytes
  }

  private written (err: NodeJS.ErrnoException | null, written: number): void {
    const fd = this.fd
    const total = this.writing
    this.writing = 0
    if (this.ring !== null) { this.clearPieces(); return } // a worker's own write in flight when it moved to its ring
    if (err !== null) {
      if (err.code === 'EAGAIN') {
        this.clearPieces()
        this.retryTimer = setTimeout(retryFlush, RETRY_MS, this)
        this.retryTimer.unref()
        return
      }
      // EPIPE, EBADF, ENOSPC...: what this write held is lost; count it as one drop and go on
      this.dropped++
      written = total
    }
    // hand the bytes written back to their sources, in order
    let left = written
    for (let i = 0; i < this.pieceSources.length; i++) {
      const source = this.pieceSources[i]
      const from = this.pieceStarts[i]
      const took = Math.min(left, this.pieceBytes[i])
      left -= took
      if (took === 0) break
      // (`buf` may have grown meanwhile: same offsets)
      const lineEnded = (source === 'own' ? this.buf : source.data)[from + took - 1] === 0x0a
      this.unfinished = lineEnded ? null : source
      if (source === 'own') this.start = from + took
      else source.consumed(from + took)
    }
    this.clearPieces()
    if (this.start === this.len) {
      this.start = 0
      this.len = 0
    } else if (this.start > this.buf.length >> 1) {
      this.compact()
    }
    if (this.closeAfterWrite) { this.closeAfterWrite = false; closeQuietly(fd) }
    if (this.unfinished !== null || this.batchReady() || (this.waiters.length > 0 && this.pending())) { this.flush(); return }
    if (!this.pending()) this.wake()
  }

  private clearPieces (): void {
    this.pieceSources.length = 0
    this.pieceStarts.length = 0
    this.pieceBytes.length = 0
    this.ownInFlight = false
  }

  /** A batch's worth is held. */
  private batchReady (): boolean {
    let held = this.len - this.start
    for (const ring of this.rings) held += ring.span()
    return held >= this.batchBytes
  }

  /** Anything to write. */
  private pending (): boolean {
    if (this.len !== this.start) return true
    for (const ring of this.rings) if (ring.span() > 0) return true
    return false
  }

  private wake (): void {
    const waiters = this.waiters.splice(0)
    for (const w of waiters) w()
  }

  /**
   * Resolves when everything held now is written (on the primary: the
   * workers' rings too), or after `timeoutMs` (a stalled reader). A worker's
   * lines in its ring are the primary's to write: nothing to wait for here.
   */
  async drain (timeoutMs: number): Promise<void> {
    if (this.ring !== null || this.held) return
    if (this.writing === 0 && !this.pending()) return
    await new Promise<void>((resolve) => {
      // ref'd: it keeps the process alive until the lines are out or the deadline passes. (Unref'd,
      // a full non-blocking pipe left nothing but the unref'd EAGAIN retry, and the process could
      // end there, lines and all: stdout is non-blocking once a Worker exists, as Node pipes the
      // worker's process.stdout into the primary's.)
      const timer = setTimeout(resolve, timeoutMs)
      this.waiters.push(() => { clearTimeout(timer); resolve() })
      this.flush()
    })
  }

  /** logrotate moved the file: open the path again; the old descriptor closes once its write is done. */
  reopen (): void {
    if (this.path === null) return
    let fd: number
    try {
      fd = openAppend(this.path)
    } catch {
      return // keep writing where we were rather than nowhere
    }
    const old = this.fd
    this.fd = fd
    if (this.writing !== 0) this.closeAfterWrite = true
    else closeQuietly(old)
  }

  /** Stop the timer and close a file this sink opened (after writing what it holds, within `timeoutMs`). */
  async close (timeoutMs: number): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    await this.drain(timeoutMs)
    if (this.path !== null) {
      if (this.writing !== 0) this.closeAfterWrite = true
      else closeQuietly(this.fd)
    }
  }
}

function startTimer (sink: LogSink, ms: number): NodeJS.Timeout {
  const timer = setInterval(flushOnTimer, ms, sink)
  timer.unref()
  return timer
}

function openAppend (path: string): number {
  return fs.openSync(path, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o644)
}

function closeQuietly (fd: number): void {
  fs.close(fd, () => {})
}

function flushOnTimer (sink: LogSink): void { sink.tick() }

function retryFlush (sink: LogSink): void {
  sink.retryTimer = null
  sink.flush()
}
