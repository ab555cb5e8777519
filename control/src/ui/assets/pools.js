// realmctl operator UI: the upstream pools view — each pool's endpoints, health check and
// timeouts, its endpoints' health as each gateway reports it (GET /v1/gateways/upstreams), how
// many tenants use it; create or replace a pool (PUT /v1/upstreams/{name}, the API's
// problems beside each field) and delete an unused one. Runs after ui.js and forms.js.
"use strict";

// "2/2 healthy at gw1; 1/2 at gw2", from each gateway's own count.
function healthText(name, health) {
  if (!health) return { text: "—", bad: false };
  const parts = [];
  let bad = false;
  for (const g of health.gateways) {
    if (g.error) {
      parts.push(g.url + ": unknown (" + g.error + ")");
      bad = true;
      continue;
    }
    const p = g.pools[name];
    if (!p) {
      parts.push(g.url + ": not loaded yet");
      continue;
    }
    if (p.healthy < p.healthy + p.unhealthy) bad = true;
    parts.push(p.healthy + "/" + (p.healthy + p.unhealthy) + " healthy at " + g.url);
  }
  return { text: parts.join("; ") || "no gateways", bad };
}

function poolRow(u, health) {
  const h = healthText(u.name, health);
  const check = u.health_check && u.health_check.http_path ? "GET " + u.health_check.http_path : "TCP connect";
  const timeouts = [u.connect_timeout_ms ?? 2000, u.read_timeout_ms ?? 60000, u.write_timeout_ms ?? 60000]
    .join(" / ");
  const actions = el("td", { class: "actions" });
  const edit = el("button", { type: "button", class: "write", "aria-label": "Edit pool " + u.name,
    onclick: (ev) => openPoolEditor(u, ev.currentTarget) }, "Edit");
  actions.append(edit);
  if (u.tenants_using === 0) {
    const del = act("Delete", async () => {
      if (confirm("Delete pool " + u.name + "?")) {
        await api("DELETE", "/v1/upstreams/" + encodeURIComponent(u.name));
      }
    }, "danger");
    del.setAttribute("aria-label", "Delete pool " + u.name);
    actions.append(del);
  }
  return el("tr", { "data-pool": u.name },
    el("td", {}, u.name), el("td", {}, u.endpoints.join(", ")), el("td", {}, check),
    el("td", {}, timeouts),
    el("td", { class: "pool-health " + (h.bad ? "bad" : "ok") }, h.text),
    el("td", {}, u.tenants_using), actions);
}

const poolsView = {
  async refresh() {
    const [list, health] = await Promise.all([
      apiAll("/v1/upstreams", "upstreams"),
      api("GET", "/v1/gateways/upstreams").catch(() => null),
    ]);
    fill("upstreams", { list: list.upstreams, health }, (d) => d.list.length
      ? d.list.map((u) => poolRow(u, d.health))
      : [el("tr", {}, el("td", { colspan: "7" }, "no pools"))]);
  },
  reset() {
    closeDialog($("pool-editor"));
  },
};

function openPoolEditor(u, opener) {
  const form = $("pool-form");
  form.reset();
  $("pe-name").readOnly = !!u;
  $("pool-editor-title").textContent = u ? "Upstream pool " + u.name : "New upstream pool";
  if (u) {
    $("pe-name").value = u.name;
    $("pe-endpoints").value = u.endpoints.join("\n");
    $("pe-health-path").value = (u.health_check && u.health_check.http_path) || "";
    $("pe-connect").value = u.connect_timeout_ms ?? "";
    $("pe-read").value = u.read_timeout_ms ?? "";
    $("pe-write").value = u.write_timeout_ms ?? "";
  }
  placeProblems(form, "pool-form-problems", null);
  openDialog($("pool-editor"), opener, () => $("pool-new"));
}

async function savePool(ev) {
  ev.preventDefault();
  const form = $("pool-form");
  const name = $("pe-name").value.trim();
  const body = { endpoints: lines($("pe-endpoints").value) };
  if ($("pe-health-path").value.trim()) body.health_check = { http_path: $("pe-health-path").value.trim() };
  for (const [id, key] of [["pe-connect", "connect_timeout_ms"], ["pe-read", "read_timeout_ms"],
    ["pe-write", "write_timeout_ms"]]) {
    if ($(id).value.trim()) body[key] = numberOrText($(id).value);
  }
  // The name is in the path: an empty one has no URL to send to.
  if (!name) {
    placeProblems(form, "pool-form-problems", { raw: [{ at: "name", message: "required" }] });
    return;
  }
  try {
    await api("PUT", "/v1/upstreams/" + encodeURIComponent(name), body);
    placeProblems(form, "pool-form-problems", null);
    closeDialog($("pool-editor"));
    await refresh();
  } catch (e) {
    placeProblems(form, "pool-form-problems", e);
  }
}

wireProblems($("pool-form"));
$("pool-form").addEventListener("submit", savePool);
$("pool-editor-close").addEventListener("click", () => closeDialog($("pool-editor")));
$("pool-new").addEventListener("click", (ev) => openPoolEditor(null, ev.currentTarget));
views.push(poolsView);
