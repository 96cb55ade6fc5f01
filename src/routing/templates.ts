/**
 * Values with variables, compiled once per config load: header values in
 * `requestHeaders` / `responseHeaders` and a redirect's `location`.
 *
 *   {client_ip}   the client address (after rateLimit.trustProxy)
 *   {request_id}  the request's ID (config.requestId), else its X-Request-Id field, else ''
 *   {host}        the host the request is for, without port, lower case
 *   {scheme}      http or https: how the client reached this listener
 *   {path}        the request path as received, without the query
 *   {query}       '?' and the query as received, or ''
 *
 * Anything else between braces is a config error (check.ts), so a typo never
 * goes out literally. Rendering only concatenates: no parsing per request.
 */
import type { HeadParser } from '../http/head-parser'
import { comparableHost } from '../http/field-syntax'

export const VARIABLES = ['client_ip', 'request_id', 'host', 'scheme', 'path', 'query'] as const
export type Variable = typeof VARIABLES[number]

/** What a template reads of the current request (ClientConnection implements it). */
export interface TemplateSource {
  readonly clientIp: string
  readonly parser: HeadParser
  /** The request's ID when request IDs are on ('' when off). */
  readonly requestId: string
  /** How the client reached us: 'https' on a TLS listener (undefined for a bare attach: http). */
  readonly proto?: 'http' | 'https' | undefined
}

const VAR_PATTERN = /\{([a-z_]+)\}/g

/** Alternating literal text and variables; `literal` is the whole value when it has no variable. */
export class Template {
  readonly parts: ReadonlyArray<string | { v: Variable }>
  readonly literal: string | null

  constructor (text: string) {
    const parts: Array<string | { v: Variable }> = []
    let last = 0
    for (const m of text.matchAll(VAR_PATTERN)) {
      if (!(VARIABLES as readonly string[]).includes(m[1])) continue
      if (m.index > last) parts.push(text.slice(last, m.index))
      parts.push({ v: m[1] as Variable })
      last = m.index + m[0].length
    }
    if (last < text.length) parts.push(text.slice(last))
    this.parts = parts
    this.literal = parts.every((p) => typeof p === 'string') ? text : null
  }

  render (src: TemplateSource): string {
    if (this.literal !== null) return this.literal
    let out = ''
    for (const part of this.parts) out += typeof part === 'string' ? part : variable(part.v, src)
    return out
  }
}

/** The variables named in `text` that do not exist ({clientip} for {client_ip}). */
export function unknownVariables (text: string): string[] {
  const out: string[] = []
  for (const m of text.matchAll(VAR_PATTERN)) if (!(VARIABLES as readonly string[]).includes(m[1])) out.push(m[0])
  return out
}

function variable (name: Variable, src: TemplateSource): string {
  const p = src.parser
  switch (name) {
    case 'client_ip': return src.clientIp
    case 'request_id': return src.requestId !== '' ? src.requestId : (p.header('x-request-id') ?? '')
    case 'host': { const h = p.hostName(); return h === '' ? '' : comparableHost(h) }
    case 'scheme': return src.proto ?? 'http'
    case 'path': { const t = p.path(); const q = t.indexOf('?'); return q === -1 ? t : t.slice(0, q) }
    case 'query': { const t = p.path(); const q = t.indexOf('?'); return q === -1 ? '' : t.slice(q) }
  }
}

/**
 * set / add / remove of header fields, compiled: `remove` lists the lower-case
 * names whose received fields are dropped (those removed and those set), and
 * `lines` the fields written instead (set, then add).
 */
export class HeaderEdits {
  readonly remove: readonly string[]
  readonly lines: ReadonlyArray<{ name: string, value: Template }>
  /** The rendered lines when no value has a variable. */
  private readonly fixed: string | null

  constructor (edits: { set?: Record<string, string>, add?: Record<string, string>, remove?: string[] }) {
    const set = Object.entries(edits.set ?? {})
    const add = Object.entries(edits.add ?? {})
    this.remove = [...new Set([...(edits.remove ?? []), ...set.map(([name]) => name)].map((n) => n.toLowerCase()))]
    this.lines = [...set, ...add].map(([name, value]) => ({ name, value: new Template(value) }))
    this.fixed = this.lines.every((l) => l.value.literal !== null) ? this.lines.map((l) => `${l.name}: ${l.value.literal as string}\r\n`).join('') : null
  }

  /** The field lines to write, each ending in CRLF. */
  render (src: TemplateSource): string {
    if (this.fixed !== null) return this.fixed
    let out = ''
    // a variable's value comes from the request: CR, LF and NUL cannot reach a field line (RFC 9110 §5.5)
    for (const l of this.lines) out += l.name + ': ' + l.value.render(src).replace(/[\r\n\0]/g, '') + '\r\n'
    return out
  }
}
