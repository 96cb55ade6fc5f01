/**
 * PROXY protocol parser: v1 and v2 headers fed whole, one byte at a time and
 * split at random points (fast-check) decode the same; malformed and
 * oversized headers fail with a reason; what follows the header is left.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { ProxyHeaderParser, PP_ERROR, PP_INCOMPLETE, encodeProxyHeader, V1_MAX_BYTES, MAX_V2_LENGTH } from '../../src/net/proxy-protocol'

interface Decoded { end: number, error: string, src: string, sport: number, dst: string, dport: number, local: boolean }

/** Feed `bytes` in pieces cut at `cuts`; the result and where the header ended in the whole input. */
function feed (bytes: Buffer, cuts: number[] = []): Decoded {
  const p = new ProxyHeaderParser()
  const points = [...new Set(cuts.filter((c) => c > 0 && c < bytes.length))].sort((a, b) => a - b)
  let from = 0
  let end = PP_INCOMPLETE
  for (const to of [...points, bytes.length]) {
    const piece = Buffer.from(bytes.subarray(from, to)) // a fresh buffer per read, like a socket
    const r = p.execute(piece, 0, piece.length)
    if (r === PP_ERROR) { end = PP_ERROR; break }
    if (r >= 0) { end = from + r; break }
    from = to
  }
  return { end, error: p.error, src: p.sourceAddress, sport: p.sourcePort, dst: p.destinationAddress, dport: p.destinationPort, local: p.local }
}

const REST = Buffer.from('GET / HTTP/1.1\r\n')
const VALID: Array<[string, Buffer, Partial<Decoded>]> = [
  ['v1 TCP4', Buffer.from('PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n'), { src: '192.0.2.1', sport: 56324, dst: '198.51.100.7', dport: 443 }],
  ['v1 TCP6', Buffer.from('PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n'), { src: '2001:db8::1', sport: 1, dst: '2001:db8::2', dport: 65535 }],
  ['v1 UNKNOWN', Buffer.from('PROXY UNKNOWN ffff:f...f:ffff 1 2\r\n'), { local: true }],
  ['v2 TCP4', encodeProxyHeader('v2', '203.0.113.9', '10.0.0.1', 40000, 8443), { src: '203.0.113.9', sport: 40000, dst: '10.0.0.1', dport: 8443 }],
  ['v2 TCP6', encodeProxyHeader('v2', '2001:db8::5', '2001:db8::6', 5, 6), { src: '2001:db8::5', sport: 5, dport: 6 }],
  // one client, one spelling (RFC 5952, as node reports a peer): the caps and the rate limit count it once
  ['v1 TCP6 spelled long', Buffer.from('PROXY TCP6 2001:0DB8:0:0::0001 0:0:0:0:0:0:0:1 1 2\r\n'), { src: '2001:db8::1', dst: '::1' }],
  ['v1 TCP6 IPv4-mapped', Buffer.from('PROXY TCP6 ::ffff:192.0.2.3 ::1 1 2\r\n'), { src: '192.0.2.3' }],
  ['v2 TCP6 loopback', encodeProxyHeader('v2', '::1', '::1', 7, 8), { src: '::1', dst: '::1' }],
  ['v2 LOCAL', encodeProxyHeader('v2', 'x', 'y', 0, 0), { local: true }],
  ['v2 TCP4 with a TLV after the addresses', (() => {
    const h = encodeProxyHeader('v2', '198.51.100.1', '10.0.0.1', 1234, 443)
    const tlv = Buffer.from([0x04, 0x00, 0x03, 0x61, 0x62, 0x63]) // PP2_TYPE_NOOP
    const out = Buffer.concat([h, tlv])
    out.writeUInt16BE(12 + tlv.length, 14)
    return out
  })(), { src: '198.51.100.1', sport: 1234 }],
]

for (const [name, header, expected] of VALID) {
  test(`PROXY ${name}: whole, byte by byte and at random splits, leaving the bytes after it`, () => {
    const input = Buffer.concat([header, REST])
    const whole = feed(input)
    assert.equal(whole.end, header.length, whole.error)
    for (const [k, v] of Object.entries(expected)) assert.equal(whole[k as keyof Decoded], v, k)
    const bytewise = feed(input, Array.from({ length: input.length }, (_, i) => i))
    assert.deepEqual(bytewise, whole)
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: input.length - 1 }), { maxLength: 8 }), (cuts) => {
      assert.deepEqual(feed(input, cuts), whole)
    }), { numRuns: 200 })
  })
}

const INVALID: Array<[string, Buffer, RegExp]> = [
  ['no header (an HTTP request)', Buffer.from('GET / HTTP/1.1\r\n\r\n'), /does not start with a PROXY protocol header/],
  ['a TLS ClientHello', Buffer.from([0x16, 0x03, 0x01, 0x00, 0x10]), /does not start/],
  ['v1 misspelt', Buffer.from('PROXZ TCP4 1.2.3.4 1.2.3.4 1 2\r\n'), /not a PROXY protocol v1 header/],
  ['v1 too long', Buffer.from('PROXY TCP4 ' + '1'.repeat(V1_MAX_BYTES) + '\r\n'), /longer than 107/],
  ['v1 bare LF', Buffer.from('PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n'), /CRLF/],
  ['v1 bad address', Buffer.from('PROXY TCP4 1.2.3.999 1.2.3.4 1 2\r\n'), /not TCP4 addresses/],
  ['v1 v6 address as TCP4', Buffer.from('PROXY TCP4 ::1 ::1 1 2\r\n'), /not TCP4/],
  ['v1 port out of range', Buffer.from('PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n'), /ports/],
  ['v1 port with leading zero', Buffer.from('PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n'), /ports/],
  ['v1 missing field', Buffer.from('PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n'), /two addresses and two ports/],
  ['v1 unknown protocol', Buffer.from('PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n'), /not TCP4, TCP6 or UNKNOWN/],
  ['v2 bad signature', Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0b]), /v2 signature/],
  ['v2 version 3', (() => { const h = encodeProxyHeader('v2', '1.2.3.4', '1.2.3.4', 1, 2); h[12] = 0x31; return h })(), /version 3/],
  ['v2 command 2', (() => { const h = encodeProxyHeader('v2', '1.2.3.4', '1.2.3.4', 1, 2); h[12] = 0x22; return h })(), /command 2/],
  ['v2 declared length over the limit', (() => { const h = encodeProxyHeader('v2', '1.2.3.4', '1.2.3.4', 1, 2); h.writeUInt16BE(MAX_V2_LENGTH + 1, 14); return h })(), /over 1024/],
  ['v2 TCP4 block too short', (() => { const h = encodeProxyHeader('v2', '1.2.3.4', '1.2.3.4', 1, 2).subarray(0, 20); h.writeUInt16BE(4, 14); return h })(), /shorter than 12/],
  ['v2 UDP', (() => { const h = encodeProxyHeader('v2', '1.2.3.4', '1.2.3.4', 1, 2); h[13] = 0x12; return h })(), /family 0x12/],
]

for (const [name, bytes, reason] of INVALID) {
  test(`PROXY refused: ${name} (whole and byte by byte)`, () => {
    const whole = feed(bytes)
    assert.equal(whole.end, PP_ERROR)
    assert.match(whole.error, reason)
    assert.deepEqual(feed(bytes, Array.from({ length: bytes.length }, (_, i) => i)), whole)
  })
}

test('PROXY: an incomplete header stays incomplete, and the declared v2 length is read exactly', () => {
  const h = encodeProxyHeader('v2', '1.2.3.4', '5.6.7.8', 1, 2)
  assert.equal(feed(h.subarray(0, h.length - 1)).end, PP_INCOMPLETE)
  assert.equal(feed(Buffer.from('PROXY TCP4 1.2.3.4')).end, PP_INCOMPLETE)
  const after = Buffer.concat([h, Buffer.from([0x16, 0x03, 0x01])])
  assert.equal(feed(after).end, h.length, 'TLS bytes after the header are not part of it')
})
