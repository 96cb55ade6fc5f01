/**
 * Accepted handles (src/net/raw-accept.ts): what it takes from node without
 * node documenting it, pinned so that a node upgrade that changes any of it
 * fails here first:
 * - a listening net.Server's `_handle.onconnection(err, clientHandle)` is the
 *   callback every accept reaches, and replacing it means node builds no
 *   socket and emits no 'connection';
 * - the client handle's `fd` names the accepted connection, `getpeername(out)`
 *   fills in its peer, `close()` closes it;
 * - `new net.Socket({ handle, onread })` reads that handle into the buffer.
 * And what it promises: accept errors and handles it does not recognise go to
 * node's own callback ('error', or a socket and 'connection'), and a server it
 * cannot take keeps node's behaviour.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as net from 'node:net'
import * as os from 'node:os'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { loadHandoff } from '../../src/primary/handoff'
import { isAcceptedHandle, peerOf, socketOnHandle, takeAccepts, type AcceptedHandle } from '../../src/net/raw-accept'
import { waitFor } from '../helpers'

interface Taken { handle: AcceptedHandle, listener: number }

async function listening (): Promise<{ server: net.Server, port: number, connections: net.Socket[] }> {
  const connections: net.Socket[] = []
  const server = net.createServer({ allowHalfOpen: true }, (socket) => { connections.push(socket) })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { server, port: (server.address() as AddressInfo).port, connections }
}

/** `client` writes `text`; `socket` (the server's side) receives exactly it with 'data'. */
async function readsWithData (socket: net.Socket, client: net.Socket, text: string, what: string): Promise<void> {
  const chunks: Buffer[] = []
  socket.on('data', (b: Buffer) => chunks.push(b))
  client.write(text)
  await waitFor(() => Buffer.concat(chunks).toString() === text, 5000, what)
}

async function connect (port: number): Promise<net.Socket> {
  const client = net.connect(port, '127.0.0.1')
  client.on('error', () => {})
  await once(client, 'connect')
  return client
}

async function close (server: net.Server): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()))
}

function serverHandle (server: net.Server): { onconnection: (err: number, client: unknown) => void } {
  return (server as unknown as { _handle: { onconnection: (err: number, client: unknown) => void } })._handle
}

test('a taken server\'s connections come as handles: fd names the connection, getpeername its peer, no socket and no \'connection\' from node', async () => {
  const { server, port, connections } = await listening()
  const taken: Taken[] = []
  assert.equal(takeAccepts(server, 3, (handle, listener) => { taken.push({ handle, listener }) }), true)
  assert.equal(takeAccepts(server, 3, () => { throw new Error('installed twice') }), true, 'a second call leaves the first in place')
  const clients = [await connect(port), await connect(port)]
  await waitFor(() => taken.length === 2, 5000, 'two handles')
  const addon = loadHandoff()
  for (let i = 0; i < 2; i++) {
    const { handle, listener } = taken[i]
    assert.equal(listener, 3)
    assert.ok(isAcceptedHandle(handle))
    const peer = peerOf(handle)
    assert.equal(peer.address, '127.0.0.1')
    assert.equal(peer.port, clients[i].localPort)
    // the descriptor is this connection's own: its peer is the client's local end
    assert.equal(addon.peer(handle.fd), `127.0.0.1:${clients[i].localPort as number}`)
  }
  assert.equal(connections.length, 0, 'node made no socket of its own')
  // close() closes the connection: the client sees its end
  const ended = once(clients[1], 'end')
  taken[1].handle.close()
  await ended
  taken[0].handle.close()
  for (const c of clients) c.destroy()
  await close(server)
})

test('a socket on a taken handle reads into the onread buffer, writes, and ends like an accepted one', async () => {
  const { server, port } = await listening()
  const taken: AcceptedHandle[] = []
  takeAccepts(server, 0, (handle) => { taken.push(handle) })
  const client = await connect(port)
  await waitFor(() => taken.length === 1, 5000, 'the handle')
  const buffer = Buffer.alloc(4096)
  const read: string[] = []
  const socket = socketOnHandle(taken[0], { buffer, callback: (n: number, b: Uint8Array) => { read.push(Buffer.from(b.subarray(0, n)).toString()); return true } })
  assert.equal(socket.remoteAddress, '127.0.0.1')
  assert.equal(socket.remotePort, client.localPort)
  client.write('ping')
  await waitFor(() => read.join('') === 'ping', 5000, 'bytes read into the buffer')
  const received: Buffer[] = []
  client.on('data', (b: Buffer) => received.push(b))
  socket.write('pong')
  await waitFor(() => Buffer.concat(received).toString() === 'pong', 5000, 'bytes written')
  // allowHalfOpen: the client's end does not end ours; ours then closes
  const closed = once(socket, 'close')
  client.end()
  socket.end()
  await closed
  client.destroy()
  await close(server)
})

test('without onread the socket reads with \'data\' (TLS and PROXY protocol listeners)', async () => {
  const { server, port } = await listening()
  const taken: AcceptedHandle[] = []
  takeAccepts(server, 0, (handle) => { taken.push(handle) })
  const client = await connect(port)
  await waitFor(() => taken.length === 1, 5000, 'the handle')
  const socket = socketOnHandle(taken[0], undefined)
  await readsWithData(socket, client, 'hello', '\'data\'')
  socket.destroy()
  client.destroy()
  await close(server)
})

test('an accept error goes to node\'s callback: the server emits \'error\' (EMFILE)', async () => {
  const { server } = await listening()
  takeAccepts(server, 0, () => { throw new Error('no handle comes with an error') })
  const failed = once(server, 'error')
  serverHandle(server).onconnection(-os.constants.errno.EMFILE, undefined)
  const [err] = await failed as [NodeJS.ErrnoException]
  assert.equal(err.code, 'EMFILE')
  assert.equal(err.syscall, 'accept')
  await close(server)
})

test('a client handle without what is used here goes to node: a socket of node\'s and \'connection\'', async () => {
  const { server, port, connections } = await listening()
  const taken: AcceptedHandle[] = []
  takeAccepts(server, 0, (handle) => { taken.push(handle) })
  const client = await connect(port)
  await waitFor(() => taken.length === 1, 5000, 'the handle')
  // as a node whose handles named no descriptor would deliver it
  const handle = taken[0]
  Object.defineProperty(handle, 'fd', { value: -1 })
  assert.equal(isAcceptedHandle(handle), false)
  serverHandle(server).onconnection(0, handle)
  assert.equal(taken.length, 1, 'not taken again')
  assert.equal(connections.length, 1, 'node\'s own onconnection made the socket')
  const socket = connections[0]
  await readsWithData(socket, client, 'via node', 'node\'s socket reads')
  socket.destroy()
  client.destroy()
  await close(server)
})

test('a server that is not listening cannot be taken: false, and node\'s accepts carry on once it listens', async () => {
  const connections: net.Socket[] = []
  const server = net.createServer((socket) => { connections.push(socket) })
  assert.equal(takeAccepts(server, 0, () => { throw new Error('not taken') }), false)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const client = await connect((server.address() as AddressInfo).port)
  await waitFor(() => connections.length === 1, 5000, '\'connection\'')
  connections[0].destroy()
  client.destroy()
  await close(server)
})
