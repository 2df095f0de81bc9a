// The store dialog's "Connect the store's API" section, and what follows saving credentials:
// check them, then set the order webhooks up, each step shown while it runs. Credentials are
// write-only: the section says which kind is saved, never a value; Replace sends new ones,
// Remove sends `credentials: null` once confirmed.

import { api, el, setBusy, setFieldError, showAlert, timeAgo, toast } from "./ui.js";

const $ = (id) => document.getElementById(id);

const KINDS = {
  shopify_app: { label: "Shopify app (client ID and secret)", platform: "shopify" },
  shopify_token: { label: "Shopify legacy custom app", platform: "shopify" },
  woocommerce_key: { label: "WooCommerce REST API key", platform: "woocommerce" },
};
// Each kind's inputs by the key the API takes (schemas.py): `prefix` is how the platform's
// values start; an `optional` one may stay empty.
const INPUTS = {
  shopify_app: [
    { id: "cred-client-id", key: "client_id", label: "client ID" },
    { id: "cred-client-secret", key: "client_secret", label: "client secret" },
  ],
  shopify_token: [
    { id: "cred-access-token", key: "access_token", label: "access token" },
    { id: "cred-api-secret", key: "client_secret", label: "API secret key", optional: true },
  ],
  woocommerce_key: [
    { id: "cred-consumer-key", key: "consumer_key", label: "consumer key", prefix: "ck_" },
    { id: "cred-consumer-secret", key: "consumer_secret", label: "consumer secret", prefix: "cs_" },
  ],
};
const SPECS = Object.values(INPUTS).flat();
const FINISH = "Finish the store's API credentials, or clear them, to save.";
const KEYS_PAGE = "WooCommerce › Settings › Advanced › REST API";
// When a store is slow, the step says it is still waiting rather than look stuck.
const SLOW_MS = 4000;

const section = $("cred-section");
const summary = $("cred-summary");
const savedRow = $("cred-saved");
const buttons = $("cred-buttons");
const confirmBox = $("cred-confirm");
const legacy = $("cred-legacy");
const keepSaved = section.querySelector('[data-cred="keep-saved"]');
const removeButton = confirmBox.querySelector('[data-cred="confirm-remove"]');

// saved: the kind stored ("" none). mode: "new" (nothing saved), "saved" (the saved row),
// "replace" (new values for saved ones). submitted: every problem shows, not just touched.
const cred = { saved: "", mode: "new", touched: new Set(), serverErrors: {}, submitted: false };
let hooks = { changed: () => {}, storeId: () => null, removed: () => {} };

/** The credentials `platform` takes, as the form has them (Shopify's by the legacy box). */
function kindFor(platform) {
  if (platform === "woocommerce") return "woocommerce_key";
  if (platform === "shopify") return legacy.checked ? "shopify_token" : "shopify_app";
  return "";
}

const entering = () => cred.mode !== "saved" && section.open;

/** CredentialValue's rule (schemas.py), and WooCommerce's prefixes. */
function valueProblem(spec, raw, groupFilled) {
  const value = raw.trim();
  if (!value) return groupFilled && !spec.optional ? `Enter the ${spec.label} too.` : "";
  if (!/^[!-~]+$/u.test(value)) {
    return `A ${spec.label} has no spaces or accented letters: copy it again.`;
  }
  if (spec.prefix && !value.startsWith(spec.prefix)) {
    return `WooCommerce ${spec.label}s start with ${spec.prefix}. Copy it from ${KEYS_PAGE}.`;
  }
  if (value.length < 8) return `That's too short: copy the whole ${spec.label}.`;
  return value.length > 500 ? `That's too long: copy just the ${spec.label}.` : "";
}

/** Draw the section for `platform`; resolves to what keeps Save disabled, or "". */
export function renderCredentials(platform) {
  const kind = kindFor(platform);
  for (const part of section.querySelectorAll("[data-creds]")) {
    part.hidden = !part.dataset.creds.split(" ").includes(kind);
  }
  savedRow.hidden = cred.mode !== "saved";
  section.hidden = cred.mode === "saved";
  keepSaved.hidden = cred.mode !== "replace";
  summary.textContent =
    cred.mode === "replace" ? "New credentials for the store's API" : "Connect the store's API";
  const specs = entering() ? (INPUTS[kind] ?? []) : [];
  const filled = specs.some((spec) => $(spec.id).value.trim());
  let reason = "";
  for (const spec of SPECS) {
    const input = $(spec.id);
    const active = specs.includes(spec);
    const message = active
      ? cred.serverErrors[spec.id] || valueProblem(spec, input.value, filled)
      : "";
    if (message) reason = FINISH;
    const shown = cred.submitted || filled || cred.touched.has(spec.id);
    setFieldError(input, shown ? message : "");
  }
  if (cred.mode === "saved" && platform && KINDS[cred.saved].platform !== platform) {
    reason = "Replace or remove the saved credentials to change the platform.";
  }
  return reason;
}

/** The `credentials` to send, or undefined: none entered (the section is optional). */
export function credentialsBody(platform) {
  const kind = kindFor(platform);
  if (!entering() || !kind) return undefined;
  const body = {};
  for (const spec of INPUTS[kind]) {
    const value = $(spec.id).value.trim();
    if (value) body[spec.key] = value;
  }
  return Object.keys(body).length ? body : undefined;
}

/** After a submit: show every problem the section has. */
export function submittedCredentials() {
  cred.submitted = true;
}

/**
 * A 422 about the credentials: the message under the input it names (focused), else the
 * sentence, for the form's alert. "" when the refusal is not about them.
 */
export function credentialsRefused(detail, platform) {
  const errors = Array.isArray(detail)
    ? detail.filter((error) => Array.isArray(error.loc) && error.loc[1] === "credentials")
    : [];
  if (!errors.length) return "";
  const specs = INPUTS[kindFor(platform)] ?? [];
  // A union's other members report the fields they miss or don't take: not the point.
  for (const error of errors) {
    const spec = specs.find((each) => each.key === error.loc.at(-1));
    if (spec && !["missing", "extra_forbidden"].includes(error.type)) {
      cred.serverErrors[spec.id] = String(error.msg);
      hooks.changed();
      $(spec.id).focus();
      return "";
    }
  }
  return String(errors[0].msg);
}

function setMode(mode) {
  cred.mode = mode;
  confirmBox.hidden = true;
  buttons.hidden = false;
  if (mode !== "saved") section.open = mode === "replace" || section.open;
  hooks.changed();
}

/** Start the section afresh: for a new store, or one whose saved credentials are `saved`. */
export function resetCredentials(saved) {
  cred.saved = saved || "";
  cred.touched = new Set();
  cred.serverErrors = {};
  cred.submitted = false;
  for (const spec of SPECS) $(spec.id).value = "";
  legacy.checked = saved === "shopify_token";
  section.open = false;
  $("cred-kind").textContent = saved ? `Credentials saved · ${KINDS[saved].label}` : "";
  $("cred-check").hidden = true;
  setMode(saved ? "saved" : "new");
}

/** The kind just saved (new credentials, or none): the section shows it, values cleared. */
export function credentialsSaved(platform) {
  const kind = kindFor(platform);
  if (credentialsBody(platform)) resetCredentials(kind);
}

/** The last check, under the saved credentials: when, and what it said. */
export function showLastCheck(connection) {
  const line = $("cred-check");
  line.hidden = !connection?.checked_at;
  if (line.hidden) return;
  const when = timeAgo(el("time", ""), connection.checked_at);
  line.replaceChildren("Last checked ", when, `: ${connection.message ?? ""}`);
}

export function initCredentials(options) {
  hooks = options;
  for (const spec of SPECS) {
    const input = $(spec.id);
    input.addEventListener("input", () => {
      delete cred.serverErrors[spec.id];
      hooks.changed();
    });
    input.addEventListener("blur", () => {
      cred.touched.add(spec.id);
      hooks.changed();
    });
  }
  legacy.addEventListener("change", () => hooks.changed());
  section.addEventListener("toggle", () => {
    // Closing the new values' section keeps the saved credentials.
    if (!section.open && cred.mode === "replace") setMode("saved");
    else hooks.changed();
  });
  savedRow.addEventListener("click", (event) => {
    const action = event.target.closest("[data-cred]")?.dataset.cred;
    if (action === "replace") {
      setMode("replace");
      const [first] = INPUTS[kindFor($("store-platform").value)] ?? [];
      if (first) $(first.id).focus();
    } else if (action === "remove") {
      buttons.hidden = true;
      confirmBox.hidden = false;
      confirmBox.querySelector('[data-cred="keep"]').focus();
    } else if (action === "keep") {
      setMode("saved");
      buttons.querySelector('[data-cred="remove"]').focus();
    } else if (action === "confirm-remove") {
      removeCredentials();
    }
  });
  keepSaved.addEventListener("click", () => {
    setMode("saved");
    buttons.querySelector('[data-cred="replace"]').focus();
  });
  // Show/hide toggles of the secret inputs.
  for (const toggle of document.querySelectorAll("[data-reveal]")) {
    toggle.addEventListener("click", () => {
      const input = $(toggle.dataset.reveal);
      const show = input.type === "password";
      input.type = show ? "text" : "password";
      toggle.setAttribute("aria-pressed", String(show));
      toggle.firstChild.textContent = show ? "Hide" : "Show";
    });
  }
}

async function removeCredentials() {
  const id = hooks.storeId();
  setBusy(removeButton, true, "Removing…");
  const result = await api("PUT", `/api/integrations/${id}`, { credentials: null });
  setBusy(removeButton, false);
  if (hooks.storeId() !== id) return;
  if (!result.ok) {
    showAlert($("store-alert"), result.problem || result.fields.credentials);
    return;
  }
  resetCredentials("");
  hooks.removed(id);
  section.querySelector("summary").focus();
  toast("Credentials removed. Astra no longer calls the store's API.");
}

// Checking, then setting the webhooks up

/** One line of `list`: what runs now; call the result with how it ended. */
function step(list, text) {
  const item = el("li", "", text);
  item.dataset.state = "busy";
  list.append(item);
  const slow = setTimeout(() => item.append(" Still waiting for your store…"), SLOW_MS);
  return (state, words) => {
    clearTimeout(slow);
    item.dataset.state = state;
    item.textContent = words;
  };
}

const CREDENTIAL_PROBLEMS = [
  "invalid_credentials",
  "wrong_store",
  "missing_scope",
  "no_credentials",
];

/** What to do in Astra after `problem`: from the success state ("connect"), or in Edit. */
function nextStep(problem, where) {
  if (CREDENTIAL_PROBLEMS.includes(problem)) {
    return where === "edit"
      ? "Replace the credentials below, then save again."
      : "Fix the credentials with Edit, then Test connection.";
  }
  if (problem === "refused_address") {
    return where === "edit" ? "Check the store's domain above." : "Check the domain with Edit.";
  }
  return "Try again in a few minutes with Test connection on the store's card.";
}

/**
 * With credentials just saved for store `id`: check them, then set the webhooks up, each
 * a line in `list`. Resolves to null when both worked, else {message, next}: the server's
 * sentence, and what to do about it.
 */
export async function connectStore(id, list, where) {
  list.replaceChildren();
  list.hidden = false;
  const checked = step(list, "Checking the credentials…");
  const check = await api("POST", `/api/integrations/${id}/check`);
  if (!check.ok || !check.data.ok) {
    checked("failed", "Checking the credentials failed.");
    const problem = check.data?.problem ?? "";
    return { message: check.data?.message ?? check.problem, next: nextStep(problem, where) };
  }
  checked("done", check.data.message);
  const registered = step(list, "Setting the webhooks up in your store…");
  const webhooks = await api("POST", `/api/integrations/${id}/webhooks`);
  if (!webhooks.ok) {
    registered("failed", "The webhooks couldn't be set up.");
    return { message: webhooks.problem, next: nextStep(webhooks.data?.problem ?? "", where) };
  }
  registered("done", "Webhooks set up in your store ✓");
  return null;
}

/** An inline alert: the sentence in bold, then what to do. */
export function showFailure(box, failure) {
  box.replaceChildren(el("b", "", failure.message), " ", failure.next);
  box.hidden = false;
}
