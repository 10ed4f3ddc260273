/// How a card number, a name, an identity number or a person reference is shown anywhere a
/// person could read it (receipts, screens, logs, a hub's refusal details): never whole.
/// One place for the kiosk, the receipts and the hub (issue 21 item 6).
public enum Masking {
    /// The first 4 and last 4 characters, `*` for each one between: `3307820000000017` → `3307********0017`.
    /// A number of 8 characters or fewer would show whole, so it becomes all `*`.
    public static func cardNumber(_ number: String) -> String {
        let chars = Array(number)
        guard chars.count > 8 else { return String(repeating: "*", count: chars.count) }
        return String(chars.prefix(4)) + String(repeating: "*", count: chars.count - 8) + String(chars.suffix(4))
    }

    /// The first character, then `*` for each remaining one: `王秀英` → `王**`. Masking a masked name changes nothing.
    public static func name(_ name: String) -> String {
        guard let first = name.first else { return "" }
        return String(first) + String(repeating: "*", count: name.count - 1)
    }

    /// A person reference (32 hex digits): its first and last 4, `8919…8dfc`.
    public static func personRef(_ ref: String) -> String {
        guard ref.count > 8 else { return String(repeating: "*", count: ref.count) }
        return String(ref.prefix(4)) + "…" + String(ref.suffix(4))
    }

    /// Masks, in free text, every run of 15 or more digits (an identity or card number; an 18-digit
    /// identity number may end in `X`) as `cardNumber` does.
    public static func identityNumbers(in text: String) -> String {
        var out = ""
        var run = ""
        func flush() {
            out += run.count >= 15 ? cardNumber(run) : run
            run = ""
        }
        for ch in text {
            if ch.isASCII && ch.isNumber {
                run.append(ch)
            } else if (ch == "X" || ch == "x") && run.count == 17 {
                run.append(ch)
                flush()
            } else {
                flush()
                out.append(ch)
            }
        }
        flush()
        return out
    }

    /// Free text as a log line or a refusal's detail may carry it: every run of exactly 32
    /// lowercase hex digits (a person reference) shown as `personRef` does, then identity and
    /// card numbers masked (`identityNumbers`). References first: one with 15 digits in a
    /// row would otherwise be half masked and half shown.
    public static func text(_ text: String) -> String {
        var out = "", run = ""
        func flush() {
            out += run.count == 32 ? personRef(run) : run
            run = ""
        }
        for ch in text {
            if ch.isASCII && (ch.isNumber || ("a"..."f").contains(ch)) { run.append(ch) } else { flush(); out.append(ch) }
        }
        flush()
        return identityNumbers(in: out)
    }
}
