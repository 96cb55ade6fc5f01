/**
 * Issue #16 end to end, in both modes, continued: the cache is deterministic
 * across worker threads (200 distinct URLs fetched concurrently, then again:
 * 200 hits, nothing upstream), stale-while-revalidate (the first stale hit
 * answered at once, one background request upstream however many stale hits
 * arrive), stale-if-error and cache.staleIfErrorMs (an upstream that is down,
 * times out, closes on purpose or answers 503: the stale entry, never under
 * must-revalidate), and Range requests answered 206 / 416 from a stored 200.
 *
 * The stale-if-error upstream is a net.Server in front of a node:http
 * server, switched between answering, closing every connection, never
 * answering, and not listening at all (connections refused).
 */
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as http from 'node:http'
import * as net from 'node:net'
import type { AddressInfo } from 'node:net'
import { MODES, startLb, type RunningLb } from './harness'
import { Origin, send } from './cache-origin'
import { httpRequest, waitFor } from '../helpers'

type Reply = Awaited<ReturnType<typeof httpRequest>>

async function sleepUntil (ms: number): Promise<void> {
  await waitFor(() => Date.now() >= ms, ms - Date.now() + 2000, `the clock to reach ${ms}`)
}

for (const mode of MODES) {
  describe(`cache determinism, stale-while-revalidate, ranges (${mode.name})`, () => {
    const origin = new Origin()
    let run: RunningLb

    before(async () => {
      await origin.listen()
      run = await startLb({ upstreams: [{ address: origin.address }], cache: { maxBytes: 8 * 1024 * 1024 } }, mode.workers)
    })

    after(async () => {
      await run?.stop()
      await origin.close()
    })

    async function get (path: string, headers: http.OutgoingHttpHeaders = {}): Promise<Reply> {
      return await httpRequest(run.port, { path, headers })
    }

    test('200 distinct cacheable URLs fetched at once, then again: 200 hits and no upstream request on the second pass', async () => {
      const paths = Array.from({ length: 200 }, (_, i) => `/determinism/${i}`)
      for (const path of paths) origin.route(path, (_req, res) => send(res, 200, { 'cache-control': 'max-age=600' }, `${path} ${'x'.repeat(512)}\n`))
      const first = await Promise.all(paths.map(async (path) => await get(path)))
      assert.deepEqual(first.map((r) => r.status), paths.map(() => 200))
      const upstreamAfterFirst = origin.total
      const second = await Promise.all(paths.map(async (path) => await get(path)))
      const notHits = paths.filter((_, i) => second[i].headers['x-cache'] !== 'HIT')
      assert.deepEqual(notHits, [], 'every URL stored on the first pass')
      assert.equal(origin.total - upstreamAfterFirst, 0, 'no upstream request on the second pass')
      assert.ok(second.every((r, i) => r.body.startsWith(paths[i] + ' ')), 'each hit is its own URL')
      assert.equal(run.lb.cache?.stats().skippedStores, 0, 'no store given up')
    })

    test('stale-while-revalidate: the first stale hit is answered at once, the upstream sees one background request (RFC 5861 §3)', async () => {
      const path = '/swr/a'
      // the background revalidation is held at the upstream until the stale answers are in:
      // they cannot have waited for it
      let releaseRevalidation = (): void => {}
      const revalidationHeld = new Promise<void>((resolve) => { releaseRevalidation = resolve })
      origin.route(path, (req, res) => {
        if (req.headers['if-none-match'] === '"v1"') {
          // fresh for long: its time in flight already counts in its age (RFC 9111 §4.2.3)
          void revalidationHeld.then(() => send(res, 200, { etag: '"v2"', 'cache-control': 'max-age=600' }, 'version 2\n'))
          return
        }
        send(res, 200, { etag: '"v1"', 'cache-control': 'max-age=1, stale-while-revalidate=30' }, 'version 1\n')
      })
      const miss = await get(path)
      const storedAt = Date.now()
      assert.equal(miss.body, 'version 1\n')
      await sleepUntil(storedAt + 1100)
      const stale = await Promise.all(Array.from({ length: 6 }, async () => await get(path)))
      for (const reply of stale) {
        assert.equal(reply.status, 200)
        assert.equal(reply.headers['x-cache'], 'STALE')
        assert.equal(reply.body, 'version 1\n')
        assert.match(String(reply.headers.age), /^\d+$/, 'Age says how old the stale response is')
        assert.match(String(reply.headers['cache-status']), /^switchyard; hit; ttl=-\d+; detail=stale-while-revalidate$/)
      }
      await waitFor(() => origin.count(path) === 2, 3000, 'the background revalidation to reach the upstream')
      assert.equal(origin.seen(path)[1].headers['if-none-match'], '"v1"', 'it carries our validator')
      releaseRevalidation()
      // the refreshed entry is stored when its response ends
      await waitFor(async () => (await get(path)).body === 'version 2\n', 3000, 'the refreshed entry')
      const after = await get(path)
      assert.equal(after.headers['x-cache'], 'HIT')
      assert.equal(origin.count(path), 2, 'one background request for six stale hits (and the ones while it ran)')
    })

    describe('Range from a stored 200 (RFC 9110 §14)', () => {
      const path = '/range/a'
      before(async () => {
        origin.route(path, (_req, res) => send(res, 200, { etag: '"r1"', 'cache-control': 'max-age=600' }, 'abcdefghij'))
        const stored = await get(path)
        assert.equal(stored.headers['x-cache'], 'MISS')
      })

      const cases: Array<{ name: string, range: string, ifRange?: string, status: number, body: string, contentRange?: string }> = [
        { name: '§14.1.2 bytes=2-4', range: 'bytes=2-4', status: 206, body: 'cde', contentRange: 'bytes 2-4/10' },
        { name: '§14.1.2 an open range bytes=7-', range: 'bytes=7-', status: 206, body: 'hij', contentRange: 'bytes 7-9/10' },
        { name: '§14.1.2 a suffix bytes=-3', range: 'bytes=-3', status: 206, body: 'hij', contentRange: 'bytes 7-9/10' },
        { name: '§14.1.2 a last-pos past the end is the end', range: 'bytes=8-100', status: 206, body: 'ij', contentRange: 'bytes 8-9/10' },
        { name: '§15.5.17 unsatisfiable: 416 with Content-Range bytes */10', range: 'bytes=20-30', status: 416, body: '', contentRange: 'bytes */10' },
        { name: '§14.2 several ranges: the whole 200', range: 'bytes=0-1,4-5', status: 200, body: 'abcdefghij' },
        { name: '§14.2 another unit is ignored', range: 'items=0-1', status: 200, body: 'abcdefghij' },
        { name: '§13.1.5 If-Range with the stored ETag: the range', range: 'bytes=0-0', ifRange: '"r1"', status: 206, body: 'a', contentRange: 'bytes 0-0/10' },
        { name: '§13.1.5 If-Range with another ETag: the whole 200', range: 'bytes=0-0', ifRange: '"other"', status: 200, body: 'abcdefghij' },
      ]
      for (const c of cases) {
        test(c.name, async () => {
          const reply = await get(path, c.ifRange === undefined ? { range: c.range } : { range: c.range, 'if-range': c.ifRange })
          assert.equal(reply.status, c.status)
          assert.equal(reply.body, c.body)
          assert.equal(reply.headers['content-range'], c.contentRange)
          assert.equal(reply.headers['content-length'], String(Buffer.byteLength(c.body)))
          assert.equal(reply.headers['x-cache'], 'HIT')
          assert.match(String(reply.headers['cache-status']), /^switchyard; hit; ttl=\d+$/)
          assert.equal(origin.count(path), 1, 'answered from the cache')
        })
      }

      test('a 206 from the upstream is not stored, and does not mark the URL uncacheable', async () => {
        const partial = '/range/upstream-206'
        origin.route(partial, (req, res) => {
          if (req.headers.range !== undefined) { send(res, 206, { 'content-range': 'bytes 0-1/4', 'cache-control': 'max-age=600' }, 'wx'); return }
          send(res, 200, { 'cache-control': 'max-age=600' }, 'wxyz')
        })
        const first = await get(partial, { range: 'bytes=0-1' })
        assert.equal(first.status, 206)
        assert.equal(first.body, 'wx')
        const full = await get(partial)
        assert.equal(full.status, 200)
        assert.equal(full.headers['x-cache'], 'MISS', 'the 206 was not stored')
        const hit = await get(partial, { range: 'bytes=2-3' })
        assert.equal(hit.status, 206)
        assert.equal(hit.body, 'yz')
        assert.equal(hit.headers['x-cache'], 'HIT')
        assert.equal(origin.count(partial), 2)
      })
    })
  })

  describe(`cache stale-if-error (${mode.name})`, () => {
    /** The upstream: node:http behind a net.Server that can close every connection, hang, or stop listening. */
    let behaviour: 'answer' | 'close' | 'hang' = 'answer'
    const app = new Origin()
    /** Every connection the front accepted (pooled keep-alive ones included), to cut them when the behaviour changes. */
    const open = new Set<net.Socket>()
    let front: net.Server
    let port = 0
    let run: RunningLb

    async function listen (): Promise<void> {
      front = net.createServer((socket) => {
        open.add(socket)
        socket.on('close', () => open.delete(socket))
        if (behaviour === 'close') { socket.once('data', () => socket.destroy()); return }
        if (behaviour === 'hang') { socket.resume(); return }
        app.server.emit('connection', socket)
      })
      await new Promise<void>((resolve) => front.listen(port, '127.0.0.1', () => resolve()))
      port = (front.address() as AddressInfo).port
    }

    /** Switch what new connections get; pooled keep-alive connections to the app are closed so they cannot answer. */
    function become (next: 'answer' | 'close' | 'hang'): void {
      behaviour = next
      for (const socket of open) socket.destroy()
    }

    /** Stop listening (connections refused) and close what is open. */
    async function down (): Promise<void> {
      const closed = new Promise<void>((resolve) => front.close(() => resolve()))
      for (const socket of open) socket.destroy()
      await closed
    }

    before(async () => {
      await listen()
      run = await startLb({
        upstreams: [{ address: `127.0.0.1:${port}` }],
        cache: { maxBytes: 1024 * 1024, staleIfErrorMs: 60_000 },
        timeouts: { responseMs: 1500 },
        retries: 0,
        // failures here are the point: they must not eject the one upstream
        healthCheck: { passive: { maxFailures: 1000 } },
      }, mode.workers)
    })

    after(async () => {
      await run?.stop()
      for (const socket of open) socket.destroy()
      front.close()
    })

    async function get (path: string): Promise<Reply> {
      return await httpRequest(run.port, { path })
    }

    /** Store `path` with `cacheControl`, then let it go stale (max-age=1). */
    async function storeStale (path: string, cacheControl: string): Promise<void> {
      become('answer')
      app.route(path, (_req, res) => send(res, 200, { 'cache-control': cacheControl }, `kept ${path}\n`))
      assert.equal((await get(path)).headers['x-cache'], 'MISS')
      const storedAt = Date.now()
      await sleepUntil(storedAt + 1100)
    }

    function assertStale (reply: Reply, path: string): void {
      assert.equal(reply.status, 200, `stale, not an error: ${reply.status} ${reply.body}`)
      assert.equal(reply.body, `kept ${path}\n`)
      assert.equal(reply.headers['x-cache'], 'STALE')
      assert.match(String(reply.headers.age), /^\d+$/)
      assert.match(String(reply.headers['cache-status']), /^switchyard; fwd=stale(; fwd-status=\d+)?; ttl=-\d+; detail=stale-if-error$/)
    }

    test('RFC 5861 §4 the upstream answers 503: the stale entry, with fwd-status=503', async () => {
      const path = '/sie/503'
      await storeStale(path, 'max-age=1, stale-if-error=60')
      app.route(path, (_req, res) => send(res, 503, { 'cache-control': 'no-store' }, 'down for maintenance\n'))
      const reply = await get(path)
      assertStale(reply, path)
      assert.match(String(reply.headers['cache-status']), /fwd-status=503/)
    })

    for (const [name, behaviourThen] of [
      ['RFC 5861 §4 the upstream closes every connection on purpose: the stale entry, not a 502', 'close'],
      ['RFC 5861 §4 the upstream times out: the stale entry, not a 504', 'hang'],
    ] as const) {
      test(name, async () => {
        const path = `/sie/${behaviourThen}`
        await storeStale(path, 'max-age=1, stale-if-error=60')
        become(behaviourThen)
        assertStale(await get(path), path)
        become('answer')
      })
    }

    test('cache.staleIfErrorMs: the upstream is down (connection refused) and the response named no stale-if-error', async () => {
      const path = '/sie/down'
      await storeStale(path, 'max-age=1')
      await down()
      try {
        assertStale(await get(path), path)
      } finally {
        await listen()
      }
    })

    test('RFC 9111 §4.2.4 must-revalidate: never stale, the error goes to the client', async () => {
      const path = '/sie/must-revalidate'
      await storeStale(path, 'max-age=1, must-revalidate, stale-if-error=60')
      app.route(path, (_req, res) => send(res, 503, {}, 'down\n'))
      const reply = await get(path)
      assert.equal(reply.status, 503)
      assert.notEqual(reply.headers['x-cache'], 'STALE')
    })

    test('RFC 9111 §4.2.4 proxy-revalidate and no-cache: never stale either', async () => {
      for (const [path, cacheControl] of [['/sie/proxy-revalidate', 'max-age=1, proxy-revalidate'], ['/sie/no-cache', 'no-cache']]) {
        become('answer')
        app.route(path, (_req, res) => send(res, 200, { 'cache-control': cacheControl, etag: '"n"' }, 'x\n'))
        await get(path)
        await sleepUntil(Date.now() + 1100)
        become('close')
        const reply = await get(path)
        assert.equal(reply.status, 502, `${cacheControl}: ${reply.status}`)
        become('answer')
      }
    })
  })
}
