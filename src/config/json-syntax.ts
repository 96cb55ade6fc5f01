/**
 * Where a JSON text first goes wrong, for config error messages: V8's
 * JSON.parse names a position for some errors and only an excerpt for others
 * ("Unexpected token ']', ..." is not valid JSON"). Runs only after JSON.parse
 * has failed, so it need not be fast: a plain recursive-descent scan of
 * RFC 8259's grammar that stops at the first byte it cannot accept.
 */

export interface JsonSyntaxError {
  /** Character offset of the first unacceptable character (text.length at a premature end). */
  offset: number
  message: string
}

class Fail extends Error {
  constructor (readonly offset: number, message: string) { super(message) }
}

const NUMBER = /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y
// RFC 8259 §7: control characters must be escaped inside a string, so the class names them
// eslint-disable-next-line no-control-regex
const STRING_CHAR = /(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9A-Fa-f]{4}))*/y

export function findJsonSyntaxError (text: string): JsonSyntaxError | null {
  let i = 0
  const ws = (): void => { while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++ }
  const unexpected = (what: string): never => {
    if (i >= text.length) throw new Fail(i, `unexpected end of input, expected ${what}`)
    throw new Fail(i, `unexpected ${JSON.stringify(text[i])}, expected ${what}`)
  }
  const string = (): void => {
    if (text[i] !== '"') unexpected('a string')
    STRING_CHAR.lastIndex = i + 1
    STRING_CHAR.exec(text)
    i = STRING_CHAR.lastIndex
    if (text[i] !== '"') unexpected('the end of the string')
    i++
  }
  const value = (): void => {
    ws()
    const c = text[i]
    if (c === '{') {
      i++; ws()
      if (text[i] === '}') { i++; return }
      for (;;) {
        ws(); string(); ws()
        if (text[i] !== ':') unexpected('":"')
        i++; value(); ws()
        if (text[i] === ',') { i++; continue }
        if (text[i] === '}') { i++; return }
        unexpected('"," or "}"')
      }
    }
    if (c === '[') {
      i++; ws()
      if (text[i] === ']') { i++; return }
      for (;;) {
        value(); ws()
        if (text[i] === ',') { i++; continue }
        if (text[i] === ']') { i++; return }
        unexpected('"," or "]"')
      }
    }
    if (c === '"') { string(); return }
    for (const word of ['true', 'false', 'null']) if (text.startsWith(word, i)) { i += word.length; return }
    NUMBER.lastIndex = i
    if (NUMBER.exec(text) !== null && NUMBER.lastIndex > i) { i = NUMBER.lastIndex; return }
    unexpected('a value')
  }
  try {
    value(); ws()
    if (i < text.length) unexpected('the end of the input')
    return null
  } catch (err) {
    if (err instanceof Fail) return { offset: err.offset, message: err.message }
    throw err
  }
}
