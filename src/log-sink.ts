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
 * Batches are cut at a line end within PIPE_BUF (4096) bytes. In worker mode
 * several threads write to the same stdout, and a write of at most PIPE_BUF
 * bytes to a pipe is atomic (POSIX write(2)) while a larger one may interleave
 * with another thread's when the pipe is full. Measured, small batches are also
 * the cheapest per line in the writing process, to a file or /dev/null (the
 * bytes are still in cache when the kernel copies them): about 1 µs of CPU per
 * line in all, against 2 µs with 16-256 KiB batches (bench/log-cost.ts). To a
 * pipe or socket that another process reads, though, every batch wakes the
 * reader, and on loaded cores that cost more than the line (the bench's
 * --access-log runs: +38 µs per request with 4 KiB batches, +15 µs with
 * 64 KiB, sequential mode): a thread that writes to one alone (sequential
 * mode: `exclusive`) uses 64 KiB batches there.
 *
 * Bounded: past MAX_PENDING_BYTES (a log reader that stopped reading) lines
 * are dropped and counted, never buffered without limit; a write error
 * (EPIPE: nobody reads stdout) drops what is pending and keeps serving.
 */
import * as fs from 'node:fs'

const INITIAL_BYTES = 64 * 1024
const MAX_PENDING_BYTES = 8 * 1024 * 1024
/** Largest write, and the size that starts one (else the timer does). */
const BATCH_BYTES = 4096
/** The same to a pipe or socket this thread alone writes to. */
const EXCLUSIVE_STREAM_BATCH_BYTES = 64 * 1024
const FLUSH_INTERVAL_MS = 100
/** EAGAIN (a non-blocking pipe that is full): try again after this long. */
const RETRY_MS = 10

export class LogSink {
  buf: Buffer = Buffer.allocUnsafeSlow(INITIAL_BYTES)
  /** First byte not yet written. */
  start = 0
  /** End of the bytes held in `buf`. */
  len = 0
  /** Bytes at the front of `buf` that a write in flight is taking (0: none in flight). */
  private writing = 0
  /** Lines dropped because the output did not keep up or failed. */
  dropped = 0
  private fd: number
  /** The file this sink opened (closed and reopened by reopen()), or null for a descriptor it was given. */
  readonly path: string | null
  private closeAfterWrite = false
  /** Set while waiting to retry after EAGAIN. */
  retryTimer: NodeJS.Timeout | null = null
  private readonly timer: NodeJS.Timeout
  private readonly waiters: Array<() => void> = []
  /** The descriptor is a pipe or a socket (another process reads it). */
  private stream = false
  /** Largest write, and the size that starts one. */
  private batchBytes = BATCH_BYTES

  /** A sink on an open descriptor (stdout: 1), or on a file opened for appending. */
  constructor (target: number | string) {
    this.path = typeof target === 'string' ? target : null
    this.fd = typeof target === 'string' ? openAppend(target) : target
    try {
      const st = fs.fstatSync(this.fd)
      this.stream = st.isFIFO() || st.isSocket()
    } catch { /* unknown: small batches */ }
    this.timer = setInterval(flushOnTimer, FLUSH_INTERVAL_MS, this)
    this.timer.unref()
  }

  /** No other thread writes to this descriptor (sequential mode): large batches to a pipe or socket. */
  setExclusive (exclusive: boolean): void {
    this.batchBytes = exclusive && this.stream ? EXCLUSIVE_STREAM_BATCH_BYTES : BATCH_BYTES
  }

  /**
   * Room for `bytes` more at buf[len]: returns false (and counts a dropped
   * line) when that would pass MAX_PENDING_BYTES. The caller writes into
   * `buf` from `len` and then calls commit().
   */
  reserve (bytes: number): boolean {
    let need = this.len + bytes
    if (need <= this.buf.length) return true
    if (this.start > 0 && this.writing === 0) { // room at the front: move what is pending there
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

  /** The bytes up to `end` are complete lines: keep them, write when a batch is full. */
  commit (end: number): void {
    this.len = end
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

  /** Start writing what is held (no-op while a write is in flight or nothing is held). */
  flush (): void {
    const start = this.start
    if (this.writing !== 0 || this.len === start || this.retryTimer !== null) return
    let bytes = this.len - start
    const batch = this.batchBytes
    if (bytes > batch) {
      bytes = this.buf.lastIndexOf(0x0a, start + batch - 1) + 1 - start
      if (bytes <= 0) bytes = batch // a line longer than a batch: it cannot be atomic anyway
    }
    this.writing = bytes
    fs.write(this.fd, this.buf, start, bytes, null, (err, written) => { this.written(err, written) })
  }

  private written (err: NodeJS.ErrnoException | null, written: number): void {
    const fd = this.fd
    if (err !== null) {
      if (err.code === 'EAGAIN') {
        this.writing = 0
        this.retryTimer = setTimeout(retryFlush, RETRY_MS, this)
        this.retryTimer.unref()
        return
      }
      // EPIPE, EBADF, ENOSPC...: what is pending is lost; count it as one drop and go on
      this.dropped++
      written = this.len - this.start
    }
    this.start += written
    this.writing = 0
    if (this.start === this.len) {
      this.start = 0
      this.len = 0
    } else if (this.start > this.buf.length >> 1) {
      this.compact()
    }
    if (this.closeAfterWrite) { this.closeAfterWrite = false; closeQuietly(fd) }
    const pending = this.len - this.start
    if (pending >= this.batchBytes || (pending > 0 && this.waiters.length > 0)) { this.flush(); return }
    if (pending === 0) this.wake()
  }

  private wake (): void {
    const waiters = this.waiters.splice(0)
    for (const w of waiters) w()
  }

  /** Resolves when everything held now is written, or after `timeoutMs` (a stalled reader). */
  async drain (timeoutMs: number): Promise<void> {
    if (this.len === this.start && this.writing === 0) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs)
      timer.unref()
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
    clearInterval(this.timer)
    await this.drain(timeoutMs)
    if (this.path !== null) {
      if (this.writing !== 0) this.closeAfterWrite = true
      else closeQuietly(this.fd)
    }
  }
}

function openAppend (path: string): number {
  return fs.openSync(path, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o644)
}

function closeQuietly (fd: number): void {
  fs.close(fd, () => {})
}

function flushOnTimer (sink: LogSink): void { sink.flush() }

function retryFlush (sink: LogSink): void {
  sink.retryTimer = null
  sink.flush()
}
