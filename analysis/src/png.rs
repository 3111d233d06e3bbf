//! SVG to PNG with resvg (pure Rust): one renderer draws every chart, and the PNG is a faithful
//! copy of the SVG. Text needs a real font: DejaVu Sans (Debian `fonts-dejavu-core`) or any
//! installed sans-serif; without one, the PNG would be an image without its labels, so that is an
//! error rather than a silent loss.

use std::sync::Arc;

use resvg::{tiny_skia, usvg};

#[derive(Debug, thiserror::Error)]
pub enum PngError {
    #[error(
        "no font for chart text: install DejaVu Sans (Debian: fonts-dejavu-core) or any sans-serif font"
    )]
    NoFont,
    #[error("chart {0}: {1}")]
    Render(String, String),
}

/// Fonts found once and shared by every conversion.
pub struct Renderer {
    options: usvg::Options<'static>,
}

impl Renderer {
    pub fn new() -> Result<Renderer, PngError> {
        let mut db = usvg::fontdb::Database::new();
        db.load_system_fonts();
        let family = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "FreeSans"]
            .into_iter()
            .find(|f| {
                db.faces()
                    .any(|face| face.families.iter().any(|(name, _)| name == f))
            })
            .ok_or(PngError::NoFont)?;
        db.set_sans_serif_family(family);
        let options = usvg::Options {
            fontdb: Arc::new(db),
            ..usvg::Options::default()
        };
        Ok(Renderer { options })
    }

    /// Renders `svg` at its own size on a white background; returns PNG bytes.
    pub fn png(&self, name: &str, svg: &str) -> Result<Vec<u8>, PngError> {
        let fail = |e: String| PngError::Render(name.to_string(), e);
        let tree = usvg::Tree::from_str(svg, &self.options).map_err(|e| fail(e.to_string()))?;
        let size = tree.size().to_int_size();
        let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
            .ok_or_else(|| fail("empty image".into()))?;
        pixmap.fill(tiny_skia::Color::WHITE);
        resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
        pixmap.encode_png().map_err(|e| fail(e.to_string()))
    }
}
