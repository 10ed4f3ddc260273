// BenefitKiosk screen: renders the daemon's state, live over Server-Sent Events.
// Issue 10: large words that say what happened and what to do next, a voice that says it,
// nothing of the previous person, and every button reachable from a keypad.
"use strict";
const screen = document.getElementById("screen");
const yuan = (fen) => (fen < 0 ? "-" : "") + "¥" + (Math.abs(fen) / 100).toFixed(2);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const preview = window.PREVIEW === true;
let current = null;

function programs(list) {
  const medical = list.filter((p) => p.remaining_fen !== undefined && p.remaining_fen !== null);
  if (!medical.length) return "";
  return `<table class="programs"><tr><th></th><th>今年已用</th><th>剩余</th></tr>` + medical.map((p) =>
    `<tr><td>${esc(p.name)}</td><td class="num">${p.used_fen !== undefined && p.used_fen !== null ? yuan(p.used_fen) : "—"}</td>` +
    `<td class="num strong">${yuan(p.remaining_fen)}</td></tr>`).join("") + "</table>";
}

function matters(list, canApply) {
  const la = list.find((p) => p.matters);
  if (!la) return "";
  const buttons = la.matters.map((m, i) =>
    `<button class="choice" ${canApply ? "" : "disabled"} data-matter="${esc(m.code)}" data-name="${esc(m.name)}" data-key="${i + 1}">` +
    `<span class="key">${i + 1}</span>${esc(m.name)}</button>`).join("");
  return `<p class="priority">凭卡申请法律援助：优先受理、优先审批、优先指派</p><div class="matters">${buttons}</div>`;
}

// The voice: a result's prompt is played once (clips in order), at the configured volume.
let spoken = null;
let playing = null;
function speak(ids, key, s) {
  if (preview || !s.voice_on || !ids || !ids.length || key === spoken) return;
  spoken = key;
  if (playing) { playing.pause(); playing = null; }
  const list = ids.slice();
  const next = () => {
    const id = list.shift();
    if (!id) { playing = null; return; }
    const a = new Audio(`/voice/${encodeURIComponent(id)}.wav`);
    a.volume = Math.max(0, Math.min(1, (s.volume ?? 80) / 100));
    a.onended = next;
    a.onerror = next;
    playing = a;
    a.play().catch(() => {});
  };
  next();
}

// The daemon numbers its states in the order they were made (seq); an older one (the inline
// first state arriving after the stream's, a reconnect) never replaces a newer one.
let shownSeq = -1;
function render(s) {
  if (typeof s.seq === "number") {
    if (s.seq < shownSeq) return;
    shownSeq = s.seq;
  }
  current = s;
  document.getElementById("where").textContent = s.institution || "";
  document.getElementById("title").textContent = s.profile === "township" ? "惠民服务终端" : "惠民医疗自助终端";
  document.getElementById("help").textContent = s.help_desk ? `需要帮助：${s.help_desk}${s.help_phone ? "，电话 " + s.help_phone : ""}` : "";
  const notice = document.getElementById("notice");
  notice.hidden = !s.notice;
  notice.textContent = s.notice ? "设备正在恢复，请稍候" : "";
  const bill = s.bill ? `<div class="bill">待付账单 <b class="num">${yuan(s.bill.bill_fen)}</b></div>` : "";
  if (s.phase === "reading") {
    screen.innerHTML = `<section class="prompt reading"><p class="big">正在读卡</p><p class="next">请不要拿开卡片</p>${bill}</section>`;
    return focusFirst();
  }
  const r = s.result;
  if (s.phase === "confirm" && r) return renderConfirm(s, r);
  if (s.phase === "result" && r) {
    const good = ["granted", "eligible", "applied"].includes(r.code);
    const neutral = ["declined", "confirm_timeout"].includes(r.code);
    let body = `<section class="result ${good ? "ok" : neutral ? "neutral" : "bad"}">`;
    if (r.take_card) body += `<p class="take" data-take-card="1">请取走卡片</p>`;
    body += `<p class="big" data-code="${esc(r.code)}">${esc(r.headline || r.message)}</p><p class="next">${esc(r.next)}</p>`;
    if (r.action === "charge" && r.code === "granted") {
      body += `<div class="pay"><span>您需支付</span><b class="num amount">${yuan(r.patient_pays_fen)}</b></div>`;
      if (!r.redacted) body += `<table class="bill-lines"><tr><td>账单</td><td class="num">${yuan(r.bill_fen)}</td><td>惠民卡减免</td><td class="num">${yuan(r.subsidy_fen)}</td></tr></table>`;
    } else if (r.action === "charge" && r.bill_ended && r.patient_pays_fen !== undefined && r.patient_pays_fen !== null) {
      body += `<div class="pay"><span>请到${esc(s.help_desk || "收费窗口")}支付</span><b class="num amount">${yuan(r.patient_pays_fen)}</b></div>`;
    }
    body += programs(r.programs || []);
    if (r.code === "eligible" && !r.redacted) body += matters(r.programs || [], s.card_present && s.profile === "township");
    const actions = [];
    if (r.slip && s.card_present && !r.redacted) actions.push(`<button class="action" id="slip" data-key="0"><span class="key">0</span>打印状态单</button>`);
    if (r.cancellable && s.card_present && !r.redacted) actions.push(`<button class="action" id="cancel" data-key="9"><span class="key">9</span>撤销这次申请</button>`);
    if (actions.length) body += `<div class="actions">${actions.join("")}</div>`;
    if (r.receipt === "not printed") body += `<p class="next warn">凭条没有打印出来，请到${esc(s.help_desk)}补打。</p>`;
    if (r.card_number) body += `<p class="who">卡号 ${esc(r.card_number)}${r.holder ? " · " + esc(r.holder) : ""}</p>`;
    screen.innerHTML = body + bill + "</section>";
    screen.querySelectorAll("button[data-matter]").forEach((b) => {
      b.addEventListener("click", () => chooseMatter(b.dataset.matter, b.dataset.name));
      // Every matter is read aloud when focused (issue 20 item 5).
      b.addEventListener("focus", () => { if (userMoved) speak([`matter_${b.dataset.matter}`], `focus|${b.dataset.matter}|${Date.now()}`, current); });
    });
    const slip = document.getElementById("slip");
    if (slip) slip.addEventListener("click", printSlip);
    const cancel = document.getElementById("cancel");
    if (cancel) cancel.addEventListener("click", () => { cancel.disabled = true; post("/api/legal-aid/cancel"); });
    speak(r.voice, `${r.number}|${(r.voice || []).join(",")}`, s);
    return focusFirst(true);
  }
  if (s.card_present && s.bill && s.lift_card) {
    screen.innerHTML = `<section class="prompt wait"><p class="big">请拿起卡片，再放一次</p>` +
      `<p class="next">新账单要重新刷卡才能办理</p>${bill}</section>`;
    speak(["lift_card"], `lift|${s.bill.bill_reference}`, s);
    return focusFirst();
  }
  if (s.card_present && !s.bill && s.profile === "hospital") {
    screen.innerHTML = `<section class="prompt wait"><p class="big take">请取走卡片</p><p class="next">下一位请刷卡</p></section>`;
    return focusFirst();
  }
  screen.innerHTML = `<section class="prompt"><p class="big">请刷卡</p><p class="next">把惠民卡放在读卡器上</p>${bill}</section>`;
  if (s.bill) speak(["insert_card"], `bill|${s.bill.bill_reference}`, s);
  focusFirst();
}

// The pre-settlement (issue 20): nothing is deducted until 确认. 您需支付 is the largest figure.
function renderConfirm(s, r) {
  const left = (r.programs || []).filter((p) => p.remaining_fen !== undefined && p.remaining_fen !== null)
    .reduce((a, p) => a + p.remaining_fen, 0);
  const ref = encodeURIComponent(r.bill_reference || "");
  screen.innerHTML = `<section class="confirm">` +
    `<p class="big">${esc(r.headline)}${r.figures_changed ? "（金额有变化）" : ""}</p>` +
    `<table class="bill-lines"><tr><td>账单</td><td class="num">${yuan(r.bill_fen)}</td></tr>` +
    `<tr><td>惠民卡减免</td><td class="num">${yuan(r.subsidy_fen)}</td></tr></table>` +
    `<div class="pay"><span>您需支付</span><b class="num amount">${yuan(r.patient_pays_fen)}</b></div>` +
    `<p class="left">今年还可减免 <b class="num">${yuan(left)}</b></p>` +
    `<p class="next">${esc(r.next)}</p>` +
    `<div class="actions"><button class="action yes" id="confirm" data-key="1"><span class="key">1</span>确认</button>` +
    `<button class="action" id="decline" data-key="0"><span class="key">0</span>取消</button></div>` +
    (r.card_number ? `<p class="who">卡号 ${esc(r.card_number)}${r.holder ? " · " + esc(r.holder) : ""}</p>` : "") + `</section>`;
  const yes = document.getElementById("confirm"), no = document.getElementById("decline");
  // Each press names the pre-settlement it was for: one meant for earlier figures is refused.
  const which = { confirmation: r.confirmation };
  yes.addEventListener("click", () => { yes.disabled = true; no.disabled = true; post(`/api/bills/${ref}/confirm`, which); });
  no.addEventListener("click", () => { yes.disabled = true; no.disabled = true; post(`/api/bills/${ref}/decline`, which); });
  speak(r.voice, `${r.number}|${(r.voice || []).join(",")}`, s);
  yes.focus({ preventScroll: true });
}

// Legal aid (issue 20 item 5): choosing a matter opens a confirmation; 返回 has the focus.
function chooseMatter(code, name) {
  if (!current) return;
  screen.innerHTML = `<section class="confirm"><p class="headline">您要申请的事项</p><p class="big" id="matter">${esc(name || code)}</p>` +
    `<p class="next">确认提交请按“确认”，选错了请按“返回”。</p>` +
    `<div class="actions"><button class="action" id="back" data-key="0"><span class="key">0</span>返回</button>` +
    `<button class="action yes" id="file" data-key="1"><span class="key">1</span>确认</button></div></section>`;
  const back = document.getElementById("back"), file = document.getElementById("file");
  back.addEventListener("click", () => render(Object.assign({}, current, { seq: shownSeq })));
  file.addEventListener("click", () => { back.disabled = true; file.disabled = true; post("/api/legal-aid", { matter: code }); });
  speak([`matter_${code}`, "confirm_matter"], `matter|${code}|${Date.now()}`, current);
  back.focus({ preventScroll: true });
}

// Keypads: the first enabled button has the focus; digits press the button of that number,
// arrows move between buttons, Enter presses the focused one (the browser's own).
// The first focus is never on a button that files or withdraws (issue 20 item 5).
function focusFirst(safe) {
  const b = Array.from(screen.querySelectorAll("button:not([disabled])")).find((x) => !safe || x.id !== "cancel");
  if (b) b.focus({ preventScroll: true });
}
// A focus the person moved (keypad, touch) reads the matter aloud; the render's own focus does not
// talk over the result's prompt.
let userMoved = false;
document.addEventListener("pointerdown", () => { userMoved = true; });
document.addEventListener("keydown", (e) => {
  userMoved = true;
  const buttons = Array.from(screen.querySelectorAll("button:not([disabled])"));
  if (/^[0-9]$/.test(e.key)) {
    const b = buttons.find((x) => x.dataset.key === e.key);
    if (b) { e.preventDefault(); b.focus(); b.click(); }
    return;
  }
  const i = buttons.indexOf(document.activeElement);
  if (["ArrowDown", "ArrowRight"].includes(e.key) && buttons.length) { e.preventDefault(); buttons[(i + 1) % buttons.length].focus(); }
  if (["ArrowUp", "ArrowLeft"].includes(e.key) && buttons.length) { e.preventDefault(); buttons[(i - 1 + buttons.length) % buttons.length].focus(); }
});

// The screen's controls go with its session cookie (issue 20 item 6), never a token in the page.
async function post(path, body) {
  if (preview) { document.documentElement.dataset.posted = path + (body ? " " + JSON.stringify(body) : ""); return; }
  const r = await fetch(path, { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) })
    .catch(() => ({ ok: false }));
  if (!r.ok) {
    document.getElementById("notice").hidden = false;
    document.getElementById("notice").textContent = `没有办成，请到${current && current.help_desk ? current.help_desk : "人工窗口"}。`;
  }
}

function apply(matter) {
  screen.querySelectorAll("button").forEach((b) => (b.disabled = true));
  post("/api/legal-aid", { matter });
}

function printSlip() {
  const b = document.getElementById("slip");
  if (b) b.disabled = true;
  if (preview) { document.documentElement.dataset.posted = "/api/status-slip"; return; }
  fetch("/api/status-slip", { method: "POST", credentials: "same-origin" }).catch(() => {});
}

// The stream; when it is refused (all taken) or dropped, the page polls /api/state and
// tries the stream again with a growing pause (1 s … 30 s).
// When a state has been put on the page: one console line (the phase, the code and the
// pre-settlement's number, never who or what card), read by the tap-to-screen benchmark from
// headless Chromium's log (Benchmarks/tap-to-screen.sh). A kiosk's browser logs nothing.
function stamp(s) {
  const r = s.result || {};
  console.debug("bk-state " + JSON.stringify({ seq: s.seq, phase: s.phase, code: r.code || null, confirmation: r.confirmation ?? null,
                                               bill: s.bill ? s.bill.bill_reference : null, card: !!s.card_present, t: Date.now() }));
}
let backoff = 1000, poller = null;
function poll() {
  fetch("/api/state", { credentials: "same-origin" }).then((r) => r.json()).then(render).catch(() => {});
}
function connect() {
  const conn = document.getElementById("conn");
  const es = new EventSource("/events");
  es.addEventListener("state", (e) => {
    conn.className = "on"; backoff = 1000;
    if (poller) { clearInterval(poller); poller = null; }
    const state = JSON.parse(e.data);
    render(state);
    stamp(state);
  });
  es.onerror = () => {
    conn.className = "off";
    if (es.readyState !== EventSource.CLOSED) return;   // the browser reconnects by itself
    if (!poller) poller = setInterval(poll, 2000);
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 30000);
  };
}
const tick = () => { document.getElementById("clock").textContent = new Date().toLocaleString("zh-CN", { timeZone: "Asia/Shanghai" }); };
tick();
if (!preview) setInterval(tick, 1000);
if (window.INITIAL_STATE) render(window.INITIAL_STATE);
if (preview && window.PREVIEW_MATTER) {
  const b = screen.querySelector(`button[data-matter="${window.PREVIEW_MATTER}"]`);
  if (b) chooseMatter(b.dataset.matter, b.dataset.name);
}
if (!preview) connect();
