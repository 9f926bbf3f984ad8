// The built-in arena (assets/worlds/arena.toml): bounds and obstacles, for drawing and for
// client-side prediction. Generated from arena.toml; server/tests/js_client.rs checks that
// the two match (TICKWIRE_BLESS=1 cargo test -p tickwire-server --test js_client rewrites
// this file after an edit of arena.toml).
export const WORLD = {
  name: "arena",
  min: [-1000, -1000, 0],
  max: [1000, 1000, 0],
  obstacles: [
    { min: [-60, -60], max: [60, 60] },
    { min: [-520, 380], max: [-380, 420] },
    { min: [380, -420], max: [520, -380] },
    { min: [400, 300], max: [440, 560] },
    { min: [-440, -560], max: [-400, -300] },
    { min: [-820, -20], max: [-700, 20] },
    { min: [700, -20], max: [820, 20] },
    { min: [-20, 700], max: [20, 820] },
    { min: [-20, -820], max: [20, -700] },
  ],
};
