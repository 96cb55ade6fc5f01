/**
 * Pipelining and the bounds on a client connection, end to end in both modes:
 *
 * 1. Answers switchyard writes itself (429, 403, 502, cache HIT) for 10,000+
 *    requests pipelined in one write on one connection: all arrive, in order,
 *    and the balancer keeps serving other connections meanwhile and after. A
 *    completion must return to the connection's loop, never recurse into the
 *    parser (STYLE.md "A driver loop, not recursion"). Today the recursion
 *    finishRequest -> consume -> answerLocally -> finishRequest overflows the
 *    main thread's stack after ~1,000-5,000 answers in one go; a worker's
 *    4 MiB stack survives the shallower 429/403 chains of a 128 KiB queue but
 *    not the deeper 502 and cache-hit ones.
 * 2. Backpressure: a client that pipelines 60,000 requests for 8 KiB responses
 *    and reads nothing, and an upstream that streams 100 Continue without end,
 *    must not make the balancer's memory grow without bound (STYLE.md
 *    "Bounded everywhere": queued responses per client, interim responses per
 *    request). RSS is read from /proc/PID/status of the real CLI.
 *
 * Worker mode: a worker that dies closes its connections (fewer responses than
 * sent) and counts in H_WORKER_RESTARTS; both are checked. In sequential mode
 * a stack overflow is thrown in this process and fails the test it happens in.
 *
 * Other clients are told apart by their source address (127.0.0.2, ...: all of
 * 127/8 is loopback on Linux), so a per-client limit never sees them as one.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as net from 'node:net'
import * as http from 'node:http'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { H_WORKER_RESTARTS } from '../../src/shared/layout'
import { waitFor, startEchoUpstream, startRawServer, refusedPort, type TestServer } from '../helpers'
import { MODES, startLb, spawnLb, type RunningLb, type SpawnedLb } from './harness'

// ---- helpers -----------------------------------------------------------------

const CRLFCRLF = Buffer.from('\r\n\r\n')
const GET_X = 'GET /x HTTP/1.1\r\nHost: a\r\n\r\n'
const MiB = 1024 * 1024
/** Growth over the baseline that counts as bounded (today: hundreds of MiB). */
const RSS_GROWTH_MAX_MIB = 100
/** After the client is gone (GC slack). */
const RSS_AFTER_MAX_MIB = 64
async function sleep (ms: number): Promise<void> { await new Promise((resolve) => setTimeout(resolve, ms)) }

/**
 * The client side of one connection: counts responses as they stream in,
 * framed by Content-Length (1xx without a body), never by matching bodies.
 */
class ResponseStream {
  readonly socket: net.Socket
  readonly statuses: number[] = []
  /** Bodies of the 200s that are not cache hits (the upstream's answers), by response index. */
  readonly bodies = new Map<number, string>()
  interim = 0
  cacheHits = 0
  framingError = ''
  closed = false
  bytes = 0
  lastDataAt = Date.now()
  private buf: Buffer = Buffer.alloc(0)
  private pauseOnData: boolean

  constructor (socket: net.Socket, opts: { pauseOnFirstData?: boolean } = {}) {
    this.socket = socket
    this.pauseOnData = opts.pauseOnFirstData === true
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.on('error', () => {})
    socket.on('close', () => { this.closed = true })
  }

  static async open (port: number, opts: { pauseOnFirstData?: boolean, localAddress?: string } = {}): Promise<ResponseStream> {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: opts.localAddress })
    socket.on('error', () => {})
    await once(socket, 'connect')
    return new ResponseStream(socket, opts)
  }

  /** Resolves when `n` final responses are in, the connection closed, nothing came for `stallMs`, or `timeoutMs` passed. */
  async until (n: number, stallMs = 5000, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (this.statuses.length < n && !this.closed && this.framingError === '' && Date.now() < deadline && Date.now() - this.lastDataAt < stallMs) await sleep(10)
  }

  private onData (chunk: Buffer): void {
    this.lastDataAt = Date.now()
    this.bytes += chunk.length
    if (this.pauseOnData) { this.pauseOnData = false; this.socket.pause() }
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    let pos = 0
    for (;;) {
      const headEnd = this.buf.indexOf(CRLFCRLF, pos)
      if (headEnd === -1) break
      const head = this.buf.toString('latin1', pos, headEnd)
      const status = Number(head.slice(9, 12))
      if (!head.startsWith('HTTP/1.1 ') || !Number.isInteger(status)) { this.fail(`bad status line ${JSON.stringify(head.slice(0, 40))}`); return }
      if (status < 200) { this.interim++; pos = headEnd + 4; continue }
      const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head)
      if (length === null) { this.fail(`response ${this.statuses.length} has no Content-Length: ${JSON.stringify(head)}`); return }
      const bodyEnd = headEnd + 4 + Number(length[1])
      if (bodyEnd > this.buf.length) break
      if (/\r\nx-cache:[ \t]*hit/i.test(head)) this.cacheHits++
      else if (status === 200) this.bodies.set(this.statuses.length, this.buf.toString('latin1', headEnd + 4, bodyEnd))
      this.statuses.push(status)
      pos = bodyEnd
    }
    if (pos > 0) this.buf = this.buf.subarray(pos)
  }

  private fail (why: string): void {
    this.framingError = why
    this.socket.destroy()
  }

  destroy (): void { this.socket.destroy() }
}

/** Statuses as runs, for messages: "200 x1, 429 x9999". */
function runs (statuses: number[]): string {
  const out: string[] = []
  let i = 0
  while (i < statuses.length) {
    let j = i
    while (j < statuses.length && statuses[j] === statuses[i]) j++
    out.push(`${statuses[i]} x${j - i}`)
    i = j
    if (out.length > 8) { out.push('...'); break }
  }
  return out.join(', ')
}

/** One GET on a new connection from `localAddress`; status 0 with the error on failure or timeout. */
async function get (port: number, path: string, localAddress = '127.0.0.1', timeoutMs = 5000): Promise<{ status: number, body: string, headers: http.IncomingHttpHeaders, error: string }> {
  return await new Promise((resolve) => {
    let settled = false
    const finish = (r: { status: number, body: string, headers: http.IncomingHttpHeaders, error: string }): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve(r)
    }
    const req = http.request({ host: '127.0.0.1', port, path, agent: false, localAddress, headers: { host: 'a' } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => finish({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('latin1'), headers: res.headers, error: '' }))
      res.on('error', (err) => finish({ status: 0, body: '', headers: {}, error: err.message }))
    })
    const timer = setTimeout(() => { req.destroy(); finish({ status: 0, body: '', headers: {}, error: `no response in ${timeoutMs} ms` }) }, timeoutMs)
    req.on('error', (err) => finish({ status: 0, body: '', headers: {}, error: err.message }))
    req.end()
  })
}

/** VmRSS of a process, in MiB (the balancer's threads included: one process). */
function rssMiB (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  assert.ok(m !== null, `VmRSS of ${pid}`)
  return Number(m[1]) / 1024
}

/**
 * Highest RSS while the balancer works on a client that reads nothing. Stops
 * early once growth passes the bound (today's behaviour: fail fast), or once
 * `progress` (work the upstream saw) has not moved for 1.5 s after `minMs`
 * (the balancer stopped: backpressure), or at `maxMs`.
 */
async function peakRss (pid: number, baseline: number, progress: () => number, minMs = 3000, maxMs = 15_000): Promise<{ peak: number, ms: number, why: string }> {
  const t0 = Date.now()
  let peak = 0
  let last = progress()
  let movedAt = t0
  for (;;) {
    peak = Math.max(peak, rssMiB(pid))
    const now = Date.now()
    if (progress() !== last) { last = progress(); movedAt = now }
    if (peak - baseline >= RSS_GROWTH_MAX_MIB) return { peak, ms: now - t0, why: 'over the bound' }
    if (now - t0 >= minMs && now - movedAt >= 1500) return { peak, ms: now - t0, why: 'upstream traffic stopped' }
    if (now - t0 >= maxMs) return { peak, ms: now - t0, why: 'time' }
    await sleep(100)
  }
}

/** The real CLI with a config file in a temp dir; `--workers` from the mode. */
async function spawnWithConfig (config: Record<string, unknown>, workers: number): Promise<{ lb: SpawnedLb, pid: number, cleanup: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'swy-pipelining-'))
  const file = join(dir, 'lb.json')
  writeFileSync(file, JSON.stringify({ listen: '127.0.0.1:0', log: { level: 'info', access: false }, ...config }))
  let lb: SpawnedLb
  try {
    lb = await spawnLb(['--config', file, '--workers', String(workers)])
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
  const pid = lb.child.pid as number
  const cleanup = async (): Promise<void> => {
    const exited = lb.child.exitCode !== null || lb.child.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((resolve) => lb.child.once('exit', () => resolve()))
    if (lb.child.exitCode === null && lb.child.signalCode === null) lb.child.kill('SIGTERM')
    const timer = setTimeout(() => { if (lb.child.exitCode === null && lb.child.signalCode === null) lb.child.kill('SIGKILL') }, 5000)
    await exited
    clearTimeout(timer)
    rmSync(dir, { recursive: true, force: true })
  }
  return { lb, pid, cleanup }
}

function assertAlive (lb: SpawnedLb): void {
  assert.equal(lb.child.exitCode, null, `the balancer exited:\n${lb.output().slice(-2000)}`)
  assert.equal(lb.child.signalCode, null, `the balancer was killed:\n${lb.output().slice(-2000)}`)
}

// ---- 1. pipelined local answers ----------------------------------------------

/**
 * The upstream of the floods: `/first` answers after 100 ms, so the requests
 * behind it queue up on the connection (two 64 KiB reads, ~4,500 requests) and
 * are then answered in one go; `/x` is cacheable; anything else is immediate.
 * Every answer but `/x` echoes its path, so the order of responses is visible.
 */
async function startFloodUpstream (): Promise<TestServer> {
  return await startEchoUpstream('up', (req, res) => {
    if (req.url === '/x') {
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', 'content-length': 6 })
      res.end('cached')
      return true
    }
    const body = JSON.stringify({ url: req.url })
    const answer = (): void => {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    }
    if (req.url === '/first') setTimeout(answer, 100)
    else answer()
    return true
  })
}

const FIRST = 'GET /first HTTP/1.1\r\nHost: a\r\n\r\n'

interface FloodCase {
  kind: string
  /** Requests in the one write. */
  count: number
  config: (upstream: string) => Promise<Record<string, unknown>>
  /** Before the flood (warming a cache entry, ...). */
  before?: (port: number) => Promise<void>
  requests: (count: number) => string
  /** Checks the statuses (and the echoed paths) of every response, in order. */
  check: (r: ResponseStream) => void
  /** What a request from another client gets, and from which path. */
  bystander: { path: string, status: number }
}

/** Response `i` came from the upstream and echoes `path`. */
function assertEcho (r: ResponseStream, i: number, path: string): void {
  assert.equal(r.statuses[i], 200, `response ${i}`)
  assert.equal(JSON.parse(r.bodies.get(i) ?? '{}').url, path, `response ${i} answers ${path}`)
}

const FLOODS: FloodCase[] = [
  {
    kind: '429 from the rate limiter',
    count: 10_000,
    config: async (upstream) => ({ upstreams: [{ address: upstream }], rateLimit: { maxRequests: 1, windowMs: 60_000, algorithm: 'token-bucket' } }),
    // a token bucket (one token, one more per minute): a fixed window is aligned to the clock, and a flood
    // that straddled a minute boundary had a second request admitted
    requests: (n) => FIRST + GET_X.repeat(n - 1),
    check: (r) => {
      // the first request goes through, every other one is limited
      assertEcho(r, 0, '/first')
      assert.ok(r.statuses.slice(1).every((s) => s === 429), runs(r.statuses))
    },
    bystander: { path: '/ok', status: 200 },
  },
  {
    kind: '403 from the firewall',
    count: 10_000,
    config: async (upstream) => ({ upstreams: [{ address: upstream }], firewall: { rules: [{ name: 'no-x', action: 'deny', path: { prefix: '/x' } }] } }),
    requests: (n) => FIRST + GET_X.repeat(n - 2) + 'GET /last HTTP/1.1\r\nHost: a\r\n\r\n',
    check: (r) => {
      const n = r.statuses.length
      assertEcho(r, 0, '/first')
      assert.ok(r.statuses.slice(1, n - 1).every((s) => s === 403), runs(r.statuses))
      assertEcho(r, n - 1, '/last')
    },
    bystander: { path: '/ok', status: 200 },
  },
  {
    kind: '502 with no healthy upstream',
    count: 10_000,
    // a closed port: the first request is refused and ejects it (default passive check)
    config: async () => ({ upstreams: [{ address: `127.0.0.1:${await refusedPort()}` }] }),
    requests: (n) => GET_X.repeat(n),
    check: (r) => {
      // SWY_ERR_UPSTREAM_CONNECT for the request that tried, SWY_ERR_NO_HEALTHY_UPSTREAM after
      assert.ok(r.statuses.every((s) => s === 502), runs(r.statuses))
    },
    // every upstream is down: a 502 on another connection still shows the balancer serving
    bystander: { path: '/ok', status: 502 },
  },
  {
    kind: 'cache hits',
    count: 30_000,
    config: async (upstream) => ({ upstreams: [{ address: upstream }], cache: { maxBytes: 1024 * 1024 } }),
    before: async (port) => {
      const warm = await get(port, '/x')
      assert.equal(warm.status, 200, warm.error)
      const hit = await get(port, '/x')
      assert.equal(hit.headers['x-cache'], 'HIT', 'the entry is stored before the flood')
    },
    requests: (n) => FIRST + GET_X.repeat(n - 1),
    check: (r) => {
      assertEcho(r, 0, '/first')
      assert.ok(r.statuses.every((s) => s === 200), runs(r.statuses))
      assert.equal(r.cacheHits, r.statuses.length - 1, 'every response after the first is a cache HIT')
    },
    bystander: { path: '/x', status: 200 },
  },
]

for (const mode of MODES) {
  for (const c of FLOODS) {
    test(`${mode.name}: ${c.count} pipelined requests answered with ${c.kind} in one write: all arrive in order, the balancer keeps serving`, async () => {
      const up = await startFloodUpstream()
      let run: RunningLb | null = null
      let flood: ResponseStream | null = null
      try {
        run = await startLb(await c.config(up.address), mode.workers)
        const port = run.port
        const restarts = run.lb.state.header(H_WORKER_RESTARTS)
        if (c.before !== undefined) await c.before(port)
        flood = await ResponseStream.open(port, { pauseOnFirstData: true })
        const t0 = Date.now()
        flood.socket.write(c.requests(c.count))
        const reader = flood
        await waitFor(() => reader.bytes > 0 || reader.closed, 10_000, 'the first response bytes')
        // the flood is in progress: its client has read one chunk at most and stopped reading
        const during = await get(port, c.bystander.path, '127.0.0.2')
        assert.equal(during.status, c.bystander.status, `another client while the flood is in progress: ${during.error}`)
        flood.socket.resume()
        await flood.until(c.count)
        console.log(`${mode.name} ${c.kind}: ${flood.statuses.length}/${c.count} responses in ${Date.now() - t0} ms (${flood.bytes} bytes); ${runs(flood.statuses)}; closed early: ${flood.closed && flood.statuses.length < c.count}`)
        assert.equal(flood.framingError, '')
        assert.equal(flood.statuses.length, c.count, `all responses arrived (connection closed: ${flood.closed})`)
        c.check(flood)
        assert.equal(flood.closed, false, 'the connection stays open after the last answer')
        const after = await get(port, c.bystander.path, '127.0.0.3')
        assert.equal(after.status, c.bystander.status, `another client after the flood: ${after.error}`)
        assert.equal(run.lb.state.header(H_WORKER_RESTARTS), restarts, 'no worker died')
      } finally {
        flood?.destroy()
        if (run !== null) await run.stop()
        await up.close()
      }
    })
  }
}

// ---- 2. backpressure and bounded memory (real CLI, RSS) ------------------------

const BODY_8K = Buffer.alloc(8192, 'z')

for (const mode of MODES) {
  test(`${mode.name} CLI: a client that pipelines 60,000 GETs for 8 KiB responses and reads nothing leaves RSS bounded`, async () => {
    const up = await startEchoUpstream('8k', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BODY_8K.length })
      res.end(BODY_8K)
      return true
    })
    const { lb, pid, cleanup } = await spawnWithConfig({ upstreams: [{ address: up.address }], timeouts: { drainMs: 1000 } }, mode.workers)
    let client: net.Socket | null = null
    try {
      // warm the path (JIT, pools) with a reading client, then take the baseline
      const warm = await ResponseStream.open(lb.port)
      warm.socket.write(GET_X.repeat(2000))
      await warm.until(2000, 5000, 20_000)
      assert.equal(warm.statuses.length, 2000, 'warm-up responses')
      warm.destroy()
      await sleep(500)
      const baseline = rssMiB(pid)

      client = net.connect(lb.port, '127.0.0.1')
      client.on('error', () => {})
      await once(client, 'connect')
      client.pause() // reads nothing
      const batch = Buffer.from(GET_X.repeat(100))
      let written = 0
      let stalled = false
      while (written < 60_000 && !client.destroyed) {
        written += 100
        if (!client.write(batch)) {
          const socket = client
          const drained = await new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => { socket.off('drain', onDrain); resolve(false) }, 2000)
            function onDrain (): void { clearTimeout(timer); resolve(true) }
            socket.once('drain', onDrain)
          })
          if (!drained) { stalled = true; break }
        }
      }
      const { peak, ms, why } = await peakRss(pid, baseline, () => up.count)
      assertAlive(lb)
      const forwarded = up.count
      client.destroy()
      let after = rssMiB(pid)
      try { await waitFor(() => (after = rssMiB(pid)) - baseline < RSS_AFTER_MAX_MIB, 5000, 'RSS back near baseline') } catch { /* asserted below */ }
      const bystander = await get(lb.port, '/after', '127.0.0.2')
      console.log(`${mode.name}: wrote ${written} requests (client stalled: ${stalled}), ${forwarded} reached the upstream; RSS baseline ${baseline.toFixed(1)} MiB, peak ${peak.toFixed(1)} MiB (+${(peak - baseline).toFixed(1)}) over ${ms} ms (stopped: ${why}), after disconnect ${after.toFixed(1)} MiB (+${(after - baseline).toFixed(1)})`)
      assert.ok(peak - baseline < RSS_GROWTH_MAX_MIB, `RSS grew ${(peak - baseline).toFixed(1)} MiB over its ${baseline.toFixed(1)} MiB baseline`)
      assert.ok(after - baseline < RSS_AFTER_MAX_MIB, `RSS ${(after - baseline).toFixed(1)} MiB over baseline after the client left`)
      assertAlive(lb)
      assert.equal(bystander.status, 200, bystander.error)
      assert.equal(bystander.body.length, BODY_8K.length)
    } finally {
      client?.destroy()
      await cleanup()
      await up.close()
    }
  })
}

/**
 * An upstream that answers `/continue` with `HTTP/1.1 100 Continue` over and
 * over (up to 200 MB per connection, or until the connection closes) and
 * anything else with a small 200.
 */
async function startContinueFlooder (): Promise<TestServer & { sentBytes: number }> {
  const interim = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n'.repeat(2048))
  const server = await startRawServer((socket) => {
    let head = ''
    const onData = (c: Buffer): void => {
      head += c.toString('latin1')
      if (!head.includes('\r\n\r\n')) return
      socket.off('data', onData)
      socket.resume()
      if (!head.startsWith('GET /continue')) {
        socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok')
        return
      }
      void (async () => {
        let sent = 0
        while (sent < 200 * MiB && !socket.destroyed && socket.writable) {
          sent += interim.length
          result.sentBytes += interim.length
          if (!socket.write(interim)) {
            await new Promise<void>((resolve) => {
              const done = (): void => { socket.off('drain', done); socket.off('close', done); resolve() }
              socket.once('drain', done)
              socket.once('close', done)
            })
          }
        }
      })()
    }
    socket.on('data', onData)
  })
  const result = Object.assign(server, { sentBytes: 0 })
  return result
}

for (const mode of MODES) {
  test(`${mode.name}: an upstream that sends 100 Continue without end: the client gets at most 32 interim responses, then a 502`, async () => {
    const flooder = await startContinueFlooder()
    let run: RunningLb | null = null
    let client: ResponseStream | null = null
    try {
      run = await startLb({ upstreams: [{ address: flooder.address }] }, mode.workers)
      client = await ResponseStream.open(run.port)
      client.socket.write('GET /continue HTTP/1.1\r\nHost: a\r\n\r\n')
      const reader = client
      // today the interim responses never stop: give up once far past the cap
      try { await waitFor(() => reader.statuses.length > 0 || reader.closed || reader.interim > 1000, 10_000, 'a final response') } catch { /* asserted below */ }
      console.log(`${mode.name}: ${client.interim} interim responses, then ${client.statuses.length > 0 ? client.statuses[0] : client.closed ? 'close' : 'nothing yet'}; the upstream sent ${(flooder.sentBytes / MiB).toFixed(1)} MiB`)
      assert.ok(client.interim <= 32, `${client.interim} interim responses relayed (cap 32)`)
      assert.equal(client.statuses[0], 502, 'a 502 ends the exchange')
      const bystander = await get(run.port, '/plain', '127.0.0.2')
      assert.equal(bystander.status, 200, bystander.error)
    } finally {
      client?.destroy()
      if (run !== null) await run.stop()
      await flooder.close()
    }
  })

  test(`${mode.name} CLI: an upstream that sends 100 Continue without end to a client that reads nothing leaves RSS bounded`, async () => {
    const flooder = await startContinueFlooder()
    const { lb, pid, cleanup } = await spawnWithConfig({ upstreams: [{ address: flooder.address }], timeouts: { drainMs: 1000 } }, mode.workers)
    let client: net.Socket | null = null
    try {
      const warm = await get(lb.port, '/plain')
      assert.equal(warm.status, 200, warm.error)
      await sleep(300)
      const baseline = rssMiB(pid)
      client = net.connect(lb.port, '127.0.0.1')
      client.on('error', () => {})
      await once(client, 'connect')
      client.pause() // reads nothing
      client.write('GET /continue HTTP/1.1\r\nHost: a\r\n\r\n')
      const { peak, ms, why } = await peakRss(pid, baseline, () => flooder.sentBytes)
      assertAlive(lb)
      console.log(`${mode.name}: RSS baseline ${baseline.toFixed(1)} MiB, peak ${peak.toFixed(1)} MiB (+${(peak - baseline).toFixed(1)}) over ${ms} ms (stopped: ${why}); the upstream sent ${(flooder.sentBytes / MiB).toFixed(1)} MiB of 100 Continue`)
      assert.ok(peak - baseline < RSS_GROWTH_MAX_MIB, `RSS grew ${(peak - baseline).toFixed(1)} MiB over its ${baseline.toFixed(1)} MiB baseline`)
      client.destroy()
      const bystander = await get(lb.port, '/plain', '127.0.0.2')
      assert.equal(bystander.status, 200, bystander.error)
      assertAlive(lb)
    } finally {
      client?.destroy()
      await cleanup()
      await flooder.close()
    }
  })
}
