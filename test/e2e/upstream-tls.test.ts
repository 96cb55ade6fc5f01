/**
 * TLS and PROXY protocol towards upstreams, in both modes: an HTTPS upstream
 * verified against the test's CA (pooled connections reused), refused when
 * verification fails, accepted with verify off; active health checks over
 * TLS; a PROXY header on each new upstream connection, reused only by the
 * same client connection.
 */
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as https from 'node:https'
import * as net from 'node:net'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { MODES, startLb, spawnLb } from './harness'
import { waitFor, startRawServer, type TestServer } from '../helpers'
import { makeTestCa, type TestCa } from '../tls-fixtures'
import { ProxyHeaderParser, PP_INCOMPLETE, PP_ERROR } from '../../src/net/proxy-protocol'
import { U_HEALTHY } from '../../src/shared/layout'

interface HttpsUpstream { port: number, connections: number, requests: string[], sockets: Map<string, object>, close (): Promise<void> }

async function startHttpsUpstream (cert: { certFile: string, keyFile: string, cert: string }, key: string): Promise<HttpsUpstream> {
  const result: HttpsUpstream = { port: 0, connections: 0, requests: [], sockets: new Map(), close: async () => {} }
  const server = https.createServer({ cert: cert.cert, key }, (req, res) => {
    result.requests.push(req.url ?? '')
    result.sockets.set(req.url ?? '', req.socket)
    const body = JSON.stringify({ url: req.url, proto: req.headers['x-forwarded-proto'] })
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
  server.on('secureConnection', () => { result.connections++ })
  server.keepAliveTimeout = 30_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  result.port = (server.address() as net.AddressInfo).port
  result.close = async () => { server.closeAllConnections(); await new Promise<void>((resolve) => server.close(() => resolve())) }
  return result
}

async function get (port: number, path: string, agent: import('node:http').Agent | false = false): Promise<{ status: number, body: string }> {
  const http = await import('node:http')
  return await new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => { body += c.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

for (const mode of MODES) {
  describe(`TLS to upstreams (${mode.name})`, () => {
    let ca: TestCa
    let upstream: HttpsUpstream

    before(async () => {
      ca = makeTestCa()
      const cert = ca.leaf('backend', ['backend.test'])
      const { readFileSync } = await import('node:fs')
      upstream = await startHttpsUpstream(cert, readFileSync(cert.keyFile, 'utf8'))
    })
    after(async () => { await upstream.close(); ca.remove() })

    test('verified against caFile with serverName; pooled TLS connections are reused; health checks use TLS', async () => {
      const run = await startLb({
        upstreams: [{ address: `127.0.0.1:${upstream.port}`, tls: { serverName: 'backend.test', caFile: ca.caFile } }],
        healthCheck: { active: { path: '/health', intervalMs: 100, timeoutMs: 1000 } },
      }, mode.workers)
      try {
        await waitFor(() => upstream.requests.includes('/health'), 3000, 'a TLS health check')
        assert.equal(run.lb.state.upstream(run.lb.table[0].slot, U_HEALTHY), 1)
        const agent = new (await import('node:http')).Agent({ keepAlive: true, maxSockets: 1 })
        for (let i = 0; i < 5; i++) {
          const r = await get(run.port, `/r${i}`, agent)
          assert.equal(r.status, 200)
          assert.equal(JSON.parse(r.body).url, `/r${i}`)
        }
        agent.destroy()
        // one client connection on one thread: one pooled upstream TLS connection carried all five
        const used = new Set([0, 1, 2, 3, 4].map((i) => upstream.sockets.get(`/r${i}`)))
        assert.equal(used.size, 1, `${used.size} upstream connections for 5 requests`)
      } finally { await run.stop() }
    })

    test('a certificate that does not verify is a connect failure (502); verify:false accepts it', async () => {
      const strict = await startLb({ upstreams: [{ address: `127.0.0.1:${upstream.port}`, tls: true }] }, mode.workers)
      try {
        assert.equal((await get(strict.port, '/strict')).status, 502)
      } finally { await strict.stop() }
      const lax = await startLb({ upstreams: [{ address: `127.0.0.1:${upstream.port}`, tls: { verify: false } }] }, mode.workers)
      try {
        assert.equal((await get(lax.port, '/lax')).status, 200)
      } finally { await lax.stop() }
    })

    test('upstreams[].proxyProtocol: a header names the client on each new connection, reused by that client only', async () => {
      const headers: string[] = []
      let connections = 0
      const origin: TestServer = await startRawServer((socket) => {
        connections++
        const parser = new ProxyHeaderParser()
        let headerDone = false
        let pending = ''
        socket.on('data', (chunk: Buffer) => {
          let at = 0
          if (!headerDone) {
            const r = parser.execute(chunk, 0, chunk.length)
            if (r === PP_INCOMPLETE) return
            if (r === PP_ERROR) { socket.destroy(); return }
            headerDone = true
            headers.push(parser.local ? 'LOCAL' : `${parser.sourceAddress}:${parser.sourcePort}`)
            at = r
          }
          pending += chunk.subarray(at).toString('latin1')
          while (pending.includes('\r\n\r\n')) {
            pending = pending.slice(pending.indexOf('\r\n\r\n') + 4)
            socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
          }
        })
      })
      const run = await startLb({ upstreams: [{ address: origin.address, proxyProtocol: 'v2' }] }, mode.workers)
      try {
        const http = await import('node:http')
        const agentA = new http.Agent({ keepAlive: true, maxSockets: 1 })
        assert.equal((await get(run.port, '/a1', agentA)).status, 200)
        assert.equal((await get(run.port, '/a2', agentA)).status, 200)
        assert.equal(connections, 1, 'the same client connection reuses its upstream connection')
        const agentB = new http.Agent({ keepAlive: true, maxSockets: 1 })
        assert.equal((await get(run.port, '/b1', agentB)).status, 200)
        assert.equal(connections, 2, 'another client never gets a connection whose header named someone else')
        assert.equal(headers.length, 2)
        for (const h of headers) assert.match(h, /^127\.0\.0\.1:\d+$/)
        assert.notEqual(headers[0], headers[1], 'each header names its own client port')
        agentA.destroy()
        agentB.destroy()
      } finally { await run.stop(); await origin.close() }
    })
  })
}

test('verify:false on an upstream is logged as a warning at start', async () => {
  const ca = makeTestCa()
  const path = join(ca.dir, 'lb.json')
  writeFileSync(path, JSON.stringify({ listen: '127.0.0.1:0', workers: 0, upstreams: [{ address: '127.0.0.1:9', tls: { verify: false } }] }))
  const lb = await spawnLb(['--config', path])
  try {
    await waitFor(() => /certificate verification is off/.test(lb.output()), 3000, 'the warning')
  } finally { await lb.stop(); ca.remove() }
})
