// npmnv2 explorer: the front end of the Jupyter widget (anywidget) and of the self-contained page.
// Plain JavaScript, no build step. It only draws: every number comes from Python (NumPy).
// The host gives a `model` with get(name), on("msg:custom", cb) and send(msg): anywidget's model
// in Jupyter, a small shim over the embedded data in the page.

const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
  [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];

function viridis(t) {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.floor(x), j = Math.min(i + 1, VIRIDIS.length - 1), f = x - i;
  return VIRIDIS[i].map((v, k) => Math.round(v * (1 - f) + VIRIDIS[j][k] * f));
}

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "html") node.innerHTML = v;
    else if (k === "style") node.style.cssText = v;  // through the CSSOM: the page's CSP allows no style attributes
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function loadImage(base64) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.src = "data:image/png;base64," + base64;
  });
}

function fmt(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(2) + "G";
  if (n >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + "k";
  return String(n);
}

function render({ model, el }) {
  const overview = model.get("overview");
  const interactive = model.get("interactive");
  const state = { step: null, payload: null, channel: 0, selected: new Set(), scale: "shared", pixel: null,
    sprites: {}, tiles: {}, pendingTiles: null };
  const root = h("div", { class: "npx", tabindex: "0" });
  el.append(root);

  // ---------------------------------------------------------------- layout
  const imageBox = h("div", { class: "npx-imagebox" });
  const imageCanvas = h("canvas", { class: "npx-image" });
  const rfBox = h("div", { class: "npx-rf", style: "display:none" });
  imageBox.append(imageCanvas, rfBox);
  const pred = h("div", { class: "npx-pred" });
  const arch = h("div", { class: "npx-arch" });
  const blockSteps = h("div", { class: "npx-blocksteps" });
  const slider = h("input", { class: "npx-slider", type: "range", min: "0", max: String(overview.steps.length - 1),
    value: "0" });
  const card = h("div", { class: "npx-card" });
  const grid = h("div", { class: "npx-grid" });
  const scaleToggle = h("select", { class: "npx-scale" }, h("option", { value: "shared" }, "shared colour scale"),
    h("option", { value: "channel" }, "per-channel colour scale"));
  const big = h("canvas", { class: "npx-big", width: "240", height: "240" });
  const bigInfo = h("div", { class: "npx-biginfo" });
  const kernelBox = h("div", { class: "npx-kernel" });
  const paddingBox = h("div", { class: "npx-padding" });
  const windowBox = h("div", { class: "npx-window" });
  const tools = h("div", { class: "npx-tools" });
  const result = h("div", { class: "npx-result" });
  root.append(
    h("div", { class: "npx-top" }, imageBox, pred),
    h("div", { class: "npx-label" }, "Architecture: click a block, then a step (or use the slider, or the arrow keys)"),
    arch, blockSteps, slider, card,
    h("div", { class: "npx-mapsrow" },
      h("div", { class: "npx-mapscol" }, h("div", { class: "npx-label" }, "Feature maps ", scaleToggle), grid),
      h("div", { class: "npx-detail" }, big, bigInfo, windowBox, kernelBox, paddingBox)),
    tools, result);

  // ---------------------------------------------------------------- input image and prediction
  loadImage(overview.image).then((img) => {
    const scale = Math.max(1, Math.floor(300 / img.width));
    imageCanvas.width = img.width * scale;
    imageCanvas.height = img.height * scale;
    imageCanvas.dataset.scale = String(scale);
    const ctx = imageCanvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, 0, 0, imageCanvas.width, imageCanvas.height);
  });

  function top5Table(title, rows, cls) {
    const table = h("table", { class: "npx-top5 " + (cls || "") }, h("caption", {}, title));
    for (const [id, p, label] of rows) {
      table.append(h("tr", {}, h("td", {}, p.toFixed(3)), h("td", {}, String(id)), h("td", {}, label)));
    }
    return table;
  }
  pred.append(top5Table("prediction", overview.top5, "npx-old"));

  // ---------------------------------------------------------------- architecture
  for (const block of overview.blocks) {
    arch.append(h("button", { class: "npx-block", "data-block": block.name, onclick: () => openBlock(block.name) },
      block.name));
  }

  function openBlock(name, keepStep) {
    const block = overview.blocks.find((b) => b.name === name);
    for (const b of arch.querySelectorAll(".npx-block")) b.classList.toggle("npx-on", b.dataset.block === name);
    const prefix = name === "stem" ? "conv_stem" : name;
    const label = (s) => (s === prefix ? "block output" : s.startsWith(prefix + ".") ? s.slice(prefix.length + 1) : s);
    blockSteps.replaceChildren(...block.steps.map((s) => h("button", { class: "npx-step", "data-step": s,
      onclick: () => select(s) }, label(s))));
    if (!keepStep) select(block.steps[0]);
  }

  function select(name) {
    state.step = name;
    state.pixel = null;
    state.selected.clear();
    slider.value = String(overview.steps.indexOf(name));
    model.send({ type: "step", name });
  }

  slider.addEventListener("input", () => select(overview.steps[Number(slider.value)]));
  root.addEventListener("keydown", (event) => {
    const i = overview.steps.indexOf(state.step);
    if (event.key === "ArrowRight" && i < overview.steps.length - 1) select(overview.steps[i + 1]);
    else if (event.key === "ArrowLeft" && i > 0) select(overview.steps[i - 1]);
    else return;
    event.preventDefault();
  });
  scaleToggle.addEventListener("change", () => { state.scale = scaleToggle.value; drawTiles(); });

  // ---------------------------------------------------------------- one step
  function showPayload(p) {
    state.payload = p;
    state.channel = 0;
    const block = overview.blocks.find((b) => b.name === p.block);
    if (!blockSteps.querySelector(`[data-step="${CSS.escape(p.name)}"]`)) openBlock(block.name, true);
    for (const b of blockSteps.querySelectorAll(".npx-step")) b.classList.toggle("npx-on", b.dataset.step === p.name);
    for (const b of arch.querySelectorAll(".npx-block")) b.classList.toggle("npx-on", b.dataset.block === p.block);
    const rows = [
      ["op", p.op || "-"], ["kind", p.kind],
      ["input", p.input_shapes.map((s) => "(" + s.join(", ") + ")").join(" + ") || "-"],
      ["output", "(" + p.output_shape.join(", ") + ")"],
    ];
    if (p.window) rows.push(["kernel / stride / dilation", `${p.window.kernel}x${p.window.kernel} / ${p.window.stride} / ${p.window.dilation}`],
      ["padding (top, bottom, left, right)", p.window.padding.join(", ")]);
    rows.push(["MACs", fmt(p.macs)], ["parameters", fmt(p.n_params)]);
    if (p.receptive_field) rows.push(["receptive field", p.receptive_field.whole ? "the whole image" :
      `${p.receptive_field.size[0]}x${p.receptive_field.size[1]} pixels, stride ${p.receptive_field.jump[0]}`]);
    const table = h("table", { class: "npx-attrs" });
    for (const [k, v] of rows) table.append(h("tr", {}, h("th", {}, k), h("td", {}, v)));
    card.replaceChildren(h("h3", { class: "npx-name" }, `${p.index + 1}/${overview.steps.length}  ${p.name}`), table,
      h("p", { class: "npx-explain" }, p.explain),
      h("details", { class: "npx-sourcebox", open: "" }, h("summary", {}, "source of " + (p.op || "this step")),
        h("pre", { class: "npx-source", html: p.source_html || "" })));
    grid.replaceChildren();
    bigInfo.replaceChildren();
    kernelBox.replaceChildren();
    paddingBox.replaceChildren();
    windowBox.replaceChildren();
    big.getContext("2d").clearRect(0, 0, big.width, big.height);
    big.style.display = p.tiles ? "" : "none";  // a step without channels (the logits) has no picture to enlarge
    rfBox.style.display = "none";
    if (p.tiles) {
      spriteOf(p.name, p.tiles).then(() => { drawTiles(); chooseChannel(0); });
    } else if (p.vector) {
      const list = h("table", { class: "npx-vector" }, h("caption", {}, `${p.vector.size} values, top 10`));
      for (const [i, v, label] of p.vector.top) list.append(h("tr", {}, h("td", {}, String(i)), h("td", {}, v.toFixed(4)), h("td", {}, label)));
      grid.append(list);
    }
    drawTools();
  }

  function spriteOf(name, tiles) {
    if (state.sprites[name]) return Promise.resolve(state.sprites[name]);
    return loadImage(tiles.sprite).then((img) => {
      const canvas = document.createElement("canvas");
      canvas.width = img.width;
      canvas.height = img.height;
      const ctx = canvas.getContext("2d");
      ctx.drawImage(img, 0, 0);
      state.sprites[name] = ctx.getImageData(0, 0, img.width, img.height);
      return state.sprites[name];
    });
  }

  function tileValues(name, tiles, c) {
    // gray levels of channel c's tile, as real values of the channel
    const data = state.sprites[name];
    const [th, tw] = tiles.tile;
    const r = Math.floor(c / tiles.cols), col = c % tiles.cols;
    const out = new Float32Array(th * tw);
    for (let y = 0; y < th; y++) for (let x = 0; x < tw; x++) {
      const g = data.data[((r * th + y) * data.width + col * tw + x) * 4];
      out[y * tw + x] = tiles.mins[c] + (g / 255) * (tiles.maxs[c] - tiles.mins[c]);
    }
    return out;
  }

  function paint(canvas, values, th, tw, lo, hi) {
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(tw, th);
    for (let i = 0; i < values.length; i++) {
      const [r, g, b] = viridis(hi > lo ? (values[i] - lo) / (hi - lo) : 0);
      image.data.set([r, g, b, 255], i * 4);
    }
    const tmp = document.createElement("canvas");
    tmp.width = tw; tmp.height = th;
    tmp.getContext("2d").putImageData(image, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(tmp, 0, 0, canvas.width, canvas.height);
  }

  function drawTiles() {
    const p = state.payload;
    if (!p || !p.tiles) return;
    const t = p.tiles;
    const lo = Math.min(...t.mins), hi = Math.max(...t.maxs);
    grid.replaceChildren(h("div", { class: "npx-gridinfo" },
      `${t.count} of ${t.channels} channels, each ${t.map[0]}x${t.map[1]}` +
      (state.scale === "shared" ? `, shared scale ${lo.toFixed(3)} .. ${hi.toFixed(3)}` : ", each on its own scale") +
      (interactive ? "; shift-click to select channels for an intervention" : "")));
    const tilesBox = h("div", { class: "npx-tiles" });
    for (let c = 0; c < t.count; c++) {
      const canvas = h("canvas", { class: "npx-tile", width: "56", height: "56", "data-channel": String(c),
        title: `channel ${c}: ${t.mins[c].toFixed(3)} .. ${t.maxs[c].toFixed(3)}` });
      const values = tileValues(p.name, t, c);
      if (state.scale === "shared") paint(canvas, values, t.tile[0], t.tile[1], lo, hi);
      else paint(canvas, values, t.tile[0], t.tile[1], t.mins[c], t.maxs[c]);
      canvas.classList.toggle("npx-selected", state.selected.has(c));
      canvas.addEventListener("click", (event) => {
        if (event.shiftKey) {
          if (state.selected.has(c)) state.selected.delete(c); else state.selected.add(c);
          canvas.classList.toggle("npx-selected", state.selected.has(c));
          drawTools();
        } else chooseChannel(c);
      });
      tilesBox.append(canvas);
    }
    grid.append(tilesBox);
  }

  function chooseChannel(c) {
    const p = state.payload, t = p.tiles;
    state.channel = c;
    for (const tile of grid.querySelectorAll(".npx-tile")) tile.classList.toggle("npx-chosen", Number(tile.dataset.channel) === c);
    paint(big, tileValues(p.name, t, c), t.tile[0], t.tile[1], t.mins[c], t.maxs[c]);
    const clip = t.clipped ? `; ${(100 * t.clipped[c]).toFixed(1)}% clipped by ${t.function === "relu6" ? "ReLU6 (at 0 or 6)" : "ReLU (at 0)"}` : "";
    bigInfo.replaceChildren(h("div", { class: "npx-channel" }, `channel ${c}: ${t.mins[c].toFixed(4)} .. ${t.maxs[c].toFixed(4)}${clip}`),
      h("div", {}, "click a pixel: its receptive field on the input" + (p.window ? " and its window at the previous step" : "")));
    if (interactive) model.send({ type: "channel", name: p.name, channel: c });
    drawKernel();
    drawPadding();
    drawWindow();
  }

  big.addEventListener("click", (event) => {
    const p = state.payload;
    if (!p || !p.tiles) return;
    const rect = big.getBoundingClientRect();
    const y = Math.min(p.tiles.map[0] - 1, Math.floor(((event.clientY - rect.top) / rect.height) * p.tiles.map[0]));
    const x = Math.min(p.tiles.map[1] - 1, Math.floor(((event.clientX - rect.left) / rect.width) * p.tiles.map[1]));
    showPixel(y, x);
  });

  function showPixel(y, x) {
    const p = state.payload, f = p.receptive_field;
    state.pixel = [y, x];
    if (!f) return;
    const scale = Number(imageCanvas.dataset.scale || 1);
    const [H, W] = overview.image_size;
    const top = f.start[0] + y * f.jump[0], left = f.start[1] + x * f.jump[1];
    const y0 = Math.max(0, top), x0 = Math.max(0, left);
    const y1 = Math.min(H, top + f.size[0]), x1 = Math.min(W, left + f.size[1]);
    Object.assign(rfBox.style, { display: "block", top: `${y0 * scale}px`, left: `${x0 * scale}px`,
      width: `${(x1 - x0) * scale}px`, height: `${(y1 - y0) * scale}px` });
    Object.assign(rfBox.dataset, { size: `${f.size[0]}x${f.size[1]}`, pixel: `${y},${x}`,
      box: `${y0},${x0},${y1},${x1}` });
    bigInfo.querySelector(".npx-pixel")?.remove();
    bigInfo.append(h("div", { class: "npx-pixel" }, `pixel (${y}, ${x}): receptive field ${f.size[0]}x${f.size[1]} ` +
      `from input row ${top}, column ${left}` + (top < 0 || left < 0 || top + f.size[0] > H || left + f.size[1] > W ? " (partly padding)" : "")));
    drawPadding();
    drawWindow();
  }

  function sourceChannel(p) {
    // the input channel the chosen output channel reads: the same one for a depthwise conv, else
    // the shown input channel with the largest weight in the chosen output channel's kernel
    const c = state.channel;
    if (p.attrs.conv_type === "depthwise" || p.attrs.groups > 1) return c;
    const k = p.kernel;
    if (!k || k.shape.length !== 4 || c >= k.shape[0]) return 0;
    const raw = Uint8Array.from(atob(k.data), (ch) => ch.charCodeAt(0));
    const per = k.shape[1] * k.shape[2] * k.shape[3], cin = k.shape[3];
    let best = 0, bestAbs = -1;
    for (let i = 0; i < per; i++) {
      const v = Math.abs(raw[c * per + i] > 127 ? raw[c * per + i] - 256 : raw[c * per + i]);
      if (v > bestAbs && i % cin < 64) { bestAbs = v; best = i % cin; }
    }
    return best;
  }

  function drawWindow() {
    // the window of the previous step that produced the chosen pixel, on that step's channel
    const p = state.payload, w = p.window;
    windowBox.replaceChildren();
    if (!w || !state.pixel) return;
    const source = w.input;
    const withTiles = (tiles) => {
      if (!tiles || state.payload !== p) return;
      const c = Math.min(sourceChannel(p), tiles.count - 1);
      const [mh, mw] = tiles.map, [th, tw] = tiles.tile;
      const [y, x] = state.pixel;
      const span = (w.kernel - 1) * w.dilation + 1;
      const y0 = y * w.stride - w.padding[0], x0 = x * w.stride - w.padding[2];
      const canvas = h("canvas", { class: "npx-windowmap", width: "240", height: String(Math.round(240 * mh / mw)) });
      spriteOf(source + "@tiles", tiles).then(() => {
        paint(canvas, tileValues(source + "@tiles", tiles, c), th, tw, tiles.mins[c], tiles.maxs[c]);
        const ctx = canvas.getContext("2d");
        const sy = canvas.height / mh, sx = canvas.width / mw;
        ctx.strokeStyle = "#ff2d55"; ctx.lineWidth = 2;
        ctx.strokeRect(x0 * sx, y0 * sy, span * sx, span * sy);
      });
      windowBox.append(h("div", { class: "npx-label" },
        `the window that produced pixel (${y}, ${x}): rows ${y0}..${y0 + span - 1}, columns ${x0}..${x0 + span - 1} ` +
        `of ${source} (${mh}x${mw}), channel ${c}` + (y0 < 0 || x0 < 0 || y0 + span > mh || x0 + span > mw ? ", partly padding" : "")), canvas);
    };
    if (state.tiles[source]) withTiles(state.tiles[source]);
    else { state.pendingTiles = withTiles; model.send({ type: "tiles", name: source }); }
  }

  function drawKernel() {
    const p = state.payload, k = p.kernel, c = state.channel;
    kernelBox.replaceChildren();
    if (!k || c >= k.shape[0]) return;
    const raw = Uint8Array.from(atob(k.data), (ch) => ch.charCodeAt(0));
    const per = k.shape.slice(1).reduce((a, b) => a * b, 1);
    const values = Array.from(raw.slice(c * per, (c + 1) * per), (v) => (v > 127 ? v - 256 : v) * k.scale);
    let rows, cols, label;
    if (k.shape.length === 3) { [rows, cols] = [k.shape[1], k.shape[2]]; label = `depthwise kernel of channel ${c} (${rows}x${cols})`; }
    else if (k.shape.length === 4) { rows = k.shape[1] * k.shape[2]; cols = k.shape[3]; label = `kernel of output channel ${c}: ${k.shape[1]}x${k.shape[2]} (rows) x ${k.shape[3]} input channels`; }
    else { rows = 1; cols = k.shape[1]; label = `weights of output ${c}: one per input channel (${cols})`; }
    const canvas = h("canvas", { class: "npx-kernelmap", width: String(Math.min(480, cols * Math.max(1, Math.floor(240 / cols)))),
      height: String(Math.max(24, rows * Math.max(1, Math.floor(120 / rows)))) });
    const bound = Math.max(...values.map(Math.abs)) || 1;
    const ctx = canvas.getContext("2d");
    const cw = canvas.width / cols, ch = canvas.height / rows;
    for (let r = 0; r < rows; r++) for (let q = 0; q < cols; q++) {
      const v = values[r * cols + q] / bound;
      ctx.fillStyle = v >= 0 ? `rgb(255,${Math.round(255 * (1 - v))},${Math.round(255 * (1 - v))})` :
        `rgb(${Math.round(255 * (1 + v))},${Math.round(255 * (1 + v))},255)`;
      ctx.fillRect(q * cw, r * ch, Math.ceil(cw), Math.ceil(ch));
    }
    kernelBox.append(h("div", { class: "npx-label" }, label + ` (red > 0 > blue, |max| ${bound.toFixed(3)})`), canvas);
  }

  function drawPadding() {
    // A stride-2 layer: the real input (the bottom-right corner, unscaled, where TensorFlow's SAME
    // padding adds its extra row and column) with the padding in pink, and the window of the chosen pixel.
    const p = state.payload;
    paddingBox.replaceChildren();
    if (!p.window || !p.input_tiles || p.window.stride < 2) return;
    const t = p.input_tiles, w = p.window;
    const c = p.attrs.conv_type === "depthwise" || p.attrs.groups > 1 ? Math.min(state.channel, t.count - 1) : 0;
    const [ch, cw] = t.map, [r0, c0] = t.origin, [fh, fw] = t.full;
    const [top, bottom, left, right] = w.padding;
    const padTop = r0 === 0 ? top : 0, padLeft = c0 === 0 ? left : 0;
    const rows = ch + padTop + bottom, cols = cw + padLeft + right;
    const cell = Math.floor(240 / Math.max(rows, cols));
    const canvas = h("canvas", { class: "npx-paddingmap", width: String(cols * cell), height: String(rows * cell) });
    const inner = document.createElement("canvas");
    inner.width = cw * cell; inner.height = ch * cell;
    spriteOf(p.name + "@input", t).then(() => {
      paint(inner, tileValues(p.name + "@input", t, c), t.tile[0], t.tile[1], t.mins[c], t.maxs[c]);
      const ctx = canvas.getContext("2d");
      ctx.fillStyle = "#ff66cc";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(inner, padLeft * cell, padTop * cell);
      ctx.strokeStyle = "rgba(255,255,255,0.35)";
      for (let i = 0; i <= rows; i++) { ctx.beginPath(); ctx.moveTo(0, i * cell); ctx.lineTo(cols * cell, i * cell); ctx.stroke(); }
      for (let j = 0; j <= cols; j++) { ctx.beginPath(); ctx.moveTo(j * cell, 0); ctx.lineTo(j * cell, rows * cell); ctx.stroke(); }
      if (state.pixel) {  // input rows y*s - top .. y*s - top + (k-1)d, in this corner's cells
        const [y, x] = state.pixel;
        const span = (w.kernel - 1) * w.dilation + 1;
        const wy = y * w.stride - top - r0 + padTop, wx = x * w.stride - left - c0 + padLeft;
        ctx.strokeStyle = "#ffffff"; ctx.lineWidth = 3;
        ctx.strokeRect(wx * cell, wy * cell, span * cell, span * cell);
      }
    });
    paddingBox.append(h("div", { class: "npx-label" },
      `stride ${w.stride}: the input ${w.input} (channel ${c}), rows ${r0}..${fh - 1} and columns ${c0}..${fw - 1} ` +
      `of ${fh}x${fw}, one cell per value, with TensorFlow's SAME padding in pink (${top} top, ${bottom} bottom, ` +
      `${left} left, ${right} right)` + (state.pixel ? "; white: the window that produced the chosen pixel" : "")), canvas);
  }

  // ---------------------------------------------------------------- tools: interventions, Grad-CAM, compare
  function drawTools() {
    const p = state.payload;
    tools.replaceChildren();
    if (!interactive) {
      tools.append(h("p", { class: "npx-note" }, "Interventions, Grad-CAM and the float/integer comparison re-run the " +
        "network in NumPy, so they need a Python kernel: open this model with npmnv2.explore(model, image) in Jupyter."));
      return;
    }
    const buttons = [];
    if (p.tiles && state.selected.size) buttons.push(["switch off " + state.selected.size + " channel(s)",
      () => model.send({ type: "intervene", name: p.name, kind: "channels_off", channels: [...state.selected] })]);
    if (p.attrs.function === "relu6") buttons.push(["ReLU instead of this ReLU6",
      () => model.send({ type: "intervene", name: p.name, kind: "relu_for_relu6" })]);
    if (p.name.endsWith("reduce_1x1.normalization")) buttons.push(["ReLU6 after this linear bottleneck",
      () => model.send({ type: "intervene", name: p.name, kind: "relu6_after_bottleneck" })]);
    if (p.block !== "head" || p.tiles) buttons.push(["Grad-CAM at " + p.block, () => model.send({ type: "gradcam", block: p.block })]);
    if (overview.compare) buttons.push(["compare with the other model", () => model.send({ type: "compare", name: p.name, channel: state.channel })]);
    for (const [label, action] of buttons) tools.append(h("button", { class: "npx-tool", onclick: action }, label));
  }

  model.on("msg:custom", (msg) => {
    if (msg.type === "payload") showPayload(msg.payload);
    else if (msg.type === "tiles") {
      state.tiles[msg.name] = msg.tiles;
      if (state.pendingTiles) { const draw = state.pendingTiles; state.pendingTiles = null; draw(msg.tiles); }
    }
    else if (msg.type === "channel" && state.payload && msg.name === state.payload.name && msg.channel === state.channel) {
      loadImage(msg.png).then((img) => {
        const grey = document.createElement("canvas");
        grey.width = img.width; grey.height = img.height;
        const gctx = grey.getContext("2d");
        gctx.drawImage(img, 0, 0);
        const data = gctx.getImageData(0, 0, img.width, img.height).data;
        const values = new Float32Array(img.width * img.height);
        for (let i = 0; i < values.length; i++) values[i] = msg.min + (data[i * 4] / 255) * (msg.max - msg.min);
        paint(big, values, img.height, img.width, msg.min, msg.max);
      });
    } else if (msg.type === "intervention") {
      const r = msg.result;
      result.replaceChildren(h("div", { class: "npx-label" }, `${r.kind} at ${r.step}` + (r.channels.length ? ` (channels ${r.channels.join(", ")})` : "") +
        ": the network re-run from this step (run_from)"),
        h("div", { class: "npx-compare" }, top5Table("before", r.old, "npx-old"), top5Table("after", r.new, "npx-new")));
    } else if (msg.type === "gradcam") {
      loadImage(msg.png).then((img) => {
        img.className = "npx-gradcam";
        result.replaceChildren(h("div", { class: "npx-label" }, `Grad-CAM of the predicted class at ${msg.layer}`), img);
      });
    } else if (msg.type === "compare") {
      const images = [["this model: " + msg.step, msg.mine_png], ["the other model: " + msg.other_step, msg.theirs_png],
        ["difference (blue < 0 < red)", msg.png]].concat(msg.grid_png ? [["where this model's values fall on the grid", msg.grid_png]] : []);
      Promise.all(images.map(([, png]) => loadImage(png))).then((loaded) => {
        const row = h("div", { class: "npx-compare" });
        loaded.forEach((img, i) => {
          img.className = i < 3 ? "npx-diff" : "npx-grid-figure";
          row.append(h("figure", {}, img, h("figcaption", {}, images[i][0])));
        });
        result.replaceChildren(h("div", { class: "npx-label" }, `channel ${msg.channel}: max |diff| ${msg.max_abs_diff.toExponential(3)}` +
          (msg.quant_step ? `, quantization step ${msg.quant_step.toExponential(3)} (${msg.in_steps.toFixed(2)} steps)` : "")), row);
      });
    } else if (msg.type === "error") {
      result.replaceChildren(h("div", { class: "npx-error" }, msg.message));
    }
  });

  openBlock(overview.blocks[0].name);
  root.focus({ preventScroll: true });
}

export default { render };
