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
    cell_of: Vec<u32>,
    fill: Vec<u32>,
}

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
            cell_of: Vec::new(),
            fill: Vec::new(),
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
    pub fn rebuild(&mut self, positions: impl ExactSizeIterator<Item = Vec2>) {
        let n = positions.len();
        self.cell_of.clear();
        self.starts.iter_mut().for_each(|s| *s = 0);
        for p in positions {
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
        // Fill back to front so each cell's items end up in ascending index order.
        self.fill.clone_from(&self.starts);
        for (i, &c) in self.cell_of.iter().enumerate().rev() {
            self.fill[c as usize + 1] -= 1;
            self.items[self.fill[c as usize + 1] as usize] = i as u32;
        }
    }

    /// Appends to `out` every item within `radius` of `center` (by `positions`, the same slice
    /// the grid was built from), in no particular order.
    pub fn query(&self, center: Vec2, radius: f32, positions: &[Vec2], out: &mut Vec<u32>) {
        let r2 = radius * radius;
        let (x0, y0) = self.cell_xy(center - Vec2::splat(radius));
        let (x1, y1) = self.cell_xy(center + Vec2::splat(radius));
        for y in y0..=y1 {
            let row = y * self.nx;
            let (a, b) = (
                self.starts[row + x0] as usize,
                self.starts[row + x1 + 1] as usize,
            );
            for &i in &self.items[a..b] {
                if positions[i as usize].distance_squared(center) <= r2 {
                    out.push(i);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
            g.rebuild(positions.iter().copied());
            let c = Vec2::new(center.0, center.1);
            let mut got = Vec::new();
            g.query(c, radius, &positions, &mut got);
            got.sort_unstable();
            let want: Vec<u32> = (0..positions.len() as u32)
                .filter(|&i| positions[i as usize].distance_squared(c) <= radius * radius)
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
