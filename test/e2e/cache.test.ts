/**
 * The shared response cache end to end (RFC 9111 as a shared cache), in both
 * modes: what is served from the cache (HIT with Age), what is revalidated
 * with the stored validator (304 upstream -> 200 REVALIDATED), what must never
 * be stored (no-store, private, Set-Cookie, Authorization, POST, chunked),
 * Vary variants, 304 to a client's own conditional request, HEAD from a GET
 * entry, request collapsing (one upstream request for 100 concurrent misses,
 * across workers too), the maxBytes bound under a stream of large responses,
 * a HIT through another worker, admin purge; and a measurement (logged, not
 * asserted) of a cache hit against a proxied miss.
 *
 * The upstream is node:http with a handler per path that counts requests and
 * answers with exactly the caching headers each test needs, Content-Length
 * framed unless the test is about chunked responses. Every test uses its own
 * paths, so one switchyard per mode serves the whole suite.
 *
 * On timing: a response is stored in the same synchronous call that writes
 * its last body bytes to the client (upstream.ts consume -> finishExchange ->
 * client.onResponseEnd -> CacheState.onResponseEnd), so by the time a client
 * has read a MISS and sent its next request the entry is there; no test needs
 * to wait for a store.
 */
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as http from 'node:http'
import * as net from 'node:net'
import { performance } from 'node:perf_hooks'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MODES, startLb, spawnLb, type RunningLb, type SpawnedLb } from './harness'
import { Origin, send, fixed } from './cache-origin'
import { httpRequest, rawExchange, waitFor } from '../helpers'
import { H_CACHE_BYTES, H_CACHE_ENTRIES, MAX_WORKER_SLOTS, W_REQUESTS, W_THREAD_ID } from '../../src/shared/layout'
import type { StatusJson } from '../../src/admin/status'

// ---- client side ---------------------------------------------------------------------

interface Reply { status: number, headers: http.IncomingHttpHeaders, body: string }

/** Worker slots in use (W_THREAD_ID != 0). */
function claimedSlots (run: RunningLb): number[] {
  const slots: number[] = []
  for (let slot = 0; slot < MAX_WORKER_SLOTS; slot++) if (run.lb.state.worker(slot, W_THREAD_ID) !== 0) slots.push(slot)
  return slots
}

function requestsPerSlot (run: RunningLb, slots: number[]): number[] {
  return slots.map((slot) => run.lb.state.worker(slot, W_REQUESTS) >>> 0)
}

/** GET on a new connection that fails (instead of hanging) when no response comes within `timeoutMs`. */
async function getWithin (port: number, path: string, timeoutMs: number): Promise<Reply> {
  return await new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`no response within ${timeoutMs} ms`)))
    req.on('error', reject)
    req.end()
  })
}

/**
 * One raw keep-alive connection doing GETs one after another, framing answers
 * by Content-Length: much less client work per request than node:http, so a
 * measurement sees more of the proxy.
 */
class RawKeepAlive {
  private buffered: Buffer = Buffer.alloc(0)
  private waiting: { resolve: (r: { status: number, xCache: string, bodyLength: number }) => void, reject: (e: Error) => void } | null = null

  private constructor (private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk])
      this.tryComplete()
    })
    socket.on('error', (err) => this.waiting?.reject(err))
    socket.on('close', () => this.waiting?.reject(new Error('connection closed')))
  }

  static async open (port: number): Promise<RawKeepAlive> {
    const socket = net.connect(port, '127.0.0.1')
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
    socket.setNoDelay(true)
    return new RawKeepAlive(socket)
  }

  async get (path: string, host: string): Promise<{ status: number, xCache: string, bodyLength: number }> {
    const done = new Promise<{ status: number, xCache: string, bodyLength: number }>((resolve, reject) => { this.waiting = { resolve, reject } })
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`)
    return await done
  }

  private tryComplete (): void {
    const headEnd = this.buffered.indexOf('\r\n\r\n')
    if (headEnd === -1 || this.waiting === null) return
    const head = this.buffered.toString('latin1', 0, headEnd)
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0)
    const end = headEnd + 4 + length
    if (this.buffered.length < end) return
    this.buffered = this.buffered.subarray(end)
    const waiting = this.waiting
    this.waiting = null
    waiting.resolve({ status: Number(head.slice(9, 12)), xCache: /\r\nx-cache: *([A-Z]+)/i.exec(head)?.[1] ?? '', bodyLength: length })
  }

  close (): void { this.socket.destroy() }
}

/** SIGTERM, then SIGKILL when the process does not exit (a thread spinning in a loop never runs its signal handler). */
async function stopChild (lb: SpawnedLb): Promise<void> {
  const timer = setTimeout(() => { if (lb.child.exitCode === null && lb.child.signalCode === null) lb.child.kill('SIGKILL') }, 3000)
  await lb.stop()
  clearTimeout(timer)
}

const MAX_BYTES = 2 * 1024 * 1024

for (const mode of MODES) {
  describe(`shared cache (${mode.name})`, () => {
    const origin = new Origin()
    let run: RunningLb
    let host = ''

    before(async () => {
      await origin.listen()
      run = await startLb({
        upstreams: [{ address: origin.address }],
        cache: { maxBytes: MAX_BYTES },
        admin: { listen: '127.0.0.1:0' },
      }, mode.workers)
      // what http.request sends as Host, and so what the cache key and a purge name
      host = `127.0.0.1:${run.port}`
      if (mode.workers > 0) await waitFor(() => claimedSlots(run).length === mode.workers, 10_000, 'worker slots claimed')
    })

    after(async () => {
      await run?.stop()
      await origin.close()
    })

    async function get (path: string, headers: http.OutgoingHttpHeaders = {}, extra: http.RequestOptions & { body?: string } = {}): Promise<Reply> {
      return await httpRequest(run.port, { path, headers, ...extra })
    }

    test('max-age: HIT with Age and the same body until stale, then revalidated with the stored ETag (upstream 304 -> 200 REVALIDATED)', async () => {
      const path = '/fresh/a'
      origin.route(path, (req, res) => {
        if (req.headers['if-none-match'] === '"v1"') { send(res, 304, { etag: '"v1"', 'cache-control': 'max-age=1' }, ''); return }
        send(res, 200, { etag: '"v1"', 'cache-control': 'max-age=1' }, 'fresh body v1\n')
      })
      const first = await get(path)
      const storedAt = Date.now()
      assert.equal(first.status, 200)
      assert.equal(first.headers['x-cache'], 'MISS')
      assert.equal(first.body, 'fresh body v1\n')
      assert.equal(origin.count(path), 1)

      const second = await get(path)
      assert.ok(Date.now() < storedAt + 1000, 'the second request went out within max-age (test timing)')
      assert.equal(second.status, 200)
      assert.equal(second.headers['x-cache'], 'HIT', `second request within max-age=1: X-Cache ${String(second.headers['x-cache'])}, Age ${String(second.headers.age)}`)
      assert.match(String(second.headers.age), /^\d+$/, 'a hit carries Age (RFC 9111 §5.1)')
      assert.equal(second.body, 'fresh body v1\n')
      assert.equal(origin.count(path), 1, 'a hit does not reach the upstream')

      // This test is about time passing: a max-age=1 entry must go stale. Wait for
      // the condition itself (1 s of freshness plus 100 ms margin since we received it).
      await waitFor(() => Date.now() >= storedAt + 1100, 3000, 'the max-age=1 entry to go stale')
      const third = await get(path)
      assert.equal(third.status, 200)
      assert.equal(third.headers['x-cache'], 'REVALIDATED')
      assert.equal(third.body, 'fresh body v1\n', 'the cached body, not the 304\'s empty one')
      assert.equal(origin.count(path), 2, 'one conditional request upstream')
      assert.equal(origin.seen(path)[1].headers['if-none-match'], '"v1"', 'the upstream received our stored validator')
    })

    test('a revalidated entry is fresh again (RFC 9111 §4.3.4): the next request is a HIT', async () => {
      const path = '/fresh/b'
      origin.route(path, (req, res) => {
        if (req.headers['if-none-match'] === '"b1"') { send(res, 304, { etag: '"b1"', 'cache-control': 'max-age=2' }, ''); return }
        send(res, 200, { etag: '"b1"', 'cache-control': 'max-age=2' }, 'body b1\n')
      })
      const first = await get(path)
      const storedAt = Date.now()
      assert.equal(first.headers['x-cache'], 'MISS')
      // time passing again: wait until the 2 s of freshness are over
      await waitFor(() => Date.now() >= storedAt + 2100, 4000, 'the max-age=2 entry to go stale')
      const revalidated = await get(path)
      assert.equal(revalidated.headers['x-cache'], 'REVALIDATED')
      assert.equal(revalidated.body, 'body b1\n')
      assert.equal(origin.seen(path)[1].headers['if-none-match'], '"b1"', 'the upstream received our stored validator')
      const after = await get(path)
      assert.equal(after.headers['x-cache'], 'HIT', `after revalidation: X-Cache ${String(after.headers['x-cache'])}`)
      assert.equal(after.body, 'body b1\n')
      assert.equal(origin.count(path), 2)
    })

    describe('never stored', () => {
      const cases: Array<{ name: string, path: string, response: http.OutgoingHttpHeaders, request?: http.OutgoingHttpHeaders }> = [
        { name: 'Cache-Control: no-store', path: '/never/no-store', response: { 'cache-control': 'no-store, max-age=60' } },
        { name: 'Cache-Control: private', path: '/never/private', response: { 'cache-control': 'private, max-age=60' } },
        { name: 'a response with Set-Cookie', path: '/never/set-cookie', response: { 'cache-control': 'max-age=60', 'set-cookie': 'session=abc; Path=/' } },
        { name: 'a request with Authorization', path: '/never/authorization', response: { 'cache-control': 'max-age=60' }, request: { authorization: 'Bearer secret-token' } },
      ]
      for (const c of cases) {
        test(`${c.name}: the second request reaches the upstream`, async () => {
          origin.route(c.path, (_req, res) => send(res, 200, c.response, `answer ${origin.count(c.path)}\n`))
          const first = await get(c.path, c.request)
          const second = await get(c.path, c.request)
          assert.equal(first.status, 200)
          assert.equal(second.status, 200)
          assert.equal(origin.count(c.path), 2)
          assert.equal(second.body, 'answer 2\n', 'the upstream\'s fresh answer')
          assert.notEqual(second.headers['x-cache'], 'HIT')
        })
      }

      test('POST is never cached, nor answered from a cached GET of the same URL', async () => {
        const path = '/never/post'
        origin.route(path, (req, res, body) => send(res, 200, { 'cache-control': 'max-age=60' }, `${req.method ?? ''} ${body.toString()} #${origin.count(path)}\n`))
        const post1 = await get(path, { 'content-type': 'text/plain' }, { method: 'POST', body: 'one' })
        const post2 = await get(path, { 'content-type': 'text/plain' }, { method: 'POST', body: 'two' })
        assert.equal(post1.body, 'POST one #1\n')
        assert.equal(post2.body, 'POST two #2\n')
        const getReply = await get(path)
        assert.equal(getReply.body, 'GET  #3\n')
        assert.equal((await get(path)).headers['x-cache'], 'HIT', 'the GET is cached')
        const post3 = await get(path, { 'content-type': 'text/plain' }, { method: 'POST', body: 'three' })
        assert.equal(post3.body, 'POST three #4\n', 'a POST goes upstream even with a GET entry stored')
        assert.equal(origin.count(path), 4)
      })

      test('a successful POST invalidates the stored GET of its URL (RFC 9111 §4.4 MUST)', async () => {
        const path = '/never/post-invalidates'
        let version = 1
        origin.route(path, (req, res) => {
          if (req.method === 'POST') { version++; send(res, 200, {}, 'updated\n'); return }
          send(res, 200, { 'cache-control': 'max-age=600' }, `version ${version}\n`)
        })
        assert.equal((await get(path)).body, 'version 1\n')
        assert.equal((await get(path)).headers['x-cache'], 'HIT')
        const post = await get(path, { 'content-type': 'text/plain' }, { method: 'POST', body: 'new' })
        assert.equal(post.status, 200)
        const after = await get(path)
        assert.equal(after.body, 'version 2\n', `GET after a 200 to POST: X-Cache ${String(after.headers['x-cache'])}`)
        assert.equal(after.headers['x-cache'], 'MISS')
      })

      test('requests for an uncacheable URL are not queued behind one another (hit-for-pass)', async () => {
        const path = '/never/pass'
        let inFlight = 0
        let maxInFlight = 0
        origin.route(path, (_req, res) => {
          inFlight++
          maxInFlight = Math.max(maxInFlight, inFlight)
          // answer once 200 ms have passed, so that concurrent requests overlap at the upstream
          setTimeout(() => { inFlight--; send(res, 200, { 'cache-control': 'no-store' }, 'not for keeping\n') }, 200)
        })
        // the first response tells the cache this URL is not storable
        assert.equal((await get(path)).status, 200)
        maxInFlight = 0
        const replies = await Promise.all(Array.from({ length: 20 }, async () => await get(path)))
        assert.ok(replies.every((r) => r.status === 200 && r.body === 'not for keeping\n'))
        // coalescing would let one request through at a time (maxInFlight 1); with two workers,
        // the one that has not seen the URL yet holds its own requests back for one round trip
        assert.ok(maxInFlight >= 10, `upstream saw at most ${maxInFlight} of the 20 requests at once`)
      })

      test('a chunked response passes through uncached (documented limitation)', async () => {
        const path = '/never/chunked'
        origin.route(path, (_req, res) => {
          // no Content-Length: node:http frames it chunked
          res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
          res.write('chunk one, ')
          res.end(`chunk two #${origin.count(path)}\n`)
        })
        const first = await get(path)
        const second = await get(path)
        assert.equal(first.headers['transfer-encoding'], 'chunked')
        assert.equal(first.body, 'chunk one, chunk two #1\n')
        assert.equal(second.body, 'chunk one, chunk two #2\n')
        assert.equal(second.headers['x-cache'], 'MISS')
        assert.equal(origin.count(path), 2)
      })
    })

    test('Vary: Accept-Encoding keeps the gzip and identity variants apart, each served from cache afterwards', async () => {
      const path = '/vary/ae'
      origin.route(path, (req, res) => {
        const gzip = /gzip/.test(String(req.headers['accept-encoding'] ?? ''))
        send(res, 200, {
          'cache-control': 'max-age=60',
          vary: 'Accept-Encoding',
          ...(gzip ? { 'content-encoding': 'gzip' } : {}),
        }, gzip ? 'pretend-gzip-bytes\n' : 'plain identity text\n')
      })
      const gzip = { 'accept-encoding': 'gzip' }
      const identity = { 'accept-encoding': 'identity' }
      const g1 = await get(path, gzip)
      const i1 = await get(path, identity)
      assert.equal(g1.headers['x-cache'], 'MISS')
      assert.equal(i1.headers['x-cache'], 'MISS', 'another variant is a miss, not the gzip body')
      assert.equal(g1.body, 'pretend-gzip-bytes\n')
      assert.equal(i1.body, 'plain identity text\n')
      for (let round = 0; round < 2; round++) {
        const g = await get(path, gzip)
        const i = await get(path, identity)
        assert.equal(g.headers['x-cache'], 'HIT')
        assert.equal(g.body, 'pretend-gzip-bytes\n')
        assert.equal(g.headers['content-encoding'], 'gzip')
        assert.equal(i.headers['x-cache'], 'HIT')
        assert.equal(i.body, 'plain identity text\n')
        assert.equal(i.headers['content-encoding'], undefined)
      }
      assert.equal(origin.count(path), 2)
    })

    test('a client\'s If-None-Match matching the cached ETag gets 304 from the cache', async () => {
      const path = '/conditional/etag'
      origin.route(path, fixed({ 'cache-control': 'max-age=60', etag: '"abc"' }, 'conditional body\n'))
      assert.equal((await get(path)).headers['x-cache'], 'MISS')
      const notModified = await get(path, { 'if-none-match': '"abc"' })
      assert.equal(notModified.status, 304)
      assert.equal(notModified.body, '')
      assert.equal(notModified.headers.etag, '"abc"')
      assert.equal(notModified.headers['x-cache'], 'HIT')
      const weak = await get(path, { 'if-none-match': '"zzz", W/"abc"' })
      assert.equal(weak.status, 304, 'weak comparison, any tag in the list (RFC 9110 §13.1.2)')
      const other = await get(path, { 'if-none-match': '"other"' })
      assert.equal(other.status, 200)
      assert.equal(other.body, 'conditional body\n')
      assert.equal(other.headers['x-cache'], 'HIT')
      assert.equal(origin.count(path), 1, 'none of these reached the upstream')
    })

    test('HEAD after a cached GET is served from the cache without a body', async () => {
      const path = '/head/after-get'
      const body = 'the GET body, 27 bytes long'
      origin.route(path, fixed({ 'cache-control': 'max-age=60' }, body))
      assert.equal((await get(path)).headers['x-cache'], 'MISS')
      // raw bytes: nothing may follow the head on the wire
      const reply = await rawExchange(run.port, `HEAD ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
      const headEnd = reply.text.indexOf('\r\n\r\n')
      assert.ok(headEnd > 0, reply.text)
      assert.match(reply.text, /^HTTP\/1\.1 200 /)
      assert.match(reply.text, /\r\nX-Cache: HIT\r\n/i)
      assert.match(reply.text, new RegExp(`\\r\\ncontent-length: ${Buffer.byteLength(body)}\\r\\n`, 'i'))
      assert.equal(reply.data.length, headEnd + 4, `no body after the head: ${JSON.stringify(reply.text.slice(headEnd + 4))}`)
      assert.equal(origin.count(path), 1)
    })

    test('stays under maxBytes through 60 distinct 100 KB responses; recent entries still hit', async (t) => {
      const size = 100 * 1024
      const bodyOf = (i: number): Buffer => Buffer.alloc(size, 0x41 + (i % 26))
      origin.route('/big', (req, res) => {
        const i = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('i'))
        send(res, 200, { 'cache-control': 'max-age=600', 'content-type': 'application/octet-stream' }, bodyOf(i))
      })
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
      try {
        let maxSeen = 0
        for (let i = 0; i < 60; i++) {
          const reply = await get(`/big?i=${i}`, {}, { agent })
          assert.equal(reply.status, 200)
          assert.equal(reply.body.length, size, `response ${i}`)
          assert.equal(reply.headers['x-cache'], 'MISS', `response ${i}`)
          const bytes = run.lb.state.header(H_CACHE_BYTES)
          maxSeen = Math.max(maxSeen, bytes)
          assert.ok(bytes <= MAX_BYTES, `after response ${i}: H_CACHE_BYTES ${bytes} > maxBytes ${MAX_BYTES}`)
        }
        const entries = run.lb.state.header(H_CACHE_ENTRIES)
        t.diagnostic(`60 x 100 KB through maxBytes ${MAX_BYTES}: largest H_CACHE_BYTES seen ${maxSeen}, entries at the end ${entries}`)
        assert.ok(maxSeen > MAX_BYTES / 2, `the cache filled up (max ${maxSeen})`)
        const upstreamBefore = origin.count('/big')
        assert.equal(upstreamBefore, 60)
        for (let i = 55; i < 60; i++) {
          const reply = await get(`/big?i=${i}`, {}, { agent })
          assert.equal(reply.headers['x-cache'], 'HIT', `recent entry ${i}`)
          assert.equal(reply.body, bodyOf(i).toString(), `recent entry ${i}`)
        }
        assert.equal(origin.count('/big'), upstreamBefore)
        const early = await get('/big?i=0', {}, { agent })
        assert.equal(early.headers['x-cache'], 'MISS', 'the oldest entry was evicted')
        assert.ok(run.lb.state.header(H_CACHE_BYTES) <= MAX_BYTES)
      } finally {
        agent.destroy()
      }
    })

    if (mode.workers > 0) {
      test('a response cached through one worker is a HIT through the other', async () => {
        const path = '/cross/worker'
        origin.route(path, fixed({ 'cache-control': 'max-age=600' }, 'one copy for all threads\n'))
        const slots = claimedSlots(run)
        assert.equal(slots.length, 2)
        const before = requestsPerSlot(run, slots)
        // 20 keep-alive connections; each is closed only after the next one has
        // been answered, so at every accept one worker holds a connection and the
        // other none: the fewest-connections dispatcher alternates between them
        let previous: http.Agent | null = null
        const xCache: string[] = []
        try {
          for (let i = 0; i < 20; i++) {
            const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
            const reply = await get(path, {}, { agent })
            assert.equal(reply.status, 200)
            assert.equal(reply.body, 'one copy for all threads\n')
            xCache.push(String(reply.headers['x-cache']))
            previous?.destroy()
            previous = agent
          }
        } finally {
          previous?.destroy()
        }
        const perSlot = requestsPerSlot(run, slots).map((n, i) => n - before[i])
        assert.ok(perSlot.every((n) => n > 0), `both worker slots served requests: ${perSlot.join(', ')}`)
        assert.equal(xCache[0], 'MISS')
        assert.deepEqual(xCache.slice(1), Array(19).fill('HIT'), 'every connection after the first')
        assert.equal(origin.count(path), 1)
      })
    }

    test('admin purge removes an entry: the next request is a MISS', async () => {
      const path = '/purge/me'
      origin.route(path, (_req, res) => send(res, 200, { 'cache-control': 'max-age=600' }, `version ${origin.count(path)}\n`))
      assert.equal((await get(path)).headers['x-cache'], 'MISS')
      const hit = await get(path)
      assert.equal(hit.headers['x-cache'], 'HIT')
      assert.equal(hit.body, 'version 1\n')
      const admin = run.lb.admin
      assert.ok(admin !== null, 'admin listener is on')
      const purge = await httpRequest(admin.address.port, { method: 'POST', path: `/api/cache/purge?path=${encodeURIComponent(path)}&host=${encodeURIComponent(host)}` })
      assert.equal(purge.status, 200, purge.body)
      assert.equal(JSON.parse(purge.body).purged, true, purge.body)
      const after = await get(path)
      assert.equal(after.headers['x-cache'], 'MISS')
      assert.equal(after.body, 'version 2\n')
      assert.equal(origin.count(path), 2)
      assert.equal((await get(path)).headers['x-cache'], 'HIT', 'stored again')
    })

    test('admin purge of a URL with Vary removes every variant', async () => {
      const path = '/purge/vary'
      origin.route(path, (req, res) => send(res, 200, { 'cache-control': 'max-age=600', vary: 'Accept-Language' }, `${String(req.headers['accept-language'])} #${origin.count(path)}\n`))
      const en = { 'accept-language': 'en' }
      const fr = { 'accept-language': 'fr' }
      await get(path, en)
      await get(path, fr)
      assert.equal((await get(path, en)).headers['x-cache'], 'HIT')
      assert.equal((await get(path, fr)).headers['x-cache'], 'HIT')
      const admin = run.lb.admin
      assert.ok(admin !== null)
      const purge = await httpRequest(admin.address.port, { method: 'POST', path: `/api/cache/purge?path=${encodeURIComponent(path)}&host=${encodeURIComponent(host)}` })
      assert.equal(JSON.parse(purge.body).purged, true, purge.body)
      const enAfter = await get(path, en)
      const frAfter = await get(path, fr)
      assert.equal(enAfter.headers['x-cache'], 'MISS')
      assert.equal(frAfter.headers['x-cache'], 'MISS')
      assert.equal(enAfter.body, 'en #3\n')
      assert.equal(frAfter.body, 'fr #4\n')
    })

    test('measure: requests/s of a cache hit vs a proxied miss (2,000 sequential keep-alive requests each)', async (t) => {
      const body = 'x'.repeat(512)
      origin.route('/measure/hit', fixed({ 'cache-control': 'max-age=600' }, body))
      origin.route('/measure/miss', fixed({ 'cache-control': 'no-store' }, body))
      const n = 2000
      const rounds = 4 // interleaved, so neither side gets all the JIT warm-up or a quiet moment on the shared cores
      const client = await RawKeepAlive.open(run.port)
      const elapsedMs = { hit: 0, miss: 0 }
      async function timed (path: string, expectXCache: string, count: number): Promise<number> {
        const start = performance.now()
        for (let i = 0; i < count; i++) {
          const reply = await client.get(path, host)
          if (reply.status !== 200 || reply.xCache !== expectXCache || reply.bodyLength !== body.length) {
            assert.fail(`${path} request ${i}: ${reply.status} X-Cache ${reply.xCache} body ${reply.bodyLength}`)
          }
        }
        return performance.now() - start
      }
      async function rates (): Promise<{ hitRate: number, missRate: number }> {
        await timed('/measure/hit', 'MISS', 1) // stores it
        await timed('/measure/hit', 'HIT', 200) // warm-up
        await timed('/measure/miss', 'MISS', 200)
        for (let r = 0; r < rounds; r++) {
          elapsedMs.hit += await timed('/measure/hit', 'HIT', n / rounds)
          elapsedMs.miss += await timed('/measure/miss', 'MISS', n / rounds)
        }
        return { hitRate: n / (elapsedMs.hit / 1000), missRate: n / (elapsedMs.miss / 1000) }
      }
      try {
        const missBefore = origin.count('/measure/miss')
        const { hitRate, missRate } = await rates()
        assert.equal(origin.count('/measure/hit'), 1, 'every timed hit was served from the cache')
        assert.equal(origin.count('/measure/miss') - missBefore, n + 200, 'every timed miss reached the upstream')
        t.diagnostic(`cache hit ${hitRate.toFixed(0)} req/s vs proxied miss ${missRate.toFixed(0)} req/s: ${(hitRate / missRate).toFixed(2)}x ` +
          `(one keep-alive connection, sequential, 512-byte body; client${mode.workers === 0 ? ', proxy and upstream share this thread' : ' and upstream on this thread'})`)
      } finally {
        client.close()
      }
    })
  })

  /*
   * Request collapsing runs switchyard as the real CLI in a child process
   * (same mode, same code path): a proxy thread that stops serving while
   * requests are parked must fail these tests by their deadlines, not freeze
   * the test runner, which is what an in-process sequential switchyard would
   * do (it shares this thread). Counters come from the admin API, which
   * samples the shared state when asked.
   */
  describe(`shared cache: request collapsing (${mode.name}, CLI child process)`, () => {
    const origin = new Origin()
    let lb: SpawnedLb | null = null
    let adminPort = 0
    let dir = ''

    before(async () => {
      await origin.listen()
      dir = mkdtempSync(join(tmpdir(), 'switchyard-cache-'))
      const configPath = join(dir, 'lb.json')
      writeFileSync(configPath, JSON.stringify({
        listen: '127.0.0.1:0',
        workers: mode.workers,
        upstreams: [{ address: origin.address }],
        cache: { maxBytes: MAX_BYTES },
        admin: { listen: '127.0.0.1:0' },
        log: { level: 'info', access: false },
      }))
      lb = await spawnLb(['--config', configPath])
      const m = /"address":"http:\/\/127\.0\.0\.1:(\d+)"[^\n]*"msg":"admin listening"/.exec(lb.output())
      assert.ok(m !== null, `admin address in the log:\n${lb.output()}`)
      adminPort = Number(m[1])
      if (mode.workers > 0) await waitFor(async () => (await status()).workers.length === mode.workers, 10_000, 'workers up')
    })

    after(async () => {
      if (lb !== null) await stopChild(lb)
      await origin.close()
      if (dir !== '') rmSync(dir, { recursive: true, force: true })
    })

    async function status (): Promise<StatusJson> {
      const reply = await httpRequest(adminPort, { path: '/api/status' })
      assert.equal(reply.status, 200, reply.body)
      return JSON.parse(reply.body) as StatusJson
    }

    /** 100 concurrent GETs on new connections; the upstream answers `path` after 200 ms. */
    async function burst (path: string, body: string): Promise<Reply[]> {
      origin.route(path, (_req, res) => {
        const timer = setTimeout(() => send(res, 200, { 'cache-control': 'max-age=60' }, body), 200)
        res.on('close', () => clearTimeout(timer))
      })
      const port = (lb as SpawnedLb).port
      const settled = await Promise.allSettled(Array.from({ length: 100 }, async () => await getWithin(port, path, 5000)))
      const failed = settled.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
      assert.equal(failed.length, 0, `${failed.length} of 100 clients failed, e.g. ${String(failed[0]?.reason)}; upstream saw ${origin.count(path)} request(s)`)
      return settled.map((r) => (r as PromiseFulfilledResult<Reply>).value)
    }

    test('100 concurrent misses on one key send exactly 1 request upstream; all 100 clients get the body', async () => {
      const path = '/collapse/one'
      const body = 'collapsed body\n'.repeat(20)
      const before = await status()
      const replies = await burst(path, body)
      for (const [i, reply] of replies.entries()) {
        assert.equal(reply.status, 200, `client ${i}`)
        assert.equal(reply.body, body, `client ${i}`)
      }
      assert.equal(origin.count(path), 1, 'one request upstream for 100 concurrent misses')
      const xCache = replies.map((r) => String(r.headers['x-cache']))
      assert.equal(xCache.filter((x) => x === 'MISS').length, 1, `X-Cache values: ${[...new Set(xCache)].join(', ')}`)
      const after = await status()
      const perWorker = after.workers.map((w) => w.requests - (before.workers.find((b) => b.slot === w.slot)?.requests ?? 0))
      assert.equal(perWorker.reduce((a, b) => a + b, 0), 100)
      if (mode.workers > 0) {
        assert.ok(perWorker.length === 2 && perWorker.every((n) => n > 0), `both workers took some of the 100 requests (the collapse held across threads): ${perWorker.join(', ')}`)
      }
    })

    test('the hit and miss counters count requests: 100 collapsed requests are 1 miss and 99 hits', async () => {
      const path = '/collapse/counters'
      const before = await status()
      const replies = await burst(path, 'counted\n')
      assert.ok(replies.every((r) => r.status === 200 && r.body === 'counted\n'))
      assert.equal(origin.count(path), 1)
      const after = await status()
      const hits = after.cache.hits - before.cache.hits
      const misses = after.cache.misses - before.cache.misses
      assert.deepEqual({ hits, misses }, { hits: 99, misses: 1 }, 'H_CACHE_HITS / H_CACHE_MISSES count each request once, not each poll of a parked request')
    })
  })
}
