// The edit dialog's tools: recent deliveries, rotating the webhook secret, Shopify's
// signing key. Sellers open them rarely, so integrations.js imports this module the first
// time one is used and the page itself stays within its weight budget.

import {
  api,
  el,
  exactTime,
  resetCopyButtons,
  setBusy,
  setFieldError,
  showAlert,
  showPanel,
  timeAgo,
} from "./ui.js";

const $ = (id) => document.getElementById(id);
const form = $("store-form");
const deliveriesPanel = $("deliveries-panel");
const secretPanel = $("secret-panel");
const secretSubmit = $("secret-submit");
const keyInput = $("secret-key");

// The store the tool is for ({id, name}), what to call when its secret changed, and the edit
// form's button that opened it (focus goes back).
let current = null;
let changed = null;
let opener = null;
let saving = false;

export function openTool(button, store, onChange) {
  current = store;
  changed = onChange;
  opener = button;
  if (button.dataset.action === "deliveries") showDeliveries(store);
  else showSecret(button.dataset.action);
}

for (const button of document.querySelectorAll('#store-dialog [data-action="back"]')) {
  button.addEventListener("click", () => showPanel(form, opener));
}

// A rotation in flight must finish in view: its secret is shown only once.
form.closest("dialog").addEventListener("cancel", (event) => {
  if (saving) event.preventDefault();
});

// Deliveries

const OUTCOMES = {
  stored: ["Stored", "success"],
  held: ["Held", "accent"],
  stale: ["Outdated", "neutral"],
  deleted: ["Deleted", "neutral"],
  ignored: ["Ignored", "neutral"],
  refused: ["Refused", "danger"],
};

function deliveryRows(delivery) {
  const [label, tone] = OUTCOMES[delivery.outcome] ?? [delivery.outcome, "neutral"];
  const when = timeAgo(el("time", ""), delivery.received_at);
  const outcome = el("span", `badge badge-${tone}`, label);
  const row = el("tr", "", el("td", "", when), el("td", "mono", delivery.topic), el("td", "", outcome));
  if (!delivery.reason) return [row];
  // A refused delivery says why, on a line of its own under its row.
  row.classList.add("has-reason");
  const reason = el("td", "delivery-reason", delivery.reason);
  reason.colSpan = 3;
  return [row, el("tr", "", reason)];
}

async function showDeliveries(store) {
  const [loading, empty, table, held, problem] = ["loading", "empty", "table", "held", "alert"].map(
    (part) => $(`deliveries-${part}`),
  );
  $("deliveries-name").textContent = store.name;
  for (const part of [empty, table, held, problem]) part.hidden = true;
  loading.hidden = false;
  showPanel(deliveriesPanel, $("deliveries-title"));
  const result = await api("GET", `/api/integrations/${store.id}/deliveries?limit=20`);
  if (current !== store) return;
  const items = result.data?.items ?? [];
  loading.hidden = true;
  showAlert(problem, result.problem);
  table.tBodies[0].replaceChildren(...items.flatMap(deliveryRows));
  table.hidden = !items.length;
  empty.hidden = items.length > 0 || !result.ok;
  held.hidden = !items.some((delivery) => delivery.outcome === "held");
}

// The secret panel: its modes, each with a title and what the submit button says

const MODES = {
  rotate: ["Rotate Webhook Secret?", "Rotate secret"],
  rotated: ["New Webhook Secret", "Done"],
  key: ["Use Shopify's Signing Key", "Use this key"],
  saved: ["Signing Key Saved", "Done"],
};

function showSecret(mode) {
  const [heading, submit] = MODES[mode];
  secretPanel.dataset.mode = mode;
  $("secret-title").textContent = heading;
  secretSubmit.textContent = submit;
  for (const part of secretPanel.querySelectorAll("[data-mode]")) {
    part.hidden = !part.dataset.mode.split(" ").includes(mode);
  }
  showAlert($("secret-alert"), "");
  keyInput.value = "";
  setFieldError(keyInput, "");
  showPanel(secretPanel, mode === "key" ? keyInput : $("secret-title"));
}

/** WebhookSecretUpdate's rule: 16 to 200 printable ASCII characters once trimmed. */
function keyProblem(raw) {
  const key = raw.trim();
  if (!key) return "Paste the key from your Shopify admin.";
  if (!/^[!-~]+$/u.test(key)) return "A signing key has no spaces or accented letters.";
  if (key.length < 16) return "That's too short: copy the whole key.";
  return key.length > 200 ? "That's too long: copy just the key." : "";
}

keyInput.addEventListener("input", () => {
  if (keyInput.hasAttribute("aria-invalid")) setFieldError(keyInput, keyProblem(keyInput.value));
});

secretPanel.addEventListener("submit", async (event) => {
  event.preventDefault();
  const mode = secretPanel.dataset.mode;
  const problem = mode === "key" && keyProblem(keyInput.value);
  setFieldError(keyInput, problem);
  if (problem) {
    keyInput.focus();
  } else if (mode === "rotated" || mode === "saved") {
    showPanel(form, opener);
  } else if (!saving) {
    saving = true;
    setBusy(secretSubmit, true, "Saving…");
    const body = mode === "key" ? { webhook_secret: keyInput.value } : undefined;
    const result = await api("POST", `/api/integrations/${current.id}/secret`, body);
    saving = false;
    setBusy(secretSubmit, false);
    secretSaved(mode, result);
  }
});

function secretSaved(mode, result) {
  const refusal = result.fields.webhook_secret;
  setFieldError(keyInput, refusal);
  showAlert($("secret-alert"), refusal ? "" : result.problem);
  if (refusal) keyInput.focus();
  if (!result.ok) return;
  changed();
  const until = exactTime(new Date(result.data.previous_secret_expires_at));
  for (const slot of secretPanel.querySelectorAll("[data-slot]")) slot.textContent = until;
  $("secret-new").value = result.data.webhook_secret;
  resetCopyButtons(secretPanel);
  showSecret(mode === "key" ? "saved" : "rotated");
}
