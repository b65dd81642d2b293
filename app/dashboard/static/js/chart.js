// Line charts on uPlot: columns of numbers that grow as a stream arrives, drawn at most once per
// animation frame. Each chart sits in a <figure> whose caption and summary say in words what the
// canvas shows, for readers who cannot see it (and for tests, which read what a person reads).

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { h } from "./dom.js";
import { counted, number } from "./format.js";

const HEIGHT = 220;
const INTEGER_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

/** An x range with `fraction` of its width (at least 0.5) free on each side, so that the
 * first and last points of a scatter are not cut by the frame. */
function padded(fraction) {
  return (_, min, max) => {
    if (min === null || max === null) return [0, 1];
    const pad = Math.max((max - min) * fraction, min === max ? 0.5 : 0);
    return [min - pad, max + pad];
  };
}

/** The colour of a CSS variable (`--series-1`), so charts follow the theme. */
export function cssColor(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

export function seriesColor(index) {
  return cssColor(`--series-${(index % 6) + 1}`);
}

// The legend shows a series' value under the cursor; with no cursor on the chart, its name only
// (not "epoch: —").
function legendValue(_, value) {
  return isValue(value) ? number(value, 4) : "";
}

// Aligned columns mark an x where a series has no point with null or (uPlot.join) undefined.
function isValue(value) {
  return value !== null && value !== undefined;
}

/** A line needs two points: a series with one is drawn as its point, not left invisible. */
function hasOnePoint(plot, seriesIndex) {
  let seen = 0;
  for (const value of plot.data[seriesIndex]) {
    if (isValue(value) && ++seen > 1) return false;
  }
  return seen === 1;
}

/** Room for the y axis: its longest tick label ("0.0005") beside its rotated title, so the
 * two never overlap. */
function yAxisWidth(_, values) {
  const longest = Math.max(0, ...(values || []).map((value) => String(value).length));
  return Math.max(50, 7 * longest + 32);
}

/**
 * A figure holding one chart. `series`: [{label, color?, points?, line?, pointSize?}] drawn
 * against a shared x (`xLabel`); `line: false` draws a series as dots only. `xPadding` leaves
 * room beside the first and last x; `xIntegers` puts x ticks on whole numbers only.
 * Returns {figure, append(x, values), setColumns(xs, columns), destroy()}.
 */
export function lineChart({ title, xLabel, yLabel, series, yRange, xPadding = 0, xIntegers = false }) {
  const canvas = h("div", { class: "chart-canvas", "aria-hidden": "true" });
  const summary = h("p", { class: "chart-summary" });
  const figure = h("figure", { class: "chart panel" }, h("figcaption", { text: title }), summary, canvas);
  const state = { xs: [], columns: series.map(() => []), plot: null, frame: 0, summaryQueued: false };

  function options(width) {
    const axis = { stroke: cssColor("--muted"), grid: { stroke: cssColor("--border"), width: 1 } };
    return {
      width,
      height: HEIGHT,
      scales: { x: xPadding ? { time: false, range: padded(xPadding) } : { time: false }, y: yRange ? { range: yRange } : {} },
      series: [
        { label: xLabel, value: legendValue },
        ...series.map((item, index) => ({
          label: item.label,
          stroke: item.color || seriesColor(index),
          width: 2,
          spanGaps: true,
          points: pointsOf(item, index),
          ...(item.line === false ? { paths: () => null } : {}),
          value: legendValue,
        })),
      ],
      axes: [
        { ...axis, label: xLabel, ...(xIntegers ? { incrs: INTEGER_STEPS } : {}) },
        { ...axis, label: yLabel || title.toLowerCase(), values: (_, ticks) => ticks.map((t) => number(t, 3)),
          size: yAxisWidth },
      ],
    };
  }

  // A series drawn as dots only (`line: false`, a scatter), or one given a `pointSize`, gets
  // larger, filled points.
  function pointsOf(item, index) {
    if (item.line !== false && !item.pointSize) return { show: item.points ? true : hasOnePoint, size: 5 };
    const color = item.color || seriesColor(index);
    return { show: true, size: item.pointSize || 8, fill: color, stroke: color };
  }

  function draw() {
    state.frame = 0;
    const data = [state.xs, ...state.columns];
    if (!state.plot && canvas.isConnected && canvas.clientWidth > 0) {
      state.plot = new uPlot(options(canvas.clientWidth), data, canvas);
    } else if (state.plot) {
      state.plot.setData(data);
    }
  }

  function describe() {
    const parts = series.map((item, index) => {
      const values = state.columns[index].filter(isValue);
      if (!values.length) return `${item.label}: no points yet`;
      return `${item.label}: ${counted(values.length, "point")}, last ${number(values[values.length - 1], 4)}`;
    });
    return parts.join("; ");
  }

  // Many points may arrive in one burst (a replayed history): draw once, on the next frame,
  // and write the summary once the burst is in. The summary does not wait for a frame: a
  // hidden tab gets none, and its text must still be true.
  function schedule() {
    if (!state.frame) state.frame = requestAnimationFrame(draw);
    if (!state.summaryQueued) {
      state.summaryQueued = true;
      queueMicrotask(() => {
        state.summaryQueued = false;
        summary.textContent = describe();
      });
    }
  }

  /** Adds one row: `values[i]` for series i, null where this x has none. Rows come in x order;
   * a row at the same x as the last one fills in that row instead of adding another. */
  function append(x, values) {
    const last = state.xs.length - 1;
    if (last >= 0 && state.xs[last] === x) {
      values.forEach((value, index) => {
        if (value !== null && value !== undefined) state.columns[index][last] = value;
      });
    } else {
      state.xs.push(x);
      values.forEach((value, index) => state.columns[index].push(value ?? null));
    }
    schedule();
  }

  function setColumns(xs, columns) {
    state.xs = xs;
    state.columns = columns;
    schedule();
  }

  const resizer = new ResizeObserver(() => {
    if (!canvas.clientWidth) return;
    if (state.plot) state.plot.setSize({ width: canvas.clientWidth, height: HEIGHT });
    else schedule();
  });
  resizer.observe(canvas);

  function destroy() {
    resizer.disconnect();
    if (state.frame) cancelAnimationFrame(state.frame);
    if (state.plot) state.plot.destroy();
  }

  summary.textContent = describe();
  return { figure, append, setColumns, destroy, pointCount: () => state.xs.length };
}

/**
 * Puts several (xs, ys) series on one shared, sorted x axis with nulls where a series has no
 * point (uPlot draws aligned columns). Returns [xs, column, column, ...].
 */
export function alignSeries(pairs) {
  if (!pairs.length) return [[]];
  return uPlot.join(pairs.map(([xs, ys]) => [xs, ys]));
}
