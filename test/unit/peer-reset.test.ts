/**
 * What src/net/peer-reset.ts stands on, on a TLS server built as
 * src/net/accept.ts builds it (a net.Socket handed to a tls.Server, half-open
 * after the handshake): the raw socket's descriptor names the connection; a
 * client's reset after its request comes as 'end' (node 20) or an error, and
 * whenever it is an 'end' the connection reads as gone; a client's real
 * half-close does not, and a response written after it still arrives.
 * If node or the kernel changes any of that, a test here fails.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as net from 'node:net'
import * as tls from 'node:tls'
import { readFileSync } from 'node:fs'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { loadHandoff, optionalHandoff } from '../../src/primary/handoff'
import { tcpDescriptor, connectionGone } from '../../src/net/peer-reset'
import { makeTestCa, type TestCa } from '../tls-fixtures'
import { waitFor } from '../helpers'

/** Linux's TCP_INFO through the addon; elsewhere (or without the addon) every test here is skipped: a reset is then a half-close. */
const tcpState = optionalHandoff()?.tcpState
const skip = typeof tcpState !== 'function' ? 'no tcpState (Linux only, needs the addon)' : false
const TCP_ESTABLISHED = 1
const TCP_CLOSE_WAIT = 8

interface Accepted { raw: net.Socket, secure: tls.TLSSocket | null, fd: number, ended: boolean, errored: string | null, goneAtEnd: boolean | null, stateAtEnd: number, closed: boolean }

let ca: TestCa
let server: net.Server
let tlsServer: tls.Server
let port = 0
const accepted: Accepted[] = []

before(async () => {
  ca = makeTestCa()
  const leaf = ca.leaf('peer-reset', ['localhost'])
  tlsServer = tls.createServer({ cert: readFileSync(leaf.certFile), key: readFileSync(leaf.keyFile) })
  tlsServer.on('secureConnection', (s) => {
    const a = accepted.find((x) => x.raw === (s as unknown as { _parent: net.Socket })._parent)
    assert.ok(a !== undefined, 'the TLS socket keeps the raw socket it was made from as _parent')
    a.secure = s
    s.allowHalfOpen = true // as accept.ts's onHandshake
    a.fd = tcpDescriptor(a.raw)
    s.on('data', () => {})
    s.on('end', () => { a.ended = true; a.goneAtEnd = connectionGone(a.fd); a.stateAtEnd = (tcpState as (fd: number) => number)(a.fd) })
    s.on('error', (err: NodeJS.ErrnoException) => { a.errored = err.code ?? err.message })
    s.on('close', () => { a.closed = true })
  })
  tlsServer.on('tlsClientError', () => {})
  server = net.createServer((raw) => {
    accepted.push({ raw, secure: null, fd: -1, ended: false, errored: null, goneAtEnd: null, stateAtEnd: -1, closed: false })
    raw.allowHalfOpen = false // as accept.ts before the handshake
    tlsServer.emit('connection', raw)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  port = (server.address() as AddressInfo).port
})

after(async () => {
  for (const a of accepted) { a.secure?.destroy(); a.raw.destroy() }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  ca.remove()
})

/** A TLS client on a raw socket of its own (so it can reset it); resolves once the server has its TLS socket. */
async function connect (): Promise<{ raw: net.Socket, client: tls.TLSSocket, side: Accepted }> {
  const index = accepted.length
  const raw = net.connect(port, '127.0.0.1')
  raw.on('error', () => {})
  await once(raw, 'connect')
  const client = tls.connect({ socket: raw, servername: 'localhost', ca: ca.ca })
  client.on('error', () => {})
  await once(client, 'secureConnect')
  await waitFor(() => accepted.length > index && accepted[index].secure !== null, 5000, 'the server side of the handshake')
  return { raw, client, side: accepted[index] }
}

test('the raw socket under a server TLSSocket has a descriptor, and it names the connection', { skip }, async () => {
  const { raw, client, side } = await connect()
  try {
    assert.ok(side.fd >= 0, `a descriptor: ${side.fd}`)
    assert.equal(loadHandoff().peer(side.fd), `127.0.0.1:${raw.localPort ?? 0}`)
    assert.equal((tcpState as (fd: number) => number)(side.fd), TCP_ESTABLISHED)
    assert.equal(connectionGone(side.fd), false, 'an open connection is not gone')
  } finally {
    client.destroy()
  }
})

test('a client that resets after its request: an end that reads as gone, or an error', { skip }, async () => {
  const { raw, client, side } = await connect()
  // the reset right behind the request, as a client that gives up at once sends it: node 20 reads the
  // request, then says 'end' (a reset on its own, with nothing unread, comes as ECONNRESET)
  client.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n')
  raw.resetAndDestroy()
  await waitFor(() => side.ended || side.errored !== null, 5000, 'the server seeing the reset')
  if (side.ended) assert.equal(side.goneAtEnd, true, 'an end caused by a reset must read as gone')
  const secure = side.secure as tls.TLSSocket
  secure.destroy()
})

test('a client that half-closes after its request: not gone, and the answer written after the end arrives', { skip }, async () => {
  const { client, side } = await connect()
  const received: Buffer[] = []
  client.on('data', (c: Buffer) => received.push(c))
  client.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n')
  client.end() // close_notify and FIN; the client still reads
  await waitFor(() => side.ended, 5000, 'the half-close at the server')
  assert.equal(side.stateAtEnd, TCP_CLOSE_WAIT)
  assert.equal(side.goneAtEnd, false, 'a half-closed connection can still send')
  const secure = side.secure as tls.TLSSocket
  secure.end('the answer')
  await waitFor(() => Buffer.concat(received).toString() === 'the answer', 5000, 'the answer at the client')
  await waitFor(() => side.closed, 5000, 'the server socket closed')
  client.destroy()
})
