/**
 * A stale-while-revalidate background revalidation reaches the upstream the way the request path
 * does, in both modes: over TLS to an upstream with `tls` (verified against caFile, SNI
 * serverName), and with a PROXY header naming the client first on an upstream with
 * `proxyProtocol`. Sent as plain HTTP (as it once was), the first never arrives (the HTTPS
 * server sees no request; the client's fields would have crossed in clear) and the second is
 * refused by an upstream that requires the header.
 *
 * Each upstream answers the first request with a stale-while-revalidate response (fresh for
 * 1 s), and the revalidation (If-None-Match "v1") with a 200 "version 2": the refreshed entry
 * is then served as a hit.
 */
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as https from 'node:https'
import type * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import { readFileSync } from 'node:fs'
import { MODES, startLb } from './harness'
import { httpRequest, startRawServer, waitFor, type TestServer } from '../helpers'
import { makeTestCa, type TestCa } from '../tls-fixtures'
import { ProxyHeaderParser, PP_INCOMPLETE, PP_ERROR } from '../../src/net/proxy-protocol'

const FIRST = { etag: '"v1"', 'cache-control': 'max-age=1, stale-while-revalidate=30' }
const REFRESHED = { etag: '"v2"', 'cache-control': 'max-age=600' }

interface Seen { path: string, ifNoneMatch: string | undefined, tls: boolean, proxy: string | null }

async function sleepUntil (ms: number): Promise<void> {
  await waitFor(() => Date.now() >= ms, ms - Date.now() + 2000, `the clock to reach ${ms}`)
}

/** The origin's answer to one request: the first version, or the second to our validator. */
function answer (ifNoneMatch: string | undefined): { headers: Record<string, string>, body: string } {
  return ifNoneMatch === '"v1"' ? { headers: REFRESHED, body: 'version 2\n' } : { headers: FIRST, body: 'version 1\n' }
}

/**
 * Stored, stale, served stale at once, revalidated in the background at `seen`'s upstream, then
 * served refreshed from the cache. Returns what the upstream saw of the background request.
 */
async function staleThenRefreshed (port: number, path: string, seen: Seen[]): Promise<Seen> {
  const miss = await httpRequest(port, { path })
  const storedAt = Date.now()
  assert.equal(miss.status, 200)
  assert.equal(miss.body, 'version 1\n')
  assert.equal(miss.headers['x-cache'], 'MISS')
  await sleepUntil(storedAt + 1100)
  const stale = await httpRequest(port, { path, headers: { cookie: 'session=secret' } })
  assert.equal(stale.headers['x-cache'], 'STALE')
  assert.equal(stale.body, 'version 1\n')
  await waitFor(() => seen.filter((s) => s.path === path).length === 2, 5000, 'the background revalidation to reach the upstream')
  await waitFor(async () => (await httpRequest(port, { path })).body === 'version 2\n', 5000, 'the refreshed entry')
  const hit = await httpRequest(port, { path })
  assert.equal(hit.headers['x-cache'], 'HIT')
  assert.equal(hit.body, 'version 2\n')
  const requests = seen.filter((s) => s.path === path)
  assert.equal(requests.length, 2, `the miss and one background revalidation; the upstream saw ${JSON.stringify(requests)}`)
  assert.equal(requests[1].ifNoneMatch, '"v1"', 'the revalidation carries our validator')
  return requests[1]
}

for (const mode of MODES) {
  describe(`stale-while-revalidate to TLS and PROXY upstreams (${mode.name})`, () => {
    let ca: TestCa
    let httpsServer: https.Server
    let httpsPort = 0
    let rawOrigin: TestServer
    const seen: Seen[] = []

    before(async () => {
      ca = makeTestCa()
      const cert = ca.leaf('backend', ['backend.test'])
      httpsServer = https.createServer({ cert: cert.cert, key: readFileSync(cert.keyFile, 'utf8') }, (req: http.IncomingMessage, res: http.ServerResponse) => {
        const ifNoneMatch = req.headers['if-none-match'] as string | undefined
        seen.push({ path: req.url ?? '', ifNoneMatch, tls: (req.socket as { encrypted?: boolean }).encrypted === true, proxy: null })
        const { headers, body } = answer(ifNoneMatch)
        res.writeHead(200, { ...headers, 'content-length': Buffer.byteLength(body) })
        res.end(body)
      })
      await new Promise<void>((resolve) => httpsServer.listen(0, '127.0.0.1', resolve))
      httpsPort = (httpsServer.address() as AddressInfo).port

      // requires a PROXY header (v2) before the HTTP bytes: a connection without one is closed
      rawOrigin = await startRawServer((socket) => {
        const parser = new ProxyHeaderParser()
        let proxy: string | null = null
        let pending = ''
        socket.on('data', (chunk: Buffer) => {
          let at = 0
          if (proxy === null) {
            const r = parser.execute(chunk, 0, chunk.length)
            if (r === PP_INCOMPLETE) return
            if (r === PP_ERROR) { socket.destroy(); return }
            proxy = parser.local ? 'LOCAL' : `${parser.sourceAddress}:${parser.sourcePort}`
            at = r
          }
          pending += chunk.subarray(at).toString('latin1')
          for (let end = pending.indexOf('\r\n\r\n'); end !== -1; end = pending.indexOf('\r\n\r\n')) {
            const head = pending.slice(0, end)
            pending = pending.slice(end + 4)
            const path = head.split(' ')[1]
            const ifNoneMatch = /^if-none-match:\s*(.*)$/im.exec(head)?.[1].trim()
            seen.push({ path, ifNoneMatch, tls: false, proxy })
            const { headers, body } = answer(ifNoneMatch)
            const fields = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')
            socket.write(`HTTP/1.1 200 OK\r\n${fields}content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
          }
        })
      })
    })

    after(async () => {
      httpsServer.closeAllConnections()
      await new Promise<void>((resolve) => httpsServer.close(() => resolve()))
      await rawOrigin.close()
      ca.remove()
    })

    test('an upstream with tls: the revalidation goes over TLS, verified with caFile and serverName', async () => {
      const run = await startLb({
        upstreams: [{ address: `127.0.0.1:${httpsPort}`, tls: { serverName: 'backend.test', caFile: ca.caFile } }],
        cache: { maxBytes: 1024 * 1024 },
      }, mode.workers)
      try {
        const revalidation = await staleThenRefreshed(run.port, `/tls/${mode.name}`, seen)
        assert.equal(revalidation.tls, true)
      } finally { await run.stop() }
    })

    test('an upstream with proxyProtocol: the revalidation\'s connection starts with a PROXY header naming the client', async () => {
      const run = await startLb({
        upstreams: [{ address: rawOrigin.address, proxyProtocol: 'v2' }],
        cache: { maxBytes: 1024 * 1024 },
      }, mode.workers)
      try {
        const path = `/proxy/${mode.name}`
        const revalidation = await staleThenRefreshed(run.port, path, seen)
        assert.match(revalidation.proxy ?? '', /^127\.0\.0\.1:\d+$/, 'the client that met the stale entry')
        assert.match(seen.filter((s) => s.path === path)[0].proxy ?? '', /^127\.0\.0\.1:\d+$/)
      } finally { await run.stop() }
    })
  })
}
