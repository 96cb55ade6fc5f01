/**
 * The cache's writer lock: one word (C_LOCK) for every thread, taken with
 * compareExchange. Writers hold it for one synchronous, bounded critical
 * section (a record copy and the evictions that make room for it), so a
 * thread that finds it taken spins for a bounded time (acquireWithin) rather
 * than skip its write: a skipped store made the cache's results depend on
 * thread timing (issue #16: about 5% of stores under two workers). It never
 * waits with Atomics.wait: worker threads own sockets.
 *
 * The lock word is the holder's clock (lockToken), which doubles as a lease:
 * a holder killed inside the lock (worker.terminate runs no finally) is taken
 * over by the next thread once the lease is over; the primary does it at once
 * when it sees the worker exit, through the owner word next to the lock
 * (C_LOCK_OWNER, see layout.ts lockOwnerWord). A takeover means the guarded
 * state is half-written: the caller resets it (TAKEN_OVER).
 */
import { performance } from 'node:perf_hooks'
import * as C from './layout'

/** acquire results. */
export const LOCK_BUSY = 0
export const LOCK_ACQUIRED = 1
/** Acquired from a dead holder: what the lock guards must be reset before use. */
export const LOCK_TAKEN_OVER = 2

export class WriteLock {
  private readonly ctl: Int32Array
  private readonly leaseMs: number
  private token = 0
  /** C_LOCK_OWNER's value while this instance holds the lock. */
  private ownerWord = 0

  constructor (ctl: Int32Array, leaseMs: number) {
    this.ctl = ctl
    this.leaseMs = leaseMs
  }

  /** One attempt, as `owner` (0 the primary, workerSlot + 1 a worker). */
  tryAcquire (owner: number): number {
    const now = Date.now()
    const token = C.lockToken(now)
    const held = Atomics.compareExchange(this.ctl, C.C_LOCK, 0, token)
    if (held === 0) { this.holding(token, owner); return LOCK_ACQUIRED }
    if (C.lockHeldMs(held, now) <= this.leaseMs) return LOCK_BUSY
    // the holder died inside the lock and nobody freed it for it (takeOverFrom)
    return this.takeOver(held, token, owner) ? LOCK_TAKEN_OVER : LOCK_BUSY
  }

  /**
   * Attempts for up to `spinMs` (0: one attempt). The spin reads the word and
   * tries the compareExchange only when it is free, so it does not keep the
   * holder's cache line bouncing; the clock is read every 64 rounds.
   */
  acquireWithin (owner: number, spinMs: number): number {
    let result = this.tryAcquire(owner)
    if (result !== LOCK_BUSY || spinMs <= 0) return result
    const deadline = performance.now() + spinMs
    for (let round = 1; ; round++) {
      if (Atomics.load(this.ctl, C.C_LOCK) === 0 || (round & 63) === 0) {
        result = this.tryAcquire(owner)
        if (result !== LOCK_BUSY) return result
        if ((round & 63) === 0 && performance.now() > deadline) return LOCK_BUSY
      }
    }
  }

  release (): void {
    // owner word first: once C_LOCK is free the next holder may write its own.
    // compareExchange, not store: a holder whose lease was taken over must not free the new holder's lock
    Atomics.compareExchange(this.ctl, C.C_LOCK_OWNER, this.ownerWord, 0)
    Atomics.compareExchange(this.ctl, C.C_LOCK, this.token, 0)
  }

  /**
   * If `deadOwner` holds the lock, take it over as `owner` (the caller then
   * resets and releases). true when it did.
   */
  takeOverFrom (deadOwner: number, owner: number): boolean {
    const held = Atomics.load(this.ctl, C.C_LOCK)
    if (held === 0 || Atomics.load(this.ctl, C.C_LOCK_OWNER) !== C.lockOwnerWord(held, deadOwner)) return false
    return this.takeOver(held, C.lockToken(Date.now()), owner)
  }

  /** Take the lock from a dead holder (its token `held`). */
  private takeOver (held: number, token: number, owner: number): boolean {
    if (Atomics.compareExchange(this.ctl, C.C_LOCK, held, token) !== held) return false
    this.holding(token, owner)
    Atomics.add(this.ctl, C.C_LOCK_TAKEOVERS, 1)
    return true
  }

  /** Just took the lock: say who holds it (see lockOwnerWord). */
  private holding (token: number, owner: number): void {
    this.token = token
    this.ownerWord = C.lockOwnerWord(token, owner)
    Atomics.store(this.ctl, C.C_LOCK_OWNER, this.ownerWord)
  }
}
