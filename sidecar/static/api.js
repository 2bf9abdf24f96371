// Talking to the sidecar: reads are open; every change goes through the API's own mutating
// routes with the bearer token, which the person types in once and which lives only in this
// tab's sessionStorage (gone when the tab closes; never in localStorage or a cookie).

import { $ } from "./dom.js";

const TOKEN = "suture.token";
const NAME = "suture.name";

export class Refused extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export class Cancelled extends Error {}

export async function read(path) {
  const res = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Refused(res.status, body.error || res.statusText);
  return body;
}

export const hasToken = () => sessionStorage.getItem(TOKEN) !== null;
export const who = () => sessionStorage.getItem(NAME) || "dashboard";

export function forget() {
  sessionStorage.removeItem(TOKEN);
}

export function askToken() {
  const dialog = $("token-dialog");
  const input = $("token-input");
  const name = $("token-name");
  input.value = "";
  name.value = sessionStorage.getItem(NAME) || "";
  dialog.showModal();
  input.focus();
  return new Promise((resolve) => {
    const done = (ok) => {
      form.removeEventListener("submit", submit);
      cancel.removeEventListener("click", dismiss);
      dialog.removeEventListener("cancel", dismiss);
      dialog.close();
      if (!ok) return resolve(null);
      sessionStorage.setItem(TOKEN, input.value.trim());
      if (name.value.trim()) sessionStorage.setItem(NAME, name.value.trim().slice(0, 128));
      resolve(input.value.trim());
    };
    const form = $("token-form");
    const cancel = $("token-cancel");
    const submit = (e) => { e.preventDefault(); done(true); };
    const dismiss = (e) => { e.preventDefault(); done(false); };
    form.addEventListener("submit", submit);
    cancel.addEventListener("click", dismiss);
    dialog.addEventListener("cancel", dismiss);
  });
}

// POST through the API; asks for the token first if this tab has none. A 401 forgets it.
// ``body`` may be a function, called after the token dialog (which also asks for a name).
export async function change(path, body = {}) {
  if (!hasToken() && (await askToken()) === null) throw new Cancelled("cancelled");
  if (typeof body === "function") body = body();
  const token = sessionStorage.getItem(TOKEN);
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(path, { method: "POST", headers, body: JSON.stringify(body), cache: "no-store" });
  const answer = await res.json().catch(() => ({}));
  if (res.status === 401) forget();
  if (!res.ok) throw new Refused(res.status, answer.error || res.statusText);
  return answer;
}
