// Health: every probe, watched metric and source with its state, polled (and re-read on events).

import { read } from "./api.js";
import * as charts from "./charts.js";
import { $, ago, badge, fill, h, level, num, time } from "./dom.js";

export async function refreshState() {
  let s;
  try {
    s = await read("/api/dashboard/state");
  } catch (err) {
    setLive("off", `sidecar unreachable (${err.message})`);
    throw err;
  }
  $("sidecar-name").textContent = s.name ? `· ${s.name}` : "";
  const all = [...s.probes, ...s.metrics, ...s.sources];
  const counts = {};
  for (const item of all) counts[item.status] = (counts[item.status] || 0) + 1;
  fill($("summary"), ...["critical", "warning", "healthy", "unknown"].filter((k) => counts[k])
    .map((k) => h("span", { class: `count ${k}` }, `${counts[k]} ${k}`)));
  fill($("probes"), s.probes.length ? s.probes.map(probeCard) : h("li", { class: "empty" }, "no probes configured"));
  fill($("metrics"), s.metrics.length ? s.metrics.map(metricCard)
    : h("li", { class: "empty" }, "no metrics sampled yet"));
  fill($("sources"), s.sources.length ? s.sources.map(sourceCard) : h("li", { class: "empty" }, "no sources"));
  fill($("active"), s.active_fixes.map((r) => h("li", {}, badge("validating"), ` ${r.fix_id} (${r.playbook_id}) `,
    h("span", { class: "muted" }, `judged by ${time(r.ends_at)}`))));
}

function card(item, title, lines, series, seriesLabel) {
  return h("li", { class: `card ${item.status}`, "data-name": item.name },
    h("div", { class: "card-head" }, h("strong", {}, title), level(item.status)),
    lines.filter(Boolean).map((line) => h("div", { class: "card-line" }, line)),
    series && series.length > 1 ? charts.sparkline(series, { label: seriesLabel }) : null);
}

function probeCard(p) {
  const latency = p.latency_ms === null ? null : `${num(p.latency_ms)} ms`;
  return card(p, p.name, [`${p.kind} ${p.target}`, p.detail, latency && `latency ${latency}, checked ${ago(p.checked_at)}`],
    p.series, `latency of ${p.name}`);
}

function metricCard(m) {
  return card(m, m.name, [m.detail, m.playbooks.length ? `watched by ${m.playbooks.join(", ")}` : null],
    m.series, `recent values of ${m.name}`);
}

function sourceCard(src) {
  const st = src.stats || {};
  const conditions = (src.conditions || []).map((c) => h("div", { class: `condition ${c.holding ? "holding" : ""}` },
    `${c.count}${c.at_least ? ` / ${c.at_least}` : ""} `, h("span", { class: "muted" }, c.condition),
    c.holding ? h("strong", {}, " holds") : null));
  const counts = `${(st.lines ?? 0).toLocaleString()} lines · ${st.files ?? 0} file(s) · last write ${ago(src.last_write_at)}`;
  const trouble = ["errors", "truncated", "decode_errors", "rotations", "truncations"].filter((k) => st[k])
    .map((k) => `${st[k]} ${k.replace("_", " ")}`).join(" · ");
  const series = (src.series || []).map(([t, v], i, a) => [t, i ? Math.max(0, v - a[i - 1][1]) : 0]).slice(1);
  return card(src, src.name, [src.pattern, counts, trouble || null, src.detail, ...conditions], series,
    `lines read per poll by ${src.name}`);
}

export function setLive(kind, text) {
  const el = $("live");
  el.className = `live ${kind}`;
  el.textContent = text;
}
