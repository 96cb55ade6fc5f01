/**
 * The descriptor hand-off addon (native/fdhandoff.c, built by node-gyp during
 * `npm install`). Loaded lazily: sequential mode never needs it.
 */
import { join } from 'node:path'
import { SwitchyardError } from '../errors'

export interface FdHandoff {
  duplicate (fd: number): number
  close (fd: number): void
  /** "ip:port" of the socket's peer, or null when `fd` is not an open connected socket. */
  peer (fd: number): string | null
  /** glibc only (feature-detect it): malloc_trim(0) on a libuv pool thread; resolves to its CPU microseconds (src/primary/memory-release.ts). */
  trimMalloc?: () => Promise<number>
  /** Ask every thread's V8 heap (each thread that loaded the addon) for a memory-reducing collection; returns how many. */
  reduceHeaps?: () => number
  /** glibc >= 2.33 only: mallinfo2 summed over every arena. */
  mallocStats?: () => { arenaBytes: number, mmapBytes: number, inUseBytes: number, freeBytes: number }
  /** Linux only: grow the buffer of the pipe `fd` toward `bytes` (never shrinks it); its size after, or -1 when `fd` is no pipe. */
  pipeSize?: (fd: number, bytes: number) => number
  /** Linux only: the TCP state of socket `fd` (TCP_INFO's tcpi_state: 7 CLOSE, 8 CLOSE_WAIT), or -1 when it is not a TCP socket. */
  tcpState?: (fd: number) => number
}

let addon: FdHandoff | null = null

/** The addon, or null when it is not built (sequential mode works without it). */
export function optionalHandoff (): FdHandoff | null {
  try {
    return loadHandoff()
  } catch {
    return null
  }
}

export function loadHandoff (): FdHandoff {
  if (addon !== null) return addon
  // dist/src/primary/handoff.js -> <package root>/build/Release/fdhandoff.node
  const path = join(__dirname, '..', '..', '..', 'build', 'Release', 'fdhandoff.node')
  try {
    addon = require(path) as FdHandoff
  } catch (err) {
    throw new SwitchyardError('SWY_ERR_FD_HANDOFF',
      `cannot load the descriptor hand-off addon (${path}): ${(err as Error).message}. ` +
      'Worker mode needs it: run `npm install` (it builds the addon with node-gyp), or start with --workers 0.', { cause: err })
  }
  return addon
}
