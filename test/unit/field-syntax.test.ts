/**
 * The grammar of the two values that decide where a request goes and how it
 * is framed: an authority (RFC 3986 §3.2) and a Transfer-Encoding list
 * (RFC 9112 §6.1, §7; RFC 9110 §5.6.1).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  authorityHostEnd, readTransferCodings, TE_CHUNKED, TE_OTHER, TE_CHUNKED_TWICE, TE_CHUNKED_PARAMS, TE_INVALID, TE_EMPTY,
} from '../../src/http/field-syntax'

function hostEnd (text: string, allowEmpty = false): number {
  const b = Buffer.from(text, 'latin1')
  return authorityHostEnd(b, 0, b.length, allowEmpty)
}

test('authority: host [":" port]', () => {
  assert.equal(hostEnd('example.com'), 11)
  assert.equal(hostEnd('example.com:8080'), 11)
  assert.equal(hostEnd('example.com:'), 11) // an empty port is valid (RFC 3986 §3.2.3)
  assert.equal(hostEnd('[::1]:81'), 5)
  assert.equal(hostEnd('[::1]'), 5)
  assert.equal(hostEnd('a%41b'), 5)
  assert.equal(hostEnd('127.0.0.1:80'), 9)
  assert.equal(hostEnd(''), -1)
  assert.equal(hostEnd('', true), 0)
  for (const bad of [':80', 'a:8a', 'a:123456', 'a:1:2', '[::1', '[]', '[::1]x', 'a b', 'user@host', 'a%4', 'a%zz', 'a/b', 'é']) {
    assert.equal(hostEnd(bad), -1, bad)
  }
})

function te (text: string): number {
  const b = Buffer.from(text, 'latin1')
  return readTransferCodings(b, 0, b.length)
}

test('Transfer-Encoding: the grammar, and chunked alone', () => {
  for (const ok of ['chunked', 'Chunked', 'CHUNKED', ',chunked', 'chunked ,', ', ,chunked,,']) assert.equal(te(ok), TE_CHUNKED, ok)
  for (const other of ['gzip, chunked', 'cow, chunked', 'gzip', 'chunked, gzip', 'gzip;level=9, chunked', 'x;a="b c", chunked']) assert.equal(te(other), TE_OTHER, other)
  assert.equal(te('chunked, chunked'), TE_CHUNKED_TWICE)
  assert.equal(te('chunked;a=b'), TE_CHUNKED_PARAMS)
  for (const bad of ['chun=ked, chunked', 'cow chunked, chunked', 'chunked\xe9', 'gzip;=1, chunked', 'gzip;a, chunked', 'gzip;a="\xe9", chunked', 'gzip;a="x, chunked', '"chunked"']) {
    assert.equal(te(bad), TE_INVALID, JSON.stringify(bad))
  }
  assert.equal(te(''), TE_EMPTY)
  assert.equal(te(' , '), TE_EMPTY)
})
