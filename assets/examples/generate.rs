//! Rewrites the committed asset files from the synthesiser: `cargo run -p assets --example generate`.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("files");
    std::fs::create_dir_all(&dir)?;
    for asset in assets::Asset::ALL {
        let path = dir.join(asset.file_name());
        std::fs::write(&path, asset.generate()?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
