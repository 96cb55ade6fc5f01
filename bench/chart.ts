/**
 * A self-contained SVG of a load-bench run, to open in a browser: two panels side by side,
 * requests/s and balancer CPU µs per request against the worker count ("seq" = --workers 0).
 * switchyard is a line with its medians (whiskers: min..max over rounds); each peer is a dashed
 * horizontal reference line, since it has no worker axis. No scripts, no external fonts or styles.
 */

export interface ChartPoint {
  workers: number
  requestsPerSec: number
  requestsPerSecMin: number
  requestsPerSecMax: number
  cpuUsPerRequest: number
  cpuUsPerRequestMin: number
  cpuUsPerRequestMax: number
}

export interface ChartReference {
  label: string
  requestsPerSec: number
  cpuUsPerRequest: number
}

/** Another line over the same x axis as the points (--scaling: nginx at N workers, the ideal line). */
export interface ChartSeries {
  label: string
  /** SVG stroke-dasharray: '6 4' dashed, '2 4' dotted */
  dash: string
  /** One value per point (NaN: none); null leaves the series out of that panel. */
  requestsPerSec: number[] | null
  cpuUsPerRequest: number[] | null
}

export interface ChartInput {
  title: string
  /** One line under the title: machine, load generator, pinning. */
  subtitle: string
  points: ChartPoint[]
  references: ChartReference[]
  series?: ChartSeries[]
  /** x axis title (default: worker threads) */
  xLabel?: string
}

const SERIES_COLORS = ['#495057', '#d9480f', '#2b8a3e', '#862e9c']

const WIDTH = 1000
const PANEL_WIDTH = 430
const PANEL_HEIGHT = 300
const PANEL_TOP = 80
const PANEL_LEFT = [80, 570]
const SWITCHYARD_COLOR = '#1f5fbf'
const REFERENCE_COLORS = ['#d9480f', '#2b8a3e', '#862e9c', '#c92a2a', '#5c940d', '#495057']
const FONT = 'font-family="Helvetica, Arial, sans-serif"'

export function renderChart (input: ChartInput): string {
  const series = input.series ?? []
  const legendRows = 1 + input.references.length + series.length
  const height = PANEL_TOP + PANEL_HEIGHT + 60 + legendRows * 20 + 20
  const parts: string[] = []
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" ` +
    `viewBox="0 0 ${WIDTH} ${height}" ${FONT}>`)
  parts.push(`<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`)
  parts.push(`<text x="${WIDTH / 2}" y="28" font-size="18" text-anchor="middle" font-weight="bold">` +
    `${escapeXml(input.title)}</text>`)
  parts.push(`<text x="${WIDTH / 2}" y="50" font-size="12" text-anchor="middle" fill="#555">` +
    `${escapeXml(input.subtitle)}</text>`)

  parts.push(panel(input, 0, 'requests/s (higher is better)',
    (p) => [p.requestsPerSec, p.requestsPerSecMin, p.requestsPerSecMax], (r) => r.requestsPerSec, (l) => l.requestsPerSec))
  parts.push(panel(input, 1, 'balancer CPU µs per request (lower is better)',
    (p) => [p.cpuUsPerRequest, p.cpuUsPerRequestMin, p.cpuUsPerRequestMax], (r) => r.cpuUsPerRequest, (l) => l.cpuUsPerRequest))

  // Legend
  let y = PANEL_TOP + PANEL_HEIGHT + 62
  parts.push(`<line x1="90" y1="${y - 4}" x2="120" y2="${y - 4}" stroke="${SWITCHYARD_COLOR}" stroke-width="2.5"/>`)
  parts.push(`<circle cx="105" cy="${y - 4}" r="4" fill="${SWITCHYARD_COLOR}"/>`)
  parts.push(`<text x="130" y="${y}" font-size="13">switchyard: median over rounds, whiskers = min..max; ` +
    'x = worker threads (seq = sequential, one thread)</text>')
  input.references.forEach((reference, i) => {
    y += 20
    const color = REFERENCE_COLORS[i % REFERENCE_COLORS.length]
    parts.push(`<line x1="90" y1="${y - 4}" x2="120" y2="${y - 4}" stroke="${color}" stroke-width="2" ` +
      'stroke-dasharray="6 4"/>')
    parts.push(`<text x="130" y="${y}" font-size="13">${escapeXml(reference.label)}: ` +
      `${formatCount(reference.requestsPerSec)} req/s, ${reference.cpuUsPerRequest.toFixed(1)} µs/req</text>`)
  })
  series.forEach((line, i) => {
    y += 20
    const color = SERIES_COLORS[i % SERIES_COLORS.length]
    parts.push(`<line x1="90" y1="${y - 4}" x2="120" y2="${y - 4}" stroke="${color}" stroke-width="2" ` +
      `stroke-dasharray="${line.dash}"/>`)
    parts.push(`<text x="130" y="${y}" font-size="13">${escapeXml(line.label)}</text>`)
  })
  parts.push('</svg>')
  return parts.join('\n') + '\n'
}

function panel (input: ChartInput, index: number, yLabel: string,
  pointValues: (p: ChartPoint) => [number, number, number], referenceValue: (r: ChartReference) => number,
  seriesValues: (s: ChartSeries) => number[] | null): string {
  const left = PANEL_LEFT[index]
  const top = PANEL_TOP
  const bottom = top + PANEL_HEIGHT
  const right = left + PANEL_WIDTH - 60
  const parts: string[] = []

  const values: number[] = []
  for (const p of input.points) values.push(...pointValues(p).filter(Number.isFinite))
  for (const r of input.references) if (Number.isFinite(referenceValue(r))) values.push(referenceValue(r))
  for (const line of input.series ?? []) values.push(...(seriesValues(line) ?? []).filter(Number.isFinite))
  const { max, step } = niceScale(values.length === 0 ? 1 : Math.max(...values))
  const yOf = (v: number): number => bottom - (v / max) * (bottom - top)
  const count = input.points.length
  const xOf = (i: number): number => count <= 1 ? (left + right) / 2 : left + 20 + (i * (right - left - 40)) / (count - 1)

  // Grid and y axis
  for (let v = 0; v <= max + step / 2; v += step) {
    const y = yOf(v)
    parts.push(`<line x1="${left}" y1="${y.toFixed(1)}" x2="${right}" y2="${y.toFixed(1)}" stroke="#e5e5e5"/>`)
    parts.push(`<text x="${left - 6}" y="${(y + 4).toFixed(1)}" font-size="11" text-anchor="end">` +
      `${formatCount(v)}</text>`)
  }
  parts.push(`<line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="#333"/>`)
  parts.push(`<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="#333"/>`)
  const yMid = (top + bottom) / 2
  parts.push(`<text x="${left - 58}" y="${yMid}" font-size="12" text-anchor="middle" ` +
    `transform="rotate(-90 ${left - 58} ${yMid})">${escapeXml(yLabel)}</text>`)

  // x axis
  input.points.forEach((p, i) => {
    const x = xOf(i)
    parts.push(`<line x1="${x.toFixed(1)}" y1="${bottom}" x2="${x.toFixed(1)}" y2="${bottom + 5}" stroke="#333"/>`)
    parts.push(`<text x="${x.toFixed(1)}" y="${bottom + 18}" font-size="11" text-anchor="middle">` +
      `${p.workers === 0 ? 'seq' : p.workers}</text>`)
  })
  parts.push(`<text x="${(left + right) / 2}" y="${bottom + 36}" font-size="12" text-anchor="middle">` +
    `${escapeXml(input.xLabel ?? 'worker threads')}</text>`)

  // other series over the same x axis (nginx at N workers, ideal scaling)
  ;(input.series ?? []).forEach((line, i) => {
    const values = seriesValues(line)
    if (values === null) return
    const color = SERIES_COLORS[i % SERIES_COLORS.length]
    const d: string[] = []
    values.forEach((v, j) => {
      if (!Number.isFinite(v) || j >= count) return
      d.push(`${d.length === 0 ? 'M' : 'L'}${xOf(j).toFixed(1)},${yOf(v).toFixed(1)}`)
    })
    if (d.length === 0) return
    parts.push(`<path d="${d.join(' ')}" fill="none" stroke="${color}" stroke-width="2" stroke-dasharray="${line.dash}">` +
      `<title>${escapeXml(line.label)}</title></path>`)
  })

  // Peers: dashed reference lines, names at the right end pushed apart so they do not overlap
  const labels: { y: number; text: string; color: string }[] = []
  input.references.forEach((reference, i) => {
    const value = referenceValue(reference)
    if (!Number.isFinite(value)) return
    const y = yOf(value).toFixed(1)
    const color = REFERENCE_COLORS[i % REFERENCE_COLORS.length]
    parts.push(`<line x1="${left}" y1="${y}" x2="${right}" y2="${y}" stroke="${color}" stroke-width="2" ` +
      `stroke-dasharray="6 4"><title>${escapeXml(reference.label)}: ${formatValue(value)}</title></line>`)
    labels.push({ y: Number(y) + 4, text: reference.label.split(' ')[0], color })
  })
  labels.sort((a, b) => a.y - b.y)
  for (let i = 1; i < labels.length; i++) labels[i].y = Math.max(labels[i].y, labels[i - 1].y + 11)
  for (const label of labels) {
    parts.push(`<text x="${right + 4}" y="${label.y.toFixed(1)}" font-size="10" fill="${label.color}">` +
      `${escapeXml(label.text)}</text>`)
  }

  // switchyard: whiskers, line, points, value labels
  const path: string[] = []
  input.points.forEach((p, i) => {
    const [median, low, high] = pointValues(p)
    if (!Number.isFinite(median)) return
    const x = xOf(i)
    parts.push(`<line x1="${x.toFixed(1)}" y1="${yOf(low).toFixed(1)}" x2="${x.toFixed(1)}" ` +
      `y2="${yOf(high).toFixed(1)}" stroke="${SWITCHYARD_COLOR}" stroke-width="1.5"/>`)
    path.push(`${path.length === 0 ? 'M' : 'L'}${x.toFixed(1)},${yOf(median).toFixed(1)}`)
  })
  if (path.length > 0) {
    parts.push(`<path d="${path.join(' ')}" fill="none" stroke="${SWITCHYARD_COLOR}" stroke-width="2.5"/>`)
  }
  input.points.forEach((p, i) => {
    const [median] = pointValues(p)
    if (!Number.isFinite(median)) return
    const x = xOf(i).toFixed(1)
    const y = yOf(median)
    parts.push(`<circle cx="${x}" cy="${y.toFixed(1)}" r="4.5" fill="${SWITCHYARD_COLOR}">` +
      `<title>${p.workers === 0 ? 'sequential' : `${p.workers} workers`}: ${formatValue(median)}</title></circle>`)
    parts.push(`<text x="${x}" y="${(y - 9).toFixed(1)}" font-size="11" text-anchor="middle" ` +
      `fill="${SWITCHYARD_COLOR}" stroke="#ffffff" stroke-width="3" paint-order="stroke">${formatValue(median)}</text>`)
  })
  return parts.join('\n')
}

/** A round axis maximum with 4–6 steps of 1, 2 or 5 × 10^k. */
function niceScale (maxValue: number): { max: number; step: number } {
  const target = maxValue * 1.12 || 1
  const raw = target / 5
  const magnitude = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? 10 * magnitude
  return { max: Math.ceil(target / step) * step, step }
}

function formatCount (value: number): string {
  if (value >= 1_000_000) return `${+(value / 1_000_000).toFixed(2)}M`
  if (value >= 1000) return `${+(value / 1000).toFixed(1)}k`
  return `${+value.toFixed(1)}`
}

function formatValue (value: number): string {
  return value >= 1000 ? formatCount(value) : value.toFixed(1)
}

function escapeXml (text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`)
}
