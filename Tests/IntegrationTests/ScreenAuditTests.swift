import Foundation
import TestVectors
import Testing

/// Issue 10: every screen at every panel size kiosks use, in headless Chromium: it fits
/// without scrolling, the decision and the amount are large, text contrast is WCAG AA, every
/// button is at least 48 px, and the page works from a keypad alone. A screenshot of each is
/// kept in `.build/test-screens/<size>/` for people (the README shows some).
@Suite(.serialized) struct ScreenAuditTests {
    static let sizes = [(1080, 1920), (1920, 1080), (1280, 1024), (1024, 768)]

    /// Runs in the page after the screen's own script: measures, presses keys, and writes its
    /// findings (base64 JSON) into the DOM for `--dump-dom`.
    static let audit = #"""
    (function () {
      const out = { overflow: [], contrast: [], small: [], focus: [], tiny: [], ring: [], readingRed: false, big: 0, amount: 0, keys: {} };
      const W = innerWidth, H = innerHeight;
      const rgb = (c) => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return [0, 0, 0, 0]; const p = m[1].split(",").map(parseFloat); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
      const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
      const background = (el) => { for (let e = el; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor); if (c[3] > 0) return c; } return [255, 255, 255, 1]; };
      const visible = (el) => { const cs = getComputedStyle(el); const r = el.getBoundingClientRect(); return cs.display !== "none" && cs.visibility !== "hidden" && !el.closest("[hidden]") && (r.width > 0 || r.height > 0); };
      const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (el.className ? "." + String(el.className).replace(/ /g, ".") : "") + " " + (el.textContent || "").trim().slice(0, 12);
      for (const el of document.querySelectorAll("body *")) {
        if (el.tagName === "SCRIPT" || !visible(el)) continue;
        const r = el.getBoundingClientRect();
        if (r.bottom > H + 0.5 || r.right > W + 0.5 || r.left < -0.5 || r.top < -0.5) out.overflow.push(`${name(el)} [${Math.round(r.left)},${Math.round(r.top)},${Math.round(r.right)},${Math.round(r.bottom)}] in ${W}x${H}`);
        if (Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim())) {
          const cs = getComputedStyle(el);
          const a = lum(rgb(cs.color)), b = lum(background(el));
          const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
          const size = parseFloat(cs.fontSize), bold = parseInt(cs.fontWeight, 10) >= 700;
          const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
          if (ratio < need) out.contrast.push(`${name(el)} ${ratio.toFixed(2)} < ${need}`);
          // Issue 20 item 9: at 1024x768 no text under 24 px.
          if (W <= 1024 && size < 23.5) out.tiny.push(`${name(el)} ${size}px`);
        }
      }
      const buttons = Array.from(document.querySelectorAll("button")).filter(visible);
      for (const b of buttons) { const r = b.getBoundingClientRect(); if (r.width < 48 || r.height < 48) out.small.push(`${name(b)} ${Math.round(r.width)}x${Math.round(r.height)}`); }
      const enabled = buttons.filter((b) => !b.disabled);
      for (const b of enabled) {
        b.blur();
        const before = getComputedStyle(b).outlineStyle + getComputedStyle(b).outlineWidth;
        b.focus();
        const after = getComputedStyle(b).outlineStyle + getComputedStyle(b).outlineWidth;
        if (document.activeElement !== b) out.focus.push(`${name(b)} cannot take the focus`);
        else if (after === before || getComputedStyle(b).outlineStyle === "none") out.focus.push(`${name(b)} shows no focus`);
        else {
          // The focus ring at least 3:1 against what is around the button.
          const ring = lum(rgb(getComputedStyle(b).outlineColor)), around = lum(background(b.parentElement));
          const r = (Math.max(ring, around) + 0.05) / (Math.min(ring, around) + 0.05);
          if (r < 3) out.ring.push(`${name(b)} ${r.toFixed(2)}`);
        }
      }
      // The "reading" state is never shown in the error red.
      const reading = document.querySelector(".reading .big");
      if (reading) out.readingRed = getComputedStyle(reading).color === "rgb(163, 32, 26)";
      const big = document.querySelector(".big"); if (big) out.big = parseFloat(getComputedStyle(big).fontSize);
      const amount = document.querySelector(".amount"); if (amount) out.amount = parseFloat(getComputedStyle(amount).fontSize);
      out.words = (document.getElementById("screen") || document.body).innerText;
      // The keypad: the first button has the focus after a render, arrows move it, digits press.
      const key = (k) => (document.activeElement || document.body).dispatchEvent(new KeyboardEvent("keydown", { key: k, bubbles: true }));
      if (enabled.length > 1) {
        enabled[0].focus(); key("ArrowRight");
        out.keys.arrow = document.activeElement === enabled[1];
      }
      if (document.getElementById("slip")) { key("0"); out.keys.zero = document.documentElement.dataset.posted || ""; delete document.documentElement.dataset.posted; }
      if (document.getElementById("cancel")) { key("9"); out.keys.nine = document.documentElement.dataset.posted || ""; delete document.documentElement.dataset.posted; }
      if (document.querySelector("button[data-matter]:not([disabled])")) {
        // Issue 20 item 5: 1 opens the matter's confirmation (nothing filed), the focus on 返回; 1 again files.
        key("1"); out.keys.one = document.documentElement.dataset.posted || "";
        out.keys.oneFocus = (document.activeElement || {}).id || "";
        out.keys.oneMatter = (document.getElementById("matter") || {}).textContent || "";
        key("1"); out.keys.oneConfirmed = document.documentElement.dataset.posted || "";
      }
      const pre = document.createElement("pre"); pre.id = "audit";
      pre.textContent = btoa(unescape(encodeURIComponent(JSON.stringify(out))));
      document.body.appendChild(pre);
    })();
    """#

    struct Finding: Decodable, Sendable {
        var overflow: [String]
        var contrast: [String]
        var small: [String]
        var focus: [String]
        var tiny: [String]
        var ring: [String]
        var readingRed: Bool
        var big: Double
        var amount: Double
        var words: String
        var keys: [String: Keys]
        enum Keys: Decodable, Sendable {
            case flag(Bool), text(String)
            init(from decoder: Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let b = try? c.decode(Bool.self) { self = .flag(b) } else { self = .text(try c.decode(String.self)) }
            }
            var text: String? { if case .text(let t) = self { return t }; return nil }
            var flag: Bool? { if case .flag(let b) = self { return b }; return nil }
        }
    }

    /// One screen at one size: what the audit found, or why it could not run; whether the screenshot was taken.
    struct Look: Sendable {
        var name: String
        var at: String
        var finding: Finding?
        var failure: String?
        var screenshot: Bool
    }

    static func audit(_ page: URL, width: Int, height: Int) throws -> Finding {
        let audited = page.deletingLastPathComponent().appendingPathComponent("audit-" + page.lastPathComponent)
        let html = try String(contentsOf: page, encoding: .utf8)
            .replacingOccurrences(of: "<script src=\"app.js\"></script>", with: "<script src=\"app.js\"></script>\n<script src=\"audit.js\"></script>")
        try html.write(to: audited, atomically: true, encoding: .utf8)
        let flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--lang=zh-CN", "--virtual-time-budget=3000",
                     "--window-size=\(width),\(height)"]
        let (status, dom, err) = try Harness.exec("/usr/bin/chromium", flags + ["--dump-dom", audited.absoluteString], timeout: 60)
        guard status == 0 else { throw AuditError.chromium(err) }
        guard let start = dom.range(of: "<pre id=\"audit\">"), let end = dom.range(of: "</pre>", range: start.upperBound..<dom.endIndex),
              let data = Data(base64Encoded: String(dom[start.upperBound..<end.lowerBound])) else {
            throw AuditError.noFindings(String(dom.suffix(400)))
        }
        return try JSONDecoder().decode(Finding.self, from: data)
    }

    enum AuditError: Error { case noFindings(String), chromium(String) }

    /// Every sample screen at every size, in Chromium (blocking: run on a thread of its own).
    static func lookAtEverything() throws -> (names: [String], looks: [Look]) {
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("screens-\(UUID().uuidString)")
        let (status, out, err) = try Harness.run("kioskd", ["--preview-screens", dir.path])
        guard status == 0 else { throw AuditError.chromium("kioskd --preview-screens: \(err)") }
        let names = out.split(separator: "\n").map(String.init)
        try Self.audit.write(to: dir.appendingPathComponent("audit.js"), atomically: true, encoding: .utf8)
        let shots = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/test-screens")
        var looks: [Look] = []
        for (w, h) in Self.sizes {
            let sizeDir = shots.appendingPathComponent("\(w)x\(h)")
            try FileManager.default.createDirectory(at: sizeDir, withIntermediateDirectories: true)
            for name in names {
                let page = dir.appendingPathComponent("\(name).html")
                var look = Look(name: name, at: "\(name) at \(w)x\(h)", finding: nil, failure: nil, screenshot: false)
                do { look.finding = try Self.audit(page, width: w, height: h) } catch { look.failure = "\(error)" }
                let png = sizeDir.appendingPathComponent("\(name).png")
                let flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--lang=zh-CN", "--virtual-time-budget=2000",
                             "--window-size=\(w),\(h)", "--screenshot=\(png.path)"]
                let (s, _, _) = try Harness.exec("/usr/bin/chromium", flags + [page.absoluteString], timeout: 60)
                let bytes = (try? Data(contentsOf: png)) ?? Data()
                look.screenshot = s == 0 && bytes.count > 5_000 && bytes.prefix(4) == Data([0x89, 0x50, 0x4E, 0x47])
                looks.append(look)
            }
        }
        return (names, looks)
    }

    @Test("every screen fits every panel, reads from a metre away, passes WCAG AA contrast and 48 px targets, and works from a keypad")
    func everyScreenAtEverySize() async throws {
        let (names, looks) = try await onOwnThread { try Self.lookAtEverything() }
        #expect(names.count >= 16 && names.contains("hospital-granted") && names.contains("township-eligible") && names.contains("hospital-confirm"))
        #expect(looks.count == names.count * Self.sizes.count)
        for look in looks {
            let at = look.at, name = look.name
            #expect(look.screenshot, "\(at): no screenshot")
            guard let f = look.finding else { Issue.record("\(at): \(look.failure ?? "no findings")"); continue }
            #expect(f.overflow.isEmpty, "\(at) does not fit: \(f.overflow.prefix(3))")
            #expect(f.contrast.isEmpty, "\(at) contrast: \(f.contrast.prefix(3))")
            #expect(f.small.isEmpty, "\(at) targets under 48 px: \(f.small)")
            #expect(f.focus.isEmpty, "\(at) keyboard focus: \(f.focus)")
            #expect(f.tiny.isEmpty, "\(at) text under 24 px: \(f.tiny.prefix(3))")
            #expect(f.ring.isEmpty, "\(at) focus ring under 3:1: \(f.ring)")
            #expect(!f.readingRed, "\(at): reading shown in the error red")
            #expect(f.big >= 48, "\(at): the decision is \(f.big) px")
            if name == "township-legal-aid-confirm" {
                #expect(f.words.contains("请求支付劳动报酬") && f.words.contains("返回") && f.words.contains("确认"), "\(at): \(f.words)")
            }
            if name == "hospital-confirm" {
                #expect(f.amount >= 56 && f.words.contains("您需支付") && f.words.contains("今年还可减免") && f.words.contains("确认"), "\(at): \(f.words)")
            }
            if ["hospital-granted", "hospital-limit-exhausted", "hospital-wrong-patient", "hospital-declined", "township-applied"].contains(name) {
                #expect(f.words.contains("请取走卡片"), "\(at): no take-card prompt")
            }
            if name == "hospital-granted" {
                #expect(f.amount >= 48, "\(at): the amount is \(f.amount) px")
                #expect(f.words.contains("¥23.45") && f.words.contains("已贴补"))
            }
            // Nothing technical on a patient's screen: no codes, paths or record numbers.
            #expect(!f.words.contains("/") && !f.words.contains("_") && !f.words.contains("KSK-"), "\(at) shows: \(f.words)")
            if name == "township-applied" {
                #expect(f.keys["nine"]?.text?.hasPrefix("/api/legal-aid/cancel") == true, "\(at): 9 does not withdraw the application")
            }
            if name == "township-eligible" {
                #expect(f.keys["arrow"]?.flag == true, "\(at): arrows do not move the focus")
                #expect(f.keys["zero"]?.text == "/api/status-slip", "\(at): 0 does not print the status slip")
                #expect(f.keys["one"]?.text == "", "\(at): 1 filed at once, without a confirmation")
                #expect(f.keys["oneFocus"]?.text == "back", "\(at): the confirmation's first focus is not 返回")
                #expect(f.keys["oneMatter"]?.text == "请求给予社会保险待遇", "\(at): the matter is not shown large")
                #expect(f.keys["oneConfirmed"]?.text?.contains("social_insurance") == true, "\(at): 1 on the confirmation does not file")
                #expect(f.words.contains("今年已用") && f.words.contains("剩余"))
            }
        }
    }
}
