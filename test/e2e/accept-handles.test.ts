/**
 * The primary takes accepted connections as handles (src/net/raw-accept.ts):
 * sequential mode wraps each in one socket, worker mode hands its descriptor
 * to a worker, and node's own net.Socket and 'connection' never happen. End to
 * end, in both modes: a new connection per request on a plain listener (the
 * read arena) and on a TLS listener, with the client's address, the accepted
 * counter and the open-connections gauge as before.
 */
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as net from 'node:net'
import { once } from 'node:events'
import { MODES, startLb, type RunningLb } from './harness'
import { TlsClient } from './tls-client'
import { makeTestCa, type TestCa } from '../tls-fixtures'
import { httpRequest, startEchoUpstream, waitFor, type TestServer } from '../helpers'
import { H_CONNECTIONS_ACCEPTED, L_OPEN_CONNECTIONS } from '../../src/shared/layout'

/** One request on a connection of its own (Connection: close), answered. */
async function freshRequest (port: number, path: string): Promise<{ status: number, body: string }> {
  return await httpRequest(port, { path, headers: { connection: 'close' } })
}

for (const mode of MODES) {
  describe(`accepted connections as handles (${mode.name})`, () => {
    let ca: TestCa
    let upstream: TestServer
    let run: RunningLb
    let tlsPort: number
    let nodeConnections = 0

    before(async () => {
      ca = makeTestCa()
      const leaf = ca.leaf('site', ['localhost'])
      upstream = await startEchoUpstream('u1')
      run = await startLb({
        listen: [
          { address: '127.0.0.1:0' },
          { address: '127.0.0.1:0', tls: { certificates: [{ certFile: leaf.certFile, keyFile: leaf.keyFile }] } },
        ],
        upstreams: [{ address: upstream.address }],
      }, mode.workers)
      tlsPort = run.lb.addresses[1].port
      // node's own accept path would emit 'connection' on these
      for (const server of (run.lb as unknown as { servers: net.Server[] }).servers) server.on('connection', () => { nodeConnections++ })
    })

    after(async () => {
      await run.stop()
      await upstream.close()
      ca.remove()
    })

    test('a new connection per request on a plain listener: every one answered, with the client\'s address, counted and closed', async () => {
      const accepted = run.lb.state.header(H_CONNECTIONS_ACCEPTED)
      const n = 40
      for (let i = 0; i < n; i++) {
        const res = await freshRequest(run.port, `/fresh/${i}`)
        assert.equal(res.status, 200)
        const seen = JSON.parse(res.body)
        assert.equal(seen.url, `/fresh/${i}`)
        assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1', 'the peer read from the accepted handle')
      }
      assert.equal(run.lb.state.header(H_CONNECTIONS_ACCEPTED) - accepted, n)
      await waitFor(() => run.lb.state.listener(0, L_OPEN_CONNECTIONS) === 0, 5000, 'every connection closed')
      assert.equal(nodeConnections, 0, 'node built no socket of its own for them')
    })

    test('several connections at once, each keeping its own bytes', async () => {
      const results = await Promise.all(Array.from({ length: 16 }, async (_, i) => await freshRequest(run.port, `/parallel/${i}`)))
      results.forEach((res, i) => {
        assert.equal(res.status, 200)
        assert.equal(JSON.parse(res.body).url, `/parallel/${i}`)
      })
      assert.equal(nodeConnections, 0)
    })

    test('a TLS listener\'s connections are taken too: the handshake and the request run on the socket made from the handle', async () => {
      for (let i = 0; i < 3; i++) {
        const c = await TlsClient.connect(tlsPort, { ca: ca.ca, servername: 'localhost' })
        const res = await c.request('GET', `/tls/${i}`)
        assert.equal(res.status, 200)
        const seen = JSON.parse(res.body)
        assert.equal(seen.url, `/tls/${i}`)
        assert.equal(seen.headers['x-forwarded-proto'], 'https')
        assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1')
        c.close()
      }
      await waitFor(() => run.lb.state.listener(1, L_OPEN_CONNECTIONS) === 0, 5000, 'TLS connections closed')
      assert.equal(nodeConnections, 0)
    })

    test('stop() drains a connection still in its TLS handshake too, and closes it at the deadline', async () => {
      const leaf = ca.leaf('drain', ['localhost'])
      const other = await startLb({
        listen: [{ address: '127.0.0.1:0', tls: { certificates: [{ certFile: leaf.certFile, keyFile: leaf.keyFile }] } }],
        upstreams: [{ address: upstream.address }],
        timeouts: { clientHeaderMs: 60_000 }, // only stop() may end it
      }, mode.workers)
      const raw = net.connect(other.port, '127.0.0.1')
      raw.on('error', () => {})
      let rawClosed = false
      raw.on('close', () => { rawClosed = true })
      await once(raw, 'connect')
      await waitFor(() => other.lb.state.listener(0, L_OPEN_CONNECTIONS) === 1, 5000, 'the connection accepted')
      const started = Date.now()
      await other.lb.stop(400) // the connection never sends a ClientHello
      assert.ok(Date.now() - started >= 300, `stop waited for the handshaking connection (${Date.now() - started} ms)`)
      await waitFor(() => rawClosed, 2000, 'the connection closed by stop()')
    })
  })
}
