/**
 * The node feature the read arena (src/net/read-arena.ts) stands on: net.Socket's
 * `onread` option, as the request path uses it. A worker wraps a handed-off
 * descriptor with `new net.Socket({ fd, onread })` (workers/proxy.worker.ts) and
 * upstream sockets are `net.connect({ onread })` (src/tls/upstream.ts). Both must
 * deliver every byte into the given buffer, from its start, at most its length at
 * a time, calling the callback with the socket as `this`; never emit 'data'; still
 * emit 'end' and 'close'; and honour pause() (no callback while paused) and
 * resume() (the bytes that came meanwhile follow). A node upgrade that changes
 * any of this fails here before it corrupts or stalls a connection.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as net from 'node:net'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { loadHandoff } from '../../src/primary/handoff'
import { waitFor } from '../helpers'

/** What one onread socket saw: the bytes (copied out of the buffer at each call), the calls, the events. */
class ReadLog {
  readonly buffer: Buffer
  readonly chunks: Buffer[] = []
  calls = 0
  /** The largest `bytes` of one call. */
  largest = 0
  /** Every call got `buffer` itself and the socket as `this`. */
  sameBuffer = true
  socketAsThis = true
  socket: net.Socket | null = null
  dataEvents = 0
  ended = false
  closed = false

  constructor (size: number) {
    this.buffer = Buffer.alloc(size)
  }

  get onread (): net.OnReadOpts {
    const log = this
    return {
      buffer: this.buffer,
      callback (this: unknown, bytes: number, buf: Uint8Array): boolean {
        log.calls++
        log.largest = Math.max(log.largest, bytes)
        if (buf !== log.buffer) log.sameBuffer = false
        if (log.socket !== null && this !== log.socket) log.socketAsThis = false
        log.chunks.push(Buffer.from(buf.subarray(0, bytes)))
        return true
      },
    }
  }

  watch (socket: net.Socket): void {
    this.socket = socket
    // the request path registers 'data' handlers too (client.ts, upstream.ts): they must stay silent
    socket.on('data', () => { this.dataEvents++ })
    socket.on('end', () => { this.ended = true })
    socket.on('close', () => { this.closed = true })
    socket.on('error', () => {})
  }

  get received (): Buffer { return Buffer.concat(this.chunks) }
}

/** Bytes that no two reads of a buffer could produce by accident: a counter in every 4 bytes. */
function numbered (n: number, seed: number): Buffer {
  const out = Buffer.alloc(n)
  for (let i = 0; i + 4 <= n; i += 4) out.writeUInt32BE((seed + i) >>> 0, i)
  return out
}

/**
 * One full turn of this thread's poll phase after everything written so far is in
 * the kernel: a round trip on another loopback connection. Had the paused socket
 * been read, its callback would have run by then (loopback delivery is done when
 * the peer's write returns).
 */
async function pollTurn (): Promise<void> {
  const echo = net.createServer((s) => s.pipe(s))
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
  const probe = net.connect((echo.address() as AddressInfo).port, '127.0.0.1')
  try {
    await once(probe, 'connect')
    probe.write('x')
    await once(probe, 'data')
  } finally {
    probe.destroy()
    await new Promise<void>((resolve) => echo.close(() => resolve()))
  }
}

/** Writes `data` and resolves once node handed all of it to the kernel. */
async function flushed (socket: net.Socket, data: Buffer): Promise<void> {
  await new Promise<void>((resolve, reject) => socket.write(data, (err) => { if (err != null) reject(err); else resolve() }))
}

/**
 * The common checks, `local` reading with onread and `peer` the other end:
 * bytes in order, in the buffer, pause/resume, 'end', 'close'.
 */
async function exercise (local: net.Socket, peer: net.Socket, log: ReadLog, halfOpen: boolean): Promise<void> {
  // bytes arrive in the buffer, from its start
  const first = Buffer.from('hello, arena')
  await flushed(peer, first)
  await waitFor(() => log.received.length === first.length, 5000, 'the first bytes through onread')
  assert.deepEqual(log.received, first)
  assert.deepEqual(log.buffer.subarray(0, first.length), first, 'the bytes are in the given buffer, at its start')

  // more than the buffer holds: several calls, none over its length, every byte once and in order
  const big = numbered(5 * log.buffer.length + 123, 7)
  await flushed(peer, big)
  await waitFor(() => log.received.length === first.length + big.length, 5000, 'the large write through onread')
  assert.ok(log.largest <= log.buffer.length, `one call delivered ${log.largest} bytes into a ${log.buffer.length}-byte buffer`)
  assert.ok(log.received.subarray(first.length).equals(big), 'the bytes of many reads, in order')

  // pause(): nothing is read while paused, even with bytes waiting in the kernel
  local.pause()
  const callsBefore = log.calls
  const whilePaused = numbered(3000, 1_000_000)
  await flushed(peer, whilePaused)
  await pollTurn()
  await pollTurn()
  assert.equal(log.calls, callsBefore, 'no read callback while paused')
  // resume(): what came meanwhile is read
  local.resume()
  const total = first.length + big.length + whilePaused.length
  await waitFor(() => log.received.length === total, 5000, 'the bytes sent while paused, after resume()')
  assert.ok(log.received.subarray(total - whilePaused.length).equals(whilePaused))

  // the peer's FIN: 'end', then 'close' (with allowHalfOpen, once we end our side too)
  peer.end()
  await waitFor(() => log.ended, 5000, "'end' on the onread socket")
  if (halfOpen) {
    assert.equal(log.closed, false, 'half-open until we end our side')
    assert.ok(local.writable, 'still writable after the peer\'s FIN')
    local.end()
  }
  await waitFor(() => log.closed, 5000, "'close' on the onread socket")

  assert.equal(log.dataEvents, 0, "no 'data' event: every byte went through the callback")
  assert.ok(log.sameBuffer, 'every call got the given buffer')
  assert.ok(log.socketAsThis, 'the callback runs with the socket as `this` (read-arena.ts ArenaCallback)')
}

test('new net.Socket({ fd, onread }) on a handed-off descriptor (worker mode): bytes into the buffer, pause/resume, end, close', async () => {
  const handoff = loadHandoff()
  const accepted: net.Socket[] = []
  const server = net.createServer({ pauseOnConnect: true }, (s) => { accepted.push(s) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const peer = net.connect((server.address() as AddressInfo).port, '127.0.0.1')
  peer.on('error', () => {})
  let adopted: net.Socket | null = null
  try {
    await once(peer, 'connect')
    await waitFor(() => accepted.length === 1, 5000, 'the accepted connection')
    // as src/primary/workers.ts dispatch(): duplicate the descriptor, drop the primary's copy
    const original = accepted[0]
    const fd = handoff.duplicate((original as unknown as { _handle: { fd: number } })._handle.fd)
    original.destroy()
    // as workers/proxy.worker.ts with src/net/accept.ts adoptedSocketOptions()
    const log = new ReadLog(64 * 1024)
    adopted = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true, onread: log.onread } as net.SocketConstructorOpts)
    log.watch(adopted)
    await exercise(adopted, peer, log, true)
  } finally {
    adopted?.destroy()
    peer.destroy()
    for (const s of accepted) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
})

test('net.connect({ onread }) (upstream sockets): bytes into the buffer, pause/resume, end, close', async () => {
  const accepted: net.Socket[] = []
  const server = net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); accepted.push(s) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const log = new ReadLog(16 * 1024)
  const local = net.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, noDelay: true, onread: log.onread })
  log.watch(local)
  try {
    await once(local, 'connect')
    await waitFor(() => accepted.length === 1, 5000, 'the accepted connection')
    await exercise(local, accepted[0], log, false)
  } finally {
    local.destroy()
    for (const s of accepted) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
})
