// SVG charts drawn by hand (no library): a sparkline, stacked bars, horizontal bars, lines and dots
// over time. Colours come from CSS classes (s0..s7, ok/bad/...), so dark mode and the strict CSP
// (no inline styles) both hold. Every mark has a <title>, which browsers show on hover.

const NS = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const title = (text) => svg("title", {}, text);
const r1 = (v) => Math.round(v * 10) / 10;

function frame(width, height, label) {
  return svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart", role: "img",
    "aria-label": label });
}

function scale(d0, d1, r0, r1_) {
  const span = d1 - d0 || 1;
  return (v) => r0 + ((v - d0) / span) * (r1_ - r0);
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= v);
}

function timeTicks(t0, t1, count) {
  const span = t1 - t0;
  const clock = span < 600e3 ? { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false }
    : { hour: "2-digit", minute: "2-digit", hour12: false };
  const fmt = span > 2 * 86400e3
    ? (t) => new Date(t).toLocaleDateString([], { month: "short", day: "numeric" })
    : (t) => new Date(t).toLocaleTimeString([], clock);
  return Array.from({ length: count }, (_, i) => t0 + (span * i) / Math.max(1, count - 1)).map((t) => [t, fmt(t)]);
}

function yAxis(g, y, max, x0, x1, unit = "") {
  for (const v of [0, max / 2, max]) {
    g.append(svg("line", { x1: x0, x2: x1, y1: r1(y(v)), y2: r1(y(v)), class: "grid" }));
    g.append(svg("text", { x: x0 - 4, y: r1(y(v)) + 3, class: "tick end" }, `${+v.toFixed(2)}${unit}`));
  }
}

export function empty(text) {
  const el = document.createElement("p");
  el.className = "empty";
  el.textContent = text;
  return el;
}

// points: [[t_seconds, value], ...]; a small line of the recent values
export function sparkline(points, { width = 120, height = 28, label = "recent values" } = {}) {
  const s = frame(width, height, label);
  s.classList.add("spark");
  if (!points || points.length < 2) return s;
  const ts = points.map((p) => p[0]);
  const vs = points.map((p) => p[1]);
  const lo = Math.min(...vs);
  const hi = Math.max(...vs);
  const x = scale(ts[0], ts[ts.length - 1], 2, width - 4);
  const y = scale(lo, hi === lo ? lo + 1 : hi, height - 3, 3);
  const d = points.map((p, i) => `${i ? "L" : "M"}${r1(x(p[0]))},${r1(y(p[1]))}`).join("");
  s.append(svg("path", { d, class: "line s0" }));
  const last = points[points.length - 1];
  s.append(svg("circle", { cx: r1(x(last[0])), cy: r1(y(last[1])), r: 2.5, class: "mark s0" },
    title(`${+last[1].toFixed(2)} (min ${+lo.toFixed(2)}, max ${+hi.toFixed(2)})`)));
  return s;
}

// categories: ["2026-11-25", ...]; series: [{name, cls, values: [n per category]}]
export function stackedBars(categories, series, { width = 560, height = 200, label = "" } = {}) {
  const s = frame(width, height, label);
  const m = { l: 34, r: 8, t: 8, b: 24 };
  const totals = categories.map((_, i) => series.reduce((sum, se) => sum + (se.values[i] || 0), 0));
  const max = niceMax(Math.max(1, ...totals));
  const y = scale(0, max, height - m.b, m.t);
  const g = svg("g");
  yAxis(g, y, max, m.l, width - m.r);
  const band = (width - m.l - m.r) / Math.max(1, categories.length);
  const bw = Math.max(2, Math.min(40, band * 0.7));
  const every = Math.ceil(categories.length / Math.max(1, Math.floor((width - m.l) / 56)));
  categories.forEach((cat, i) => {
    const cx = m.l + band * i + band / 2;
    let base = 0;
    for (const se of series) {
      const v = se.values[i] || 0;
      if (!v) continue;
      g.append(svg("rect", { x: r1(cx - bw / 2), y: r1(y(base + v)), width: r1(bw), height: r1(y(base) - y(base + v)),
        class: `bar ${se.cls}` }, title(`${cat}: ${v} ${se.name}`)));
      base += v;
    }
    if (i % every === 0) g.append(svg("text", { x: r1(cx), y: height - 8, class: "tick mid" }, cat.slice(5)));
  });
  s.append(g);
  return s;
}

// rows: [{label, value (0..1), text}]
export function hbars(rows, { width = 560, label = "" } = {}) {
  const rowH = 26;
  const height = Math.max(1, rows.length) * rowH + 6;
  const s = frame(width, height, label);
  const labelW = Math.min(180, width * 0.38);
  const x = scale(0, 1, labelW, width - 8);
  rows.forEach((row, i) => {
    const y0 = 4 + i * rowH;
    s.append(svg("text", { x: labelW - 6, y: y0 + 15, class: "tick end label" }, clip(row.label, labelW / 7)));
    s.append(svg("rect", { x: labelW, y: y0 + 3, width: r1(x(1) - labelW), height: 16, class: "track" }));
    s.append(svg("rect", { x: labelW, y: y0 + 3, width: r1(Math.max(1, x(row.value) - labelW)), height: 16,
      class: `bar ${row.cls || "ok"}` }, title(`${row.label}: ${row.text}`)));
    s.append(svg("text", { x: labelW + 6, y: y0 + 15, class: "tick on-bar" }, row.text));
  });
  return s;
}

function clip(text, chars) {
  const n = Math.max(4, Math.floor(chars));
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

// series: [{name, points: [[t_ms, v], ...]}]; draws lines (or only dots) over time, with an optional threshold
export function overTime(series, { width = 560, height = 200, label = "", dots = false, min = 0, max = null,
  threshold = null, unit = "" } = {}) {
  const s = frame(width, height, label);
  const m = { l: 38, r: 10, t: 10, b: 24 };
  const all = series.flatMap((se) => se.points);
  if (!all.length) return s;
  let t0 = Math.min(...all.map((p) => p[0]));
  let t1 = Math.max(...all.map((p) => p[0]));
  if (t1 - t0 < 60e3) { t0 -= 30e3; t1 += 30e3; }
  const top = max ?? niceMax(Math.max(...all.map((p) => p[1])) * 1.1);
  const x = scale(t0, t1, m.l, width - m.r);
  const y = scale(min, top, height - m.b, m.t);
  const g = svg("g");
  yAxis(g, y, top, m.l, width - m.r, unit);
  for (const [t, text] of timeTicks(t0, t1, width < 400 ? 3 : 5)) {
    g.append(svg("text", { x: r1(x(t)), y: height - 8, class: "tick mid" }, text));
  }
  if (threshold !== null) {
    g.append(svg("line", { x1: m.l, x2: width - m.r, y1: r1(y(threshold)), y2: r1(y(threshold)), class: "threshold" },
      title(`threshold ${threshold}`)));
  }
  series.forEach((se, i) => {
    const cls = `s${i % 8}`;
    if (!dots && se.points.length > 1) {
      const d = se.points.map((p, j) => `${j ? "L" : "M"}${r1(x(p[0]))},${r1(y(p[1]))}`).join("");
      g.append(svg("path", { d, class: `line ${cls}` }));
    }
    for (const p of se.points) {
      g.append(svg("circle", { cx: r1(x(p[0])), cy: r1(y(p[1])), r: dots ? 4 : 2.5, class: `mark ${cls}` },
        title(`${se.name}: ${+p[1].toFixed(2)}${unit} at ${new Date(p[0]).toLocaleString()}`)));
    }
  });
  s.append(g);
  return s;
}

// lanes: [{name, items: [{start_ms, end_ms|null, cls, text}]}]; one lane per playbook, a bar per fix
export function lanes(rows, { width = 560, now = Date.now(), label = "" } = {}) {
  const laneH = 22;
  const m = { l: Math.min(150, width * 0.3), r: 10, t: 4, b: 22 };
  const height = m.t + m.b + Math.max(1, rows.length) * laneH;
  const s = frame(width, height, label);
  const items = rows.flatMap((r) => r.items);
  if (!items.length) return s;
  let t0 = Math.min(...items.map((i) => i.start));
  let t1 = Math.max(...items.map((i) => i.end ?? now));
  if (t1 - t0 < 60e3) { t0 -= 5e3; t1 = t0 + 60e3; }
  const x = scale(t0, t1, m.l, width - m.r);
  rows.forEach((row, i) => {
    const y0 = m.t + i * laneH;
    s.append(svg("text", { x: m.l - 6, y: y0 + 15, class: "tick end label" }, clip(row.name, m.l / 7)));
    s.append(svg("line", { x1: m.l, x2: width - m.r, y1: y0 + laneH - 1, y2: y0 + laneH - 1, class: "grid" }));
    for (const it of row.items) {
      const x0 = x(it.start);
      const w = Math.max(4, x(it.end ?? now) - x0);
      s.append(svg("rect", { x: r1(x0), y: y0 + 4, width: r1(w), height: laneH - 9, rx: 2, class: `bar ${it.cls}` },
        title(it.text)));
    }
  });
  for (const [t, text] of timeTicks(t0, t1, width < 400 ? 3 : 5)) {
    s.append(svg("text", { x: r1(x(t)), y: height - 6, class: "tick mid" }, text));
  }
  return s;
}
