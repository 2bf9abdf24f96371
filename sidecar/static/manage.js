// What a person can change: suspend or resume a playbook, roll a backup back (after a confirmation
// listing its files), check now. Every change goes through the API with the token.

import { change, read, who } from "./api.js";
import { $, ago, badge, fill, h, num, time } from "./dom.js";
import { diff, refreshFixes } from "./fixes.js";
import { refreshState } from "./health.js";
import { failure, later, toast } from "./ui.js";

export async function refreshPlaybooks() {
  const [loaded, live] = await Promise.all([read("/api/monitoring/playbooks"), read("/api/dashboard/playbooks")]);
  fill($("playbooks-meta"), `${loaded.loaded.length} loaded · version ${loaded.version ?? "—"} · last (re)load ${time(loaded.loaded_at)}`
    + ` · ${loaded.reloads ?? 0} reload(s), ${loaded.reload_errors ?? 0} with errors`);
  fill($("playbook-errors"), loaded.errors.map((e) => h("li", {}, h("code", {}, e.rendered || `${e.file}:${e.line}: ${e.message}`))));
  const byId = new Map(live.playbooks.map((p) => [p.id, p]));
  fill($("playbooks").tBodies[0], loaded.loaded.map((pb) => {
    const p = byId.get(pb.id) || {};
    const act = p.suspended ? "resume" : "suspend";
    return h("tr", { "data-playbook": pb.id },
      h("td", {}, h("strong", {}, pb.id), h("div", { class: "muted small" }, pb.file)),
      h("td", {}, pb.mode), h("td", {}, h("code", {}, pb.version)),
      h("td", {}, `${num(pb.confidence)} → ${num(p.adjusted_confidence)}`, h("div", { class: "muted small" },
        `now: ${p.decision_now ?? "—"} (threshold ${num(p.threshold, 0)})`)),
      h("td", {}, p.last_status ? badge(p.last_status) : "—", h("div", { class: "muted small" }, ago(p.last_fix_at))),
      h("td", {}, p.suspended ? h("span", { class: "badge bad" }, "suspended") : h("span", { class: "badge ok" }, "active")),
      h("td", {}, h("button", { type: "button", onclick: (e) => suspendOrResume(pb.id, act, e.target) },
        act === "resume" ? "Resume" : "Suspend")));
  }));
}

async function suspendOrResume(id, act, button) {
  button.disabled = true;
  try {
    await change(`/api/playbooks/${encodeURIComponent(id)}/${act}`, () => ({ by: who() }));
    toast(`${id} ${act === "resume" ? "resumed" : "suspended"}`, "ok");
    await refreshPlaybooks();
  } catch (err) { failure(`${act} ${id}`, err); } finally { button.disabled = false; }
}

// -- backups and rollback --

export async function refreshBackups() {
  const data = await read("/api/monitoring/backups");
  fill($("backups"), data.backups.length ? data.backups.slice(0, 10).map((b) => h("li", { "data-backup": b.backup_id },
    h("div", {}, h("code", {}, b.backup_id), " ", h("span", { class: "muted" }, `${ago(b.created_at)} · ${b.playbook_id}`)),
    h("div", { class: "muted" }, b.files.join(", ")),
    h("button", { type: "button", onclick: () => previewRollback(b.backup_id) }, "Roll back…")))
    : h("li", { class: "empty" }, "no backups yet"));
}

const STATE_TEXT = {
  restore: "will be restored (it holds what suture wrote)",
  unchanged: "already as in the backup: left alone",
  changed: "changed by someone since suture wrote it: only a forced rollback overwrites it",
  missing: "missing now: only a forced rollback writes it back",
};

async function previewRollback(id) {
  let p;
  try { p = await read(`/api/dashboard/backups/${encodeURIComponent(id)}`); } catch (err) { failure(`Backup ${id}`, err); return; }
  const dialog = $("rollback-dialog");
  fill($("rollback-body"),
    h("p", {}, "Backup ", h("code", {}, p.backup_id), ` of ${p.playbook_id} (fix `, h("code", {}, p.fix_id), `, ${p.fix_status ?? "—"}), taken ${time(p.created_at)}.`),
    h("ul", { class: "files" }, p.files.map((f) => h("li", { class: `file ${f.state}` }, h("code", {}, f.path), " — ", STATE_TEXT[f.state]))),
    p.changes.length ? [h("p", {}, "The edit it undoes:"), diff(p.changes.map((c) => ({ ...c, old: c.new, new: c.old })))] : null,
    p.needs_force ? h("p", { class: "warn-text" }, "Some files changed since; rolling back overwrites those changes.") : null);
  const confirm = $("rollback-confirm");
  confirm.textContent = p.needs_force ? "Roll back anyway (force)" : "Roll back";
  const close = () => { dialog.close(); confirm.onclick = null; };
  $("rollback-cancel").onclick = close;
  confirm.onclick = async () => {
    close();
    try {
      const answer = await change(`/api/monitoring/rollback/${encodeURIComponent(id)}${p.needs_force ? "?force=true" : ""}`, { by: "dashboard" });
      toast(`Rolled back ${id}: ${answer.restored.length ? answer.restored.join(", ") : "nothing needed restoring"}`, "ok");
      later(refreshBackups);
      later(refreshFixes);
    } catch (err) { failure(`Roll back ${id}`, err); }
  };
  dialog.showModal();
}

export async function checkNow(e) {
  e.target.disabled = true;
  try {
    const answer = await change("/api/monitoring/trigger-check");
    toast(`Checked: ${answer.checked.probes.length} probe(s) answered, ${answer.checked.signals_active} condition(s) hold`, "ok");
    await refreshState();
  } catch (err) { failure("Check now", err); } finally { e.target.disabled = false; }
}
