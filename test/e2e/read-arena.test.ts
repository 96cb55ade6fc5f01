/**
 * The read arena (src/net/read-arena.ts), end to end: plain TCP sockets read
 * into ONE reused 64 KiB buffer per thread (upstream sockets in every mode,
 * client sockets in worker mode), so anything the proxy keeps past a read
 * callback (pipelined input, a request head the access log reads later, a
 * body waiting for its upstream or kept for a retry, a cache fill, a buffer
 * handed to socket.write() that the kernel did not take at once) must be a
 * copy. A missed copy does not crash anything: one connection's bytes are
 * overwritten by another connection's later read. So every scenario runs many
 * connections at once (their reads interleave in the arena) and checks every
 * byte against what that connection or request must get:
 *
 * 1. Pipelined GETs, one write or cut at awkward places (inside CRLFCRLF,
 *    mid-value, a byte at a time): each response answers its own request, in
 *    order, and the upstream saw exactly the header lines sent.
 * 2. Request bodies over 16 KiB (not coalesced with the head) and over
 *    64 KiB, Content-Length and chunked, sent in pieces; some to an upstream
 *    that stops reading a while, and two of 5 MiB to an upstream held until
 *    other requests went through: the proxy's writes to it must have queued in
 *    node (loopback takes ~4 MB per connection before a write stays queued).
 * 3. Responses of 100 KiB - 1 MiB, Content-Length and chunked (spans over
 *    16 KiB), to clients that pause and resume while other connections keep
 *    the proxy busy; the slow ones pipeline ~5 MiB each, for the same reason.
 * 4. The access log: every line's path, Host, User-Agent and Referer are the
 *    request's own (they are read from the parsed head when the response
 *    ends), each request exactly once.
 * 5. The cache: concurrent fills of distinct URLs over 64 KiB among other
 *    traffic, then hits, byte-exact; the responses vary on a request field,
 *    which the cache reads from the request head again when it stores them.
 * 6. Retries: an upstream resets the first attempt of every request after
 *    reading its whole body (sent in pieces, each after the upstream had the
 *    previous one); the replay of the kept body is byte-exact.
 *
 * Bodies are made of 16-byte units `TAG` + the unit's index in hex + `.;`, TAG
 * naming the connection and request, so a mismatch message shows whose bytes
 * (or which HTTP head) landed where. Runs in sequential mode (only upstream
 * sockets read into the arena there), with 2 workers, and with 1 worker (every
 * client and upstream socket of the proxy then shares one arena).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as net from 'node:net'
import * as http from 'node:http'
import { once } from 'node:events'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MODES, startLb, type RunningLb } from './harness'
import { waitFor, listenHttp, type TestServer } from '../helpers'

/** Every mode of the suite, and one worker: then every socket of the proxy reads into the same arena. */
const ARENA_MODES = [...MODES, { name: 'workers=1', workers: 1 }] as const

const KiB = 1024
const MiB = 1024 * KiB
/** Deadline for one exchange or one awaited condition (generous: a 2-core machine shared with others). */
const STEP_MS = 30_000

// ---- seeded randomness (SWY_ARENA_SEED to vary or replay it) -----------------------------

const SEED = Number(process.env.SWY_ARENA_SEED ?? 20261202)

/** mulberry32: small, fast, good enough to pick sizes and cut points. */
function random (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
function between (r: () => number, lo: number, hi: number): number { return lo + Math.floor(r() * (hi - lo + 1)) }
function seedOf (text: string): number { return createHash('sha256').update(`${SEED}:${text}`).digest().readUInt32LE(0) }

// ---- the byte pattern ---------------------------------------------------------------------

const UNIT = 16
const HEX = Buffer.from('0123456789abcdef', 'latin1')

/** A six-character name for request `req` of connection `conn` in scenario `s` (one letter). */
function tagOf (s: string, conn: number, req: number): string {
  return `${s}${conn.toString(36).padStart(2, '0')}.${req.toString(36).padStart(2, '0')}`
}

/**
 * Bytes [start, end) of the stream named `tag`: 16-byte units, `tag` + the
 * unit's index as 8 hex digits + `.;`. Printable and legal in a target, a
 * field value and a body alike; any unit that moved or came from another
 * stream differs.
 */
function pattern (tag: string, start: number, end: number): Buffer {
  assert.equal(tag.length, 6, `tag ${tag}`)
  const first = Math.floor(start / UNIT)
  const last = Math.ceil(end / UNIT)
  const out = Buffer.allocUnsafe((last - first) * UNIT)
  out.fill(`${tag}00000000.;`, 'latin1')
  for (let u = first, o = 6; u < last; u++, o += UNIT) {
    let v = u
    for (let d = 7; d >= 0; d--) { out[o + d] = HEX[v & 15]; v >>>= 4 }
  }
  return out.subarray(start - first * UNIT, end - first * UNIT)
}

function sha256 (b: Buffer): string { return createHash('sha256').update(b).digest('hex') }

/** Where `got` first differs from `expected` (which starts at stream offset `offset`), with both sides' bytes there. */
function describeMismatch (offset: number, expected: Buffer, got: Buffer): string {
  let i = 0
  const n = Math.min(expected.length, got.length)
  while (i < n && expected[i] === got[i]) i++
  const from = Math.max(0, i - 16)
  return `at byte ${offset + i}: expected ${JSON.stringify(expected.toString('latin1', from, i + 48))}, got ${JSON.stringify(got.toString('latin1', from, i + 48))}`
}

interface BodySink { data (chunk: Buffer): void }

/** Checks a body against pattern(tag) as it streams in: no copy of the body is kept. */
class PatternCheck implements BodySink {
  received = 0
  /** '' while every byte matched, else where the first one did not. */
  mismatch = ''
  constructor (readonly tag: string, readonly length: number) {}

  data (chunk: Buffer): void {
    const at = this.received
    this.received += chunk.length
    if (this.mismatch !== '') return
    if (this.received > this.length) { this.mismatch = `${this.received} bytes, over the ${this.length} expected`; return }
    const expected = pattern(this.tag, at, at + chunk.length)
    if (!expected.equals(chunk)) this.mismatch = describeMismatch(at, expected, chunk)
  }

  /** Every byte there and right. */
  verdict (): string {
    if (this.mismatch !== '') return `${this.tag}: ${this.mismatch}`
    if (this.received !== this.length) return `${this.tag}: ${this.received} bytes, expected ${this.length}`
    return ''
  }
}

/** Keeps a (small) body whole. */
class Collect implements BodySink {
  readonly chunks: Buffer[] = []
  data (chunk: Buffer): void { this.chunks.push(chunk) }
  get body (): Buffer { return Buffer.concat(this.chunks) }
  json (): Record<string, unknown> { return JSON.parse(this.body.toString('latin1')) as Record<string, unknown> }
}

// ---- waiting, bounded -------------------------------------------------------------------

async function within<T> (p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no progress within ${ms} ms: ${what()}`)), ms)
  })
  try {
    return await Promise.race([p, deadline])
  } finally {
    clearTimeout(timer)
  }
}

/** One turn of the event loop (a poll phase included): consecutive writes leave as separate segments. */
async function yieldToLoop (): Promise<void> { await new Promise((resolve) => setImmediate(resolve)) }

/** Runs `n` connections' work at once; fails listing every connection that failed (up to 6 of them). */
async function allConnections (n: number, work: (i: number) => Promise<void>): Promise<void> {
  const results = await Promise.allSettled(Array.from({ length: n }, async (_, i) => await work(i)))
  const failed = results.flatMap((r, i) => r.status === 'rejected' ? [`#${i}: ${(r.reason as Error).message}`] : [])
  if (failed.length > 0) assert.fail(`${failed.length} of ${n} connections failed:\n${failed.slice(0, 6).join('\n')}`)
}

// ---- the client side: the test's own HTTP/1.1 response framing ------------------------------

interface ResponseHead { status: number, headers: Record<string, string>, text: string }

const CRLF = Buffer.from('\r\n')
const CRLFCRLF = Buffer.from('\r\n\r\n')

/**
 * A stream of responses (Content-Length or chunked bodies, no 1xx expected),
 * fed as it arrives; body bytes go to the sink `onHead` returns, de-chunked,
 * without copying the body.
 */
class ResponseReader {
  error = ''
  private pending: Buffer = Buffer.alloc(0)
  private state: 'head' | 'length' | 'size' | 'data' | 'dataEnd' | 'trailer' = 'head'
  private remaining = 0
  private sink: BodySink | null = null

  constructor (private readonly onHead: (head: ResponseHead) => BodySink, private readonly onEnd: () => void) {}

  feed (chunk: Buffer): void {
    const buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk])
    this.pending = Buffer.alloc(0)
    let pos = 0
    while (pos < buf.length && this.error === '') {
      switch (this.state) {
        case 'head': {
          const end = buf.indexOf(CRLFCRLF, pos)
          if (end === -1) { this.keep(buf, pos); return }
          const text = buf.toString('latin1', pos, end)
          pos = end + 4
          const lines = text.split('\r\n')
          const status = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0])
          if (status === null) { this.error = `bad status line ${JSON.stringify(lines[0].slice(0, 80))}`; return }
          const headers: Record<string, string> = {}
          for (const line of lines.slice(1)) {
            const c = line.indexOf(':')
            const name = line.slice(0, c).toLowerCase()
            const value = line.slice(c + 1).trim()
            headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`
          }
          this.sink = this.onHead({ status: Number(status[1]), headers, text })
          if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
            this.state = 'size'
          } else {
            this.remaining = Number(headers['content-length'] ?? 0)
            if (this.remaining === 0) this.finish()
            else this.state = 'length'
          }
          break
        }
        case 'length':
        case 'data': {
          const n = Math.min(this.remaining, buf.length - pos)
          ;(this.sink as BodySink).data(buf.subarray(pos, pos + n))
          this.remaining -= n
          pos += n
          if (this.remaining === 0) {
            if (this.state === 'length') this.finish()
            else this.state = 'dataEnd'
          }
          break
        }
        case 'size': {
          const end = buf.indexOf(CRLF, pos)
          if (end === -1) { this.keep(buf, pos); return }
          const size = parseInt(buf.toString('latin1', pos, end).split(';')[0], 16)
          if (!Number.isInteger(size)) { this.error = `bad chunk size line ${JSON.stringify(buf.toString('latin1', pos, end))}`; return }
          pos = end + 2
          if (size === 0) this.state = 'trailer'
          else { this.remaining = size; this.state = 'data' }
          break
        }
        case 'dataEnd':
          if (buf.length - pos < 2) { this.keep(buf, pos); return }
          if (buf[pos] !== 0x0d || buf[pos + 1] !== 0x0a) { this.error = 'no CRLF after chunk data'; return }
          pos += 2
          this.state = 'size'
          break
        case 'trailer': {
          const end = buf.indexOf(CRLF, pos)
          if (end === -1) { this.keep(buf, pos); return }
          const empty = end === pos
          pos = end + 2
          if (empty) this.finish()
          break
        }
      }
    }
  }

  private keep (buf: Buffer, pos: number): void { this.pending = buf.subarray(pos) }

  private finish (): void {
    this.state = 'head'
    this.sink = null
    this.onEnd()
  }
}

interface Answer<S extends BodySink> { head: ResponseHead, sink: S }
interface Waiter { sink: BodySink, head: ResponseHead | null, resolve: (a: Answer<BodySink>) => void, reject: (err: Error) => void }

/** One client connection: raw writes, responses taken in order by whoever asked for them with next(). */
class Conn {
  readonly socket: net.Socket
  /** Response bytes read so far. */
  bytes = 0
  private readonly waiting: Waiter[] = []
  private readonly reader: ResponseReader
  private failure = ''

  private constructor (socket: net.Socket, readonly label: string) {
    this.socket = socket
    this.reader = new ResponseReader((head) => this.onHead(head), () => this.onEnd())
    socket.on('data', (chunk: Buffer) => {
      this.bytes += chunk.length
      this.reader.feed(chunk)
      if (this.reader.error !== '') this.fail(`unreadable response: ${this.reader.error}`)
    })
    socket.on('error', (err) => this.fail(`socket error ${err.message}`))
    socket.on('close', () => this.fail('connection closed'))
  }

  static async open (port: number, label: string): Promise<Conn> {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true })
    socket.on('error', () => {})
    await within(once(socket, 'connect'), STEP_MS, () => `${label}: connect`)
    return new Conn(socket, label)
  }

  /**
   * The next response not yet asked for goes to `sink`; resolves once its body
   * is complete. Ask before sending (a response may come back at once). The
   * promise may reject before anyone awaits it (a pipelined answer when the
   * connection fails): that is not an unhandled rejection, whoever awaits it
   * still gets the error.
   */
  next<S extends BodySink> (sink: S): Promise<Answer<S>> {
    const p = new Promise<Answer<S>>((resolve, reject) => {
      if (this.failure !== '') reject(new Error(`${this.label}: ${this.failure}`))
      else this.waiting.push({ sink, head: null, resolve: resolve as (a: Answer<BodySink>) => void, reject })
    })
    p.catch(() => {})
    return p
  }

  /** Write, waiting (bounded) for node to take it when the socket is full. */
  async write (data: Buffer | string): Promise<void> {
    if (!this.socket.write(data)) await this.drained()
  }

  /** Resolves once node has handed what was written to the kernel (bounded). */
  async drained (): Promise<void> {
    if (!this.socket.writableNeedDrain) return
    await within(new Promise<void>((resolve) => {
      const done = (): void => { this.socket.off('drain', done); this.socket.off('close', done); resolve() }
      this.socket.on('drain', done)
      this.socket.on('close', done)
    }), STEP_MS, () => `${this.label}: the proxy stopped reading a request`)
    if (this.failure !== '') throw new Error(`${this.label}: ${this.failure} while sending`)
  }

  /** Await an answer, bounded, with this connection's state in the message. */
  async answer<S extends BodySink> (p: Promise<Answer<S>>, what: string): Promise<Answer<S>> {
    return await within(p, STEP_MS, () => `${this.label}: ${what} (${this.bytes} response bytes read, ${this.waiting.length} responses outstanding)`)
  }

  private onHead (head: ResponseHead): BodySink {
    const w = this.waiting[0]
    if (w === undefined) { this.fail(`a response nobody asked for: ${JSON.stringify(head.text.slice(0, 200))}`); return new Collect() }
    w.head = head
    return w.sink
  }

  private onEnd (): void {
    const w = this.waiting.shift()
    if (w !== undefined) w.resolve({ head: w.head as ResponseHead, sink: w.sink })
  }

  private fail (why: string): void {
    if (this.failure === '') this.failure = why
    for (const w of this.waiting.splice(0)) w.reject(new Error(`${this.label}: ${why}${w.head !== null ? ` (in the body of ${JSON.stringify(w.head.text.slice(0, 120))})` : ''}`))
  }

  close (): void { this.socket.destroy() }
}

/** Opens `n` connections, closes them all when `body` is done (passed or failed). */
async function withConns (port: number, n: number, label: string, body: (conns: Conn[]) => Promise<void>): Promise<void> {
  const conns: Conn[] = []
  try {
    for (let i = 0; i < n; i++) conns.push(await Conn.open(port, `${label}#${i}`))
    await body(conns)
  } finally {
    for (const c of conns) c.close()
  }
}

// ---- the upstream ---------------------------------------------------------------------

/** What the upstreams saw, shared by the upstreams of one test. */
interface UpstreamLog {
  /** Requests per X-Request-Id (echo) or tag (bodies, responses): attempts, in order. */
  seen: Map<string, number>
  /** Body bytes the current attempt of a tag has received. */
  progress: Map<string, number>
  /** A body of this tag stays unread until the promise resolves. */
  holds: Map<string, Promise<void>>
}

function newLog (): UpstreamLog { return { seen: new Map(), progress: new Map(), holds: new Map() } }
function count (map: Map<string, number>, key: string): number {
  const n = (map.get(key) ?? 0) + 1
  map.set(key, n)
  return n
}

/**
 * node:http upstream with three kinds of path:
 *
 * - `/echo/...?d=MS`: after MS ms, JSON of the method, target and raw header
 *   lines it got (X-Request-Id counted in `seen`).
 * - `/body/TAG?n=BYTES[&p=MS][&reset=1]`: reads the body (after leaving it
 *   unread for MS ms, or until `holds` says so: node then stops reading the
 *   socket and the proxy's writes back up), checks it against pattern(TAG)
 *   as it streams in, and answers JSON with its length, SHA-256, first
 *   mismatch and attempt number.
 *   With reset=1 the first attempt of a TAG reads the whole body and then
 *   closes the connection without a response byte.
 * - `/resp/TAG/BYTES/cl|ch[?cache=1][&gap=1]`: pattern(TAG) as the body,
 *   Content-Length or chunked, written in pieces of 17-96 KiB (a turn of the
 *   loop between pieces with gap=1), cacheable for 300 s with cache=1 (and
 *   varying on X-Variant: the cache reads that request field again when it
 *   stores the response, after the request's own read).
 */
async function startUpstream (name: string, log: UpstreamLog): Promise<TestServer> {
  const server = http.createServer({ maxHeaderSize: 64 * KiB }, (req, res) => {
    result.count++
    const url = new URL(req.url ?? '/', 'http://upstream')
    const parts = url.pathname.split('/')
    const q = (k: string): number => Number(url.searchParams.get(k) ?? 0)
    if (parts[1] === 'echo') {
      count(log.seen, String(req.headers['x-request-id']))
      req.resume()
      req.on('end', () => {
        const answer = (): void => {
          const payload = JSON.stringify({ name, method: req.method, url: req.url, rawHeaders: req.rawHeaders })
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) })
          res.end(payload)
        }
        const delay = q('d')
        if (delay > 0) setTimeout(answer, delay)
        else answer()
      })
      return
    }
    if (parts[1] === 'body') {
      const tag = parts[2]
      const attempt = count(log.seen, tag)
      log.progress.set(tag, 0)
      const check = new PatternCheck(tag, q('n'))
      const hash = createHash('sha256')
      const resetThis = q('reset') === 1 && attempt === 1
      const consume = (): void => {
        req.on('data', (c: Buffer) => {
          check.data(c)
          hash.update(c)
          log.progress.set(tag, check.received)
        })
        req.on('end', () => {
          if (resetThis) { req.socket.destroy(); return }
          const payload = JSON.stringify({ name, tag, attempt, length: check.received, sha256: hash.digest('hex'), mismatch: check.mismatch })
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) })
          res.end(payload)
        })
      }
      // unread meanwhile: node stops reading the socket once 16 KiB wait in `req`
      const hold = log.holds.get(tag)
      if (hold !== undefined) void hold.then(consume)
      else if (q('p') > 0) setTimeout(consume, q('p'))
      else consume()
      return
    }
    if (parts[1] === 'resp') {
      const tag = parts[2]
      const size = Number(parts[3])
      count(log.seen, tag)
      req.resume()
      const headers: Record<string, string> = {
        'content-type': 'application/octet-stream',
        'x-tag': tag,
        'cache-control': q('cache') === 1 ? 'public, max-age=300' : 'no-store',
      }
      if (q('cache') === 1) headers.vary = 'X-Variant'
      if (parts[4] === 'cl') headers['content-length'] = String(size)
      res.writeHead(200, headers)
      const r = random(seedOf(`pieces ${tag}`))
      const gap = q('gap') === 1
      let sent = 0
      const pump = (): void => {
        while (sent < size && !res.destroyed) {
          const n = Math.min(size - sent, between(r, 17 * KiB, 96 * KiB))
          const ok = res.write(pattern(tag, sent, sent + n))
          sent += n
          if (!ok) { res.once('drain', pump); return }
          if (gap && sent < size) { setImmediate(pump); return }
        }
        if (!res.destroyed) res.end()
      }
      pump()
      return
    }
    res.writeHead(404, { 'content-length': '0' })
    res.end()
  })
  const result: TestServer = await listenHttp(server, 60_000)
  return result
}

/** The proxy (in `mode`) in front of fresh upstreams; everything is stopped after `body`. */
async function withProxy (mode: { workers: number }, upstreams: number, config: (addresses: string[]) => Record<string, unknown>,
  body: (run: RunningLb, log: UpstreamLog) => Promise<void>): Promise<void> {
  const log = newLog()
  const ups: TestServer[] = []
  let run: RunningLb | null = null
  try {
    for (let i = 0; i < upstreams; i++) ups.push(await startUpstream(`up${i}`, log))
    run = await startLb(config(ups.map((u) => u.address)), mode.workers)
    await body(run, log)
  } finally {
    if (run !== null) await run.stop()
    for (const u of ups) await u.close()
  }
}

// ---- request bodies, sent in pieces ------------------------------------------------------

/**
 * A request with body pattern(tag)[0, size), Content-Length or chunked. The
 * first piece goes with the head in one write; `rest` gives the pieces after
 * it (data bytes, with their framing). Chunk sizes vary from a few bytes to
 * 70 KiB, some with an extension.
 */
function bodyRequest (method: string, target: string, host: string, tag: string, size: number, chunked: boolean, firstBytes: number, r: () => number): { head: Buffer, pieces: Array<{ wire: Buffer, dataEnd: number }> } {
  const head = Buffer.from(`${method} ${target} HTTP/1.1\r\nHost: ${host}\r\nX-Request-Id: ${tag}\r\n` +
    (chunked ? 'Transfer-Encoding: chunked\r\n' : `Content-Length: ${size}\r\n`) + '\r\n', 'latin1')
  const pieces: Array<{ wire: Buffer, dataEnd: number }> = []
  let at = 0
  const cuts: number[] = [Math.min(size, firstBytes)]
  while (cuts[cuts.length - 1] < size) cuts.push(Math.min(size, cuts[cuts.length - 1] + between(r, 1 * KiB, size > 1 * MiB ? 256 * KiB : 48 * KiB)))
  for (const end of cuts) {
    const data = pattern(tag, at, end)
    let wire = data
    if (chunked) {
      // the piece as one to three chunks, cut at random points
      const parts: Buffer[] = []
      let from = 0
      const n = between(r, 1, 3)
      for (let i = 0; i < n && from < data.length; i++) {
        const to = i === n - 1 ? data.length : Math.min(data.length, from + between(r, 1, Math.max(1, Math.floor(data.length / 2))))
        const ext = r() < 0.2 ? ';piece=' + String(i) : ''
        parts.push(Buffer.from(`${(to - from).toString(16)}${ext}\r\n`, 'latin1'), data.subarray(from, to), CRLF)
        from = to
      }
      if (end === size) parts.push(Buffer.from('0\r\n\r\n', 'latin1'))
      wire = Buffer.concat(parts)
    }
    pieces.push({ wire, dataEnd: end })
    at = end
  }
  if (pieces.length === 0 && chunked) pieces.push({ wire: Buffer.from('0\r\n\r\n', 'latin1'), dataEnd: 0 })
  return { head, pieces }
}

/** Checks an upstream's JSON verdict on a body against what was sent. */
function assertBodyVerdict (label: string, status: number, verdict: Record<string, unknown>, tag: string, size: number, expectedAttempt: number | null): void {
  assert.equal(status, 200, `${label}: status ${status} ${JSON.stringify(verdict).slice(0, 300)}`)
  assert.equal(verdict.tag, tag, `${label}: the answer is for ${String(verdict.tag)}, not ${tag}`)
  assert.equal(verdict.mismatch, '', `${label}: the upstream got a corrupted body ${String(verdict.mismatch)}`)
  assert.equal(verdict.length, size, `${label}: the upstream got ${String(verdict.length)} body bytes of ${size}`)
  assert.equal(verdict.sha256, sha256(pattern(tag, 0, size)), `${label}: body hash`)
  if (expectedAttempt !== null) assert.equal(verdict.attempt, expectedAttempt, `${label}: answered by attempt ${String(verdict.attempt)}`)
}

// ---- 1. pipelined GETs -------------------------------------------------------------------

/** Field lines the proxy adds to every request it forwards (src/http/serialize.ts addedFields). */
const ADDED_FIELDS = new Set(['x-forwarded-for', 'x-forwarded-proto', 'forwarded', 'via'])

interface SentGet { tag: string, target: string, fields: Array<[string, string]>, wire: Buffer, tokenAt: number }

function pipelinedGet (c: number, k: number, r: () => number): SentGet {
  const tag = tagOf('p', c, k)
  const target = `/echo/${tag}?d=${r() < 0.3 ? between(r, 1, 4) : 0}&q=${pattern(tag, 0, between(r, 0, 1500)).toString('latin1')}`
  const fields: Array<[string, string]> = [
    ['Host', `h${c}.test`],
    ['X-Token', pattern(tag, 4096, 4096 + between(r, 1, 3000)).toString('latin1')],
    ['X-Request-Id', tag],
  ]
  for (let i = between(r, 0, 6); i > 0; i--) fields.push([`X-Extra-${i}`, pattern(tag, 8192 * i, 8192 * i + between(r, 0, 400)).toString('latin1')])
  fields.push(['User-Agent', `arena/${tag}`])
  const line = `GET ${target} HTTP/1.1\r\n`
  const text = line + fields.map(([n, v]) => `${n}: ${v}\r\n`).join('') + '\r\n'
  return { tag, target, fields, wire: Buffer.from(text, 'latin1'), tokenAt: line.length + `Host: h${c}.test\r\nX-Token: `.length }
}

/** Cut points in `wire` (the requests back to back), per connection: none, random, inside each CRLFCRLF, byte by byte then mid-token. */
function cutPoints (kind: number, requests: SentGet[], r: () => number): number[] {
  const total = requests.reduce((n, s) => n + s.wire.length, 0)
  const cuts: number[] = []
  let start = 0
  switch (kind) {
    case 0: break
    case 1: for (let i = between(r, 6, 14); i > 0; i--) cuts.push(between(r, 1, total - 1)); break
    case 2:
      for (const s of requests) {
        start += s.wire.length
        cuts.push(start - between(r, 1, 3), start + between(r, 1, 5)) // inside "\r\n\r\n", then inside the next request line
      }
      break
    default:
      for (let i = 1; i < 300; i++) cuts.push(i)
      for (const s of requests) {
        cuts.push(start + s.tokenAt + between(r, 0, 40))
        start += s.wire.length
      }
  }
  return [...new Set(cuts.filter((x) => x > 0 && x < total))].sort((a, b) => a - b)
}

async function scenarioPipelining (mode: { workers: number }): Promise<void> {
  const CONNS = 32
  const PER_CONN = 20
  await withProxy(mode, 1, ([a]) => ({ upstreams: [{ address: a }] }), async (run, log) => {
    await withConns(run.port, CONNS, 'pipelining', async (conns) => {
      await allConnections(CONNS, async (c) => {
        const conn = conns[c]
        const r = random(seedOf(`pipelining ${c}`))
        const sent = Array.from({ length: PER_CONN }, (_, k) => pipelinedGet(c, k, r))
        const answers = sent.map(() => conn.next(new Collect()))
        const wire = Buffer.concat(sent.map((s) => s.wire))
        let from = 0
        for (const cut of [...cutPoints(c % 4, sent, r), wire.length]) {
          await conn.write(wire.subarray(from, cut))
          from = cut
          if (cut < wire.length) await yieldToLoop()
        }
        for (let k = 0; k < PER_CONN; k++) {
          const s = sent[k]
          const { head, sink } = await conn.answer(answers[k], `response ${k} of ${PER_CONN}`)
          const label = `connection ${c} response ${k} (${s.tag})`
          assert.equal(head.status, 200, `${label}: ${head.text.slice(0, 200)} ${sink.body.toString('latin1', 0, 300)}`)
          assert.equal(head.headers['x-request-id'], s.tag, `${label}: the response carries another request's id`)
          const echo = sink.json()
          assert.equal(echo.url, s.target, `${label}: the upstream got another target: ${describeMismatch(0, Buffer.from(s.target, 'latin1'), Buffer.from(String(echo.url), 'latin1'))}`)
          assert.equal(echo.method, 'GET', label)
          const raw = echo.rawHeaders as string[]
          const got: Array<[string, string]> = []
          for (let i = 0; i < raw.length; i += 2) if (!ADDED_FIELDS.has(raw[i].toLowerCase())) got.push([raw[i], raw[i + 1]])
          assert.deepEqual(got, s.fields, `${label}: the header lines the upstream saw`)
        }
      })
    })
    const total = CONNS * PER_CONN
    const exactlyOnce = [...log.seen.values()].filter((n) => n === 1).length
    assert.equal(log.seen.size, total, `the upstream saw ${log.seen.size} distinct requests of ${total}`)
    assert.equal(exactlyOnce, total, 'every request reached the upstream exactly once')
  })
}

// ---- 2. request bodies -------------------------------------------------------------------

interface BodyPlan { size: number, chunked: boolean, pauseMs: number, first: number, held: boolean }

/**
 * Request `k` of connection `c`: 17-60 KiB or 70-400 KiB, some to an upstream
 * that leaves the body unread 10-80 ms; and the first request of connections 0
 * and 1: 5 MiB to an upstream held until the proxy must have queued a write to
 * it (more than the ~4.3 MB loopback takes) and other requests went through
 * meanwhile.
 */
function bodyPlan (c: number, k: number, r: () => number): BodyPlan {
  const chunked = (c + k) % 2 === 1
  if (k === 0 && c < 2) return { size: 5 * MiB + between(r, 0, 4096), chunked, pauseMs: 0, first: 40 * KiB, held: true }
  const big = (c + k) % 3 !== 0
  return {
    size: big ? between(r, 70 * KiB, 400 * KiB) : between(r, 17 * KiB, 60 * KiB),
    chunked,
    pauseMs: r() < 0.4 ? between(r, 10, 80) : 0,
    // with the head: over 16 KiB (sent after it, not in one buffer with it) and still one read
    first: between(r, 16 * KiB + 1, 40 * KiB),
    held: false,
  }
}

async function scenarioBodies (mode: { workers: number }): Promise<void> {
  const CONNS = 28
  const PER_CONN = 3
  const HELD = 2
  await withProxy(mode, 1, ([a]) => ({ upstreams: [{ address: a }] }), async (run, log) => {
    let completed = 0
    let running = CONNS
    /** A held upstream reads on once four more requests got through (or no other connection is left). */
    const othersMoveOn = async (label: string): Promise<void> => {
      const mark = completed
      await waitFor(() => completed >= mark + 4 || running <= HELD, STEP_MS, `${label}: other requests while the upstream is held`)
    }
    await withConns(run.port, CONNS, 'bodies', async (conns) => {
      await allConnections(CONNS, async (c) => {
        const conn = conns[c]
        const r = random(seedOf(`bodies ${c}`))
        try {
          for (let k = 0; k < PER_CONN; k++) {
            const tag = tagOf('b', c, k)
            const plan = bodyPlan(c, k, r)
            const label = `connection ${c} request ${k} (${tag}, ${plan.size} bytes ${plan.chunked ? 'chunked' : 'Content-Length'}, upstream ${plan.held ? 'held' : `paused ${plan.pauseMs} ms`})`
            let held = plan.held
            let release = (): void => {}
            if (held) log.holds.set(tag, new Promise<void>((resolve) => { release = resolve }))
            const { head, pieces } = bodyRequest('POST', `/body/${tag}?n=${plan.size}&p=${plan.pauseMs}`, 'bodies.test', tag, plan.size, plan.chunked, plan.first, r)
            const answer = conn.next(new Collect())
            await conn.write(Buffer.concat([head, pieces[0].wire]))
            for (const piece of pieces.slice(1)) {
              if (!held) {
                await yieldToLoop()
                await conn.write(piece.wire)
              } else if (!conn.socket.write(piece.wire)) {
                // more than the kernel takes between us and the held upstream: the proxy stops reading
                // us once its own write to the upstream stays queued (in node, a view of what it read)
                await othersMoveOn(label)
                held = false
                release()
                await conn.drained()
              }
            }
            if (held) { await othersMoveOn(label); release() }
            const { head: res, sink } = await conn.answer(answer, label)
            assertBodyVerdict(label, res.status, sink.json(), tag, plan.size, null)
            completed++
          }
        } finally {
          running--
        }
      })
    })
  })
}

// ---- 3. large responses, slow readers ------------------------------------------------------

async function scenarioSlowReaders (mode: { workers: number }): Promise<void> {
  const SLOW = 6
  const SLOW_PIPELINED = 6
  const FAST = 16
  const FAST_MAX = 40
  await withProxy(mode, 1, ([a]) => ({ upstreams: [{ address: a }] }), async (run) => {
    let fastDone = 0
    let fastRunning = FAST
    let slowRunning = SLOW
    const fast = withConns(run.port, FAST, 'fast', async (conns) => {
      await allConnections(FAST, async (c) => {
        const conn = conns[c]
        const r = random(seedOf(`fast ${c}`))
        try {
          for (let k = 0; k < FAST_MAX && (slowRunning > 0 || k < 3); k++) {
            const tag = tagOf('f', c, k)
            const size = between(r, 100 * KiB, 400 * KiB)
            const framing = r() < 0.5 ? 'cl' : 'ch'
            const answer = conn.next(new PatternCheck(tag, size))
            await conn.write(`GET /resp/${tag}/${size}/${framing} HTTP/1.1\r\nHost: fast.test\r\n\r\n`)
            const { head, sink } = await conn.answer(answer, `fast response ${tag}`)
            assert.equal(head.status, 200, `${tag}: ${head.text}`)
            assert.equal(head.headers['x-tag'], tag, `${tag}: the response to another request`)
            assert.equal(sink.verdict(), '', `fast ${framing} response: ${sink.verdict()}`)
            fastDone++
          }
        } finally {
          fastRunning--
        }
      })
    })
    const slow = withConns(run.port, SLOW, 'slow', async (conns) => {
      await allConnections(SLOW, async (c) => {
        const conn = conns[c]
        const r = random(seedOf(`slow ${c}`))
        try {
          conn.socket.pause() // reads nothing until the others have made progress
          const checks: PatternCheck[] = []
          const requests: string[] = []
          for (let k = 0; k < SLOW_PIPELINED; k++) {
            const tag = tagOf('s', c, k)
            const size = between(r, 600 * KiB, 1 * MiB)
            checks.push(new PatternCheck(tag, size))
            requests.push(`GET /resp/${tag}/${size}/${(c + k) % 2 === 0 ? 'cl' : 'ch'} HTTP/1.1\r\nHost: slow.test\r\n\r\n`)
          }
          let answered = 0
          let failed = ''
          const answers = checks.map((check) => conn.next(check))
          for (const a of answers) a.then(() => { answered++ }, (err: Error) => { failed = err.message })
          await conn.write(requests.join(''))
          // read a few hundred KiB at a time, each time after the fast connections got some responses
          while (answered < SLOW_PIPELINED && failed === '') {
            const mark = fastDone
            await waitFor(() => fastDone >= mark + 3 || fastRunning === 0 || failed !== '', STEP_MS, `fast responses while slow ${c} is paused`)
            conn.socket.resume()
            const from = conn.bytes
            const step = between(r, 256 * KiB, 1 * MiB)
            await waitFor(() => conn.bytes >= from + step || answered === SLOW_PIPELINED || failed !== '', STEP_MS, `slow ${c} reading (${conn.bytes} bytes so far)`)
            conn.socket.pause()
          }
          conn.socket.resume()
          for (let k = 0; k < SLOW_PIPELINED; k++) {
            const { head, sink } = await conn.answer(answers[k], `slow response ${k}`)
            assert.equal(head.status, 200, `${sink.tag}: ${head.text}`)
            assert.equal(head.headers['x-tag'], sink.tag, `${sink.tag}: the response to another request`)
            assert.equal(sink.verdict(), '', `slow connection ${c} response ${k}: ${sink.verdict()}`)
          }
        } finally {
          slowRunning--
        }
      })
    })
    const [f, s] = await Promise.allSettled([fast, slow])
    if (s.status === 'rejected') throw s.reason
    if (f.status === 'rejected') throw f.reason
  })
}

// ---- 4. the access log -------------------------------------------------------------------

interface LoggedRequest { tag: string, target: string, host: string, userAgent: string, referer: string, wire: Buffer }

async function scenarioAccessLog (mode: { workers: number }): Promise<void> {
  const CONNS = 36
  const SEQUENTIAL = 3
  const PIPELINED = 3
  const dir = mkdtempSync(join(tmpdir(), 'swy-arena-log-'))
  const file = join(dir, 'access.log')
  try {
    await withProxy(mode, 1, ([a]) => ({ upstreams: [{ address: a }], log: { level: 'info', access: true, accessFile: file } }), async (run) => {
      const sent = new Map<string, LoggedRequest>()
      await withConns(run.port, CONNS, 'access-log', async (conns) => {
        await allConnections(CONNS, async (c) => {
          const conn = conns[c]
          const r = random(seedOf(`access ${c}`))
          const make = (k: number): LoggedRequest => {
            const tag = tagOf('l', c, k)
            const req = {
              tag,
              target: `/echo/${tag}/${pattern(tag, 0, between(r, 10, 600)).toString('latin1')}?d=${between(r, 1, 15)}&v=${pattern(tag, 1024, 1024 + between(r, 0, 300)).toString('latin1')}`,
              host: `log-${c}.test`,
              userAgent: `ua-${pattern(tag, 2048, 2048 + between(r, 8, 400)).toString('latin1')}`,
              referer: `http://ref.test/${pattern(tag, 3072, 3072 + between(r, 8, 400)).toString('latin1')}`,
              wire: Buffer.alloc(0),
            }
            req.wire = Buffer.from(`GET ${req.target} HTTP/1.1\r\nHost: ${req.host}\r\nUser-Agent: ${req.userAgent}\r\nReferer: ${req.referer}\r\nX-Request-Id: ${tag}\r\n\r\n`, 'latin1')
            sent.set(tag, req)
            return req
          }
          const check = async (req: LoggedRequest, answer: Promise<Answer<Collect>>): Promise<void> => {
            const { head, sink } = await conn.answer(answer, `response to ${req.tag}`)
            assert.equal(head.status, 200, `${req.tag}: ${head.text}`)
            assert.equal(sink.json().url, req.target, `${req.tag}: the upstream got another target`)
          }
          // one at a time: each head is parsed in one read and logged after the upstream's delay
          for (let k = 0; k < SEQUENTIAL; k++) {
            const req = make(k)
            const answer = conn.next(new Collect())
            await conn.write(req.wire)
            await check(req, answer)
          }
          // pipelined, the last head cut in two: heads kept across reads, logged one after another
          const batch = Array.from({ length: PIPELINED }, (_, i) => make(SEQUENTIAL + i))
          const answers = batch.map(() => conn.next(new Collect()))
          const wire = Buffer.concat(batch.map((b) => b.wire))
          const cut = wire.length - between(r, 2, batch[PIPELINED - 1].wire.length - 2)
          await conn.write(wire.subarray(0, cut))
          await yieldToLoop()
          await conn.write(wire.subarray(cut))
          for (let i = 0; i < PIPELINED; i++) await check(batch[i], answers[i])
        })
      })
      const total = CONNS * (SEQUENTIAL + PIPELINED)
      const accessLines = (): string[] => existsSync(file) ? readFileSync(file, 'latin1').split('\n').filter((l) => l.includes('"type":"access"')) : []
      await waitFor(() => accessLines().length >= total, STEP_MS, `${total} access-log lines`)
      const lines = accessLines()
      assert.equal(lines.length, total, 'one line per request')
      const logged = new Map<string, number>()
      const wrong: string[] = []
      for (const line of lines) {
        const entry = JSON.parse(line) as Record<string, unknown>
        const tag = String(entry.requestId)
        const req = sent.get(tag)
        if (req === undefined) { wrong.push(`a line for no request sent: ${line.slice(0, 300)}`); continue }
        count(logged, tag)
        for (const [key, want] of [['path', req.target], ['host', req.host], ['userAgent', req.userAgent], ['referer', req.referer], ['method', 'GET']] as const) {
          const got = String(entry[key])
          if (got !== want) wrong.push(`${tag} ${key}: ${describeMismatch(0, Buffer.from(want, 'latin1'), Buffer.from(got, 'latin1'))}`)
        }
        if (entry.status !== 200) wrong.push(`${tag} status ${String(entry.status)}`)
      }
      assert.equal(wrong.length, 0, `${wrong.length} wrong access-log fields, the first ones:\n${wrong.slice(0, 6).join('\n')}`)
      assert.equal(logged.size, total, 'every request has a line')
      assert.ok([...logged.values()].every((n) => n === 1), 'no request has two lines')
    })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

// ---- 5. the cache -------------------------------------------------------------------------

/**
 * Other traffic while the cache fills and serves: request bodies both ways and
 * uncacheable responses, each checked, until `stop()` says so.
 */
async function noise (port: number, n: number, stop: () => boolean): Promise<void> {
  await withConns(port, n, 'noise', async (conns) => {
    await allConnections(n, async (c) => {
      const conn = conns[c]
      const r = random(seedOf(`noise ${c}`))
      for (let k = 0; !stop() && k < 200; k++) {
        const tag = tagOf('n', c, k)
        if (k % 2 === 0) {
          const size = between(r, 30 * KiB, 150 * KiB)
          const { head, pieces } = bodyRequest('POST', `/body/${tag}?n=${size}`, 'noise.test', tag, size, k % 4 === 0, between(r, 1, 40 * KiB), r)
          const answer = conn.next(new Collect())
          await conn.write(Buffer.concat([head, ...pieces.map((p) => p.wire)]))
          const { head: res, sink } = await conn.answer(answer, `noise ${tag}`)
          assertBodyVerdict(`noise ${tag}`, res.status, sink.json(), tag, size, null)
        } else {
          const size = between(r, 100 * KiB, 300 * KiB)
          const answer = conn.next(new PatternCheck(tag, size))
          await conn.write(`GET /resp/${tag}/${size}/${k % 4 === 1 ? 'cl' : 'ch'} HTTP/1.1\r\nHost: noise.test\r\n\r\n`)
          const { head, sink } = await conn.answer(answer, `noise ${tag}`)
          assert.equal(head.status, 200)
          assert.equal(sink.verdict(), '', `noise response: ${sink.verdict()}`)
        }
      }
    })
  })
}

async function scenarioCache (mode: { workers: number }): Promise<void> {
  const URLS = 20
  const NOISE = 8
  await withProxy(mode, 1, ([a]) => ({ upstreams: [{ address: a }], cache: { maxBytes: 32 * MiB } }), async (run) => {
    const r = random(seedOf('cache'))
    const entries = Array.from({ length: URLS }, (_, i) => {
      const tag = tagOf('c', i, 0)
      const size = between(r, 70 * KiB, 600 * KiB)
      return { tag, size, path: `/resp/${tag}/${size}/cl?cache=1&gap=1`, variant: pattern(tag, 4096, 4096 + between(r, 16, 200)).toString('latin1') }
    })
    // every fill, each from its own connection, and a second request for a few of them at once, among the noise
    const fetchAll = async (label: string, requests: typeof entries, expectHit: boolean): Promise<void> => {
      await withConns(run.port, requests.length, label, async (conns) => {
        await allConnections(requests.length, async (i) => {
          const e = requests[i]
          const answer = conns[i].next(new PatternCheck(e.tag, e.size))
          await conns[i].write(`GET ${e.path} HTTP/1.1\r\nHost: cache.test\r\nX-Variant: ${e.variant}\r\n\r\n`)
          const { head, sink } = await conns[i].answer(answer, `${label} ${e.tag}`)
          assert.equal(head.status, 200, `${e.tag}: ${head.text}`)
          if (expectHit) assert.equal(head.headers['x-cache'], 'HIT', `${e.tag}: ${head.text}`)
          assert.equal(sink.verdict(), '', `${label} body: ${sink.verdict()}`)
        })
      })
    }
    let phasesDone = false
    const background = noise(run.port, NOISE, () => phasesDone)
    background.catch(() => {}) // awaited below, after the phases (which may fail first)
    try {
      await fetchAll('fill', [...entries, ...entries.slice(0, 4)], false)
      await fetchAll('hit', [...entries, ...entries], true)
    } finally {
      phasesDone = true
      await background.catch(() => {})
    }
    await background
  })
}

// ---- 6. a retry replays the kept body --------------------------------------------------------

async function scenarioRetry (mode: { workers: number }): Promise<void> {
  const CONNS = 24
  const PER_CONN = 2
  const config = ([a, b]: string[]): Record<string, unknown> => ({
    upstreams: [{ address: a }, { address: b }],
    retryBodyMaxBytes: 256 * KiB,
    // every request is retried once: neither the budget nor passive health may stand in the way
    retryBudgetPercent: 100,
    healthCheck: { panicThresholdPercent: 0, passive: { maxFailures: 1000 } },
  })
  await withProxy(mode, 2, config, async (run, log) => {
    await withConns(run.port, CONNS, 'retry', async (conns) => {
      await allConnections(CONNS, async (c) => {
        const conn = conns[c]
        const r = random(seedOf(`retry ${c}`))
        for (let k = 0; k < PER_CONN; k++) {
          const tag = tagOf('r', c, k)
          const size = (c + k) % 3 === 0 ? between(r, 17 * KiB, 60 * KiB) : between(r, 70 * KiB, 200 * KiB)
          const chunked = (c + k) % 2 === 1
          const label = `connection ${c} request ${k} (${tag}, ${size} bytes ${chunked ? 'chunked' : 'Content-Length'})`
          const { head, pieces } = bodyRequest('PUT', `/body/${tag}?n=${size}&reset=1`, 'retry.test', tag, size, chunked, between(r, 1 * KiB, 40 * KiB), r)
          const answer = conn.next(new Collect())
          await conn.write(Buffer.concat([head, pieces[0].wire]))
          // each piece after the first attempt has the ones before: one read each at the proxy, kept meanwhile
          let previous = pieces[0].dataEnd
          for (const piece of pieces.slice(1)) {
            await waitFor(() => (log.progress.get(tag) ?? 0) >= previous, STEP_MS, `${label}: the upstream receiving ${previous} bytes (has ${log.progress.get(tag) ?? 0})`)
            await conn.write(piece.wire)
            previous = piece.dataEnd
          }
          const { head: res, sink } = await conn.answer(answer, label)
          assertBodyVerdict(label, res.status, sink.json(), tag, size, 2)
        }
      })
    })
    const attempts = [...log.seen.values()]
    assert.equal(attempts.length, CONNS * PER_CONN)
    assert.ok(attempts.every((n) => n === 2), 'each request: one reset attempt, one replay')
  })
}

// ---- the tests ------------------------------------------------------------------------------

for (const mode of ARENA_MODES) {
  test(`${mode.name}: 32 connections x 20 pipelined GETs, cut at awkward bytes: every response answers its own request, the upstream saw exactly the fields sent`, async () => {
    await scenarioPipelining(mode)
  })

  test(`${mode.name}: request bodies of 17 KiB - 5 MiB, Content-Length and chunked, in pieces, some to an upstream that stops reading: byte-exact upstream`, async () => {
    await scenarioBodies(mode)
  })

  test(`${mode.name}: 100 KiB - 1 MiB responses to clients that pause and resume while others keep the proxy busy: byte-exact`, async () => {
    await scenarioSlowReaders(mode)
  })

  test(`${mode.name}: access log under interleaving: every line carries its own request's path, host, user agent and referer, once`, async () => {
    await scenarioAccessLog(mode)
  })

  test(`${mode.name}: cache fills over 64 KiB among other traffic, then hits: byte-exact`, async () => {
    await scenarioCache(mode)
  })

  test(`${mode.name}: a retry after a reset replays the kept body (sent in pieces) byte-exact`, async () => {
    await scenarioRetry(mode)
  })
}
