// The group on PostgreSQL (fleet: in suture.yaml): the connection, the playbooks suspended for the group (with
// Resume), canaries, leases held, the success rate per playbook and the replicas. All of it was written by some
// sidecar of the group, perhaps a hostile one: it goes into the page as text nodes only (h, fill), never as HTML.

import { change, read, who } from "./api.js";
import { $, ago, fill, h, num, time } from "./dom.js";
import { failure, toast } from "./ui.js";

const ID = /^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;  // what the API takes as a playbook id
const CAUGHT_UP = 30000;  // ms a Resume done here is shown as such while the group's view catches up
const resumed = new Map();  // playbook -> Date.now() when this tab resumed it
const CANARY = { running: "warn", succeeded: "ok", failed: "bad", abandoned: "muted", resumed: "muted" };

let configured = null;  // a promise: whether the sidecar has fleet: (its config does not change while it runs)

export async function refreshFleet() {
  configured ??= read("/api/dashboard/state").then((s) => s.fleet === true, (err) => { configured = null; throw err; });
  if (!(await configured)) return;  // the section stays hidden, and /api/fleet is never asked (it would be 404)
  const data = await read("/api/fleet");
  $("fleet-section").hidden = false;
  fill($("fleet-group"), `· group ${data.group} · this sidecar ${data.name}`);
  connection(data.state);
  const o = data.overview;
  fill($("fleet-problems"), o ? [
    ...o.errors.map((e) => h("li", {}, `not read: ${e}`)),
    ...o.cut.map((c) => h("li", { class: "muted" }, `${c}: only the first ${o.limit} rows are shown (history --fleet has all)`)),
  ] : []);
  suspensions(o);
  rows("fleet-canaries", o, o?.canaries, 6, (c) => h("tr", { "data-playbook": c.playbook_id, "data-version": c.version },
    h("td", {}, c.playbook_id), h("td", {}, h("code", {}, c.version)),
    h("td", {}, tag(c.expired ? "muted" : CANARY[c.state] || "muted", c.expired ? `${c.state} (expired)` : c.state),
      c.detail ? h("div", { class: "muted small" }, c.detail) : null),
    h("td", {}, h("code", {}, c.fix_id)), h("td", {}, c.sidecar), h("td", {}, ago(c.started_at))));
  rows("fleet-leases", o, o?.leases, 5, (l) => h("tr", { "data-playbook": l.playbook_id },
    h("td", {}, l.playbook_id), h("td", {}, h("code", {}, l.key || "—")), h("td", {}, l.holder),
    h("td", {}, String(l.token)), h("td", {}, until(l.expires_at))));
  rows("fleet-outcomes", o, o?.outcomes, 6, (r) => h("tr", { "data-playbook": r.playbook_id },
    h("td", {}, r.playbook_id), h("td", {}, String(r.successes)), h("td", {}, String(r.failures)),
    h("td", {}, r.rate === null ? "—" : `${num(r.rate * 100, 0)}%`), h("td", {}, String(r.sidecars)),
    h("td", {}, ago(r.last_finished_at))));
  rows("fleet-replicas", o, o?.replicas, 6, (r) => h("tr", { "data-sidecar": r.sidecar, class: r.stale ? "stale" : "" },
    h("td", {}, h("strong", {}, r.sidecar), r.own ? h("span", { class: "muted" }, " (this sidecar)") : null),
    h("td", {}, r.version || "—"), h("td", {}, String(r.playbooks)), h("td", {}, String(r.in_flight)),
    h("td", {}, time(r.started_at)),
    h("td", {}, r.stale ? tag("warn", "stale") : tag("ok", "live"), " ", ago(r.seen_at))));
}

function connection(state) {
  const el = $("fleet-connection");
  if (!state) {
    el.className = "badge muted";
    fill(el, "not connected yet");
    fill($("fleet-meta"), "the sidecar has not tried the group's PostgreSQL yet");
    return;
  }
  el.className = `badge ${state.connected ? "ok" : "bad"}`;
  fill(el, state.connected ? "connected" : "disconnected");
  fill($("fleet-meta"), state.connected ? `connected since ${time(state.since)}`
    : [`disconnected since ${time(state.since)} (${ago(state.since)})`,
      state.failures ? ` · ${state.failures} failed attempt(s)` : "",
      state.next_attempt_at ? ` · next attempt ${time(state.next_attempt_at)}` : "",
      state.last_error ? [" · last error: ", h("code", {}, state.last_error)] : ""]);
}

function rows(id, overview, items, columns, row) {
  const body = $(id).tBodies[0];
  const empty = (text) => h("tr", {}, h("td", { class: "empty", colspan: columns }, text));
  if (!overview) return fill(body, empty("not read yet"));
  fill(body, items.length ? items.map(row) : empty("none"));
}

function suspensions(o) {
  const list = $("fleet-suspensions");
  if (!o) return fill(list, h("li", { class: "empty" }, "not read yet"));
  const now = Date.now();
  for (const [id, at] of resumed) if (now - at > CAUGHT_UP || !o.suspensions.some((s) => s.playbook_id === id)) resumed.delete(id);
  fill(list, o.suspensions.length ? o.suspensions.map((s) => h("li", { "data-playbook": s.playbook_id },
    h("div", {}, h("strong", {}, s.playbook_id), " ", tag("bad", "suspended")),
    h("div", {}, s.reason),
    h("div", { class: "muted small" }, `by ${s.by || "?"} · ${ago(s.since)}`, s.cause_fix_id ? ` · canary fix ${s.cause_fix_id}` : ""),
    resumed.has(s.playbook_id) ? h("div", { class: "muted small" }, "resumed here; the group's view catches up within seconds")
      : ID.test(s.playbook_id) ? h("button", { type: "button", onclick: (e) => resume(s.playbook_id, e.target) }, "Resume")
        : h("div", { class: "muted small" }, "not a playbook id any sidecar loads: lift it in SQL if needed")))
    : h("li", { class: "empty" }, "no playbook is suspended for the group"));
}

async function resume(playbook, button) {
  button.disabled = true;
  try {
    const answer = await change("/api/fleet/resume", () => ({ playbook, by: who() }));
    if (answer.changed) {
      resumed.set(playbook, Date.now());
      toast(`Resumed ${playbook} for group ${answer.group}`, "ok");
    } else {
      toast(`${playbook} was not suspended for the group any more`);
    }
    await refreshFleet();
  } catch (err) { failure(`Resume ${playbook} for the group`, err); } finally { button.disabled = false; }
}

const tag = (fam, text) => h("span", { class: `badge ${fam}` }, text);

function until(iso) {
  if (!iso) return "—";
  const s = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
  return s > 0 ? `in ${s}s (${time(iso)})` : time(iso);
}
