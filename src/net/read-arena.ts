/**
 * One read buffer per thread, reused by every plain TCP socket of the request
 * path: net.Socket's documented `onread` option (a reusable buffer and a
 * callback). Without it, each read costs node a fresh 64 KiB allocation,
 * trimmed to the bytes read and wrapped in a new ArrayBuffer, plus the
 * Readable stream's machinery ('data' event, read(), maybeReadMore on the
 * next tick) — about 2 µs per request at two reads a request (#18).
 *
 * The price is one rule: **nothing keeps a view of the arena past the read
 * callback**. The next read, on any socket of this thread, overwrites it.
 * Code that keeps bytes (unparsed input, a parsed head read later by the
 * access log, a body kept for a retry, a cache fill) or hands them to
 * `socket.write()` (which keeps the buffer when the kernel does not take it
 * all at once) copies a borrowed buffer first: `owned(b)`. At the end of each
 * callback the connection settles what it still holds (`settleBorrowed()` in
 * client.ts and upstream.ts). Sockets that do not read here ('data' chunks
 * from TLS, a PROXY header reader, sequential mode's accepted sockets) hand
 * out buffers node allocated, which `owned()` returns as they are.
 *
 * Sockets read one at a time on the thread's loop, so one arena serves all.
 */
import type * as net from 'node:net'

/** The most one read takes (node's own default read size). */
export const ARENA_BYTES = 64 * 1024

const arena = Buffer.allocUnsafeSlow(ARENA_BYTES)
const arenaMemory = arena.buffer

/** A view of this thread's read arena (valid only until the read callback returns). */
export function borrowed (b: Uint8Array): boolean {
  return b.buffer === arenaMemory
}

/** `b` itself when nothing will overwrite it, else a copy of its bytes. */
export function owned (b: Buffer): Buffer {
  return b.buffer === arenaMemory ? Buffer.from(b) : b
}

/**
 * A socket's read callback: `this` is the socket (net.js calls it as a method),
 * `buf` the arena with `bytes` new bytes at its start. true: keep reading.
 */
export type ArenaCallback = (this: net.Socket, bytes: number, buf: Buffer) => boolean

/** The `onread` option (documented for net.connect and, since node 20, new net.Socket): this thread's arena and `callback`. */
export function arenaRead (callback: ArenaCallback): net.OnReadOpts {
  return { buffer: arena, callback: callback as net.OnReadOpts['callback'] }
}
