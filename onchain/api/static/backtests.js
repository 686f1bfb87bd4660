// A stored backtest's charts, drawn once from /api/backtests/{id} with the dashboard's Plotly
// (served locally) and its helpers (api, layout, PLOT_CONFIG from dashboard.js): the reliability
// diagram (mean forecast vs observed frequency per bin, the 90% bootstrap interval as error bars,
// the diagonal) and the ROC curve (each model's AUC in the title and the legend).
"use strict";

const AXIS_SCALES = [
  { label: "linear axes", method: "relayout", args: [{ "xaxis.type": "linear", "yaxis.type": "linear", "xaxis.range": [0, 1], "yaxis.range": [0, 1] }] },
  { label: "log axes", method: "relayout", args: [{ "xaxis.type": "log", "yaxis.type": "log", "xaxis.range": [-4, 0], "yaxis.range": [-4, 0] }] },
];

function fixed(value, digits) {
  return value === null || value === undefined ? "n/a" : value.toFixed(digits);
}

function drawReliability(element, report) {
  const traces = [{
    x: [0.0001, 1], y: [0.0001, 1], name: "perfect (forecast = observed)", type: "scatter",
    mode: "lines", line: { dash: "dot", color: "#888" }, hoverinfo: "skip",
  }];
  for (const [name, scores] of Object.entries(report.models)) {
    const rows = scores.reliability;
    const observed = rows.map((r) => r.observed);
    traces.push({
      x: rows.map((r) => r.mean_forecast), y: observed, name: `${name} (Brier ${fixed(scores.brier, 4)})`,
      type: "scatter", mode: "lines+markers",
      error_y: {
        type: "data", symmetric: false,
        array: rows.map((r) => Math.max(r.observed_hi - r.observed, 0)),
        arrayminus: rows.map((r) => Math.max(r.observed - r.observed_lo, 0)),
      },
      customdata: rows.map((r) => [r.lo, r.hi, r.n, r.observed_lo, r.observed_hi]),
      hovertemplate: "bin %{customdata[0]}–%{customdata[1]} (n %{customdata[2]})<br>forecast %{x:.4f}"
        + "<br>observed %{y:.4f} [%{customdata[3]:.4f}, %{customdata[4]:.4f}]",
    });
  }
  Plotly.react(element, traces, layout(
    "Reliability: forecast vs observed per bin (90% bootstrap interval)",
    "forecast probability of liquidation (bin mean)", "observed frequency",
    {
      xaxis: { title: { text: "forecast probability of liquidation (bin mean)" }, range: [0, 1] },
      yaxis: { title: { text: "observed frequency" }, range: [0, 1] },
      legend: { orientation: "h", y: -0.2 },
      // top left inside the plot: a reliability diagram has no point there
      updatemenus: [{ type: "buttons", direction: "right", x: 0.01, y: 0.99, xanchor: "left", yanchor: "top", buttons: AXIS_SCALES }],
    },
  ), PLOT_CONFIG);
}

function drawRoc(element, report) {
  const traces = [{
    x: [0, 1], y: [0, 1], name: "chance", type: "scatter", mode: "lines",
    line: { dash: "dot", color: "#888" }, hoverinfo: "skip",
  }];
  const aucs = [];
  for (const [name, scores] of Object.entries(report.models)) {
    aucs.push(`${name} ${fixed(scores.auc, 3)}`);
    traces.push({
      x: scores.roc.fpr, y: scores.roc.tpr, name: `${name} (AUC ${fixed(scores.auc, 3)})`,
      type: "scatter", mode: "lines",
    });
  }
  Plotly.react(element, traces, layout(
    `ROC: AUC ${aucs.join(", ")}`, "false positive rate", "true positive rate (recall)",
    { xaxis: { title: { text: "false positive rate" }, range: [0, 1] }, yaxis: { title: { text: "true positive rate (recall)" }, range: [0, 1] }, legend: { orientation: "h", y: -0.2 } },
  ), PLOT_CONFIG);
}

async function drawBacktest() {
  const run = await api(`/api/backtests/${encodeURIComponent(document.body.dataset.run)}`);
  drawReliability(document.getElementById("chart-reliability"), run.report);
  drawRoc(document.getElementById("chart-roc"), run.report);
}

document.addEventListener("DOMContentLoaded", () => {
  drawBacktest().catch((error) => {
    const stamp = document.getElementById("updated");
    if (stamp) stamp.textContent = `charts failed (${error.message})`;
  });
});
