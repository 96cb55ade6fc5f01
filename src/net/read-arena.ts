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

/** The scratch region's size: a response head longer than this is built in a buffer of its own. */
export const SCRATCH_BYTES = 16 * 1024

// one allocation: the read arena, then the scratch region (both "borrowed": owned() copies either)
const memory = Buffer.allocUnsafeSlow(ARENA_BYTES + SCRATCH_BYTES)
const arena = memory.subarray(0, ARENA_BYTES)
const arenaMemory = memory.buffer

/**
 * Where a response head is built to be written within the same callback
 * (serialize.ts buildResponseHead): written straight to the socket when the
 * kernel takes it, copied by owned() when node has to keep it. The same rule
 * as the arena: nothing keeps it past the callback that built it.
 */
export const scratch = memory.subarray(ARENA_BYTES)

/** Reads of up to this many bytes get a view made once per length (arenaView). */
const VIEW_CACHE_BYTES = 4096
const views: Array<Buffer | undefined> = []

/**
 * The arena's first `bytes` bytes, for a read callback. A fresh
 * `subarray()` per read is a typed-array construction (about 0.15 µs, two
 * reads a request); a view of a given length never changes, so each length up
 * to VIEW_CACHE_BYTES is made once and reused (at most 4097 small objects per
 * thread). Like every arena view it is valid only until the callback returns.
 */
export function arenaView (bytes: number): Buffer {
  if (bytes > VIEW_CACHE_BYTES) return arena.subarray(0, bytes)
  let view = views[bytes]
  if (view === undefined) {
    view = arena.subarray(0, bytes)
    views[bytes] = view
  }
  return view
}

/** A view of this thread's read arena or scratch region (valid only until the callback returns). */
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
