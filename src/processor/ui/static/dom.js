// DOM building with text only: every value from the API goes through textContent, never
// innerHTML, so a log message like "<script>" is shown, not run.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = String(value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export function card(title, ...children) {
  return el("div", { class: "card" }, el("h3", { text: title }), ...children);
}

const INTEGER = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const DECIMAL = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });
const SMALL = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 2 });

export function num(value) {
  if (value === null || value === undefined) return "–";
  if (Number.isInteger(value)) return INTEGER.format(value);
  return Math.abs(value) < 1 ? SMALL.format(value) : DECIMAL.format(value);
}

export function ms(value) {
  return value === null || value === undefined ? "–" : `${DECIMAL.format(value)} ms`;
}

// A duration in ms, in the unit that reads best (s, min, h past a second).
export function duration(value) {
  if (value === null || value === undefined) return "–";
  if (value < 1000) return ms(value);
  if (value < 60e3) return `${DECIMAL.format(value / 1e3)} s`;
  if (value < 3600e3) return `${DECIMAL.format(value / 60e3)} min`;
  return `${DECIMAL.format(value / 3600e3)} h`;
}

export function pct(fraction) {
  return fraction === null || fraction === undefined ? "–" : `${DECIMAL.format(fraction * 100)} %`;
}

export function time(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "–";
}

// A table from rows; columns: [{key, label, format, numeric, sortable, node}] (``node(row)``
// gives a cell's element, e.g. a button, instead of text). ``onRow`` makes
// rows clickable; ``sort`` ({key, asc}) marks the sorted header, ``onSort(key)`` re-sorts.
export function table(columns, rows, { onRow, sort, onSort, testid } = {}) {
  const head = el("tr", {}, columns.map((c) => {
    const classes = [c.numeric ? "num" : "", onSort && c.sortable !== false ? "sortable" : ""];
    if (sort && sort.key === c.key) classes.push("sorted", sort.asc ? "asc" : "");
    return el("th", {
      class: classes.join(" ").trim(),
      "data-key": c.key,
      text: c.label,
      onclick: onSort && c.sortable !== false ? () => onSort(c.key) : undefined,
    });
  }));
  const body = rows.map((row) => el("tr", {
    class: onRow ? "clickable" : undefined,
    onclick: onRow ? () => onRow(row) : undefined,
  }, columns.map((c) => el("td", {
    class: [c.numeric ? "num" : "", c.className || ""].join(" ").trim() || undefined,
    "data-key": c.key,
    text: c.node ? undefined : (c.format ? c.format(row[c.key], row) : (row[c.key] ?? "–")),
  }, c.node ? c.node(row) : undefined))));
  return el("table", { "data-testid": testid }, el("thead", {}, head), el("tbody", {}, body));
}

export function notice(...children) {
  return el("div", { class: "notice" }, ...children);
}
