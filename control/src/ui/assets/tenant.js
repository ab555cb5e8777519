// realmctl operator UI: a tenant's settings in a dialog — display name, hosts, plain HTTP and
// HSTS, routes and their auth policies, rate limits, the app catalog and the app shell with a
// live preview — saved with one PATCH /v1/tenants/{id} (If-Match: the revision read), the
// API's problems shown beside each field. A viewer sees the same settings, read-only.
// Runs after ui.js and forms.js. Everything is rendered as text.
"use strict";

const POLICIES = ["public", "jwt", "session", "api_key"];
const LIMITS = [
  ["tenant", "whole tenant"],
  ["per_key", "each API key"],
  ["per_client", "each public client"],
];
const tenantEdit = { id: null, revision: null, pools: [] };

function poolOptions(select, chosen, none) {
  const names = tenantEdit.pools.slice();
  if (chosen && !names.includes(chosen)) names.push(chosen);
  const opts = names.map((n) => el("option", { value: n }, n));
  if (none) opts.unshift(el("option", { value: "" }, none));
  select.replaceChildren(...opts);
  select.value = chosen || "";
}

// One route: prefix, pool, the policies any of which admits a request, namespace, token.
function routeRow(r, i) {
  const at = "routes[" + i + "]";
  const prefix = el("input", { autocomplete: "off", spellcheck: "false", class: "r-prefix" });
  prefix.value = r.prefix || "";
  const upstream = el("select", { class: "r-upstream" });
  poolOptions(upstream, r.upstream);
  const names = Array.isArray(r.auth) ? r.auth : r.auth ? [r.auth] : [];
  const auth = el("fieldset", { class: "auth", "data-path": at + ".auth" },
    el("legend", {}, "auth (any of)"),
    ...POLICIES.map((p) => {
      const box = el("input", { type: "checkbox", value: p, class: "r-auth" });
      box.checked = names.includes(p);
      return el("label", { class: "check" }, box, " " + p);
    }));
  const namespace = el("input", { autocomplete: "off", class: "r-namespace", placeholder: "@acme" });
  namespace.value = r.namespace || "";
  const forward = el("input", { type: "checkbox", class: "r-forward" });
  forward.checked = !!r.forward_token;
  forward.dataset.path = at + ".forward_token";
  const remove = el("button", { type: "button", class: "write danger",
    "aria-label": "Remove route " + (i + 1), onclick: () => {
      row.remove();
      renumber("te-routes");
    } }, "Remove");
  const row = el("fieldset", { class: "row route", "data-path": at },
    el("legend", {}, "route " + (i + 1)),
    labelled("prefix", prefix, at + ".prefix"), labelled("pool", upstream, at + ".upstream"),
    auth, labelled("namespace", namespace, at + ".namespace"),
    el("label", { class: "check" }, forward, " forward the token upstream"), remove);
  return row;
}

// One app of the catalog.
function appRow(a, i) {
  const at = "catalog[" + i + "]";
  const input = (cls, value, placeholder) => {
    const e = el("input", { autocomplete: "off", class: cls, placeholder });
    e.value = value || "";
    e.addEventListener("input", preview);
    return e;
  };
  const row = el("fieldset", { class: "row app", "data-path": at },
    el("legend", {}, "app " + (i + 1)),
    labelled("name", input("a-name", a.name, "todos"), at + ".name"),
    labelled("title", input("a-title", a.title, "Todos"), at + ".title"),
    labelled("path", input("a-path", a.path, "/todos/"), at + ".path"),
    labelled("icon", input("a-icon", a.icon, "lucide:check-square"), at + ".icon"),
    el("button", { type: "button", class: "write danger", "aria-label": "Remove app " + (i + 1),
      onclick: () => {
        row.remove();
        renumber("te-catalog");
        preview();
      } }, "Remove"));
  return row;
}

// Rows are rebuilt from what they hold, so their paths match the list the API is sent.
function renumber(id) {
  const rows = [...$(id).children];
  const values = id === "te-routes" ? rows.map(readRoute) : rows.map(readApp);
  $(id).replaceChildren(...values.map(id === "te-routes" ? routeRow : appRow));
  wireProblems($("tenant-form"));
}

function readRoute(row) {
  const q = (c) => row.querySelector("." + c);
  const auth = [...row.querySelectorAll(".r-auth:checked")].map((b) => b.value);
  const r = { prefix: q("r-prefix").value.trim(), upstream: q("r-upstream").value,
    auth: auth.length === 1 ? auth[0] : auth };
  if (q("r-namespace").value.trim()) r.namespace = q("r-namespace").value.trim();
  if (q("r-forward").checked) r.forward_token = true;
  return r;
}

function readApp(row) {
  const v = (c) => row.querySelector("." + c).value.trim();
  const a = { name: v("a-name"), title: v("a-title"), path: v("a-path") };
  if (v("a-icon")) a.icon = v("a-icon");
  return a;
}

function limitInputs(limits) {
  $("te-limits").replaceChildren(...LIMITS.map(([k, what]) => {
    const l = limits[k] || {};
    const requests = el("input", { inputmode: "numeric", autocomplete: "off", class: "l-requests" });
    requests.value = l.requests ?? "";
    const window = el("input", { inputmode: "numeric", autocomplete: "off", class: "l-window", placeholder: "1" });
    window.value = l.window_s ?? "";
    return el("fieldset", { class: "row limit", "data-path": "rate_limits." + k, "data-limit": k },
      el("legend", {}, what),
      labelled("requests", requests, "rate_limits." + k + ".requests"),
      labelled("window (s)", window, "rate_limits." + k + ".window_s"));
  }));
}

function readLimits() {
  const out = {};
  for (const row of $("te-limits").children) {
    const requests = row.querySelector(".l-requests").value.trim();
    const window = row.querySelector(".l-window").value.trim();
    if (!requests && !window) continue;
    out[row.dataset.limit] = { requests: numberOrText(requests) };
    if (window) out[row.dataset.limit].window_s = numberOrText(window);
  }
  return out;
}

function readShell() {
  const enabled = $("te-shell-enabled").checked;
  const upstream = $("te-shell-upstream").value;
  const excludes = lines($("te-shell-excludes").value);
  if (!enabled && !upstream && !excludes.length && !tenantEdit.hadShell) return null;
  const s = { enabled };
  if (upstream) s.upstream = upstream;
  if (excludes.length) s.excludes = excludes;
  return s;
}

function readHsts() {
  const age = $("te-hsts-max-age").value.trim();
  if (!age) return null;
  const h = { max_age: numberOrText(age) };
  if ($("te-hsts-subdomains").checked) h.include_subdomains = true;
  if ($("te-hsts-preload").checked) h.preload = true;
  return h;
}

// What the shell would show with these settings: the tenant's name over its apps, the
// first framed. The gateway renders the real one; this is the same data, as text.
function preview() {
  const box = $("shell-preview");
  const name = $("te-display-name").value.trim() || tenantEdit.id || "";
  const apps = [...$("te-catalog").children].map(readApp);
  if (!$("te-shell-enabled").checked) {
    box.replaceChildren(el("p", { class: "preview-off" },
      "Shell off: browsers get the routes directly."));
    return;
  }
  const from = $("te-shell-upstream").value;
  box.replaceChildren(
    el("p", { class: "preview-note" }, "Preview — " + (from ? "the page of pool " + from +
      ", with this context injected" : "the gateway's built-in shell")),
    el("div", { class: "preview-shell" },
      el("div", { class: "preview-top" }, el("span", { class: "preview-name" }, name), " · signed-in user"),
      el("ul", { class: "preview-apps", "aria-label": "Apps in the preview" },
        ...(apps.length ? apps.map((a, i) => el("li", { class: i === 0 ? "current" : "" },
          el("span", { class: "preview-icon", "aria-hidden": "true" },
            (a.title || a.name || "?").slice(0, 1).toUpperCase()), " ", a.title || a.name || "untitled"))
          : [el("li", {}, "no apps in the catalog")])),
      el("div", { class: "preview-frame" }, apps.length ? "framed: " + (apps[0].path || "/") : "")));
}

async function openTenantEditor(id, opener) {
  const form = $("tenant-form");
  try {
    showError(null);
    const [t, pools] = await Promise.all([
      api("GET", "/v1/tenants/" + encodeURIComponent(id)),
      apiAll("/v1/upstreams", "upstreams"),
    ]);
    tenantEdit.id = t.id;
    tenantEdit.revision = t.revision;
    tenantEdit.pools = pools.upstreams.map((u) => u.name);
    tenantEdit.hadShell = !!t.shell;
    $("tenant-editor-id").textContent = t.id;
    $("tenant-editor-status").textContent = "status " + t.status + " · revision " + t.revision +
      " · table version " + t.table_version +
      (t.provisioning ? " · provisioning " + t.provisioning.state : "");
    $("te-display-name").value = t.display_name;
    $("te-hosts").value = t.hosts.join("\n");
    $("te-https").value = t.https || "off";
    $("te-hsts-max-age").value = t.hsts ? t.hsts.max_age : "";
    $("te-hsts-subdomains").checked = !!(t.hsts && t.hsts.include_subdomains);
    $("te-hsts-preload").checked = !!(t.hsts && t.hsts.preload);
    $("te-routes").replaceChildren(...t.routes.map(routeRow));
    limitInputs(t.rate_limits || {});
    $("te-catalog").replaceChildren(...t.catalog.map(appRow));
    const shell = t.shell || { enabled: false };
    $("te-shell-enabled").checked = shell.enabled;
    poolOptions($("te-shell-upstream"), shell.upstream, "the gateway's built-in shell");
    $("te-shell-excludes").value = (shell.excludes || []).join("\n");
    // A viewer reads the settings and may change none of them.
    $("tenant-fields").disabled = document.body.dataset.role === "viewer";
    wireProblems(form);
    placeProblems(form, "tenant-form-problems", null);
    preview();
    openDialog($("tenant-editor"), opener,
      () => document.querySelector("tr[data-tenant=\"" + CSS.escape(id) + "\"] button.settings"));
  } catch (e) {
    showError(e);
  }
}

async function saveTenant(ev) {
  ev.preventDefault();
  const form = $("tenant-form");
  if (document.body.dataset.role === "viewer") return;
  const body = {
    display_name: $("te-display-name").value,
    hosts: lines($("te-hosts").value),
    https: $("te-https").value,
    hsts: readHsts(),
    routes: [...$("te-routes").children].map(readRoute),
    rate_limits: readLimits(),
    catalog: [...$("te-catalog").children].map(readApp),
    shell: readShell(),
  };
  try {
    const t = await api("PATCH", "/v1/tenants/" + encodeURIComponent(tenantEdit.id), body,
      { "If-Match": "\"" + tenantEdit.revision + "\"" });
    placeProblems(form, "tenant-form-problems", null);
    tenantEdit.revision = t.revision;
    closeDialog($("tenant-editor"));
    await refresh();
  } catch (e) {
    if (e.status === 412) {
      e.message = "The tenant changed since it was opened: close and open it again to see the change.";
      e.raw = [];
    }
    placeProblems(form, "tenant-form-problems", e);
  }
}

$("tenant-form").addEventListener("submit", saveTenant);
$("tenant-editor-close").addEventListener("click", () => closeDialog($("tenant-editor")));
$("te-route-add").addEventListener("click", () => {
  const n = $("te-routes").children.length;
  const row = routeRow({ prefix: "/", upstream: tenantEdit.pools[0], auth: "public" }, n);
  $("te-routes").append(row);
  wireProblems($("tenant-form"));
  row.querySelector("input").focus();
});
$("te-app-add").addEventListener("click", () => {
  const row = appRow({}, $("te-catalog").children.length);
  $("te-catalog").append(row);
  wireProblems($("tenant-form"));
  row.querySelector("input").focus();
  preview();
});
for (const id of ["te-display-name", "te-shell-enabled", "te-shell-upstream"]) {
  $(id).addEventListener("input", preview);
}
