// realmctl operator UI: the API keys view (tenants' keys, /v1/keys) and the operator keys
// view (/v1/operator-keys): list, mint (the secret shown once, with a copy button), revoke.
// Runs after ui.js and uses its helpers (api, el, fill, act, views). Everything is text.
"use strict";

// Each problem the API gave, put beside its field: `fields` maps a body key to the list
// element; the rest (and a refusal without problems) goes to `rest`.
function showProblems(fields, rest, error) {
  const lists = new Map(Object.entries(fields).map(([k, id]) => [k, []]));
  const other = [];
  const raw = error && error.raw && error.raw.length ? error.raw : null;
  if (raw) {
    for (const p of raw) {
      const key = (p.at || "").split(/[.[]/)[0];
      if (lists.has(key)) lists.get(key).push(p.message);
      else other.push((p.at ? p.at + ": " : "") + p.message);
    }
  } else if (error) {
    other.push(String(error.message || error));
  }
  for (const [k, id] of Object.entries(fields)) {
    const msgs = lists.get(k);
    $(id).replaceChildren(...msgs.map((m) => el("li", {}, m)));
    const input = document.querySelector("[aria-describedby=\"" + id + "\"]");
    if (input && msgs.length) input.setAttribute("aria-invalid", "true");
    else if (input) input.removeAttribute("aria-invalid");
  }
  $(rest).replaceChildren(...other.map((m) => el("li", {}, m)));
}

// The box that shows a new secret once: `prefix` names its elements (`<prefix>-secret`…).
function secretBox(prefix) {
  const box = $(prefix + "-secret");
  const hide = () => {
    box.hidden = true;
    $(prefix + "-secret-value").textContent = "";
    $(prefix + "-secret-copied").textContent = "";
  };
  $(prefix + "-secret-done").addEventListener("click", hide);
  $(prefix + "-secret-copy").addEventListener("click", async () => {
    const secret = $(prefix + "-secret-value").textContent;
    try {
      await navigator.clipboard.writeText(secret);
      $(prefix + "-secret-copied").textContent = "Copied.";
    } catch (e) {
      // Without clipboard access the text is selected, for the keyboard's copy.
      getSelection().selectAllChildren($(prefix + "-secret-value"));
      $(prefix + "-secret-copied").textContent = "Select and copy it by hand (" + e.message + ").";
    }
  });
  return {
    show(id, secret) {
      $(prefix + "-secret-id").textContent = id;
      $(prefix + "-secret-value").textContent = secret;
      $(prefix + "-secret-copied").textContent = "";
      box.hidden = false;
      $(prefix + "-secret-copy").focus();
    },
    hide,
  };
}

// "live", "revoked …", "expired": a tenant key's state as the list shows it.
function keyState(k) {
  if (k.revoked_at) return "revoked " + k.revoked_at;
  if (k.expires_at && Date.parse(k.expires_at) <= Date.now()) return "expired";
  return "live";
}

function revokeButton(label, what, path) {
  const b = act("Revoke", async () => {
    if (confirm("Revoke " + what + "? Calls with it are refused from then on.")) {
      await api("DELETE", path);
    }
  }, "danger");
  b.setAttribute("aria-label", label);
  return b;
}

const tenantKeys = {
  secret: null,
  async refresh() {
    const list = await apiAll("/v1/keys", "keys");
    fill("keys", list.keys, (keys) => keys.map((k) => {
      const state = keyState(k);
      const actions = el("td", { class: "actions" });
      if (!k.revoked_at) {
        actions.append(revokeButton("Revoke key " + k.id, "key " + k.id + " (" + k.prefix + "…)",
          "/v1/keys/" + encodeURIComponent(k.id)));
      }
      return el("tr", { "data-key": k.id },
        el("td", {}, k.id), el("td", {}, el("code", {}, k.prefix)),
        el("td", {}, k.tenant ?? "(all tenants)"), el("td", {}, k.namespaces.join(", ")),
        el("td", {}, k.expires_at ?? "never"),
        el("td", { class: state === "live" ? "ok" : "bad" }, state),
        el("td", {}, k.table_version), actions);
    }));
  },
  reset() {
    if (this.secret) this.secret.hide();
    $("key-form").reset();
    showProblems(KEY_FIELDS, "key-form-problems", null);
  },
};

const KEY_FIELDS = { tenant: "key-tenant-problems", namespaces: "key-namespaces-problems",
  expires_at: "key-expires-problems" };

async function mintKey(ev) {
  ev.preventDefault();
  const f = ev.target;
  const value = (name) => f.elements.namedItem(name).value.trim();
  const body = { namespaces: value("namespaces").split(",").map((n) => n.trim()).filter((n) => n) };
  if (value("tenant")) body.tenant = value("tenant");
  if (value("expires_at")) body.expires_at = value("expires_at");
  try {
    const k = await api("POST", "/v1/keys", body);
    showProblems(KEY_FIELDS, "key-form-problems", null);
    f.reset();
    tenantKeys.secret.show(k.id, k.key);
    await tenantKeys.refresh();
  } catch (e) {
    showProblems(KEY_FIELDS, "key-form-problems", e);
  }
}

const operatorKeys = {
  secret: null,
  async refresh() {
    const list = await api("GET", "/v1/operator-keys");
    // Minting and revoking take the operator token or an admin's session (not a viewer).
    fill("operator-keys", list.operator_keys, (keys) => keys.map((k) => {
      const actions = el("td", { class: "actions" });
      if (k.state !== "revoked") {
        actions.append(revokeButton("Revoke operator key " + k.name, "operator key " + k.name,
          "/v1/operator-keys/" + encodeURIComponent(k.id)));
      }
      return el("tr", { "data-operator-key": k.id },
        el("td", {}, k.id), el("td", {}, k.name), el("td", {}, k.role),
        el("td", { class: k.state === "live" ? "ok" : "bad" }, k.state + (k.revoked_at ? " " + k.revoked_at : "")),
        el("td", {}, el("code", {}, k.prefix)), el("td", {}, k.expires_at ?? "never"),
        el("td", {}, k.created_by), actions);
    }));
  },
  reset() {
    if (this.secret) this.secret.hide();
    $("operator-key-form").reset();
    showProblems(OPERATOR_KEY_FIELDS, "operator-key-form-problems", null);
  },
};

const OPERATOR_KEY_FIELDS = { name: "operator-key-name-problems",
  role: "operator-key-role-problems", expires_at: "operator-key-expires-problems" };

async function mintOperatorKey(ev) {
  ev.preventDefault();
  const f = ev.target;
  const value = (name) => f.elements.namedItem(name).value.trim();
  // The name as typed: the API says what is wrong with it.
  const body = { name: f.elements.namedItem("name").value, role: value("role") };
  if (value("expires_at")) body.expires_at = value("expires_at");
  try {
    const k = await api("POST", "/v1/operator-keys", body);
    showProblems(OPERATOR_KEY_FIELDS, "operator-key-form-problems", null);
    f.reset();
    operatorKeys.secret.show(k.name + " (" + k.role + ")", k.key);
    await operatorKeys.refresh();
  } catch (e) {
    showProblems(OPERATOR_KEY_FIELDS, "operator-key-form-problems", e);
  }
}

// Deferred after ui.js: the page is parsed and `views` exists.
tenantKeys.secret = secretBox("key");
operatorKeys.secret = secretBox("operator-key");
$("key-form").addEventListener("submit", mintKey);
$("operator-key-form").addEventListener("submit", mintOperatorKey);
views.push(tenantKeys, operatorKeys);
