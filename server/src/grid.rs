//! Uniform spatial grid for interest management and hit tests on the ground plane.
//!
//! Rebuilt from scratch every tick with a counting sort into flat arrays, so a rebuild costs
//! O(entities + cells) and allocates nothing once the arrays have grown to size.

use glam::Vec2;

/// Most cells per axis; a huge world with a tiny cell size gets coarser cells instead.
const MAX_CELLS_PER_AXIS: usize = 1024;

/// A grid over an axis-aligned rectangle.
#[derive(Debug, Clone)]
pub struct Grid {
    min: Vec2,
    inv_cell: f32,
    nx: usize,
    ny: usize,
    /// `starts[c]..starts[c + 1]` indexes `items` for cell `c`.
    starts: Vec<u32>,
    items: Vec<u32>,
    /// `item_pos[k]` is the position of `items[k]`: a query scans its cells' positions in
    /// order instead of looking each item up across the whole positions slice.
    item_pos: Vec<Vec2>,
    cell_of: Vec<u32>,
    fill: Vec<u32>,
    /// Per cell, the bounding box of its items' positions (empty cells: +inf..-inf; a cell
    /// with a non-finite position: NaN, which no coverage test passes). Kept only for grids
    /// of at most [`MAX_COVER_CELLS`] cells.
    lo: Vec<Vec2>,
    hi: Vec<Vec2>,
}

/// Grids with more cells keep no per-cell boxes, and [`Grid::covered`] always says no.
const MAX_COVER_CELLS: usize = 1 << 16;
/// Most cells a covered query may span; a view that large is shared by few clients anyway.
const MAX_COVER_SPAN: usize = 16;

/// A rectangle of cells (`x0, y0, x1, y1`, inclusive) whose items are all within a query's
/// radius: every client whose query covers the same rectangle sees the same entities.
pub type CellRect = [u16; 4];

impl Grid {
    /// A grid covering `min..max` with square cells of about `cell` units.
    pub fn new(min: Vec2, max: Vec2, cell: f32) -> Self {
        let extent = (max - min).max(Vec2::splat(1e-3));
        let cell = cell
            .max(1e-3)
            .max(extent.max_element() / MAX_CELLS_PER_AXIS as f32);
        let nx = ((extent.x / cell).ceil() as usize).clamp(1, MAX_CELLS_PER_AXIS);
        let ny = ((extent.y / cell).ceil() as usize).clamp(1, MAX_CELLS_PER_AXIS);
        Self {
            min,
            inv_cell: 1.0 / cell,
            nx,
            ny,
            starts: vec![0; nx * ny + 1],
            items: Vec::new(),
            item_pos: Vec::new(),
            cell_of: Vec::new(),
            fill: Vec::new(),
            lo: Vec::new(),
            hi: Vec::new(),
        }
    }

    fn cell_xy(&self, p: Vec2) -> (usize, usize) {
        let c = (p - self.min) * self.inv_cell;
        // `as usize` saturates (NaN → 0), so any position lands in some edge cell.
        (
            (c.x as usize).min(self.nx - 1),
            (c.y as usize).min(self.ny - 1),
        )
    }

    /// Re-buckets every position; item `i` is `positions[i]`.
    pub fn rebuild(&mut self, positions: &[Vec2]) {
        let n = positions.len();
        self.cell_of.clear();
        self.starts.iter_mut().for_each(|s| *s = 0);
        for &p in positions {
            let (x, y) = self.cell_xy(p);
            let c = y * self.nx + x;
            self.cell_of.push(c as u32);
            self.starts[c + 1] += 1;
        }
        for c in 0..self.nx * self.ny {
            self.starts[c + 1] += self.starts[c];
        }
        self.items.clear();
        self.items.resize(n, 0);
        self.item_pos.clear();
        self.item_pos.resize(n, Vec2::ZERO);
        // Boxes from an earlier rebuild_with_boxes describe other positions.
        self.lo.clear();
        self.hi.clear();
        // Fill back to front so each cell's items end up in ascending index order.
        self.fill.clone_from(&self.starts);
        for (i, &c) in self.cell_of.iter().enumerate().rev() {
            self.fill[c as usize + 1] -= 1;
            let k = self.fill[c as usize + 1] as usize;
            self.items[k] = i as u32;
            self.item_pos[k] = positions[i];
        }
    }

    /// As [`Grid::rebuild`], also keeping each cell's bounding box for [`Grid::covered`].
    pub fn rebuild_with_boxes(&mut self, positions: &[Vec2]) {
        self.rebuild(positions);
        let cells = self.nx * self.ny;
        if cells > MAX_COVER_CELLS {
            return;
        }
        // Only here: a plain rebuild (the arena's hit tests) pays nothing for boxes.
        self.lo.resize(cells, Vec2::INFINITY);
        self.hi.resize(cells, Vec2::NEG_INFINITY);
        for (p, &c) in positions.iter().zip(&self.cell_of) {
            let c = c as usize;
            // A NaN box stays NaN: `Vec2::min` would pick the finite side over a NaN.
            if p.is_finite() && !self.lo[c].is_nan() {
                self.lo[c] = self.lo[c].min(*p);
                self.hi[c] = self.hi[c].max(*p);
            } else {
                self.lo[c] = Vec2::NAN;
                self.hi[c] = Vec2::NAN;
            }
        }
    }

    /// The cells a [`Grid::query`] around `center` would scan, if every item in them is
    /// within `radius` (so the query's result is exactly those cells' items), found without
    /// looking at any item. Needs [`Grid::rebuild_with_boxes`]. Exact: an item's computed
    /// distance never exceeds that of its cell box's farthest corner (rounding is monotonic).
    pub fn covered(&self, center: Vec2, radius: f32) -> Option<CellRect> {
        if self.lo.len() != self.nx * self.ny {
            return None;
        }
        if !(radius >= 0.0 && center.is_finite()) {
            return None;
        }
        let r2 = radius * radius;
        let (x0, y0) = self.cell_xy(center - Vec2::splat(radius));
        let (x1, y1) = self.cell_xy(center + Vec2::splat(radius));
        if (x1 - x0 + 1) * (y1 - y0 + 1) > MAX_COVER_SPAN {
            return None;
        }
        for y in y0..=y1 {
            for x in x0..=x1 {
                let c = y * self.nx + x;
                if self.starts[c] == self.starts[c + 1] {
                    continue;
                }
                let (lo, hi) = (self.lo[c] - center, self.hi[c] - center);
                let far = Vec2::new(
                    (lo.x * lo.x).max(hi.x * hi.x),
                    (lo.y * lo.y).max(hi.y * hi.y),
                );
                // A NaN box (a non-finite position) is never covered.
                let d2 = far.x + far.y;
                if d2.is_nan() || d2 > r2 {
                    return None;
                }
            }
        }
        // Cells per axis are at most MAX_CELLS_PER_AXIS (1024), so they fit a u16.
        Some([x0 as u16, y0 as u16, x1 as u16, y1 as u16])
    }

    /// Appends the items of the cells of `rect` to `out`, in increasing order.
    pub fn cells(&self, rect: CellRect, out: &mut Vec<u32>) {
        let [x0, y0, x1, y1] = rect.map(usize::from);
        for y in y0..=y1 {
            let row = y * self.nx;
            let (a, b) = (
                self.starts[row + x0] as usize,
                self.starts[row + x1 + 1] as usize,
            );
            out.extend_from_slice(&self.items[a..b]);
        }
        if y1 > y0 || x1 > x0 {
            out.sort_unstable();
        }
    }

    /// Appends to `out` every item within `radius` of `center` (by the positions the grid was
    /// last built from), in no particular order.
    pub fn query(&self, center: Vec2, radius: f32, out: &mut Vec<u32>) {
        self.each_within(center, radius, |i| out.push(i));
    }

    /// Calls `f` with every item within `radius` of `center`, cell row by cell row.
    #[inline]
    fn each_within(&self, center: Vec2, radius: f32, mut f: impl FnMut(u32)) {
        let r2 = radius * radius;
        let (x0, y0) = self.cell_xy(center - Vec2::splat(radius));
        let (x1, y1) = self.cell_xy(center + Vec2::splat(radius));
        for y in y0..=y1 {
            let row = y * self.nx;
            let (a, b) = (
                self.starts[row + x0] as usize,
                self.starts[row + x1 + 1] as usize,
            );
            for (&i, p) in self.items[a..b].iter().zip(&self.item_pos[a..b]) {
                if p.distance_squared(center) <= r2 {
                    f(i);
                }
            }
        }
    }

    /// As [`Grid::query`], in increasing order, with `marks` as scratch: empty or all zero,
    /// as every call leaves it, of any length. The hits are marked in a bitmap of the item
    /// indices and read back in order: cheaper than sorting them (a view is some dozens of
    /// items out of a few thousand, and the bitmap's words are read once).
    pub fn query_sorted(
        &self,
        center: Vec2,
        radius: f32,
        marks: &mut Vec<u64>,
        out: &mut Vec<u32>,
    ) {
        let words = self.cell_of.len().div_ceil(64);
        marks.resize(words, 0);
        let (mut lo, mut hi) = (usize::MAX, 0);
        self.each_within(center, radius, |i| {
            let w = i as usize / 64;
            if let Some(m) = marks.get_mut(w) {
                *m |= 1 << (i % 64);
                lo = lo.min(w);
                hi = hi.max(w);
            }
        });
        if lo > hi {
            return;
        }
        for (w, m) in marks[lo..=hi].iter_mut().enumerate() {
            let base = ((lo + w) * 64) as u32;
            let mut bits = std::mem::take(m);
            while bits != 0 {
                out.push(base + bits.trailing_zeros());
                bits &= bits - 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_rebuild_forgets_the_positions_before_it() {
        let mut g = Grid::new(Vec2::ZERO, Vec2::splat(100.0), 10.0);
        let many: Vec<Vec2> = (0..50).map(|i| Vec2::new(i as f32 * 2.0, 50.0)).collect();
        g.rebuild(&many);
        let mut out = Vec::new();
        g.query(Vec2::new(50.0, 50.0), 5.0, &mut out);
        out.sort_unstable();
        assert_eq!(out, vec![23, 24, 25, 26, 27]);
        // Fewer items, moved: nothing of the first build may answer.
        let few = [
            Vec2::new(10.0, 10.0),
            Vec2::new(51.0, 50.0),
            Vec2::new(90.0, 90.0),
        ];
        g.rebuild(&few);
        out.clear();
        g.query(Vec2::new(50.0, 50.0), 5.0, &mut out);
        assert_eq!(out, vec![1]);
        out.clear();
        g.query(Vec2::new(10.0, 10.0), 1.0, &mut out);
        assert_eq!(out, vec![0]);
    }

    proptest! {
        #[test]
        fn query_matches_brute_force(
            pts in proptest::collection::vec((-120.0f32..120.0, -120.0f32..120.0), 0..300),
            center in (-130.0f32..130.0, -130.0f32..130.0),
            radius in 0.0f32..80.0,
            cell in 1.0f32..60.0,
        ) {
            let positions: Vec<Vec2> = pts.iter().map(|&(x, y)| Vec2::new(x, y)).collect();
            let mut g = Grid::new(Vec2::splat(-100.0), Vec2::splat(100.0), cell);
            g.rebuild(&positions);
            let c = Vec2::new(center.0, center.1);
            let mut got = Vec::new();
            g.query(c, radius, &mut got);
            got.sort_unstable();
            let want: Vec<u32> = (0..positions.len() as u32)
                .filter(|&i| positions[i as usize].distance_squared(c) <= radius * radius)
                .collect();
            prop_assert_eq!(&got, &want);
            // In order without sorting, and the bitmap is left clear for the next query
            // (here one of another world's size, then the same one again).
            let mut marks = vec![0; 9];
            for _ in 0..2 {
                let mut sorted = vec![7];
                g.query_sorted(c, radius, &mut marks, &mut sorted);
                prop_assert_eq!(&sorted[1..], &want[..]);
                prop_assert!(marks.iter().all(|&m| m == 0));
            }
            // A covered query is exactly its cells' items, in order.
            g.rebuild_with_boxes(&positions);
            if let Some(rect) = g.covered(c, radius) {
                let mut cells = Vec::new();
                g.cells(rect, &mut cells);
                prop_assert_eq!(cells, want);
            }
        }

        #[test]
        fn non_finite_positions_are_never_covered(
            pts in proptest::collection::vec((-50.0f32..50.0, -50.0f32..50.0), 1..20),
            bad in 0usize..20,
            which in 0usize..3,
        ) {
            let mut positions: Vec<Vec2> = pts.iter().map(|&(x, y)| Vec2::new(x, y)).collect();
            let n = positions.len();
            positions[bad % n] = [Vec2::NAN, Vec2::INFINITY, Vec2::NEG_INFINITY][which];
            let mut g = Grid::new(Vec2::splat(-50.0), Vec2::splat(50.0), 10.0);
            g.rebuild_with_boxes(&positions);
            for &c in &positions {
                if let Some(rect) = g.covered(c, 5.0) {
                    let (mut cells, mut want) = (Vec::new(), Vec::new());
                    g.cells(rect, &mut cells);
                    g.query(c, 5.0, &mut want);
                    want.sort_unstable();
                    prop_assert_eq!(cells, want);
                }
            }
        }

        #[test]
        fn everyone_in_a_small_world_is_covered(
            pts in proptest::collection::vec((-50.0f32..50.0, -50.0f32..50.0), 1..100),
            me in 0usize..100,
        ) {
            let positions: Vec<Vec2> = pts.iter().map(|&(x, y)| Vec2::new(x, y)).collect();
            let mut g = Grid::new(Vec2::splat(-50.0), Vec2::splat(50.0), 200.0);
            g.rebuild_with_boxes(&positions);
            let rect = g.covered(positions[me % positions.len()], 200.0);
            prop_assert_eq!(rect, Some([0, 0, 0, 0]));
        }
    }
}
