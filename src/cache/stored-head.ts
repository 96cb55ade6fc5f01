/**
 * A stored response head (status line + field lines + CRLF, as
 * buildStoredHead wrote it) read and rewritten as text. Only the
 * revalidation path uses this (a 304 merged into the entry, RFC 9111 §4.3.4)
 * and the range path (a 206 made from a stored 200); hits replay the stored
 * bytes as they are.
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
export function mergeNotModified (stored: Buffer, res: HeadParser): Buffer {
  const hopByHop = connectionNames(res)
  const replaced = new Set<string>()
  const added: string[] = []
  for (let i = 0; i < res.headerCount; i++) {
    const name = res.fieldName(i).toLowerCase()
    if (NOT_UPDATED.has(name) || (hopByHop !== null && hopByHop.has(name))) continue
    replaced.add(name)
    added.push(res.fieldName(i) + ': ' + res.fieldValue(i) + '\r\n')
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

/** policy.ts's ResponseView over a stored head: repeated lines joined with ", " (RFC 9110 §5.3). */
export class StoredHeadView implements ResponseView {
  status: number
  private readonly fields: Array<[string, string]> = []

  constructor (stored: Buffer, status: number) {
    this.status = status
    const lines = storedLines(stored)
    for (let i = 1; i < lines.length; i++) {
      const colon = lines[i].indexOf(':')
      if (colon > 0) this.fields.push([lines[i].slice(0, colon).toLowerCase(), lines[i].slice(colon + 1).trim()])
    }
  }

  header (lowerName: string): string | null {
    let out: string | null = null
    for (const [name, value] of this.fields) {
      if (name === lowerName) out = out === null ? value : out + ', ' + value
    }
    return out
  }
}

function connectionNames (res: HeadParser): Set<string> | null {
  const value = res.header('connection')
  if (value === null) return null
  const names = new Set<string>()
  for (const token of value.split(',')) {
    const t = token.trim().toLowerCase()
    if (t !== '') names.add(t)
  }
  return names
}
