// realmctl operator UI: traffic at a glance (GET /v1/traffic) — the fleet's requests/s, 5xx
// share and p95 request duration over the last hour, the most active tenants, and one
// tenant's charts. Charts are drawn by uPlot (/ui/uplot.js, bundled from npm by the build).
// Runs after ui.js and uses its helpers (api, el, $, views). Other views open a tenant's
// charts with showTenantTraffic(id).
"use strict";

const TRAFFIC_HEIGHT = 120;

// One small chart: a uPlot in `box`, redrawn only when the data changed.
class TrafficChart {
  constructor(box, label, unit, color) {
    this.box = box;
    this.label = label;
    this.unit = unit;
    this.color = color;
    this.plot = null;
    this.key = "";
    // The chart follows its box: a narrower window (a phone, a rotated tablet) narrows it.
    this.resize = new ResizeObserver(() => {
      if (this.plot) this.plot.setSize({ width: this.width(), height: TRAFFIC_HEIGHT });
    });
    this.resize.observe(this.box);
  }

  width() {
    return Math.max(160, Math.min(480, this.box.clientWidth || 320));
  }

  draw(xs, ys) {
    const key = xs.length + ":" + xs[xs.length - 1] + ":" + ys[ys.length - 1];
    if (key === this.key) return;
    this.key = key;
    const data = [xs, ys];
    if (this.plot) {
      this.plot.setData(data);
      return;
    }
    const ink = getComputedStyle(document.body).color;
    const axis = { stroke: ink, grid: { stroke: "#8884", width: 1 }, ticks: { stroke: "#8884" } };
    this.plot = new uPlot({
      width: this.width(),
      height: TRAFFIC_HEIGHT,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: { y: { range: (u, min, max) => [0, Math.max(max || 0, this.unit === "%" ? 1 : 0.001)] } },
      axes: [axis, Object.assign({ size: 48, values: (u, v) => v.map((x) => x + this.unit) }, axis)],
      series: [{}, { label: this.label, stroke: this.color, width: 1.5, fill: this.color + "22",
        spanGaps: false }],
    }, data, this.box);
  }

  clear() {
    this.resize.disconnect();
    if (this.plot) this.plot.destroy();
    this.plot = null;
    this.key = "";
  }
}

// A chart with its caption, and the newest value in words (a canvas says nothing to a
// screen reader).
// The figure carries its field and newest value as data attributes (what a test reads).
function trafficFigure(label, field) {
  const box = el("div", { class: "chart" });
  const now = el("span", { class: "chart-now" });
  return { node: el("figure", { class: "traffic-chart", "data-field": field },
    el("figcaption", {}, label, " ", now), box), box, now };
}

function trafficCharts(container, fleet) {
  const figs = [
    ["requests/s", "", "#1565c0", "rps"],
    ["5xx share", "%", "#b00020", "error_rate"],
    [fleet ? "p95 latency (all tenants)" : "p95 latency", " ms", "#6a1b9a", "p95_ms"],
  ];
  const charts = figs.map(([label, unit, color, field]) => {
    const f = trafficFigure(label, field);
    container.append(f.node);
    return { field, unit, chart: new TrafficChart(f.box, label, unit, color), now: f.now, node: f.node };
  });
  return {
    draw(points) {
      const xs = points.map((p) => p.t);
      for (const c of charts) {
        const ys = points.map((p) => {
          const v = p[c.field];
          if (v === null || v === undefined) return null;
          return c.field === "error_rate" ? Math.round(v * 10000) / 100 : v;
        });
        c.chart.draw(xs, ys);
        const last = ys.length ? ys[ys.length - 1] : null;
        c.now.textContent = last === null ? "(no data)" : "now " + last + c.unit;
        c.node.dataset.now = last === null ? "" : String(last);
        c.node.dataset.points = String(ys.filter((y) => y !== null).length);
      }
    },
    clear() {
      for (const c of charts) { c.chart.clear(); c.now.textContent = ""; }
      container.replaceChildren();
    },
  };
}

const trafficView = {
  built: false,
  fleet: null,
  tenant: null,
  tenantCharts: null,

  build() {
    if (this.built) return;
    this.built = true;
    const section = $("traffic-view");
    const input = el("input", { id: "traffic-tenant", name: "tenant", autocomplete: "off",
      spellcheck: "false", placeholder: "acme" });
    const form = el("form", { id: "traffic-form", onsubmit: (ev) => {
      ev.preventDefault();
      this.show(input.value.trim() || null);
    } }, el("label", { for: "traffic-tenant" }, "tenant"), input,
      el("button", { type: "submit" }, "Show tenant"),
      el("button", { type: "button", onclick: () => { input.value = ""; this.show(null); } }, "Fleet only"));
    const fleetCharts = el("div", { id: "traffic-fleet", class: "charts" });
    const tenantTitle = el("h3", { id: "traffic-tenant-title" });
    const tenantCharts = el("div", { id: "traffic-tenant-charts", class: "charts" });
    const top = el("table", { id: "traffic-tenants" },
      el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, "tenant"), el("th", { scope: "col" }, "requests/s now"),
        el("th", { scope: "col" }, "5xx share now"), el("th", { scope: "col" }, "requests in the window"),
        el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "charts")))),
      el("tbody"));
    section.replaceChildren(
      el("h2", { id: "traffic-title" }, "Traffic (last hour)"),
      el("p", { id: "traffic-status", role: "status" }),
      fleetCharts, form, tenantTitle, tenantCharts,
      el("h3", {}, "Most active tenants"),
      // Built after the page's tables were wrapped: scrolls in a region of its own too.
      el("div", { class: "table-wrap", tabindex: "0", role: "region",
        "aria-label": "Most active tenants table" }, top));
    this.fleet = trafficCharts(fleetCharts, true);
    this.tenantBox = tenantCharts;
  },

  // Show `id`'s charts (null: none) and fetch them now.
  show(id) {
    this.build();
    this.tenant = id;
    if (this.tenantCharts) this.tenantCharts.clear();
    this.tenantCharts = id ? trafficCharts(this.tenantBox, false) : null;
    $("traffic-tenant-title").textContent = id ? "Tenant " + id : "";
    if (id) $("traffic-tenant").value = id;
    this.refresh().catch(showError);
    if (id) $("traffic-view").scrollIntoView({ block: "start" });
  },

  async refresh() {
    this.build();
    const fleet = await api("GET", "/v1/traffic");
    const failing = fleet.gateways.filter((g) => g.state === "failing");
    $("traffic-status").textContent = fleet.step_seconds === null
      ? "Scraping is off (gateways.traffic.scrape_interval_ms: 0)."
      : "Scraped from " + fleet.gateways.length + " gateway(s) every " + fleet.step_seconds + " s" +
        (failing.length ? "; not answering: " + failing.map((g) => g.url + " (" + g.last_error + ")").join(", ") : "") +
        ". Latency: p95 of the request durations at the gateways.";
    this.fleet.draw(fleet.points);
    fill("traffic-tenants", fleet.tenants, (list) => list.map((t) => el("tr", {},
      el("td", {}, t.id),
      el("td", {}, t.rps ?? "—"),
      el("td", {}, t.error_rate === null ? "—" : Math.round(t.error_rate * 10000) / 100 + "%"),
      el("td", {}, t.requests),
      el("td", { class: "actions" }, el("button", { type: "button", onclick: () => this.show(t.id) },
        "Charts", el("span", { class: "visually-hidden" }, " of " + t.id))))));
    if (this.tenant && this.tenantCharts) {
      try {
        const one = await api("GET", "/v1/traffic?tenant=" + encodeURIComponent(this.tenant));
        this.tenantCharts.draw(one.points);
      } catch (e) {
        $("traffic-tenant-title").textContent = "Tenant " + this.tenant + ": " + e.message;
      }
    }
  },

  reset() {
    if (!this.built) return;
    this.fleet.clear();
    if (this.tenantCharts) this.tenantCharts.clear();
    this.tenantCharts = null;
    this.tenant = null;
    this.built = false;
    $("traffic-view").replaceChildren();
  },
};

// For other views (a tenant's page): open that tenant's traffic charts.
function showTenantTraffic(id) {
  trafficView.show(id);
}

// Deferred after ui.js: the page is parsed and `views` exists.
views.push(trafficView);
