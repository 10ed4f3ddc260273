import Foundation

// One executable, eight targets: `bk-fuzz <target> [libFuzzer options and corpus dirs…]`
// (or BK_FUZZ_TARGET=<target>). Built with `-Xswiftc -DFUZZING -Xswiftc -sanitize=fuzzer,address`
// (Fuzz/run.sh) it hands the rest of the command line to libFuzzer. A plain `swift build`
// leaves it a replayer: `bk-fuzz <target> <file or directory>…` runs every input once
// through the same checks (what the regression tests and a crash triage need).

let arguments = CommandLine.arguments
let usage = "usage: bk-fuzz <target> [inputs or libFuzzer options…]; targets: \(FuzzTargets.names.joined(separator: ", "))"

var rest = Array(arguments.dropFirst())
var targetName = ProcessInfo.processInfo.environment["BK_FUZZ_TARGET"]
if let first = rest.first, FuzzTargets.byName[first] != nil {
    targetName = first
    rest.removeFirst()
}
guard let name = targetName, let target = FuzzTargets.byName[name] else {
    if rest.first == "list" { print(FuzzTargets.names.joined(separator: "\n")); exit(0) }
    FileHandle.standardError.write(Data((usage + "\n").utf8))
    exit(64)
}
FuzzTargets.selected = target

#if FUZZING
// libFuzzer's own entry point; it calls LLVMFuzzerTestOneInput below for every input.
typealias FuzzCallback = @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: FuzzCallback) -> Int32

// argv for libFuzzer: this program's path, then everything after the target name.
var cArgs: [UnsafeMutablePointer<CChar>?] = ([arguments[0]] + rest).map { strdup($0) } + [nil]
var argc = Int32(cArgs.count - 1)
let status = cArgs.withUnsafeMutableBufferPointer { buffer -> Int32 in
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = buffer.baseAddress
    return LLVMFuzzerRunDriver(&argc, &argv, { data, size in LLVMFuzzerTestOneInput(data, size) })
}
exit(status)
#else
// Replay: every file named, every file in every directory named.
var files: [URL] = []
for path in rest {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        FileHandle.standardError.write(Data("bk-fuzz: no such file \(path)\n".utf8))
        exit(66)
    }
    if isDirectory.boolValue {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        files += names.sorted().map { URL(fileURLWithPath: path).appendingPathComponent($0) }
    } else {
        files.append(URL(fileURLWithPath: path))
    }
}
for file in files {
    let bytes = [UInt8]((try? Data(contentsOf: file)) ?? Data())
    target.run(bytes)
}
print("bk-fuzz \(name): \(files.count) inputs replayed, no crash")
#endif
