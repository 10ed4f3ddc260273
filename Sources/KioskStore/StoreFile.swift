import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The store's file as the daemon opened it (issue 23 item 5): its identity (device and
/// inode) and a cheap check of its header read past the page cache (through SQLite's own
/// descriptor: opening the file would break SQLite's locks), so a store replaced, removed or
/// overwritten under a running daemon is noticed at once, without scanning it.
public struct StoreFile: Sendable, Equatable {
    /// The file's path.
    public let path: String
    /// `st_dev` and `st_ino` when it was opened.
    public let device: UInt64, inode: UInt64

    /// The identity of the file at `path` now; nil when there is none.
    public static func identity(_ path: String) -> (device: UInt64, inode: UInt64, regular: Bool)? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return (UInt64(st.st_dev), UInt64(st.st_ino), (st.st_mode & S_IFMT) == S_IFREG)
    }

    /// The file at `path` as it is now.
    /// - Throws: `StoreError` when there is no regular file there.
    public init(path: String) throws {
        guard let id = StoreFile.identity(path), id.regular else {
            throw StoreError(kind: .corrupt, message: "\(path) is not a regular file")
        }
        self.path = path; device = id.device; inode = id.inode
    }

    /// What is wrong with the file now, in words; nil when it is still the one opened and
    /// starts with SQLite's header.
    public func problem() -> String? {
        guard let id = StoreFile.identity(path) else { return "the store file \(path) is gone" }
        guard id.regular else { return "the store file \(path) is no longer a regular file" }
        guard id.device == device, id.inode == inode else { return "the store file \(path) was replaced by another file" }
        // No descriptor open (the store not in use by this process): identity is all there is to check.
        guard let header = StoreFile.readHeader(device: device, inode: inode) else { return nil }
        guard header.starts(with: Array("SQLite format 3\0".utf8)) else {
            return "the store file \(path) is no longer a SQLite database (its header was overwritten)"
        }
        return nil
    }

    /// The first 4 KiB of the file, read through a descriptor SQLite already holds on it (its
    /// device and inode are the file's), after dropping its cached page, so the bytes come
    /// from the disk. The file itself is never opened here: closing any descriptor of a file
    /// drops every POSIX lock the process holds on it, SQLite's included (fcntl(2)), and the
    /// daemon's own connections would then write unlocked. Nil when no descriptor of the
    /// file is open in this process.
    static func readHeader(device: UInt64, inode: UInt64) -> [UInt8]? {
        guard let dir = opendir("/proc/self/fd") else { return nil }
        defer { closedir(dir) }
        let size = 4096
        var buffer = [UInt8](repeating: 0, count: size)
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
            guard let fd = Int32(name), fd > 2 else { continue }
            var st = stat()
            guard fstat(fd, &st) == 0, UInt64(st.st_dev) == device, UInt64(st.st_ino) == inode, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            _ = posix_fadvise(fd, 0, off_t(size), POSIX_FADV_DONTNEED)
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, size, 0) }
            guard n >= 16 else { continue }
            return Array(buffer.prefix(n))
        }
        return nil
    }
}
