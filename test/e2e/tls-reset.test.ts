/**
 * A TLS client that resets its connection right behind its request, in both
 * modes: node reports that reset as a half-close ('end'; src/net/peer-reset.ts),
 * and the connection, with the upstream connection serving it, used to be
 * held until a timeout (30 s for a 3 MB response, up to an hour in a tunnel).
 * It is let go at once, as on a plain listener; a TLS client's real
 * half-close still gets its whole response.
 */
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as net from 'node:net'
import * as tls from 'node:tls'
import { once } from 'node:events'
import { MODES, startLb, openClientConnections, type RunningLb } from './harness'
import { startEchoUpstream, waitFor, type TestServer } from '../helpers'
import { makeTestCa, type TestCa } from '../tls-fixtures'
import { optionalHandoff } from '../../src/primary/handoff'
import { U_OPEN_SOCKETS, L_HANDSHAKES_OK } from '../../src/shared/layout'

const BIG = 3 * 1024 * 1024
/** Without Linux's TCP_INFO through the addon a reset TLS client is taken for a half-close (README, HTTPS). */
const skip = typeof optionalHandoff()?.tcpState !== 'function' ? 'no tcpState (Linux only, needs the addon)' : false
const UPGRADE = 'GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'

for (const mode of MODES) {
  describe(`a TLS client's reset (${mode.name})`, () => {
    let ca: TestCa
    let upstream: TestServer & { server: import('node:http').Server }
    let run: RunningLb

    before(async () => {
      ca = makeTestCa()
      const leaf = ca.leaf('reset', ['localhost'])
      const body = Buffer.alloc(BIG, 'r')
      upstream = await startEchoUpstream('u', (req, res) => {
        if (req.url !== '/big') return false
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BIG })
        res.end(body)
        return true
      })
      // a WebSocket-like upstream: 101, then it keeps sending until its client goes
      upstream.server.on('upgrade', (_req, socket: net.Socket) => {
        socket.on('error', () => {})
        socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')
        const chunk = Buffer.alloc(64 * 1024, 'w')
        const pump = (): void => { while (!socket.destroyed && socket.write(chunk)); }
        socket.on('drain', pump)
        pump()
      })
      run = await startLb({
        listen: [{ address: '127.0.0.1:0', tls: { certificates: [{ certFile: leaf.certFile, keyFile: leaf.keyFile }] } }],
        upstreams: [{ address: upstream.address }],
      }, mode.workers)
    })

    after(async () => {
      await run.stop()
      await upstream.close()
      ca.remove()
    })

    /** A TLS client on its own raw socket, so that it can reset it. */
    async function connect (): Promise<{ raw: net.Socket, client: tls.TLSSocket }> {
      const raw = net.connect(run.port, '127.0.0.1')
      raw.on('error', () => {})
      await once(raw, 'connect')
      const client = tls.connect({ socket: raw, servername: 'localhost', ca: ca.ca })
      client.on('error', () => {})
      await once(client, 'secureConnect')
      return { raw, client }
    }

    /** Handshakes the balancer completed: one more once its side of a new connection is done. */
    const handshakes = (): number => run.lb.state.listener(0, L_HANDSHAKES_OK)

    /**
     * Send `request` and reset right behind it, before the balancer's side of the handshake is done, so the
     * request and the reset arrive together (what node takes for a half-close); then wait until the balancer
     * has had that connection, so the checks after watch this one.
     */
    async function requestAndReset (request: string): Promise<void> {
      const before = handshakes()
      const { raw, client } = await connect()
      client.write(request)
      raw.resetAndDestroy()
      await waitFor(() => handshakes() === before + 1, 5000, 'the balancer\'s side of the handshake')
    }

    /** The client connection let go and, unless `pooled` (a response that completed), the upstream one closed. */
    async function settled (what: string, pooled = false): Promise<void> {
      await waitFor(() => openClientConnections(run) === 0, 5000, `the client connection let go (${what})`)
      if (!pooled) await waitFor(() => run.lb.state.upstream(run.lb.table[0].slot, U_OPEN_SOCKETS) === 0, 5000, `the upstream connection closed (${what})`)
    }

    test('a reset right behind a request for 3 MB: both connections are let go at once', { skip }, async () => {
      for (let i = 0; i < 3; i++) {
        await requestAndReset('GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n')
        await settled(`try ${i + 1}`)
      }
    })

    test('a reset right behind a WebSocket upgrade: the tunnel is closed on both sides', { skip }, async () => {
      for (let i = 0; i < 3; i++) {
        await requestAndReset(UPGRADE)
        await settled(`try ${i + 1}`)
      }
    })

    test('a half-close right behind a request for 3 MB: the whole response, then the close', async () => {
      const { client } = await connect()
      let received = 0
      let head = ''
      client.on('data', (c: Buffer) => { if (head.length < 4096) head += c.toString('latin1', 0, 4096); received += c.length })
      client.write('GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n')
      client.end()
      await waitFor(() => client.readableEnded || client.destroyed, 10_000, `the end of the response (have ${received})`)
      assert.match(head, /^HTTP\/1\.1 200 /)
      assert.equal(received - (head.indexOf('\r\n\r\n') + 4), BIG)
      client.destroy()
      await settled('half-close', true)
    })
  })
}
