/**
 * Upgrades (RFC 9110 §7.8): a GET with `Connection: upgrade` + `Upgrade`
 * reaches the upstream with both fields; a 101 answer turns the exchange into
 * a raw tunnel both ways; a 101 nobody asked for is a 502.
 */
import { describe, test, after, before } from 'node:test'
import assert from 'node:assert/strict'
import * as net from 'node:net'
import { startRawServer, waitFor, type TestServer } from '../helpers'
import { MODES, startLb, type RunningLb } from './harness'

const UPGRADE_REQUEST = 'GET /chat HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'

for (const mode of MODES) {
  describe(`upgrades (${mode.name})`, () => {
    let upstream: TestServer
    let lb: RunningLb
    const seenHeads: string[] = []

    before(async () => {
      // answers an upgrade with 101, then echoes every byte back upper-cased
      upstream = await startRawServer((socket) => {
        let head = ''
        let tunnel = false
        socket.on('data', (chunk: Buffer) => {
          if (tunnel) { socket.write(chunk.toString('latin1').toUpperCase()); return }
          head += chunk.toString('latin1')
          const end = head.indexOf('\r\n\r\n')
          if (end === -1) return
          seenHeads.push(head.slice(0, end))
          if (/\r\nupgrade: websocket/i.test(head)) {
            tunnel = true
            socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')
            const rest = head.slice(end + 4)
            if (rest !== '') socket.write(rest.toUpperCase())
          } else {
            // a 101 to a request that did not ask for one
            socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')
          }
        })
      })
      lb = await startLb({ upstreams: [{ address: upstream.address }] }, mode.workers)
    })
    after(async () => {
      await lb.stop()
      await upstream.close()
    })

    test('101 turns the connection into a tunnel both ways; Upgrade and Connection: upgrade reach the upstream', async () => {
      const socket = net.connect(lb.port, '127.0.0.1')
      let received = ''
      socket.on('data', (c: Buffer) => { received += c.toString('latin1') })
      try {
        await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
        socket.write(UPGRADE_REQUEST)
        await waitFor(() => received.includes('\r\n\r\n'), 3000, 'the 101')
        assert.match(received, /^HTTP\/1\.1 101 /)
        assert.match(received, /\r\nconnection: upgrade\r\n/i)
        assert.match(received, /\r\nupgrade: websocket\r\n/i)
        const head = seenHeads[seenHeads.length - 1]
        assert.match(head, /\r\nUpgrade: websocket/)
        assert.match(head, /\r\nConnection: upgrade/i)
        socket.write('hello tunnel')
        await waitFor(() => received.endsWith('HELLO TUNNEL'), 3000, 'the echo through the tunnel')
        socket.write(Buffer.alloc(200_000, 'a'))
        await waitFor(() => received.endsWith('A'.repeat(1000)) && received.length >= 200_000, 5000, '200 KB through the tunnel')
      } finally {
        socket.destroy()
      }
    })

    test('a 101 to a request that did not ask to upgrade is a 502', async () => {
      const socket = net.connect(lb.port, '127.0.0.1')
      let received = ''
      socket.on('data', (c: Buffer) => { received += c.toString('latin1') })
      try {
        await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
        socket.write('GET /plain HTTP/1.1\r\nHost: example.test\r\n\r\n')
        await waitFor(() => received.includes('\r\n\r\n'), 3000, 'an answer')
        assert.match(received, /^HTTP\/1\.1 502 /)
      } finally {
        socket.destroy()
      }
    })
  })
}
