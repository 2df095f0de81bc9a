// /settings/integrations: the add/edit dialog, the success state, delete, "show more"; the
// edit dialog's tools are in store-tools.js. Everything goes through the same JSON API as
// any other client.

import { validateDomain, validateStoreName } from "./domains.js";
import {
  api,
  closeDialog,
  el,
  initCopyButtons,
  initHeader,
  OFFLINE,
  openDialog,
  resetCopyButtons,
  restoreFocusOnClose,
  setBusy,
  setFieldError,
  setHelp,
  showAlert,
  showPanel,
  timeAgo,
  toast,
} from "./ui.js";

const PLATFORMS = {
  shopify: { label: "Shopify", placeholder: "my-shop.myshopify.com" },
  woocommerce: { label: "WooCommerce", placeholder: "shop.example.com" },
};
const DOMAIN_HELP = "Your store's address. You can paste its full URL.";
const LOOPBACK = /^(localhost|127(\.\d+){3}|\[::1\])$/u;

const $ = (id) => document.getElementById(id);
const grid = $("cards");
const empty = $("empty");
const storesHeading = $("stores-heading");
const cardTemplate = $("card-template");
const moreButton = document.querySelector('[data-action="more"]');

const dialog = $("store-dialog");
const form = $("store-form");
const success = $("store-success");
const title = $("store-title");
const alertBox = $("store-alert");
const nameInput = $("store-name");
const platformSelect = $("store-platform");
const domainInput = $("store-domain");
const activeSwitch = $("store-active");
const saveButton = $("store-save");
const saveReason = $("store-save-reason");
const editOnly = form.querySelector(".edit-only");
const webhookUrl = $("store-webhook-url");
const storeOrders = $("store-orders");

const deleteDialog = $("delete-dialog");
const deleteAlert = $("delete-alert");
const deleteConfirm = deleteDialog.querySelector('[data-action="confirm-delete"]');

const fields = { name: nameInput, type: platformSelect, domain: domainInput };

// What the dialog is doing: creating a store, or editing the card in `editing`.
const state = { editing: null, touched: new Set(), serverErrors: {}, saving: false };
let pendingDelete = null;

// Cards

/** "12 orders · last 3 min ago", as the card template's orders() macro writes it. */
function ordersSummary(item) {
  const count = item.order_count;
  if (!count) return ["Waiting for first order"];
  const when = timeAgo(el("time", ""), item.last_order_at);
  return [`${count.toLocaleString("en")} order${count === 1 ? "" : "s"} · last `, when];
}

function cardOf(element) {
  return element.closest("article.card");
}

/** The integration a card shows, read back from its markup. */
function readCard(card) {
  return {
    id: card.dataset.id,
    type: card.dataset.type,
    is_active: card.querySelector(".badge").classList.contains("badge-success"),
    name: card.querySelector("h3").textContent,
    domain: card.querySelector(".card-domain").textContent,
  };
}

/** Write `item` (an IntegrationRead from the API) into `card`. */
function fillCard(card, item) {
  const platform = PLATFORMS[item.type];
  card.dataset.id = item.id;
  card.dataset.type = item.type;
  card.querySelector("h3").textContent = item.name;
  card.querySelector(".card-domain").textContent = item.domain;
  card.querySelector(".platform").textContent = platform.label;
  const badge = card.querySelector(".badge");
  badge.textContent = item.is_active ? "Active" : "Inactive";
  badge.classList.toggle("badge-success", item.is_active);
  badge.classList.toggle("badge-neutral", !item.is_active);
  const paused = item.is_active ? [] : [el("b", "", "Paused — orders are kept")];
  card.querySelector(".card-orders").replaceChildren(...paused, ...ordersSummary(item));
  const owner = card.querySelector(".card-owner span");
  if (owner) owner.textContent = item.owner_email;
  for (const button of card.querySelectorAll(".card-actions button")) {
    button.setAttribute("aria-label", `${button.textContent} ${item.name}`);
  }
  return card;
}

function newCard(item) {
  const card = cardTemplate.content.firstElementChild.cloneNode(true);
  return fillCard(card, item);
}

function syncEmptyState() {
  const hasCards = grid.childElementCount > 0;
  empty.hidden = hasCards;
  storesHeading.hidden = !hasCards;
}

function firstAddButton() {
  return document.querySelector('[data-action="add"]');
}

// The store dialog: validation as you type

function validate() {
  const errors = {};
  const name = validateStoreName(nameInput.value);
  if (!name.ok) errors.name = name.message;
  const platform = platformSelect.value;
  if (!platform) errors.type = "Choose Shopify or WooCommerce.";
  // Until a platform is chosen, check only that it looks like a domain (as the API does).
  const domain = validateDomain(platform || "woocommerce", domainInput.value);
  if (!domain.ok) errors.domain = domain.message;
  for (const [field, message] of Object.entries(state.serverErrors)) errors[field] ??= message;
  return { errors, domain: domain.ok ? domain.domain : null };
}

const REASONS = {
  name: "Add a store name to save.",
  type: "Choose a platform to save.",
  domain: "Fix the domain to save.",
};
const LABELS = { name: "store name", type: "platform", domain: "domain" };

function render() {
  const { errors, domain } = validate();
  for (const [field, input] of Object.entries(fields)) {
    // Say what is wrong as soon as there is something to judge, or once the field was left.
    const shown = state.touched.has(field) || (field !== "type" && input.value.trim() !== "");
    setFieldError(input, shown ? errors[field] : "");
  }
  const typed = domainInput.value.trim();
  setHelp(
    domainInput,
    domain && domain !== typed.toLowerCase() ? `Will be saved as ${domain}.` : DOMAIN_HELP,
  );
  const firstProblem = Object.keys(fields).find((field) => errors[field]);
  saveButton.disabled = state.saving || Boolean(firstProblem);
  let reason = "";
  if (firstProblem && !state.saving) {
    // The server refused what was typed: nothing is wrong with it in form, so ask for a change.
    reason =
      firstProblem in state.serverErrors
        ? `Change the ${LABELS[firstProblem]} to save.`
        : REASONS[firstProblem];
  }
  saveReason.textContent = reason;
}

for (const [field, input] of Object.entries(fields)) {
  input.addEventListener("input", () => {
    delete state.serverErrors[field];
    if (field === "type") {
      delete state.serverErrors.domain;
      state.touched.add("type");
      domainInput.placeholder = PLATFORMS[platformSelect.value].placeholder;
    }
    render();
  });
  input.addEventListener("blur", () => {
    state.touched.add(field);
    render();
  });
}

// Opening the dialog

function showForm(editing) {
  state.editing = editing;
  state.touched = new Set(editing ? Object.keys(fields) : []);
  state.serverErrors = {};
  state.saving = false;
  const item = editing ? readCard(editing) : null;
  showPanel(form);
  title.textContent = item ? "Edit Store" : "Connect a New Store";
  form.querySelector(".dialog-desc").hidden = Boolean(item);
  saveButton.textContent = item ? "Save Changes" : "Save Connection";
  editOnly.hidden = !item;
  nameInput.value = item?.name ?? "";
  platformSelect.value = item?.type ?? "";
  domainInput.value = item?.domain ?? "";
  domainInput.placeholder = PLATFORMS[item?.type ?? "shopify"].placeholder;
  activeSwitch.checked = item?.is_active ?? true;
  webhookUrl.value = "";
  storeOrders.textContent = "";
  // Shopify signs with its own key; a secret Astra makes up only works for WooCommerce.
  for (const tool of editOnly.querySelectorAll("[data-platform]")) {
    tool.hidden = tool.dataset.platform !== item?.type;
  }
  showAlert(alertBox, "");
  resetCopyButtons(dialog);
  render();
}

for (const button of document.querySelectorAll('[data-action="add"]')) {
  button.addEventListener("click", () => {
    showForm(null);
    openDialog(dialog, button);
    nameInput.focus();
  });
}

grid.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const card = cardOf(button);
  if (button.dataset.action === "edit") {
    showForm(card);
    openDialog(dialog, button);
    nameInput.focus();
    loadStore(card);
  } else if (button.dataset.action === "delete") {
    openDelete(card, button);
  }
});

// The card carries only what it shows; the webhook URL comes from the API when editing,
// with fresh order figures for the dialog and the card.
async function loadStore(card) {
  const result = await api("GET", `/api/integrations/${card.dataset.id}`);
  if (state.editing !== card) return;
  if (!result.ok) {
    showAlert(alertBox, result.problem);
    return;
  }
  webhookUrl.value = result.data.webhook_url;
  storeOrders.replaceChildren(...ordersSummary(result.data));
  fillCard(card, result.data);
}

for (const button of document.querySelectorAll('dialog [data-action="close"]')) {
  button.addEventListener("click", () => closeDialog(button.closest("dialog")));
}

// Saving

function applyRefusal(result) {
  // 409: the domain is taken. 422: the field it names. Anything else: above the form.
  if (result.status === 409) {
    state.serverErrors.domain = result.problem;
  } else {
    for (const [field, message] of Object.entries(result.fields)) {
      if (field in fields) state.serverErrors[field] = message;
    }
  }
  const problemField = Object.keys(fields).find((field) => state.serverErrors[field]);
  if (problemField) {
    state.touched.add(problemField);
    render();
    fields[problemField].focus();
  } else {
    showAlert(alertBox, result.problem || "This change couldn't be saved.");
  }
}

function showSuccess(created) {
  const platform = PLATFORMS[created.type];
  showPanel(success);
  $("success-desc").textContent =
    `“${created.name}” is connected. Add this webhook in your ${platform.label} admin ` +
    "so Astra receives the store's orders.";
  $("success-url").value = created.webhook_url;
  $("success-secret").value = created.webhook_secret;
  $("success-local").hidden = !LOOPBACK.test(new URL(created.webhook_url).hostname);
  for (const steps of success.querySelectorAll(".steps")) {
    steps.hidden = steps.dataset.platform !== created.type;
  }
  resetCopyButtons(success);
  $("success-title").focus();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (state.saving) return;
  state.touched = new Set(Object.keys(fields));
  render();
  if (saveButton.disabled) return;
  const body = {
    name: nameInput.value,
    type: platformSelect.value,
    domain: domainInput.value,
  };
  const editing = state.editing;
  if (editing) body.is_active = activeSwitch.checked;
  showAlert(alertBox, "");
  state.saving = true;
  setBusy(saveButton, true, "Saving…");
  const result = editing
    ? await api("PUT", `/api/integrations/${editing.dataset.id}`, body)
    : await api("POST", "/api/integrations", body);
  state.saving = false;
  setBusy(saveButton, false);
  if (!result.ok) {
    render();
    applyRefusal(result);
    return;
  }
  if (editing) {
    fillCard(editing, result.data);
    closeDialog(dialog);
    toast("Changes saved.");
    return;
  }
  grid.prepend(newCard(result.data));
  syncEmptyState();
  showSuccess(result.data);
});

// The edit form's tools (deliveries, a new secret, Shopify's signing key) load on first use.
editOnly.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-action]");
  if (!button) return;
  try {
    const { openTool } = await import("./store-tools.js");
    openTool(button, state.editing);
  } catch {
    showAlert(alertBox, OFFLINE);
  }
});

// Deleting

function openDelete(card, opener) {
  pendingDelete = card;
  const item = readCard(card);
  deleteDialog.querySelector('[data-slot="name"]').textContent = item.name;
  deleteDialog.querySelector('[data-slot="domain"]').textContent = item.domain;
  showAlert(deleteAlert, "");
  deleteConfirm.disabled = false;
  openDialog(deleteDialog, opener);
}

deleteConfirm.addEventListener("click", async () => {
  const card = pendingDelete;
  const { name } = readCard(card);
  setBusy(deleteConfirm, true, "Deleting…");
  const result = await api("DELETE", `/api/integrations/${card.dataset.id}`);
  setBusy(deleteConfirm, false);
  // 404: someone else already deleted it; either way it is gone.
  if (!result.ok && result.status !== 404) {
    showAlert(deleteAlert, result.problem);
    return;
  }
  const neighbour = card.nextElementSibling ?? card.previousElementSibling;
  card.remove();
  syncEmptyState();
  closeDialog(deleteDialog, neighbour?.querySelector('[data-action="edit"]') ?? firstAddButton());
  toast(`“${name}” was deleted.`);
});

// More pages

moreButton?.addEventListener("click", async () => {
  const cursor = moreButton.dataset.cursor;
  setBusy(moreButton, true, "Loading…");
  const result = await api("GET", `/api/integrations?cursor=${encodeURIComponent(cursor)}`);
  setBusy(moreButton, false);
  if (!result.ok) {
    toast(result.problem);
    return;
  }
  const shown = new Set([...grid.children].map((card) => card.dataset.id));
  for (const item of result.data.items) {
    if (!shown.has(item.id)) grid.append(newCard(item));
  }
  moreButton.dataset.cursor = result.data.next_cursor ?? "";
  moreButton.parentElement.hidden = !result.data.next_cursor;
});

// A create in flight must finish in view: its secret is shown only in the success state.
dialog.addEventListener("cancel", (event) => {
  if (state.saving) event.preventDefault();
});

// Wiring

const announce = (message) => {
  $("store-live").textContent = message;
};
initCopyButtons(dialog, announce);
restoreFocusOnClose(dialog, firstAddButton);
restoreFocusOnClose(deleteDialog, firstAddButton);
initHeader();

// "3 min ago" stays true while the page is open.
const tick = () => {
  for (const time of document.querySelectorAll("time")) timeAgo(time);
};
tick();
setInterval(tick, 30000);
