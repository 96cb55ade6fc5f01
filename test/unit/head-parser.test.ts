/**
 * HeadParser: valid requests and responses, every rejection RFC 9112 asks
 * for, limits, pipelining. Every case runs whole, byte by byte and split in
 * two at every position (sameAllWays), and all ways must agree exactly.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import {
  HeadParser, HEAD_ERROR, HEAD_INCOMPLETE, KIND_REQUEST, KIND_RESPONSE,
  BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE, type HeadLimits,
} from '../../src/http/head-parser'
import { ChunkedScanner, CHUNKED_ERROR, CHUNKED_MORE } from '../../src/http/chunked'
import { H_HOST, H_OTHER, H_REFERER, H_USER_AGENT, classifyName } from '../../src/http/header-names'
import { describe as errorInfo, type ErrorCode } from '../../src/errors'
import {
  sameAllWays, bytes, show, DEFAULT_LIMITS, REQUEST_REJECTS, deepEqual, singleCuts, type HeadSnapshot, type Cuts,
} from './parser-cases'

interface ValidCase {
  name: string
  text: string
  expect: Partial<HeadSnapshot>
  kind?: number
  noBodyExpected?: boolean
  limits?: HeadLimits
}

const H = 'Host: example.com\r\n'

function headEnd (text: string): number { return text.indexOf('\r\n\r\n', text.search(/[^\r\n]/)) + 4 }

function runValid (c: ValidCase): void {
  const msg = bytes(c.text)
  const r = sameAllWays(c.kind ?? KIND_REQUEST, msg, { noBodyExpected: c.noBodyExpected, limits: c.limits })
  assert.equal(r.head.outcome, 'complete', `${c.name}: ${r.head.error ?? ''} ${r.head.errorDetail}`)
  assert.equal(r.head.end, headEnd(c.text), `${c.name}: head end`)
  for (const [key, want] of Object.entries(c.expect)) {
    assert.deepEqual(r.head[key as keyof HeadSnapshot], want, `${c.name}: ${key}`)
  }
}

function runReject (name: string, text: string, code: ErrorCode | null, status: number | null, kind = KIND_REQUEST, limits?: HeadLimits, noBodyExpected?: boolean): void {
  const msg = bytes(text)
  const r = sameAllWays(kind, msg, { limits, noBodyExpected, extraCuts: limits === undefined ? [] : [limits.maxHeaderBytes] })
  assert.equal(r.head.outcome, 'error', `${name}: expected an error for ${show(msg).slice(0, 200)}`)
  assert.notEqual(r.head.error, null)
  if (code !== null) assert.equal(r.head.error, code, `${name}: ${r.head.errorDetail}`)
  if (status !== null) assert.equal(errorInfo(r.head.error as ErrorCode).status, status, `${name}: status`)
}

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE', 'PURGE', 'M-SEARCH', 'get', "X!#$%&'*+-.^_`|~Y"]

const VALID_REQUESTS: ValidCase[] = [
  ...METHODS.map((m): ValidCase => ({ name: `method ${m}`, text: `${m} / HTTP/1.1\r\n${H}\r\n`, expect: { method: m, target: '/', versionMinor: 1, bodyKind: BODY_NONE, keepAlive: true } })),
  { name: 'origin-form with query', text: `GET /a/b?c=d&e=%20f HTTP/1.1\r\n${H}\r\n`, expect: { target: '/a/b?c=d&e=%20f' } },
  { name: 'origin-form with every visible byte', text: `GET /!"$&'()*+,-.:;<=>@[\\]^_\`{|}~%? HTTP/1.1\r\n${H}\r\n`, expect: { target: '/!"$&\'()*+,-.:;<=>@[\\]^_`{|}~%?' } },
  { name: 'absolute-form', text: `GET http://example.com:8080/x?y HTTP/1.1\r\n${H}\r\n`, expect: { target: 'http://example.com:8080/x?y' } },
  { name: 'absolute-form https, upper case scheme', text: `GET HTTPS://EXAMPLE.COM/ HTTP/1.1\r\n${H}\r\n`, expect: { target: 'HTTPS://EXAMPLE.COM/' } },
  { name: 'asterisk-form', text: `OPTIONS * HTTP/1.1\r\n${H}\r\n`, expect: { method: 'OPTIONS', target: '*' } },
  { name: 'absolute-form without a path', text: `GET http://example.com HTTP/1.1\r\n${H}\r\n`, expect: { target: 'http://example.com' } },
  { name: 'absolute-form with a query and no path', text: `GET http://example.com:80?q HTTP/1.1\r\n${H}\r\n`, expect: { target: 'http://example.com:80?q' } },
  { name: 'absolute-form with IP-literal and sub-delims', text: `GET https://[::1]:8443/a HTTP/1.1\r\n${H}\r\n`, expect: { target: 'https://[::1]:8443/a' } },
  { name: 'absolute-form with pct-encoded reg-name', text: `GET http://ex%41mple!$&'()*+,;=.com/ HTTP/1.1\r\n${H}\r\n`, expect: { target: "http://ex%41mple!$&'()*+,;=.com/" } },
  // persistence (RFC 9112 §9.3)
  { name: 'HTTP/1.0 without Host, closes', text: 'GET / HTTP/1.0\r\n\r\n', expect: { versionMinor: 0, keepAlive: false, hostCount: 0, headers: [] } },
  { name: 'HTTP/1.2 is taken as 1.1 (RFC 9112 §2.3): Host required, persistent', text: `GET / HTTP/1.2\r\n${H}\r\n`, expect: { versionMinor: 1, keepAlive: true } },
  { name: 'HTTP/1.9 with chunked, as 1.1', text: `POST / HTTP/1.9\r\n${H}Transfer-Encoding: chunked\r\n\r\n`, expect: { versionMinor: 1, bodyKind: BODY_CHUNKED } },
  { name: 'HTTP/1.0 keep-alive', text: 'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n', expect: { keepAlive: true, connectionKeepAlive: true } },
  { name: 'HTTP/1.0 Keep-Alive, mixed case', text: 'GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n', expect: { keepAlive: true } },
  { name: 'HTTP/1.0 keep-alive and close', text: 'GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n', expect: { keepAlive: false, connectionClose: true } },
  { name: 'HTTP/1.0 with Host and CL body', text: 'POST / HTTP/1.0\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc', expect: { keepAlive: false, bodyKind: BODY_LENGTH, contentLength: 3 } },
  { name: 'HTTP/1.1 persists by default', text: `GET / HTTP/1.1\r\n${H}\r\n`, expect: { keepAlive: true, connectionClose: false } },
  { name: 'HTTP/1.1 close', text: `GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`, expect: { keepAlive: false, connectionClose: true } },
  { name: '16 Connection options, and close, keep-alive, upgrade besides', text: `GET / HTTP/1.1\r\n${H}Connection: close, keep-alive, upgrade, ${Array.from({ length: 16 }, (_, i) => `x-${i}`).join(', ')}\r\n\r\n`, expect: { keepAlive: false, connectionTokens: Array.from({ length: 16 }, (_, i) => `x-${i}`) } },
  { name: 'HTTP/1.1 CLOSE in a second Connection field', text: `GET / HTTP/1.1\r\n${H}Connection: x-a\r\nConnection: CLOSE\r\n\r\n`, expect: { keepAlive: false, connectionTokens: ['x-a'] } },
  // fields (RFC 9112 §5, RFC 9110 §5.5)
  {
    name: 'OWS trimmed, inner whitespace kept',
    text: `GET / HTTP/1.1\r\n${H}X-A:   a b  \t\r\nX-B:\tc\r\nX-C:d\r\n\r\n`,
    expect: { headers: [['Host', 'example.com'], ['X-A', 'a b'], ['X-B', 'c'], ['X-C', 'd']] },
  },
  { name: 'empty values', text: `GET / HTTP/1.1\r\n${H}X-A:\r\nX-B:   \t \r\n\r\n`, expect: { headers: [['Host', 'example.com'], ['X-A', ''], ['X-B', '']] } },
  { name: 'obs-text and HTAB in values', text: `GET / HTTP/1.1\r\n${H}X-A: caf\xe9 \x80\xff\tz\r\n\r\n`, expect: { headers: [['Host', 'example.com'], ['X-A', 'caf\xe9 \x80\xff\tz']] } },
  { name: 'colons in a value', text: `GET / HTTP/1.1\r\n${H}X-A:: b:c:\r\n\r\n`, expect: { headers: [['Host', 'example.com'], ['X-A', ': b:c:']] } },
  { name: 'every tchar in a name', text: `GET / HTTP/1.1\r\n${H}!#$%&'*+-.^_\`|~09AZaz: v\r\n\r\n`, expect: { headers: [['Host', 'example.com'], ["!#$%&'*+-.^_`|~09AZaz", 'v']] } },
  {
    name: '100 fields (the default maximum)',
    text: `GET / HTTP/1.1\r\n${H}${Array.from({ length: 99 }, (_, i) => `X-${i}: ${i}\r\n`).join('')}\r\n`,
    expect: { headers: [['Host', 'example.com'], ...Array.from({ length: 99 }, (_, i): [string, string] => [`X-${i}`, String(i)])] },
  },
  // Host (RFC 9112 §3.2)
  { name: 'Host IP-literal with port', text: 'GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n', expect: { hostCount: 1, headers: [['Host', '[::1]:8080']] } },
  { name: 'empty Host', text: 'GET / HTTP/1.1\r\nHost:\r\n\r\n', expect: { hostCount: 1, headers: [['Host', '']] } },
  { name: 'Host in any case', text: 'GET / HTTP/1.1\r\nhOsT: a\r\n\r\n', expect: { hostCount: 1 } },
  { name: 'absolute-form with Host', text: 'GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n', expect: { hostCount: 1, target: 'http://a/' } },
  // Expect (RFC 9110 §10.1.1)
  { name: 'Expect: 100-continue', text: `POST / HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: 2\r\n\r\nab`, expect: { expectContinue: true, bodyKind: BODY_LENGTH } },
  { name: 'Expect: 100-CONTINUE', text: `POST / HTTP/1.1\r\n${H}Expect: 100-CONTINUE\r\n\r\n`, expect: { expectContinue: true } },
  { name: 'Expect in HTTP/1.0 is ignored', text: 'POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab', expect: { expectContinue: false } },
  { name: 'other expectations', text: `POST / HTTP/1.1\r\n${H}Expect: 100-continue-x\r\n\r\n`, expect: { expectContinue: false } },
  // Connection options (RFC 9110 §7.6.1)
  {
    name: 'Connection tokens',
    text: `GET / HTTP/1.1\r\n${H}Connection: keep-alive, X-Foo,  x-bar ,Upgrade,,\r\nUpgrade: websocket\r\nX-Foo: 1\r\n\r\n`,
    expect: { connectionTokens: ['X-Foo', 'x-bar'], connectionUpgrade: true, connectionKeepAlive: true, hasUpgrade: true, keepAlive: true },
  },
  // framing (RFC 9112 §6.3)
  { name: 'Content-Length 0', text: `POST / HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`, expect: { bodyKind: BODY_NONE, contentLength: 0 } },
  { name: 'Content-Length 10', text: `POST / HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\n0123456789`, expect: { bodyKind: BODY_LENGTH, contentLength: 10 } },
  { name: 'Content-Length with leading zeros', text: `POST / HTTP/1.1\r\n${H}Content-Length: 00000000000000000007\r\n\r\n1234567`, expect: { contentLength: 7 } },
  { name: 'Content-Length of 15 digits', text: `POST / HTTP/1.1\r\n${H}Content-Length: 999999999999999\r\n\r\n`, expect: { contentLength: 999_999_999_999_999 } },
  { name: 'Content-Length with OWS', text: `POST / HTTP/1.1\r\n${H}Content-Length:\t 3 \t\r\n\r\nabc`, expect: { contentLength: 3 } },
  {
    name: 'identical duplicate Content-Length: accepted, second one not forwarded',
    text: `POST / HTTP/1.1\r\n${H}Content-Length: 3\r\ncontent-length: 003\r\n\r\nabc`,
    expect: { contentLength: 3, bodyKind: BODY_LENGTH, skipped: [2] },
  },
  { name: 'chunked', text: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, expect: { bodyKind: BODY_CHUNKED, contentLength: -1 } },
  { name: 'Chunked in any case', text: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: Chunked\r\n\r\n0\r\n\r\n`, expect: { bodyKind: BODY_CHUNKED } },
  { name: 'empty list elements (RFC 9110 §5.6.1)', text: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: ,,chunked, \r\n\r\n0\r\n\r\n`, expect: { bodyKind: BODY_CHUNKED } },
  { name: 'absolute-form: the authority, and the path in origin-form', text: 'GET http://good.test:8080?q=1 HTTP/1.1\r\nHost: evil.test\r\n\r\n', expect: { target: 'http://good.test:8080?q=1' } },
  // RFC 9112 §2.2: empty lines before the request line
  { name: 'leading empty lines', text: `\r\n\r\nGET / HTTP/1.1\r\n${H}\r\n`, expect: { method: 'GET', target: '/' } },
]

describe('HeadParser: valid requests', () => {
  for (const c of VALID_REQUESTS) it(c.name, () => runValid(c))

  it('exposes fields by kind and name after a split head', () => {
    const text = `GET / HTTP/1.1\r\nX-One: 1\r\n${H}X-Two:  two \r\n\r\n`
    const msg = bytes(text)
    for (const cuts of [[], [5], [30], [msg.length - 1]] as Cuts[]) {
      const p = new HeadParser(KIND_REQUEST, DEFAULT_LIMITS)
      let from = 0
      let r = HEAD_INCOMPLETE
      for (const to of [...cuts, msg.length]) {
        r = p.execute(Buffer.from(msg.subarray(from, to)), 0, to - from)
        from = to
      }
      assert.ok(r >= 0)
      assert.equal(p.headerOfKind(H_HOST), 'example.com')
      assert.equal(p.header('x-two'), 'two')
      assert.equal(p.header('x-one'), '1')
      assert.equal(p.header('x-three'), null)
    }
  })

  it('classifies User-Agent and Referer for the access log; header() still finds them by name', () => {
    const p = new HeadParser(KIND_REQUEST, DEFAULT_LIMITS)
    const text = `GET / HTTP/1.1\r\n${H}USER-AGENT: ua/1\r\nreferer: https://r.example/\r\nX-Referer: x\r\nUser-Agents: y\r\nUser-Agent: ua/2\r\n\r\n`
    const msg = Buffer.from(text, 'latin1')
    assert.equal(p.execute(msg, 0, msg.length), msg.length)
    assert.deepEqual(Array.from(p.fieldKinds.subarray(0, p.headerCount)), [H_HOST, H_USER_AGENT, H_REFERER, H_OTHER, H_OTHER, H_USER_AGENT])
    assert.equal(p.header('user-agent'), 'ua/1, ua/2')
    assert.equal(p.header('referer'), 'https://r.example/')
    // named by the log alone: a config may still name the request ID's field so (config/load.ts)
    assert.equal(classifyName('user-agent'), H_OTHER)
    assert.equal(classifyName('referer'), H_OTHER)
  })

  it('reports started only once a byte of a head is taken', () => {
    const p = new HeadParser(KIND_REQUEST, DEFAULT_LIMITS)
    assert.equal(p.started, false)
    assert.equal(p.execute(bytes('GE'), 0, 2), HEAD_INCOMPLETE)
    assert.equal(p.started, true)
    p.reset()
    assert.equal(p.started, false)
  })
})

describe('HeadParser: rejected requests (whole, byte by byte, split everywhere)', () => {
  for (const c of REQUEST_REJECTS) it(c.name, () => runReject(c.name, c.text, c.code, c.status, c.kind, c.limits))
})

describe('HeadParser: limits', () => {
  function headOfLength (n: number, prefix = `GET / HTTP/1.1\r\n${H}`): string {
    const filler = n - prefix.length - 'X-Fill: \r\n\r\n'.length
    assert.ok(filler >= 0)
    return `${prefix}X-Fill: ${'f'.repeat(filler)}\r\n\r\n`
  }

  it('accepts a head of exactly maxHeaderBytes (16 KiB), final CRLF included', () => {
    const text = headOfLength(16_384)
    const r = sameAllWays(KIND_REQUEST, bytes(text), { extraCuts: [16_382, 16_383] })
    assert.equal(r.head.outcome, 'complete')
    assert.equal(r.head.end, 16_384)
  })

  it('rejects a head one byte over 16 KiB with 431', () => {
    runReject('16 KiB + 1', headOfLength(16_385), 'SWY_ERR_HEADERS_TOO_LARGE', 431, KIND_REQUEST, DEFAULT_LIMITS)
  })

  it('gives the same answer around the limit however the head is split', () => {
    const limits = { maxHeaderBytes: 1024, maxHeaderCount: 100, maxRequestTargetBytes: 512 }
    for (let n = 1021; n <= 1027; n++) {
      const r = sameAllWays(KIND_REQUEST, bytes(headOfLength(n)), { limits, maxSplits: 2000 })
      if (n <= 1024) assert.equal(r.head.outcome, 'complete', `length ${n}`)
      else assert.equal(r.head.error, 'SWY_ERR_HEADERS_TOO_LARGE', `length ${n}`)
    }
  })

  it('counts leading empty lines toward the limit', () => {
    const limits = { maxHeaderBytes: 1024, maxHeaderCount: 100, maxRequestTargetBytes: 512 }
    runReject('CRLF flood', '\r\n'.repeat(600) + `GET / HTTP/1.1\r\n${H}\r\n`, 'SWY_ERR_HEADERS_TOO_LARGE', 431, KIND_REQUEST, limits)
  })

  it('rejects a head that never ends with 431', () => {
    runReject('endless field', `GET / HTTP/1.1\r\n${H}X-A: ${'a'.repeat(20_000)}`, 'SWY_ERR_HEADERS_TOO_LARGE', 431, KIND_REQUEST, DEFAULT_LIMITS)
  })

  it('accepts a request target of exactly maxRequestTargetBytes and rejects one more with 414', () => {
    const ok = sameAllWays(KIND_REQUEST, bytes(`GET /${'t'.repeat(8191)} HTTP/1.1\r\n${H}\r\n`))
    assert.equal(ok.head.outcome, 'complete')
    assert.equal(ok.head.target?.length, 8192)
    runReject('target 8193', `GET /${'t'.repeat(8192)} HTTP/1.1\r\n${H}\r\n`, 'SWY_ERR_URI_TOO_LONG', 414, KIND_REQUEST, DEFAULT_LIMITS)
  })

  it('answers 414, not 431, when the target alone fills the head limit', () => {
    const limits = { maxHeaderBytes: 1024, maxHeaderCount: 100, maxRequestTargetBytes: 4096 }
    runReject('target over head limit', `GET /${'t'.repeat(2000)} HTTP/1.1\r\n${H}\r\n`, 'SWY_ERR_URI_TOO_LONG', 414, KIND_REQUEST, limits)
  })

  it('rejects one field over maxHeaderCount with 431', () => {
    const text = `GET / HTTP/1.1\r\n${H}${Array.from({ length: 100 }, (_, i) => `X-${i}: ${i}\r\n`).join('')}\r\n`
    runReject('101 fields', text, 'SWY_ERR_HEADERS_TOO_LARGE', 431)
  })
})

describe('HeadParser: refuses as soon as a head is certainly bad', () => {
  // unfinished heads: the verdict must not wait for the empty line (or for more bytes at all)
  const EARLY: Array<[string, string, ErrorCode]> = [
    ['Content-Length then Transfer-Encoding', `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n`, 'SWY_ERR_CL_AND_TE'],
    ['Transfer-Encoding then Content-Length', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n`, 'SWY_ERR_CL_AND_TE'],
    ['Transfer-Encoding in HTTP/1.0', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n', 'SWY_ERR_BAD_TRANSFER_ENCODING'],
    ['a coding after chunked', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n`, 'SWY_ERR_TE_NOT_IMPLEMENTED'],
    ['a coding other than chunked', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n`, 'SWY_ERR_TE_NOT_IMPLEMENTED'],
    ['a Transfer-Encoding outside the grammar', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: cow chunked, chunked\r\n`, 'SWY_ERR_BAD_TRANSFER_ENCODING'],
    ['a port that is not digits', 'GET http://a:8a/', 'SWY_ERR_BAD_REQUEST_LINE'],
    ['a version that cannot be HTTP/x.y', 'GET / HTTX', 'SWY_ERR_BAD_REQUEST_LINE'],
    ['a version too long', 'GET / HTTP/1.1x', 'SWY_ERR_BAD_REQUEST_LINE'],
    ['a target that is no form', 'GET x', 'SWY_ERR_BAD_REQUEST_LINE'],
    ['a scheme other than http(s)', 'GET httpx', 'SWY_ERR_BAD_REQUEST_LINE'],
    ['a bad byte in the authority', 'GET https://a"', 'SWY_ERR_BAD_REQUEST_LINE'],
    ['userinfo', 'GET http://u@', 'SWY_ERR_BAD_REQUEST_LINE'],
    ['an empty host', 'GET http:///', 'SWY_ERR_BAD_REQUEST_LINE'],
    ['bytes after *', 'OPTIONS *x', 'SWY_ERR_BAD_REQUEST_LINE'],
    ['a fragment', 'GET /a#', 'SWY_ERR_BAD_REQUEST_LINE'],
  ]
  for (const [name, text, code] of EARLY) it(name, () => runReject(name, text, code, null))

  it('still waits while the target or version can become valid', () => {
    for (const text of ['GET h', 'GET http', 'GET HTTPS:/', 'GET http://a', 'GET http://[::1]:8', 'GET / H', 'GET / HTTP/1.', 'GET / HTTP/1.1', 'OPTIONS *']) {
      const r = sameAllWays(KIND_REQUEST, bytes(text))
      assert.equal(r.head.outcome, 'incomplete', `${text}: ${r.head.error ?? ''} ${r.head.errorDetail}`)
    }
  })
})

interface ResponseCase extends ValidCase { }

const VALID_RESPONSES: ResponseCase[] = [
  { name: '200 with Content-Length', text: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello', expect: { status: 200, bodyKind: BODY_LENGTH, contentLength: 5, keepAlive: true } },
  { name: '200 chunked', text: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', expect: { bodyKind: BODY_CHUNKED, keepAlive: true } },
  { name: '200 close-delimited', text: 'HTTP/1.1 200 OK\r\nX-A: b\r\n\r\nuntil close', expect: { bodyKind: BODY_CLOSE, keepAlive: false } },
  { name: '200 Content-Length 0', text: 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', expect: { bodyKind: BODY_NONE, contentLength: 0, keepAlive: true } },
  { name: '204 without body', text: 'HTTP/1.1 204 No Content\r\n\r\n', expect: { status: 204, bodyKind: BODY_NONE, keepAlive: true } },
  { name: '304 with Content-Length', text: 'HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n', expect: { status: 304, bodyKind: BODY_NONE, contentLength: 100, keepAlive: true } },
  { name: '100 Continue', text: 'HTTP/1.1 100 Continue\r\n\r\n', expect: { status: 100, bodyKind: BODY_NONE } },
  { name: '101 Switching Protocols', text: 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n', expect: { status: 101, bodyKind: BODY_NONE, hasUpgrade: true, connectionUpgrade: true } },
  { name: '103 Early Hints', text: 'HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n', expect: { status: 103, bodyKind: BODY_NONE } },
  { name: 'response to HEAD with Content-Length', text: 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n', noBodyExpected: true, expect: { bodyKind: BODY_NONE, contentLength: 100, keepAlive: true } },
  { name: 'response to HEAD chunked', text: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', noBodyExpected: true, expect: { bodyKind: BODY_NONE } },
  { name: 'HTTP/1.0 keep-alive with Content-Length', text: 'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok', expect: { versionMinor: 0, keepAlive: true, bodyKind: BODY_LENGTH } },
  { name: 'HTTP/1.0 with Content-Length, no keep-alive', text: 'HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok', expect: { versionMinor: 0, keepAlive: false } },
  { name: 'HTTP/1.2 is taken as 1.1 (RFC 9112 §2.3): persistent, chunked allowed', text: 'HTTP/1.2 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', expect: { versionMinor: 1, keepAlive: true, bodyKind: BODY_CHUNKED } },
  { name: 'HTTP/1.0 keep-alive but close-delimited', text: 'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n', expect: { bodyKind: BODY_CLOSE, keepAlive: false } },
  { name: 'HTTP/1.1 close', text: 'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n', expect: { keepAlive: false } },
  { name: 'no reason phrase', text: 'HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n', expect: { status: 200 } },
  { name: 'empty reason phrase', text: 'HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n', expect: { status: 404 } },
  { name: 'reason with HTAB and obs-text', text: 'HTTP/1.1 500 Fehl\xe9r\tx y\r\nContent-Length: 0\r\n\r\n', expect: { status: 500 } },
  { name: 'status 599', text: 'HTTP/1.1 599 X\r\nContent-Length: 0\r\n\r\n', expect: { status: 599 } },
  { name: 'identical duplicate Content-Length', text: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok', expect: { contentLength: 2, skipped: [1] } },
  { name: 'two Host fields do not matter in a response', text: 'HTTP/1.1 200 OK\r\nHost: a\r\nHost: b c\r\nContent-Length: 0\r\n\r\n', expect: { hostCount: 2 } },
  { name: 'Set-Cookie fields in order', text: 'HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n', expect: { headers: [['Set-Cookie', 'a=1'], ['Set-Cookie', 'b=2'], ['Content-Length', '0']] } },
]

const RESPONSE_REJECTS: Array<{ name: string, text: string, code: ErrorCode | null, noBodyExpected?: boolean }> = [
  { name: 'Content-Length and Transfer-Encoding', text: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
  { name: 'Content-Length and Transfer-Encoding in a HEAD response', text: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL', noBodyExpected: true },
  { name: 'Transfer-Encoding in HTTP/1.0 (RFC 9112 §6.1)', text: 'HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
  { name: 'differing Content-Length', text: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
  { name: 'Content-Length list', text: 'HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
  { name: 'Content-Length sign', text: 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
  { name: 'chunked twice', text: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
  // the proxy decodes chunked only: it cannot re-frame another coding, so it does not relay it
  { name: 'gzip, chunked', text: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
  { name: 'final coding not chunked', text: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
  { name: 'two-digit status', text: 'HTTP/1.1 20 OK\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
  { name: 'four-digit status', text: 'HTTP/1.1 2000 OK\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
  { name: 'status below 100', text: 'HTTP/1.1 099 X\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
  { name: 'HTTP/2', text: 'HTTP/2 200 OK\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
  { name: 'HTTP/1.x, x not a digit', text: 'HTTP/1.x 200 OK\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
  { name: 'lower-case version', text: 'http/1.1 200 OK\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
  { name: 'two spaces after version', text: 'HTTP/1.1  200 OK\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
  { name: 'no space after status', text: 'HTTP/1.1 200OK\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
  { name: 'NUL in reason', text: 'HTTP/1.1 200 O\x00K\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
  { name: 'DEL in reason', text: 'HTTP/1.1 200 O\x7fK\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
  { name: 'field without colon', text: 'HTTP/1.1 200 OK\r\nX-A\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
  { name: 'obs-fold', text: 'HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n', code: null },
  { name: 'space before colon', text: 'HTTP/1.1 200 OK\r\nX-A : a\r\n\r\n', code: null },
  { name: 'bare LF', text: 'HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n', code: null },
  { name: 'bare CR', text: 'HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n', code: null },
  { name: 'NUL in value', text: 'HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n', code: null },
  { name: 'leading empty line', text: '\r\nHTTP/1.1 200 OK\r\n\r\n', code: 'SWY_ERR_UPSTREAM_PROTOCOL' },
]

describe('HeadParser: responses', () => {
  for (const c of VALID_RESPONSES) it(c.name, () => runValid({ ...c, kind: KIND_RESPONSE }))
  for (const c of RESPONSE_REJECTS) {
    it(`rejects: ${c.name}`, () => runReject(c.name, c.text, c.code, c.code === null ? null : 502, KIND_RESPONSE, undefined, c.noBodyExpected))
  }
  it('rejects an oversized response head', () => {
    runReject('huge', `HTTP/1.1 200 OK\r\nX-A: ${'a'.repeat(17_000)}\r\n\r\n`, 'SWY_ERR_UPSTREAM_PROTOCOL', 502, KIND_RESPONSE, DEFAULT_LIMITS)
  })
})

// ---------------------------------------------------------------------------
// Pipelining: a connection-like loop over several messages in one stream

interface ConnResult { messages: Array<{ method: string, target: string, headEnd: number, end: number }>, outcome: string }

/** Parse requests one after the other from `msg` cut at `cuts`: reset() between, feed from the returned index. */
function feedConnection (msg: Uint8Array, cuts: Cuts): ConnResult {
  const p = new HeadParser(KIND_REQUEST, DEFAULT_LIMITS)
  const c = new ChunkedScanner(1024)
  const messages: ConnResult['messages'] = []
  let inHead = true
  let remaining = 0
  let cur = { method: '', target: '', headEnd: 0, end: 0 }
  let from = 0
  for (const to of [...cuts, msg.length]) {
    const buf = Buffer.from(msg.subarray(from, to)) // a fresh buffer per read, like a socket
    let i = 0
    while (i < buf.length) {
      if (inHead) {
        const r = p.execute(buf, i, buf.length)
        if (r === HEAD_ERROR) return { messages, outcome: `error ${p.error}` }
        if (r === HEAD_INCOMPLETE) { i = buf.length; break }
        cur = { method: p.method, target: p.target(), headEnd: from + r, end: -1 }
        i = r
        inHead = false
        remaining = p.contentLength
        c.reset()
        if (p.bodyKind === BODY_NONE) { cur.end = from + r; messages.push(cur); p.reset(); inHead = true }
        continue
      }
      if (p.bodyKind === BODY_LENGTH) {
        const n = Math.min(remaining, buf.length - i)
        remaining -= n
        i += n
        if (remaining === 0) { cur.end = from + i; messages.push(cur); p.reset(); inHead = true }
      } else {
        const e = c.execute(buf, i, buf.length)
        if (e === CHUNKED_ERROR) return { messages, outcome: `chunk error ${c.error}` }
        if (e === CHUNKED_MORE) { i = buf.length; break }
        i = e
        cur.end = from + e
        messages.push(cur)
        p.reset()
        inHead = true
      }
    }
    from = to
  }
  return { messages, outcome: inHead && !p.started ? 'idle' : 'partial' }
}

describe('HeadParser: pipelining', () => {
  const a = `GET /one HTTP/1.1\r\n${H}\r\n`
  const b = `POST /two HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello`
  const c = `PUT /three HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n`
  const d = `\r\nDELETE /four HTTP/1.1\r\n${H}\r\n`

  it('parses two requests back to back in one buffer', () => {
    const msg = bytes(a + a.replace('/one', '/two'))
    const p = new HeadParser(KIND_REQUEST, DEFAULT_LIMITS)
    const r1 = p.execute(msg, 0, msg.length)
    assert.equal(r1, a.length)
    assert.equal(p.target(), '/one')
    p.reset()
    const r2 = p.execute(msg, r1, msg.length)
    assert.equal(r2, msg.length)
    assert.equal(p.target(), '/two')
  })

  it('parses heads, bodies and heads again, however the stream is cut', () => {
    const text = a + b + c + d + a
    const msg = bytes(text)
    const whole = feedConnection(msg, [])
    assert.equal(whole.outcome, 'idle')
    assert.deepEqual(whole.messages.map((m) => `${m.method} ${m.target}`), ['GET /one', 'POST /two', 'PUT /three', 'DELETE /four', 'GET /one'])
    assert.equal(whole.messages[4].end, msg.length)
    const ways: Cuts[] = [Array.from({ length: msg.length - 1 }, (_, i) => i + 1), ...singleCuts(msg.length, 1000)]
    for (let i = 2; i < msg.length; i += 7) ways.push([i - 1, i]) // a 1-byte piece at every 7th position
    for (const cuts of ways) {
      const got = feedConnection(msg, cuts)
      assert.ok(deepEqual(got, whole), `cuts ${JSON.stringify(cuts.slice(0, 5))}: ${JSON.stringify(got)}`)
    }
  })

  it('stops at a bad second request after a good first one', () => {
    const msg = bytes(a + 'GET / HTTP/1.1\r\nHost: a\r\nX : b\r\n\r\n')
    for (const cuts of [[], ...singleCuts(msg.length)] as Cuts[]) {
      const got = feedConnection(msg, cuts)
      assert.equal(got.messages.length, 1)
      assert.equal(got.outcome, 'error SWY_ERR_BAD_HEADER')
    }
  })

  it('reset() forgets everything about the previous message', () => {
    const p = new HeadParser(KIND_REQUEST, DEFAULT_LIMITS)
    const first = bytes(`POST /x HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: 1\r\nConnection: close, x-a\r\nExpect: 100-continue\r\nUpgrade: y\r\n\r\n`)
    // split, so the parser is in its accumulation mode when the head ends
    assert.equal(p.execute(first, 0, 10), HEAD_INCOMPLETE)
    assert.equal(p.execute(first, 10, first.length), first.length)
    assert.equal(p.fieldSkip[2], 1)
    p.reset()
    const second = bytes('GET /y HTTP/1.0\r\n\r\n')
    assert.equal(p.execute(second, 0, second.length), second.length)
    const fresh = new HeadParser(KIND_REQUEST, DEFAULT_LIMITS)
    fresh.execute(second, 0, second.length)
    for (const key of ['method', 'targetStart', 'targetEnd', 'versionMinor', 'headerCount', 'contentLength', 'bodyKind', 'keepAlive', 'expectContinue',
      'connectionClose', 'connectionKeepAlive', 'connectionUpgrade', 'connectionTokenCount', 'hostCount', 'hasUpgrade', 'hasTransferEncoding', 'error'] as const) {
      assert.deepEqual(p[key], fresh[key], key)
    }
    assert.deepEqual([...p.fieldSkip], [...fresh.fieldSkip])
  })
})

describe('detach(): a head parsed from a reused read buffer (src/net/read-arena.ts) survives the buffer being overwritten', () => {
  const request = 'GET /a/b?x=1 HTTP/1.1\r\nHost: Example.com:8080\r\nX-Token: t-42\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nContent-Length: 3\r\n\r\nabc'
  for (const offset of [0, 7]) {
    it(`request head at offset ${offset} of the read`, () => {
      const read = Buffer.alloc(offset + request.length + 16, 0x7a)
      read.write(request, offset, 'latin1')
      const p = new HeadParser(KIND_REQUEST, DEFAULT_LIMITS)
      const end = p.execute(read, offset, offset + request.length)
      assert.equal(end, offset + request.length - 3)
      const before = { method: p.method, target: p.target(), host: p.hostName(), token: p.header('x-token'), hop: p.header('x-hop') }
      p.detach()
      read.fill(0x41) // the next read lands here
      assert.notEqual(p.buf.buffer, read.buffer)
      assert.equal(p.base, 0)
      assert.ok(p.buf.length >= p.headLength)
      assert.deepEqual({ method: p.method, target: p.target(), host: p.hostName(), token: p.header('x-token'), hop: p.header('x-hop') }, before)
      assert.equal(p.contentLength, 3)
      assert.equal(p.bodyKind, BODY_LENGTH)
    })
  }
  it('the next head on the connection is detached into the same buffer; a head over 4 KiB gets one of its own', () => {
    const p = new HeadParser(KIND_REQUEST, DEFAULT_LIMITS)
    const read = Buffer.alloc(8192)
    const parse = (head: string): void => {
      p.reset()
      read.fill(0x7a)
      read.write(head, 0, 'latin1')
      assert.equal(p.execute(read, 0, head.length), head.length)
      p.detach()
      read.fill(0x41)
    }
    parse('GET /first HTTP/1.1\r\nHost: a.example\r\nX-Long: ' + 'x'.repeat(300) + '\r\n\r\n')
    const own = p.buf
    assert.equal(p.header('host'), 'a.example')
    parse('GET /second HTTP/1.1\r\nHost: b.example\r\n\r\n')
    assert.equal(p.buf, own, 'reused')
    assert.deepEqual([p.target(), p.header('host'), p.header('x-long')], ['/second', 'b.example', null])
    parse('GET /third HTTP/1.1\r\nHost: c.example\r\nX-Long: ' + 'y'.repeat(5000) + '\r\n\r\n')
    assert.notEqual(p.buf, own)
    assert.deepEqual([p.target(), p.header('host'), p.header('x-long')], ['/third', 'c.example', 'y'.repeat(5000)])
    parse('GET /fourth HTTP/1.1\r\nHost: d.example\r\n\r\n')
    assert.equal(p.buf, own, 'the parser\'s buffer again')
    assert.deepEqual([p.target(), p.header('host')], ['/fourth', 'd.example'])
  })
  it('a split head is already in the parser\'s own buffer: detach() leaves it', () => {
    const p = new HeadParser(KIND_RESPONSE, DEFAULT_LIMITS)
    const first = Buffer.from('HTTP/1.1 200 OK\r\nContent-Ty', 'latin1')
    const second = Buffer.from('pe: text/plain\r\nContent-Length: 2\r\n\r\nok', 'latin1')
    assert.equal(p.execute(first, 0, first.length), HEAD_INCOMPLETE)
    first.fill(0)
    assert.ok(p.execute(second, 0, second.length) > 0)
    const own = p.buf
    p.detach()
    second.fill(0)
    assert.equal(p.buf, own)
    assert.equal(p.header('content-type'), 'text/plain')
    assert.equal(p.status, 200)
  })
})
