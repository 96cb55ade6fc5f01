/**
 * Edges of a connection's life, end to end in both modes:
 *
 * 1. A client that stops reading a big response is its own stall: when the
 *    proxy gives up on it (upstreamIdleMs while the upstream socket is paused
 *    for backpressure) the upstream is not blamed, so three such clients do not
 *    eject it (passive maxFailures 2) and the next client is served.
 * 2. An upstream that answers early (413 before the upload is complete) still
 *    has its whole response relayed when the client half-closes mid-upload.
 * 3. A reset mid-response on a reused (pooled) upstream connection counts
 *    against the upstream (U_FAILURES): only a pooled connection closed before
 *    any response byte is a blameless stale one.
 * 4. The CRLF an old client sends after a POST body (RFC 9112 §2.2) starts no
 *    request head, so it does not earn a 408 after clientHeaderMs: the
 *    connection idles until clientIdleMs and is closed quietly.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as net from 'node:net'
import * as http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { U_CONSECUTIVE_FAILURES, U_FAILURES, U_HEALTHY } from '../../src/shared/layout'
import { waitFor, startEchoUpstream, startRawServer, rawExchange, splitResponses, httpRequest } from '../helpers'
import { MODES, startLb, type RunningLb } from './harness'
import { RawClient } from './wire'

// ---- helpers -----------------------------------------------------------------

const MiB = 1024 * 1024
const BIG_BYTES = 8 * MiB

function slotOf (run: RunningLb, address: string): number {
  const entry = run.lb.table.find((e) => e.address === address)
  assert.ok(entry !== undefined, `${address} is in the table`)
  return entry.slot
}

interface BigUpstream {
  address: string
  /** connections that carried a /big response and have closed (the proxy gave up on them) */
  bigClosed: number
  close (): Promise<void>
}

/** node:http upstream: GET /big answers 8 MiB (Content-Length), anything else a small 200. */
async function startBigUpstream (): Promise<BigUpstream> {
  const body = Buffer.alloc(BIG_BYTES, 0x61)
  const server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      if (req.url === '/big') {
        req.socket.once('close', () => { result.bigClosed++ })
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length })
        res.end(body)
        return
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 5 })
      res.end('small')
    })
  })
  server.keepAliveTimeout = 30_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const result: BigUpstream = {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    bigClosed: 0,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  return result
}

/** A client that sends `request` and never reads a byte of the answer. */
async function openNonReader (port: number, request: string): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await once(socket, 'connect')
  socket.pause()
  socket.write(request)
  return socket
}

/** Collects everything a RawClient's socket receives (RawClient keeps its buffer to itself). */
function tap (client: RawClient): { text: () => string } {
  const chunks: Buffer[] = []
  client.socket.on('data', (c: Buffer) => chunks.push(c))
  return { text: () => Buffer.concat(chunks).toString('latin1') }
}

// ---- cases -------------------------------------------------------------------

for (const mode of MODES) {
  test(`${mode.name}: clients that stop reading a big response do not get the upstream blamed or ejected`, async () => {
    const upstream = await startBigUpstream()
    const clients: net.Socket[] = []
    let run: RunningLb | null = null
    try {
      run = await startLb({
        upstreams: [{ address: upstream.address }],
        timeouts: { upstreamIdleMs: 300 },
        healthCheck: { passive: { maxFailures: 2, cooldownMs: 60_000 } },
      }, mode.workers)
      for (let i = 0; i < 3; i++) clients.push(await openNonReader(run.port, 'GET /big HTTP/1.1\r\nHost: a\r\n\r\n'))
      // the proxy gives up on each stalled exchange after upstreamIdleMs and closes both sides;
      // the paused clients cannot see their close, the upstream sees its connections go
      await waitFor(() => upstream.bigClosed >= 3, 5000, 'the proxy to give up on all three stalled responses')
      const slot = slotOf(run, upstream.address)
      const state = run.lb.state
      assert.equal(state.upstream(slot, U_HEALTHY), 1, 'the upstream is still healthy')
      assert.equal(state.upstream(slot, U_CONSECUTIVE_FAILURES), 0, 'no failure was counted against the upstream')
      const fresh = await httpRequest(run.port, { path: '/small' })
      assert.equal(fresh.status, 200, `a fresh client is served: ${fresh.status} ${fresh.body.trim()}`)
      assert.equal(fresh.body, 'small')
    } finally {
      for (const c of clients) c.destroy()
      if (run !== null) await run.stop()
      await upstream.close()
    }
  })

  test(`${mode.name}: an early upstream response is relayed in full after the client half-closes mid-upload`, async () => {
    const timers = new Set<NodeJS.Timeout>()
    const upstream = await startRawServer((socket) => {
      let buf = ''
      let answered = false
      socket.on('data', (c: Buffer) => {
        if (answered) return
        buf += c.toString('latin1')
        if (!buf.includes('\r\n\r\n')) return
        answered = true
        socket.write('HTTP/1.1 413 Payload Too Large\r\nContent-Length: 10\r\nConnection: close\r\n\r\n01234')
        const timer = setTimeout(() => {
          timers.delete(timer)
          if (!socket.destroyed) socket.end('56789')
        }, 200)
        timers.add(timer)
      })
    })
    let run: RunningLb | null = null
    let client: RawClient | null = null
    try {
      run = await startLb({ upstreams: [{ address: upstream.address }] }, mode.workers)
      client = await RawClient.open(run.port)
      const seen = tap(client)
      client.send('PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\nabc')
      await waitFor(() => seen.text().includes('01234'), 5000, 'the first half of the early response')
      client.socket.end() // half-close: the upload can never complete
      const res = await client.response(5000)
      assert.equal(res.status, 413, res.head)
      assert.equal(res.body.toString('latin1'), '0123456789', 'the whole body arrived')
    } finally {
      client?.close()
      for (const t of timers) clearTimeout(t)
      if (run !== null) await run.stop()
      await upstream.close()
    }
  })

  test(`${mode.name}: a reset mid-response on a reused upstream connection counts against the upstream`, async () => {
    const upstream = await startRawServer((socket) => {
      let buf = ''
      let served = 0
      socket.on('data', (c: Buffer) => {
        buf += c.toString('latin1')
        for (;;) {
          const end = buf.indexOf('\r\n\r\n')
          if (end === -1) return
          buf = buf.slice(end + 4) // GETs: no body
          served++
          if (served === 1) {
            socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
          } else {
            socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n1234567', () => socket.destroy())
            return
          }
        }
      })
    })
    let run: RunningLb | null = null
    let client: RawClient | null = null
    try {
      run = await startLb({ upstreams: [{ address: upstream.address }] }, mode.workers)
      const slot = slotOf(run, upstream.address)
      const state = run.lb.state
      // one client connection: both requests on one thread, so the second reuses the pooled upstream connection
      client = await RawClient.open(run.port)
      const seen = tap(client)
      client.send('GET /one HTTP/1.1\r\nHost: a\r\n\r\n')
      const first = await client.response(5000)
      assert.equal(first.status, 200, first.head)
      assert.equal(first.body.toString('latin1'), 'ok')
      const before = seen.text().length
      client.send('GET /two HTTP/1.1\r\nHost: a\r\n\r\n')
      await waitFor(() => client?.closed === true, 5000, 'the proxy to cut the client connection')
      assert.equal(upstream.count, 1, 'both requests went over one upstream connection')
      const second = seen.text().slice(before)
      const headEnd = second.indexOf('\r\n\r\n')
      assert.ok(headEnd !== -1, `the second response head was relayed: ${JSON.stringify(second)}`)
      assert.match(second.slice(0, headEnd), /^HTTP\/1\.1 200 /)
      assert.ok(second.length - headEnd - 4 < 100, `the second response is cut short: ${JSON.stringify(second)}`)
      await waitFor(() => state.upstream(slot, U_FAILURES) >= 1, 2000, 'the reset counted in U_FAILURES')
      assert.equal(state.upstream(slot, U_HEALTHY), 1, 'one failure does not eject (maxFailures 5)')
    } finally {
      client?.close()
      if (run !== null) await run.stop()
      await upstream.close()
    }
  })

  test(`${mode.name}: the CRLF after a POST body does not earn a 408; the idle connection is closed quietly`, async () => {
    const upstream = await startEchoUpstream('echo')
    let run: RunningLb | null = null
    try {
      const clientIdleMs = 1500
      run = await startLb({ upstreams: [{ address: upstream.address }], timeouts: { clientHeaderMs: 300, clientIdleMs } }, mode.workers)
      const startedAt = Date.now()
      const r = await rawExchange(run.port, 'POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi\r\n', { timeoutMs: clientIdleMs + 2000 })
      const elapsed = Date.now() - startedAt
      assert.ok(!r.timedOut, `the proxy closes the idle connection within clientIdleMs + slack; got ${JSON.stringify(r.text.slice(0, 300))}`)
      assert.ok(r.closed)
      assert.ok(!/HTTP\/1\.[01] 408/.test(r.text), `no 408 was sent: ${JSON.stringify(r.text.slice(0, 600))}`)
      const responses = splitResponses(r.text)
      assert.equal(responses.length, 1, `exactly one response: ${JSON.stringify(r.text.slice(0, 600))}`)
      assert.equal(responses[0].status, 200)
      assert.equal(JSON.parse(responses[0].body).body, 'hi', 'the upstream got the body without the CRLF')
      assert.ok(elapsed >= clientIdleMs - 200, `closed by the idle timeout, not the header timeout (after ${elapsed} ms)`)
    } finally {
      if (run !== null) await run.stop()
      await upstream.close()
    }
  })

  test(`${mode.name}: a half-close before a pipelined request's body ends drops that request at once (it never reaches the upstream)`, async () => {
    const seen: string[] = []
    const upstream = await startRawServer((socket) => {
      socket.on('data', (d: Buffer) => {
        seen.push(d.toString('latin1'))
        if (d.includes('GET /one')) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
      })
    })
    let run: RunningLb | null = null
    try {
      run = await startLb({ upstreams: [{ address: upstream.address }], timeouts: { upstreamIdleMs: 8000 } }, mode.workers)
      const port = run.port
      const startedAt = Date.now()
      // one write, then FIN: the POST's body (5 bytes) can never be completed
      const socket = net.connect(port, '127.0.0.1')
      await once(socket, 'connect')
      let got = ''
      socket.on('data', (c: Buffer) => { got += c.toString('latin1') })
      const closed = once(socket, 'close')
      socket.end('GET /one HTTP/1.1\r\nHost: a\r\n\r\nPOST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhe')
      await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 3000))])
      const elapsed = Date.now() - startedAt
      assert.ok(socket.destroyed, `the proxy closed the connection (after ${elapsed} ms; got ${JSON.stringify(got)})`)
      assert.ok(elapsed < 2000, `at once, not after upstreamIdleMs (${elapsed} ms)`)
      const responses = splitResponses(got)
      assert.deepEqual(responses.map((r) => r.status), [200], `only /one is answered: ${JSON.stringify(got)}`)
      assert.ok(!seen.join('').includes('POST /two'), 'the truncated POST never reached the upstream')
    } finally {
      if (run !== null) await run.stop()
      await upstream.close()
    }
  })
}
