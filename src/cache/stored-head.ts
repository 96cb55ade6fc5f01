/**
 * A stored response head (status line + field lines + CRLF, as
 * buildStoredHead wrote it) read and rewritten as text. Only the
 * revalidation paths use this (a 304 merged into the entry, RFC 9111 §4.3.4;
 * a head built from a background revalidation's response) and the range
 * path (a 206 made from a stored 200); hits replay the stored bytes as they are.
 */
import type { HeadParser } from '../http/head-parser'
import type { ResponseView } from './policy'

/**
 * Fields a 304 must not replace in the stored response (RFC 9111 §3.2,
 * "Updating Stored Header Fields"): those excepted from storage (§3.1: the
 * hop-by-hop fields of RFC 9110 §7.6.1 and the Proxy- fields), Content-Length
 * (the stored body's framing, not the 304's), and the fields this cache
 * writes on every response itself (Age, Via).
 */
const NOT_UPDATED = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'trailer', 'upgrade', 'http2-settings',
  'proxy-authenticate', 'proxy-authentication-info', 'proxy-authorization',
  'content-length', 'age', 'via',
])

/**
 * The stored head updated with a 304's fields (RFC 9111 §4.3.4: "the cache
 * MUST use the header fields provided in the 304 (Not Modified) response to
 * replace all instances of the corresponding header fields in the stored
 * response", with the §3.2 exceptions above and the fields the 304's
 * Connection names). Every line of a field the 304 carries replaces every
 * stored line of it; the rest of the stored head stays as it was.
 */
export function mergeNotModified (stored: Buffer, fields: FieldPairs): Buffer {
  const hopByHop = connectionNames(fields)
  const replaced = new Set<string>()
  const added: string[] = []
  for (const [name, value] of fields) {
    const lower = name.toLowerCase()
    if (NOT_UPDATED.has(lower) || hopByHop.has(lower)) continue
    replaced.add(lower)
    added.push(name + ': ' + value + '\r\n')
  }
  if (added.length === 0) return stored
  const lines = storedLines(stored)
  let out = lines[0] + '\r\n'
  for (let i = 1; i < lines.length; i++) {
    if (!replaced.has(lineName(lines[i]))) out += lines[i] + '\r\n'
  }
  for (const line of added) out += line
  return Buffer.from(out + '\r\n', 'latin1')
}

/** Field lines as [name as received, value]. */
export type FieldPairs = Array<[string, string]>

/** A parsed head's field lines. */
export function fieldsOfParser (p: HeadParser): FieldPairs {
  const out: FieldPairs = []
  for (let i = 0; i < p.headerCount; i++) out.push([p.fieldName(i), p.fieldValue(i)])
  return out
}

/** node:http's rawHeaders ([name, value, name, value, …]) as field lines. */
export function fieldsOfRaw (raw: string[]): FieldPairs {
  const out: FieldPairs = []
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i], raw[i + 1]])
  return out
}

/**
 * A head to store for a response received as field lines (a background
 * revalidation's, through node:http): the end-to-end fields as received
 * (the NOT_UPDATED ones and those Connection names left out) and a canonical
 * Content-Length for the body as stored (RFC 9110 §8.6; none for 204 / 304).
 */
export function storedHeadFrom (status: number, reason: string, fields: FieldPairs, bodyLength: number): Buffer {
  const hopByHop = connectionNames(fields)
  let out = 'HTTP/1.1 ' + status + ' ' + reason.replace(/[\r\n]/g, '') + '\r\n'
  for (const [name, value] of fields) {
    const lower = name.toLowerCase()
    if (NOT_UPDATED.has(lower) || hopByHop.has(lower)) continue
    out += name + ': ' + value + '\r\n'
  }
  if (status !== 204 && status !== 304) out += 'Content-Length: ' + bodyLength + '\r\n'
  return Buffer.from(out + '\r\n', 'latin1')
}

/** The status line and field lines of a stored head, without CRLFs or the empty last line. */
export function storedLines (stored: Buffer): string[] {
  const text = stored.latin1Slice(0, stored.length)
  const lines = text.split('\r\n')
  while (lines.length > 1 && lines[lines.length - 1] === '') lines.pop()
  return lines
}

/** A field line's name, lower-case. */
export function lineName (line: string): string {
  const colon = line.indexOf(':')
  return (colon < 0 ? line : line.slice(0, colon)).toLowerCase()
}

/**
 * policy.ts's ResponseView (and key.ts's HeaderSource) over field lines:
 * repeated lines joined with ", " (RFC 9110 §5.3). For the revalidation
 * paths only: a scan per lookup.
 */
export class FieldsView implements ResponseView {
  status: number
  method = 'GET'
  private readonly fields: FieldPairs

  constructor (fields: FieldPairs, status = 0) {
    this.status = status
    this.fields = fields
  }

  /** Over a stored head's lines. */
  static ofStored (stored: Buffer, status: number): FieldsView {
    const lines = storedLines(stored)
    const fields: FieldPairs = []
    for (let i = 1; i < lines.length; i++) {
      const colon = lines[i].indexOf(':')
      if (colon > 0) fields.push([lines[i].slice(0, colon), lines[i].slice(colon + 1).trim()])
    }
    return new FieldsView(fields, status)
  }

  header (lowerName: string): string | null {
    let out: string | null = null
    for (const [name, value] of this.fields) {
      if (name.length === lowerName.length && name.toLowerCase() === lowerName) out = out === null ? value : out + ', ' + value
    }
    return out
  }
}

/** The field names a head's Connection lists (RFC 9110 §7.6.1), lower-case. */
function connectionNames (fields: FieldPairs): Set<string> {
  const names = new Set<string>()
  for (const [name, value] of fields) {
    if (name.toLowerCase() !== 'connection') continue
    for (const token of value.split(',')) {
      const t = token.trim().toLowerCase()
      if (t !== '') names.add(t)
    }
  }
  return names
}
