/**
 * Writes that skip net.Socket's stream machinery while it has nothing queued.
 *
 * A `socket.write()` that the kernel takes at once still runs the Writable
 * machinery (state, length accounting, a WriteWrap, an after-write tick) around
 * its one send(2): about 1.3 µs of a loopback write's 5–6 µs, twice per
 * proxied request (the request to the upstream, the response to the client).
 * When the socket's own queue is empty, the bytes go straight to its
 * descriptor with one nonblocking sendmsg (native/fdhandoff.c `send`), the
 * response head and its first body bytes as two spans of one call (no copy to
 * join them); whatever the kernel does not take, and every write while
 * something is queued, goes through `socket.write()` as before, so order is
 * kept and backpressure, errors and 'drain' are node's.
 *
 * The one thing this relies on that node does not document is the handle's
 * `fd` (`socket._handle.fd`): read once per socket here, feature-detected
 * (a plain TCP socket whose handle reports a descriptor; never TLS, whose
 * bytes on the descriptor are records), and pinned by
 * test/unit/direct-write.test.ts, which fails if it stops naming the socket's
 * connection. A descriptor is only written while its socket is writable (not
 * destroyed: the number is closed with the handle, and could name another
 * connection after). Without the addon every write goes through node.
 */
import type * as net from 'node:net'
import { TLSSocket } from 'node:tls'
import { optionalHandoff } from '../primary/handoff'
import { owned } from './read-arena'

type Send = (fd: number, a: Buffer, aStart: number, aEnd: number, b: Buffer | null, bStart: number, bEnd: number) => number

let sender: Send | null | undefined

function loadSender (): Send | null {
  if (sender === undefined) {
    const addon = optionalHandoff() as unknown as { send?: Send } | null
    sender = addon !== null && typeof addon.send === 'function' ? addon.send : null
  }
  return sender
}

/**
 * The descriptor to write `socket`'s bytes to directly, or -1 (TLS, no
 * descriptor, no addon). Call once the socket is connected.
 */
export function directDescriptor (socket: net.Socket): number {
  if (socket instanceof TLSSocket || loadSender() === null) return -1
  return handleDescriptor(socket)
}

/**
 * The descriptor of `socket`'s handle (`socket._handle.fd`, undocumented;
 * pinned by test/unit/direct-write.test.ts), or -1 when it has none. The one
 * place the request path reads it: direct writes here, a TLS client's TCP
 * state in ./peer-reset.ts.
 */
export function handleDescriptor (socket: net.Socket): number {
  const handle = (socket as unknown as { _handle: { fd?: unknown } | null })._handle
  const fd = handle !== null && handle !== undefined ? handle.fd : undefined
  return typeof fd === 'number' && fd >= 0 ? fd : -1
}

/**
 * Write a[aStart, aEnd) then, when `b` is not null, b[bStart, bEnd) to
 * `socket` (whose direct descriptor is `fd`, -1 for none). Either may be
 * borrowed (a view of the read arena or the scratch region, read-arena.ts):
 * what the kernel does not take is copied before node keeps it. Whatever goes through node goes
 * corked, so two spans still leave in one writev (TLS: one record). false under
 * backpressure, as `socket.write()` answers.
 */
export function writeSpans (socket: net.Socket, fd: number, a: Buffer, aStart: number, aEnd: number, b: Buffer | null, bStart: number, bEnd: number): boolean {
  if (fd !== -1 && socket.writableLength === 0 && socket.writableCorked === 0 && socket.writable) {
    const sent = (sender as Send)(fd, a, aStart, aEnd, b, bStart, bEnd)
    if (sent > 0) {
      const aBytes = aEnd - aStart
      if (sent >= aBytes) {
        aStart = aEnd
        bStart += sent - aBytes
      } else {
        aStart += sent
      }
    }
  }
  const bLeft = b !== null && bStart !== bEnd
  if (aStart === aEnd) return bLeft ? socket.write(owned(span(b, bStart, bEnd))) : true
  if (!bLeft) return socket.write(owned(span(a, aStart, aEnd)))
  socket.cork()
  socket.write(owned(span(a, aStart, aEnd)))
  const ok = socket.write(owned(span(b, bStart, bEnd)))
  socket.uncork()
  return ok
}

function span (buf: Buffer, start: number, end: number): Buffer {
  return start === 0 && end === buf.length ? buf : buf.subarray(start, end)
}

/** All of `data`, as writeSpans. */
export function writeDirect (socket: net.Socket, fd: number, data: Buffer): boolean {
  return writeSpans(socket, fd, data, 0, data.length, null, 0, 0)
}

/**
 * A last word before a close, on a socket node no longer writes for itself
 * (the raw TCP socket under a TLS socket whose handshake failed): one
 * nonblocking send of `data` to `fd` (from directDescriptor), whatever the
 * kernel does not take dropped. True when it all went.
 */
export function sendLastWord (fd: number, data: Buffer): boolean {
  return fd !== -1 && (sender as Send)(fd, data, 0, data.length, null, 0, 0) === data.length
}
