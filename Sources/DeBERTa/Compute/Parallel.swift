

/// Runs body(0 ..< count) on `count` threads (the caller's included); body touches disjoint outputs.
func parallel(_ count: Int, _ body: (Int) -> Void) {
    ComputeContext.current.pool.run(count, body)
}

/// Splits rows [0, rows) into one contiguous range per compute thread.
func parallelRows(_ rows: Int, _ body: (Int, Int) -> Void) {
    let parts = max(1, min(ComputeThreads.count, rows / 32))
    parallel(parts) { p in
        let r0 = rows * p / parts, r1 = rows * (p + 1) / parts
        if r1 > r0 { body(r0, r1 - r0) }
    }
}

/// Splits rows [0, rows) into whole panels of `panel` rows, one contiguous range per compute thread
/// (packing: every panel is written independently).
func parallelPanels(rows: Int, panel: Int, _ body: (Int, Int) -> Void) {
    let panels = (rows + panel - 1) / panel
    let parts = max(1, min(ComputeThreads.count, panels / 4))
    parallel(parts) { part in
        let p0 = panels * part / parts, p1 = panels * (part + 1) / parts
        if p1 > p0 { body(p0 * panel, min(rows, p1 * panel)) }
    }
}
