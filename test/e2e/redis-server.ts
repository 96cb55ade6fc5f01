/**
 * A real redis-server for the cluster tests, on a free loopback port, with
 * persistence off (`--save '' --appendonly no`), stopped by PID. kill() and
 * restart() (same port) model Redis dying and coming back; pause()/resume()
 * send SIGSTOP/SIGCONT (a hung Redis: the socket stays open, nothing answers).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import * as net from 'node:net'
import { freePort, waitFor } from '../helpers'

export const REDIS_SERVER = process.env.REDIS_SERVER ?? '/usr/bin/redis-server'

export class RedisServer {
  readonly port: number
  private child: ChildProcess | null = null
  private paused = false

  private constructor (port: number) {
    this.port = port
  }

  static async start (): Promise<RedisServer> {
    const server = new RedisServer(await freePort())
    await server.launch()
    return server
  }

  get url (): string { return `redis://127.0.0.1:${this.port}/0` }
  get pid (): number { return this.child?.pid ?? -1 }

  private async launch (): Promise<void> {
    const child = spawn(REDIS_SERVER, ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', 'warning'], { stdio: 'ignore' })
    this.child = child
    await waitFor(async () => await ping(this.port), 5000, `redis-server on port ${this.port}`)
  }

  /** SIGKILL: Redis dies mid-window. */
  async kill (): Promise<void> {
    const child = this.child
    if (child === null) return
    if (this.paused) this.resume()
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid as number, 'SIGKILL')
    await exited
    this.child = null
  }

  /** Start again on the same port (empty: persistence is off). */
  async restart (): Promise<void> {
    await this.kill()
    await this.launch()
  }

  pause (): void {
    if (this.child?.pid === undefined) return
    process.kill(this.child.pid, 'SIGSTOP')
    this.paused = true
  }

  resume (): void {
    if (this.child?.pid === undefined || !this.paused) return
    process.kill(this.child.pid, 'SIGCONT')
    this.paused = false
  }

  /** Stop for good (SIGCONT first if paused, so it can die cleanly). */
  async stop (): Promise<void> {
    await this.kill()
  }
}

/** One PING over a raw socket: true on +PONG. */
export async function ping (port: number, timeoutMs = 500): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    const timer = setTimeout(() => { socket.destroy(); resolve(false) }, timeoutMs)
    socket.once('connect', () => socket.write('PING\r\n'))
    socket.once('data', (data) => { clearTimeout(timer); socket.destroy(); resolve(data.toString().startsWith('+PONG')) })
    socket.once('error', () => { clearTimeout(timer); resolve(false) })
  })
}

/** Redis's clock, in ms (TIME over a raw socket). */
export async function redisTimeMs (port: number): Promise<number> {
  return await new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    let text = ''
    socket.once('connect', () => socket.write('TIME\r\n'))
    socket.on('data', (data) => {
      text += data.toString()
      const numbers = text.split('\r\n').filter((l) => /^\d+$/.test(l))
      if (numbers.length >= 2) {
        socket.destroy()
        resolve(Number(numbers[0]) * 1000 + Math.floor(Number(numbers[1]) / 1000))
      }
    })
    socket.once('error', reject)
  })
}
