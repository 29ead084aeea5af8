import CZlib

/// One file inside a zip archive, as the central directory describes it (sizes and offsets already
/// resolved through the zip64 extra field) plus where its data starts (read from its local header).
struct ZipEntry: Sendable {
    var name: String
    var method: UInt16
    var flags: UInt16
    var compressedSize: Int
    var uncompressedSize: Int
    var localHeaderOffset: Int
    /// Absolute offset of the entry's (possibly compressed) bytes in the archive region.
    var dataOffset: Int

    var isStored: Bool { method == 0 }
}

/// A read-only zip reader over untrusted bytes. It never writes, never follows names to the file system
/// and never trusts a size it has not checked against the bytes it has.
///
/// Refused: no end-of-central-directory record, multi-disk archives, entries outside the archive,
/// encrypted entries (flag bit 0), methods other than stored (0) and deflate (8), names that escape the
/// archive (absolute, `..`, backslashes, NUL, drive letters), duplicate names, overlapping entries.
/// CRCs are not checked (torch can skip writing them).
struct ZipArchive {
    let region: ByteRegion
    let file: String
    /// Central directory order.
    let entries: [ZipEntry]
    private let index: [String: Int]

    static let localHeaderSignature: UInt32 = 0x0403_4B50
    static let centralHeaderSignature: UInt32 = 0x0201_4B50
    static let endOfCentralDirectorySignature: UInt32 = 0x0605_4B50
    static let zip64LocatorSignature: UInt32 = 0x0706_4B50
    static let zip64EndSignature: UInt32 = 0x0606_4B50

    /// Deflate cannot expand one input byte into more than 1032 output bytes (a 258-byte match coded in
    /// 2 bits); the slack covers block headers of tiny streams.
    static let maxDeflateRatio = 1032
    static let deflateSlack = 4096

    init(_ region: ByteRegion, file: String) throws {
        self.region = region
        self.file = file
        let bytes = region.bytes
        let size = bytes.count

        // End of central directory: 22 bytes + up to 65,535 bytes of comment, searched backwards.
        guard size >= 22 else {
            throw DebertaError(.malformedFile, file: file, "is not a valid zip archive: \(size) bytes is shorter than an end-of-central-directory record (22 bytes)")
        }
        var eocd = -1
        let lowest = max(0, size - 65_557)
        var candidate = size - 22
        while candidate >= lowest {
            if bytes[candidate] == 0x50, bytes[candidate + 1] == 0x4B, bytes[candidate + 2] == 0x05, bytes[candidate + 3] == 0x06 {
                var r = ByteReader(bytes, file: file, what: "zip end-of-central-directory record", position: candidate + 20)
                let commentLength = Int(try r.le(UInt16.self))
                if commentLength <= size - candidate - 22 {
                    eocd = candidate
                    break
                }
            }
            candidate -= 1
        }
        guard eocd >= 0 else {
            throw DebertaError(.malformedFile, file: file, "is not a valid zip archive: no end-of-central-directory record in its last 65,557 bytes (truncated file?)")
        }

        var r = ByteReader(bytes, file: file, what: "zip end-of-central-directory record", position: eocd + 4)
        let diskNumber = Int(try r.le(UInt16.self))
        let cdDisk = Int(try r.le(UInt16.self))
        let entriesOnDisk16 = try r.le(UInt16.self)
        let totalEntries16 = try r.le(UInt16.self)
        let cdSize32 = try r.le(UInt32.self)
        let cdOffset32 = try r.le(UInt32.self)

        var entryCount = Int(totalEntries16)
        var cdSize = Int(cdSize32)
        var cdOffset = Int(cdOffset32)
        var multiDisk = diskNumber != 0 || cdDisk != 0 || entriesOnDisk16 != totalEntries16

        // Zip64: the locator sits just before the EOCD record.
        if eocd >= 20 {
            var l = ByteReader(bytes, file: file, what: "zip64 end-of-central-directory locator", position: eocd - 20)
            if try l.le(UInt32.self) == Self.zip64LocatorSignature {
                let z64Disk = try l.le(UInt32.self)
                let z64Offset = try l.le(UInt64.self)
                let totalDisks = try l.le(UInt32.self)
                guard z64Disk == 0, totalDisks <= 1 else {
                    throw DebertaError(.unsupported, file: file, "is a multi-disk (split) zip archive, which is not supported; join the parts into one file")
                }
                guard z64Offset <= UInt64(eocd - 20), let z64Start = Int(exactly: z64Offset) else {
                    throw DebertaError(.malformedFile, file: file, "has a zip64 locator pointing at offset \(z64Offset), outside the archive (\(size) bytes)")
                }
                var z = ByteReader(bytes, file: file, what: "zip64 end-of-central-directory record", position: z64Start)
                guard try z.le(UInt32.self) == Self.zip64EndSignature else {
                    throw DebertaError(.malformedFile, file: file, "has a zip64 locator that does not point at a zip64 end-of-central-directory record (offset \(z64Start))")
                }
                _ = try z.le(UInt64.self) // size of the record
                _ = try z.le(UInt16.self) // version made by
                _ = try z.le(UInt16.self) // version needed
                let d = try z.le(UInt32.self)
                let cdd = try z.le(UInt32.self)
                let onDisk = try z.le(UInt64.self)
                let total = try z.le(UInt64.self)
                let size64 = try z.le(UInt64.self)
                let offset64 = try z.le(UInt64.self)
                multiDisk = d != 0 || cdd != 0 || onDisk != total
                guard let t = Int(exactly: total), let s = Int(exactly: size64), let o = Int(exactly: offset64) else {
                    throw DebertaError(.malformedFile, file: file, "has a zip64 end-of-central-directory record with sizes beyond 2^63")
                }
                entryCount = t
                cdSize = s
                cdOffset = o
            }
        }
        guard !multiDisk else {
            throw DebertaError(.unsupported, file: file, "is a multi-disk (split) zip archive, which is not supported; join the parts into one file")
        }
        guard entryCount <= CheckpointLimits.maxZipEntries else {
            throw DebertaError(.limit, file: file, "declares \(entryCount) zip entries, more than the limit of \(CheckpointLimits.maxZipEntries) for a checkpoint archive")
        }
        guard let cdEnd = checkedAdd(cdOffset, cdSize), cdEnd <= size else {
            throw DebertaError(.malformedFile, file: file, "has a central directory (offset \(cdOffset), \(cdSize) bytes) that extends past the end of the file (\(size) bytes); the file is truncated or corrupt")
        }
        // Every central directory record is at least 46 bytes: bound the count before reserving anything.
        guard entryCount >= 0, entryCount <= cdSize / 46 else {
            throw DebertaError(.malformedFile, file: file, "declares \(entryCount) zip entries but its central directory (\(cdSize) bytes) can hold at most \(cdSize / 46)")
        }

        var entries: [ZipEntry] = []
        entries.reserveCapacity(entryCount)
        var index: [String: Int] = [:]
        var c = ByteReader(bytes, file: file, what: "zip central directory", position: cdOffset)
        for i in 0 ..< entryCount {
            guard c.position <= cdEnd, cdEnd - c.position >= 46 else {
                throw DebertaError(.malformedFile, file: file, "zip central directory entry \(i) runs past the end of the central directory")
            }
            guard try c.le(UInt32.self) == Self.centralHeaderSignature else {
                throw DebertaError(.malformedFile, file: file, "zip central directory entry \(i) has a bad signature at offset \(c.position - 4)")
            }
            _ = try c.le(UInt16.self) // version made by
            _ = try c.le(UInt16.self) // version needed
            let flags = try c.le(UInt16.self)
            let method = try c.le(UInt16.self)
            _ = try c.le(UInt32.self) // time, date
            _ = try c.le(UInt32.self) // crc (not checked)
            let comp32 = try c.le(UInt32.self)
            let uncomp32 = try c.le(UInt32.self)
            let nameLength = Int(try c.le(UInt16.self))
            let extraLength = Int(try c.le(UInt16.self))
            let commentLength = Int(try c.le(UInt16.self))
            let diskStart16 = try c.le(UInt16.self)
            _ = try c.le(UInt16.self) // internal attributes
            _ = try c.le(UInt32.self) // external attributes
            let local32 = try c.le(UInt32.self)
            let nameBytes = try c.take(nameLength)
            let extra = try c.take(extraLength)
            try c.skip(commentLength)
            guard c.position <= cdEnd else {
                throw DebertaError(.malformedFile, file: file, "zip central directory entry \(i) runs past the end of the central directory")
            }

            let name = try Self.validateName(nameBytes, file: file)
            var compressed = Int(comp32)
            var uncompressed = Int(uncomp32)
            var localOffset = Int(local32)
            var diskStart = UInt32(diskStart16)

            // Zip64 extended information: only the fields whose 32-bit value is saturated, in this order.
            if comp32 == 0xFFFF_FFFF || uncomp32 == 0xFFFF_FFFF || local32 == 0xFFFF_FFFF || diskStart16 == 0xFFFF {
                var e = ByteReader(extra, file: file, what: "zip64 extra field of '\(name)'")
                var found = false
                while e.remaining >= 4 {
                    let id = try e.le(UInt16.self)
                    let length = Int(try e.le(UInt16.self))
                    var field = ByteReader(try e.take(length), file: file, what: "zip64 extra field of '\(name)'")
                    guard id == 0x0001 else { continue }
                    found = true
                    func wide() throws -> Int {
                        let v = try field.le(UInt64.self)
                        guard let i = Int(exactly: v) else {
                            throw DebertaError(.malformedFile, file: file, "zip entry '\(name)' has a zip64 size or offset beyond 2^63")
                        }
                        return i
                    }
                    if uncomp32 == 0xFFFF_FFFF { uncompressed = try wide() }
                    if comp32 == 0xFFFF_FFFF { compressed = try wide() }
                    if local32 == 0xFFFF_FFFF { localOffset = try wide() }
                    if diskStart16 == 0xFFFF { diskStart = try field.le(UInt32.self) }
                    break
                }
                guard found else {
                    throw DebertaError(.malformedFile, file: file, "zip entry '\(name)' has saturated 32-bit sizes but no zip64 extra field")
                }
            }
            guard diskStart == 0 else {
                throw DebertaError(.unsupported, file: file, "zip entry '\(name)' starts on disk \(diskStart): split archives are not supported")
            }
            guard flags & 1 == 0 else {
                throw DebertaError(.unsupported, file: file, "zip entry '\(name)' is encrypted; encrypted archives are not supported")
            }
            guard method == 0 || method == 8 else {
                throw DebertaError(.malformedFile, file: file, "zip entry '\(name)' uses compression method \(method); only stored (0) and deflate (8) are supported")
            }
            if method == 0, compressed != uncompressed {
                throw DebertaError(.malformedFile, file: file, "stored zip entry '\(name)' declares \(compressed) bytes in the archive but \(uncompressed) bytes uncompressed; a stored entry must declare equal sizes")
            }
            guard index[name] == nil else {
                throw DebertaError(.malformedFile, file: file, "has two zip entries named '\(name)'; duplicate names are refused (they are ambiguous)")
            }

            // The local header: its own name and extra lengths decide where the data starts.
            guard localOffset <= size - 30 else {
                throw DebertaError(.malformedFile, file: file, "zip entry '\(name)' has its local header at offset \(localOffset), past the end of the file (\(size) bytes)")
            }
            var h = ByteReader(bytes, file: file, what: "zip local header of '\(name)'", position: localOffset)
            guard try h.le(UInt32.self) == Self.localHeaderSignature else {
                throw DebertaError(.malformedFile, file: file, "zip entry '\(name)': no local header signature at offset \(localOffset)")
            }
            try h.skip(22)
            let localNameLength = Int(try h.le(UInt16.self))
            let localExtraLength = Int(try h.le(UInt16.self))
            let localName = try h.take(localNameLength)
            guard localName.elementsEqual(nameBytes) else {
                throw DebertaError(.malformedFile, file: file, "zip entry '\(name)': its local header names a different file; the archive is inconsistent")
            }
            try h.skip(localExtraLength)
            let dataOffset = h.position
            guard let dataEnd = checkedAdd(dataOffset, compressed), dataEnd <= size else {
                throw DebertaError(.malformedFile, file: file, "zip entry '\(name)' declares \(compressed) bytes at offset \(dataOffset), past the end of the file (\(size) bytes); the file is truncated")
            }

            index[name] = entries.count
            entries.append(ZipEntry(
                name: name, method: method, flags: flags, compressedSize: compressed,
                uncompressedSize: uncompressed, localHeaderOffset: localOffset, dataOffset: dataOffset))
        }

        // Entries must not share bytes (overlapping entries are the "better zip bomb" trick).
        let sorted = entries.sorted { $0.localHeaderOffset < $1.localHeaderOffset }
        if sorted.count > 1 {
            for k in 1 ..< sorted.count {
                let previous = sorted[k - 1]
                if previous.dataOffset + previous.compressedSize > sorted[k].localHeaderOffset {
                    throw DebertaError(.malformedFile, file: file, "zip entries '\(previous.name)' and '\(sorted[k].name)' overlap; overlapping entries are refused")
                }
            }
        }

        self.entries = entries
        self.index = index
    }

    /// A name must stay inside the archive: relative, `/`-separated, no `..`, no backslash, no NUL,
    /// no drive letter, valid UTF-8.
    static func validateName(_ raw: UnsafeRawBufferPointer, file: String) throws -> String {
        guard let name = String(validating: raw, as: UTF8.self) else {
            throw DebertaError(.malformedFile, file: file, "has a zip entry whose name is not valid UTF-8")
        }
        func refuse(_ why: String) -> DebertaError {
            DebertaError(.malformedFile, file: file, "has a zip entry named '\(name.debugDescription.dropFirst().dropLast())' that \(why); refusing an archive whose names could escape it")
        }
        if name.isEmpty { throw refuse("is empty") }
        if name.hasPrefix("/") { throw refuse("is an absolute path") }
        if name.contains("\\") { throw refuse("contains a backslash") }
        if name.contains("\0") { throw refuse("contains a NUL byte") }
        let utf8 = Array(name.utf8)
        if utf8.count >= 2, utf8[1] == UInt8(ascii: ":") { throw refuse("starts with a drive letter") }
        for component in name.split(separator: "/", omittingEmptySubsequences: false) where component == ".." {
            throw refuse("has a '..' component")
        }
        return name
    }

    func entry(named name: String) -> ZipEntry? {
        guard let i = index[name] else { return nil }
        return entries[i]
    }

    /// The entry's bytes as stored in the archive (zero copy).
    func rawData(_ entry: ZipEntry) throws -> ByteRegion {
        guard let r = region.slice(offset: entry.dataOffset, count: entry.compressedSize) else {
            throw DebertaError(.malformedFile, file: file, "zip entry '\(entry.name)' lies outside the archive")
        }
        return r
    }

    /// Exactly `size` bytes of the entry's contents: a zero-copy window for a stored entry holding at
    /// least `size` bytes (`exact` requires it to hold exactly `size`), or, for a deflated entry, a new
    /// buffer of `size` bytes filled by inflating a stream that must end after exactly `size` bytes.
    func contents(_ entry: ZipEntry, size: Int, exact: Bool, what: String) throws -> ByteRegion {
        guard size >= 0 else {
            throw DebertaError(.malformedFile, file: file, "\(what): negative size \(size)")
        }
        if entry.isStored {
            let raw = try rawData(entry)
            guard raw.count >= size, !exact || raw.count == size else {
                throw DebertaError(.malformedFile, file: file, "\(what): zip entry '\(entry.name)' holds \(raw.count) bytes, expected \(exact ? "" : "at least ")\(size)")
            }
            guard let r = raw.slice(offset: 0, count: size) else {
                throw DebertaError(.malformedFile, file: file, "\(what): zip entry '\(entry.name)' is shorter than \(size) bytes")
            }
            return r
        }
        guard entry.uncompressedSize >= size, !exact || entry.uncompressedSize == size else {
            throw DebertaError(.malformedFile, file: file, "\(what): deflated zip entry '\(entry.name)' declares \(entry.uncompressedSize) bytes uncompressed, expected \(exact ? "" : "at least ")\(size)")
        }
        return try inflate(entry, size: size, what: what)
    }

    /// Inflates a deflated entry into exactly `size` bytes. Refuses before allocating when deflate could
    /// not produce `size` bytes from the entry's compressed size; stops and throws as soon as the stream
    /// produces more than `size` bytes (zip bomb) and throws when it ends early (truncated).
    func inflate(_ entry: ZipEntry, size: Int, what: String) throws -> ByteRegion {
        let raw = try rawData(entry)
        let possible = checkedAdd(checkedMul(raw.count, Self.maxDeflateRatio) ?? Int.max, Self.deflateSlack) ?? Int.max
        guard size <= possible else {
            throw DebertaError(.malformedFile, file: file, "\(what): deflated zip entry '\(entry.name)' has \(raw.count) compressed bytes, which cannot inflate to the \(size) bytes needed; the entry is truncated or its sizes are forged")
        }
        // A suspicious ratio for a large buffer: first prove the stream really yields `size` bytes,
        // counting through a small scratch buffer, so a forged stream never gets a large allocation.
        if size > 64 << 20, size / 16 > raw.count {
            try runInflate(raw.bytes, into: nil, size: size, entry: entry, what: what)
        }
        let storage = try ByteStorage.allocate(count: size, file: file, what: "\(what): inflating zip entry '\(entry.name)'") { buffer in
            try runInflate(raw.bytes, into: buffer, size: size, entry: entry, what: what)
        }
        return ByteRegion(storage: storage)
    }

    /// Runs raw inflate over `input`. With `output`, writes the `size` bytes there; without, only counts.
    /// Throws unless the stream ends after exactly `size` bytes.
    private func runInflate(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer?, size: Int, entry: ZipEntry, what: String) throws {
        var stream = z_stream()
        guard deberta_inflate_init_raw(&stream) == Z_OK else {
            throw DebertaError(.malformedFile, file: file, "\(what): cannot initialise zlib to inflate zip entry '\(entry.name)'")
        }
        defer { inflateEnd(&stream) }

        let scratchSize = 1 << 20
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: output == nil ? scratchSize : 1, alignment: 16)
        defer { scratch.deallocate() }
        let chunk = 1 << 30

        var consumed = 0 // input bytes handed to zlib
        var produced = 0 // output bytes zlib wrote within the first `size`
        while true {
            if stream.avail_in == 0, consumed < input.count, let base = input.baseAddress {
                let n = min(chunk, input.count - consumed)
                stream.next_in = UnsafeMutablePointer(mutating: (base + consumed).assumingMemoryBound(to: Bytef.self))
                stream.avail_in = uInt(n)
                consumed += n
            }
            // Output window: the rest of the buffer, or one spare byte once `size` bytes are out
            // (any byte landing there means the stream is longer than allowed).
            let room = size - produced
            let window: Int
            let overflowProbe = room == 0
            if overflowProbe {
                window = 1
                stream.next_out = scratch.assumingMemoryBound(to: Bytef.self)
            } else if let output, let outBase = output.baseAddress {
                window = min(room, chunk)
                stream.next_out = (outBase + produced).assumingMemoryBound(to: Bytef.self)
            } else {
                window = min(room, scratchSize)
                stream.next_out = scratch.assumingMemoryBound(to: Bytef.self)
            }
            stream.avail_out = uInt(window)
            let ret = CZlib.inflate(&stream, Z_NO_FLUSH)
            let wrote = window - Int(stream.avail_out)
            if overflowProbe {
                if wrote > 0 {
                    throw DebertaError(.malformedFile, file: file, "\(what): deflated zip entry '\(entry.name)' inflates to more than the \(size) bytes needed; refusing it (zip bomb or wrong sizes)")
                }
            } else {
                produced += wrote
            }
            switch ret {
            case Z_STREAM_END:
                guard produced == size else {
                    throw DebertaError(.malformedFile, file: file, "\(what): deflated zip entry '\(entry.name)' inflates to \(produced) bytes, expected \(size); the entry is truncated")
                }
                return
            case Z_OK:
                continue
            case Z_BUF_ERROR:
                // No progress possible: input exhausted before the end of the stream.
                if stream.avail_in == 0, consumed >= input.count {
                    throw DebertaError(.malformedFile, file: file, "\(what): deflated zip entry '\(entry.name)' ends after \(produced) of \(size) bytes without an end-of-stream marker; the entry is truncated")
                }
                if wrote == 0 {
                    throw DebertaError(.malformedFile, file: file, "\(what): deflated zip entry '\(entry.name)' makes no progress; the stream is corrupt")
                }
                continue
            default:
                let reason = stream.msg.map { String(cString: $0) } ?? "zlib error \(ret)"
                throw DebertaError(.malformedFile, file: file, "\(what): deflated zip entry '\(entry.name)' is corrupt (\(reason))")
            }
        }
    }
}
