/**
 * Issue #16 end to end, in both modes: Age as a list and on two lines, a 304
 * merged into the stored response (visible now and on the next hit),
 * CDN-Cache-Control and our own targeted field, If-Modified-Since in rfc850
 * form, Cache-Status (RFC 9211) on every kind of answer.
 *
 * Each case is reproduced from the RFC text (the public cache-tests suite
 * stays outside the project). The upstream is cache-origin.ts: a handler per
 * path, requests counted per path.
 */
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import type * as http from 'node:http'
import { MODES, startLb, type RunningLb } from './harness'
import { Origin, send, fixed } from './cache-origin'
import { frame, values } from './wire'
import { httpRequest, rawExchange, startRawServer } from '../helpers'

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday']
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']

/** An rfc850-date (RFC 9110 §5.6.7, obsolete): `Sunday, 06-Nov-94 08:49:37 GMT`. */
function rfc850 (ms: number): string {
  const d = new Date(ms)
  const two = (n: number): string => String(n).padStart(2, '0')
  return `${DAYS[d.getUTCDay()]}, ${two(d.getUTCDate())}-${MONTHS[d.getUTCMonth()]}-${two(d.getUTCFullYear() % 100)} ` +
    `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} GMT`
}

for (const mode of MODES) {
  describe(`cache conformance (${mode.name})`, () => {
    const origin = new Origin()
    let run: RunningLb

    before(async () => {
      await origin.listen()
      run = await startLb({
        upstreams: [{ address: origin.address }],
        cache: { maxBytes: 4 * 1024 * 1024, targetedField: 'Switchyard-Cache-Control' },
      }, mode.workers)
    })

    after(async () => {
      await run?.stop()
      await origin.close()
    })

    async function get (path: string, headers: http.OutgoingHttpHeaders = {}, method = 'GET'): Promise<{ status: number, headers: http.IncomingHttpHeaders, body: string }> {
      return await httpRequest(run.port, { path, headers, method, body: method === 'POST' ? 'x' : undefined })
    }

    describe('Age as a list or on several lines (RFC 9111 §5.1, RFC 9110 §5.3)', () => {
      const cases: Array<{ name: string, age: string | string[], hit: boolean }> = [
        { name: 'Age: 7200, 0 on max-age=3600 is stale (the first value)', age: '7200, 0', hit: false },
        { name: 'two Age lines 7200 and 0: stale', age: ['7200', '0'], hit: false },
        { name: 'Age: 7200;foo=bar is invalid, never fresh', age: '7200;foo=bar', hit: false },
        { name: 'two Age lines 0 and 7200: the first, fresh (control)', age: ['0', '7200'], hit: true },
      ]
      cases.forEach((c, i) => {
        test(c.name, async () => {
          const path = `/age/${i}`
          origin.route(path, (_req, res) => { res.setHeader('age', c.age); send(res, 200, { 'cache-control': 'max-age=3600' }, `age ${origin.count(path)}\n`) })
          const first = await get(path)
          assert.equal(first.status, 200)
          const second = await get(path)
          assert.equal(second.headers['x-cache'], c.hit ? 'HIT' : 'MISS')
          assert.equal(origin.count(path), c.hit ? 1 : 2)
          assert.equal(second.body, c.hit ? 'age 1\n' : 'age 2\n')
        })
      })
    })

    test('a 304 updates the stored headers for this client and for the next hit (RFC 9111 §4.3.4)', async () => {
      const path = '/merge/a'
      origin.route(path, (req, res) => {
        if (req.headers['if-none-match'] === '"m1"') {
          send(res, 304, { etag: '"m1"', 'cache-control': 'max-age=3600', 'x-custom': 'new', 'content-type': 'text/html', expires: 'Thu, 01 Jan 2099 00:00:00 GMT' }, '')
          return
        }
        send(res, 200, { etag: '"m1"', 'cache-control': 'max-age=600', 'x-custom': 'old' }, 'merge body\n')
      })
      assert.equal((await get(path)).headers['x-cache'], 'MISS')
      // the client asks for revalidation (RFC 9111 §5.2.1.4): our validator goes upstream, a 304 comes back
      const now = await get(path, { 'cache-control': 'no-cache' })
      assert.equal(now.headers['x-cache'], 'REVALIDATED')
      assert.equal(origin.seen(path)[1].headers['if-none-match'], '"m1"')
      for (const [which, reply] of [['the revalidating client', now], ['the next hit', await get(path)]] as const) {
        assert.equal(reply.body, 'merge body\n', which)
        assert.equal(reply.headers['x-custom'], 'new', which)
        assert.equal(reply.headers['cache-control'], 'max-age=3600', which)
        assert.equal(reply.headers['content-type'], 'text/html', which)
        assert.equal(reply.headers.expires, 'Thu, 01 Jan 2099 00:00:00 GMT', which)
        assert.equal(reply.headers['content-length'], '11', `${which}: Content-Length is the stored body's (§3.2)`)
      }
      assert.equal(origin.count(path), 2)
    })

    test('a 304 that shortens the lifetime is obeyed on the next request (max-age=1 after the merge)', async () => {
      const path = '/merge/short'
      origin.route(path, (req, res) => {
        if (req.headers['if-none-match'] === '"s1"') { send(res, 304, { etag: '"s1"', 'cache-control': 'max-age=1' }, ''); return }
        send(res, 200, { etag: '"s1"', 'cache-control': 'max-age=3600' }, 'short\n')
      })
      await get(path)
      const revalidated = await get(path, { 'cache-control': 'no-cache' })
      const mergedAt = Date.now()
      assert.equal(revalidated.headers['cache-control'], 'max-age=1')
      // time passing: the merged max-age=1, not the stored hour
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, mergedAt + 1100 - Date.now())))
      const later = await get(path)
      assert.equal(later.headers['x-cache'], 'REVALIDATED', 'stale after 1 s: revalidated, not a HIT for an hour')
      assert.equal(origin.count(path), 3)
    })

    describe('targeted fields (RFC 9213)', () => {
      const cases: Array<{ name: string, headers: http.OutgoingHttpHeaders, hit: boolean }> = [
        { name: '§2.1 CDN-Cache-Control: max-age=60 over Cache-Control: no-store', headers: { 'cache-control': 'no-store', 'cdn-cache-control': 'max-age=60' }, hit: true },
        { name: '§2.1 CDN-Cache-Control: no-store over Cache-Control: max-age=60', headers: { 'cache-control': 'max-age=60', 'cdn-cache-control': 'no-store' }, hit: false },
        { name: '§2.1 CDN-Cache-Control: private', headers: { 'cache-control': 'public, max-age=60', 'cdn-cache-control': 'private' }, hit: false },
        { name: '§2.1 an invalid CDN-Cache-Control is ignored', headers: { 'cache-control': 'no-store', 'cdn-cache-control': 'max-age=60,,' }, hit: false },
        { name: '§2 the configured Switchyard-Cache-Control over CDN-Cache-Control', headers: { 'cdn-cache-control': 'no-store', 'switchyard-cache-control': 'max-age=60' }, hit: true },
      ]
      cases.forEach((c, i) => {
        test(c.name, async () => {
          const path = `/cdn/${i}`
          origin.route(path, (_req, res) => send(res, 200, c.headers, 'cdn\n'))
          const first = await get(path)
          const second = await get(path)
          assert.equal(second.headers['x-cache'], c.hit ? 'HIT' : 'MISS')
          assert.equal(origin.count(path), c.hit ? 1 : 2)
          // passed downstream unchanged, on the relayed response and on the hit
          for (const reply of [first, second]) {
            for (const name of ['cdn-cache-control', 'switchyard-cache-control', 'cache-control']) {
              assert.equal(reply.headers[name], c.headers[name], name)
            }
          }
        })
      })
    })

    test('If-Modified-Since as an rfc850 date is read with the 50-year rule: 304 from the cache (RFC 9110 §5.6.7, §13.1.3)', async () => {
      const path = '/ims/rfc850'
      const modified = Date.now() - 3600_000
      origin.route(path, (_req, res) => send(res, 200, { 'cache-control': 'max-age=600', 'last-modified': new Date(modified).toUTCString() }, 'ims\n'))
      assert.equal((await get(path)).status, 200)
      const since = rfc850(Date.now())
      const reply = await get(path, { 'if-modified-since': since })
      assert.equal(reply.status, 304, `If-Modified-Since: ${since}`)
      assert.equal(reply.headers['x-cache'], 'HIT')
      const older = await get(path, { 'if-modified-since': rfc850(modified - 86400_000) })
      assert.equal(older.status, 200, 'modified after the date: the full response')
      assert.equal(origin.count(path), 1)
    })

    describe('Cache-Status (RFC 9211)', () => {
      test('§2.2 a stored miss, §2.1 a hit with ttl, §2.2 fwd=request with fwd-status 304', async () => {
        const path = '/status/a'
        origin.route(path, (req, res) => {
          if (req.headers['if-none-match'] === '"c1"') { send(res, 304, { etag: '"c1"', 'cache-control': 'max-age=600' }, ''); return }
          send(res, 200, { etag: '"c1"', 'cache-control': 'max-age=600' }, 'status\n')
        })
        const miss = await get(path)
        assert.equal(miss.headers['cache-status'], 'switchyard; fwd=uri-miss; fwd-status=200; stored')
        assert.equal(miss.headers['x-cache'], 'MISS')
        const hit = await get(path)
        assert.match(String(hit.headers['cache-status']), /^switchyard; hit; ttl=\d+$/)
        const revalidated = await get(path, { 'cache-control': 'no-cache' })
        assert.match(String(revalidated.headers['cache-status']), /^switchyard; fwd=stale; fwd-status=304; ttl=\d+; stored$/)
      })

      const cases: Array<{ name: string, path: string, method?: string, request?: http.OutgoingHttpHeaders, response: http.OutgoingHttpHeaders, want: string }> = [
        { name: '§2.2 fwd=method for POST', path: '/status/post', method: 'POST', response: {}, want: 'switchyard; fwd=method; fwd-status=200' },
        { name: '§2.2 fwd=bypass for a request with Authorization', path: '/status/auth', request: { authorization: 'Bearer x' }, response: { 'cache-control': 'max-age=60' }, want: 'switchyard; fwd=bypass; fwd-status=200' },
        { name: '§2.2 fwd=uri-miss without stored for no-store', path: '/status/no-store', response: { 'cache-control': 'no-store' }, want: 'switchyard; fwd=uri-miss; fwd-status=200' },
      ]
      for (const c of cases) {
        test(c.name, async () => {
          origin.route(c.path, (_req, res) => send(res, 200, c.response, 'x\n'))
          const reply = await get(c.path, c.request, c.method)
          assert.equal(reply.headers['cache-status'], c.want)
        })
      }

      test('§2.2 fwd=miss for a URL known uncacheable; only-if-cached with nothing stored', async () => {
        const path = '/status/pass'
        origin.route(path, (_req, res) => send(res, 200, { 'cache-control': 'no-store' }, 'x\n'))
        await get(path)
        // hit-for-pass is per thread: with workers the second request may land on the other one
        const second = await get(path)
        assert.match(String(second.headers['cache-status']), /^switchyard; fwd=(miss|uri-miss); fwd-status=200$/)
        const onlyIfCached = await get('/status/never-stored', { 'cache-control': 'only-if-cached' })
        assert.equal(onlyIfCached.status, 504)
        assert.equal(onlyIfCached.headers['cache-status'], 'switchyard; fwd=miss; detail=only-if-cached')
      })

      test('§5.2.1.7 only-if-cached with a stale entry: a 504, not a revalidation upstream', async () => {
        const path = '/status/only-if-cached-stale'
        // stored stale: its age is its whole freshness lifetime; it has a validator, so a revalidation would be possible
        origin.route(path, (_req, res) => { res.setHeader('age', '3600'); send(res, 200, { 'cache-control': 'max-age=3600', etag: '"s1"' }, 'stale body\n') })
        assert.equal((await get(path)).status, 200)
        const refused = await get(path, { 'cache-control': 'only-if-cached' })
        assert.equal(refused.status, 504)
        assert.equal(refused.headers['cache-status'], 'switchyard; fwd=miss; detail=only-if-cached')
        assert.equal(origin.count(path), 1, 'only-if-cached never reaches the upstream')
        // without the directive the same request revalidates (the entry was stored, and is stale)
        const revalidated = await get(path)
        assert.equal(revalidated.status, 200)
        assert.equal(origin.seen(path)[1].headers['if-none-match'], '"s1"')
      })

      test('§5.2.1.2 max-stale: a stale entry within it is a stale hit; beyond it, or with must-revalidate, max-age or min-fresh, it goes upstream', async () => {
        const path = '/status/max-stale'
        // stored 100 s stale (Age 3700 on max-age 3600), with a validator
        origin.route(path, (_req, res) => { res.setHeader('age', '3700'); send(res, 200, { 'cache-control': 'max-age=3600', etag: '"m1"' }, 'old body\n') })
        assert.equal((await get(path)).status, 200)
        for (const accepted of ['max-stale', 'max-stale=200', 'max-stale=150', 'max-stale=200, max-age=4000', 'max-stale, only-if-cached']) {
          const stale = await get(path, { 'cache-control': accepted })
          assert.equal(stale.status, 200, accepted)
          assert.equal(stale.body, 'old body\n', accepted)
          assert.equal(stale.headers['x-cache'], 'STALE', accepted)
          assert.match(String(stale.headers['cache-status']), /^switchyard; hit; ttl=-10\d; detail=max-stale$/, accepted)
          assert.ok(Number(stale.headers.age) >= 3700, `${accepted}: Age ${String(stale.headers.age)}`)
        }
        assert.equal(origin.count(path), 1, 'every stale hit answered without the upstream')
        // the client's own validator still gets a 304 from the stale entry it accepts
        const conditional = await get(path, { 'cache-control': 'max-stale', 'if-none-match': '"m1"' })
        assert.equal(conditional.status, 304)
        assert.equal(origin.count(path), 1)
        for (const refused of ['max-stale=60', 'max-stale, max-age=3650', 'max-stale, min-fresh=1']) {
          const before = origin.count(path)
          const reply = await get(path, { 'cache-control': refused })
          assert.equal(reply.status, 200, refused)
          assert.equal(origin.count(path), before + 1, `${refused}: revalidated upstream`)
          assert.equal(origin.seen(path)[before].headers['if-none-match'], '"m1"', refused)
        }
      })

      test('§4.2.4 max-stale never serves what must-revalidate, no-cache or s-maxage forbid to serve stale', async () => {
        for (const [name, cacheControl] of [['must-revalidate', 'max-age=3600, must-revalidate'], ['no-cache', 'max-age=3600, no-cache'], ['s-maxage', 's-maxage=3600']]) {
          const path = `/status/max-stale-forbidden-${name}`
          origin.route(path, (_req, res) => { res.setHeader('age', '3700'); send(res, 200, { 'cache-control': cacheControl, etag: '"f1"' }, 'x\n') })
          assert.equal((await get(path)).status, 200)
          const reply = await get(path, { 'cache-control': 'max-stale' })
          assert.equal(reply.status, 200)
          assert.notEqual(reply.headers['x-cache'], 'STALE', name)
          assert.equal(origin.count(path), 2, `${name}: revalidated upstream`)
        }
      })

      test('RFC 9110 §8.6 a 204 that arrived with Content-Length is stored and replayed without it', async () => {
        const upstream = await startRawServer((socket) => {
          socket.on('data', () => socket.write('HTTP/1.1 204 No Content\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\n'))
        })
        const own = await startLb({ upstreams: [{ address: upstream.address }], cache: { maxBytes: 1024 * 1024 } }, mode.workers)
        try {
          const request = 'GET /no-content HTTP/1.1\r\nHost: a.test\r\n\r\n'
          const ends = (b: Buffer): boolean => b.toString('latin1').includes('\r\n\r\n')
          const relayed = await rawExchange(own.port, request, { until: ends, timeoutMs: 5000 })
          const hit = await rawExchange(own.port, request, { until: ends, timeoutMs: 5000 })
          for (const [name, r] of [['relayed', relayed], ['hit', hit]] as const) {
            const m = frame(r.data, { response: true, noBody: true })
            assert.ok(m !== null && typeof m !== 'string', `${name}: ${JSON.stringify(r.text)}`)
            assert.equal(m.message.status, 204, name)
            assert.deepEqual(values(m.message.fields, 'content-length'), [], `${name}: ${JSON.stringify(r.text)}`)
          }
          assert.match(hit.text, /\r\nX-Cache: HIT\r\n/)
          assert.equal(upstream.count, 1)
        } finally {
          await own.stop()
          await upstream.close()
        }
      })

      test('§5.2.1.7 a HEAD with only-if-cached and nothing stored: the 504 has no body, and the next response on the connection follows cleanly', async () => {
        origin.route('/status/after-head', fixed({ 'cache-control': 'no-store' }, 'second\n'))
        const r = await rawExchange(run.port,
          'HEAD /status/head-never-stored HTTP/1.1\r\nHost: a.test\r\nCache-Control: only-if-cached\r\n\r\n' +
          'GET /status/after-head HTTP/1.1\r\nHost: a.test\r\n\r\n',
          { until: (b) => b.includes('second\n'), timeoutMs: 5000 })
        const first = frame(r.data, { response: true, noBody: true })
        assert.ok(first !== null && typeof first !== 'string', `no first response in ${JSON.stringify(r.text)}`)
        assert.equal(first.message.status, 504)
        assert.equal(values(first.message.fields, 'content-length')[0], String('504 Gateway Timeout: not in the cache\n'.length), 'the HEAD answer announces the GET body length')
        const rest = r.data.subarray(first.length)
        assert.ok(rest.toString('latin1').startsWith('HTTP/1.1 200 '), `the bytes after the HEAD answer: ${JSON.stringify(rest.toString('latin1').slice(0, 120))}`)
        const second = frame(rest, { response: true })
        assert.ok(second !== null && typeof second !== 'string')
        assert.equal(second.message.body.toString(), 'second\n')
        assert.equal(second.length, rest.length, 'nothing after the second response')
        assert.equal(origin.count('/status/head-never-stored'), 0, 'only-if-cached never reaches the upstream')
      })
    })
  })
}
