// BenefitKiosk screen: renders the daemon's state, live over Server-Sent Events.
"use strict";
const screen = document.getElementById("screen");
const yuan = (fen) => (fen < 0 ? "-" : "") + "¥" + (Math.abs(fen) / 100).toFixed(2);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

function programs(list) {
  const medical = list.filter((p) => p.remaining_fen !== undefined && p.remaining_fen !== null);
  if (!medical.length) return "";
  return "<table>" + medical.map((p) =>
    `<tr><td>${esc(p.name)}<br><span class="en">${esc(p.code)} · 本年剩余 allowance left</span></td>` +
    `<td class="num">${yuan(p.remaining_fen)}</td><td class="en">/ ${yuan(p.limit_fen ?? 0)}</td></tr>`).join("") + "</table>";
}

function matters(list, canApply) {
  const la = list.find((p) => p.matters);
  if (!la) return "";
  const buttons = la.matters.map((m) =>
    `<button ${canApply ? "" : "disabled"} data-matter="${esc(m.code)}">${esc(m.name)}</button>`).join("");
  return `<p class="priority">凭卡申请法律援助：优先受理、优先审批、优先指派</p>` +
         `<p class="en">Apply for legal aid with this card: priority handling. 请选择事项 Choose a matter:</p>` +
         `<div class="matters">${buttons}</div>`;
}

// The daemon numbers its states in the order they were made (seq); an older one (the inline
// first state arriving after the stream's, a reconnect) never replaces a newer one.
let shownSeq = -1;
function render(s) {
  if (typeof s.seq === "number") {
    if (s.seq < shownSeq) return;
    shownSeq = s.seq;
  }
  document.getElementById("where").textContent = `${s.institution} · ${s.device_id}`;
  document.getElementById("title").textContent = s.profile === "township" ? "惠民服务终端 · 乡镇街道" : "惠民医疗自助终端";
  const notice = document.getElementById("notice");
  notice.hidden = !s.notice;
  notice.textContent = s.notice || "";
  const bill = s.bill ? `<div class="bill">待贴补账单 Bill waiting: <b>${esc(s.bill.bill_reference)}</b> · <b>${yuan(s.bill.bill_fen)}</b></div>` : "";
  if (s.phase === "reading") {
    screen.innerHTML = `<section class="prompt"><p class="big">正在读卡，请勿移开…</p><p class="en">Reading the card, keep it on the reader…</p>${bill}</section>`;
    return;
  }
  const r = s.result;
  if (s.phase === "result" && r) {
    const good = ["granted", "eligible", "applied"].includes(r.code);
    let body = `<section class="${good ? "ok" : "bad"}"><p class="big" data-code="${esc(r.code)}">${esc(r.message.split(" ")[0])}</p>` +
      `<p class="en">${esc(r.message.split(" ").slice(1).join(" "))} (${esc(r.code)})${r.detail ? " — " + esc(r.detail) : ""}</p>`;
    if (r.card_number) body += `<p>卡号 Card <b>${esc(r.card_number)}</b>${r.holder ? " · 持卡人 " + esc(r.holder) : ""}</p>`;
    if (r.action === "charge" && r.code === "granted") {
      body += `<table><tr><td>票据金额 Bill</td><td class="num">${yuan(r.bill_fen)}</td></tr>` +
              `<tr><td>贴补金额 Subsidy</td><td class="num">${yuan(r.subsidy_fen)}</td></tr>` +
              `<tr><td>个人支付 You pay</td><td class="num">${yuan(r.patient_pays_fen)}</td></tr></table>`;
    } else if (r.action === "charge" && r.bill_fen) {
      body += `<p>请按原价支付 Please pay the full bill: <b>${yuan(r.bill_fen)}</b></p>`;
    }
    body += programs(r.programs || []);
    if (r.code === "eligible") body += matters(r.programs || [], s.card_present && s.profile === "township");
    if (r.action === "legal_aid" && r.code === "applied") body += `<p class="priority">申请已受理，请取回执 · 优先受理、优先审批、优先指派</p>`;
    if (r.receipt) body += `<p class="en">凭条 Receipt: ${esc(r.receipt)}</p>`;
    if (r.records && r.records.length) body += `<p class="en">记录号 Record: ${r.records.map(esc).join(", ")}</p>`;
    if (!s.card_present) body += `<p class="en">请取回卡片 Take your card.</p>`;
    screen.innerHTML = body + bill + "</section>";
    screen.querySelectorAll("button[data-matter]").forEach((b) => b.addEventListener("click", () => apply(b.dataset.matter)));
    return;
  }
  screen.innerHTML = `<section class="prompt"><p class="big">请插入或放置惠民卡</p>` +
    `<p class="en">Please insert or tap your 惠民医疗卡 / 法律援助卡</p>${bill}</section>`;
}

async function apply(matter) {
  screen.querySelectorAll("button").forEach((b) => (b.disabled = true));
  const r = await fetch("/api/legal-aid", { method: "POST", headers: { "Content-Type": "application/json", "Authorization": "Bearer " + window.SCREEN_TOKEN }, body: JSON.stringify({ matter }) });
  if (!r.ok) alert((await r.json()).error || "申请失败");
}

function connect() {
  const conn = document.getElementById("conn");
  const es = new EventSource("/events");
  es.addEventListener("state", (e) => { conn.className = "on"; render(JSON.parse(e.data)); });
  es.onerror = () => { conn.className = "off"; };
}
const tick = () => { document.getElementById("clock").textContent = new Date().toLocaleString("zh-CN", { timeZone: "Asia/Shanghai" }); };
tick();
setInterval(tick, 1000);
if (window.INITIAL_STATE) render(window.INITIAL_STATE);
connect();
