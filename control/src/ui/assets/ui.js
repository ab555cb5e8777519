// realmctl operator UI: reads and changes the registry through the REST API under /v1, as an
// operator signed in through the operators' realm (a session cookie the page never sees, plus
// the session's CSRF token on every change) or with the operator token kept in this tab's
// sessionStorage. Everything is rendered as text.
"use strict";

const TOKEN_KEY = "realmctl-operator-token";
// The signed-in operator ({name, role, csrf_token}) when the console runs on a session.
let session = null;
const REFRESH_MS = 3000;
// Certificates expiring within this many days are highlighted.
const SOON_DAYS = 14;
let timer = null;
// The tenant whose custom domains are shown, and the last certificate list (the domains
// view shows each domain's certificate from it).
let domainsOf = null;
let lastCertificates = { certificates: [], ordering: [] };

const $ = (id) => document.getElementById(id);
// Views in scripts of their own (keys.js, gateways.js): each {refresh(), reset()}, refreshed
// with the page and reset at sign-out.
const views = [];

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return e;
}

class ApiError extends Error {
  constructor(status, body) {
    const problems = (body && body.problems) || [];
    const detail = problems.map((p) => (p.at ? p.at + ": " : "") + p.message).join("; ");
    super((body && body.message ? body.message : "HTTP " + status) + (detail ? " — " + detail : ""));
    this.status = status;
    this.raw = problems;
    // Each problem the API named (`at`: the field), or its message: shown by the field.
    this.problems = problems.length ? problems.map((p) => (p.at ? p.at + ": " : "") + p.message)
      : [(body && body.message) || "HTTP " + status];
  }
}

async function api(method, path, body, extra) {
  const headers = { ...(extra || {}) };
  if (session) {
    // The cookie goes along (same origin); a change carries the session's CSRF token.
    if (method !== "GET") headers["x-csrf-token"] = session.csrf_token;
  } else {
    headers.Authorization = "Bearer " + sessionStorage.getItem(TOKEN_KEY);
  }
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  const json = text ? JSON.parse(text) : null;
  if (r.status === 401) {
    signOut(session ? "Your session ended; sign in again." : "The token was refused.");
    throw new ApiError(401, json);
  }
  if (!r.ok) throw new ApiError(r.status, json);
  return json;
}

function showError(e) {
  $("error").textContent = e ? String(e.message || e) : "";
}

// What each table was last rendered from: unchanged data is not re-rendered, so a refresh
// neither flickers nor swaps a button out from under a click.
const rendered = new Map();

function fill(tableId, data, render) {
  const key = JSON.stringify(data);
  if (rendered.get(tableId) === key) return;
  rendered.set(tableId, key);
  const body = $(tableId).querySelector("tbody");
  const had = body.contains(document.activeElement) ? focusKey(document.activeElement) : null;
  body.replaceChildren(...render(data));
  // Keyboard focus stays on the same control of the same row across a refresh.
  if (had) {
    const again = [...body.querySelectorAll(had.tag)].find((e) => focusKey(e).id === had.id);
    if (again) again.focus();
  }
}

// What identifies a control across renders: its row's data attributes and its label.
function focusKey(e) {
  const row = e.closest("tr");
  return { tag: e.tagName, id: JSON.stringify([row ? Object.assign({}, row.dataset) : null,
    e.getAttribute("aria-label") || e.textContent]) };
}

// The pools a new tenant may route to (the pools view, pools.js, shows them in full).
function poolChoices(names) {
  const key = JSON.stringify(names);
  if (rendered.get("pool-choices") === key) return;
  rendered.set("pool-choices", key);
  const select = document.querySelector("#create-form select[name=upstream]");
  const chosen = select.value;
  select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
  if (chosen) select.value = chosen;
}

// A button that changes something (hidden from viewers, who may not).
function act(label, fn, cls) {
  return el("button", { type: "button", class: "write " + (cls || ""), onclick: async () => {
    try { showError(null); await fn(); await refresh(); } catch (e) { showError(e); }
  } }, label);
}

function tenantRow(t) {
  const p = t.provisioning;
  const state = p ? p.state + (p.error ? " — " + p.error : "") : "ready";
  const id = encodeURIComponent(t.id);
  const actions = el("td", { class: "actions" });
  if (t.status === "active") {
    actions.append(act("Suspend", () => api("PATCH", "/v1/tenants/" + id, { status: "suspended" })));
  } else {
    actions.append(act("Activate", () => api("PATCH", "/v1/tenants/" + id, { status: "active" })));
  }
  actions.append(el("button", { type: "button", class: "settings", "aria-label": "Settings of " + t.id,
    onclick: (ev) => openTenantEditor(t.id, ev.currentTarget) }, "Settings"));
  actions.append(el("button", { type: "button", "aria-label": "Traffic of " + t.id,
    onclick: () => showTenantTraffic(t.id) }, "Traffic"));
  actions.append(el("button", { type: "button", "aria-label": "Custom domains of " + t.id,
    onclick: () => openDomains(t.id) }, "Domains"));
  actions.append(act("Delete", async () => {
    if (confirm("Delete tenant " + t.id + "? Its hosts stop answering at every gateway.")) {
      await api("DELETE", "/v1/tenants/" + id);
      // Its steps' removes, live (a tenant without provisioning is gone at once).
      watchProvisioning(t.id, null);
    }
  }, "danger"));
  // The buttons that come and go with provisioning come last, so none of the others moves
  // under a pointer when the row re-renders.
  if (p && (p.state === "failed" || p.state === "delete_failed")) {
    actions.append(act("Retry", async () =>
      watchProvisioning(t.id, await api("POST", "/v1/tenants/" + id + "/retry"))));
  }
  if (p && p.state !== "ready") {
    actions.append(el("button", { type: "button", class: "progress", "aria-label": "Provisioning of " + t.id,
      onclick: () => watchProvisioning(t.id, t) }, "Progress"));
  }
  const certs = (t.certificates || []).map((c) => c.name + ": " + expiry(c));
  const uncovered = t.hosts_without_certificate || [];
  if (uncovered.length && (t.https !== "off" || certs.length)) certs.push("none for " + uncovered.join(", "));
  const soon = (t.certificates || []).some((c) => c.days_left < SOON_DAYS);
  return el("tr", { "data-tenant": t.id },
    el("td", {}, t.id), el("td", {}, t.display_name), el("td", {}, t.hosts.join(", ")),
    el("td", { class: "status-" + t.status }, t.status), el("td", {}, state),
    el("td", {}, (t.https || "off") + (t.hsts ? " + HSTS" : "")),
    el("td", { class: soon ? "bad" : "" }, certs.join("; ") || "—"),
    el("td", {}, t.table_version), actions);
}

// "87 days left", "EXPIRED 3 days ago", "not valid yet".
function daysLeft(c) {
  if (c.state === "expired") return "EXPIRED " + -c.days_left + " days ago";
  if (c.state === "not_yet_valid") return "not valid yet";
  return c.days_left + " days left";
}

function expiry(c) {
  return c.state === "valid" ? daysLeft(c) + " (" + c.not_after + ")" : daysLeft(c);
}

// Where a certificate stands: its ACME state, or (handed in) its validity.
function certState(c) {
  return c.acme ? c.acme.state : c.state + " (handed in)";
}

// The expiry cell: days left, and why it needs a look — expired, renewal overdue (its
// renewal time passed and no renewal is running), or expiring soon.
function expiryCell(c) {
  const due = c.acme && c.acme.renew_at && Date.parse(c.acme.renew_at) < Date.now() &&
    c.acme.state !== "renewing";
  const soon = c.state === "valid" && c.days_left < SOON_DAYS;
  const notes = [];
  if (due) notes.push("renewal overdue since " + c.acme.renew_at);
  if (soon) notes.push("expiring soon");
  const bad = c.state !== "valid" || due || soon;
  return el("td", { class: bad ? "bad expiry" : "expiry" },
    daysLeft(c) + (notes.length ? " — " + notes.join(", ") : ""));
}

// The CA's last problem (type and detail), or the last failure of any other cause.
function lastError(a) {
  if (!a) return "—";
  if (a.problem) return a.problem.type + ": " + a.problem.detail;
  return a.error || "—";
}

// Every certificate: those served, then those ordered but not issued yet.
function certificateRows(list) {
  const served = list.certificates.map((c) => el("tr", { "data-cert": c.name },
    el("td", {}, c.name), el("td", {}, (c.acme ? c.acme.tenant : c.tenants.join(", ")) || "—"),
    el("td", {}, c.hosts.join(", ")),
    el("td", { class: "state state-" + (c.acme ? c.acme.state : c.state) }, certState(c)),
    el("td", {}, c.not_after), expiryCell(c), el("td", {}, c.issuer || "—"),
    el("td", { class: "ca-error" }, lastError(c.acme))));
  const ordering = (list.ordering || []).map((a) => el("tr", { "data-cert": a.certificate },
    el("td", {}, a.certificate), el("td", {}, a.tenant), el("td", {}, a.hosts.join(", ")),
    el("td", { class: "state state-" + a.state }, a.state), el("td", {}, "—"),
    el("td", { class: "expiry" }, "not issued yet"), el("td", {}, "—"),
    el("td", { class: "ca-error" }, lastError(a))));
  return served.concat(ordering);
}

// A domain's certificate, as the certificate list has it.
function domainCertificate(name) {
  const c = lastCertificates.certificates.find((x) => x.name === name);
  if (c) return certState(c) + ", " + expiry(c);
  const a = (lastCertificates.ordering || []).find((x) => x.certificate === name);
  if (a) return a.state + (a.state === "failed" ? " — " + lastError(a) : "");
  return "none yet";
}

function domainRow(tenant, d) {
  const remove = act("Remove", async () => {
    if (confirm("Remove domain " + d.domain + " from tenant " + tenant + "? It leaves every " +
      "gateway's table, and its certificate is revoked and deleted.")) {
      await api("DELETE", "/v1/tenants/" + encodeURIComponent(tenant) + "/domains/" +
        encodeURIComponent(d.domain));
    }
  }, "danger");
  remove.setAttribute("aria-label", "Remove domain " + d.domain);
  const check = d.state === "verified" ? "seen " + (d.verified_at || "") :
    (d.reason || "—") + (d.state === "pending" ? " (checking until " + d.check_until + ")" : "");
  return el("tr", { "data-domain": d.domain },
    el("td", {}, d.domain), el("td", { class: "state state-" + d.state }, d.state),
    el("td", {}, el("code", { class: "txt txt-name" }, d.txt.name)),
    el("td", {}, el("code", { class: "txt txt-value" }, d.txt.value)),
    el("td", { class: "check" }, check),
    el("td", { class: "domain-cert" }, d.state === "verified" ? domainCertificate(d.certificate) : "—"),
    el("td", { class: "actions" }, remove));
}

function openDomains(tenant) {
  domainsOf = tenant;
  rendered.delete("domains");
  $("domains-tenant").textContent = tenant;
  $("domains").querySelector("tbody").replaceChildren();
  setDomainProblems([]);
  $("domains-error").textContent = "";
  $("domains-view").hidden = false;
  $("domains-title").focus();
  refreshDomains();
}

function closeDomains() {
  domainsOf = null;
  $("domains-view").hidden = true;
}

async function refreshDomains() {
  const tenant = domainsOf;
  if (tenant === null) return;
  try {
    const list = await api("GET", "/v1/tenants/" + encodeURIComponent(tenant) + "/domains");
    if (tenant !== domainsOf) return;
    $("domains-error").textContent = "";
    const certs = list.domains.map((d) => domainCertificate(d.certificate));
    fill("domains", { tenant, list, certs }, () => list.domains.map((d) => domainRow(tenant, d)));
  } catch (e) {
    if (tenant === domainsOf) $("domains-error").textContent = String(e.message || e);
  }
}

// The problems the API gave for the domain field, each on its own line beside it.
function setDomainProblems(problems) {
  $("domain-problems").replaceChildren(...problems.map((p) => el("li", {}, p)));
  if (problems.length) $("domain-input").setAttribute("aria-invalid", "true");
  else $("domain-input").removeAttribute("aria-invalid");
}

async function addDomain(ev) {
  ev.preventDefault();
  const tenant = domainsOf;
  const domain = $("domain-input").value.trim();
  setDomainProblems([]);
  if (!domain) {
    setDomainProblems(["domain: required"]);
    return;
  }
  try {
    await api("POST", "/v1/tenants/" + encodeURIComponent(tenant) + "/domains", { domain });
    $("domain-input").value = "";
    await refreshDomains();
  } catch (e) {
    setDomainProblems(e.problems || [String(e.message || e)]);
  }
}

// /readyz (no token): while this realmctl does not hold the Lease, a banner says why, since
// every change will be refused (503 not_leader) while reads go on.
async function leadership() {
  let reason = null;
  try {
    const r = await fetch("/readyz");
    if (!r.ok) {
      const body = await r.json().catch(() => null);
      reason = (body && body.reason) || "HTTP " + r.status;
    }
  } catch (e) {
    reason = "realmctl does not answer: " + (e.message || e);
  }
  $("leader").hidden = reason === null;
  $("leader").textContent = reason === null ? "" :
    "Read-only: this realmctl may not write (it does not hold the Lease) — " + reason;
}

// A list the API pages (`?after=&limit=`, `next` the cursor, null at the end), read to its end.
async function apiAll(path, field) {
  const sep = path.includes("?") ? "&" : "?";
  let after = null;
  let first = null;
  const items = [];
  for (;;) {
    const page = await api("GET", path + sep + "limit=1000" +
      (after === null ? "" : "&after=" + encodeURIComponent(after)));
    items.push(...page[field]);
    if (first === null) first = page;
    if (!page.next || page.next === after) break;
    after = page.next;
  }
  return { ...first, [field]: items, next: null };
}

// The tenant list pages forward with the API's cursor (`?after=<id>&limit=`, `next`), and
// back through the cursors it came by; the search box asks the API for `?q=` (ids and hosts
// containing it, looked for a bounded slice of the registry per page).
const TENANT_PAGE = 50;
const tenantPager = { q: "", cursors: [null], next: null };

function tenantsPath() {
  const after = tenantPager.cursors[tenantPager.cursors.length - 1];
  return "/v1/tenants?limit=" + TENANT_PAGE +
    (after === null ? "" : "&after=" + encodeURIComponent(after)) +
    (tenantPager.q ? "&q=" + encodeURIComponent(tenantPager.q) : "");
}

function showTenantPager() {
  const page = tenantPager.cursors.length;
  $("tenants-newer").disabled = page === 1;
  $("tenants-next").disabled = !tenantPager.next;
  $("tenants-range").textContent = "page " + page + (tenantPager.q ? " of tenants matching “" + tenantPager.q + "”" : "");
}

async function turnTenants(move) {
  if (move > 0 && tenantPager.next) tenantPager.cursors.push(tenantPager.next);
  if (move < 0 && tenantPager.cursors.length > 1) tenantPager.cursors.pop();
  try {
    showError(null);
    await refreshTenants();
  } catch (e) {
    showError(e);
  }
}

async function refreshTenants(prefetched) {
  const page = prefetched || await api("GET", tenantsPath());
  tenantPager.next = page.next || null;
  showTenantPager();
  fill("tenants", page, (p) => p.tenants.length ? p.tenants.map(tenantRow) :
    [el("tr", {}, el("td", { colspan: "9" }, !tenantPager.q ? "no tenants" :
      p.next ? "none in this stretch of the registry; Next looks further" : "no tenant matches"))]);
}

async function refresh() {
  leadership();
  try {
    const [table, tenants, gateways, upstreams, certificates] = await Promise.all([
      api("GET", "/v1/table?summary=1"),
      api("GET", tenantsPath()),
      api("GET", "/v1/gateways"),
      apiAll("/v1/upstreams", "upstreams"),
      apiAll("/v1/certificates", "certificates"),
    ]);
    const inSync = gateways.gateways.filter((g) => g.in_sync).length;
    $("summary").textContent = "table v" + table.version + " · " + table.tenants + " routed tenants · " +
      inSync + "/" + gateways.gateways.length + " gateways in sync" +
      (gateways.discovery ? " · discovery " + gateways.discovery.state +
        (gateways.discovery.error ? ": " + gateways.discovery.error : "") : "");
    await refreshTenants(tenants);
    lastCertificates = certificates;
    fill("certificates", certificates, certificateRows);
    poolChoices(upstreams.upstreams.map((u) => u.name));
    await Promise.all(views.map((v) => v.refresh()));
  } catch (e) {
    showError(e);
  }
  await refreshDomains();
}

function signIn(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  document.body.dataset.role = session ? session.role : "admin";
  $("operator").textContent = session ? session.name + " · " + session.role : "operator token";
  $("sign-out").textContent = session ? "Sign out" : "Forget token";
  $("login").hidden = true;
  $("console").hidden = false;
  $("sign-out").hidden = false;
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
}

// Sign out at realmctl (the session ends there, its cookie is dropped), then at the
// operators' realm when it offers a logout page.
async function endSession() {
  const r = await fetch("/auth/logout", { method: "POST", credentials: "same-origin",
    headers: { "x-csrf-token": session.csrf_token } });
  const body = r.ok ? await r.json() : null;
  signOut("Signed out.");
  if (body && body.end_session_url) location.assign(body.end_session_url);
}

function signOut(message) {
  session = null;
  delete document.body.dataset.role;
  $("operator").textContent = "";
  sessionStorage.removeItem(TOKEN_KEY);
  Object.assign(tenantPager, { q: "", cursors: [null], next: null });
  rendered.clear();
  for (const v of views) v.reset();
  closeDomains();
  clearInterval(timer);
  $("console").hidden = true;
  $("sign-out").hidden = true;
  $("login").hidden = false;
  $("summary").textContent = "";
  $("login-error").textContent = message || "";
}

document.addEventListener("DOMContentLoaded", () => {
  leadership();
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    $("login-error").textContent = "";
    if (token) signIn(token);
  });
  $("sign-out").addEventListener("click", () => (session ? endSession().catch(showError) : signOut()));
  $("create-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    // Through `elements`: `f.id` would be the form's own id attribute.
    const field = (name) => f.elements.namedItem(name).value.trim();
    const body = {
      id: field("id"),
      hosts: [field("host")],
      routes: [{ prefix: "/", upstream: field("upstream"), auth: "public" }],
    };
    if (field("display_name")) body.display_name = field("display_name");
    // The API's problems beside each field (forms.js); none of it is created.
    try {
      showError(null);
      const t = await api("POST", "/v1/tenants", body);
      placeProblems(f, "create-form-problems", null);
      // Its steps, live, from the answer's state on.
      watchProvisioning(t.id, t);
      f.reset();
      await refresh();
    } catch (e) {
      placeProblems(f, "create-form-problems", e);
    }
  });
  $("domain-form").addEventListener("submit", addDomain);
  $("domains-close").addEventListener("click", closeDomains);
  $("tenants-newer").addEventListener("click", () => turnTenants(-1));
  $("tenants-next").addEventListener("click", () => turnTenants(1));
  $("tenant-search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    tenantPager.q = ev.target.elements.namedItem("q").value.trim().toLowerCase();
    tenantPager.cursors = [null];
    turnTenants(0);
  });
  // A session (signed in through the realm) wins; else a token kept in this tab.
  fetch("/auth/session", { credentials: "same-origin" }).then((r) => r.json()).then((who) => {
    $("sso").hidden = !who.sign_in_available && !who.signed_in;
    if (who.signed_in) {
      session = who;
      signIn();
      return;
    }
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) signIn(token);
  }).catch(() => {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) signIn(token);
  });
});
