/**
 * Defaults read out of the schema, so each one is written once (in schema.ts).
 * A loaded config already has them (ajv `useDefaults`); this is for the few
 * places that need one without a config: the --help text, tests, docs checks.
 */
import { configSchema } from './schema'

/** A schema node as this module walks it: only the keywords it looks at. */
export interface SchemaNode {
  type?: string
  default?: unknown
  properties?: Record<string, SchemaNode>
  items?: SchemaNode
  required?: readonly string[]
}

/**
 * The schema node at a dotted path as the README writes it:
 * `healthCheck.passive.maxFailures`, `upstreams[].weight`.
 */
export function schemaNode (path: string): SchemaNode {
  let node = configSchema as unknown as SchemaNode
  for (const part of path.split('.')) {
    const isArray = part.endsWith('[]')
    const key = isArray ? part.slice(0, -2) : part
    const next = node.properties !== undefined && Object.hasOwn(node.properties, key) ? node.properties[key] : undefined
    if (next === undefined) throw new Error(`no ${path} in the config schema`)
    node = next
    if (isArray) {
      if (node.items === undefined) throw new Error(`${key} in ${path} is not an array in the config schema`)
      node = node.items
    }
  }
  return node
}

/** The schema's default at `path` (a fresh copy); throws when there is none. */
export function schemaDefault (path: string): unknown {
  const node = schemaNode(path)
  if (!('default' in node)) throw new Error(`${path} has no default in the config schema`)
  return structuredClone(node.default)
}
