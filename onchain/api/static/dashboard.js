// The dashboard's charts (Plotly, served from the Python package) and live tables: every page
// fetches the JSON API on load and again every data-refresh-s seconds, without a reload.
"use strict";

const TIERS = ["LIQUIDATABLE", "PENDING", "CRITICAL", "HIGH", "WATCH", "SAFE"];
const TIER_COLORS = {
  LIQUIDATABLE: "#c0392b", PENDING: "#e67e22", CRITICAL: "#f39c12",
  HIGH: "#f4d03f", WATCH: "#85c1e9", SAFE: "#58d68d",
};
const PLOT_CONFIG = { displaylogo: false, responsive: true, displayModeBar: false };

async function api(path) {
  const reply = await fetch(path, { headers: { Accept: "application/json" } });
  if (reply.status === 401) signInAgain();
  if (!reply.ok) throw new Error(`${path}: ${reply.status}`);
  return reply.json();
}

// Behind a token, a 401 means this page's session is gone (expired, signed out elsewhere, or the
// server restarted): sign in again and come back here, instead of failing every refresh.
function signInAgain() {
  const here = window.location.pathname + window.location.search;
  window.location.replace(`/login?next=${encodeURIComponent(here)}`);
}

function layout(title, xTitle, yTitle, extra) {
  return Object.assign({
    title: { text: title, font: { size: 14 } },
    margin: { l: 60, r: 20, t: 40, b: 45 },
    xaxis: { title: { text: xTitle } },
    yaxis: { title: { text: yTitle } },
    legend: { orientation: "h", y: -0.25 },
  }, extra || {});
}

function wad(value, digits) {
  if (value === null || value === undefined) return "∞ (no debt)";
  const s = value.padStart(19, "0");
  const whole = s.slice(0, s.length - 18).replace(/^0+(?=\d)/, "");
  return `${whole}.${s.slice(s.length - 18, s.length - 18 + (digits || 4))}`;
}

function amount(value, decimals) {
  const s = value.padStart(decimals + 1, "0");
  const whole = s.slice(0, s.length - decimals).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${whole}.${s.slice(s.length - decimals, s.length - decimals + 2).padEnd(2, "0")}`;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function drawMarketCharts(element) {
  const market = element.dataset.market;
  const history = await api(`/api/markets/${encodeURIComponent(market)}/history?limit=500`);
  const kind = element.dataset.kind;
  if (kind === "tiers") {
    // counts add up across the books of a market (one block, one snapshot)
    const blocks = history.books.length ? history.books[0].points.map((p) => p.block_number) : [];
    const traces = TIERS.map((tier) => ({
      x: blocks,
      y: blocks.map((_b, i) => history.books.reduce((n, book) => n + ((((book.points[i] || {}).tiers || {})[tier]) || 0), 0)),
      name: tier, type: "scatter", mode: "lines", stackgroup: "tiers", line: { color: TIER_COLORS[tier] },
    }));
    Plotly.react(element, traces, layout(`${market}: positions with debt by tier`, "block", "positions"), PLOT_CONFIG);
  } else {
    const traces = history.books.map((book) => ({
      x: book.points.map((p) => p.block_number),
      y: book.points.map((p) => p.collateral_at_risk_usd),
      name: book.label, type: "scatter", mode: "lines+markers", stackgroup: "at-risk",
    }));
    Plotly.react(element, traces, layout(`${market}: collateral at risk (not SAFE), USD`, "block", "USD"), PLOT_CONFIG);
  }
}

async function drawCurve(element) {
  const market = element.dataset.market;
  const report = await api(`/api/markets/${encodeURIComponent(market)}/curve`);
  const x = report.curve.drops.map((d) => d * 100);
  const traces = report.curve.by_market.filter((m) => m.collateral_at_risk_usd !== null).map((m) => ({
    x, y: m.collateral_at_risk_usd, name: m.label, type: "scatter", mode: "lines", stackgroup: "curve",
  }));
  traces.push({
    x, y: report.curve.positions_liquidatable, name: "positions liquidatable", yaxis: "y2",
    type: "scatter", mode: "lines", line: { dash: "dash", color: "#c0392b" },
  });
  Plotly.react(element, traces, layout(
    `Liquidation curve at block ${report.block.number}: collateral liquidatable vs a uniform drop of volatile assets`,
    "drop of volatile assets (%)", "collateral liquidatable (USD)",
    { yaxis2: { title: { text: "positions" }, overlaying: "y", side: "right" } },
  ), PLOT_CONFIG);
}

async function drawTargets(element) {
  const reply = await api("/api/targets?limit=15");
  const rows = reply.targets;
  const trace = {
    type: "bar", orientation: "h",
    y: rows.map((t) => `${t.account.slice(0, 10)}… ${t.label}`).reverse(),
    x: rows.map((t) => t.bonus_usd || 0).reverse(),
    marker: { color: rows.map((t) => TIER_COLORS[t.tier]).reverse() },
    customdata: rows.map((t) => t.account).reverse(),
  };
  Plotly.react(element, [trace], layout("Top targets: liquidator's bonus (USD, before gas)", "USD", "",
    { margin: { l: 260, r: 20, t: 40, b: 45 } }), PLOT_CONFIG);
  element.on("plotly_click", (event) => {
    window.location.href = `/accounts/${event.points[0].customdata}`;
  });
  const body = document.querySelector("#targets-table tbody");
  if (body && rows.length) {
    body.innerHTML = rows.map((t) => `<tr class="tier-${t.tier}">
      <td><a href="/markets/${encodeURIComponent(t.market_name)}">${escapeHtml(t.label)}</a></td>
      <td class="mono"><a class="account" href="/accounts/${t.account}">${t.account}</a></td>
      <td><span class="tier">${t.tier}</span></td><td class="num mono">${wad(t.health_factor)}</td>
      <td>${escapeHtml(t.collateral_asset)} / ${escapeHtml(t.debt_asset)}</td>
      <td class="num">${t.bonus_usd === null ? "n/a" : t.bonus_usd.toLocaleString("en-US", { maximumFractionDigits: 2 })}</td></tr>`).join("");
  }
}

function positionRows(positions) {
  return positions.map((p) => `<tr class="tier-${p.tier}">
    <td><a href="/markets/${encodeURIComponent(p.market_name)}">${escapeHtml(p.label)}</a></td>
    <td class="mono"><a class="account" href="/accounts/${p.account}">${p.account}</a></td>
    <td class="num mono">${wad(p.health_factor)}</td><td><span class="tier">${p.tier}</span></td>
    <td class="num">${p.liquidation_probability === null ? "-" : (p.liquidation_probability * 100).toFixed(2) + "%"}</td>
    <td class="num">${amount(p.total_collateral_base, p.base_currency_decimals)}</td>
    <td class="num">${amount(p.total_debt_base, p.base_currency_decimals)}</td>
    <td>${p.block_number}</td></tr>`).join("");
}

async function refreshPositions(query) {
  const body = document.querySelector("#positions-table tbody");
  if (!body) return;
  const reply = await api(`/api/positions?${query}`);
  if (reply.positions.length) body.innerHTML = positionRows(reply.positions);
}

async function drawHealth(element, account) {
  const reply = await api(`/api/accounts/${account}`);
  const book = reply.history[Number(element.dataset.index)];
  if (!book) return;
  const x = book.points.map((p) => p.block_number);
  const traces = [
    { x, y: book.points.map((p) => p.health_factor_float), name: "health factor", type: "scatter", mode: "lines+markers" },
    { x, y: x.map(() => book.liquidation_threshold), name: "liquidation (HF = 1)", type: "scatter", mode: "lines", line: { dash: "dot", color: "#c0392b" } },
  ];
  Plotly.react(element, traces, layout(`${book.label}: health factor`, "block", "health factor"), PLOT_CONFIG);
}

async function refresh() {
  const page = document.body.dataset.page;
  const jobs = [];
  if (page === "index") {
    document.querySelectorAll(".chart[data-kind=tiers], .chart[data-kind=at-risk]").forEach((el) => jobs.push(drawMarketCharts(el)));
    const targets = document.getElementById("chart-targets");
    if (targets) jobs.push(drawTargets(targets));
  } else if (page === "market") {
    const market = document.body.dataset.market;
    document.querySelectorAll(".chart[data-kind=tiers], .chart[data-kind=at-risk]").forEach((el) => jobs.push(drawMarketCharts(el)));
    jobs.push(drawCurve(document.getElementById("chart-curve")));
    jobs.push(refreshPositions(`market=${encodeURIComponent(market)}&limit=50`));
  } else if (page === "positions") {
    jobs.push(refreshPositions(document.body.dataset.query));
  } else if (page === "account") {
    const account = document.body.dataset.account;
    document.querySelectorAll(".chart[data-kind=hf]").forEach((el) => jobs.push(drawHealth(el, account)));
  }
  const results = await Promise.allSettled(jobs);
  const failed = results.filter((r) => r.status === "rejected");
  const stamp = document.getElementById("updated");
  if (stamp) {
    stamp.textContent = failed.length
      ? `refresh failed (${failed[0].reason.message}); retrying`
      : `updated ${new Date().toLocaleTimeString()}`;
    stamp.dataset.refreshes = String(Number(stamp.dataset.refreshes || 0) + 1);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  refresh();
  const every = Number(document.body.dataset.refreshS || 15);
  setInterval(refresh, Math.max(1, every) * 1000);
});
