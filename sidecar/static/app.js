// The dashboard: health (polled), the sidecar's events (server-sent), fixes, trends, playbooks,
// backups and the fleet (re-read when an event says they changed, and now and then), and the controls.

import { askToken, forget, hasToken } from "./api.js";
import { $, family, h, time } from "./dom.js";
import { drawTimeline, refreshFixes, refreshProposals } from "./fixes.js";
import { refreshFleet } from "./fleet.js";
import { refreshState, setLive } from "./health.js";
import { checkNow, refreshBackups, refreshPlaybooks } from "./manage.js";
import { drawTrends, refreshTrends, setDays } from "./trends.js";
import { every, later, toast, updateToken } from "./ui.js";

const POLL_STATE = 2000;
const POLL_LISTS = 10000;
const POLL_TRENDS = 60000;
const POLL_FLEET = 5000;  // the sidecar's fleet worker reads the group every 5 s
const FINAL = new Set(["succeeded", "rolled_back", "failed", "inconclusive", "conflict", "exhausted", "proposed",
  "shadow", "skipped"]);

// -- live events --

function connect() {
  const source = new EventSource("/api/dashboard/events");
  source.onopen = () => setLive("on", "live");
  source.onmessage = (msg) => {
    let ev;
    try { ev = JSON.parse(msg.data); } catch { return; }
    showEvent(ev);
    react(ev.kind);
  };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {  // refused (too many streams) or gone: poll, retry later
      setLive("off", "polling");
      setTimeout(connect, 30000);
    } else {
      setLive("off", "reconnecting…");
    }
  };
}

function showEvent(ev) {
  const list = $("events");
  if (list.querySelector(`[data-seq="${ev.seq}"]`)) return;
  const fam = ["detected", "decided", "backed_up", "applied", "validating"].includes(ev.kind) ? "warn"
    : ev.kind === "error" || ev.kind === "reload_failed" || ev.kind === "suspended" ? "bad" : family(ev.kind);
  list.prepend(h("li", { "data-seq": ev.seq }, h("time", { datetime: ev.at }, time(ev.at)), " ",
    h("span", { class: `badge ${fam}` }, ev.kind.replaceAll("_", " ")), " ", h("span", { class: "message" }, ev.message)));
  while (list.children.length > 100) list.lastElementChild.remove();
}

function react(kind) {
  later(refreshFixes);
  if (FINAL.has(kind) || kind === "approved") { later(refreshProposals); later(refreshTrends, 800); }
  if (["backed_up", "manual_rollback", "rolled_back"].includes(kind)) later(refreshBackups);
  if (["loaded", "reloaded", "reload_failed", "suspended", "resumed"].includes(kind) || FINAL.has(kind)) {
    later(refreshPlaybooks);
  }
  if (kind === "fleet_resumed") later(refreshFleet);
  later(refreshState, 100);
}

// -- start --

function start() {
  $("check-now").addEventListener("click", checkNow);
  $("token-button").addEventListener("click", () => {
    if (hasToken()) {
      forget();
      toast("Token forgotten");
      updateToken();
    } else {
      askToken().then(updateToken);
    }
  });
  $("token-dialog").addEventListener("close", updateToken);
  for (const id of ["filter-playbook", "filter-outcome"]) $(id).addEventListener("change", () => refreshFixes().catch(() => {}));
  $("trend-days").addEventListener("change", (e) => { setDays(Number(e.target.value)); refreshTrends().catch(() => {}); });
  let resize;
  window.addEventListener("resize", () => { clearTimeout(resize); resize = setTimeout(() => { drawTimeline(); drawTrends(); }, 150); });
  updateToken();
  const first = [refreshState, refreshProposals, refreshFixes, refreshTrends, refreshPlaybooks, refreshBackups,
    refreshFleet];
  Promise.allSettled(first.map((fn) => fn())).then(() => document.body.setAttribute("data-ready", "true"));
  every(POLL_STATE, refreshState);
  every(POLL_LISTS, () => Promise.all([refreshProposals(), refreshFixes(), refreshBackups(), refreshPlaybooks()]));
  every(POLL_TRENDS, refreshTrends);
  every(POLL_FLEET, refreshFleet);
  connect();
}

start();
