/**
 * Under a supervisor that runs `npm start` and stops it with SIGTERM to the
 * npm process (systemd, Docker, foreman...), the balancer itself must get the
 * signal, drain and exit, not be orphaned still bound to its port. npm hands
 * SIGTERM to the script's process; the script `exec`s node, so that process
 * is the balancer. Sequential and worker mode.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import * as net from 'node:net'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { MODES } from './harness'
import { startEchoUpstream, waitFor, httpRequest } from '../helpers'

const ROOT = join(__dirname, '..', '..', '..')

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

for (const mode of MODES) {
  describe(`supervisor: npm start (${mode.name})`, () => {
    test('SIGTERM to the npm process drains and stops the balancer (no orphan left bound)', async (t) => {
      const up = await startEchoUpstream('supervised')
      t.after(async () => await up.close())
      const npm = spawn('npm', ['start', '--', '--bind', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--upstream', up.address, '--workers', String(mode.workers)],
        { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      npm.stdout.on('data', (c: Buffer) => { out += c.toString() })
      npm.stderr.on('data', (c: Buffer) => { out += c.toString() })
      let balancerPid = -1
      t.after(() => {
        if (npm.exitCode === null) npm.kill('SIGKILL')
        if (balancerPid !== -1 && alive(balancerPid)) process.kill(balancerPid, 'SIGKILL')
      })
      const exited = once(npm, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
      await waitFor(() => /"msg":"listening"/.test(out), 30_000, `the balancer to listen:\n${out}`)
      const line = out.split('\n').find((l) => l.includes('"msg":"listening"')) as string
      const { pid, address } = JSON.parse(line) as { pid: number, address: string }
      balancerPid = pid
      const port = Number(address.slice(address.lastIndexOf(':') + 1))
      assert.notEqual(pid, npm.pid, 'npm runs the balancer as a child')
      assert.equal((await httpRequest(port, { path: '/before' })).status, 200)

      npm.kill('SIGTERM')
      const [code] = await exited
      await waitFor(() => !alive(pid), 20_000, `the balancer (pid ${pid}) to exit after npm got SIGTERM`)
      assert.equal(code, 0, out)
      assert.match(out, /"msg":"draining/)
      const refused = await new Promise<boolean>((resolve) => {
        const probe = net.connect(port, '127.0.0.1')
        probe.once('connect', () => { probe.destroy(); resolve(false) })
        probe.once('error', () => resolve(true))
      })
      assert.ok(refused, 'the port is closed')
    })
  })
}
