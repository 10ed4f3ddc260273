// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "BenefitKiosk",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "kioskctl", targets: ["kioskctl"]),
        .executable(name: "virtual-card", targets: ["virtual-card"]),
        .executable(name: "kiosk-bench", targets: ["kiosk-bench"]),
        .executable(name: "kioskd", targets: ["kioskd"]),
        .executable(name: "settlement-hub", targets: ["settlement-hub"]),
        .executable(name: "device-ca", targets: ["device-ca"]),
        .executable(name: "hub-publisher", targets: ["hub-publisher"]),
        .executable(name: "bk-fuzz", targets: ["bk-fuzz"]),
        .executable(name: "rest-floor", targets: ["rest-floor"]),
        .library(name: "SmartCard", targets: ["SmartCard"]),
        .library(name: "BenefitCard", targets: ["BenefitCard"]),
        .library(name: "VirtualCard", targets: ["VirtualCard"]),
        .library(name: "KioskProtocol", targets: ["KioskProtocol"]),
        .library(name: "KioskStore", targets: ["KioskStore"]),
        .library(name: "KioskCore", targets: ["KioskCore"]),
    ],
    // Minimum versions: those the build resolves and the tests ran against (issue 23 item 6).
    // Package.resolved is not kept in git: a fresh clone resolves the newest versions the
    // machine's package mirror holds at or above these (docs/testing.md).
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        // Imported directly (NIOCore's ByteBuffer, HTTPTypes' fields), so declared, not
        // left to arrive through Hummingbird and AsyncHTTPClient.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        // NIOHTTPTypes: the hub's connection guard sits in Hummingbird's pipeline (issue 21).
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        // The hub's provincial engine (issue 12).
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CPCSCLite",
            pkgConfig: "libpcsclite",
            providers: [.apt(["libpcsclite-dev"])]
        ),
        .target(
            name: "SmartCard",
            dependencies: [
                "CPCSCLite", "KioskProtocol",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "BenefitCard",
            dependencies: [
                "SmartCard",
                "KioskProtocol",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "VirtualCard",
            dependencies: [
                "SmartCard",
                "BenefitCard",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // systemd without libsystemd (issue 23): log lines with journald priorities, sd_notify and
        // a watchdog fed only while every liveness check answers.
        .target(name: "SystemdSupport", dependencies: [.product(name: "Logging", package: "swift-log"),
                                                     .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]),
        // The contract (card, snapshot, upload, receipt and sync specs) with no I/O and no
        // database: the record model, signing messages, snapshot lines, times, hex, JSON.
        .target(
            name: "KioskProtocol",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        .systemLibrary(
            name: "CQREncode",
            pkgConfig: "libqrencode",
            providers: [.apt(["libqrencode-dev"])]
        ),
        .target(
            name: "Receipts",
            dependencies: [
                "CQREncode",
                "KioskProtocol",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "Settlement",
            dependencies: [
                "KioskProtocol", "KioskStore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The reference hub in three (issue 22 item 2): the upload rules (pure), the storage
        // (SQL on SQLite or PostgreSQL, roster, shelf) and the HTTP controllers.
        .target(
            name: "HubRules",
            dependencies: ["KioskProtocol", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .target(
            name: "HubStore",
            dependencies: [
                "KioskProtocol", "HubRules",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "HubHTTP",
            dependencies: [
                "KioskProtocol", "HubRules", "HubStore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Test support: the hub's fault knobs (failures, nonsense answers, delays). Linked by the
        // tests only: no release program has them.
        .target(
            name: "HubFaults",
            dependencies: ["HubHTTP", "HubStore", .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "HTTPTypes", package: "swift-http-types")]
        ),
        // Test support: a hub process with the fault knobs (ScaleOutTests kills one holding an
        // answer). Never packaged: the platform runs settlement-hub, which has no knobs.
        .executableTarget(
            name: "hub-fault-server",
            dependencies: ["HubFaults", "HubHTTP", "HubStore", "PlatformCommandLine",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]
        ),
        // The platform programs' shared command-line options (where the hub's data is).
        .target(
            name: "PlatformCommandLine",
            dependencies: ["HubStore", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // The platform's publisher role (sync spec §5): holds the authority key, not the hub.
        .target(
            name: "Publisher",
            dependencies: [
                "HubStore", "KioskProtocol", "BenefitCard",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        .executableTarget(
            name: "hub-publisher",
            dependencies: [
                "Publisher", "HubStore", "PlatformCommandLine", "KioskProtocol", "SystemdSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "settlement-hub",
            dependencies: [
                "HubHTTP", "HubStore", "PlatformCommandLine", "KioskProtocol", "SystemdSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
            ]
        ),
        .executableTarget(
            name: "kioskd",
            dependencies: [
                "SystemdSupport", "SmartCard", "BenefitCard", "KioskProtocol", "KioskStore", "KioskCore", "Receipts", "Settlement",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            resources: [.copy("Screens")]
        ),
        .target(
            name: "KioskStore",
            dependencies: [
                "KioskProtocol",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "KioskCore",
            dependencies: [
                "SmartCard", "BenefitCard", "KioskProtocol", "KioskStore", "Receipts",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            // The test hooks (a fixed clock, a crash at a step of the deduction) exist in debug
            // builds only: release binaries, which install.sh installs, have none.
            swiftSettings: [.define("BENEFIT_KIOSK_TEST_HOOKS", .when(configuration: .debug))]
        ),
        .executableTarget(
            name: "kioskctl",
            dependencies: [
                "SmartCard",
                "BenefitCard",
                "KioskProtocol",
                "KioskStore",
                "KioskCore",
                "Receipts",
                "Settlement",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "virtual-card",
            dependencies: [
                "VirtualCard",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "kiosk-bench",
            dependencies: [
                "SmartCard",
                "BenefitCard",
                "VirtualCard",
                "KioskProtocol",
                "KioskStore",
                "KioskCore",
                "Receipts",
                "Settlement",
                "TestVectors",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The spec's vectors and test doubles, one copy for every test target and the bench.
        .executableTarget(
            name: "device-ca",
            dependencies: [
                "KioskProtocol", "BenefitCard",
                "SmartCard",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(
            name: "TestVectors",
            dependencies: [
                "BenefitCard",
                "VirtualCard",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            resources: [.copy("Fixtures")]
        ),
        // libFuzzer targets (Fuzz/README.md): one executable, the target named by its first
        // argument. Fuzz/run.sh builds it with -DFUZZING and the fuzzer sanitizer; a plain
        // build makes it a corpus replayer. `@testable import HubHTTP`: debug builds only.
        // Issue 11: the floor of the daemon at rest, a process that links the same Swift
        // runtime and Foundation and does nothing (Benchmarks/idle-bench.sh).
        .executableTarget(name: "rest-floor", path: "Benchmarks/rest-floor"),
        .executableTarget(
            name: "bk-fuzz",
            dependencies: [
                "KioskProtocol", "SmartCard", "BenefitCard", "KioskStore", "KioskCore", "Receipts", "HubHTTP", "HubStore", "HubRules",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Fuzz/Sources"
        ),
        .testTarget(
            name: "SmartCardTests",
            dependencies: ["SmartCard", "VirtualCard", "TestVectors"]
        ),
        .testTarget(
            name: "BenefitCardTests",
            dependencies: ["BenefitCard", "SmartCard", "VirtualCard", "TestVectors", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .testTarget(
            name: "KioskProtocolTests",
            dependencies: ["KioskProtocol", "TestVectors"]
        ),
        .testTarget(
            name: "KioskStoreTests",
            dependencies: ["KioskStore", "KioskCore", "KioskProtocol", "BenefitCard", "VirtualCard", "SmartCard", "TestVectors",
                           .product(name: "Crypto", package: "swift-crypto"), .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .testTarget(
            name: "ReceiptsTests",
            dependencies: ["Receipts", "KioskProtocol", "TestVectors", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .testTarget(
            name: "SettlementTests",
            dependencies: ["Settlement", "HubHTTP", "HubStore", "HubRules", "HubFaults", "Publisher", "KioskProtocol", "KioskStore", "KioskCore", "TestVectors",
                           .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "AsyncHTTPClient", package: "async-http-client"),
                           .product(name: "GRDB", package: "GRDB.swift"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "CoreMetrics", package: "swift-metrics"),
                           .product(name: "HummingbirdTLS", package: "hummingbird")]
        ),
        .testTarget(
            name: "KioskCoreTests",
            dependencies: ["KioskCore", "KioskProtocol", "KioskStore", "BenefitCard", "SmartCard", "VirtualCard", "TestVectors", "SystemdSupport",
                           .product(name: "Logging", package: "swift-log")]
        ),
        // kioskctl's commands run in-process (an executable target, imported @testable).
        .testTarget(
            name: "KioskCtlTests",
            dependencies: ["kioskctl", "KioskCore", "TestVectors", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["SmartCard", "BenefitCard", "VirtualCard", "KioskStore", "KioskCore", "KioskProtocol", "TestVectors",
                           .product(name: "Crypto", package: "swift-crypto")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
