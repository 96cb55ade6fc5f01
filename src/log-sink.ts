/**
 * Where a thread's log lines go: bytes appended to one preallocated buffer,
 * written out asynchronously (fs.write) when it holds `flushAt` bytes or every
 * FLUSH_INTERVAL_MS, whichever is first. One sink per destination per thread
 * (stdout, and the access-log file when `log.accessFile` is set).
 *
 *   buf: [ being written (0..writing) | appended meanwhile ... len | free ... ]
 *
 * A write takes buf[0, cut) where cut ends on a line; bytes appended while it
 * is in flight land after `len` and move to the front when it completes. So
 * a line costs a copy into memory, and a system call is paid per batch, not
 * per line (pino's sonic-boom does the same with a string it grows; building
 * bytes in place skips the string concatenation and its UTF-8 encoding).
 *
 * Several threads write to the same stdout. A write of at most PIPE_BUF
 * (4096) bytes to a pipe is atomic (POSIX write(2)), a larger one may
 * interleave with another thread's, so batches to a pipe or socket are cut at
 * a line end within 4096 bytes; files and terminals take large batches.
 *
 * Bounded: past MAX_PENDING_BYTES (a log reader that stopped reading) lines
 * are dropped and counted, never buffered without limit; a write error
 * (EPIPE: nobody reads stdout) drops what is pending and keeps serving.
 */
import * as fs from 'node:fs'

const INITIAL_BYTES = 64 * 1024
const MAX_PENDING_BYTES = 8 * 1024 * 1024
const PIPE_BUF = 4096
const FILE_BATCH = 256 * 1024
const FLUSH_INTERVAL_MS = 100
/** EAGAIN (a non-blocking pipe that is full): try again after this long. */
const RETRY_MS = 10

export class LogSink {
  buf: Buffer = Buffer.allocUnsafeSlow(INITIAL_BYTES)
  /** Bytes held in `buf`. */
  len = 0
  /** Bytes at the front of `buf` that a write in flight is taking (0: none in flight). */
  private writing = 0
  /** Largest single write: PIPE_BUF for pipes and sockets (see above). */
  private maxWrite = FILE_BATCH
  /** Write when this much is held (else on the timer). */
  flushAt = FILE_BATCH
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

  /** A sink on an open descriptor (stdout: 1), or on a file opened for appending. */
  constructor (target: number | string) {
    this.path = typeof target === 'string' ? target : null
    this.fd = typeof target === 'string' ? openAppend(target) : target
    this.measureTarget()
    this.timer = setInterval(flushOnTimer, FLUSH_INTERVAL_MS, this)
    this.timer.unref()
  }

  private measureTarget (): void {
    let atomic = true
    try {
      const st = fs.fstatSync(this.fd)
      atomic = st.isFIFO() || st.isSocket()
    } catch { /* unknown: stay on the safe side */ }
    this.maxWrite = atomic ? PIPE_BUF : FILE_BATCH
    // to a pipe: a batch per PIPE_BUF; elsewhere 16 KiB at least per system call
    this.flushAt = atomic ? PIPE_BUF : 16 * 1024
  }

  /**
   * Room for `bytes` more at buf[len]: returns false (and counts a dropped
   * line) when that would pass MAX_PENDING_BYTES. The caller writes into
   * `buf` from `len` and then calls commit().
   */
  reserve (bytes: number): boolean {
    const need = this.len + bytes
    if (need <= this.buf.length) return true
    if (need > MAX_PENDING_BYTES) { this.dropped++; return false }
    let size = this.buf.length * 2
    while (size < need) size *= 2
    const grown = Buffer.allocUnsafeSlow(Math.min(size, MAX_PENDING_BYTES))
    this.buf.copy(grown, 0, 0, this.len) // a write in flight keeps the old buffer alive
    this.buf = grown
    return true
  }

  /** The bytes up to `end` are complete lines: keep them, write when a batch is full. */
  commit (end: number): void {
    this.len = end
    if (end >= this.flushAt && this.writing === 0) this.flush()
  }

  /** A whole line (or lines) as a string: pino's destination interface. */
  write (text: string): boolean {
    if (this.reserve(text.length * 3)) this.commit(this.len + this.buf.write(text, this.len, 'utf8'))
    return true
  }

  /** Start writing what is held (no-op while a write is in flight or nothing is held). */
  flush (): void {
    if (this.writing !== 0 || this.len === 0 || this.retryTimer !== null) return
    let cut = this.len
    if (cut > this.maxWrite) {
      cut = this.buf.lastIndexOf(0x0a, this.maxWrite - 1) + 1
      if (cut === 0) cut = this.maxWrite // a line longer than a batch: it cannot be atomic anyway
    }
    this.writing = cut
    fs.write(this.fd, this.buf, 0, cut, null, (err, written) => { this.written(err, written) })
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
      written = this.len
    }
    this.buf.copyWithin(0, written, this.len)
    this.len -= written
    this.writing = 0
    if (this.closeAfterWrite) { this.closeAfterWrite = false; closeQuietly(fd) }
    if (this.len >= this.flushAt || (this.len > 0 && this.waiters.length > 0)) { this.flush(); return }
    if (this.len === 0) this.wake()
  }

  private wake (): void {
    const waiters = this.waiters.splice(0)
    for (const w of waiters) w()
  }

  /** Resolves when everything held now is written, or after `timeoutMs` (a stalled reader). */
  async drain (timeoutMs: number): Promise<void> {
    if (this.len === 0 && this.writing === 0) return
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
    this.measureTarget()
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
