/**
 * Direct writes (src/net/direct-write.ts): bytes sent straight to a socket's
 * descriptor while its queue is empty, the rest through socket.write. What it
 * stands on and what it promises:
 * - `socket._handle.fd` (undocumented) names the socket's own connection: if a
 *   node upgrade changes that, the first test fails before bytes go astray;
 * - TLS sockets are never written directly;
 * - order is kept across the switch between direct sends and node's queue, and
 *   borrowed spans (the read arena, the scratch region a response head is built
 *   in) are copied when the kernel leaves part of them (the caller reuses its
 *   buffer right after the call);
 * - a destroyed socket's descriptor number is never written, even when a new
 *   connection has been given the same number.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as net from 'node:net'
import * as tls from 'node:tls'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { loadHandoff } from '../../src/primary/handoff'
import { directDescriptor, writeDirect, writeSpans } from '../../src/net/direct-write'
import { arenaRead, borrowed, scratch } from '../../src/net/read-arena'
import { waitFor } from '../helpers'

interface Pair { client: net.Socket, server: net.Socket, received: Buffer[], close: () => Promise<void> }

/** A loopback listener; connect() makes a pair whose `received` collects what the server side reads (unless `paused`). */
async function listen (paused = false): Promise<{ connect: () => Promise<Pair> }> {
  const received: Buffer[] = []
  let accepted: net.Socket | null = null
  const listener = net.createServer((s) => {
    accepted = s
    s.on('error', () => {})
    if (paused) s.pause()
    s.on('data', (b) => { received.push(b) })
  })
  listener.listen(0, '127.0.0.1')
  await once(listener, 'listening')
  return {
    async connect () {
      const client = net.connect((listener.address() as AddressInfo).port, '127.0.0.1')
      client.on('error', () => {})
      await once(client, 'connect')
      await waitFor(() => accepted !== null, 5000, 'accept')
      const server = accepted as unknown as net.Socket
      return {
        client,
        server,
        received,
        async close () {
          client.destroy()
          server.destroy()
          await new Promise<void>((resolve) => listener.close(() => resolve()))
        },
      }
    },
  }
}

async function pair (paused = false): Promise<Pair> {
  return await (await listen(paused)).connect()
}

function pattern (length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length)
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed + (i >> 12)) & 0xff
  return b
}

test('the addon sends, and the descriptor read from the handle names the socket\'s own connection', async () => {
  assert.equal(typeof (loadHandoff() as unknown as { send?: unknown }).send, 'function', 'native send (npm install builds it)')
  const p = await pair()
  try {
    const fd = directDescriptor(p.client)
    assert.ok(fd >= 0, 'a plain TCP socket has a descriptor')
    assert.equal(loadHandoff().peer(fd), `${p.client.remoteAddress as string}:${p.client.remotePort as number}`)
    // and a write through it arrives
    assert.equal(writeDirect(p.client, fd, Buffer.from('hello')), true)
    await waitFor(() => Buffer.concat(p.received).toString() === 'hello', 5000, 'bytes')
  } finally {
    await p.close()
  }
})

test('a TLS socket is never written directly', async () => {
  const p = await pair()
  try {
    const wrapped = new tls.TLSSocket(p.client)
    wrapped.on('error', () => {})
    assert.equal(directDescriptor(wrapped), -1)
    wrapped.destroy()
  } finally {
    await p.close()
  }
})

test('order holds across direct sends, partial sends and node\'s queue; borrowed spans are copied before they are reused', async () => {
  // bytes read into the thread's read arena are relayed, each read behind a small head built in the scratch
  // region (as a response head is), to a paused reader: the kernel's buffers fill, sends go partial, then
  // everything queues in node. Every third read also sends a head alone (writeSpans without a second span).
  const sink = await pair(true)
  const expected: Buffer[] = []
  let reads = 0
  let partialOrQueued = 0
  const fd = directDescriptor(sink.client)
  const source = net.createServer((s) => { s.on('error', () => {}); s.end(pattern(32 * 1024 * 1024, 7)) })
  source.listen(0, '127.0.0.1')
  await once(source, 'listening')
  const relay = net.connect({
    port: (source.address() as AddressInfo).port,
    host: '127.0.0.1',
    onread: arenaRead(function (bytes, arena) {
      const view = arena.subarray(0, bytes)
      assert.ok(borrowed(view))
      assert.ok(borrowed(scratch))
      const queuedBefore = sink.client.writableLength
      if (reads % 3 === 0) {
        const n = scratch.latin1Write(`alone ${reads}\n`, 0)
        expected.push(Buffer.from(scratch.subarray(0, n)))
        writeSpans(sink.client, fd, scratch, 0, n, null, 0, 0)
      }
      const n = scratch.latin1Write(`read ${reads++}\n`, 0)
      expected.push(Buffer.from(scratch.subarray(0, n)), Buffer.from(view))
      writeSpans(sink.client, fd, scratch, 0, n, view, 0, bytes)
      if (sink.client.writableLength > queuedBefore) partialOrQueued++
      return true
    }),
  })
  relay.on('error', () => {})
  try {
    await once(relay, 'end')
    assert.ok(reads > 1, 'the arena was read into more than once')
    assert.ok(partialOrQueued > 0, 'the kernel buffers filled: some bytes went through node\'s queue')
    sink.server.resume()
    const want = Buffer.concat(expected)
    await waitFor(() => sink.received.reduce((n, b) => n + b.length, 0) >= want.length, 20000, 'every byte')
    assert.ok(Buffer.concat(sink.received).equals(want), 'the bytes arrive whole and in order')
  } finally {
    relay.destroy()
    await new Promise<void>((resolve) => source.close(() => resolve()))
    await sink.close()
  }
})

test('a destroyed socket\'s descriptor is not written, even when the number names a new connection', async () => {
  const a = await pair()
  const fd = directDescriptor(a.client)
  const nextListener = await listen()
  a.client.destroy()
  await once(a.client, 'close')
  // the next descriptor opened is the lowest free number: a's
  const b = await nextListener.connect()
  const backAtClient: Buffer[] = []
  b.client.on('data', (chunk: Buffer) => { backAtClient.push(chunk) })
  try {
    assert.equal(directDescriptor(b.client), fd, 'the new connection has the destroyed socket\'s number')
    assert.equal(writeDirect(a.client, fd, Buffer.from('not for you')), false, 'node refuses the write')
    writeDirect(b.client, fd, Buffer.from('mine'))
    b.server.write('back')
    await waitFor(() => Buffer.concat(b.received).toString() === 'mine' && Buffer.concat(backAtClient).toString() === 'back', 5000, 'b\'s own bytes')
    assert.equal(Buffer.concat(b.received).toString(), 'mine')
  } finally {
    await b.close()
    await a.close()
  }
})
