// Small helpers every page shares: the JSON API, form fields, dialogs, toasts, copying.
// User text only ever reaches the page through textContent, value and setAttribute, or
// inside the server's own autoescaped fragments (fragment()).

export const OFFLINE = "Couldn't reach Astra. Check your connection and try again.";
const SERVER_FAULT = "Something went wrong on our side. Try again in a moment.";

export function loginUrl() {
  return `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
}

/** A field's messages from a 422 body: {"detail": [{"loc": ["body", "domain"], "msg": ...}]}. */
function fieldMessages(detail) {
  const fields = {};
  if (!Array.isArray(detail)) return fields;
  for (const error of detail) {
    const loc = Array.isArray(error.loc) ? error.loc : [];
    const field = loc[0] === "body" && loc.length > 1 ? loc[1] : "";
    fields[field] ??= String(error.msg ?? "");
  }
  return fields;
}

/** fetch() as this browser (same origin, session cookie): the response, or null offline. A
 * 401 outside sign-in means the session ended: go to the sign-in page and come back here. */
async function send(url, init) {
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin", ...init });
  } catch {
    return null;
  }
  if (response.status === 401 && !url.startsWith("/api/auth/")) {
    location.assign(loginUrl());
    return new Promise(() => {});
  }
  return response;
}

async function jsonOf(response) {
  if (response.status === 204) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}

const offline = () => ({ ok: false, status: 0, data: null, fields: {}, problem: OFFLINE });

/** A refusal as the callers show it: the field messages of a 422, or one sentence. */
function refusal(status, data) {
  const detail = data?.detail;
  const fields = fieldMessages(detail);
  let problem = typeof detail === "string" ? detail : "";
  if (status >= 500 || (!problem && !Object.keys(fields).length)) problem = SERVER_FAULT;
  return { ok: false, status, data, fields, problem };
}

/** Call the JSON API. Resolves to {ok, status, data, fields, problem}; never rejects. */
export async function api(method, url, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await send(url, init);
  if (!response) return offline();
  const data = await jsonOf(response);
  if (!response.ok) return refusal(response.status, data);
  return { ok: true, status: response.status, data, fields: {}, problem: "" };
}

// Where the server's fragment routes are (integrations/pages.py): cards, one or a page.
export const CARDS = "/settings/integrations/cards";

// The page's policy (web/security.py) allows one Trusted Types policy, this one, and this
// module creates it first, so no other script can. It turns into HTML only the body that
// fragment() has just read from one of the server's fragment routes; any other string throws.
let fragmentBody = null;
const fromFragment = (html) => {
  if (html !== fragmentBody) throw new TypeError("Only fragment responses are parsed as HTML.");
  return html;
};
const fragmentPolicy = globalThis.trustedTypes?.createPolicy("astra-fragment", {
  createHTML: fromFragment,
}) ?? { createHTML: fromFragment };

/**
 * GET server-rendered markup (cards, drawn by the same templates as the page) from one of
 * this app's fragment routes. Resolves like api(), `data` a DocumentFragment, plus `headers`.
 */
export async function fragment(path) {
  const url = new URL(path, location.origin);
  const route = url.pathname === CARDS || url.pathname.startsWith(`${CARDS}/`);
  if (url.origin !== location.origin || !route) {
    throw new Error(`not a fragment route: ${path}`);
  }
  const response = await send(url.pathname + url.search, {
    headers: { Accept: "text/html" },
    redirect: "error",
  });
  if (!response) return offline();
  if (!response.ok) return refusal(response.status, await jsonOf(response));
  if (!response.headers.get("Content-Type")?.startsWith("text/html")) return refusal(500, null);
  const template = document.createElement("template");
  fragmentBody = await response.text();
  try {
    template.innerHTML = fragmentPolicy.createHTML(fragmentBody);
  } finally {
    fragmentBody = null;
  }
  const { status, headers } = response;
  return { ok: true, status, data: template.content, headers, fields: {}, problem: "" };
}

/** Show `message` under the field of `input` (or clear it), the way screen readers expect. */
export function setFieldError(input, message) {
  const error = document.getElementById(`${input.id}-error`);
  const help = document.getElementById(`${input.id}-help`);
  error.textContent = message || "";
  error.hidden = !message;
  if (help) help.classList.toggle("help-replaced", Boolean(message));
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

export function setHelp(input, text) {
  const help = document.getElementById(`${input.id}-help`);
  help.textContent = text;
  help.hidden = !text;
}

export function showAlert(alert, message) {
  alert.textContent = message || "";
  alert.hidden = !message;
}

export function setBusy(button, busy, busyLabel) {
  if (busy) {
    button.dataset.label = button.textContent;
    button.textContent = busyLabel;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
  } else {
    if (button.dataset.label) button.textContent = button.dataset.label;
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

// Dialogs: showModal() moves focus in and makes Escape close; focus goes back to the
// control that opened the dialog, or to where fallback(opener) says when that control is
// gone or hidden (the same button on a redrawn card; the empty state's button, once the
// first store is added).
const openers = new WeakMap();

export function openDialog(dialog, opener) {
  openers.set(dialog, opener ?? document.activeElement);
  dialog.showModal();
}

export function closeDialog(dialog, focusAfter) {
  if (focusAfter) openers.set(dialog, focusAfter);
  dialog.close();
}

export function restoreFocusOnClose(dialog, fallback) {
  dialog.addEventListener("close", () => {
    const opener = openers.get(dialog);
    const target = opener?.isConnected && opener.checkVisibility() ? opener : fallback(opener);
    target?.focus();
  });
}

export function el(tag, className, ...children) {
  const node = document.createElement(tag);
  node.className = className;
  node.append(...children);
  return node;
}

/** Show one of a dialog's panels, hide the others, and name the dialog after its title. */
export function showPanel(panel, focus) {
  const dialog = panel.closest("dialog");
  for (const each of dialog.querySelectorAll(".dialog-panel")) each.hidden = each !== panel;
  dialog.setAttribute("aria-labelledby", panel.querySelector("h2").id);
  focus?.focus();
}

/** "seconds ago", "3 min ago", "2 h ago", "5 d ago": as ago() in web/templating.py says it. */
export function ago(date, now = Date.now()) {
  const minutes = Math.floor((now - date) / 60000);
  if (minutes < 1) return "seconds ago";
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  return hours < 24 ? `${hours} h ago` : `${Math.floor(hours / 24)} d ago`;
}

export const exactTime = (date) =>
  date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });

/** Make `time` say how long ago `iso` was, with the exact local time as its title. */
export function timeAgo(time, iso = time.dateTime) {
  const date = new Date(iso);
  time.dateTime = iso;
  time.textContent = ago(date);
  time.title = exactTime(date);
  return time;
}

export function toast(message) {
  const region = document.getElementById("toasts");
  if (!region) return;
  const item = document.createElement("div");
  item.className = "toast";
  item.textContent = message;
  region.append(item);
  setTimeout(() => {
    item.classList.add("toast-leaving");
    setTimeout(() => item.remove(), 200);
  }, 4000);
}

/** Copy buttons: data-copy names the read-only input whose value they copy. */
export function initCopyButtons(root, announce) {
  for (const button of root.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const input = document.getElementById(button.dataset.copy);
      let copied = false;
      try {
        await navigator.clipboard.writeText(input.value);
        copied = true;
      } catch {
        // No async clipboard (a plain-http origin): copy the selected text the old way.
        input.select();
        copied = document.execCommand("copy");
      }
      const label = button.querySelector(".copy-label");
      if (!copied) {
        input.select();
        announce("Press Ctrl+C or ⌘C to copy the selected text.");
        return;
      }
      label.textContent = "Copied ✓";
      button.classList.add("copied");
      announce(`${input.labels[0].textContent} copied.`);
      clearTimeout(button.resetTimer);
      button.resetTimer = setTimeout(() => {
        label.textContent = "Copy";
        button.classList.remove("copied");
      }, 2000);
    });
  }
}

export function resetCopyButtons(root) {
  for (const button of root.querySelectorAll("[data-copy]")) {
    clearTimeout(button.resetTimer);
    button.querySelector(".copy-label").textContent = "Copy";
    button.classList.remove("copied");
  }
}

export function initHeader() {
  const signOut = document.getElementById("sign-out");
  signOut?.addEventListener("click", async () => {
    setBusy(signOut, true, "Signing out…");
    await api("POST", "/api/auth/logout");
    location.assign("/login");
  });
}
