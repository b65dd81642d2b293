// How numbers, times and sizes read on the dashboard; one place so every page agrees.

export function percent(fraction, digits = 1) {
  if (fraction === null || fraction === undefined) return "—";
  return `${(fraction * 100).toFixed(digits)}%`;
}

export function number(value, digits = 4) {
  if (value === null || value === undefined) return "—";
  return Number(value).toPrecision(digits).replace(/\.?0+(e|$)/, "$1");
}

export function integer(value) {
  if (value === null || value === undefined) return "—";
  return Math.round(value).toLocaleString("en");
}

/** 75 -> "1m 15s"; 3720 -> "1h 2m". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const total = Math.max(0, Math.round(seconds));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const rest = total % 60;
  if (hours) return `${hours}h ${minutes}m`;
  if (minutes) return `${minutes}m ${rest}s`;
  return `${rest}s`;
}

/** Seconds a job ran: to its end, or to now while it runs. */
export function jobSeconds(job, now = Date.now()) {
  if (!job.started_at) return null;
  const end = job.finished_at ? Date.parse(job.finished_at) : now;
  return (end - Date.parse(job.started_at)) / 1000;
}

export function bytes(size) {
  if (size === null || size === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

/** An ISO timestamp in the reader's locale, to the second. */
/** When, briefly (a row's second line): "Dec 7, 03:53 PM". */
export function shortDateTime(iso) {
  if (!iso) return "—";
  return new Date(iso).toLocaleString(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });
}

export function dateTime(iso) {
  if (!iso) return "—";
  return new Date(iso).toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

export function time(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleTimeString(undefined, { hour12: false });
}

export const TERMINAL_STATUSES = new Set(["succeeded", "failed", "cancelled"]);
export const STATUSES = ["queued", "running", "cancelling", "succeeded", "failed", "cancelled"];

/** (1, "point") -> "1 point"; (3, "point") -> "3 points"; `plural` for irregular words. */
export function counted(count, singular, plural = `${singular}s`) {
  return `${integer(count)} ${count === 1 ? singular : plural}`;
}
