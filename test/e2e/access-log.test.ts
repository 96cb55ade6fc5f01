/**
 * The access log end to end, through the real CLI in both modes: no line of a
 * request that got a response is lost at shutdown (100 requests then SIGTERM
 * -> 100 lines, before timeouts.drainMs), every key of a line, level names on
 * every line, log.redactQuery, log.accessFile and its reopening on SIGUSR1;
 * under load from many connections (both workers), every stdout line whole
 * and each connection's lines in the order of its requests (one writer,
 * src/log-ring.ts).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as http from 'node:http'
import { mkdtempSync, writeFileSync, readFileSync, renameSync, existsSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MODES, spawnLb, startLb } from './harness'
import { startEchoUpstream, waitFor, httpRequest } from '../helpers'
import { makeTestCa } from '../tls-fixtures'
import { TlsClient } from './tls-client'

const DRAIN_MS = 4000

function configFile (dir: string, upstream: string, workers: number, log: Record<string, unknown>): string {
  const file = join(dir, 'lb.json')
  writeFileSync(file, JSON.stringify({
    listen: '127.0.0.1:0',
    workers,
    upstreams: [{ address: upstream }],
    timeouts: { drainMs: DRAIN_MS },
    log: { level: 'info', ...log },
  }))
  return file
}

function jsonLines (text: string): Array<Record<string, unknown>> {
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
}

async function get (port: number, path: string, agent: http.Agent | false, headers: Record<string, string> = {}): Promise<number> {
  return await new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent, headers }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end()
  })
}

for (const mode of MODES) {
  test(`${mode.name}: 100 requests in flight at SIGTERM -> 100 responses and 100 access-log lines, within drainMs, level names on every line`, async () => {
    // every request is still waiting for its upstream when the signal comes: its line is written while draining
    const up = await startEchoUpstream('slow', (_req, res) => {
      setTimeout(() => { res.writeHead(200, { 'content-length': '2' }); res.end('ok') }, 300)
      return true
    })
    const dir = mkdtempSync(join(tmpdir(), 'swy-access-'))
    const lb = await spawnLb(['--config', configFile(dir, up.address, mode.workers, {})])
    const agent = new http.Agent({ keepAlive: true, maxSockets: 100 })
    try {
      const responses = Promise.all(Array.from({ length: 100 }, async (_, i) => await get(lb.port, `/r/${i}`, agent)))
      await waitFor(() => up.count === 100, 10_000, 'all 100 requests at the upstream')
      const signalledAt = Date.now()
      const exited = lb.stop()
      assert.deepEqual(new Set(await responses), new Set([200]))
      const code = await exited
      const tookMs = Date.now() - signalledAt
      assert.equal(code, 0, lb.output())
      assert.ok(tookMs < DRAIN_MS, `exited ${tookMs} ms after SIGTERM (drainMs ${DRAIN_MS})`)
      const lines = jsonLines(lb.output())
      const access = lines.filter((l) => l.type === 'access')
      assert.equal(access.length, 100, `access lines after SIGTERM:\n${lb.output().slice(-2000)}`)
      assert.deepEqual(new Set(access.map((l) => l.path)).size, 100)
      for (const line of lines) assert.equal(typeof line.level, 'string', `level as a name: ${JSON.stringify(line)}`)
      assert.ok(lines.some((l) => l.level === 'info' && l.msg === 'stopped'))
    } finally {
      agent.destroy()
      if (lb.child.exitCode === null) lb.child.kill('SIGKILL')
      await up.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test(`${mode.name}: access-log keys, log.redactQuery, log.accessFile reopened on SIGUSR1`, async () => {
    const up = await startEchoUpstream()
    const dir = mkdtempSync(join(tmpdir(), 'swy-access-'))
    const file = join(dir, 'access.log')
    const lb = await spawnLb(['--config', configFile(dir, up.address, mode.workers, { accessFile: file, redactQuery: true })])
    try {
      assert.equal(await get(lb.port, '/a/b?token=secret', false, { 'user-agent': 'tester/1.0 "q"', referer: 'http://ref.example/x' }), 200)
      await waitFor(() => existsSync(file) && readFileSync(file, 'utf8').includes('\n'), 5000, 'the line in log.accessFile')
      const [line] = jsonLines(readFileSync(file, 'utf8'))
      assert.equal(line.level, 'info')
      assert.equal(line.type, 'access')
      assert.equal(typeof line.time, 'string')
      assert.ok(Math.abs(Date.parse(line.time as string) - Date.now()) < 10_000)
      assert.equal(line.method, 'GET')
      assert.equal(line.path, '/a/b', 'query string dropped')
      assert.equal(line.status, 200)
      assert.equal(line.upstream, up.address)
      assert.equal(line.client, '127.0.0.1')
      assert.equal(line.host, `127.0.0.1:${lb.port}`)
      assert.equal(line.userAgent, 'tester/1.0 "q"')
      assert.equal(line.referer, 'http://ref.example/x')
      assert.equal(line.httpVersion, '1.1')
      assert.equal(line.flag, '-')
      assert.ok((line.bytes as number) > 0)
      const head = `GET /a/b?token=secret HTTP/1.1\r\nuser-agent: tester/1.0 "q"\r\nreferer: http://ref.example/x\r\nHost: 127.0.0.1:${lb.port}\r\nConnection: close\r\n\r\n`
      assert.equal(line.bytesIn, Buffer.byteLength(head))
      assert.equal(typeof line.upstreamMs, 'number')
      assert.ok((line.upstreamMs as number) >= 0 && (line.upstreamMs as number) <= (line.durationMs as number))
      assert.equal(lb.output().includes('"type":"access"'), false, 'nothing on stdout')

      // logrotate: move the file away, SIGUSR1, the next line goes to a new file at the path
      renameSync(file, `${file}.1`)
      lb.child.kill('SIGUSR1')
      await waitFor(async () => {
        await get(lb.port, '/after-rotate', false) // a request that reaches a thread after it reopened lands in the new file
        return existsSync(file) && readFileSync(file, 'utf8').includes('/after-rotate')
      }, 5000, 'a line in the reopened file')
      assert.equal(await lb.stop(), 0)
      const rotated = jsonLines(readFileSync(`${file}.1`, 'utf8'))
      assert.equal(rotated[0].path, '/a/b')
      // a missing Host, User-Agent, Referer: null, every key still there
      const fresh = jsonLines(readFileSync(file, 'utf8'))
      assert.ok(fresh.every((l) => l.path === '/after-rotate' && l.referer === null))
    } finally {
      if (lb.child.exitCode === null) lb.child.kill('SIGKILL')
      await up.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test(`${mode.name}: "tls" says which listener a request came in on`, async () => {
    const ca = makeTestCa()
    const leaf = ca.leaf('a', ['localhost'])
    const up = await startEchoUpstream()
    const dir = mkdtempSync(join(tmpdir(), 'swy-access-'))
    const file = join(dir, 'access.log')
    const run = await startLb({
      listen: [{ address: '127.0.0.1:0', tls: { certificates: [{ certFile: leaf.certFile, keyFile: leaf.keyFile }] } }, { address: '127.0.0.1:0' }],
      upstreams: [{ address: up.address }],
      log: { level: 'info', access: true, accessFile: file },
    }, mode.workers)
    try {
      const c = await TlsClient.connect(run.port, { ca: ca.ca, servername: 'localhost' })
      assert.equal((await c.request('GET', '/over-tls')).status, 200)
      c.close()
      assert.equal((await httpRequest(run.lb.addresses[1].port, { path: '/plain' })).status, 200)
      await waitFor(() => existsSync(file) && readFileSync(file, 'utf8').split('\n').length > 2, 5000, 'both lines')
      const lines = jsonLines(readFileSync(file, 'utf8'))
      assert.equal(lines.find((l) => l.path === '/over-tls')?.tls, true)
      assert.equal(lines.find((l) => l.path === '/plain')?.tls, false)
    } finally {
      await run.stop()
      await up.close()
      ca.remove()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test(`${mode.name}: 16 keep-alive clients × 150 requests, then SIGTERM: every stdout line whole JSON, each connection's lines in request order, none lost`, async () => {
    // worker mode: the connections spread over both workers, whose lines reach stdout through the primary
    const up = await startEchoUpstream()
    const dir = mkdtempSync(join(tmpdir(), 'swy-access-'))
    const lb = await spawnLb(['--config', configFile(dir, up.address, mode.workers, {})])
    const CLIENTS = 16
    const REQUESTS = 150
    try {
      await Promise.all(Array.from({ length: CLIENTS }, async (_, c) => {
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 }) // one connection: one thread, requests in turn
        try {
          for (let i = 0; i < REQUESTS; i++) assert.equal(await get(lb.port, `/c/${c}/${i}?${'q'.repeat((c * 131 + i * 17) % 700)}`, agent), 200)
        } finally {
          agent.destroy()
        }
      }))
      assert.equal(await lb.stop(), 0)
      const text = lb.output()
      const lines = text.split('\n').filter((l) => l !== '')
      for (const l of lines) assert.doesNotThrow(() => JSON.parse(l), `a line that is not whole JSON: ${l.slice(0, 300)}`)
      const access = jsonLines(text).filter((l) => l.type === 'access')
      assert.equal(access.length, CLIENTS * REQUESTS)
      const threads = new Set(access.map((l) => l.thread))
      if (mode.workers > 1) assert.equal(threads.size, 2, `lines from both workers: ${[...threads].join(', ')}`)
      for (let c = 0; c < CLIENTS; c++) {
        const order = access.map((l) => String(l.path)).filter((p) => p.startsWith(`/c/${c}/`)).map((p) => Number(p.split('/')[3].split('?')[0]))
        assert.deepEqual(order, Array.from({ length: REQUESTS }, (_, i) => i), `connection ${c}'s lines in order`)
      }
    } finally {
      if (lb.child.exitCode === null) lb.child.kill('SIGKILL')
      await up.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
}
