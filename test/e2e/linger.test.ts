/**
 * The close after a last response, in both modes: bytes still queued for a
 * client when the proxy half-closes are delivered to a client that reads
 * late (or sends its own FIN meanwhile), and a client that takes none of
 * them for `timeouts.clientIdleMs` (at least the 2 s linger) is cut. A cache hit is written in one go,
 * so a 32 MiB entry leaves far more queued than two loopback sockets' kernel
 * buffers hold: the case is deterministic.
 */
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as http from 'node:http'
import * as net from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { listenHttp, waitFor, type TestServer } from '../helpers'
import { MODES, startLb, openClientConnections, accessFileLines, type RunningLb } from './harness'

const BIG = 32 * 1024 * 1024
/** Longer than the 2 s the proxy waits for a client's close once everything is out. */
const STALL_MS = 3000

/** A client that sends one request and reads nothing until told to. */
class LateReader {
  received = 0
  head = ''
  ended = false
  closed = false
  private constructor (readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => {
      if (this.head === '' || !this.head.includes('\r\n\r\n')) this.head += c.toString('latin1', 0, Math.min(c.length, 1024))
      this.received += c.length
    })
    socket.on('end', () => { this.ended = true })
    socket.on('close', () => { this.closed = true })
    socket.on('error', () => { this.closed = true })
  }

  static async send (port: number, request: string): Promise<LateReader> {
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
    socket.pause()
    const c = new LateReader(socket)
    socket.write(request)
    return c
  }

  /** The whole response's size: its head and its Content-Length. */
  get expected (): number {
    const end = this.head.indexOf('\r\n\r\n')
    const m = /\r\ncontent-length: *(\d+)/i.exec(this.head)
    assert.ok(end > 0 && m !== null, JSON.stringify(this.head.slice(0, 300)))
    return end + 4 + Number(m[1])
  }
}

const get = (path: string, close: boolean): string => `GET ${path} HTTP/1.1\r\nHost: linger.test\r\n${close ? 'Connection: close\r\n' : ''}\r\n`
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

for (const mode of MODES) {
  describe(`the close after the last response (${mode.name})`, () => {
    let upstream: TestServer
    let dir: string
    const lbs: Array<{ lb: RunningLb, accessFile: string }> = []
    let patient: Promise<{ lb: RunningLb, accessFile: string }> | null = null

    /** A balancer caching BIG responses, logging to its own file. */
    async function startCaching (name: string, timeouts: Record<string, number>): Promise<{ lb: RunningLb, accessFile: string }> {
      const accessFile = join(dir, `${name}.log`)
      const lb = await startLb({
        upstreams: [{ address: upstream.address }],
        cache: { maxBytes: 96 * 1024 * 1024, maxEntryBytes: 40 * 1024 * 1024 },
        timeouts,
        log: { level: 'info', access: true, accessFile },
      }, mode.workers)
      const started = { lb, accessFile }
      lbs.push(started)
      return started
    }

    /** The balancer with the default clientIdleMs, started by the first test that needs it. */
    async function patientLb (): Promise<{ lb: RunningLb, accessFile: string }> {
      if (patient === null) patient = startCaching('patient', { clientIdleMs: 60_000 })
      return await patient
    }

    before(async () => {
      const body = Buffer.alloc(BIG, 'z')
      upstream = await listenHttp(http.createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BIG, 'cache-control': 'max-age=600' })
        res.end(body)
      }), 30_000)
      dir = mkdtempSync(join(tmpdir(), 'swy-linger-'))
    })

    after(async () => {
      for (const { lb } of lbs) await lb.stop()
      await upstream.close()
      rmSync(dir, { recursive: true, force: true })
    })

    /** Fetch `path` whole through the balancer (the miss that stores it), then wait for its line and its close. */
    async function warm (target: { lb: RunningLb, accessFile: string }, path: string): Promise<void> {
      const c = await LateReader.send(target.lb.port, get(path, true))
      try {
        c.socket.resume()
        await waitFor(() => c.ended || c.closed, 30_000, `the miss for ${path} (have ${c.received})`)
        assert.equal(c.received, c.expected)
        assert.match(c.head, /^HTTP\/1\.1 200 /)
      } finally {
        c.socket.destroy()
      }
      await waitFor(() => accessFileLines(target.accessFile, path).length === 1, 5000, `the miss's access line for ${path}`)
      await waitFor(() => openClientConnections(target.lb) === 0, 5000, 'the miss\'s connection closed')
    }

    /** Send `request` for `path`, read nothing until its access line is written: the proxy has half-closed by then. */
    async function answeredUnread (target: { lb: RunningLb, accessFile: string }, path: string, request: string): Promise<LateReader> {
      const c = await LateReader.send(target.lb.port, request)
      try {
        await waitFor(() => accessFileLines(target.accessFile, path).length === 2, 10_000, `the hit's access line for ${path}`)
      } catch (err) {
        c.socket.destroy()
        throw err
      }
      return c
    }

    test(`a client that starts reading ${STALL_MS} ms after a cache hit with Connection: close gets every byte, then a FIN`, async () => {
      const target = await patientLb()
      await warm(target, '/late')
      const c = await answeredUnread(target, '/late', get('/late', true))
      try {
        await sleep(STALL_MS) // the scenario itself: the client takes nothing for longer than the linger
        c.socket.resume()
        await waitFor(() => c.ended || c.closed, 30_000, `the end of the response (have ${c.received})`)
        assert.match(c.head, /^HTTP\/1\.1 200 /)
        assert.match(c.head, /\r\nconnection: close\r\n/i)
        assert.equal(c.received, c.expected, 'every byte of the response')
        assert.equal(c.ended, true, 'a FIN, not a reset')
        // the client keeps its side open: 2 s after the last byte went out the balancer lets go
        await waitFor(() => openClientConnections(target.lb) === 0, 6000, 'the balancer closing the connection after the linger')
      } finally {
        c.socket.destroy()
      }
    })

    test('a client that half-closes while its answer is still queued gets every byte, then a FIN', async () => {
      const target = await patientLb()
      await warm(target, '/half')
      const c = await answeredUnread(target, '/half', get('/half', true))
      try {
        c.socket.end() // our FIN reaches a proxy that has half-closed already, with most of the answer queued
        await sleep(200)
        c.socket.resume()
        await waitFor(() => c.ended || c.closed, 30_000, `the end of the response (have ${c.received})`)
        assert.equal(c.received, c.expected, 'every byte of the response')
        assert.equal(c.ended, true, 'a FIN, not a reset')
        // both sides have ended once the last byte is out: node closes the socket then, without the 2 s linger
        await waitFor(() => openClientConnections(target.lb) === 0, 1500, 'the connection closed once everything was out')
      } finally {
        c.socket.destroy()
      }
    })

    test('a client that takes nothing of a queued answer for clientIdleMs (at least 2 s) is cut', async () => {
      const target = await startCaching('strict', { clientIdleMs: 1000 })
      await warm(target, '/never')
      const c = await answeredUnread(target, '/never', get('/never', true))
      try {
        await sleep(STALL_MS)
        c.socket.resume()
        await waitFor(() => c.ended || c.closed, 10_000, `the cut (have ${c.received})`)
        assert.ok(c.received > 0 && c.received < c.expected, `part of the response: ${c.received} of ${c.expected}`)
        await waitFor(() => openClientConnections(target.lb) === 0, 2000, 'the connection closed')
      } finally {
        c.socket.destroy()
      }
    })
  })
}
