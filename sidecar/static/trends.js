// Trends from the history: fixes per day by outcome, success rate and time to recovery per playbook,
// adjusted confidence over time.

import { read } from "./api.js";
import * as charts from "./charts.js";
import { $, family, fill, h, seconds } from "./dom.js";

let days = 30;
let lastTrends = null;

export function setDays(value) {
  days = value;
}

export async function refreshTrends() {
  const t = await read(`/api/dashboard/trends?days=${days}`);
  lastTrends = t;
  drawTrends();
}

export function drawTrends() {
  const t = lastTrends;
  if (!t) return;
  const width = (id) => Math.max(260, $(id).clientWidth);
  const days = [...new Set(t.per_day.map((r) => r.day))].sort();
  if (days.length) {
    const last = new Date(`${days[days.length - 1]}T00:00:00Z`);
    const first = new Date(`${days[0]}T00:00:00Z`);
    days.length = 0;
    for (let d = first; d <= last; d = new Date(d.getTime() + 86400e3)) days.push(d.toISOString().slice(0, 10));
  }
  const statuses = [...new Set(t.per_day.map((r) => r.status))].sort();
  const series = statuses.map((status) => ({
    name: status.replaceAll("_", " "), cls: family(status),
    values: days.map((d) => t.per_day.find((r) => r.day === d && r.status === status)?.fixes || 0),
  }));
  fill($("trend-days-chart"), days.length ? charts.stackedBars(days, series, { width: width("trend-days-chart"),
    label: "fixes per day by outcome" }) : charts.empty("no fixes in this period"));
  fill($("trend-days-legend"), series.map((s) => h("span", { class: `key ${s.cls}` }, s.name)));

  fill($("trend-rate-chart"), t.per_playbook.length ? charts.hbars(t.per_playbook.map((r) => ({
    label: r.playbook_id, value: r.success_rate ?? 0, cls: (r.success_rate ?? 0) >= 0.8 ? "ok" : (r.success_rate ?? 0) >= 0.5 ? "warn" : "bad",
    text: `${r.succeeded}/${r.fixes} · ${Math.round((r.success_rate ?? 0) * 100)}%${r.mttr_s !== null ? ` · MTTR ${seconds(r.mttr_s)}` : ""}`,
  })), { width: width("trend-rate-chart"), label: "success rate per playbook" }) : charts.empty("no applied fixes finished yet"));

  const group = (rows, value) => {
    const by = new Map();
    for (const r of rows) {
      if (!by.has(r.playbook_id)) by.set(r.playbook_id, []);
      by.get(r.playbook_id).push([Date.parse(r.at), value(r)]);
    }
    return [...by].map(([name, points]) => ({ name, points }));
  };
  const legend = (id, groups) => fill($(id), groups.map((g, i) => h("span", { class: `key s${i % 8}` }, g.name)));
  const recovery = group(t.recovery, (r) => r.seconds);
  fill($("trend-mttr-chart"), recovery.length ? charts.overTime(recovery, { width: width("trend-mttr-chart"), dots: true,
    unit: "s", label: "time to recovery" }) : charts.empty("no fix committed yet"));
  legend("trend-mttr-legend", recovery);
  const confidence = group(t.confidence, (r) => r.adjusted);
  const threshold = t.confidence.length ? t.confidence[t.confidence.length - 1].threshold : null;
  fill($("trend-conf-chart"), confidence.length ? charts.overTime(confidence, { width: width("trend-conf-chart"),
    max: 100, threshold, label: "adjusted confidence over time" }) : charts.empty("no decisions yet"));
  legend("trend-conf-legend", confidence);
}
