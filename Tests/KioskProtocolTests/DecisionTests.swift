import Foundation
import TestVectors
import Testing
@testable import KioskProtocol

let hm = Program(code: "HM-SUBSIDY", cardType: .medical, name: "惠民医疗费用贴补", categories: ["01", "02", "03", "04", "05", "09"],
                 priority: 1, limitFen: 60000, ratePercent: 100, period: "calendar_year")
let cs = Program(code: "HM-CS-OUTPATIENT", cardType: .medical, name: "集中供养人员门诊费补助", categories: ["02", "03"],
                 priority: 2, limitFen: 45000, ratePercent: 100, period: "calendar_year")
let la = Program(code: "LA-DIRECT", cardType: .legalAid, name: "凭卡直接申请法律援助", categories: ["01", "02", "03", "04", "05", "06", "09"],
                 priority: 1, matters: [Matter(code: "labor_remuneration", name: "请求支付劳动报酬")])
let now = Date(timeIntervalSince1970: 1_795_316_400)       // 2026-11-22T03:00:00Z
let expires = Date(timeIntervalSince1970: 1_801_353_600)   // 2027-01-31T00:00:00Z

func view(card: CardStatus = .active, person: PersonStatus = .active, reason: String = "", programs: [Program] = [hm],
          usage: [String: UsageFigures] = [:], known: Bool = true) -> SnapshotView {
    SnapshotView(snapshotID: "S1", expiresAt: expires,
                 card: known ? CardEntry(cardNumber: "3307820000000017", personRef: "h", status: card) : nil,
                 person: known ? Person(personRef: "h", status: person, statusReason: reason, programs: programs.map(\.code)) : nil,
                 programs: programs, usage: usage)
}

func medical(_ category: String = "01", expired: Bool = false, card: [String: Fen] = [:]) -> CardFacts {
    CardFacts(cardNumber: "3307820000000017", kind: .medical, category: category, expired: expired, cardUsedFen: card)
}

@Suite struct DecisionTests {
    /// vectors/README …0017: snapshot 20000 beats the card's 12000; remaining 40000.
    @Test func snapshotBeatsTheCard() {
        let v = view(usage: ["HM-SUBSIDY": UsageFigures(snapshotFen: 20000)])
        let s = Decide.status(card: medical(card: ["HM-SUBSIDY": 12000]), view: v, now: now)
        #expect(s.code == .eligible && s.programs.first?.remainingFen == 40000)
        let g = Decide.subsidy(card: medical(card: ["HM-SUBSIDY": 12000]), view: v, billFen: 10000, now: now)
        #expect(g.code == .granted && g.subsidyFen == 10000 && g.patientPaysFen == 0)
        #expect(g.allocations == [Allocation(program: "HM-SUBSIDY", subsidyFen: 10000, usedBeforeFen: 20000, usedAfterFen: 30000)])
        let big = Decide.subsidy(card: medical(card: ["HM-SUBSIDY": 12000]), view: v, billFen: 50000, now: now)
        #expect(big.subsidyFen == 40000 && big.patientPaysFen == 10000)
    }

    @Test func theCardBeatsTheSnapshotWhenHigher() {
        let v = view(usage: ["HM-SUBSIDY": UsageFigures(snapshotFen: 10000, localFen: 5000)])
        #expect(Decide.status(card: medical(card: ["HM-SUBSIDY": 50000]), view: v, now: now).programs.first?.remainingFen == 10000)
        #expect(Decide.status(card: medical(card: ["HM-SUBSIDY": 1000]), view: v, now: now).programs.first?.remainingFen == 45000)
    }

    /// …0058: 5000 from HM-SUBSIDY, then 15000 from HM-CS-OUTPATIENT.
    @Test func programsApplyInPriorityOrderToWhatIsLeft() {
        let v = view(programs: [cs, hm, la], usage: ["HM-SUBSIDY": UsageFigures(snapshotFen: 55000)])
        let g = Decide.subsidy(card: medical("02"), view: v, billFen: 20000, now: now)
        #expect(g.allocations.map(\.program) == ["HM-SUBSIDY", "HM-CS-OUTPATIENT"])
        #expect(g.allocations.map(\.subsidyFen) == [5000, 15000] && g.patientPaysFen == 0)
        #expect(g.allocations[0].usedAfterFen == 60000 && g.allocations[1].usedAfterFen == 15000)
    }

    @Test func rateAndFloor() {
        var p = hm
        p.ratePercent = 70
        let g = Decide.subsidy(card: medical(), view: view(programs: [p]), billFen: 999, now: now)
        #expect(g.subsidyFen == 699)   // ⌊999 × 70 / 100⌋
    }

    @Test func exhausted() {
        let v = view(usage: ["HM-SUBSIDY": UsageFigures(snapshotFen: 60000)])
        #expect(Decide.status(card: medical(), view: v, now: now).programs.first?.remainingFen == 0)
        #expect(Decide.subsidy(card: medical(), view: v, billFen: 1, now: now).code == .limitExhausted)
    }

    @Test func reasonCodes() {
        let cases: [(CardFacts, SnapshotView?, ReasonCode)] = [
            (medical(), nil, .snapshotMissing),
            (medical(expired: true), view(), .cardExpired),
            (medical(), view(known: false), .cardUnknown),
            (medical(), view(card: .lost), .cardLost),
            (medical(), view(card: .revoked), .cardRevoked),
            (medical(), view(card: .replaced), .cardReplaced),
            (medical(), view(person: .suspended, reason: "停保"), .personSuspended),
            (medical(), view(person: .revoked), .personRevoked),
            (medical("06"), view(), .notEligible),                 // category not in HM-SUBSIDY
            (medical(), view(programs: [la]), .notEligible),       // no medical program
        ]
        for (card, v, code) in cases {
            #expect(Decide.status(card: card, view: v, now: now).code == code, "\(code)")
            #expect(Decide.subsidy(card: card, view: v, billFen: 100, now: now).code == code, "\(code)")
        }
        #expect(Decide.status(card: medical(), view: view(person: .suspended, reason: "停保"), now: now).detail == "停保")
    }

    @Test func expiredSnapshotStillAnswersStatusButGrantsNothing() throws {
        let later = try #require(ISO8601DateFormatter().date(from: "2027-02-01T00:00:00Z"))
        #expect(Decide.status(card: medical(), view: view(), now: later).code == .eligible)
        #expect(Decide.subsidy(card: medical(), view: view(), billFen: 100, now: later).code == .snapshotExpired)
    }

    @Test func legalAidCardStatusAndNoSubsidy() {
        let card = CardFacts(cardNumber: "3307820000100025", kind: .legalAid, category: "06", expired: false)
        let s = Decide.status(card: card, view: view(programs: [la]), now: now)
        #expect(s.code == .eligible && s.programs.first?.program.matters?.count == 1 && s.programs.first?.remainingFen == nil)
        #expect(Decide.subsidy(card: card, view: view(programs: [la]), billFen: 100, now: now).code == .notEligible)
    }

    @Test func periodsAreChinaStandardTimeYears() throws {
        let f = ISO8601DateFormatter()
        #expect(Period.of(try #require(f.date(from: "2026-12-31T15:59:59Z"))) == "2026")
        #expect(Period.of(try #require(f.date(from: "2026-12-31T16:00:00Z"))) == "2027")
    }
}

/// Property: whatever the bills, the figures and the programs, a decision never grants
/// a program more than its remaining allowance, never more than the bill, and the
/// used-after figures never pass the limit.
@Suite struct DecisionProperties {
    @Test func neverMoreThanTheLimitOrTheBill() throws {
        var rng = SplitMix64(seed: 20261122)
        for _ in 0..<20_000 {
            var p1 = hm, p2 = cs
            p1.limitFen = Fen(rng.next() % 100_000); p1.ratePercent = Int(rng.next() % 100) + 1
            p2.limitFen = Fen(rng.next() % 100_000); p2.ratePercent = Int(rng.next() % 100) + 1
            p2.priority = Int(rng.next() % 3)
            let usage = [p1.code: UsageFigures(snapshotFen: Fen(rng.next() % 120_000), localFen: Fen(rng.next() % 50_000)),
                         p2.code: UsageFigures(snapshotFen: Fen(rng.next() % 120_000), localFen: Fen(rng.next() % 50_000))]
            let card = medical("02", card: [p1.code: Fen(rng.next() % 120_000), p2.code: Fen(rng.next() % 120_000)])
            let v = view(programs: [p1, p2], usage: usage)
            let bill = Fen(rng.next() % 200_000) + 1
            let d = Decide.subsidy(card: card, view: v, billFen: bill, now: now)
            #expect(d.subsidyFen <= bill)
            #expect((d.code == .granted) == (d.subsidyFen > 0))
            for a in d.allocations {
                let p = a.program == p1.code ? p1 : p2
                let figures = try #require(usage[p.code])
                let used = max(figures.snapshotFen + figures.localFen, try #require(card.cardUsedFen[p.code]))
                #expect(a.usedBeforeFen == used)
                let limit = try #require(p.limitFen)
                #expect(a.usedAfterFen <= limit)
                #expect(a.subsidyFen > 0 && a.usedAfterFen == a.usedBeforeFen + a.subsidyFen)
            }
        }
    }

    /// Snapshot spec v2 §6 order: device_retired, then clock_suspect, before the snapshot's
    /// codes; subsidy-only codes are skipped for a status check.
    @Test func deviceAndClockCodesComeFirstForSubsidiesOnly() {
        let v = view(card: .lost, usage: ["HM-SUBSIDY": UsageFigures(snapshotFen: 20000)])
        let both = DeviceStanding(retired: "certificate ran out", clockSuspect: "clock behind")
        #expect(Decide.subsidy(card: medical(), view: v, billFen: 100, now: now, device: both).code == .deviceRetired)
        #expect(Decide.subsidy(card: medical(), view: v, billFen: 100, now: now, device: DeviceStanding(clockSuspect: "behind")).code == .clockSuspect)
        #expect(Decide.subsidy(card: medical(), view: nil, billFen: 100, now: now, device: DeviceStanding(clockSuspect: "behind")).code == .clockSuspect)
        #expect(Decide.status(card: medical(), view: v, now: now).code == .cardLost)
        // A card whose time is ahead refuses that card only, for subsidies.
        var ahead = medical()
        ahead.clockAhead = "card period 2027"
        #expect(Decide.subsidy(card: ahead, view: view(), billFen: 100, now: now).code == .clockSuspect)
        #expect(Decide.status(card: ahead, view: view(), now: now).code == .eligible)
        #expect(Decide.subsidy(card: medical(), view: view(), billFen: 100, now: now).code == .granted)
    }

    /// A person list naming a program twice never grants twice the remaining allowance.
    @Test func aDuplicateProgramCountsOnce() {
        var v = view(programs: [hm, hm], usage: ["HM-SUBSIDY": UsageFigures(snapshotFen: 20000)])
        v.person?.programs = ["HM-SUBSIDY", "HM-SUBSIDY"]
        let g = Decide.subsidy(card: medical(), view: v, billFen: 100_000, now: now)
        #expect(g.subsidyFen == 40000 && g.allocations.count == 1)
    }

    @Test func identifierRules() {
        #expect(Identifiers.isPersonRef("997bb21c2fd71da3a74ad22ada8a3d3e"))
        #expect(!Identifiers.isPersonRef("997BB21C2FD71DA3A74AD22ADA8A3D3E"))
        #expect(!Identifiers.isPersonRef("997bb21c2fd71da3a74ad22ada8a3d3"))
        #expect(Identifiers.isProgramCode("HM-CS-OUTPATIENT") && !Identifiers.isProgramCode("HM-CS-OUTPATIENT1") && !Identifiers.isProgramCode("hm"))
        #expect(Identifiers.isDeviceID("KSK-TEST-0001") && !Identifiers.isDeviceID("KSK-TEST-0001-EXTRA-LONG") && !Identifiers.isDeviceID("ksk"))
        #expect(Identifiers.isMatterCode("social_insurance") && !Identifiers.isMatterCode("Social"))
    }
}
