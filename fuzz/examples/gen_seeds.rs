//! Writes the seed corpora to `seeds/<target>/` (run from `fuzz/`:
//! `cargo run --example gen_seeds`).

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for (target, seeds) in [
        ("decode_frames", puka_fuzz::decode_seeds()),
        ("connection", puka_fuzz::connection_seeds()),
        ("recovery", puka_fuzz::recovery_seeds()),
    ] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, data) in &seeds {
            std::fs::write(dir.join(name), data)?;
        }
        println!("{}: {} seeds", dir.display(), seeds.len());
    }
    Ok(())
}
