/**
 * The life of an upgraded connection (a tunnel after 101, RFC 9110 §7.8), in
 * both modes: each side's close reaches the other without losing bytes in
 * flight, every tunnel leaves one access line however it ends, and a tunnel
 * with no byte either way for `timeouts.tunnelIdleMs` (or its route's) is
 * closed on both sides.
 */
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as net from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRawServer, waitFor, type TestServer } from '../helpers'
import { MODES, startLb, accessFileLines, type RunningLb } from './harness'

const UPGRADE = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`
const SWITCHING = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'
/** More than the kernel buffers of two loopback sockets and the proxy's queue hold. */
const BIG = 8 * 1024 * 1024
/** A last few bytes after the bulk (a WebSocket close frame's size): they leave the proxy on their own. */
const TAIL = 'THE-END'

/** What an upstream connection did after its 101. */
interface UpstreamSide { path: string, socket: net.Socket, received: number, ended: boolean, closed: boolean }

/** One upgraded connection from the client's end. */
class TunnelClient {
  received = 0
  text = ''
  /** The last bytes received. */
  tail = ''
  ended = false
  closed = false
  headSeen = false
  private constructor (readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => {
      this.received += c.length
      if (this.text.length < 4096) this.text += c.toString('latin1')
      this.tail = (this.tail + c.toString('latin1', Math.max(0, c.length - 64))).slice(-64)
    })
    socket.on('end', () => { this.ended = true })
    socket.on('close', () => { this.closed = true })
    socket.on('error', () => { this.closed = true })
  }

  /** `halfClose`: the upgrade request goes with the client's FIN, in one go. */
  static async open (port: number, path: string, opts: { paused?: boolean, halfClose?: boolean } = {}): Promise<TunnelClient> {
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
    const c = new TunnelClient(socket)
    if (opts.halfClose === true) socket.end(UPGRADE(path))
    else socket.write(UPGRADE(path))
    await waitFor(() => c.text.includes('\r\n\r\n'), 3000, 'the 101')
    assert.match(c.text, /^HTTP\/1\.1 101 /)
    if (opts.paused === true) socket.pause()
    return c
  }

  /** Payload bytes received after the 101's head. */
  get payload (): number { return this.received - (this.text.indexOf('\r\n\r\n') + 4) }
}

for (const mode of MODES) {
  describe(`tunnels (${mode.name})`, () => {
    let upstream: TestServer
    let lb: RunningLb
    let dir: string
    let accessFile: string
    const sides: UpstreamSide[] = []

    before(async () => {
      // answers every upgrade with 101; after it, what it does depends on the path
      upstream = await startRawServer((socket) => {
        let head = ''
        let side: UpstreamSide | null = null
        socket.on('data', (chunk: Buffer) => {
          if (side !== null) {
            side.received += chunk.length
            if (side.path === '/echo') socket.write(chunk)
            return
          }
          head += chunk.toString('latin1')
          if (!head.includes('\r\n\r\n')) return
          const path = head.split(' ')[1]
          side = { path, socket, received: 0, ended: false, closed: false }
          sides.push(side)
          socket.write(SWITCHING)
          // sends a lot, then closes its side at once: the proxy holds most of it when the FIN comes
          if (path === '/big-then-close') { socket.write(Buffer.alloc(BIG, 'x')); socket.end(TAIL) }
        })
        socket.on('end', () => {
          if (side === null) return
          side.ended = true
          // the client's half-close reached us: a last word, then our own close
          if (side.path.startsWith('/half-close')) socket.end('bye')
        })
        socket.on('close', () => { if (side !== null) side.closed = true })
        socket.on('error', () => {})
      })
      dir = mkdtempSync(join(tmpdir(), 'swy-tunnel-'))
      accessFile = join(dir, 'access.log')
      lb = await startLb({
        upstreams: [{ address: upstream.address }],
        timeouts: { tunnelIdleMs: 60_000 },
        routes: [{ name: 'short', match: { pathPrefix: '/idle' }, timeouts: { tunnelIdleMs: 1000 } }, { match: { pathPrefix: '/' } }],
        log: { level: 'info', access: true, accessFile },
      }, mode.workers)
    })

    after(async () => {
      await lb.stop()
      await upstream.close()
      rmSync(dir, { recursive: true, force: true })
    })

    /** The access lines of tunnels to `path` written so far. */
    const accessLines = (path: string): Array<Record<string, unknown>> => accessFileLines(accessFile, path)

    function sideFor (path: string): UpstreamSide {
      const side = sides.find((s) => s.path === path)
      assert.ok(side !== undefined, `the upstream saw the upgrade to ${path}`)
      return side
    }

    test('the upstream sends 8 MiB and closes at once: a client that reads slowly gets every byte, then the close', async () => {
      const client = await TunnelClient.open(lb.port, '/big-then-close', { paused: true })
      try {
        // read a chunk, rest a millisecond: the proxy's queue toward the client is never empty for long,
        // so the upstream's close arrives while bytes still wait for this client
        client.socket.on('data', () => { client.socket.pause(); setTimeout(() => client.socket.resume(), 10) })
        await new Promise((resolve) => setTimeout(resolve, 100))
        client.socket.resume()
        await waitFor(() => client.ended || client.closed, 30_000, `the close after the data (have ${client.payload} of ${BIG})`)
        assert.equal(client.payload, BIG + TAIL.length)
        assert.ok(client.tail.endsWith(TAIL), JSON.stringify(client.tail))
        assert.equal(client.ended, true, 'a clean close (FIN), not a reset')
        await waitFor(() => sideFor('/big-then-close').closed, 5000, 'the upstream side closed')
        await waitFor(() => accessLines('/big-then-close').length === 1, 5000, 'its access line')
        const [line] = accessLines('/big-then-close')
        assert.equal(line.status, 101)
        assert.ok((line.bytes as number) >= BIG, `bytes ${String(line.bytes)}`)
      } finally {
        client.socket.destroy()
      }
    })

    test('the client half-closes: the upstream sees the end, its last bytes reach the client, then the close; one access line', async () => {
      const client = await TunnelClient.open(lb.port, '/half-close')
      try {
        client.socket.write('last words')
        client.socket.end()
        await waitFor(() => client.ended, 5000, 'the close after the upstream\'s reply')
        assert.ok(client.text.endsWith('bye'), JSON.stringify(client.text.slice(-40)))
        const side = sideFor('/half-close')
        assert.equal(side.ended, true)
        assert.equal(side.received, 'last words'.length)
        await waitFor(() => accessLines('/half-close').length === 1, 5000, 'its access line')
        const [line] = accessLines('/half-close')
        assert.equal(line.status, 101)
        assert.equal(line.flag, '-')
      } finally {
        client.socket.destroy()
      }
    })

    test('the client sends its upgrade and its FIN in one go: the FIN reaches the upstream after the 101, the answer the client', async () => {
      const client = await TunnelClient.open(lb.port, '/half-close-early', { halfClose: true })
      try {
        await waitFor(() => client.ended, 5000, `the upstream's answer and close (have ${JSON.stringify(client.text.slice(0, 200))})`)
        assert.match(client.text, /^HTTP\/1\.1 101 /)
        assert.ok(client.text.endsWith('\r\n\r\nbye'), JSON.stringify(client.text))
        assert.equal(sideFor('/half-close-early').ended, true)
        await waitFor(() => accessLines('/half-close-early').length === 1, 5000, 'its access line')
      } finally {
        client.socket.destroy()
      }
    })

    test('the client closes the tunnel: the upstream connection closes and the tunnel has its access line', async () => {
      const client = await TunnelClient.open(lb.port, '/echo')
      client.socket.write('ping')
      await waitFor(() => client.text.endsWith('ping'), 3000, 'the echo')
      client.socket.destroy()
      await waitFor(() => sideFor('/echo').closed, 5000, 'the upstream side closed')
      await waitFor(() => accessLines('/echo').length === 1, 5000, 'its access line')
      const [line] = accessLines('/echo')
      assert.equal(line.status, 101)
      assert.equal(line.bytesIn, UPGRADE('/echo').length + 'ping'.length, 'bytesIn: the upgrade request and the tunnel\'s bytes')
    })

    test('the client resets the tunnel: the upstream connection closes and the tunnel has its access line', async () => {
      const client = await TunnelClient.open(lb.port, '/reset')
      client.socket.write('ping')
      await waitFor(() => sideFor('/reset').received === 4, 3000, 'the bytes at the upstream')
      client.socket.resetAndDestroy()
      await waitFor(() => sideFor('/reset').closed, 5000, 'the upstream side closed')
      await waitFor(() => accessLines('/reset').length === 1, 5000, 'its access line')
      assert.equal(accessLines('/reset')[0].status, 101)
    })

    test('timeouts.tunnelIdleMs (the route\'s 1000 ms): traffic keeps the tunnel open past it; silence closes both sides, flag SI', async () => {
      const client = await TunnelClient.open(lb.port, '/idle')
      try {
        const side = sideFor('/idle')
        // a byte every 100 ms for 2.5 s, two and a half times the idle limit: each one moves the deadline
        const until = Date.now() + 2500
        let lastWrite = 0
        while (Date.now() < until) {
          client.socket.write('.')
          lastWrite = Date.now()
          await new Promise((resolve) => setTimeout(resolve, 100))
          assert.equal(client.closed || client.ended, false, 'closed while bytes were flowing')
        }
        await waitFor(() => side.received >= 20, 3000, 'the keep-alive bytes at the upstream')
        await waitFor(() => client.ended || client.closed, 5000, 'the client side closed')
        const quietMs = Date.now() - lastWrite
        await waitFor(() => side.closed, 5000, 'the upstream side closed')
        assert.ok(quietMs >= 900, `closed ${quietMs} ms after the last byte (limit 1000)`)
        await waitFor(() => accessLines('/idle').length === 1, 5000, 'its access line')
        const [line] = accessLines('/idle')
        assert.equal(line.status, 101)
        assert.equal(line.flag, 'SI')
      } finally {
        client.socket.destroy()
      }
    })

    test('the top level\'s tunnelIdleMs applies outside the route: a tunnel quiet for longer than the route\'s limit stays open', async () => {
      const client = await TunnelClient.open(lb.port, '/echo-quiet')
      try {
        await new Promise((resolve) => setTimeout(resolve, 1500)) // 1.5× the route's 1000 ms, far below 60 s
        assert.equal(client.closed || client.ended, false)
        assert.equal(sideFor('/echo-quiet').closed, false)
      } finally {
        client.socket.destroy()
      }
    })
  })
}
