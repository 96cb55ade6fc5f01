/**
 * Multi-core behaviour end to end: global round-robin across worker threads,
 * no descriptor leak over thousands of connections, surviving a worker crash,
 * and the CLI's signal lifecycle (drain on SIGTERM, exit at once on a second).
 *
 * Everything runs on 127.0.0.1 port 0. Timing bounds are generous on purpose:
 * the suite shares two cores with other suites, so only orders of magnitude
 * are asserted, never tight latencies.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as net from 'node:net'
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { once } from 'node:events'
import type { ChildProcess } from 'node:child_process'
import {
  H_WORKER_RESTARTS, MAX_UPSTREAMS, MAX_WORKER_SLOTS, U_IN_USE, U_OPEN_SOCKETS, W_OPEN_CONNECTIONS, W_REQUESTS, W_THREAD_ID,
} from '../../src/shared/layout'
import type { SharedState } from '../../src/shared/state'
import { waitFor, startEchoUpstream, startRawServer, httpRequest, type TestServer } from '../helpers'
import { MODES, startLb, spawnLb, type RunningLb } from './harness'
import { resolveConfig } from '../../src/config/load'

// ---- a small keep-alive HTTP/1.1 client over a raw socket -------------------

interface Reply { status: number, headers: Record<string, string>, body: string }

/**
 * One client connection that sends GETs one at a time and reads
 * Content-Length or chunked responses. `request` rejects with 'closed' when the
 * connection goes away and with 'timeout' when no response arrives in time,
 * so a test can tell a dropped connection from a hung one.
 */
class Conn {
  readonly socket: net.Socket
  closed = false
  private buffer = Buffer.alloc(0)
  private waiter: { resolve: (r: Reply) => void, reject: (e: Error) => void } | null = null
  private readonly closedPromise: Promise<void>

  private constructor (socket: net.Socket) {
    this.socket = socket
    socket.on('data', (chunk: Buffer) => { this.buffer = Buffer.concat([this.buffer, chunk]); this.parse() })
    socket.on('error', () => {})
    this.closedPromise = new Promise((resolve) => socket.once('close', () => {
      this.closed = true
      this.fail(new Error('closed'))
      resolve()
    }))
  }

  static async open (port: number): Promise<Conn> {
    const socket = net.connect(port, '127.0.0.1')
    socket.on('error', () => {})
    await once(socket, 'connect')
    return new Conn(socket)
  }

  async request (path: string, opts: { close?: boolean, timeoutMs?: number } = {}): Promise<Reply> {
    const timeoutMs = opts.timeoutMs ?? 5000
    return await new Promise<Reply>((resolve, reject) => {
      if (this.closed) { reject(new Error('closed')); return }
      const timer = setTimeout(() => { this.waiter = null; reject(new Error('timeout')) }, timeoutMs)
      this.waiter = {
        resolve: (r) => { clearTimeout(timer); resolve(r) },
        reject: (e) => { clearTimeout(timer); reject(e) },
      }
      this.socket.write(`GET ${path} HTTP/1.1\r\nHost: switchyard.test\r\n${opts.close === true ? 'Connection: close\r\n' : ''}\r\n`)
    })
  }

  /** Resolves once the socket has closed (either side). */
  async whenClosed (): Promise<void> { await this.closedPromise }

  /** Half-close politely and wait for the proxy to close its side. */
  async end (): Promise<void> {
    this.socket.end()
    await this.closedPromise
  }

  destroy (): void { this.socket.destroy() }

  private fail (err: Error): void {
    const w = this.waiter
    this.waiter = null
    if (w !== null) w.reject(err)
  }

  private parse (): void {
    if (this.waiter === null) return
    const end = this.buffer.indexOf('\r\n\r\n')
    if (end === -1) return
    const lines = this.buffer.subarray(0, end).toString('latin1').split('\r\n')
    const status = Number(lines[0].split(' ')[1])
    const headers: Record<string, string> = {}
    for (const line of lines.slice(1)) {
      const c = line.indexOf(':')
      headers[line.slice(0, c).toLowerCase()] = line.slice(c + 1).trim()
    }
    let body: string
    if ((headers['transfer-encoding'] ?? '').toLowerCase() === 'chunked') {
      const decoded = decodeChunked(this.buffer, end + 4)
      if (decoded === null) return
      body = decoded.body
      this.buffer = this.buffer.subarray(decoded.next)
    } else {
      const length = Number(headers['content-length'])
      if (!Number.isInteger(length)) { this.fail(new Error('response without Content-Length or chunked framing')); return }
      if (this.buffer.length < end + 4 + length) return
      body = this.buffer.subarray(end + 4, end + 4 + length).toString('latin1')
      this.buffer = this.buffer.subarray(end + 4 + length)
    }
    const w = this.waiter
    this.waiter = null
    w.resolve({ status, headers, body })
  }
}

/** A complete chunked body starting at `from` (no trailers), or null while incomplete. */
function decodeChunked (buf: Buffer, from: number): { body: string, next: number } | null {
  let at = from
  let body = ''
  for (;;) {
    const eol = buf.indexOf('\r\n', at)
    if (eol === -1) return null
    const size = parseInt(buf.subarray(at, eol).toString('latin1'), 16)
    if (size === 0) {
      if (buf.length < eol + 4) return null
      return { body, next: eol + 4 }
    }
    if (buf.length < eol + 2 + size + 2) return null
    body += buf.subarray(eol + 2, eol + 2 + size).toString('latin1')
    at = eol + 2 + size + 2
  }
}

/** One request on a new connection with Connection: close: 'ok' (200), 'closed' (no 200), or 'hang'. */
async function oneShot (port: number, path: string, timeoutMs = 5000): Promise<'ok' | 'closed' | 'hang'> {
  return await new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    let data = ''
    const timer = setTimeout(() => { s.destroy(); resolve('hang') }, timeoutMs)
    s.on('connect', () => s.write(`GET ${path} HTTP/1.1\r\nHost: switchyard.test\r\nConnection: close\r\n\r\n`))
    s.on('data', (c: Buffer) => { data += c.toString('latin1') })
    s.on('error', () => {})
    s.on('close', () => { clearTimeout(timer); resolve(data.startsWith('HTTP/1.1 200 ') ? 'ok' : 'closed') })
  })
}

/**
 * Sockets held open by this process whose local port is `port` and that are
 * not the listener: the proxy's side of client connections. Returned as the
 * TCP state codes from /proc/net/tcp (01 ESTABLISHED, 08 CLOSE_WAIT, ...).
 */
function acceptedSocketsOnPort (port: number): string[] {
  const inodes = new Set<string>()
  for (const fd of readdirSync('/proc/self/fd')) {
    let link = ''
    try { link = readlinkSync(`/proc/self/fd/${fd}`) } catch { continue }
    if (link.startsWith('socket:[')) inodes.add(link.slice(8, -1))
  }
  const portHex = ':' + port.toString(16).toUpperCase().padStart(4, '0')
  const states: string[] = []
  for (const line of readFileSync('/proc/net/tcp', 'latin1').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length < 10 || !inodes.has(f[9])) continue
    if (f[1].endsWith(portHex) && f[3] !== '0A' /* LISTEN */) states.push(f[3])
  }
  return states
}

// ---- shared-state views -----------------------------------------------------

/** Worker slots currently claimed (W_THREAD_ID != 0), as [slot, threadId]. */
function claimedSlots (state: SharedState): Array<[number, number]> {
  const out: Array<[number, number]> = []
  for (let slot = 0; slot < MAX_WORKER_SLOTS; slot++) {
    const id = state.worker(slot, W_THREAD_ID)
    if (id !== 0) out.push([slot, id])
  }
  return out
}

function slotOfThread (state: SharedState, threadId: number): number {
  for (const [slot, id] of claimedSlots(state)) if (id === threadId) return slot
  return -1
}

/** Client connections open on every thread, as the threads count them. */
function openClientConnections (run: RunningLb): number {
  let open = 0
  for (const [slot] of claimedSlots(run.lb.state)) open += run.lb.state.worker(slot, W_OPEN_CONNECTIONS)
  const pool = run.lb.workerPool
  return open + (pool === null ? 0 : pool.openConnections)
}

function openUpstreamSockets (state: SharedState): number {
  let open = 0
  for (let slot = 0; slot < MAX_UPSTREAMS; slot++) {
    if (state.upstream(slot, U_IN_USE) === 1) open += state.upstream(slot, U_OPEN_SOCKETS)
  }
  return open
}

function openDescriptors (): number {
  return readdirSync('/proc/self/fd').length
}

function workerThreadIds (run: RunningLb): number[] {
  const pool = run.lb.workerPool
  assert.ok(pool !== null, 'worker mode has a pool')
  return pool.pool.threads.map((t) => t.threadId)
}

/** Both workers are up and have claimed their shared-state slots. */
async function workersReady (run: RunningLb, count: number): Promise<void> {
  await waitFor(() => {
    const ids = workerThreadIds(run)
    return ids.length === count && ids.every((id) => id > 0 && slotOfThread(run.lb.state, id) !== -1)
  }, 10_000, `${count} workers with claimed slots`)
}

async function closeAll (servers: TestServer[]): Promise<void> {
  await Promise.all(servers.map(async (s) => await s.close()))
}

function exitOf (child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode)
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)))
}

/** true when a TCP connect to `port` is refused (the listener is closed). */
async function connectRefused (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => { s.destroy(); resolve(false) })
    s.once('error', (err: NodeJS.ErrnoException) => { s.destroy(); resolve(err.code === 'ECONNREFUSED') })
  })
}

// ---- global round-robin across workers --------------------------------------

test('workers=2: 100 requests on new connections use both workers and split exactly 50/50 over two upstreams', async () => {
  const a = await startEchoUpstream('a')
  const b = await startEchoUpstream('b')
  const run = await startLb({ upstreams: [{ address: a.address }, { address: b.address }] }, 2)
  let previous: Conn | null = null
  try {
    await workersReady(run, 2)
    // Each request goes on a fresh connection. The previous connection is closed
    // only after the next one has been answered, so at every dispatch one worker
    // holds one connection and the other none: the fewest-connections dispatcher
    // then alternates. (Without the overlap the spread would hang on how soon the
    // previous connection's task resolves, since ties go to the first worker.)
    for (let i = 0; i < 100; i++) {
      const conn = await Conn.open(run.port)
      const reply = await conn.request(`/rr/${i}`)
      assert.equal(reply.status, 200, `request ${i}`)
      if (previous !== null) previous.destroy()
      previous = conn
    }
    previous?.destroy()
    previous = null

    const perWorker = workerThreadIds(run).map((id) => {
      const slot = slotOfThread(run.lb.state, id)
      return run.lb.state.worker(slot, W_REQUESTS) >>> 0
    })
    console.log(`W_REQUESTS per worker slot: ${perWorker.join(', ')}`)
    assert.equal(perWorker.length, 2)
    assert.ok(perWorker.every((n) => n > 0), `both workers served requests: ${perWorker.join(', ')}`)
    assert.equal(perWorker[0] + perWorker[1], 100)
    // one shared Atomics cursor: strict alternation whatever thread picks
    assert.equal(a.count, 50, 'upstream a')
    assert.equal(b.count, 50, 'upstream b')
  } finally {
    previous?.destroy()
    await run.stop()
    await closeAll([a, b])
  }
})

// ---- descriptor leak ---------------------------------------------------------

for (const mode of MODES) {
  test(`${mode.name}: 2,000 connections in 20 waves leave no descriptor behind`, async () => {
    const a = await startEchoUpstream('a')
    const b = await startEchoUpstream('b')
    // No idle pooling: every upstream socket must close, so the count is exact.
    const run = await startLb({
      upstreams: [{ address: a.address }, { address: b.address }],
      pool: { maxIdlePerUpstream: 0 },
    }, mode.workers)
    let statusesOk = 0
    const bad: string[] = []

    /** One connection: even ones keep-alive with 2 requests, odd ones a single Connection: close. */
    async function oneConnection (i: number): Promise<void> {
      const conn = await Conn.open(run.port)
      try {
        if (i % 2 === 0) {
          for (let r = 0; r < 2; r++) {
            const reply = await conn.request(`/ka/${i}/${r}`)
            if (reply.status === 200) statusesOk++
            else bad.push(`${i}/${r}: ${reply.status}`)
          }
          await conn.end()
        } else {
          const reply = await conn.request(`/close/${i}`, { close: true })
          if (reply.status === 200) statusesOk++
          else bad.push(`${i}: ${reply.status}`)
          await conn.whenClosed()
        }
      } catch (err) {
        bad.push(`${i}: ${(err as Error).message}`)
        conn.destroy()
      }
    }

    async function wave (w: number, size: number): Promise<void> {
      const all: Array<Promise<void>> = []
      for (let i = 0; i < size; i++) all.push(oneConnection(w * size + i))
      await Promise.all(all)
    }

    async function settled (what: string): Promise<void> {
      await waitFor(() => openClientConnections(run) === 0 && openUpstreamSockets(run.lb.state) === 0, 10_000, `${what}: proxy connection counters back to 0`)
    }

    try {
      if (mode.workers > 0) await workersReady(run, mode.workers)
      // warm-up: anything created lazily on first use (per-thread state) exists before the baseline
      await wave(0, 100)
      await settled('warm-up')
      // the upstream servers close their side when the proxy does: let them catch up
      let baseline = openDescriptors()
      await waitFor(() => { const now = openDescriptors(); const stable = now === baseline; baseline = now; return stable }, 5000, 'a stable descriptor count')
      await new Promise((resolve) => setTimeout(resolve, 100))
      baseline = openDescriptors()
      statusesOk = 0 // count the measured 3,000 only

      const startedAt = Date.now()
      for (let w = 1; w <= 20; w++) await wave(w, 100)
      const elapsed = Date.now() - startedAt
      await settled('after 2,000 connections')
      let now = openDescriptors()
      try {
        await waitFor(() => { now = openDescriptors(); return now <= baseline }, 5000, 'descriptor count back to the baseline')
      } catch { /* asserted below with the numbers */ }
      console.log(`${mode.name}: 2,000 connections / 3,000 requests in ${elapsed} ms; descriptors baseline ${baseline}, after ${now}`)
      assert.deepEqual(bad, [], 'every request answered 200')
      assert.equal(statusesOk, 3000)
      assert.equal(now, baseline, `open descriptors: ${now} after vs ${baseline} before (leak of ${now - baseline})`)
    } finally {
      await run.stop()
      await closeAll([a, b])
    }
  })
}

// ---- worker crash ------------------------------------------------------------

interface Stream {
  conn: Conn
  okBeforeKill: number
  okAfterKill: number
  badStatus: number
  error: string
}

test('workers=2: terminating one worker keeps the other worker\'s connections alive and a replacement takes new ones', async () => {
  const a = await startEchoUpstream('a')
  const b = await startEchoUpstream('b')
  const run = await startLb({ upstreams: [{ address: a.address }, { address: b.address }] }, 2)
  const streams: Stream[] = []
  let killed = false
  let stop = false
  const loops: Array<Promise<void>> = []
  try {
    await workersReady(run, 2)
    const pool = run.lb.workerPool
    assert.ok(pool !== null)
    // 6 keep-alive connections, opened one after another and held: the
    // fewest-connections dispatcher puts 3 on each worker
    for (let i = 0; i < 6; i++) {
      const conn = await Conn.open(run.port)
      const first = await conn.request(`/s${i}/warm`)
      assert.equal(first.status, 200)
      streams.push({ conn, okBeforeKill: 0, okAfterKill: 0, badStatus: 0, error: '' })
    }
    for (const [i, s] of streams.entries()) {
      loops.push((async () => {
        let n = 0
        while (!stop) {
          try {
            const reply = await s.conn.request(`/s${i}/${n++}`, { timeoutMs: 3000 })
            if (reply.status !== 200) s.badStatus++
            else if (killed) s.okAfterKill++
            else s.okBeforeKill++
          } catch (err) {
            s.error = (err as Error).message
            return
          }
        }
      })())
    }
    await waitFor(() => streams.every((s) => s.okBeforeKill >= 3), 5000, 'every stream running')

    const victim = pool.pool.threads[0]
    const victimId = victim.threadId
    const victimSlot = slotOfThread(run.lb.state, victimId)
    const otherId = pool.pool.threads[1].threadId
    const otherSlot = slotOfThread(run.lb.state, otherId)
    const onVictim = run.lb.state.worker(victimSlot, W_OPEN_CONNECTIONS)
    const onOther = run.lb.state.worker(otherSlot, W_OPEN_CONNECTIONS)
    assert.equal(onVictim + onOther, 6, 'the 6 connections are counted on the two workers')
    const restartsBefore = run.lb.state.header(H_WORKER_RESTARTS)

    await victim.terminate()
    // from here on no answer can come from the victim: it has exited
    killed = true

    // connections made right after the kill, before the replacement is up, all succeed
    const early = await Promise.all(Array.from({ length: 10 }, async (_, i) => await oneShot(run.port, `/right-after/${i}`)))
    assert.deepEqual(early.filter((r) => r !== 'ok'), [], 'every connection opened right after the kill got a 200')

    // the killed worker's connections end (closed, not hung); the others keep going
    await waitFor(() => streams.filter((s) => s.error !== '').length >= onVictim, 5000, 'connections of the killed worker closed')
    await waitFor(() => streams.filter((s) => s.error === '').every((s) => s.okAfterKill >= 5), 5000, 'surviving streams keep succeeding')

    await waitFor(() => pool.pool.threads.length === 2 && pool.pool.threads.every((t) => t.threadId > 0 && t.threadId !== victimId), 10_000, 'a replacement worker')
    await workersReady(run, 2)
    assert.ok(run.lb.state.header(H_WORKER_RESTARTS) > restartsBefore, 'H_WORKER_RESTARTS went up')

    // every new connection after the kill succeeds (a few, so both workers get some)
    const fresh: Conn[] = []
    try {
      for (let i = 0; i < 10; i++) {
        const conn = await Conn.open(run.port)
        fresh.push(conn)
        const reply = await conn.request(`/after/${i}`)
        assert.equal(reply.status, 200, `new connection ${i} after the crash`)
      }
    } finally {
      for (const c of fresh) c.destroy()
    }

    stop = true
    for (const s of streams) if (s.error === '') s.conn.destroy()
    await Promise.all(loops)
    const survivors = streams.filter((s) => s.okAfterKill >= 5)
    const report = streams.map((s, i) => `#${i}: before=${s.okBeforeKill} after=${s.okAfterKill} bad=${s.badStatus} end=${s.error}`).join('\n')
    console.log(`worker crash: ${onVictim} connection(s) on the killed worker, ${onOther} on the other\n${report}`)
    assert.ok(streams.every((s) => s.badStatus === 0), `no non-200 answers:\n${report}`)
    assert.ok(streams.every((s) => s.error !== 'timeout'), `no connection hung instead of closing:\n${report}`)
    assert.ok(onOther >= 1, 'at least one connection on the surviving worker')
    assert.equal(survivors.length, onOther, `every connection of the surviving worker kept working:\n${report}`)
  } finally {
    stop = true
    for (const s of streams) s.conn.destroy()
    await Promise.all(loops)
    await run.stop()
    await closeAll([a, b])
  }
})

test('workers=2: connections arriving while a worker dies are served or closed, never left hanging with a leaked descriptor', async () => {
  const a = await startEchoUpstream('a')
  const run = await startLb({ upstreams: [{ address: a.address }] }, 2)
  const results = { ok: 0, closed: 0, hang: 0, afterKillNotOk: 0 }
  let stop = false
  let loops: Array<Promise<void>> = []
  try {
    await workersReady(run, 2)
    const pool = run.lb.workerPool
    assert.ok(pool !== null)
    // Three kills, each while 8 loops keep opening one-request connections: some
    // land on the dying worker. Those may be closed (it took them down with it)
    // but must not hang: a hang means the duplicated descriptor was handed to a
    // worker that never adopted it and nobody closes it.
    for (let round = 0; round < 3; round++) {
      stop = false
      let killedAt = Infinity
      loops = Array.from({ length: 8 }, async () => {
        while (!stop) {
          const startedAt = Date.now()
          const r = await oneShot(run.port, `/race/${round}`, 3000)
          results[r]++
          if (startedAt > killedAt && r !== 'ok') results.afterKillNotOk++
        }
      })
      await waitFor(() => results.ok >= (round + 1) * 20, 5000, 'traffic flowing')
      const victim = pool.pool.threads[round % 2]
      const victimId = victim.threadId
      await victim.terminate()
      killedAt = Date.now()
      await waitFor(() => pool.pool.threads.length === 2 && pool.pool.threads.every((t) => t.threadId > 0 && t.threadId !== victimId), 10_000, 'a replacement worker')
      await workersReady(run, 2)
      stop = true
      await Promise.all(loops)
    }
    // every client socket is closed by now: no accepted socket may remain open in this process
    let leaked = acceptedSocketsOnPort(run.port)
    try { await waitFor(() => { leaked = acceptedSocketsOnPort(run.port); return leaked.length === 0 }, 3000, 'accepted sockets closed') } catch { /* asserted below */ }
    console.log(`worker deaths under connection churn: ${JSON.stringify(results)}; accepted sockets still open: ${leaked.length} (${leaked.join(', ')})`)
    assert.equal(results.hang, 0, 'connections neither answered nor closed within 3 s')
    assert.equal(results.afterKillNotOk, 0, 'connections opened after terminate() resolved all got 200')
    assert.deepEqual(leaked, [], 'accepted client sockets left open in the process (TCP states)')
  } finally {
    stop = true
    await Promise.all(loops)
    await run.stop()
    await a.close()
  }
})

test('workers=2: a replacement that dies while it starts is replaced too, and so is every crash after it', async () => {
  const a = await startEchoUpstream('a')
  const run = await startLb({ upstreams: [{ address: a.address }] }, 2)
  try {
    await workersReady(run, 2)
    const pool = run.lb.workerPool
    assert.ok(pool !== null)
    // piscina replaces an exited worker only once it has read that worker's ready message;
    // a worker that exits before (here: killed while its modules load) used to turn
    // replacing off for good, and the pool lost a thread with every later crash
    const before = new Set(pool.pool.threads)
    await pool.pool.threads[0].terminate()
    const starting = pool.pool.threads.find((t) => !before.has(t))
    assert.ok(starting !== undefined, 'piscina started a replacement for the first crash')
    const startingId = starting.threadId
    await starting.terminate()
    await waitFor(() => pool.pool.threads.length === 2 && pool.pool.threads.every((t) => t.threadId > 0 && t.threadId !== startingId), 10_000, 'a replacement for the worker that died while starting')
    await workersReady(run, 2)
    for (let crash = 0; crash < 2; crash++) {
      const victimId = pool.pool.threads[crash].threadId
      await pool.pool.threads[crash].terminate()
      await waitFor(() => pool.pool.threads.length === 2 && pool.pool.threads.every((t) => t.threadId > 0 && t.threadId !== victimId), 10_000, `a replacement after crash ${crash + 2}`)
      await workersReady(run, 2)
    }
    const results = []
    for (let i = 0; i < 10; i++) results.push(await oneShot(run.port, `/after-respawn/${i}`))
    assert.deepEqual(results.filter((r) => r !== 'ok'), [], 'every connection after the replacements got a 200')
  } finally {
    await run.stop()
    await a.close()
  }
})

test('workers=2: workers started around a reload serve the reloaded config', async () => {
  const a = await startEchoUpstream('a')
  const b = await startEchoUpstream('b')
  const base = { listen: '127.0.0.1:0', log: { level: 'silent', access: false }, workers: 2 }
  const run = await startLb({ upstreams: [{ address: a.address }] }, 2)
  try {
    await workersReady(run, 2)
    const pool = run.lb.workerPool
    assert.ok(pool !== null)
    const [first, second] = pool.pool.threads
    // 1. a replacement created before the reload, still loading its modules when the
    //    reload is published: not yet listening, it cannot hear the broadcast
    await first.terminate()
    run.lb.reload(resolveConfig({ ...base, upstreams: [{ address: b.address }] }))
    await waitFor(() => pool.pool.threads.length === 2 && !pool.pool.threads.includes(first), 10_000, 'a replacement for the first worker')
    await workersReady(run, 2)
    // 2. a replacement created after the reload: it starts from workerData
    await second.terminate()
    await waitFor(() => pool.pool.threads.length === 2 && !pool.pool.threads.includes(second), 10_000, 'a replacement for the second worker')
    await workersReady(run, 2)
    const slots = workerThreadIds(run).map((id) => slotOfThread(run.lb.state, id))
    const requestsBefore = slots.map((slot) => run.lb.state.worker(slot, W_REQUESTS))
    const served: string[] = []
    for (let i = 0; i < 10; i++) {
      const reply = await httpRequest(run.port, { path: `/after-reload/${i}` })
      served.push(`${reply.status} ${String(reply.headers['x-upstream'])}`)
    }
    const perWorker = slots.map((slot, i) => run.lb.state.worker(slot, W_REQUESTS) - requestsBefore[i])
    console.log(`after the reload and two replacements: ${served.join(', ')}; requests per worker: ${perWorker.join(', ')}`)
    assert.ok(perWorker.every((n) => n > 0), `both replacements served some of the requests (${perWorker.join(', ')})`)
    assert.deepEqual(served.filter((s) => s !== '200 b'), [], 'every request went to the upstream of the reloaded config')
  } finally {
    await run.stop()
    await closeAll([a, b])
  }
})

test('workers=2: a crashed worker\'s shared-state slot is released (W_THREAD_ID cleared by the primary)', async () => {
  const a = await startEchoUpstream('a')
  const run = await startLb({ upstreams: [{ address: a.address }] }, 2)
  const held: Conn[] = []
  try {
    await workersReady(run, 2)
    const pool = run.lb.workerPool
    assert.ok(pool !== null)
    for (let i = 0; i < 2; i++) {
      const conn = await Conn.open(run.port)
      held.push(conn)
      assert.equal((await conn.request(`/hold/${i}`)).status, 200)
    }
    const victim = pool.pool.threads[0]
    const victimId = victim.threadId
    const victimSlot = slotOfThread(run.lb.state, victimId)
    assert.notEqual(victimSlot, -1)
    await victim.terminate()
    await waitFor(() => pool.pool.threads.length === 2 && pool.pool.threads.every((t) => t.threadId > 0 && t.threadId !== victimId), 10_000, 'a replacement worker')
    await workersReady(run, 2)
    // layout.ts: "THREAD_ID cleared by the primary when that worker exits". A slot
    // left claimed keeps a dead thread's W_OPEN_CONNECTIONS in every sum, and after
    // MAX_WORKER_SLOTS crashes new workers get no slot at all.
    try {
      await waitFor(() => slotOfThread(run.lb.state, victimId) === -1, 2000, 'the dead worker\'s slot to be released')
    } catch { /* asserted below with the numbers */ }
    const claimed = claimedSlots(run.lb.state)
    console.log(`claimed worker slots after the crash: ${JSON.stringify(claimed)} (dead thread ${victimId} had slot ${victimSlot})`)
    assert.equal(slotOfThread(run.lb.state, victimId), -1, `slot ${victimSlot} still claimed by dead thread ${victimId}; open connections there: ${run.lb.state.worker(victimSlot, W_OPEN_CONNECTIONS)}`)
    assert.equal(claimed.length, 2, 'exactly the two live workers hold slots')
  } finally {
    for (const c of held) c.destroy()
    await run.stop()
    await a.close()
  }
})

// ---- lifecycle with the real CLI --------------------------------------------

for (const mode of MODES) {
  test(`${mode.name} CLI: SIGTERM lets the in-flight slow request finish, refuses new connections, exits 0`, async () => {
    let received = 0
    const slow = await startEchoUpstream('slow', (_req, res) => {
      received++
      setTimeout(() => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('slow done') }, 500)
      return true
    })
    const lb = await spawnLb(['--bind', '127.0.0.1:0', '--upstream', slow.address, '--workers', String(mode.workers), '--no-access-log'])
    const exited = exitOf(lb.child)
    const held: Conn[] = []
    try {
      // an idle keep-alive connection, and a keep-alive one with the slow request in flight
      const idle = await Conn.open(lb.port)
      held.push(idle)
      assert.equal((await idle.request('/warm')).status, 200) // answered after 500 ms too
      received = 0
      const busy = await Conn.open(lb.port)
      held.push(busy)
      const inFlight = busy.request('/slow')
      await waitFor(() => received === 1, 5000, 'the slow request to reach the upstream')
      const signalledAt = Date.now()
      lb.child.kill('SIGTERM')
      await waitFor(async () => await connectRefused(lb.port), 3000, 'new connections refused while draining')
      const refusedAfter = Date.now() - signalledAt
      // idle connections are closed at once, not kept until drainMs
      await waitFor(() => idle.closed, 3000, 'the idle keep-alive connection closed by the drain')
      const reply = await inFlight
      assert.equal(reply.status, 200)
      assert.equal(reply.body, 'slow done')
      assert.equal(reply.headers.connection, 'close', 'the last response on a draining connection says Connection: close')
      await waitFor(() => busy.closed, 3000, 'the busy connection closed after its response')
      const code = await exited
      console.log(`${mode.name}: listener closed ${refusedAfter} ms after SIGTERM; exited ${Date.now() - signalledAt} ms after it with ${code}`)
      assert.equal(code, 0, `exit code\n${lb.output()}`)
    } finally {
      for (const c of held) c.destroy()
      if (lb.child.exitCode === null && lb.child.signalCode === null) lb.child.kill('SIGKILL')
      await exited
      await slow.close()
    }
  })

  test(`${mode.name} CLI: a second SIGTERM while draining exits at once with a non-zero code`, async () => {
    // accepts and never answers: the first SIGTERM would wait for responseMs (5 s)
    const hung = await startRawServer(() => {})
    const lb = await spawnLb(['--bind', '127.0.0.1:0', '--upstream', hung.address, '--workers', String(mode.workers), '--no-access-log'])
    const exited = exitOf(lb.child)
    const inFlight = httpRequest(lb.port, { path: '/hang' }).catch((err: Error) => err)
    try {
      await waitFor(() => hung.count === 1, 5000, 'the request to reach the hung upstream')
      lb.child.kill('SIGTERM')
      await waitFor(async () => await connectRefused(lb.port), 3000, 'draining started (listener closed)')
      assert.equal(lb.child.exitCode, null, 'still draining after the first SIGTERM')
      const secondAt = Date.now()
      lb.child.kill('SIGTERM')
      const code = await exited
      const took = Date.now() - secondAt
      console.log(`${mode.name}: exited ${took} ms after the second SIGTERM with ${code}`)
      assert.notEqual(code, 0, 'non-zero exit code')
      assert.notEqual(code, null, 'exited by itself, not killed by the signal')
      // "at once": well under the 5 s the drain would otherwise take (generous for 2 shared cores)
      assert.ok(took < 2000, `exit took ${took} ms`)
      await inFlight
    } finally {
      if (lb.child.exitCode === null && lb.child.signalCode === null) lb.child.kill('SIGKILL')
      await exited
      await inFlight
      await hung.close()
    }
  })
}
