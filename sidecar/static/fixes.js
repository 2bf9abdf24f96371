// Fixes: the timeline (a lane per playbook, a row per fix) and the proposals waiting for a person.

import { change, read, who } from "./api.js";
import * as charts from "./charts.js";
import { $, badge, family, fill, h, num, seconds, time } from "./dom.js";
import { failure, toast } from "./ui.js";

const refusals = new Map();  // proposal id -> why the last approval was refused (kept across re-renders)
let lastFixes = [];
const reports = new Map();  // fix id -> its report, while shown

function fixQuery() {
  const params = new URLSearchParams({ limit: "100" });
  if ($("filter-playbook").value) params.set("playbook", $("filter-playbook").value);
  if ($("filter-outcome").value) params.set("outcome", $("filter-outcome").value);
  return params;
}

function options(select, values, extra = []) {
  const current = select.value;
  const all = [...new Set([...values, ...extra, current].filter(Boolean))].sort();
  fill(select, h("option", { value: "" }, "all"), all.map((v) => h("option", { value: v }, v.replaceAll("_", " "))));
  select.value = current;
}

export async function refreshFixes() {
  const data = await read(`/api/dashboard/fixes?${fixQuery()}`);
  options($("filter-playbook"), data.playbooks);
  options($("filter-outcome"), data.outcomes, ["in_progress"]);
  lastFixes = data.fixes;
  drawTimeline();
  const list = $("timeline");
  fill(list, data.fixes.length ? data.fixes.map(fixRow) : h("li", { class: "empty" }, "no fixes yet"));
}

export function drawTimeline() {
  const box = $("timeline-chart");
  const fixes = lastFixes || [];
  if (!fixes.length) return fill(box);
  const byPlaybook = new Map();
  for (const f of fixes) {
    if (!byPlaybook.has(f.playbook_id)) byPlaybook.set(f.playbook_id, []);
    byPlaybook.get(f.playbook_id).push({
      start: Date.parse(f.started_at), end: f.finished_at ? Date.parse(f.finished_at) : null,
      cls: family(f.status), text: `${f.playbook_id} ${f.id}: ${f.status} at ${time(f.started_at)}`,
    });
  }
  const rows = [...byPlaybook].map(([name, items]) => ({ name, items }));
  fill(box, charts.lanes(rows, { width: Math.max(280, box.clientWidth), label: "fixes over time, per playbook" }));
}

function gauge(f) {
  const { base_confidence: base, adjusted_confidence: adj, threshold } = f;
  if (adj === null || adj === undefined) return null;
  const above = adj >= threshold;
  const bar = charts.svg("svg", { viewBox: "0 0 100 10", width: 100, height: 10, class: "gauge", "aria-hidden": "true" },
    charts.svg("rect", { x: 0, y: 3, width: 100, height: 4, class: "track" }),
    charts.svg("rect", { x: 0, y: 3, width: Math.max(0, Math.min(100, adj)), height: 4, class: `bar ${above ? "ok" : "ask"}` }),
    charts.svg("line", { x1: threshold, x2: threshold, y1: 0, y2: 10, class: "threshold-mark" }),
    base !== null ? charts.svg("circle", { cx: Math.max(0, Math.min(100, base)), cy: 5, r: 2.5, class: "base-mark" }) : null);
  return h("span", { class: "confidence", title: f.reason || "" }, bar,
    ` ${num(base)} → ${num(adj)} ${above ? "≥" : "<"} ${num(threshold, 0)}`,
    h("span", { class: "muted" }, ` (${f.successes ?? 0} ok / ${f.failures ?? 0} failed)`));
}

export function diff(changes) {
  if (!changes || !changes.length) return null;
  return h("div", { class: "diff" }, changes.map((c) => h("div", { class: "change" },
    h("div", { class: "where" }, `${c.file}${c.key ? ` · ${c.key}` : ""}${c.line ? ` (line ${c.line})` : ""}`),
    h("div", { class: "del" }, `- ${c.old}`), h("div", { class: "ins" }, `+ ${c.new}`))));
}

function fixRow(f) {
  const validation = f.verdict
    ? h("span", {}, "validation ", badge(f.verdict === "passed" ? "succeeded" : "failed", f.verdict),
      f.validation_reason ? h("span", { class: "muted" }, ` ${f.validation_reason}`) : null)
    : null;
  const pending = f.status === "proposed" && !f.approved;
  const details = h("div", { class: "steps", hidden: true });
  const more = h("button", { type: "button", class: "link", onclick: () => toggleSteps(f.id, details, more) }, "journal");
  const reportBox = h("div", { class: "report", hidden: true });
  const report = h("button", { type: "button", class: "link", "aria-expanded": "false",
    onclick: () => toggleReport(f.id, reportBox, report) }, "report");
  if (reports.has(f.id)) {  // open before the timeline was redrawn: show it again, then read it afresh
    showReport(reports.get(f.id), reportBox, report);
    loadReport(f.id, reportBox, report).catch(() => {});
  }
  return h("li", { class: `fix ${family(f.status)}`, "data-fix": f.id, "data-status": f.status },
    h("div", { class: "fix-head" },
      h("time", { datetime: f.started_at }, time(f.started_at)), h("strong", {}, f.playbook_id),
      f.group_key ? h("code", {}, f.group_key) : null, badge(f.status), h("span", { class: "muted" }, `decision: ${f.decision}`),
      f.decision === "apply" && f.seconds !== null ? h("span", { class: "muted" }, `took ${seconds(f.seconds)}`) : null),
    h("div", { class: "fix-body" }, gauge(f), diff(f.changes), validation,
      f.errors_before !== null ? h("span", { class: "muted" }, `errors ${f.errors_before} → ${f.errors_after ?? "…"}`) : null,
      f.detail ? h("div", { class: "muted detail" }, f.detail) : null,
      f.approved_by ? h("div", { class: "muted" }, `approved by ${f.approved_by}`) : null),
    h("div", { class: "fix-foot" }, h("code", { class: "muted" }, f.id),
      f.backup_id ? h("code", { class: "muted" }, f.backup_id) : null,
      pending ? h("span", { class: "badge ask" }, "waiting for approval (above)") : null,
      more, report),
    details, reportBox);
}

// The incident report (GET /api/fixes/{id}/report): its Markdown shown as text, never parsed as HTML.
// Open reports stay open when the timeline is redrawn (fix id -> the report last read).
async function toggleReport(id, box, button) {
  if (!box.hidden) {
    reports.delete(id);
    box.hidden = true;
    button.setAttribute("aria-expanded", "false");
    return;
  }
  try { await loadReport(id, box, button); } catch (err) { failure("report", err); }
}

async function loadReport(id, box, button) {
  const report = await read(`/api/fixes/${encodeURIComponent(id)}/report`);
  reports.set(id, report);
  showReport(report, box, button);
}

function showReport(report, box, button) {
  const copy = h("button", { type: "button", class: "copy-report", onclick: () => copyText(report.markdown, copy) },
    "Copy");
  fill(box, h("div", { class: "report-head" }, h("strong", {}, report.title), copy),
    h("pre", { class: "report-text" }, report.markdown));
  box.hidden = false;
  button.setAttribute("aria-expanded", "true");
}

// The clipboard API where the page may use it (a secure context: localhost, https), else a selected textarea.
export async function copyText(text, button) {
  try {
    if (navigator.clipboard && window.isSecureContext) await navigator.clipboard.writeText(text);
    else {
      const area = h("textarea", { class: "copy-buffer", readonly: true, "aria-hidden": "true" });
      area.value = text;
      document.body.append(area);
      area.select();
      const ok = document.execCommand("copy");
      area.remove();
      if (!ok) throw new Error("the browser refused to copy");
    }
    toast("Report copied (Markdown)", "ok");
    button.textContent = "Copied";
  } catch (err) { failure("copy", err); }
}

async function toggleSteps(id, box, button) {
  if (!box.hidden) { box.hidden = true; return; }
  try {
    const fix = await read(`/api/fixes/${encodeURIComponent(id)}`);
    fill(box, h("ol", {}, (fix.steps || []).map((s) => h("li", {}, h("time", {}, time(s.at)), " ", h("strong", {}, s.step), " ",
      h("span", { class: "muted" }, Object.keys(s.detail || {}).length ? JSON.stringify(s.detail) : "")))));
    box.hidden = false;
    button.setAttribute("aria-expanded", "true");
  } catch (err) { failure("journal", err); }
}

export async function refreshProposals() {
  const data = await read("/api/proposals");
  fill($("proposals"), data.proposals.length ? data.proposals.map((p) => h("li", { class: "proposal", "data-fix": p.id },
    h("div", { class: "fix-head" }, h("time", {}, time(p.started_at)), h("strong", {}, p.playbook_id),
      p.group_key ? h("code", {}, p.group_key) : null, gauge(p)),
    diff(p.changes), h("div", { class: "muted" }, p.reason || ""),
    h("div", { class: "fix-foot" }, h("code", { class: "muted" }, p.id),
      h("button", { type: "button", class: "primary", onclick: (e) => approve(p.id, e.target) }, "Approve")),
    h("p", { class: "row-error", role: "alert", hidden: !refusals.has(p.id) }, refusals.get(p.id) || "")))
    : h("li", { class: "empty" }, "nothing to approve"));
}

async function approve(id, button) {
  button.disabled = true;
  try {
    const answer = await change(`/api/proposals/${encodeURIComponent(id)}/approve`, () => ({ by: who() }));
    refusals.delete(id);
    toast(`Approved ${id}: fix ${answer.fix_id} is ${answer.status}`, "ok");
  } catch (err) {
    const message = failure(`Approve ${id}`, err);
    if (message) refusals.set(id, message);
  } finally {
    button.disabled = false;
  }
  await Promise.all([refreshProposals(), refreshFixes()]).catch(() => {});
}
