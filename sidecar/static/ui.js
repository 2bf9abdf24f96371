// Page plumbing shared by the panels: the toast, refusals, coalesced reads, the token button.

import { Cancelled, Refused, hasToken } from "./api.js";
import { $, fill } from "./dom.js";

export function toast(text, kind = "info") {
  const el = $("toast");
  fill(el, text);
  el.className = `toast ${kind}`;
  el.hidden = false;
  el.setAttribute("role", kind === "error" ? "alert" : "status");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 12000 : 5000);
}

export function every(ms, fn) {
  const run = async () => {
    if (!document.hidden) await fn().catch(() => {});
    setTimeout(run, ms);
  };
  setTimeout(run, ms);
}

const soon = new Map();
export function later(fn, ms = 250) {  // coalesce bursts of events into one read
  clearTimeout(soon.get(fn));
  soon.set(fn, setTimeout(() => fn().catch(() => {}), ms));
}

export function failure(what, err) {
  if (err instanceof Cancelled) return "";
  const message = err instanceof Refused
    ? `${what}: refused (${err.status}): ${err.message}${err.status === 401 ? " — the token was forgotten; try again to enter it" : ""}`
    : `${what}: ${err.message}`;
  toast(message, "error");
  updateToken();
  return message;
}

export function updateToken() {
  $("token-button").textContent = hasToken() ? "Forget token" : "Token";
}
