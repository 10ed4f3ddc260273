import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The store's file as the daemon opened it (issue 23 item 5): its identity (device and
/// inode) and a cheap check of its header read past the page cache, so a store replaced,
/// removed or overwritten under a running daemon is noticed at once, without scanning it.
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
        guard let header = StoreFile.readHeader(path) else { return "the store file \(path) cannot be read" }
        guard header.starts(with: Array("SQLite format 3\0".utf8)) else {
            return "the store file \(path) is no longer a SQLite database (its header was overwritten)"
        }
        return nil
    }

    /// The first 4 KiB of the file, read with `O_DIRECT` (past the page cache), or where the
    /// file system does not take it (tmpfs) after dropping the cached page.
    /// `O_DIRECT` (not exported by Swift's Glibc module): 0o40000 on x86-64, 0o200000 on arm64.
    #if arch(x86_64)
    static let directIO: Int32 = 0o40000
    #else
    static let directIO: Int32 = 0o200000
    #endif

    static func readHeader(_ path: String) -> [UInt8]? {
        let size = 4096
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, size, size) == 0, let buffer = raw else { return nil }
        defer { free(buffer) }
        var fd = open(path, O_RDONLY | StoreFile.directIO | O_CLOEXEC)
        if fd < 0 {
            fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return nil }
            _ = posix_fadvise(fd, 0, off_t(size), POSIX_FADV_DONTNEED)
        }
        defer { close(fd) }
        var n = pread(fd, buffer, size, 0)
        if n < 0 && errno == EINVAL {
            // O_DIRECT accepted at open but not for this read: read through the cache.
            let plain = open(path, O_RDONLY | O_CLOEXEC)
            guard plain >= 0 else { return nil }
            defer { close(plain) }
            n = pread(plain, buffer, size, 0)
        }
        guard n >= 16 else { return nil }
        return Array(UnsafeRawBufferPointer(start: buffer, count: n))
    }
}
